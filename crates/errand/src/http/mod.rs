//! The HTTP server: routes, shared state, middleware and graceful shutdown (the
//! connections themselves, and their limits, are [`server`]'s).

pub mod body;
pub mod error;
mod openapi;
mod ops;
pub mod params;
pub mod public_base;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Method, StatusCode, Uri};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use openapi::ApiDoc;

use crate::accounts::{self, Vault};
use crate::app::App;
use crate::config::Settings;
use crate::orders;
use crate::orders::writer::OrderWriter;
use crate::retailers::Registry;
use crate::storage::{Db, Timestamp};

/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    /// Encrypts and decrypts retailer account secrets.
    pub vault: Vault,
    pub orders: OrderWriter,
    pub settings: Arc<Settings>,
    pub retailers: Arc<Registry>,
    /// `public_url`, checked and without its trailing slash.
    pub public_base: Option<String>,
    /// Resolves webhook receivers' names when an endpoint is set.
    pub webhook_resolver: Arc<dyn crate::webhooks::address::Resolver>,
}

pub fn router(state: AppState) -> Router {
    let middleware = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let request_id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(CatchPanicLayer::custom(|_| error::internal_error_response()));
    Router::new()
        .merge(orders::http::routes())
        .merge(accounts::http::routes())
        .merge(crate::returns::http::routes())
        .merge(crate::webhooks::http::routes())
        .merge(crate::webhooks::log::routes())
        .merge(ops::routes())
        .merge(openapi::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware)
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("No route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// A server running in the background (used by `errand serve` and by the tests).
pub struct RunningServer {
    pub addr: SocketAddr,
    pub db: Db,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    housekeeping: JoinHandle<()>,
    grace: Duration,
}

/// Binds `settings.listen` (port 0 picks a free port) and serves until stopped.
pub(crate) async fn start(app: &App) -> anyhow::Result<RunningServer> {
    ops::metrics_handle();
    let settings = &app.settings;
    let db = app.db.clone();
    let listener = TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let grace = Duration::from_secs(settings.shutdown_grace_seconds);
    let housekeeping = tokio::spawn(prune_idempotency_keys(
        db.clone(),
        settings.idempotency_retention_hours,
    ));
    let state = AppState {
        orders: OrderWriter::spawn(db.clone()),
        db: db.clone(),
        vault: app.vault.clone(),
        retailers: app.retailers.clone(),
        public_base: settings.public_base(),
        settings: settings.clone(),
        webhook_resolver: app.webhook_resolver.clone(),
    };
    let app = router(state);
    let limits = server::Limits::new(settings);
    tracing::info!(
        max_connections = limits.max_connections,
        open_file_limit = server::open_file_limit(),
        "accepting connections up to the limit"
    );
    let (shutdown, stop) = oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(listener, app, limits, stop));
    Ok(RunningServer {
        addr,
        db,
        shutdown: Some(shutdown),
        task,
        housekeeping,
        grace,
    })
}

impl RunningServer {
    /// Stops accepting connections and waits (up to the grace period) for requests in
    /// flight to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.housekeeping.abort();
        match tokio::time::timeout(self.grace, &mut self.task).await {
            Ok(result) => result
                .context("server task failed")?
                .context("server failed")?,
            Err(_) => {
                tracing::warn!(
                    grace_seconds = self.grace.as_secs(),
                    "requests still running after the grace period; stopping anyway"
                );
                self.task.abort();
            }
        }
        Ok(())
    }
}

/// Forgets idempotency keys past their retention, once an hour.
async fn prune_idempotency_keys(db: Db, retention_hours: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let cutoff = Timestamp::now().plus(-time::Duration::hours(retention_hours as i64));
        match orders::store::prune_idempotency_keys(&db, cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "expired idempotency keys removed"),
            Err(e) => tracing::warn!(error = %e, "could not remove expired idempotency keys"),
        }
    }
}
