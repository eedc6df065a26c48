//! `/orders` endpoints.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::artifacts::{self, ArtifactKind};
use super::model::{Order, OrderStatus};
use super::request::{NewOrder, OrderCreateDoc};
use super::store::{self, ListFilter};
use super::test_products::TestProductList;
use super::timeline::Timeline;
use super::writer::WriterError;
use super::{Created, OrderError};
use crate::auth::Tenant;
use crate::http::body::JsonBody;
use crate::http::error::ErrorEnvelope;
use crate::http::params::{PathParams, query_pairs};
use crate::http::public_base::PublicBase;
use crate::http::{ApiError, AppState};
use crate::storage::Timestamp;
use crate::validation::{Errors, Loc, ValidationErrors};

const MAX_SEARCH_LEN: usize = 100;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/orders", post(create_order).get(list_orders))
        .route("/orders/test-products", get(list_test_products))
        .route("/orders/{order_id}", get(get_order))
        .route("/orders/{order_id}/timeline", get(get_timeline))
        .route("/orders/{order_id}/cancel", post(cancel_order))
        .route("/orders/{order_id}/screenshots/{name}", get(get_screenshot))
        .route("/orders/{order_id}/pages/{name}", get(get_page))
}

impl From<OrderError> for ApiError {
    fn from(error: OrderError) -> Self {
        match error {
            OrderError::NotFound => ApiError::not_found("Order not found"),
            OrderError::IdempotencyConflict(key) => ApiError::conflict(
                "idempotency_conflict",
                "This idempotency key was already used with a different request body",
            )
            .with_details(serde_json::json!({ "idempotency_key": key })),
            OrderError::NotCancellable(status) => ApiError::conflict(
                "order_not_cancellable",
                format!(
                    "Only pending orders can be cancelled; this order is {}",
                    status.as_str()
                ),
            )
            .with_details(serde_json::json!({ "status": status })),
            OrderError::Writer(WriterError::Database(e)) if crate::storage::is_unavailable(&e) => {
                ApiError::database_unavailable(&e)
            }
            OrderError::Writer(e) => ApiError::Internal(e.into()),
            OrderError::Database(e) => e.into(),
        }
    }
}

/// Create Order
///
/// Posts an order to a queue for processing. With an `idempotency_key`, repeating the
/// same request returns the original order (header `Idempotent-Replayed: true`); reusing
/// the key with a different request is a 409 `idempotency_conflict`.
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    operation_id = "create_order_orders_post",
    request_body = OrderCreateDoc,
    responses(
        (status = 201, description = "Successful Response", body = Order),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 409, description = "Idempotency key reused with a different request", body = ErrorEnvelope),
        (status = 422, description = "Validation Error", body = ValidationErrors),
    ),
    security(("BearerAuth" = []))
)]
pub async fn create_order(
    State(state): State<AppState>,
    tenant: Tenant,
    PublicBase(base): PublicBase,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let new = NewOrder::parse(&body)?;
    let retailer = super::retailer::resolve(&state.retailers, &tenant, &new)?;
    super::retailer::check_credentials(&state.db, &tenant, &new, &retailer).await??;
    let created = super::create(
        &state.db,
        &state.orders,
        &tenant,
        new,
        retailer,
        state.settings.placement_max_attempts,
    )
    .await?;
    Ok(match created {
        Created::New(order) => {
            tracing::info!(order_id = %order.id, items = order.items.len(), "order created");
            (StatusCode::CREATED, Json(order)).into_response()
        }
        Created::Replayed(mut order) => {
            order.link_screenshots(&base);
            let mut response = (StatusCode::CREATED, Json(order)).into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
    })
}

fn parse_order_id(raw: &str) -> Result<Uuid, ApiError> {
    Ok(crate::validation::path_uuid("order_id", raw)?)
}

/// Get Order
#[utoipa::path(
    get,
    path = "/orders/{order_id}",
    tag = "orders",
    operation_id = "get_order_orders__order_id__get",
    params(("order_id" = Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "Successful Response", body = Order),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 404, description = "No such order for this account", body = ErrorEnvelope),
        (status = 422, description = "Validation Error", body = ValidationErrors),
    ),
    security(("BearerAuth" = []))
)]
pub async fn get_order(
    State(state): State<AppState>,
    tenant: Tenant,
    PublicBase(base): PublicBase,
    PathParams(order_id): PathParams<String>,
) -> Result<Json<Order>, ApiError> {
    let id = parse_order_id(&order_id)?;
    let mut order = super::get(&state.db, &tenant, id).await?;
    order.link_screenshots(&base);
    Ok(Json(order))
}

/// Get Order Timeline
///
/// The order's milestones, oldest first, derived from its events.
#[utoipa::path(
    get,
    path = "/orders/{order_id}/timeline",
    tag = "orders",
    operation_id = "get_order_timeline_orders__order_id__timeline_get",
    params(("order_id" = Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "Successful Response", body = Timeline),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 404, description = "No such order for this account", body = ErrorEnvelope),
        (status = 422, description = "Validation Error", body = ValidationErrors),
    ),
    security(("BearerAuth" = []))
)]
pub async fn get_timeline(
    State(state): State<AppState>,
    tenant: Tenant,
    PathParams(order_id): PathParams<String>,
) -> Result<Json<Timeline>, ApiError> {
    let id = parse_order_id(&order_id)?;
    super::timeline::timeline(&state.db, &tenant, id)
        .await?
        .map(Json)
        .ok_or_else(|| OrderError::NotFound.into())
}

/// List Test Products
///
/// The sandbox retailer's products with fixed outcomes (for test keys).
#[utoipa::path(
    get,
    path = "/orders/test-products",
    tag = "orders",
    operation_id = "list_test_products_orders_test_products_get",
    responses(
        (status = 200, description = "Successful Response", body = TestProductList),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
    ),
    security(("BearerAuth" = []))
)]
pub async fn list_test_products(
    State(state): State<AppState>,
    _tenant: Tenant,
) -> Json<TestProductList> {
    let sandbox = state
        .settings
        .retailers
        .iter()
        .find(|r| r.sandbox && r.driver == "demo-http")
        .map(|r| r.base_url.as_str());
    Json(super::test_products::list(sandbox))
}

/// Cancel Order
///
/// Cancels a `pending` order (204). An order in any other status cannot be cancelled here
/// (409 `order_not_cancellable`).
#[utoipa::path(
    post,
    path = "/orders/{order_id}/cancel",
    tag = "orders",
    operation_id = "cancel_order_orders__order_id__cancel_post",
    params(("order_id" = Uuid, Path, description = "The order's id")),
    responses(
        (status = 204, description = "The order was cancelled"),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 404, description = "No such order for this account", body = ErrorEnvelope),
        (status = 409, description = "The order is not pending", body = ErrorEnvelope),
        (status = 422, description = "Validation Error", body = ValidationErrors),
    ),
    security(("BearerAuth" = []))
)]
pub async fn cancel_order(
    State(state): State<AppState>,
    tenant: Tenant,
    PathParams(order_id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_order_id(&order_id)?;
    super::cancel(&state.db, &tenant, id).await?;
    tracing::info!(order_id = %id, "order cancelled by the customer");
    Ok(StatusCode::NO_CONTENT)
}

/// A page of orders.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderList {
    pub orders: Vec<Order>,
    /// How many orders match the filters in all.
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// List Orders
///
/// The account's orders, newest first.
#[utoipa::path(
    get,
    path = "/orders",
    tag = "orders",
    operation_id = "list_orders_orders_get",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Page size (default 20)"),
        ("offset" = Option<i64>, Query, minimum = 0, description = "Orders to skip (default 0)"),
        ("status_filter" = Option<OrderStatus>, Query, description = "Only orders with this status"),
        ("created_after" = Option<String>, Query, format = DateTime, description = "Only orders created at or after this instant"),
        ("created_before" = Option<String>, Query, format = DateTime, description = "Only orders created before this instant"),
        ("search" = Option<String>, Query, description = "Part of an order id or PO number"),
    ),
    responses(
        (status = 200, description = "Successful Response", body = OrderList),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 422, description = "Validation Error", body = ValidationErrors),
    ),
    security(("BearerAuth" = []))
)]
pub async fn list_orders(
    State(state): State<AppState>,
    tenant: Tenant,
    PublicBase(base): PublicBase,
    RawQuery(query): RawQuery,
) -> Result<Json<OrderList>, ApiError> {
    let filter = parse_list_query(query.as_deref())?;
    let (mut orders, total) = store::list(&state.db, &tenant, &filter).await?;
    for order in &mut orders {
        order.link_screenshots(&base);
    }
    Ok(Json(OrderList {
        orders,
        total,
        limit: filter.page.limit,
        offset: filter.page.offset,
    }))
}

/// The pattern of an artifact's name in a path.
const ARTIFACT_NAME_PATTERN: &str = "^[a-z][a-z0-9_-]{0,63}$";

/// Get Order Screenshot
///
/// A PNG screenshot the browser took while buying the order, as listed in the order's
/// `screenshots`: `product` (or `product-2`, … per item), `cart`, `review` (just before
/// the final click), `confirmation`, or `failure`.
#[utoipa::path(
    get,
    path = "/orders/{order_id}/screenshots/{name}",
    tag = "orders",
    operation_id = "get_order_screenshot_orders__order_id__screenshots__name__get",
    params(
        ("order_id" = Uuid, Path, description = "The order's id"),
        ("name" = String, Path, pattern = "^[a-z][a-z0-9_-]{0,63}$",
         description = "The screenshot's name, e.g. `cart` or `product-2`"),
    ),
    responses(
        (status = 200, description = "The screenshot", content(("image/png"))),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 404, description = "No such order for this account, or no screenshot of that name", body = ErrorEnvelope),
        (status = 422, description = "Validation Error", body = ValidationErrors),
    ),
    security(("BearerAuth" = []))
)]
pub async fn get_screenshot(
    State(state): State<AppState>,
    tenant: Tenant,
    PathParams((order_id, name)): PathParams<(String, String)>,
) -> Result<Response, ApiError> {
    serve_artifact(&state, &tenant, &order_id, &name, ArtifactKind::Screenshot).await
}

/// Get Order Page
///
/// The HTML of the retailer's page where a checkout failed (`failure`), as the browser
/// had it. Sent as a download with `Content-Security-Policy: sandbox`, so that the
/// retailer's markup and scripts never run as this API's origin.
#[utoipa::path(
    get,
    path = "/orders/{order_id}/pages/{name}",
    tag = "orders",
    operation_id = "get_order_page_orders__order_id__pages__name__get",
    params(
        ("order_id" = Uuid, Path, description = "The order's id"),
        ("name" = String, Path, pattern = "^[a-z][a-z0-9_-]{0,63}$",
         description = "The page's name, e.g. `failure`"),
    ),
    responses(
        (status = 200, description = "The page's HTML, as an attachment", content(("text/html")),
         headers(
             ("Content-Security-Policy" = String, description = "`sandbox`: the page cannot run scripts or act as this origin"),
             ("Content-Disposition" = String, description = "`attachment; filename=\"<order_id>-<name>.html\"`"),
         )),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 404, description = "No such order for this account, or no page of that name", body = ErrorEnvelope),
        (status = 422, description = "Validation Error", body = ValidationErrors),
    ),
    security(("BearerAuth" = []))
)]
pub async fn get_page(
    State(state): State<AppState>,
    tenant: Tenant,
    PathParams((order_id, name)): PathParams<(String, String)>,
) -> Result<Response, ApiError> {
    serve_artifact(&state, &tenant, &order_id, &name, ArtifactKind::Page).await
}

async fn serve_artifact(
    state: &AppState,
    tenant: &Tenant,
    order_id: &str,
    name: &str,
    kind: ArtifactKind,
) -> Result<Response, ApiError> {
    let id = parse_order_id(order_id);
    let name_ok = artifacts::valid_name(name);
    if id.is_err() || !name_ok {
        let mut errors = Errors::default();
        if let Err(ApiError::Validation(e)) = &id {
            for error in &e.detail {
                errors.add(&Loc::path("order_id"), error.kind, error.msg.clone());
            }
        }
        if !name_ok {
            errors.add(
                &Loc::path("name"),
                "string_pattern_mismatch",
                format!("String should match pattern '{ARTIFACT_NAME_PATTERN}'"),
            );
        }
        return Err(errors.into_rejection().into());
    }
    let id = id?;
    let Some(artifact) = artifacts::get(&state.db, tenant, id, name, kind).await? else {
        // Another tenant's order is "not found" too: ids do not leak.
        if !artifacts::order_exists(&state.db, tenant, id).await? {
            return Err(OrderError::NotFound.into());
        }
        let available = artifacts::names_by_order(&state.db, tenant, &[id], kind)
            .await?
            .remove(&id)
            .unwrap_or_default();
        return Err(
            ApiError::not_found(format!("Order {id} has no {kind} named {name:?}"))
                .with_details(serde_json::json!({ "name": name, "available": available })),
        );
    };
    artifact_response(artifact, &format!("{id}-{name}"))
}

fn parse_instant(text: &str) -> Option<Timestamp> {
    Timestamp::parse(text.trim()).or_else(|| {
        // A bare date means its midnight, UTC.
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let date = time::Date::parse(text.trim(), &format).ok()?;
        Some(Timestamp::from_datetime(date.midnight().assume_utc()))
    })
}

fn parse_list_query(raw: Option<&str>) -> Result<ListFilter, ValidationErrors> {
    let mut errors = Errors::default();
    let mut filter = ListFilter::default();
    for (name, value) in query_pairs(raw)? {
        let loc = Loc::query(&name);
        let text = Value::String(value.clone());
        match name.as_str() {
            name if filter.page.take(name, &text, &loc, &mut errors) => {}
            "status_filter" => match OrderStatus::parse(value.trim()) {
                Some(status) => filter.status = Some(status),
                None => {
                    let allowed: Vec<String> = OrderStatus::ALL
                        .iter()
                        .map(|s| format!("'{}'", s.as_str()))
                        .collect();
                    errors.add(
                        &loc,
                        "enum",
                        format!("Input should be {}", allowed.join(", ")),
                    );
                }
            },
            "created_after" | "created_before" => match parse_instant(&value) {
                Some(at) if name == "created_after" => filter.created_after = Some(at),
                Some(at) => filter.created_before = Some(at),
                None => errors.add(
                    &loc,
                    "datetime_parsing",
                    "Input should be a valid datetime in RFC 3339 form, e.g. 2026-01-31T12:00:00Z",
                ),
            },
            "search" => {
                let term = value.trim();
                if term.chars().count() > MAX_SEARCH_LEN {
                    errors.add(
                        &loc,
                        "string_too_long",
                        format!("String should have at most {MAX_SEARCH_LEN} characters"),
                    );
                } else if !term.is_empty() {
                    filter.search = Some(term.to_string());
                }
            }
            _ => {}
        }
    }
    errors.finish(|| filter)
}

/// An artifact as a response: its content type, a file name `<stem>.<extension>`, and
/// headers that keep a browser from running or sniffing it.
pub(crate) fn artifact_response(
    artifact: artifacts::Artifact,
    stem: &str,
) -> Result<Response, ApiError> {
    let kind = artifact.kind;
    let content_type = HeaderValue::from_str(&artifact.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static(kind.content_type()));
    let (disposition, extension) = match kind {
        ArtifactKind::Screenshot => ("inline", "png"),
        ArtifactKind::Page => ("attachment", "html"),
        ArtifactKind::ReturnLabel => ("attachment", "pdf"),
    };
    // The stem is made of ids and names checked to be [a-z0-9_-]: no quoting needed.
    let disposition =
        HeaderValue::from_str(&format!("{disposition}; filename=\"{stem}.{extension}\""))
            .map_err(|e| ApiError::Internal(e.into()))?;
    let mut response = artifact.content.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_DISPOSITION, disposition);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    if kind == ArtifactKind::Page {
        // Opened anyway (a browser's "open" on the download), a retailer's page must not
        // run scripts, submit forms or read this origin's storage.
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("sandbox"),
        );
    }
    Ok(response)
}
