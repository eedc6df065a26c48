//! A pool of workers in one process: claims due jobs up to its concurrency, runs them,
//! keeps their leases alive and rescues the jobs of workers that died.
//!
//! Wake-ups come from `LISTEN` on PostgreSQL and from an in-process notify on SQLite,
//! so a new job is picked up within milliseconds; delayed jobs are woken for at their
//! `run_at`. A slow poll remains only as a safety net for a lost notification.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{Job, JobKind, Outcome, RetryPolicy};
use crate::storage::{Db, Timestamp};

/// How soon a job that could not reach the database runs again.
const DATABASE_AWAY: Duration = Duration::from_secs(1);

/// Runs one job; the pool records the outcome.
pub type Handler = Arc<dyn Fn(Job) -> BoxFuture<'static, Outcome> + Send + Sync>;

/// A [`Handler`] from an async function of the job; a database error it returns is
/// retried like any other failure, except that an unreachable database costs the job
/// none of its attempts.
pub fn handler<F, Fut>(run: F) -> Handler
where
    F: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome, sqlx::Error>> + Send + 'static,
{
    Arc::new(move |job: Job| {
        let running = run(job);
        Box::pin(async move {
            running.await.unwrap_or_else(|e| {
                if crate::storage::is_unavailable(&e) {
                    tracing::warn!(error = %e, "the database is unreachable; the job runs again shortly");
                    Outcome::Snooze(DATABASE_AWAY)
                } else {
                    Outcome::Retry {
                        error: format!("database error: {e}"),
                        after: None,
                    }
                }
            })
        })
    })
}

/// What a pool runs: one handler per job kind, each registered by the module that owns
/// the kind. A pool claims only the kinds it has a handler for.
#[derive(Clone, Default)]
pub struct Handlers(HashMap<JobKind, Handler>);

impl Handlers {
    pub fn new() -> Handlers {
        Handlers::default()
    }

    /// Runs jobs of `kind` with `handler` (replacing any handler it had).
    pub fn register(&mut self, kind: JobKind, handler: Handler) -> &mut Handlers {
        self.0.insert(kind, handler);
        self
    }

    /// The kinds handled, in a stable order.
    pub fn kinds(&self) -> Vec<JobKind> {
        JobKind::ALL
            .into_iter()
            .filter(|kind| self.0.contains_key(kind))
            .collect()
    }

    fn get(&self, kind: JobKind) -> Option<&Handler> {
        self.0.get(&kind)
    }
}

/// Longest sleep with nothing due: a safety net for a lost notification, not the way
/// work is found.
const SAFETY_POLL: Duration = Duration::from_secs(2);
/// Longest a free slot waits for a batch to fill before it claims alone.
const CLAIM_BATCH_WINDOW: Duration = Duration::from_millis(5);

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Jobs run at once by this pool.
    pub concurrency: usize,
    /// How long a claim lasts without a heartbeat; a crashed worker's jobs run again
    /// after this.
    pub lease: Duration,
    pub retry: RetryPolicy,
}

pub struct WorkerPool {
    pub worker_id: String,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

struct Finished {
    job: Job,
    outcome: Outcome,
}

impl WorkerPool {
    pub fn start(db: Db, options: WorkerOptions, handlers: Handlers) -> WorkerPool {
        let worker_id = format!("worker-{}", Uuid::now_v7().simple());
        let (shutdown, stop) = watch::channel(false);
        let task = tokio::spawn(run(db, options, handlers, worker_id.clone(), stop));
        WorkerPool {
            worker_id,
            shutdown,
            task,
        }
    }

    /// Stops claiming, waits up to `grace` for running jobs, and gives back the rest.
    pub async fn stop(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let mut task = self.task;
        if tokio::time::timeout(grace + Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// The notify that tells this pool jobs may be ready.
fn wake_source(db: &Db) -> (Arc<Notify>, Option<JoinHandle<()>>) {
    match db {
        Db::Sqlite(sqlite) => (sqlite.jobs_ready.clone(), None),
        Db::Postgres(pool) => {
            let wake = Arc::new(Notify::new());
            let pool = pool.clone();
            let forward = wake.clone();
            let listener = tokio::spawn(async move {
                loop {
                    let mut listener = match PgListener::connect_with(&pool).await {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot LISTEN for jobs; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                    };
                    if let Err(e) = listener.listen(super::CHANNEL).await {
                        tracing::warn!(error = %e, "cannot LISTEN for jobs; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    // A reconnect may have missed notifications: look once.
                    forward.notify_waiters();
                    while listener.recv().await.is_ok() {
                        forward.notify_waiters();
                    }
                }
            });
            (wake, Some(listener))
        }
    }
}

async fn run(
    db: Db,
    options: WorkerOptions,
    handlers: Handlers,
    worker_id: String,
    mut stop: watch::Receiver<bool>,
) {
    let kinds = handlers.kinds();
    let (wake, listener) = wake_source(&db);
    let upkeep = tokio::spawn(upkeep(db.clone(), worker_id.clone(), options.lease));
    let (finished_tx, mut finished_rx) = mpsc::unbounded_channel::<Finished>();
    let mut in_flight = 0usize;
    let mut done: Vec<(i64, i32)> = Vec::new();
    let concurrency = options.concurrency.max(1);
    let mut last_claim = tokio::time::Instant::now();
    // Whether due jobs may be waiting unclaimed: the last claim filled every free slot,
    // or a wake-up came since.
    let mut jobs_may_wait = true;

    loop {
        while let Ok(f) = finished_rx.try_recv() {
            in_flight -= 1;
            record(&db, &worker_id, &options.retry, f, &mut done).await;
        }
        if *stop.borrow() {
            break;
        }

        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let free = concurrency - in_flight;
        let mut deadline = tokio::time::Instant::now() + SAFETY_POLL;
        // Under load, claim in batches (when half the slots are free, or a batch window
        // after the last claim) rather than one round trip per finished job; when idle,
        // claim at once. The window bounds how long a free slot stays idle while jobs
        // wait, however long the running jobs take. Finished jobs are deleted in the
        // same transaction.
        let batch_due = last_claim + CLAIM_BATCH_WINDOW;
        let claiming = free > 0
            && (in_flight == 0
                || free >= concurrency.div_ceil(2)
                || (jobs_may_wait && tokio::time::Instant::now() >= batch_due));
        if free > 0 && jobs_may_wait && !claiming {
            deadline = deadline.min(batch_due);
        }
        if claiming || !done.is_empty() {
            let limit = if claiming { free as i64 } else { 0 };
            if claiming {
                last_claim = tokio::time::Instant::now();
            }
            match super::claim(&db, &worker_id, &done, limit, options.lease, &kinds).await {
                Ok(jobs) => {
                    done.clear();
                    let claimed_all = claiming && jobs.len() == free;
                    if claiming {
                        jobs_may_wait = claimed_all;
                    }
                    for job in jobs {
                        in_flight += 1;
                        dispatch(job, &handlers, &finished_tx);
                    }
                    if claimed_all {
                        continue;
                    }
                    if claiming {
                        deadline = next_wake(&db).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim jobs; retrying shortly");
                    deadline = tokio::time::Instant::now() + Duration::from_millis(500);
                }
            }
        }

        tokio::select! {
            // A job was enqueued, or one comes due (or the safety poll): look again.
            _ = &mut notified => jobs_may_wait = true,
            Some(f) = finished_rx.recv() => {
                in_flight -= 1;
                record(&db, &worker_id, &options.retry, f, &mut done).await;
            }
            _ = tokio::time::sleep_until(deadline) => jobs_may_wait = true,
            _ = stop.changed() => {}
        }
    }

    // Shutting down: let running jobs finish, within the grace the caller allows (it
    // aborts this task when the grace is over; their leases then expire and they run
    // again elsewhere).
    while in_flight > 0 {
        match finished_rx.recv().await {
            Some(f) => {
                in_flight -= 1;
                record(&db, &worker_id, &options.retry, f, &mut done).await;
            }
            None => break,
        }
    }
    if let Err(e) = super::complete(&db, &worker_id, &done).await {
        tracing::warn!(error = %e, "cannot mark jobs finished at shutdown");
    }
    if let Err(e) = super::release_all(&db, &worker_id).await {
        tracing::warn!(error = %e, "cannot give back jobs at shutdown");
    }
    upkeep.abort();
    if let Some(listener) = listener {
        listener.abort();
    }
}

/// When to look again: the next delayed job's `run_at`, or the safety poll.
async fn next_wake(db: &Db) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    match super::next_due(db).await {
        Ok(Some(due)) => now + due.since(Timestamp::now()).min(SAFETY_POLL),
        _ => now + SAFETY_POLL,
    }
}

fn dispatch(job: Job, handlers: &Handlers, finished: &mpsc::UnboundedSender<Finished>) {
    // Claims ask only for the kinds in `handlers`.
    let run = match handlers.get(job.kind) {
        Some(handler) => handler(job.clone()),
        None => {
            let error = format!("no handler for job kind {}", job.kind);
            Box::pin(async move { Outcome::Dead(error) })
        }
    };
    let finished = finished.clone();
    tokio::spawn(async move {
        let waited = Timestamp::now().since(job.run_at);
        metrics::histogram!("errand_job_wait_seconds", "kind" => job.kind.as_str())
            .record(waited.as_secs_f64());
        let started = Instant::now();
        // A panicking handler must not take its job's slot with it.
        let outcome = match tokio::spawn(run).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Retry {
                error: format!("the job's handler failed: {e}"),
                after: None,
            },
        };
        metrics::histogram!("errand_job_run_seconds", "kind" => job.kind.as_str())
            .record(started.elapsed().as_secs_f64());
        let _ = finished.send(Finished { job, outcome });
    });
}

async fn record(
    db: &Db,
    worker_id: &str,
    retry: &RetryPolicy,
    finished: Finished,
    done: &mut Vec<(i64, i32)>,
) {
    let Finished { job, outcome } = finished;
    let label = match &outcome {
        Outcome::Done => "done",
        Outcome::Retry { .. } if job.is_last_attempt() => "dead",
        Outcome::Retry { .. } => "retry",
        Outcome::Snooze(_) => "snooze",
        Outcome::Reschedule { .. } => "reschedule",
        Outcome::Dead(_) => "dead",
    };
    metrics::counter!("errand_jobs_finished_total", "kind" => job.kind.as_str(), "outcome" => label)
        .increment(1);
    match &outcome {
        Outcome::Done => {
            done.push(job.claim());
            return;
        }
        Outcome::Retry { error, .. } | Outcome::Dead(error) if label == "dead" => {
            tracing::error!(job_id = job.id, kind = %job.kind, order_id = ?job.order_id(), attempt = job.attempt, error = %error, "job is dead: an operator can retry it with `errand jobs retry`");
        }
        Outcome::Retry { error, .. } => {
            tracing::warn!(job_id = job.id, kind = %job.kind, order_id = ?job.order_id(), attempt = job.attempt, error = %error, "job failed; it will be retried");
        }
        _ => {}
    }
    if let Err(e) = super::settle(db, worker_id, &job, &outcome, retry).await {
        tracing::warn!(job_id = job.id, error = %e, "cannot record a job's outcome; it will run again after its lease");
    }
}

/// Heartbeats for this pool's jobs, and the rescue of jobs whose worker died.
async fn upkeep(db: Db, worker_id: String, lease: Duration) {
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = super::heartbeat(&db, &worker_id, lease).await {
            tracing::warn!(error = %e, "job heartbeat failed");
        }
        match super::rescue_expired(&db).await {
            Ok(rescued) => {
                for (id, kind, owner) in rescued {
                    tracing::warn!(job_id = id, kind = %kind, worker = %owner, "job's lease ran out (its worker stopped); it will run again");
                }
            }
            Err(e) => tracing::warn!(error = %e, "rescuing expired jobs failed"),
        }
    }
}
