//! The durable job queue, kept in Errand's own database so that a state change and the
//! work it causes commit together.
//!
//! A job is `available` (waiting for `run_at`), `running` (claimed by a worker under a
//! lease that its heartbeats extend) or `dead` (out of attempts, kept for an operator).
//! Finished jobs are deleted. A worker that dies leaves its jobs `running` with a lease
//! that runs out; the rescuer makes them `available` again. Claims use
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL, so many processes share one queue; SQLite has
//! one writer, so its claim is a single `UPDATE … RETURNING`.

pub mod worker;

use std::time::Duration;

use serde_json::Value;
use sqlx::types::Json;
use sqlx::{Database, QueryBuilder};
use uuid::Uuid;

use crate::storage::{Db, DbId, Timestamp};

/// The PostgreSQL channel workers LISTEN on; every enqueue NOTIFYs it.
pub const CHANNEL: &str = "errand_jobs";

pub const AVAILABLE: &str = "available";
pub const RUNNING: &str = "running";
pub const DEAD: &str = "dead";

/// A job to add to the queue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: &'static str,
    /// At most one live job of a kind per order: a second enqueue is ignored.
    pub order_id: Option<Uuid>,
    pub payload: Value,
    pub max_attempts: i32,
    pub run_at: Timestamp,
}

impl NewJob {
    pub fn now(kind: &'static str, order_id: Option<Uuid>, max_attempts: i32) -> NewJob {
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
    pub kind: String,
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

/// Appends `VALUES (…), (…)` rows for `jobs` to an `INSERT INTO jobs (JOB_COLUMNS)`.
pub fn push_job_rows<DB: Database>(qb: &mut QueryBuilder<DB>, jobs: &[NewJob], now: Timestamp)
where
    Option<DbId>: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Json<Value>: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'static str: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i32: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Timestamp: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    qb.push(
        "INSERT INTO jobs (kind, order_id, payload, state, attempt, max_attempts, run_at, created_at, updated_at) ",
    );
    qb.push_values(jobs, |mut b, job| {
        b.push_bind(job.kind)
            .push_bind(job.order_id.map(DbId))
            .push_bind(Json(job.payload.clone()))
            .push_bind(AVAILABLE)
            .push_bind(0_i32)
            .push_bind(job.max_attempts)
            .push_bind(job.run_at)
            .push_bind(now)
            .push_bind(now);
    });
    qb.push(" ON CONFLICT DO NOTHING");
}

/// Enqueues jobs inside a transaction the caller commits (the outbox rule: the job
/// exists exactly when the change that caused it does). Call [`Db::jobs_committed`]
/// after the commit to wake in-process workers on SQLite.
#[macro_export]
macro_rules! enqueue_in_tx {
    ($tx:expr, $jobs:expr) => {{
        let jobs: &[$crate::queue::NewJob] = $jobs;
        if jobs.is_empty() {
            Ok::<(), sqlx::Error>(())
        } else {
            let mut qb = sqlx::QueryBuilder::new("");
            $crate::queue::push_job_rows(&mut qb, jobs, $crate::storage::Timestamp::now());
            match qb.build().execute(&mut *$tx).await {
                Ok(_) => $crate::queue::NotifyWorkers::notify_workers(&mut *$tx).await,
                Err(e) => Err(e),
            }
        }
    }};
}

/// Wakes workers when the transaction commits: `NOTIFY` on PostgreSQL (delivered at
/// commit, to every process); SQLite workers live in this process and are woken by
/// [`Db::jobs_committed`] instead.
pub trait NotifyWorkers {
    fn notify_workers(&mut self) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

impl NotifyWorkers for sqlx::SqliteConnection {
    async fn notify_workers(&mut self) -> Result<(), sqlx::Error> {
        Ok(())
    }
}

impl NotifyWorkers for sqlx::PgConnection {
    async fn notify_workers(&mut self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(self)
            .await
            .map(|_| ())
    }
}

/// Enqueues jobs in a transaction of their own.
pub async fn enqueue(db: &Db, jobs: &[NewJob]) -> Result<(), sqlx::Error> {
    crate::on_db!(db, writer, |pool| {
        let mut tx = pool.begin().await?;
        enqueue_in_tx!(tx, jobs)?;
        tx.commit().await?;
        Ok::<(), sqlx::Error>(())
    })?;
    db.jobs_committed();
    Ok(())
}

const JOB_COLUMNS: &str = "id, kind, order_id, payload, attempt, max_attempts, run_at, created_at";

/// Deletes the finished jobs `worker` still holds, then claims up to `limit` due jobs
/// for it, oldest due first: one transaction, so one commit for both. Finished jobs are
/// named by [`Job::claim`], so that a run whose claim was lost (its lease ran out and
/// the job was claimed again) deletes nothing.
pub async fn claim(
    db: &Db,
    worker: &str,
    finished: &[(i64, i32)],
    limit: i64,
    lease: Duration,
    kinds: Option<&[String]>,
) -> Result<Vec<Job>, sqlx::Error> {
    let now = Timestamp::now();
    let lease_until = now.after(lease);
    let skip_locked = match db {
        Db::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        Db::Sqlite(_) => "",
    };
    crate::on_db!(db, writer, |pool| {
        let mut tx = pool.begin().await?;
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
            qb.build().execute(&mut *tx).await?;
        }
        let claimed = if limit > 0 {
            let mut qb = QueryBuilder::new("UPDATE jobs SET state = ");
            qb.push_bind(RUNNING)
                .push(", attempt = attempt + 1, locked_by = ")
                .push_bind(worker.to_string())
                .push(", lease_until = ")
                .push_bind(lease_until)
                .push(", updated_at = ")
                .push_bind(now)
                .push(" WHERE id IN (SELECT id FROM jobs WHERE state = ")
                .push_bind(AVAILABLE)
                .push(" AND run_at <= ")
                .push_bind(now);
            if let Some(kinds) = kinds {
                qb.push(" AND kind IN ");
                qb.push_tuples(kinds, |mut b, kind| {
                    b.push_bind(kind.clone());
                });
            }
            qb.push(" ORDER BY run_at, id LIMIT ")
                .push_bind(limit)
                .push(skip_locked)
                .push(") RETURNING ")
                .push(JOB_COLUMNS);
            qb.build_query_as().fetch_all(&mut *tx).await?
        } else {
            vec![]
        };
        tx.commit().await?;
        Ok(claimed)
    })
}

/// Deletes finished jobs, named by [`Job::claim`] (only while `worker` still holds
/// them with that claim).
pub async fn complete(db: &Db, worker: &str, ids: &[(i64, i32)]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    claim(db, worker, ids, 0, Duration::ZERO, None)
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
                DEAD
            } else {
                AVAILABLE
            };
            let delay = after.unwrap_or_else(|| policy.delay(job.attempt));
            (state, 0, now.after(delay), Some(error.clone()), None)
        }
        Outcome::Snooze(delay) => (AVAILABLE, -1, now.after(*delay), None, None),
        Outcome::Reschedule { at, payload } => {
            (AVAILABLE, -job.attempt, *at, None, Some(payload.clone()))
        }
        Outcome::Dead(error) => (DEAD, 0, now, Some(error.clone()), None),
    };
    crate::on_db!(db, writer, |pool| {
        sqlx::query(
            "UPDATE jobs SET state = $1, attempt = attempt + $2, run_at = $3,
                 last_error = COALESCE($4, last_error), payload = COALESCE($5, payload),
                 locked_by = NULL, lease_until = NULL, updated_at = $6
             WHERE id = $7 AND locked_by = $8 AND attempt = $9",
        )
        .bind(state)
        .bind(attempt_change)
        .bind(run_at)
        .bind(error)
        .bind(payload.map(Json))
        .bind(now)
        .bind(job.id)
        .bind(worker)
        .bind(job.attempt)
        .execute(pool)
        .await
        .map(|_| ())
    })?;
    if state == AVAILABLE {
        db.jobs_committed();
    }
    Ok(())
}

/// Extends the leases of every job `worker` holds.
pub async fn heartbeat(db: &Db, worker: &str, lease: Duration) -> Result<u64, sqlx::Error> {
    let until = Timestamp::now().after(lease);
    crate::on_db!(db, writer, |pool| {
        sqlx::query("UPDATE jobs SET lease_until = $1 WHERE state = $2 AND locked_by = $3")
            .bind(until)
            .bind(RUNNING)
            .bind(worker)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })
}

/// Makes jobs whose lease ran out (their worker died) available again; returns them.
pub async fn rescue_expired(db: &Db) -> Result<Vec<(i64, String, String)>, sqlx::Error> {
    let now = Timestamp::now();
    let rescued: Vec<(i64, String, String)> = crate::on_db!(db, writer, |pool| {
        sqlx::query_as(
            "UPDATE jobs SET state = $1, locked_by = NULL, lease_until = NULL, run_at = $2, updated_at = $2
             WHERE state = $3 AND lease_until < $2
             RETURNING id, kind, COALESCE(locked_by, '')",
        )
        .bind(AVAILABLE)
        .bind(now)
        .bind(RUNNING)
        .fetch_all(pool)
        .await
    })?;
    if !rescued.is_empty() {
        db.jobs_committed();
    }
    Ok(rescued)
}

/// Gives back the jobs a stopping worker still holds, without using an attempt.
pub async fn release_all(db: &Db, worker: &str) -> Result<u64, sqlx::Error> {
    let now = Timestamp::now();
    crate::on_db!(db, writer, |pool| {
        sqlx::query(
            "UPDATE jobs SET state = $1, attempt = attempt - 1, locked_by = NULL, lease_until = NULL,
                 run_at = $2, updated_at = $2
             WHERE state = $3 AND locked_by = $4",
        )
        .bind(AVAILABLE)
        .bind(now)
        .bind(RUNNING)
        .bind(worker)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
    })
}

/// When the next available job is due, if any is waiting.
pub async fn next_due(db: &Db) -> Result<Option<Timestamp>, sqlx::Error> {
    crate::on_db!(db, reader, |pool| {
        sqlx::query_scalar("SELECT MIN(run_at) FROM jobs WHERE state = $1")
            .bind(AVAILABLE)
            .fetch_one(pool)
            .await
    })
}

/// A job as `errand jobs list` shows it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct JobInfo {
    pub id: i64,
    pub kind: String,
    pub order_id: Option<DbId>,
    pub state: String,
    pub attempt: i32,
    pub max_attempts: i32,
    pub run_at: Timestamp,
    pub last_error: Option<String>,
    pub updated_at: Timestamp,
}

/// Jobs in a state (all states when `None`), newest first.
pub async fn list(db: &Db, state: Option<&str>, limit: i64) -> Result<Vec<JobInfo>, sqlx::Error> {
    crate::on_db!(db, reader, |pool| {
        let mut qb = QueryBuilder::new(
            "SELECT id, kind, order_id, state, attempt, max_attempts, run_at, last_error, updated_at FROM jobs",
        );
        if let Some(state) = state {
            qb.push(" WHERE state = ").push_bind(state.to_string());
        }
        qb.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        qb.build_query_as().fetch_all(pool).await
    })
}

/// Gives a dead job a fresh set of attempts, due now. Returns whether one was revived.
pub async fn retry_dead(db: &Db, id: i64) -> Result<bool, sqlx::Error> {
    let now = Timestamp::now();
    let revived = crate::on_db!(db, writer, |pool| {
        sqlx::query(
            "UPDATE jobs SET state = $1, attempt = 0, run_at = $2, updated_at = $2 WHERE id = $3 AND state = $4",
        )
        .bind(AVAILABLE)
        .bind(now)
        .bind(id)
        .bind(DEAD)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() > 0)
    })?;
    if revived {
        db.jobs_committed();
    }
    Ok(revived)
}

/// Jobs waiting and running, by kind (for metrics).
pub async fn depth(db: &Db) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    crate::on_db!(db, reader, |pool| {
        sqlx::query_as("SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state")
            .fetch_all(pool)
            .await
    })
}
