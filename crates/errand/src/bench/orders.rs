//! `errand bench-orders`: end-to-end placement. A demo store and an `errand serve`
//! (API and workers) run as separate processes on a fresh database; orders are posted
//! over HTTP and placed at the store through its JSON API.
//!
//! The latency of an order is from its `created_at` (set by `POST /orders`) to its
//! `order_placed` milestone, both Errand's own timestamps. "Alone" posts orders one at
//! a time, waiting for each; "burst" posts `--burst` orders at once and reports how
//! fast they drain (orders / (last placed − first created)).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::{Backend, Scratch, StoreProcess, free_port, percentile_ms, wait_ready};
use crate::storage::Timestamp;

#[derive(Args, Debug, Clone)]
pub struct OrdersBenchArgs {
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

/// A product without variants, restocked for the run.
const PRODUCT: &str = "B0DEMO0005";

pub async fn run(args: OrdersBenchArgs) -> anyhow::Result<()> {
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find the errand binary")?,
    };
    println!(
        "{:<9} {:<7} {:>6} {:>9} {:>9} {:>9} {:>8}",
        "database", "run", "orders", "p50 ms", "p99 ms", "orders/s", "failed"
    );
    for backend in &args.databases {
        let scratch = Scratch::new(*backend, &args.postgres_url).await?;
        let result = async {
            let cluster = Cluster::start(&binary, &scratch, args.workers, "").await?;
            let result = measure(&cluster, *backend, &args, scratch.database_url.as_deref()).await;
            cluster.stop().await;
            result
        }
        .await;
        scratch.remove().await?;
        result?;
    }
    Ok(())
}

/// A demo store and an `errand serve` (API and workers) as separate processes, on a
/// throw-away database, with an API key.
pub(super) struct Cluster {
    store: Child,
    serve: Child,
    pub bench: Bench,
}

impl Cluster {
    /// Starts both; `extra_config` is appended to Errand's configuration file.
    pub async fn start(
        binary: &Path,
        scratch: &Scratch,
        workers: usize,
        extra_config: &str,
    ) -> anyhow::Result<Cluster> {
        let dir = scratch.path();
        let store = StoreProcess::start(binary, dir, PRODUCT).await?;
        let store_url = store.url.clone();

        let port = free_port()?;
        let config = dir.join("errand.toml");
        let database = scratch
            .database_url
            .as_ref()
            .map(|url| format!("database_url = {url:?}\n"))
            .unwrap_or_default();
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = {:?}\n{database}demo_store = false\n\
                 worker_concurrency = {workers}\n{extra_config}\n[[retailers]]\nname = \"demo\"\n\
                 driver = \"demo-http\"\nbase_url = \"{store_url}\"\nsandbox = true\n\
                 tracking_interval_seconds = 3600.0\n",
                dir.join("data"),
            ),
        )?;
        let errand = |arguments: &[&str]| {
            let mut cmd = Command::new(binary);
            cmd.args(arguments)
                .env("ERRAND_CONFIG", &config)
                .env_remove("ERRAND_DATABASE_URL")
                .env_remove("RUST_LOG")
                .kill_on_drop(true);
            cmd
        };
        let output = errand(&["keys", "create", "--name", "bench"])
            .stderr(Stdio::inherit())
            .output()
            .await?;
        if !output.status.success() {
            bail!("errand keys create failed");
        }
        let key = String::from_utf8(output.stdout)?.trim().to_string();
        let serve = errand(&["serve"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("serve.log"))?)
            .spawn()
            .context("cannot start errand serve")?;
        let api = format!("http://127.0.0.1:{port}");
        wait_ready(&format!("{api}/readyz")).await?;
        let bench = Bench::new(&api, &key, &store_url, store.admin_token.clone())?;
        Ok(Cluster {
            store: store.child,
            serve,
            bench,
        })
    }

    pub async fn stop(mut self) {
        for child in [&mut self.serve, &mut self.store] {
            if let Some(pid) = child.id() {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            let _ = child.kill().await;
        }
    }
}

async fn measure(
    cluster: &Cluster,
    backend: Backend,
    args: &OrdersBenchArgs,
    postgres_url: Option<&str>,
) -> anyhow::Result<()> {
    let bench = &cluster.bench;
    bench.add_accounts(args.accounts).await?;
    let name = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };

    let mut alone = Vec::with_capacity(args.alone);
    let mut failed = 0;
    for _ in 0..args.alone {
        let id = bench.post_order().await?;
        let order = bench.wait_settled(&id).await?;
        match bench.placed_after(&order).await? {
            Some((_, latency)) => alone.push(latency),
            None => failed += 1,
        }
    }
    print_row(name, "alone", &mut alone, None, failed);

    let postgres = match postgres_url {
        Some(url) => Some(PgCost::connect(url).await?),
        None => None,
    };
    let before = match &postgres {
        Some(pg) => Some(pg.read().await?),
        None => None,
    };
    let started = Instant::now();
    let ids: Vec<anyhow::Result<String>> = futures_util::stream::iter(0..args.burst)
        .map(|_| bench.post_order())
        .buffer_unordered(64)
        .collect()
        .await;
    let ids = ids.into_iter().collect::<anyhow::Result<Vec<String>>>()?;
    let posted = started.elapsed();
    // Polled gently, so that measuring does not load the server being measured.
    bench.wait_until_none_open().await?;
    let after = match &postgres {
        Some(pg) => Some(pg.read().await?),
        None => None,
    };
    let mut latencies = Vec::with_capacity(ids.len());
    let mut failed = 0;
    let mut first_created: Option<Timestamp> = None;
    let mut last_placed: Option<Timestamp> = None;
    for id in &ids {
        let order = bench.wait_settled(id).await?;
        let created = Timestamp::parse(order["created_at"].as_str().unwrap_or_default());
        match bench.placed_after(&order).await? {
            Some((placed, latency)) => {
                latencies.push(latency);
                last_placed = last_placed.max(Some(placed));
                first_created = match (first_created, created) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            None => failed += 1,
        }
    }
    let rate = match (first_created, last_placed) {
        (Some(first), Some(last)) => Some(latencies.len() as f64 / last.since(first).as_secs_f64()),
        _ => None,
    };
    print_row(name, "burst", &mut latencies, rate, failed);
    println!(
        "{name}: {} orders posted in {:.2} s",
        ids.len(),
        posted.as_secs_f64()
    );
    if let (Some(before), Some(after)) = (before, after) {
        print_cost(&before, &after, latencies.len());
    }
    Ok(())
}

/// What PostgreSQL has done so far: WAL written by the whole server and, when
/// `pg_stat_statements` is loaded, the statements run in the benchmark's database and
/// the WAL they wrote.
struct PgCounters {
    /// The server's WAL position, in bytes.
    wal: u64,
    statements: Option<(i64, i64)>,
}

struct PgCost {
    pool: sqlx::PgPool,
}

impl PgCost {
    async fn connect(url: &str) -> anyhow::Result<PgCost> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await?;
        // Fails harmlessly where the extension is not installed.
        let _ = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&pool)
            .await;
        Ok(PgCost { pool })
    }

    async fn read(&self) -> anyhow::Result<PgCounters> {
        let lsn: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
            .fetch_one(&self.pool)
            .await?;
        // Printed as two hexadecimal halves: high/low.
        let (high, low) = lsn.split_once('/').context("a WAL position")?;
        let wal = (u64::from_str_radix(high, 16)? << 32) | u64::from_str_radix(low, 16)?;
        // Unavailable unless the server preloads it (shared_preload_libraries).
        let statements = sqlx::query_as(
            "SELECT COALESCE(SUM(calls), 0)::int8, COALESCE(SUM(wal_bytes), 0)::int8
             FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&self.pool)
        .await
        .ok();
        Ok(PgCounters { wal, statements })
    }
}

fn print_row(name: &str, run: &str, latencies: &mut [u64], rate: Option<f64>, failed: usize) {
    latencies.sort_unstable();
    println!(
        "{:<9} {:<7} {:>6} {:>9.1} {:>9.1} {:>9} {:>8}",
        name,
        run,
        latencies.len(),
        percentile_ms(latencies, 0.50),
        percentile_ms(latencies, 0.99),
        rate.map(|r| format!("{r:.0}"))
            .unwrap_or_else(|| "-".into()),
        failed
    );
}

pub(super) struct Bench {
    pub client: reqwest::Client,
    pub api: String,
    pub key: String,
    store_url: String,
    admin_token: String,
}

impl Bench {
    fn new(api: &str, key: &str, store_url: &str, admin_token: String) -> anyhow::Result<Bench> {
        Ok(Bench {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()?,
            api: api.to_string(),
            key: key.to_string(),
            store_url: store_url.to_string(),
            admin_token,
        })
    }

    /// Store customers, each added to Errand as a managed account.
    pub async fn add_accounts(&self, n: usize) -> anyhow::Result<()> {
        for i in 0..n {
            let email = format!("buyer-{i}@bench.test");
            self.client
                .post(format!("{}/api/admin/customers", self.store_url))
                .bearer_auth(&self.admin_token)
                .json(&json!({"email": email, "password": "bench-password"}))
                .send()
                .await?
                .error_for_status()?;
            self.client
                .post(format!("{}/managed-accounts", self.api))
                .bearer_auth(&self.key)
                .json(&json!({"retailer": "demo", "email": email, "password": "bench-password"}))
                .send()
                .await?
                .error_for_status()?;
        }
        Ok(())
    }

    pub async fn post_order(&self) -> anyhow::Result<String> {
        let body = json!({
            "products": [{"url": format!("{}/dp/{PRODUCT}", self.store_url), "quantity": 1}],
            "shipping_address": {
                "first_name": "Grace", "last_name": "Hopper", "address_line1": "1701 Navy Way",
                "city": "Arlington", "state": "VA", "postal_code": "22202",
                "phone_number": "(703) 555-0142", "country": "US"
            },
            "max_price": 100_000
        });
        let order: Value = self
            .client
            .post(format!("{}/orders", self.api))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        order["id"]
            .as_str()
            .map(str::to_string)
            .context("no order id")
    }

    /// Waits until no order is pending or in progress, looking every 50 ms.
    async fn wait_until_none_open(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let mut open = 0;
            for status in ["pending", "in_progress"] {
                let page: Value = self
                    .client
                    .get(format!(
                        "{}/orders?limit=1&status_filter={status}",
                        self.api
                    ))
                    .bearer_auth(&self.key)
                    .send()
                    .await?
                    .json()
                    .await?;
                open += page["total"].as_i64().unwrap_or(0);
            }
            if open == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{open} orders were not placed within ten minutes");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_settled(&self, id: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let order: Value = self
                .client
                .get(format!("{}/orders/{id}", self.api))
                .bearer_auth(&self.key)
                .send()
                .await?
                .json()
                .await?;
            if !matches!(order["status"].as_str(), Some("pending" | "in_progress")) {
                return Ok(order);
            }
            if Instant::now() > deadline {
                bail!("order {id} was not placed within five minutes");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// When the order was placed and how long after its creation (µs), if it was.
    async fn placed_after(&self, order: &Value) -> anyhow::Result<Option<(Timestamp, u64)>> {
        if order["status"] != "order_placed" {
            return Ok(None);
        }
        let id = order["id"].as_str().unwrap_or_default();
        let timeline: Value = self
            .client
            .get(format!("{}/orders/{id}/timeline", self.api))
            .bearer_auth(&self.key)
            .send()
            .await?
            .json()
            .await?;
        let placed = timeline["milestones"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["milestone"] == "order_placed")
            .and_then(|m| Timestamp::parse(m["occurred_at"].as_str()?));
        let created = Timestamp::parse(order["created_at"].as_str().unwrap_or_default());
        Ok(match (placed, created) {
            (Some(placed), Some(created)) => {
                Some((placed, placed.since(created).as_micros() as u64))
            }
            _ => None,
        })
    }
}

/// PostgreSQL's work per placed order, from `POST /orders` to placed (the benchmark's
/// own polling included; it is a few statements a second).
fn print_cost(before: &PgCounters, after: &PgCounters, placed: usize) {
    if placed == 0 {
        return;
    }
    let per_order = |total: f64| total / placed as f64;
    let wal = per_order(after.wal.saturating_sub(before.wal) as f64);
    match (before.statements, after.statements) {
        (Some((calls_before, wal_before)), Some((calls_after, wal_after))) => println!(
            "postgres: per placed order: {:.1} statements, {:.0} WAL bytes ({:.0} from statements)",
            per_order((calls_after - calls_before) as f64),
            wal,
            per_order((wal_after - wal_before) as f64)
        ),
        _ => println!(
            "postgres: per placed order: {wal:.0} WAL bytes (statements: load pg_stat_statements with shared_preload_libraries to count them)"
        ),
    }
}
