//! The demo retailer: a storefront that Errand buys from in demos, tests and benchmarks.
//! It knows nothing of Errand: it speaks HTTP like a real store. See this crate's README.

pub mod api;
pub mod catalogue;
pub mod db;
pub mod fulfilment;
pub mod label;
pub mod pages;
pub mod pricing;
pub mod return_pages;
pub mod shop;
pub mod totp;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::routing::get;
use axum::{Json, Router};
use rand::distr::{Alphanumeric, SampleString};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The account every new store has, so the first run can buy something.
pub const DEMO_EMAIL: &str = "demo@errand.test";
pub const DEMO_PASSWORD: &str = "demo-password";
/// A product without variants, in stock: what a first order buys.
pub const FIRST_RUN_PRODUCT: &str = "B0DEMO0005";
/// An account with two-factor sign-in; its authenticator secret (base32) is public, for
/// demos and tests of TOTP.
pub const DEMO_2FA_EMAIL: &str = "demo-2fa@errand.test";
pub const DEMO_2FA_TOTP_SECRET: &str = "JBSWY3DPEHPK3PXP";

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Address to listen on (port 0 picks a free port).
    pub listen: String,
    /// Where the store keeps its database and admin token.
    pub data_dir: PathBuf,
    /// Token for `/api/admin/…`; read from (or generated into) `data_dir/admin-token` when
    /// not given.
    pub admin_token: Option<String>,
    /// How fast the store clock runs: 1.0 is real time, 86 400 makes a store day last a
    /// second. Orders ship and arrive, and returns come back and are credited, on this
    /// clock.
    pub time_scale: f64,
}

pub struct RunningStore {
    pub addr: SocketAddr,
    pub admin_token: String,
    pub db: db::Db,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    clock: JoinHandle<()>,
}

impl RunningStore {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections and lets requests in flight finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.clock.abort();
        (&mut self.task)
            .await
            .context("store task failed")?
            .context("store server failed")?;
        self.db.close().await;
        Ok(())
    }
}

fn admin_token(options: &StoreOptions) -> anyhow::Result<String> {
    if let Some(token) = &options.admin_token {
        return Ok(token.clone());
    }
    let path = options.data_dir.join("admin-token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        return Ok(token.trim().to_string());
    }
    let token = Alphanumeric.sample_string(&mut rand::rng(), 32);
    std::fs::write(&path, &token).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(token)
}

/// Opens (or creates) the store's database and serves it in the background.
pub async fn start(options: StoreOptions) -> anyhow::Result<RunningStore> {
    std::fs::create_dir_all(&options.data_dir)
        .with_context(|| format!("cannot create {}", options.data_dir.display()))?;
    let db = db::Db::open(&options.data_dir.join("store.db")).await?;
    // The demo accounts, once.
    if !db.customer_exists(DEMO_EMAIL).await? {
        db.create_customer(DEMO_EMAIL, DEMO_PASSWORD, "4242", 2500, None)
            .await?;
    }
    if !db.customer_exists(DEMO_2FA_EMAIL).await? {
        db.create_customer(
            DEMO_2FA_EMAIL,
            DEMO_PASSWORD,
            "1881",
            0,
            Some(DEMO_2FA_TOTP_SECRET),
        )
        .await?;
    }
    let admin_token = admin_token(&options)?;
    if !(options.time_scale.is_finite() && options.time_scale > 0.0) {
        anyhow::bail!("the store clock's time scale must be a positive number");
    }
    let clock = fulfilment::Clock {
        time_scale: options.time_scale,
    };
    let state = api::AppState {
        db: db.clone(),
        admin_token: Arc::new(admin_token.clone()),
        clock,
        faults: Default::default(),
        flaky_failed: Default::default(),
    };
    let app = Router::new()
        .merge(api::routes())
        .merge(pages::routes())
        .merge(shop::routes())
        .merge(return_pages::routes())
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::inject_faults,
        ))
        .with_state(state);
    let listener = TcpListener::bind(&options.listen)
        .await
        .with_context(|| format!("the demo store cannot listen on {}", options.listen))?;
    let addr = listener.local_addr()?;
    let (shutdown, stop) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.await;
            })
            .await
    });
    let clock = tokio::spawn(fulfilment::run(db.clone(), clock));
    Ok(RunningStore {
        addr,
        admin_token,
        db,
        shutdown: Some(shutdown),
        task,
        clock,
    })
}
