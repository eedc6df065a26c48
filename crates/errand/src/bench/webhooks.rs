//! `errand bench-webhooks`: webhook delivery end to end. A demo store and an
//! `errand serve` run as separate processes on a fresh database; this process posts
//! orders and receives their webhooks (`order.started` and `order.placed`) on a local
//! HTTP receiver.
//!
//! A webhook's delay is from its event's `timestamp` (when Errand recorded the state
//! change, in the transaction that changed it) to its receipt. "Alone" posts orders one
//! at a time, waiting for both webhooks; "burst" posts `--burst` orders at once and
//! reports webhooks received per second (webhooks / (last receipt − first event)).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::routing::post;
use clap::Args;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::orders::{Bench, Cluster};
use super::{Backend, Scratch, percentile_ms};
use crate::storage::Timestamp;

#[derive(Args, Debug, Clone)]
pub struct WebhooksBenchArgs {
    /// Databases to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Backend::Sqlite, Backend::Postgres])]
    pub databases: Vec<Backend>,
    /// Orders placed one at a time.
    #[arg(long, default_value_t = 30)]
    pub alone: usize,
    /// Orders posted at once.
    #[arg(long, default_value_t = 500)]
    pub burst: usize,
    /// Errand's `worker_concurrency`.
    #[arg(long, default_value_t = 16)]
    pub workers: usize,
    /// Retailer accounts to buy with (one checkout per account at a time).
    #[arg(long, default_value_t = 32)]
    pub accounts: usize,
    /// PostgreSQL server to create a throw-away database on.
    #[arg(
        long,
        env = "ERRAND_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub postgres_url: String,
    /// `errand` binary to benchmark (default: this one).
    #[arg(long)]
    pub binary: Option<std::path::PathBuf>,
}

/// Webhooks each order sends while it is placed.
const WEBHOOKS_PER_ORDER: usize = 2;

pub async fn run(args: WebhooksBenchArgs) -> anyhow::Result<()> {
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find the errand binary")?,
    };
    println!(
        "{:<9} {:<7} {:>8} {:>9} {:>9} {:>10} {:>10}",
        "database", "run", "webhooks", "p50 ms", "p99 ms", "webhooks/s", "duplicates"
    );
    for backend in &args.databases {
        let scratch = Scratch::new(*backend, &args.postgres_url).await?;
        let result = async {
            let cluster = Cluster::start(
                &binary,
                &scratch,
                args.workers,
                "webhooks_allow_private_addresses = true\n",
            )
            .await?;
            let result = measure(&cluster.bench, *backend, &args).await;
            cluster.stop().await;
            result
        }
        .await;
        scratch.remove().await?;
        result?;
    }
    Ok(())
}

/// A webhook as the receiver got it.
struct Receipt {
    id: String,
    event_at: Timestamp,
    received_at: Timestamp,
}

/// A local webhook receiver that answers 200 at once and notes each receipt.
#[derive(Clone, Default)]
struct Receiver {
    receipts: Arc<Mutex<Vec<Receipt>>>,
}

impl Receiver {
    async fn start(&self) -> anyhow::Result<String> {
        let receipts = self.receipts.clone();
        let app = axum::Router::new().route(
            "/hook",
            post(move |body: String| {
                let receipts = receipts.clone();
                async move {
                    let received_at = Timestamp::now();
                    let body: Value = serde_json::from_str(&body).unwrap_or_default();
                    let event_at = body["timestamp"].as_str().and_then(Timestamp::parse);
                    if let (Some(id), Some(event_at)) = (body["id"].as_str(), event_at) {
                        receipts.lock().expect("receipts").push(Receipt {
                            id: id.to_string(),
                            event_at,
                            received_at,
                        });
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(url)
    }

    fn distinct(&self) -> usize {
        let receipts = self.receipts.lock().expect("receipts");
        receipts.iter().map(|r| &r.id).collect::<HashSet<_>>().len()
    }

    async fn wait_for(&self, count: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(600);
        while self.distinct() < count {
            if Instant::now() > deadline {
                bail!("only {} of {count} webhooks arrived", self.distinct());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// Delays (µs, sorted), webhooks per second from the first event to the last
    /// receipt, and duplicates; then forgets what it received.
    fn take(&self) -> (Vec<u64>, f64, usize) {
        let receipts = std::mem::take(&mut *self.receipts.lock().expect("receipts"));
        let mut seen = HashSet::new();
        let mut delays = vec![];
        for r in &receipts {
            if seen.insert(r.id.clone()) {
                delays.push(r.received_at.since(r.event_at).as_micros() as u64);
            }
        }
        delays.sort_unstable();
        let first = receipts.iter().map(|r| r.event_at).min();
        let last = receipts.iter().map(|r| r.received_at).max();
        let rate = match (first, last) {
            (Some(first), Some(last)) => seen.len() as f64 / last.since(first).as_secs_f64(),
            _ => f64::NAN,
        };
        (delays, rate, receipts.len() - seen.len())
    }
}

async fn measure(bench: &Bench, backend: Backend, args: &WebhooksBenchArgs) -> anyhow::Result<()> {
    let receiver = Receiver::default();
    let url = receiver.start().await?;
    bench
        .client
        .put(format!("{}/webhooks/endpoint", bench.api))
        .bearer_auth(&bench.key)
        .json(&json!({ "url": url }))
        .send()
        .await?
        .error_for_status()?;
    bench.add_accounts(args.accounts).await?;
    let name = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };

    for i in 0..args.alone {
        bench.post_order().await?;
        receiver.wait_for((i + 1) * WEBHOOKS_PER_ORDER).await?;
    }
    let (delays, _, duplicates) = receiver.take();
    print_row(name, "alone", &delays, None, duplicates);

    let posted: Vec<anyhow::Result<String>> = futures_util::stream::iter(0..args.burst)
        .map(|_| bench.post_order())
        .buffer_unordered(64)
        .collect()
        .await;
    posted
        .into_iter()
        .collect::<anyhow::Result<Vec<String>>>()?;
    receiver.wait_for(args.burst * WEBHOOKS_PER_ORDER).await?;
    let (delays, rate, duplicates) = receiver.take();
    print_row(name, "burst", &delays, Some(rate), duplicates);
    Ok(())
}

fn print_row(name: &str, run: &str, delays: &[u64], rate: Option<f64>, duplicates: usize) {
    println!(
        "{:<9} {:<7} {:>8} {:>9.1} {:>9.1} {:>10} {:>10}",
        name,
        run,
        delays.len(),
        percentile_ms(delays, 0.50),
        percentile_ms(delays, 0.99),
        rate.map(|r| format!("{r:.0}"))
            .unwrap_or_else(|| "-".into()),
        duplicates
    );
}
