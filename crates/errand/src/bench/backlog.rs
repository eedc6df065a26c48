//! `errand bench-backlog`: memory under a long queue. Starts `errand serve` with its
//! workers on, a retailer that is down and a webhook receiver that refuses connections,
//! posts `--orders` orders (each a placement job and a webhook delivery, both retried
//! with backoff while they fail), then samples the server's memory from
//! `/proc/PID/smaps_rollup` for `--seconds`. It prints resident memory split into
//! anonymous memory (the heap: what must not grow with the queue) and file-backed pages
//! (SQLite's memory map and the binary: the kernel's to reclaim), idle and at their
//! peak under the backlog.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::{Backend, Target, order_body};

#[derive(Args, Debug, Clone)]
pub struct BacklogBenchArgs {
    /// Databases to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Backend::Sqlite, Backend::Postgres])]
    pub databases: Vec<Backend>,
    /// Orders to queue.
    #[arg(long, default_value_t = 100_000)]
    pub orders: u64,
    /// Seconds to watch memory once they are queued.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Concurrent requests while posting.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// PostgreSQL server to create a throw-away database on.
    #[arg(
        long,
        env = "ERRAND_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub postgres_url: String,
    /// `errand` binary to benchmark (default: this one).
    #[arg(long)]
    pub binary: Option<PathBuf>,
}

/// Resident memory of one process, in KiB.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss: u64,
    anonymous: u64,
}

impl Memory {
    fn of(pid: u32) -> Option<Memory> {
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
        let field = |name: &str| {
            rollup
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        };
        Some(Memory {
            rss: field("Rss:")?,
            anonymous: field("Anonymous:")?,
        })
    }

    fn max(self, other: Memory) -> Memory {
        Memory {
            rss: self.rss.max(other.rss),
            anonymous: self.anonymous.max(other.anonymous),
        }
    }

    fn line(self, label: &str) -> String {
        let mib = |kib: u64| kib as f64 / 1024.0;
        format!(
            "  {label:<28} resident {:>6.0} MiB   anonymous {:>6.0} MiB   file-backed {:>6.0} MiB",
            mib(self.rss),
            mib(self.anonymous),
            mib(self.rss.saturating_sub(self.anonymous))
        )
    }
}

pub async fn run(args: BacklogBenchArgs) -> anyhow::Result<()> {
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find the errand binary")?,
    };
    // Workers on; the retailer and the webhook receiver are a port nothing listens on,
    // so every job fails fast and is retried later: the queue only grows.
    let config = "webhooks_allow_private_addresses = true\n\n[[retailers]]\nname = \"bench\"\n\
                  driver = \"demo-http\"\nbase_url = \"http://127.0.0.1:9\"\nhosts = [\"store.example\"]\n";
    for backend in &args.databases {
        let target = Target::start_with(&binary, *backend, &args.postgres_url, config).await?;
        let result = measure(&target, &args).await;
        target.stop().await;
        result?;
    }
    Ok(())
}

async fn measure(target: &Target, args: &BacklogBenchArgs) -> anyhow::Result<()> {
    let pid = target.server.id().context("the server has exited")?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let endpoint = client
        .put(format!("{}/webhooks/endpoint", target.base))
        .bearer_auth(&target.key)
        .json(&json!({"url": "http://127.0.0.1:9/hook"}))
        .send()
        .await?;
    anyhow::ensure!(
        endpoint.status().is_success(),
        "cannot set the webhook endpoint: {}",
        endpoint.status()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = Memory::of(pid).unwrap_or_default();

    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut posters = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let (client, next, failed) = (client.clone(), next.clone(), failed.clone());
        let (url, key, total) = (
            format!("{}/orders", target.base),
            target.key.clone(),
            args.orders,
        );
        posters.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let sent = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&order_body(&format!("backlog-{n}")))
                    .send()
                    .await;
                if !sent.is_ok_and(|r| r.status().is_success()) {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut peak = idle;
    let posting = async {
        for poster in posters {
            let _ = poster.await;
        }
    };
    tokio::pin!(posting);
    loop {
        tokio::select! {
            _ = &mut posting => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                peak = peak.max(Memory::of(pid).unwrap_or_default());
            }
        }
    }
    let posted = started.elapsed();
    let mut last = idle;
    let watch_until = Instant::now() + Duration::from_secs(args.seconds);
    while Instant::now() < watch_until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        last = Memory::of(pid).unwrap_or_default();
        peak = peak.max(last);
    }

    let name = match target.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    println!(
        "{name}: {} orders queued in {:.0} s ({} failed), each a placement and a webhook retried while they fail; watched {} s",
        args.orders,
        posted.as_secs_f64(),
        failed.load(Ordering::Relaxed),
        args.seconds
    );
    println!("{}", idle.line("idle, nothing queued:"));
    println!("{}", peak.line("peak, queue filling and full:"));
    println!("{}", last.line("at the end:"));
    Ok(())
}
