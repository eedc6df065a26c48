//! Benchmarks, each printing figures rather than asserting them.
//!
//! `errand bench`: starts a real `errand serve` process on a fresh database and drives
//! `POST /orders` and `GET /orders/{id}` at several concurrencies, printing requests/s
//! and latency percentiles. Load comes from this process, over loopback HTTP.
//! `errand bench-store`: the demo store's checkouts. `errand bench-queue`,
//! `errand bench-orders` and `errand bench-webhooks`: the engine; `errand bench-checkout`:
//! one checkout through the browser and HTTP drivers and a Playwright script;
//! `errand bench-backlog`: memory under a long queue (see their modules).

pub mod backlog;
pub mod checkout;
pub mod orders;
pub mod queue;
pub mod webhooks;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Databases to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Backend::Sqlite, Backend::Postgres])]
    pub databases: Vec<Backend>,
    /// Concurrent connections, one run each.
    #[arg(long, value_delimiter = ',', default_values_t = [16, 64])]
    pub concurrency: Vec<usize>,
    /// Seconds per endpoint and concurrency.
    #[arg(long, default_value_t = 15)]
    pub duration: u64,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find the errand binary")?,
    };
    print_header();
    for backend in &args.databases {
        let target = Target::start(&binary, *backend, &args.postgres_url).await?;
        let result = measure(&target, &args).await;
        target.stop().await;
        result?;
    }
    Ok(())
}

async fn measure(target: &Target, args: &BenchArgs) -> anyhow::Result<()> {
    let name = match target.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    for &concurrency in &args.concurrency {
        let duration = Duration::from_secs(args.duration);
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .build()?;
        let post = drive(concurrency, duration, {
            let (client, base, key) = (client.clone(), target.base.clone(), target.key.clone());
            let counter = Arc::new(AtomicU64::new(0));
            let run = format!("{:08x}", rand::random::<u32>());
            move |_| {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let body = order_body(&format!("bench-{run}-{n}"));
                let request = client
                    .post(format!("{base}/orders"))
                    .bearer_auth(&key)
                    .json(&body);
                async move {
                    let response = request.send().await.ok()?;
                    if response.status() != 201 {
                        return None;
                    }
                    let order: Value = response.json().await.ok()?;
                    order["id"].as_str().map(str::to_string)
                }
            }
        })
        .await;
        post.print(name, "POST /orders", concurrency);

        let ids = Arc::new(post.ids.clone());
        if ids.is_empty() {
            bail!("no order was created; is the server healthy?");
        }
        let get = drive(concurrency, duration, {
            let (client, base, key) = (client.clone(), target.base.clone(), target.key.clone());
            let counter = Arc::new(AtomicU64::new(0));
            move |_| {
                let n = counter.fetch_add(1, Ordering::Relaxed) as usize;
                let id = ids[n % ids.len()].clone();
                let request = client.get(format!("{base}/orders/{id}")).bearer_auth(&key);
                async move {
                    let response = request.send().await.ok()?;
                    let ok = response.status() == 200;
                    let _ = response.bytes().await.ok()?;
                    ok.then_some(id)
                }
            }
        })
        .await;
        get.print(name, "GET /orders/{id}", concurrency);
    }
    Ok(())
}

fn print_header() {
    println!(
        "{:<9} {:<20} {:>4} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "database", "endpoint", "conc", "requests", "req/s", "p50 ms", "p99 ms", "errors"
    );
}

struct Outcome {
    latencies_us: Vec<u64>,
    errors: u64,
    elapsed: Duration,
    ids: Vec<String>,
}

/// The `p` quantile (0 to 1) of sorted microseconds, in milliseconds.
fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted_us.len() as f64 * p).ceil() as usize).clamp(1, sorted_us.len()) - 1;
    sorted_us[i] as f64 / 1000.0
}

impl Outcome {
    fn print(&self, database: &str, endpoint: &str, concurrency: usize) {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let pct = |p: f64| percentile_ms(&sorted, p);
        let requests = sorted.len() as u64 + self.errors;
        println!(
            "{:<9} {:<20} {:>4} {:>9} {:>9.0} {:>9.2} {:>9.2} {:>7}",
            database,
            endpoint,
            concurrency,
            requests,
            sorted.len() as f64 / self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            self.errors
        );
    }
}

/// Runs `concurrency` loops of `request(worker index)` for `duration`; a request
/// yielding `None` is an error. Latency is measured from send to the complete response.
async fn drive<F, Fut>(concurrency: usize, duration: Duration, request: F) -> Outcome
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Option<String>> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let request = request.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut ids = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match request(worker).await {
                    Some(id) => {
                        latencies.push(sent.elapsed().as_micros() as u64);
                        ids.push(id);
                    }
                    None => errors += 1,
                }
            }
            (latencies, ids, errors)
        }));
    }
    let mut outcome = Outcome {
        latencies_us: vec![],
        errors: 0,
        elapsed: Duration::ZERO,
        ids: vec![],
    };
    for worker in workers {
        if let Ok((latencies, ids, errors)) = worker.await {
            outcome.latencies_us.extend(latencies);
            outcome.ids.extend(ids);
            outcome.errors += errors;
        }
    }
    outcome.elapsed = started.elapsed();
    outcome
}

/// A realistic order: two products (one with variants), a full US address, metadata.
fn order_body(idempotency_key: &str) -> Value {
    json!({
        "products": [
            {"url": "https://store.example/dp/B0BENCH001", "quantity": 2,
             "variant": [{"label": "Color", "value": "Black"}, {"label": "Size", "value": "M"}]},
            {"url": "https://store.example/dp/B0BENCH002", "quantity": 1}
        ],
        "shipping_address": {
            "first_name": "Grace", "last_name": "Hopper", "address_line1": "1701 Navy Way",
            "address_line2": "Suite 200", "city": "Arlington", "state": "VA",
            "postal_code": "22202", "phone_number": "(703) 555-0142", "country": "US"
        },
        "max_price": 15999,
        "idempotency_key": idempotency_key,
        "po_number": "PO-2026-0042",
        "metadata": {"customer_id": "cus_8842", "channel": "bench"}
    })
}

/// An `errand serve` process on a throw-away database.
struct Target {
    backend: Backend,
    base: String,
    key: String,
    server: Child,
    scratch: Scratch,
}

impl Target {
    /// An API-only node: orders are stored with their placement jobs, which nothing
    /// runs (the engine has benchmarks of its own). Products are on a host the
    /// configuration maps to a retailer.
    async fn start(
        binary: &Path,
        backend: Backend,
        postgres_admin_url: &str,
    ) -> anyhow::Result<Target> {
        let config = "worker_concurrency = 0\n\n[[retailers]]\nname = \"bench\"\ndriver = \"demo-http\"\n\
                      base_url = \"http://127.0.0.1:9\"\nhosts = [\"store.example\"]\n";
        Self::start_with(binary, backend, postgres_admin_url, config).await
    }

    /// A server with `config` as its `errand.toml`.
    async fn start_with(
        binary: &Path,
        backend: Backend,
        postgres_admin_url: &str,
        config_text: &str,
    ) -> anyhow::Result<Target> {
        let scratch = Scratch::new(backend, postgres_admin_url).await?;
        let data_dir = scratch.path();
        let port = free_port()?;
        let config = data_dir.join("errand.toml");
        std::fs::write(&config, config_text)?;
        let env = |cmd: &mut Command| {
            cmd.env("ERRAND_DATA_DIR", data_dir)
                .env("ERRAND_CONFIG", &config)
                .env("ERRAND_LISTEN", format!("127.0.0.1:{port}"))
                .env_remove("RUST_LOG")
                .env("ERRAND_DEMO_STORE", "false")
                .env_remove("ERRAND_DATABASE_URL");
            if let Some(url) = &scratch.database_url {
                cmd.env("ERRAND_DATABASE_URL", url);
            }
        };
        let mut keys = Command::new(binary);
        keys.args(["keys", "create", "--name", "bench"]);
        env(&mut keys);
        let output = keys
            .stderr(Stdio::inherit())
            .output()
            .await
            .context("cannot run errand keys create")?;
        if !output.status.success() {
            bail!("errand keys create failed");
        }
        let key = String::from_utf8(output.stdout)?.trim().to_string();
        let mut serve = Command::new(binary);
        // The server logs as in production (level info), into a file like a deployment would.
        let log = std::fs::File::create(data_dir.join("server.log"))?;
        serve
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        env(&mut serve);
        let server = serve.spawn().context("cannot start errand serve")?;
        let base = format!("http://127.0.0.1:{port}");
        let target = Target {
            backend,
            base,
            key,
            server,
            scratch,
        };
        target.wait_healthy().await?;
        Ok(target)
    }

    async fn wait_healthy(&self) -> anyhow::Result<()> {
        wait_ready(&format!("{}/readyz", self.base)).await
    }

    async fn stop(mut self) {
        if let Some(pid) = self.server.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server.wait()).await;
        let _ = self.server.kill().await;
        let _ = self.scratch.remove().await;
    }
}

/// A benchmark run's throw-away storage: a temporary directory and, on PostgreSQL, a
/// fresh database that [`Scratch::remove`] drops.
struct Scratch {
    dir: tempfile::TempDir,
    /// `None` on SQLite (the default file under the data directory).
    database_url: Option<String>,
    /// The admin URL and name of the database to drop.
    postgres: Option<(String, String)>,
}

impl Scratch {
    async fn new(backend: Backend, postgres_admin_url: &str) -> anyhow::Result<Scratch> {
        let dir = tempfile::tempdir()?;
        let (database_url, postgres) = match backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres => {
                let name = format!("errand_bench_{:08x}", rand::random::<u32>());
                let url = create_postgres_database(postgres_admin_url, &name).await?;
                (Some(url), Some((postgres_admin_url.to_string(), name)))
            }
        };
        Ok(Scratch {
            dir,
            database_url,
            postgres,
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    async fn remove(self) -> anyhow::Result<()> {
        if let Some((admin_url, name)) = &self.postgres {
            drop_postgres_database(admin_url, name).await?;
        }
        Ok(())
    }
}

async fn create_postgres_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .with_context(|| {
            format!(
                "cannot connect to PostgreSQL at {}",
                crate::storage::redact_url(admin_url)
            )
        })?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    let mut url = url::Url::parse(admin_url)?;
    url.set_path(name);
    Ok(url.to_string())
}

async fn drop_postgres_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    Ok(())
}

/// A port nothing listens on right now, for a process about to be started.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A demo store started as its own process for a benchmark, its data in `dir/store`.
pub(super) struct StoreProcess {
    pub child: Child,
    pub url: String,
    pub admin_token: String,
}

impl StoreProcess {
    /// Starts it and waits until it answers; `product` is restocked for the run.
    pub async fn start(binary: &Path, dir: &Path, product: &str) -> anyhow::Result<StoreProcess> {
        let port = free_port()?;
        let child = Command::new(binary)
            .args(["demo-store", "--port", &port.to_string(), "--data"])
            .arg(dir.join("store"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("store.log"))?)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start errand demo-store")?;
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(&format!("{url}/healthz")).await?;
        let admin_token = std::fs::read_to_string(dir.join("store/admin-token"))?
            .trim()
            .to_string();
        reqwest::Client::new()
            .put(format!("{url}/api/admin/stock/{product}"))
            .bearer_auth(&admin_token)
            .json(&json!({"quantity": 1_000_000_000_i64}))
            .send()
            .await?
            .error_for_status()?;
        Ok(StoreProcess {
            child,
            url,
            admin_token,
        })
    }
}

/// Waits until `url` answers 2xx (a freshly started server).
async fn wait_ready(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{url} did not become ready")
}

#[derive(Args, Debug, Clone)]
pub struct StoreBenchArgs {
    /// Concurrent shoppers (each with its own account and cart), one run each.
    #[arg(long, value_delimiter = ',', default_values_t = [16, 64])]
    pub concurrency: Vec<usize>,
    /// Seconds per run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// `errand` binary whose demo store to measure (default: this one).
    #[arg(long)]
    pub binary: Option<PathBuf>,
}

/// The product every benchmark checkout buys (no variants; restocked for the run).
const STORE_BENCH_PRODUCT: &str = "B0DEMO0005";

/// `errand bench-store`: complete checkouts per second through the demo store's JSON API.
/// A checkout is three requests: add to cart, quote, place (with the quoted total).
pub async fn run_store(args: StoreBenchArgs) -> anyhow::Result<()> {
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find the errand binary")?,
    };
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let log = std::fs::File::create(dir.path().join("store.log"))?;
    let mut store = Command::new(&binary)
        .args(["demo-store", "--port", &port.to_string(), "--data"])
        .arg(dir.path().join("store"))
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start errand demo-store")?;
    let base = format!("http://127.0.0.1:{port}");
    let result = measure_store(&base, &dir.path().join("store"), &args).await;
    let _ = store.kill().await;
    result
}

async fn measure_store(base: &str, data: &Path, args: &StoreBenchArgs) -> anyhow::Result<()> {
    wait_ready(&format!("{base}/healthz")).await?;
    let admin = std::fs::read_to_string(data.join("admin-token"))?
        .trim()
        .to_string();
    let client = reqwest::Client::new();
    client
        .put(format!("{base}/api/admin/stock/{STORE_BENCH_PRODUCT}"))
        .bearer_auth(&admin)
        .json(&json!({"quantity": 1_000_000_000_i64}))
        .send()
        .await?
        .error_for_status()?;
    // A "request" here is a whole checkout: add to cart, quote, place.
    print_header();
    for &concurrency in &args.concurrency {
        let mut tokens = Vec::with_capacity(concurrency);
        for i in 0..concurrency {
            let email = format!("shopper-{concurrency}-{i}@bench.test");
            client
                .post(format!("{base}/api/admin/customers"))
                .bearer_auth(&admin)
                .json(&json!({"email": email, "password": "bench"}))
                .send()
                .await?
                .error_for_status()?;
            let session: Value = client
                .post(format!("{base}/api/session"))
                .json(&json!({"email": email, "password": "bench"}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            tokens.push(session["token"].as_str().unwrap_or_default().to_string());
        }
        let tokens = Arc::new(tokens);
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .build()?;
        let base = base.to_string();
        let outcome = drive(
            concurrency,
            Duration::from_secs(args.duration),
            move |worker| {
                let (client, base, token) = (client.clone(), base.clone(), tokens[worker].clone());
                async move { checkout(&client, &base, &token).await }
            },
        )
        .await;
        outcome.print("store", "checkout (3 calls)", concurrency);
    }
    Ok(())
}

/// One checkout; the merchant order id when it was placed.
async fn checkout(client: &reqwest::Client, base: &str, token: &str) -> Option<String> {
    let address = json!({"first_name": "Grace", "last_name": "Hopper", "address_line1": "1701 Navy Way",
                         "city": "Arlington", "state": "VA", "postal_code": "22202", "country": "US"});
    client
        .post(format!("{base}/api/cart/items"))
        .bearer_auth(token)
        .json(&json!({"product_id": STORE_BENCH_PRODUCT, "quantity": 1}))
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?;
    let quote: Value = client
        .post(format!("{base}/api/checkout/quote"))
        .bearer_auth(token)
        .json(&json!({"shipping_address": address}))
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?
        .json()
        .await
        .ok()?;
    let placed: Value = client
        .post(format!("{base}/api/checkout/place"))
        .bearer_auth(token)
        .json(&json!({"shipping_address": address, "expected_total": quote["totals"]["total"], "buyer_reference": "bench"}))
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?
        .json()
        .await
        .ok()?;
    placed["order"]["id"].as_str().map(str::to_string)
}
