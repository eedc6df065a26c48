//! The durable job queue, kept in Errand's own database so that a state change and the
//! work it causes commit together.
//!
//! A job is `available` (waiting for `run_at`), `running` (claimed by a worker under a
//! lease that its heartbeats extend) or `dead` (out of attempts, kept for an operator).
//! Finished jobs are deleted. A worker that dies leaves its jobs `running` with a lease
//! that runs out; the rescuer makes them `available` again. Claims use
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL, so many processes share one queue; SQLite has
//! one writer, so its claim is a single `UPDATE … RETURNING`.
//!
//! The queue knows every [`JobKind`] by name, but not what a job does: the module that
//! owns a kind registers its handler in a [`worker::Handlers`] set.

pub mod worker;

use std::time::Duration;

use serde_json::Value;
use sqlx::QueryBuilder;
use sqlx::types::Json;
use uuid::Uuid;

use crate::storage::{Db, DbId, Timestamp, Tx};
use crate::{on_db, on_tx};

/// The PostgreSQL channel workers LISTEN on; every enqueue NOTIFYs it.
pub const CHANNEL: &str = "errand_jobs";

/// What a job does, stored as text in `jobs.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Buy an order at its retailer (the engine).
    PlaceOrder,
    /// Follow a placed order to delivery (the engine).
    TrackOrder,
    /// Fail an order still unplaced at its expiration (the engine).
    ExpireOrder,
    /// Ask the retailer for a return, exactly once (the engine).
    RequestReturn,
    /// Follow a return until the retailer credits it (the engine).
    TrackReturn,
    /// Deliver one webhook (webhooks).
    DeliverWebhook,
    /// E-mail an order's end customer (notifications).
    NotifyCustomer,
    /// Does nothing: for measuring the queue itself.
    Noop,
}

impl JobKind {
    pub const ALL: [JobKind; 8] = [
        JobKind::PlaceOrder,
        JobKind::TrackOrder,
        JobKind::ExpireOrder,
        JobKind::RequestReturn,
        JobKind::TrackReturn,
        JobKind::DeliverWebhook,
        JobKind::NotifyCustomer,
        JobKind::Noop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::PlaceOrder => "place_order",
            JobKind::TrackOrder => "track_order",
            JobKind::ExpireOrder => "expire_order",
            JobKind::RequestReturn => "request_return",
            JobKind::TrackReturn => "track_return",
            JobKind::DeliverWebhook => "deliver_webhook",
            JobKind::NotifyCustomer => "notify_customer",
            JobKind::Noop => "noop",
        }
    }

    pub fn parse(text: &str) -> Option<JobKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for JobKind {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        JobKind::parse(&text).ok_or_else(|| format!("unknown job kind {text:?}"))
    }
}

/// Where a job stands, stored as text in `jobs.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for its `run_at`.
    Available,
    /// Claimed by a worker under a lease.
    Running,
    /// Out of attempts (or failed for good), kept for an operator.
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 3] = [JobState::Available, JobState::Running, JobState::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<JobState> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl TryFrom<String> for JobState {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        JobState::parse(&text).ok_or_else(|| format!("unknown job state {text:?}"))
    }
}

/// The queue's settings (flattened into the configuration's keys).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct QueueSettings {
    /// Jobs (placements, tracking) run at once by each process; 0 runs none
    /// (an API-only node).
    pub worker_concurrency: usize,
    /// How long a job's claim lasts without a heartbeat: a crashed process's jobs run
    /// again after this.
    pub job_lease_seconds: f64,
    /// First retry delay of a failed job; each retry doubles it (±20 % jitter).
    pub job_retry_base_seconds: f64,
    /// The longest retry delay.
    pub job_retry_max_seconds: f64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            worker_concurrency: 16,
            job_lease_seconds: 30.0,
            job_retry_base_seconds: 1.0,
            job_retry_max_seconds: 600.0,
        }
    }
}

impl QueueSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.worker_concurrency > 1000 {
            anyhow::bail!("invalid configuration: worker_concurrency must be at most 1000");
        }
        if !(self.job_lease_seconds >= 0.5 && self.job_lease_seconds <= 3600.0) {
            anyhow::bail!("invalid configuration: job_lease_seconds must be between 0.5 and 3600");
        }
        if !(self.job_retry_base_seconds > 0.0
            && self.job_retry_max_seconds >= self.job_retry_base_seconds)
        {
            anyhow::bail!(
                "invalid configuration: job_retry_base_seconds must be positive and at most job_retry_max_seconds"
            );
        }
        Ok(())
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs_f64(self.job_lease_seconds)
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs_f64(self.job_retry_base_seconds),
            max: Duration::from_secs_f64(self.job_retry_max_seconds),
        }
    }
}

/// A job to add to the queue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    /// At most one live job of a kind per order: a second enqueue is ignored.
    pub order_id: Option<Uuid>,
    pub payload: Value,
    pub max_attempts: i32,
    pub run_at: Timestamp,
}

impl NewJob {
    pub fn now(kind: JobKind, order_id: Option<Uuid>, max_attempts: i32) -> NewJob {
        NewJob {
            kind,
            order_id,
            payload: Value::Object(Default::default()),
            max_attempts,
            run_at: Timestamp::now(),
        }
    }

    pub fn at(mut self, run_at: Timestamp) -> NewJob {
        self.run_at = run_at;
        self
    }
}

/// A claimed job, as a handler sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    #[sqlx(try_from = "String")]
    pub kind: JobKind,
    pub order_id: Option<DbId>,
    pub payload: Json<Value>,
    /// 1 on the first run; counts runs that ended in an error or a crash.
    pub attempt: i32,
    pub max_attempts: i32,
    pub run_at: Timestamp,
    pub created_at: Timestamp,
}

impl Job {
    pub fn order_id(&self) -> Option<Uuid> {
        self.order_id.map(|id| id.0)
    }

    /// This run's claim on the job: its id and attempt (every claim counts one more).
    pub fn claim(&self) -> (i64, i32) {
        (self.id, self.attempt)
    }

    /// Whether a failure now would use up the job's attempts.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}

/// How a handler's run ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Finished: the job is deleted.
    Done,
    /// Failed in a way worth retrying: back off (or use the given delay), and die once
    /// the attempts are used up.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Not run yet (a resource was busy): run again later without using an attempt.
    Snooze(Duration),
    /// A recurring job: run again at `at` with a fresh set of attempts and this payload.
    Reschedule { at: Timestamp, payload: Value },
    /// Failed for good: keep it as dead for an operator.
    Dead(String),
}

/// Exponential backoff with ±20 % jitter: `base × 2^(attempt−1)`, at most `max`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    pub fn delay(&self, attempt: i32) -> Duration {
        let exponent = attempt.clamp(1, 30) as u32 - 1;
        let raw = self.base.saturating_mul(2u32.saturating_pow(exponent));
        let capped = raw.min(self.max);
        let jitter = rand::random_range(0.8..=1.2);
        capped.mul_f64(jitter)
    }
}

/// Enqueues jobs inside the caller's transaction (the outbox rule: a job exists exactly
/// when the change that caused it does). Workers are woken when it commits: by
/// `NOTIFY` on PostgreSQL (delivered at commit, to every process), and in this process
/// by [`Tx::commit`] on SQLite.
pub async fn enqueue(tx: &mut Tx, jobs: &[NewJob]) -> Result<(), sqlx::Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    let now = Timestamp::now();
    on_tx!(tx, |conn| {
        let mut qb = QueryBuilder::new(
            "INSERT INTO jobs (kind, order_id, payload, state, attempt, max_attempts, run_at, created_at, updated_at) ",
        );
        qb.push_values(jobs, |mut b, job| {
            b.push_bind(job.kind.as_str())
                .push_bind(job.order_id.map(DbId))
                .push_bind(Json(job.payload.clone()))
                .push_bind(JobState::Available.as_str())
                .push_bind(0_i32)
                .push_bind(job.max_attempts)
                .push_bind(job.run_at)
                .push_bind(now)
                .push_bind(now);
        });
        qb.push(" ON CONFLICT DO NOTHING");
        qb.build().execute(&mut *conn).await?;
        Ok::<(), sqlx::Error>(())
    })?;
    if tx.is_postgres() {
        on_tx!(tx, |conn| sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&mut *conn)
            .await
            .map(|_| ()))?;
    }
    tx.wake_workers_on_commit();
    Ok(())
}

const JOB_COLUMNS: &str = "id, kind, order_id, payload, attempt, max_attempts, run_at, created_at";

/// Deletes the finished jobs `worker` still holds, then claims up to `limit` due jobs
/// of the given kinds for it, oldest due first: one transaction, so one commit for
/// both. Finished jobs are named by [`Job::claim`], so that a run whose claim was lost
/// (its lease ran out and the job was claimed again) deletes nothing.
pub async fn claim(
    db: &Db,
    worker: &str,
    finished: &[(i64, i32)],
    limit: i64,
    lease: Duration,
    kinds: &[JobKind],
) -> Result<Vec<Job>, sqlx::Error> {
    let now = Timestamp::now();
    let lease_until = now.after(lease);
    let mut tx = db.begin().await?;
    let skip_locked = tx.skip_locked();
    let claimed = on_tx!(tx, |conn| {
        if !finished.is_empty() {
            let mut qb = QueryBuilder::new("DELETE FROM jobs WHERE locked_by = ");
            // `id IN` finds the rows by primary key; the pairs fence out stale claims.
            qb.push_bind(worker.to_string()).push(" AND id IN ");
            qb.push_tuples(finished, |mut b, (id, _)| {
                b.push_bind(*id);
            });
            qb.push(" AND (id, attempt) IN ");
            qb.push_tuples(finished, |mut b, (id, attempt)| {
                b.push_bind(*id).push_bind(*attempt);
            });
            qb.build().execute(&mut *conn).await?;
        }
        if limit > 0 && !kinds.is_empty() {
            let mut qb = QueryBuilder::new("UPDATE jobs SET state = ");
            qb.push_bind(JobState::Running.as_str())
                .push(", attempt = attempt + 1, locked_by = ")
                .push_bind(worker.to_string())
                .push(", lease_until = ")
                .push_bind(lease_until)
                .push(", updated_at = ")
                .push_bind(now)
                .push(" WHERE id IN (SELECT id FROM jobs WHERE state = ")
                .push_bind(JobState::Available.as_str())
                .push(" AND run_at <= ")
                .push_bind(now)
                .push(" AND kind IN ");
            qb.push_tuples(kinds, |mut b, kind| {
                b.push_bind(kind.as_str());
            });
            qb.push(" ORDER BY run_at, id LIMIT ")
                .push_bind(limit)
                .push(skip_locked)
                .push(") RETURNING ")
                .push(JOB_COLUMNS);
            qb.build_query_as().fetch_all(&mut *conn).await
        } else {
            Ok(vec![])
        }
    })?;
    tx.commit().await?;
    Ok(claimed)
}

/// Deletes finished jobs, named by [`Job::claim`] (only while `worker` still holds
/// them with that claim).
pub async fn complete(db: &Db, worker: &str, ids: &[(i64, i32)]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    claim(db, worker, ids, 0, Duration::ZERO, &[])
        .await
        .map(|_| ())
}

/// Applies a handler's outcome other than `Done`.
pub async fn settle(
    db: &Db,
    worker: &str,
    job: &Job,
    outcome: &Outcome,
    policy: &RetryPolicy,
) -> Result<(), sqlx::Error> {
    let now = Timestamp::now();
    let (state, attempt_change, run_at, error, payload) = match outcome {
        Outcome::Done => return complete(db, worker, &[job.claim()]).await,
        Outcome::Retry { error, after } => {
            let state = if job.is_last_attempt() {
                JobState::Dead
            } else {
                JobState::Available
            };
            let delay = after.unwrap_or_else(|| policy.delay(job.attempt));
            (state, 0, now.after(delay), Some(error.clone()), None)
        }
        Outcome::Snooze(delay) => (JobState::Available, -1, now.after(*delay), None, None),
        Outcome::Reschedule { at, payload } => (
            JobState::Available,
            -job.attempt,
            *at,
            None,
            Some(payload.clone()),
        ),
        Outcome::Dead(error) => (JobState::Dead, 0, now, Some(error.clone()), None),
    };
    let mut tx = db.begin().await?;
    on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE jobs SET state = $1, attempt = attempt + $2, run_at = $3,
                 last_error = COALESCE($4, last_error), payload = COALESCE($5, payload),
                 locked_by = NULL, lease_until = NULL, updated_at = $6
             WHERE id = $7 AND locked_by = $8 AND attempt = $9",
        )
        .bind(state.as_str())
        .bind(attempt_change)
        .bind(run_at)
        .bind(error)
        .bind(payload.map(Json))
        .bind(now)
        .bind(job.id)
        .bind(worker)
        .bind(job.attempt)
        .execute(&mut *conn)
        .await
        .map(|_| ())
    })?;
    if state == JobState::Available {
        tx.wake_workers_on_commit();
    }
    tx.commit().await
}

/// Extends the leases of every job `worker` holds.
pub async fn heartbeat(db: &Db, worker: &str, lease: Duration) -> Result<u64, sqlx::Error> {
    let until = Timestamp::now().after(lease);
    on_db!(db, writer, |pool| {
        sqlx::query("UPDATE jobs SET lease_until = $1 WHERE state = $2 AND locked_by = $3")
            .bind(until)
            .bind(JobState::Running.as_str())
            .bind(worker)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })
}

/// Makes jobs whose lease ran out (their worker died) available again; returns them
/// as `(id, kind, the worker that held it)`.
pub async fn rescue_expired(db: &Db) -> Result<Vec<(i64, String, String)>, sqlx::Error> {
    let now = Timestamp::now();
    let mut tx = db.begin().await?;
    let rescued: Vec<(i64, String, String)> = on_tx!(tx, |conn| {
        sqlx::query_as(
            "UPDATE jobs SET state = $1, locked_by = NULL, lease_until = NULL, run_at = $2, updated_at = $2
             WHERE state = $3 AND lease_until < $2
             RETURNING id, kind, COALESCE(locked_by, '')",
        )
        .bind(JobState::Available.as_str())
        .bind(now)
        .bind(JobState::Running.as_str())
        .fetch_all(&mut *conn)
        .await
    })?;
    if !rescued.is_empty() {
        tx.wake_workers_on_commit();
    }
    tx.commit().await?;
    Ok(rescued)
}

/// Gives back the jobs a stopping worker still holds, without using an attempt.
pub async fn release_all(db: &Db, worker: &str) -> Result<u64, sqlx::Error> {
    let now = Timestamp::now();
    on_db!(db, writer, |pool| {
        sqlx::query(
            "UPDATE jobs SET state = $1, attempt = attempt - 1, locked_by = NULL, lease_until = NULL,
                 run_at = $2, updated_at = $2
             WHERE state = $3 AND locked_by = $4",
        )
        .bind(JobState::Available.as_str())
        .bind(now)
        .bind(JobState::Running.as_str())
        .bind(worker)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
    })
}

/// When the next available job is due, if any is waiting.
pub async fn next_due(db: &Db) -> Result<Option<Timestamp>, sqlx::Error> {
    on_db!(db, reader, |pool| {
        sqlx::query_scalar("SELECT MIN(run_at) FROM jobs WHERE state = $1")
            .bind(JobState::Available.as_str())
            .fetch_one(pool)
            .await
    })
}

/// A job as `errand jobs list` shows it. The kind stays text: a database shared with
/// another version may hold kinds this one does not know.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct JobInfo {
    pub id: i64,
    pub kind: String,
    pub order_id: Option<DbId>,
    #[sqlx(try_from = "String")]
    pub state: JobState,
    pub attempt: i32,
    pub max_attempts: i32,
    pub run_at: Timestamp,
    pub last_error: Option<String>,
    pub updated_at: Timestamp,
}

/// Jobs in a state (all states when `None`), newest first.
pub async fn list(
    db: &Db,
    state: Option<JobState>,
    limit: i64,
) -> Result<Vec<JobInfo>, sqlx::Error> {
    on_db!(db, reader, |pool| {
        let mut qb = QueryBuilder::new(
            "SELECT id, kind, order_id, state, attempt, max_attempts, run_at, last_error, updated_at FROM jobs",
        );
        if let Some(state) = state {
            qb.push(" WHERE state = ").push_bind(state.as_str());
        }
        qb.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        qb.build_query_as().fetch_all(pool).await
    })
}

/// Gives a dead job a fresh set of attempts, due now. Returns whether one was revived.
pub async fn retry_dead(db: &Db, id: i64) -> Result<bool, sqlx::Error> {
    let now = Timestamp::now();
    let mut tx = db.begin().await?;
    let revived = on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE jobs SET state = $1, attempt = 0, run_at = $2, updated_at = $2 WHERE id = $3 AND state = $4",
        )
        .bind(JobState::Available.as_str())
        .bind(now)
        .bind(id)
        .bind(JobState::Dead.as_str())
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected() > 0)
    })?;
    if revived {
        tx.wake_workers_on_commit();
    }
    tx.commit().await?;
    Ok(revived)
}

/// Jobs waiting and running, by kind (for metrics).
pub async fn depth(db: &Db) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    on_db!(db, reader, |pool| {
        sqlx::query_as("SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state")
            .fetch_all(pool)
            .await
    })
}
