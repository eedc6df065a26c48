//! `errand bench-queue`: the job queue alone, in this process, on a fresh database.
//!
//! Throughput: `--jobs` no-op jobs are enqueued first, then a worker pool of
//! `--concurrency` drains them; jobs/s counts until every job has run and been deleted.
//! Pickup latency: with the pool idle, `--pickups` jobs are enqueued one at a time; the
//! latency of each is from the start of its enqueue (its `created_at`, before the commit)
//! to the moment its handler starts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::FutureExt;

use super::{Backend, Scratch, percentile_ms};
use crate::config::Settings;
use crate::queue::worker::{Handlers, WorkerOptions, WorkerPool};
use crate::queue::{self, JobKind, NewJob, Outcome, RetryPolicy};
use crate::storage::{Db, Timestamp};

#[derive(Args, Debug, Clone)]
pub struct QueueBenchArgs {
    /// Databases to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Backend::Sqlite, Backend::Postgres])]
    pub databases: Vec<Backend>,
    /// No-op jobs drained for the throughput figure.
    #[arg(long, default_value_t = 50_000)]
    pub jobs: usize,
    /// Jobs run at once by the pool (it claims in batches of up to half of this).
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Jobs enqueued one by one for the pickup-latency figure.
    #[arg(long, default_value_t = 2_000)]
    pub pickups: usize,
    /// PostgreSQL server to create a throw-away database on.
    #[arg(
        long,
        env = "ERRAND_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub postgres_url: String,
}

pub async fn run(args: QueueBenchArgs) -> anyhow::Result<()> {
    println!(
        "{:<9} {:>8} {:>5} {:>10} {:>10} {:>14} {:>14}",
        "database", "jobs", "conc", "seconds", "jobs/s", "pickup p50 ms", "pickup p99 ms"
    );
    for backend in &args.databases {
        let scratch = Scratch::new(*backend, &args.postgres_url).await?;
        let settings = Settings {
            data_dir: scratch.path().to_path_buf(),
            database_url: scratch.database_url.clone(),
            ..Settings::default()
        };
        let db = Db::connect(&settings.db_options()).await?;
        db.migrate().await?;
        let result = measure(&db, *backend, &args).await;
        db.close().await;
        scratch.remove().await?;
        result?;
    }
    Ok(())
}

/// Enqueues jobs in a transaction of their own.
async fn enqueue(db: &Db, jobs: &[NewJob]) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    queue::enqueue(&mut tx, jobs).await?;
    tx.commit().await
}

/// A pool's handlers: `handler` for no-op jobs.
fn noop(handler: queue::worker::Handler) -> Handlers {
    let mut handlers = Handlers::new();
    handlers.register(JobKind::Noop, handler);
    handlers
}

fn options(concurrency: usize) -> WorkerOptions {
    WorkerOptions {
        concurrency,
        lease: Duration::from_secs(30),
        retry: RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        },
    }
}

async fn measure(db: &Db, backend: Backend, args: &QueueBenchArgs) -> anyhow::Result<()> {
    // Throughput.
    let jobs: Vec<NewJob> = (0..args.jobs)
        .map(|_| NewJob::now(JobKind::Noop, None, 3))
        .collect();
    for chunk in jobs.chunks(1000) {
        enqueue(db, chunk).await?;
    }
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = ran.clone();
    let started = Instant::now();
    let pool = WorkerPool::start(
        db.clone(),
        options(args.concurrency),
        noop(Arc::new(move |_job| {
            counter.fetch_add(1, Ordering::Relaxed);
            async { Outcome::Done }.boxed()
        })),
    );
    while ran.load(Ordering::Relaxed) < args.jobs || !queue::depth(db).await?.is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    pool.stop(Duration::from_secs(5)).await;

    // Pickup latency, one job at a time.
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(args.pickups)));
    let record = latencies.clone();
    let pool = WorkerPool::start(
        db.clone(),
        options(16),
        noop(Arc::new(move |job| {
            let waited = Timestamp::now().since(job.created_at);
            if let Ok(mut l) = record.lock() {
                l.push(waited.as_micros() as u64);
            }
            async { Outcome::Done }.boxed()
        })),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..args.pickups {
        enqueue(db, &[NewJob::now(JobKind::Noop, None, 3)]).await?;
        // Leave the pool idle again before the next one.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    while latencies.lock().map(|l| l.len()).unwrap_or(0) < args.pickups {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pool.stop(Duration::from_secs(5)).await;
    let mut sorted = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    sorted.sort_unstable();

    println!(
        "{:<9} {:>8} {:>5} {:>10.2} {:>10.0} {:>14.2} {:>14.2}",
        match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        },
        args.jobs,
        args.concurrency,
        elapsed.as_secs_f64(),
        args.jobs as f64 / elapsed.as_secs_f64(),
        percentile_ms(&sorted, 0.50),
        percentile_ms(&sorted, 0.99),
    );
    Ok(())
}
