//! The delivery log: `GET /webhooks/deliveries` (each delivery with its attempts) and
//! `POST /webhooks/deliveries/{id}/redeliver`.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::QueryBuilder;
use utoipa::ToSchema;
use uuid::Uuid;

use super::delivery::DeliveryState;
use super::outbox::{WEBHOOK_EVENTS, delivery_job};
use crate::auth::Tenant;
use crate::http::error::ErrorEnvelope;
use crate::http::params::{PathParams, query_pairs};
use crate::http::{ApiError, AppState};
use crate::queue;
use crate::storage::{Db, DbId, Timestamp};
use crate::validation::{Errors, Loc, Page, ValidationErrors, parse_uuid};
use crate::{on_db, on_tx};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/webhooks/deliveries", get(list_deliveries))
        .route("/webhooks/deliveries/{id}/redeliver", post(redeliver))
}

/// One try at delivering a webhook.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct DeliveryAttempt {
    #[serde(skip)]
    #[schema(ignore)]
    pub delivery_id: String,
    pub attempt: i32,
    #[schema(value_type = String, format = DateTime)]
    pub attempted_at: Timestamp,
    /// The receiver's answer; null when there was none.
    pub http_status: Option<i32>,
    pub duration_ms: i64,
    pub error: Option<String>,
    /// The first 1 KB of the receiver's answer.
    pub response: Option<String>,
}

/// A webhook for one order event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivery {
    /// Also the `webhook-id` header and the body's `id`.
    pub id: String,
    pub event: String,
    pub order_id: Uuid,
    pub sequence: i64,
    /// `pending`, `delivered`, `failed` or `cancelled` (the endpoint was removed).
    pub status: String,
    /// The order's status at the event.
    pub order_status: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    pub attempts: Vec<DeliveryAttempt>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    event: String,
    order_id: DbId,
    sequence: i64,
    state: String,
    status: String,
    created_at: Timestamp,
    updated_at: Timestamp,
}

#[derive(Debug, Default)]
struct Filter {
    order_id: Option<Uuid>,
    event: Option<String>,
    status: Option<String>,
    page: Page,
}

fn push_conditions<DB: sqlx::Database>(qb: &mut QueryBuilder<DB>, tenant: &Tenant, f: &Filter)
where
    DbId: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    String: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    qb.push(" WHERE account_id = ")
        .push_bind(DbId(tenant.account_id))
        .push(" AND livemode = ")
        .push_bind(tenant.livemode);
    if let Some(order_id) = f.order_id {
        qb.push(" AND order_id = ").push_bind(DbId(order_id));
    }
    if let Some(event) = &f.event {
        qb.push(" AND event = ").push_bind(event.clone());
    }
    if let Some(status) = &f.status {
        qb.push(" AND state = ").push_bind(status.clone());
    }
}

async fn list(db: &Db, tenant: &Tenant, f: &Filter) -> Result<(Vec<Delivery>, i64), sqlx::Error> {
    on_db!(db, reader, |pool| {
        let mut count = QueryBuilder::new("SELECT COUNT(*) FROM webhook_deliveries");
        push_conditions(&mut count, tenant, f);
        let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
        let mut page = QueryBuilder::new(
            "SELECT id, event, order_id, sequence, state, status, created_at, updated_at FROM webhook_deliveries",
        );
        push_conditions(&mut page, tenant, f);
        page.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(f.page.limit)
            .push(" OFFSET ")
            .push_bind(f.page.offset);
        let rows: Vec<Row> = page.build_query_as().fetch_all(pool).await?;
        let mut attempts: HashMap<String, Vec<DeliveryAttempt>> = HashMap::new();
        if !rows.is_empty() {
            let mut qb = QueryBuilder::new(
                "SELECT delivery_id, attempt, attempted_at, http_status, duration_ms, error, response
                 FROM webhook_attempts WHERE delivery_id IN ",
            );
            qb.push_tuples(&rows, |mut b, r| {
                b.push_bind(r.id.clone());
            });
            qb.push(" ORDER BY delivery_id, attempt");
            let found: Vec<DeliveryAttempt> = qb.build_query_as().fetch_all(pool).await?;
            for a in found {
                attempts.entry(a.delivery_id.clone()).or_default().push(a);
            }
        }
        let deliveries = rows
            .into_iter()
            .map(|r| Delivery {
                attempts: attempts.remove(&r.id).unwrap_or_default(),
                id: r.id,
                event: r.event,
                order_id: r.order_id.0,
                sequence: r.sequence,
                status: r.state,
                order_status: r.status,
                created_at: r.created_at,
                updated_at: r.updated_at,
            })
            .collect();
        Ok((deliveries, total))
    })
}

fn parse_filter(raw: Option<&str>) -> Result<Filter, ValidationErrors> {
    let mut errors = Errors::default();
    let mut filter = Filter::default();
    for (name, value) in query_pairs(raw)? {
        let loc = Loc::query(&name);
        let text = Value::String(value.clone());
        match name.as_str() {
            name if filter.page.take(name, &text, &loc, &mut errors) => {}
            "order_id" => filter.order_id = parse_uuid(&value, &loc, &mut errors),
            "event" => {
                if WEBHOOK_EVENTS.contains(&value.trim()) {
                    filter.event = Some(value.trim().to_string());
                } else {
                    errors.add(
                        &loc,
                        "enum",
                        format!("Input should be one of {}", WEBHOOK_EVENTS.join(", ")),
                    );
                }
            }
            "status" => {
                if DeliveryState::parse(value.trim()).is_some() {
                    filter.status = Some(value.trim().to_string());
                } else {
                    errors.add(
                        &loc,
                        "enum",
                        format!(
                            "Input should be one of {}",
                            DeliveryState::ALL.map(DeliveryState::as_str).join(", ")
                        ),
                    );
                }
            }
            _ => {}
        }
    }
    errors.finish(|| filter)
}

/// List Webhook Deliveries
///
/// The account's webhooks, newest first, each with every attempt to deliver it.
#[utoipa::path(
    get,
    path = "/webhooks/deliveries",
    tag = "webhooks",
    operation_id = "list_webhook_deliveries_webhooks_deliveries_get",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Page size (default 20)"),
        ("offset" = Option<i64>, Query, minimum = 0, description = "Deliveries to skip (default 0)"),
        ("order_id" = Option<Uuid>, Query, description = "Only this order's"),
        ("event" = Option<String>, Query, description = "Only this event, e.g. order.placed"),
        ("status" = Option<String>, Query, description = "pending, delivered, failed or cancelled"),
    ),
    responses(
        (status = 200, description = "Successful Response", body = DeliveryList),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 422, description = "Validation Error", body = ValidationErrors),
    ),
    security(("BearerAuth" = []))
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    tenant: Tenant,
    RawQuery(raw): RawQuery,
) -> Result<Json<DeliveryList>, ApiError> {
    let filter = parse_filter(raw.as_deref())?;
    let (deliveries, total) = list(&state.db, &tenant, &filter).await?;
    Ok(Json(DeliveryList {
        deliveries,
        total,
        limit: filter.page.limit,
        offset: filter.page.offset,
    }))
}

/// Redeliver Webhook
///
/// Sends a webhook again (with the same id and body), whatever became of it; 202.
#[utoipa::path(
    post,
    path = "/webhooks/deliveries/{id}/redeliver",
    tag = "webhooks",
    operation_id = "redeliver_webhook_webhooks_deliveries__id__redeliver_post",
    params(("id" = String, Path, description = "The delivery's id (evt_…)")),
    responses(
        (status = 202, description = "Queued for delivery"),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 404, description = "No such delivery for this account", body = ErrorEnvelope),
        (status = 409, description = "No webhook endpoint is set", body = ErrorEnvelope),
    ),
    security(("BearerAuth" = []))
)]
pub async fn redeliver(
    State(state): State<AppState>,
    tenant: Tenant,
    PathParams(id): PathParams<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let endpoint = super::endpoint::get(&state.db, &state.vault, &tenant).await?;
    if endpoint.and_then(|e| e.url).is_none() {
        return Err(ApiError::conflict(
            "webhook_endpoint_not_set",
            "No webhook endpoint is set: PUT /webhooks/endpoint first",
        ));
    }
    let now = Timestamp::now();
    let mut tx = state.db.begin().await?;
    let changed = on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE webhook_deliveries SET state = $1, updated_at = $2
             WHERE id = $3 AND account_id = $4 AND livemode = $5",
        )
        .bind(DeliveryState::Pending.as_str())
        .bind(now)
        .bind(&id)
        .bind(DbId(tenant.account_id))
        .bind(tenant.livemode)
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected())
    })?;
    if changed == 0 {
        return Err(ApiError::not_found("No such webhook delivery"));
    }
    queue::enqueue(&mut tx, &[delivery_job(&id)]).await?;
    tx.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "status": DeliveryState::Pending.as_str() })),
    ))
}
