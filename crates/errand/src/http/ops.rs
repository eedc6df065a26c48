//! Liveness and readiness probes, and Prometheus metrics.

use axum::extract::State;
use std::sync::OnceLock;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};

use super::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
}

/// The process's metrics recorder; installed once, read by `/metrics`.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0,
            ])
            .expect("static buckets are valid");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder (a test harness's) may already be installed; ours still
        // renders what it records.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Prometheus metrics: the queue's depth by kind and state, job wait and run times,
/// placements by outcome and `error_type`, retailer call latency, webhook attempts by
/// outcome, the webhook backlog and disabled endpoints, open HTTP connections and their
/// limit, and connections closed for a timeout.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain"))
)]
pub async fn metrics_text(State(state): State<AppState>) -> Result<Response, ApiError> {
    // The queue lives in the database (shared by every process), so it is read at scrape
    // time rather than counted in this process.
    let depth = crate::queue::depth(&state.db).await?;
    let mut text = metrics_handle().render();
    text.push_str(
        "# HELP errand_jobs Jobs in the queue by kind and state.\n# TYPE errand_jobs gauge\n",
    );
    for (kind, job_state, count) in depth {
        text.push_str(&format!(
            "errand_jobs{{kind=\"{kind}\",state=\"{job_state}\"}} {count}\n"
        ));
    }
    let backlog = crate::webhooks::delivery::backlog(&state.db).await?;
    let disabled = crate::webhooks::endpoint::count_disabled(&state.db).await?;
    text.push_str(&format!(
        "# HELP errand_webhook_backlog Webhook deliveries waiting to be delivered.\n\
         # TYPE errand_webhook_backlog gauge\nerrand_webhook_backlog {backlog}\n\
         # HELP errand_webhook_endpoints_disabled Webhook endpoints disabled (410 Gone or failing for too long).\n\
         # TYPE errand_webhook_endpoints_disabled gauge\nerrand_webhook_endpoints_disabled {disabled}\n"
    ));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is up")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the database answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses((status = 200, description = "Ready to serve"), (status = 503, description = "The database is unreachable"))
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.db.ping().await {
        Ok(()) => Ok(Json(
            json!({"status": "ready", "database": state.db.backend()}),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: database unreachable");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "The database is unreachable",
            ))
        }
    }
}
