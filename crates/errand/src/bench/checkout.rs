//! `errand bench-checkout`: the wall time of one checkout at the demo store (sign in,
//! cart, checkout, review, place, confirmation) through the `browser` driver (the demo
//! recipe in headless Chromium) and through the `demo-http` driver, for the same
//! product; and, as the anchor a user would otherwise write, the same purchase by a
//! hand-written Playwright script (`playwright_checkout.py`, Python `playwright` from
//! PyPI driving the same Chromium). The three run interleaved, one checkout at a time,
//! against one store process. Then the peak memory (PSS) of Chromium with 1 and with
//! `--concurrency` checkouts at once.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use super::{StoreProcess, percentile_ms};
use crate::retailers::browser::chromium::Chromium;
use crate::retailers::browser::driver::BrowserDriver;
use crate::retailers::browser::trial::sample_address;
use crate::retailers::demo_http::DemoHttpDriver;
use crate::retailers::{CheckoutRequest, Credentials, Driver, LineRequest};

/// The hand-written Playwright checkout, written next to the run's data.
const PLAYWRIGHT_SCRIPT: &str = include_str!("playwright_checkout.py");
/// A product without variants, restocked for the run.
const PRODUCT: &str = "B0DEMO0005";
const PASSWORD: &str = "bench-password";

#[derive(Args, Debug, Clone)]
pub struct CheckoutBenchArgs {
    /// Checkouts per way of buying (after one warm-up each).
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Checkouts at once for the memory figure (compared with one alone).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    #[arg(long, env = "ERRAND_CHROMIUM_PATH", default_value = crate::retailers::browser::DEFAULT_CHROMIUM_PATH)]
    pub chromium: PathBuf,
    /// The Python with `playwright` installed (`pip install playwright`).
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Leave out the Playwright anchor.
    #[arg(long)]
    pub no_playwright: bool,
    /// `errand` binary whose demo store to buy from (default: this one).
    #[arg(long)]
    pub binary: Option<PathBuf>,
}

pub async fn run(args: CheckoutBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    anyhow::ensure!(
        (1..=64).contains(&args.concurrency),
        "--concurrency must be between 1 and 64"
    );
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find the errand binary")?,
    };
    let scratch = tempfile::Builder::new()
        .prefix("errand-bench-checkout-")
        .tempdir()?;
    let store = Store::start(&binary, scratch.path()).await?;
    let result = measure(&args, &store, scratch.path()).await;
    store.stop().await;
    result
}

async fn measure(args: &CheckoutBenchArgs, store: &Store, dir: &Path) -> anyhow::Result<()> {
    let accounts = args.concurrency.max(3);
    store.add_customers(accounts).await?;
    let base = url::Url::parse(store.url())?;
    let chromium = Chromium::new(&args.chromium, args.concurrency);
    let step_timeout =
        Duration::from_secs_f64(crate::retailers::browser::DEFAULT_STEP_TIMEOUT_SECONDS);
    let recipe = crate::recipes::Recipe::parse("builtin:demo", crate::recipes::DEMO_RECIPE)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let browser = BrowserDriver::new(
        "demo",
        recipe,
        base.clone(),
        chromium.clone(),
        step_timeout,
        None,
    );
    let http = DemoHttpDriver::new("demo", base, step_timeout)?;
    let mut playwright = if args.no_playwright {
        None
    } else {
        match Playwright::start(args, store.url(), dir).await {
            Ok(p) => Some(p),
            Err(e) => {
                println!("Playwright anchor left out: {e:#}");
                None
            }
        }
    };

    println!(
        "One checkout of {PRODUCT} at the demo store, {} runs each after a warm-up, interleaved",
        args.runs
    );
    let product = format!("{}/dp/{PRODUCT}", store.url());
    let cold = Instant::now();
    checkout(&browser, &store.customer(0), &product, "warm-browser").await?;
    println!(
        "  browser driver's first checkout (starts Chromium): {:.0} ms",
        cold.elapsed().as_secs_f64() * 1000.0
    );
    checkout(&http, &store.customer(1), &product, "warm-http").await?;
    if let Some(p) = playwright.as_mut() {
        p.checkout(&store.customer(2), &product, "warm-playwright")
            .await?;
    }
    let (mut by_browser, mut by_http, mut by_playwright) = (vec![], vec![], vec![]);
    for run in 0..args.runs {
        by_browser.push(
            checkout(
                &browser,
                &store.customer(0),
                &product,
                &format!("browser-{run}"),
            )
            .await?,
        );
        by_http.push(checkout(&http, &store.customer(1), &product, &format!("http-{run}")).await?);
        if let Some(p) = playwright.as_mut() {
            by_playwright.push(
                p.checkout(&store.customer(2), &product, &format!("playwright-{run}"))
                    .await?,
            );
        }
    }
    if let Some(p) = playwright.take() {
        p.stop().await;
    }
    for times in [&mut by_browser, &mut by_http, &mut by_playwright] {
        times.sort_unstable();
    }
    let anchor = (!by_playwright.is_empty()).then(|| percentile_ms(&by_playwright, 0.5));
    println!(
        "\n{:<34} {:>5} {:>9} {:>9} {:>12}",
        "way of buying", "runs", "p50 ms", "p95 ms", "p50 / anchor"
    );
    for (name, times) in [
        ("browser driver (recipe, Chromium)", &by_browser),
        ("demo-http driver (JSON API)", &by_http),
        ("Playwright script (the anchor)", &by_playwright),
    ] {
        if times.is_empty() {
            continue;
        }
        let p50 = percentile_ms(times, 0.5);
        let ratio = anchor.map_or_else(|| "-".into(), |a| format!("{:.2}x", p50 / a));
        println!(
            "{name:<34} {:>5} {p50:>9.0} {:>9.0} {ratio:>12}",
            times.len(),
            percentile_ms(times, 0.95),
        );
    }

    memory(args, &browser, &chromium, store, &product).await?;
    chromium.shutdown().await;
    Ok(())
}

/// Peak PSS of the Chromium process tree during one checkout alone and during
/// `concurrency` at once.
async fn memory(
    args: &CheckoutBenchArgs,
    browser: &BrowserDriver,
    chromium: &Chromium,
    store: &Store,
    product: &str,
) -> anyhow::Result<()> {
    let pid = chromium.pid().await.context("Chromium is not running")?;
    let idle = tree_pss_kib(pid);
    let peak_of = |n: usize| async move {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = tokio::spawn({
            let (peak, stop) = (peak.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(tree_pss_kib(pid), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        let runs = (0..n).map(|i| {
            let customer = store.customer(i);
            async move { checkout(browser, &customer, product, &format!("memory-{n}-{i}")).await }
        });
        let results = futures_util::future::join_all(runs).await;
        stop.store(true, Ordering::Relaxed);
        let _ = sampler.await;
        for result in results {
            result?;
        }
        anyhow::Ok(peak.load(Ordering::Relaxed))
    };
    let one = peak_of(1).await?;
    let many = peak_of(args.concurrency).await?;
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("\nChromium's memory (PSS of the browser and its helpers):");
    println!("  idle, no checkout open:        {:>7.0} MiB", mib(idle));
    println!("  peak, 1 checkout:              {:>7.0} MiB", mib(one));
    println!(
        "  peak, {:>2} checkouts at once:    {:>7.0} MiB",
        args.concurrency,
        mib(many)
    );
    if args.concurrency > 1 {
        println!(
            "  per extra concurrent checkout: {:>7.0} MiB",
            mib(many.saturating_sub(one)) / (args.concurrency - 1) as f64
        );
    }
    Ok(())
}

/// Sign in, quote and place: one purchase; its wall time in microseconds.
async fn checkout(
    driver: &dyn Driver,
    credentials: &Credentials,
    product_url: &str,
    reference: &str,
) -> anyhow::Result<u64> {
    let request = CheckoutRequest::new(
        vec![LineRequest {
            url: product_url.to_string(),
            quantity: 1,
            variant: None,
        }],
        sample_address(),
        format!("{reference}-{}", uuid::Uuid::now_v7().simple()),
    );
    let started = Instant::now();
    let session = driver
        .sign_in(credentials)
        .await
        .map_err(|e| anyhow::anyhow!("sign-in failed: {e}"))?;
    let placed = async {
        let quote = driver.quote(&session, &request).await?;
        let send_by = crate::storage::Timestamp::now().after(std::time::Duration::from_secs(600));
        driver
            .place(&session, &request, quote.price.total, send_by)
            .await
    }
    .await;
    driver.release(&session).await;
    placed.map_err(|e| anyhow::anyhow!("checkout {reference} failed: {e}"))?;
    Ok(started.elapsed().as_micros() as u64)
}

/// The demo store, as its own process.
struct Store {
    process: StoreProcess,
    client: reqwest::Client,
}

impl Store {
    async fn start(binary: &Path, dir: &Path) -> anyhow::Result<Store> {
        Ok(Store {
            process: StoreProcess::start(binary, dir, PRODUCT).await?,
            client: reqwest::Client::new(),
        })
    }

    fn url(&self) -> &str {
        &self.process.url
    }

    async fn add_customers(&self, n: usize) -> anyhow::Result<()> {
        for i in 0..n {
            self.client
                .post(format!("{}/api/admin/customers", self.url()))
                .bearer_auth(&self.process.admin_token)
                .json(&json!({"email": customer_email(i), "password": PASSWORD}))
                .send()
                .await?
                .error_for_status()?;
        }
        Ok(())
    }

    fn customer(&self, i: usize) -> Credentials {
        Credentials {
            email: customer_email(i),
            password: PASSWORD.into(),
            totp_secret: None,
        }
    }

    async fn stop(mut self) {
        let _ = self.process.child.kill().await;
    }
}

fn customer_email(i: usize) -> String {
    format!("shopper-{i}@bench.test")
}

/// The Playwright script, started once (its browser launched), fed one job a line.
struct Playwright {
    child: Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Playwright {
    async fn start(
        args: &CheckoutBenchArgs,
        store_url: &str,
        dir: &Path,
    ) -> anyhow::Result<Playwright> {
        let script = dir.join("playwright_checkout.py");
        std::fs::write(&script, PLAYWRIGHT_SCRIPT)?;
        let mut child = Command::new(&args.python)
            .arg(&script)
            .args(["--base-url", store_url, "--chromium"])
            .arg(&args.chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("playwright.log"))?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {}", args.python))?;
        let stdin = child.stdin.take().context("stdin")?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        match ready {
            Ok(Ok(Some(line))) if line.trim() == "ready" => Ok(Playwright {
                child,
                stdin,
                lines,
            }),
            _ => {
                let _ = child.kill().await;
                let log = std::fs::read_to_string(dir.join("playwright.log")).unwrap_or_default();
                let last = log.lines().last().unwrap_or("no output").to_string();
                bail!(
                    "the Playwright script did not start ({last}); install it with `pip install playwright`"
                )
            }
        }
    }

    /// One checkout; the script's own timing of it, in microseconds.
    async fn checkout(
        &mut self,
        customer: &Credentials,
        product_url: &str,
        reference: &str,
    ) -> anyhow::Result<u64> {
        let job = json!({
            "email": customer.email, "password": customer.password,
            "url": product_url,
            "quantity": 1,
            "reference": format!("{reference}-{}", uuid::Uuid::now_v7().simple()),
        });
        self.stdin.write_all(format!("{job}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        let line = tokio::time::timeout(Duration::from_secs(120), self.lines.next_line())
            .await
            .context("the Playwright script took over two minutes")??
            .context("the Playwright script exited")?;
        let answer: Value = serde_json::from_str(&line)?;
        match answer["ms"].as_f64() {
            Some(ms) => Ok((ms * 1000.0) as u64),
            None => bail!("the Playwright checkout failed: {}", answer["error"]),
        }
    }

    async fn stop(mut self) {
        drop(self.stdin);
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// PSS of `root` and its descendants, in KiB (from `/proc/*/smaps_rollup`).
fn tree_pss_kib(root: u32) -> u64 {
    let mut parents = vec![];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The parent is the second field after the command's closing parenthesis.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    tree.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok())
        .filter_map(|rollup| {
            rollup
                .lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum()
}
