//! The `errand` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::accounts;
use crate::app::App;
use crate::auth::keys;
use crate::config::{LogFormat, Settings};
use crate::queue;
use crate::recipes::Recipe;
use crate::retailers::RetailerSettings;
use crate::storage::{Db, redact_url};

#[derive(Parser)]
#[command(
    name = "errand",
    version,
    about = "Self-hosted ordering API",
    propagate_version = true
)]
struct Cli {
    /// Configuration file (default: ./errand.toml when it exists).
    #[arg(long, global = true, env = "ERRAND_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (migrates the database first).
    Serve {
        /// Listen address, overriding the configuration (e.g. 0.0.0.0:8080).
        #[arg(long)]
        listen: Option<String>,
        /// Do not run the built-in demo store (same as ERRAND_DEMO_STORE=false).
        #[arg(long)]
        no_demo_store: bool,
    },
    /// Run job workers only (placements, tracking): no API. Several processes may
    /// share one PostgreSQL database.
    Worker,
    /// Inspect the job queue and revive dead jobs.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Check and try recipes: the files that say how to buy from a storefront.
    Recipes {
        #[command(subcommand)]
        command: RecipesCommand,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Create, list and revoke API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Measure POST /orders and GET /orders/{id} throughput and latency.
    Bench(crate::bench::BenchArgs),
    /// Measure complete checkouts per second through the demo store's JSON API.
    BenchStore(crate::bench::StoreBenchArgs),
    /// Measure the job queue: no-op jobs per second and pickup latency.
    BenchQueue(crate::bench::queue::QueueBenchArgs),
    /// Measure placement end to end: POST /orders to order_placed at the demo store.
    BenchOrders(crate::bench::orders::OrdersBenchArgs),
    /// Measure webhook delivery: webhooks per second and the delay from a state change
    /// to its receipt, on each database.
    BenchWebhooks(crate::bench::webhooks::WebhooksBenchArgs),
    /// Measure one checkout through the browser driver, the HTTP driver and a
    /// hand-written Playwright script, and Chromium's memory per concurrent checkout.
    BenchCheckout(crate::bench::checkout::CheckoutBenchArgs),
    /// Memory with a long queue: resident, anonymous and file-backed, idle and at peak.
    BenchBacklog(crate::bench::backlog::BacklogBenchArgs),
    /// Run the demo retailer on its own (a storefront to buy from).
    DemoStore {
        /// Port to listen on (on 127.0.0.1).
        #[arg(long, default_value_t = 8090)]
        port: u16,
        /// Where the store keeps its database.
        #[arg(long, default_value = "errand-data/demo-store")]
        data: PathBuf,
        /// Store clock speed: 1 is real time; 86400 makes a store day last a second.
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Only jobs in this state: available, running or dead.
        #[arg(long)]
        state: Option<String>,
        /// Most jobs shown.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Give a dead job a fresh set of attempts, due now.
    Retry { id: i64 },
}

#[derive(Subcommand)]
enum RecipesCommand {
    /// Load recipe files and report every mistake with its line and column.
    Check {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Run a recipe on one product up to the review page in headless Chromium, without
    /// placing: prints each step with its timing and the values read, and saves the
    /// screenshots.
    Try(Box<TryArgs>),
}

#[derive(clap::Args)]
struct TryArgs {
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The product page to try it on.
    #[arg(long)]
    url: url::Url,
    /// A variant choice, as the order's `variant` gives it (repeat for each option).
    #[arg(long = "variant", value_name = "LABEL=VALUE", value_parser = parse_variant)]
    variants: Vec<crate::orders::model::Variant>,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=100))]
    quantity: i32,
    /// The store account to sign in with (or, for a guest checkout, the e-mail to give).
    #[arg(long)]
    email: Option<String>,
    /// The account's password.
    #[arg(long, env = "ERRAND_RECIPE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// The account's authenticator secret (base32), for stores that ask for a code.
    #[arg(long, env = "ERRAND_RECIPE_TOTP_SECRET", hide_env_values = true)]
    totp_secret: Option<String>,
    /// Where to save the screenshots (and the page after a failure).
    #[arg(long, default_value = "recipe-try")]
    output: PathBuf,
    #[arg(long, env = "ERRAND_CHROMIUM_PATH", default_value = crate::retailers::browser::DEFAULT_CHROMIUM_PATH)]
    chromium: PathBuf,
    /// How long a step waits for its element, URL or page.
    #[arg(long, default_value_t = crate::retailers::browser::DEFAULT_STEP_TIMEOUT_SECONDS)]
    step_timeout_seconds: f64,
}

fn parse_variant(text: &str) -> Result<crate::orders::model::Variant, String> {
    match text.split_once('=') {
        Some((label, value)) if !label.trim().is_empty() && !value.trim().is_empty() => {
            Ok(crate::orders::model::Variant {
                label: label.trim().to_string(),
                value: value.trim().to_string(),
            })
        }
        _ => Err(format!("{text:?} is not LABEL=VALUE (e.g. Size=M)")),
    }
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (it is shown only once).
    Create {
        /// A name for the key (and for its new account, unless --account is given).
        #[arg(long)]
        name: String,
        /// A test key (er_test_…): its orders never reach real retailers.
        #[arg(long)]
        test: bool,
        /// Add the key to this existing account instead of creating one.
        #[arg(long)]
        account: Option<Uuid>,
    },
    /// List keys (never their secrets).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key, by id or by the prefix `keys list` shows; effective immediately.
    Revoke { key: String },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Bench(args) => return crate::bench::run(args).await,
        Command::BenchStore(args) => return crate::bench::run_store(args).await,
        Command::BenchQueue(args) => return crate::bench::queue::run(args).await,
        Command::BenchOrders(args) => return crate::bench::orders::run(args).await,
        Command::BenchWebhooks(args) => return crate::bench::webhooks::run(args).await,
        Command::BenchCheckout(args) => return crate::bench::checkout::run(args).await,
        Command::BenchBacklog(args) => return crate::bench::backlog::run(args).await,
        Command::DemoStore {
            port,
            data,
            time_scale,
        } => return demo_store(port, data, time_scale).await,
        Command::Recipes { command } => return run_recipes(command).await,
        _ => {}
    }
    let mut settings = Settings::load(cli.config.as_deref())?;
    init_tracing(settings.log_format);
    match cli.command {
        Command::Serve {
            listen,
            no_demo_store,
        } => {
            if let Some(listen) = listen {
                settings.listen = listen;
                settings.validate()?;
            }
            if no_demo_store {
                settings.demo_store = false;
            }
            serve(settings).await
        }
        Command::Worker => worker(settings).await,
        Command::Jobs { command } => {
            let db = open(&settings).await?;
            let result = run_jobs(&db, command).await;
            db.close().await;
            result
        }
        Command::Migrate => {
            let db = open(&settings).await?;
            println!(
                "database {} is up to date",
                redact_url(&settings.db_options().url)
            );
            db.close().await;
            Ok(())
        }
        Command::Keys { command } => {
            let db = open(&settings).await?;
            let result = run_keys(&db, command).await;
            db.close().await;
            result
        }
        Command::Bench(_)
        | Command::BenchStore(_)
        | Command::BenchQueue(_)
        | Command::BenchOrders(_)
        | Command::BenchWebhooks(_)
        | Command::BenchCheckout(_)
        | Command::BenchBacklog(_)
        | Command::DemoStore { .. }
        | Command::Recipes { .. } => {
            unreachable!("handled above")
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a person at a terminal: not in files, pipes or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Connects and migrates.
async fn open(settings: &Settings) -> anyhow::Result<Db> {
    let db = Db::connect(&settings.db_options()).await?;
    db.migrate().await?;
    Ok(db)
}

async fn serve(mut settings: Settings) -> anyhow::Result<()> {
    let store = if settings.demo_store {
        let options = errand_demo_store::StoreOptions {
            listen: settings.demo_store_listen.clone(),
            data_dir: settings.data_dir.join("demo-store"),
            admin_token: None,
            time_scale: settings.demo_store_time_scale,
        };
        let store = errand_demo_store::start(options).await.context(
            "cannot start the demo store (set ERRAND_DEMO_STORE=false to run without it)",
        )?;
        if !settings.retailers.iter().any(|r| r.name == "demo") {
            settings.retailers.push(RetailerSettings::demo(
                &store.base_url(),
                settings.demo_store_time_scale,
            ));
        }
        Some(store)
    } else {
        None
    };
    let app = App::build(settings).await?;
    let settings = app.settings.clone();
    let db = &app.db;
    let first_key = if keys::any_active_key(db).await? {
        None
    } else {
        let key = keys::create_key(db, "default", true, None)
            .await
            .context("cannot create the first API key")?;
        if store.is_some() {
            // So the first order can be bought: the demo store's own account.
            let demo_account = accounts::NewRetailerAccount {
                retailer: "demo".into(),
                email: errand_demo_store::DEMO_EMAIL.into(),
                secrets: accounts::Secrets {
                    password: errand_demo_store::DEMO_PASSWORD.into(),
                    totp_secret: None,
                },
                active: true,
            };
            accounts::create(db, &app.vault, key.account_id, true, demo_account)
                .await
                .context("cannot create the demo retailer account")?;
        }
        Some(key)
    };
    let database = redact_url(&settings.db_options().url);
    let server = app.serve().await?;
    let workers = app.start_workers()?;
    let base = base_url(server.addr);
    tracing::info!(address = %server.addr, database = %database, workers = settings.queue.worker_concurrency, "errand is listening");
    println!(
        "Errand {} is listening on {base} (database: {database})",
        env!("CARGO_PKG_VERSION")
    );
    println!("API docs: {base}/docs");
    let product_url = match &store {
        Some(store) => {
            println!(
                "Demo store: {} (sign in as {} / {})",
                store.base_url(),
                errand_demo_store::DEMO_EMAIL,
                errand_demo_store::DEMO_PASSWORD
            );
            format!(
                "{}/dp/{}",
                store.base_url(),
                errand_demo_store::FIRST_RUN_PRODUCT
            )
        }
        None => EXAMPLE_PRODUCT_URL.to_string(),
    };
    if let Some(key) = first_key {
        print_first_key(&base, &key.secret, &product_url);
    }
    wait_for_signal().await;
    tracing::info!("shutting down: finishing requests and jobs in flight");
    let grace = std::time::Duration::from_secs(settings.shutdown_grace_seconds);
    server.stop().await?;
    if let Some(workers) = workers {
        workers.stop(grace).await;
    }
    app.db.close().await;
    if let Some(store) = store {
        store.stop().await?;
    }
    tracing::info!("stopped");
    Ok(())
}

/// `errand worker`: the engine without the API.
async fn worker(settings: Settings) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.queue.worker_concurrency > 0,
        "worker_concurrency is 0: this worker would run nothing"
    );
    let app = App::build(settings).await?;
    let settings = app.settings.clone();
    let workers = app.start_workers()?.context("no workers")?;
    tracing::info!(worker = %workers.orders.worker_id, concurrency = settings.queue.worker_concurrency, retailers = ?settings.retailers.iter().map(|r| &r.name).collect::<Vec<_>>(), "errand worker is running");
    println!(
        "Errand worker {} is running {} jobs at a time (database: {})",
        workers.orders.worker_id,
        settings.queue.worker_concurrency,
        redact_url(&settings.db_options().url)
    );
    wait_for_signal().await;
    tracing::info!("shutting down: finishing jobs in flight");
    workers
        .stop(std::time::Duration::from_secs(
            settings.shutdown_grace_seconds,
        ))
        .await;
    app.db.close().await;
    Ok(())
}

async fn run_jobs(db: &Db, command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::List { state, limit, json } => {
            let state = match state.as_deref() {
                None => None,
                Some(text) => Some(
                    queue::JobState::parse(text)
                        .context("--state must be available, running or dead")?,
                ),
            };
            let jobs = queue::list(db, state, limit.clamp(1, 10_000)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
                return Ok(());
            }
            println!(
                "{:<8}  {:<12}  {:<9}  {:<7}  {:<27}  {:<36}  LAST ERROR",
                "ID", "KIND", "STATE", "ATTEMPT", "RUN AT", "ORDER"
            );
            for job in jobs {
                println!(
                    "{:<8}  {:<12}  {:<9}  {:<7}  {:<27}  {:<36}  {}",
                    job.id,
                    job.kind,
                    job.state.as_str(),
                    format!("{}/{}", job.attempt, job.max_attempts),
                    job.run_at.to_rfc3339(),
                    job.order_id.map(|o| o.0.to_string()).unwrap_or_default(),
                    job.last_error.unwrap_or_default()
                );
            }
        }
        JobsCommand::Retry { id } => {
            anyhow::ensure!(
                queue::retry_dead(db, id).await?,
                "no dead job has id {id} (see `errand jobs list --state dead`)"
            );
            println!("job {id} will run again now");
        }
    }
    Ok(())
}

fn base_url(addr: std::net::SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let host = if addr.is_ipv6() && !addr.ip().is_unspecified() {
        format!("[{host}]")
    } else {
        host
    };
    format!("http://{host}:{}", addr.port())
}

/// The product ordered by the first-run example when the demo store is not running.
pub const EXAMPLE_PRODUCT_URL: &str = "https://store.example/dp/B0DEMO0001";

fn print_first_key(base: &str, secret: &str, product_url: &str) {
    println!(
        r#"
No API key existed, so one was created (account "default"). It is shown only once:

    {secret}

Create your first order:

curl -sS -X POST {base}/orders \
  -H 'Authorization: Bearer {secret}' \
  -H 'Content-Type: application/json' \
  -d '{{"products":[{{"url":"{product_url}","quantity":1}}],
       "shipping_address":{{"first_name":"Ada","last_name":"Lovelace","address_line1":"1 Main St",
         "city":"Austin","state":"TX","postal_code":"78701","phone_number":"512-555-0134","country":"US"}},
       "max_price":5000,"idempotency_key":"my-first-order"}}'
"#
    );
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

async fn demo_store(port: u16, data_dir: PathBuf, time_scale: f64) -> anyhow::Result<()> {
    init_tracing(LogFormat::Text);
    let options = errand_demo_store::StoreOptions {
        listen: format!("127.0.0.1:{port}"),
        data_dir,
        admin_token: None,
        time_scale,
    };
    let store = errand_demo_store::start(options).await?;
    println!(
        "Errand demo store is open at {} (JSON API under /api)",
        store.base_url()
    );
    println!(
        "Sign in as {} / {}",
        errand_demo_store::DEMO_EMAIL,
        errand_demo_store::DEMO_PASSWORD
    );
    wait_for_signal().await;
    store.stop().await
}

/// `errand recipes …`: needs no configuration or database.
async fn run_recipes(command: RecipesCommand) -> anyhow::Result<()> {
    match command {
        RecipesCommand::Check { files } => check_recipes(&files),
        RecipesCommand::Try(args) => try_recipe(*args).await,
    }
}

/// `errand recipes check`: every mistake of every file, with its line.
fn check_recipes(files: &[PathBuf]) -> anyhow::Result<()> {
    let mut failed = 0;
    for file in files {
        match Recipe::load(file) {
            Ok(recipe) => {
                let phases: Vec<&str> = recipe.phases.iter().map(|(p, _)| p.as_str()).collect();
                println!(
                    "{}: ok — recipe {:?} for hosts {}, phases: {}",
                    file.display(),
                    recipe.name,
                    recipe.hosts.join(", "),
                    phases.join(", ")
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!("{e}");
            }
        }
    }
    match failed {
        0 => Ok(()),
        1 if files.len() == 1 => anyhow::bail!("the recipe has errors"),
        n => anyhow::bail!("{n} of {} recipes have errors", files.len()),
    }
}

/// `errand recipes try`: fails (exit 1) when the recipe does not reach the review page.
async fn try_recipe(args: TryArgs) -> anyhow::Result<()> {
    let step_timeouts = crate::retailers::browser::STEP_TIMEOUT_SECONDS;
    anyhow::ensure!(
        step_timeouts.contains(&args.step_timeout_seconds),
        "--step-timeout-seconds must be between {} and {}",
        step_timeouts.start(),
        step_timeouts.end()
    );
    let recipe = Recipe::load(&args.file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let outcome = crate::retailers::browser::trial::Trial {
        output_dir: args.output.join(&recipe.name),
        recipe,
        url: args.url,
        variant: args.variants,
        quantity: args.quantity,
        email: args.email,
        password: args.password,
        totp_secret: args.totp_secret,
        chromium_path: args.chromium,
        step_timeout: std::time::Duration::from_secs_f64(args.step_timeout_seconds),
    }
    .run()
    .await?;
    match outcome.failure {
        None => Ok(()),
        Some((phase, failure)) => anyhow::bail!(
            "the recipe did not reach the review page: {phase} failed{}",
            failure
                .error_type()
                .map(|t| format!(" with {t}"))
                .unwrap_or_default()
        ),
    }
}

async fn run_keys(db: &Db, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            name,
            test,
            account,
        } => {
            let name = name.trim();
            anyhow::ensure!(!name.is_empty(), "--name must not be blank");
            let key = keys::create_key(db, name, !test, account).await?;
            eprintln!(
                "Created key {} in account {}. Store it now: it is shown only once.",
                key.id, key.account_id
            );
            println!("{}", key.secret);
        }
        KeysCommand::List { json } => {
            let list = keys::list_keys(db).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<36}  {:<14}  {:<4}  {:<7}  {:<20}  ACCOUNT",
                    "ID", "PREFIX", "MODE", "STATE", "NAME"
                );
                for k in list {
                    println!(
                        "{:<36}  {:<14}  {:<4}  {:<7}  {:<20}  {} ({})",
                        k.id,
                        k.prefix,
                        if k.livemode { "live" } else { "test" },
                        if k.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        },
                        k.name,
                        k.account_name,
                        k.account_id
                    );
                }
            }
        }
        KeysCommand::Revoke { key } => {
            let revoked = keys::revoke_key(db, &key).await?;
            println!("revoked key {} ({})", revoked.id, revoked.prefix);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_file(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
    }

    #[test]
    fn recipes_check_fails_when_any_recipe_has_mistakes() {
        let demo = crate_file("recipes/demo.toml");
        let mistakes = crate_file("tests/fixtures/recipes/invalid/mistakes.toml");
        let check = |files: Vec<PathBuf>| check_recipes(&files);
        assert!(check(vec![demo.clone()]).is_ok());
        assert_eq!(
            check(vec![mistakes.clone()]).unwrap_err().to_string(),
            "the recipe has errors"
        );
        assert_eq!(
            check(vec![demo, mistakes]).unwrap_err().to_string(),
            "1 of 2 recipes have errors"
        );
    }

    #[test]
    fn recipes_check_needs_a_file() {
        assert!(Cli::try_parse_from(["errand", "recipes", "check"]).is_err());
        let cli = Cli::try_parse_from(["errand", "recipes", "check", "a.toml", "b.toml"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Recipes { command: RecipesCommand::Check { files } } if files.len() == 2
        ));
    }
}
