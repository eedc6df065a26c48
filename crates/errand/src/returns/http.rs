//! `/returns` endpoints: request a return of a delivered order's items, list and read
//! returns, and download the retailer's return labels.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use uuid::Uuid;

use super::store::{self, ListFilter, ReturnError};
use super::{Return, ReturnList, ReturnStatus, request};
use crate::auth::Tenant;
use crate::http::body::JsonBody;
use crate::http::error::ErrorEnvelope;
use crate::http::params::{PathParams, query_pairs};
use crate::http::public_base::PublicBase;
use crate::http::{ApiError, AppState};
use crate::orders::artifacts::{self, ArtifactKind};
use crate::validation::{Errors, Loc, ValidationErrors};

/// The largest page of `GET /returns`, and its default (as the contract has them).
const MAX_RETURNS_PAGE: i64 = 500;
const DEFAULT_RETURNS_PAGE: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/returns", post(create_return).get(list_returns))
        .route("/returns/{return_id}", get(get_return))
        .route("/returns/{return_id}/labels/{name}", get(get_label))
}

impl From<ReturnError> for ApiError {
    fn from(error: ReturnError) -> Self {
        match error {
            ReturnError::OrderNotFound => ApiError::not_found("Order not found"),
            ReturnError::Unsupported(retailer) => ValidationErrors::single(
                &Loc::body().at("order_id"),
                "return_not_supported",
                format!("The retailer {retailer:?} takes no returns through Errand"),
            )
            .into(),
            ReturnError::Invalid(errors) => errors.into(),
            ReturnError::Database(e) => e.into(),
        }
    }
}

fn parse_return_id(raw: &str) -> Result<Uuid, ApiError> {
    Ok(crate::validation::path_uuid("return_id", raw)?)
}

/// Create Return Request
///
/// Asks for a return of delivered items of one of your orders. Each item may be
/// returned up to the quantity bought, less what other returns (not denied) already
/// hold. The return starts `open`; Errand asks the retailer for it, exactly once, and
/// follows it to `approved` (with the retailer's label) or `denied`, then `credited`.
#[utoipa::path(
    post,
    path = "/returns",
    tag = "returns",
    operation_id = "create_return_request_returns_post",
    request_body = ReturnRequestCreateDoc,
    responses(
        (status = 201, description = "Successful Response", body = Return),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 404, description = "No such order for this account", body = ErrorEnvelope),
        (status = 422, description = "Validation Error: a field, or a rule of the order (item not delivered, quantity beyond what can be returned, a retailer without returns)", body = ValidationErrors),
    ),
    security(("BearerAuth" = []))
)]
pub async fn create_return(
    State(state): State<AppState>,
    tenant: Tenant,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Return>), ApiError> {
    let new = request::parse(&body)?;
    // The retailer must take returns through its driver; another tenant's order is
    // "not found" like an unknown one.
    let order = crate::orders::store::load_record(&state.db, new.order_id)
        .await?
        .filter(|o| o.account_id == tenant.account_id && o.livemode == tenant.livemode)
        .ok_or(ReturnError::OrderNotFound)?;
    let retailer = order.retailer.clone().unwrap_or_default();
    if !state
        .retailers
        .get(&retailer)
        .is_some_and(|r| r.driver.takes_returns())
    {
        return Err(ReturnError::Unsupported(retailer).into());
    }
    let created = store::create(&state.db, &tenant, &new).await?;
    tracing::info!(order_id = %created.order_id, return_id = %created.id, "return requested");
    Ok((StatusCode::CREATED, Json(created)))
}

/// Request body of `POST /returns`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(as = ReturnRequestCreate)]
pub struct ReturnRequestCreateDoc {
    order_id: Uuid,
    /// Per-product lines being returned.
    #[schema(min_items = 1, max_items = 50)]
    items: Vec<super::ReturnItem>,
    reason: super::ReturnReason,
    #[schema(max_length = 1000)]
    notes: Option<String>,
}

/// List Return Requests
///
/// Your returns, newest first.
#[utoipa::path(
    get,
    path = "/returns",
    tag = "returns",
    operation_id = "list_return_requests_returns_get",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)"),
        ("offset" = Option<i64>, Query, minimum = 0, description = "Returns to skip (default 0)"),
        ("search" = Option<String>, Query, description = "Part of the order id"),
        ("status" = Option<String>, Query, description = "open, approved, denied or credited"),
    ),
    responses(
        (status = 200, description = "Successful Response", body = ReturnList),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 422, description = "Validation Error", body = ValidationErrors),
    ),
    security(("BearerAuth" = []))
)]
pub async fn list_returns(
    State(state): State<AppState>,
    tenant: Tenant,
    PublicBase(base): PublicBase,
    RawQuery(query): RawQuery,
) -> Result<Json<ReturnList>, ApiError> {
    let filter = parse_filter(query.as_deref())?;
    let (mut returns, total) = store::list(&state.db, &tenant, &filter).await?;
    for ret in &mut returns {
        ret.link_labels(&base);
    }
    Ok(Json(ReturnList {
        return_requests: returns,
        total,
    }))
}

fn parse_filter(raw: Option<&str>) -> Result<ListFilter, ValidationErrors> {
    let mut errors = Errors::default();
    let mut filter = ListFilter::default();
    filter.page.limit = DEFAULT_RETURNS_PAGE;
    for (name, value) in query_pairs(raw)? {
        let loc = Loc::query(&name);
        let text = Value::String(value.clone());
        if filter
            .page
            .take_up_to(MAX_RETURNS_PAGE, &name, &text, &loc, &mut errors)
        {
            continue;
        }
        match name.as_str() {
            "status" if !value.trim().is_empty() => match ReturnStatus::parse(value.trim()) {
                Some(status) => filter.status = Some(status),
                None => errors.add(
                    &loc,
                    "enum",
                    format!(
                        "Input should be {}",
                        ReturnStatus::ALL
                            .map(|s| format!("'{}'", s.as_str()))
                            .join(", ")
                    ),
                ),
            },
            "search" if !value.trim().is_empty() => {
                filter.search = Some(value.trim().chars().take(100).collect());
            }
            _ => {}
        }
    }
    errors.finish(|| filter)
}

/// Get Return Request
#[utoipa::path(
    get,
    path = "/returns/{return_id}",
    tag = "returns",
    operation_id = "get_return_request_returns__return_id__get",
    params(("return_id" = Uuid, Path, description = "The return's id")),
    responses(
        (status = 200, description = "Successful Response", body = Return),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 404, description = "No such return for this account", body = ErrorEnvelope),
        (status = 422, description = "Validation Error", body = ValidationErrors),
    ),
    security(("BearerAuth" = []))
)]
pub async fn get_return(
    State(state): State<AppState>,
    tenant: Tenant,
    PublicBase(base): PublicBase,
    PathParams(return_id): PathParams<String>,
) -> Result<Json<Return>, ApiError> {
    let id = parse_return_id(&return_id)?;
    let mut ret = store::get(&state.db, &tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Return not found"))?;
    ret.link_labels(&base);
    Ok(Json(ret))
}

/// Get Return Label
///
/// A return label the retailer gave for this return (PDF), as listed in its
/// `label_urls`.
#[utoipa::path(
    get,
    path = "/returns/{return_id}/labels/{name}",
    tag = "returns",
    operation_id = "get_return_label_returns__return_id__labels__name__get",
    params(
        ("return_id" = Uuid, Path, description = "The return's id"),
        ("name" = String, Path, pattern = "^[a-z][a-z0-9_-]{0,63}$", description = "The label's name, as in `label_urls`"),
    ),
    responses(
        (status = 200, description = "The label, as an attachment", content(("application/pdf"))),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 404, description = "No such return for this account, or no label of that name", body = ErrorEnvelope),
        (status = 422, description = "Validation Error", body = ValidationErrors),
    ),
    security(("BearerAuth" = []))
)]
pub async fn get_label(
    State(state): State<AppState>,
    tenant: Tenant,
    PathParams((return_id, name)): PathParams<(String, String)>,
) -> Result<Response, ApiError> {
    let id = parse_return_id(&return_id)?;
    let ret = store::get(&state.db, &tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Return not found"))?;
    if !ret.label_names.contains(&name) {
        return Err(
            ApiError::not_found(format!("Return {id} has no label named {name:?}"))
                .with_details(serde_json::json!({ "name": name, "available": ret.label_names })),
        );
    }
    let label = artifacts::get(
        &state.db,
        &tenant,
        ret.order_id,
        &name,
        ArtifactKind::ReturnLabel,
    )
    .await?
    .ok_or_else(|| ApiError::not_found("Return label not found"))?;
    crate::orders::http::artifact_response(label, &name)
}
