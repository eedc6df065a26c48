//! `/managed-accounts` endpoints. Responses never carry a password or TOTP secret, not
//! even masked, and no handler logs a request body.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::request::{self, ManagedAccountCreateDoc, ManagedAccountUpdateDoc};
use super::store::{self, AccountError, RetailerAccount};
use crate::auth::Tenant;
use crate::http::body::JsonBody;
use crate::http::error::ErrorEnvelope;
use crate::http::params::{PathParams, query_pairs};
use crate::http::{ApiError, AppState};
use crate::storage::Timestamp;
use crate::validation::{Errors, Loc, Page, ValidationErrors};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/managed-accounts",
            get(list_managed_accounts).post(create_managed_account),
        )
        .route(
            "/managed-accounts/{short_id}",
            get(get_managed_account)
                .put(update_managed_account)
                .patch(update_managed_account)
                .delete(delete_managed_account),
        )
}

impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::NotFound => ApiError::not_found("Managed account not found"),
            AccountError::Contended => ApiError::conflict(
                "concurrent_update",
                "The managed account was changed by another request at the same time; retry",
            ),
            AccountError::RetailerCannotChange(retailer) => ValidationErrors::single(
                &Loc::body().at("retailer"),
                "retailer_immutable",
                format!("The retailer of a managed account cannot be changed (it is {retailer:?})"),
            )
            .into(),
            AccountError::Vault(e) => ApiError::Internal(e.into()),
            AccountError::Database(e) => e.into(),
        }
    }
}

/// A retailer account the engine signs in with to place and track orders (the
/// contract's `RetailerCredentialsResponse`; the password and TOTP secret are never
/// returned).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = RetailerCredentialsResponse)]
pub struct ManagedAccount {
    #[schema(example = "acct_x7k2m9p4")]
    pub id: String,
    /// The id the account's paths take; the same as `id`.
    #[schema(example = "acct_x7k2m9p4")]
    pub short_id: String,
    #[schema(example = "buyer@example.com")]
    pub email: String,
    #[schema(example = "demo")]
    pub retailer: String,
    /// Always null: retailers are named by `retailer`.
    pub retailer_id: Option<i64>,
    /// Whether a TOTP secret is stored for the retailer's two-factor sign-in.
    pub has_totp: bool,
    /// Always false: Errand reads no forwarded retailer e-mail.
    pub has_forwarding: bool,
    /// Whether the account is kept out of new checkouts (`active: false`).
    pub is_paused: bool,
    /// The order checking out with the account right now, if any.
    pub locked_by_job_id: Option<String>,
    /// Always null: an account checks out one order at a time, with no wait between.
    pub cooldown_minutes: Option<i64>,
    /// When an order was last placed or tracked with this account.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
    /// Always null: a retailer's configuration lives in `errand.toml`.
    #[schema(value_type = Option<Object>)]
    pub retailer_config: Option<Value>,
    /// Always empty: Errand reads no forwarded retailer e-mail.
    pub forwarding_email: String,
    /// Inactive accounts are never used to place orders (the opposite of `is_paused`).
    pub active: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl From<RetailerAccount> for ManagedAccount {
    fn from(account: RetailerAccount) -> Self {
        let checking_out = account.checking_out();
        ManagedAccount {
            short_id: account.id.clone(),
            id: account.id,
            email: account.email,
            retailer: account.retailer,
            retailer_id: None,
            has_totp: account.has_totp,
            has_forwarding: false,
            is_paused: !account.active,
            locked_by_job_id: checking_out.map(|order| order.to_string()),
            cooldown_minutes: None,
            last_used_at: account.last_used_at,
            retailer_config: None,
            forwarding_email: String::new(),
            active: account.active,
            created_at: account.created_at,
            updated_at: account.updated_at,
        }
    }
}

/// A page of the tenant's managed accounts, newest first (the contract's
/// `RetailerCredentialsListResponse`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = RetailerCredentialsListResponse)]
pub struct ManagedAccountList {
    pub credentials: Vec<ManagedAccount>,
    /// How many match, on every page.
    pub total: i64,
    /// The same as `credentials` (kept for clients written before it).
    #[schema(deprecated)]
    pub data: Vec<ManagedAccount>,
}

/// The largest page of `GET /managed-accounts` (a tenant has few accounts).
const MAX_ACCOUNTS_PAGE: i64 = 500;

/// `limit`, `offset` and `search` of `GET /managed-accounts`.
#[derive(Debug, Default)]
struct ListFilter {
    page: Page,
    search: Option<String>,
}

fn parse_list_filter(raw: Option<&str>) -> Result<ListFilter, ValidationErrors> {
    let mut errors = Errors::default();
    let mut filter = ListFilter::default();
    for (name, value) in query_pairs(raw)? {
        let loc = Loc::query(&name);
        let text = Value::String(value.clone());
        if filter
            .page
            .take_up_to(MAX_ACCOUNTS_PAGE, &name, &text, &loc, &mut errors)
        {
            continue;
        }
        if name == "search" && !value.trim().is_empty() {
            filter.search = Some(value.trim().to_lowercase());
        }
    }
    errors.finish(|| filter)
}

/// List Managed Accounts
///
/// The retailer accounts of this API key's account and mode, newest first. Deleted
/// accounts are not listed.
#[utoipa::path(
    get,
    path = "/managed-accounts",
    tag = "managed-accounts",
    operation_id = "list_managed_accounts_managed_accounts_get",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Page size (default 20)"),
        ("offset" = Option<i64>, Query, minimum = 0, description = "Accounts to skip (default 0)"),
        ("search" = Option<String>, Query, description = "Only accounts whose id, e-mail or retailer contains this (any case)"),
    ),
    responses(
        (status = 200, description = "Successful Response", body = ManagedAccountList),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 422, description = "Validation Error", body = ValidationErrors),
    ),
    security(("BearerAuth" = []))
)]
pub async fn list_managed_accounts(
    State(state): State<AppState>,
    tenant: Tenant,
    RawQuery(query): RawQuery,
) -> Result<Json<ManagedAccountList>, ApiError> {
    let filter = parse_list_filter(query.as_deref())?;
    // A tenant has a handful of accounts: filtered and paged here, not in SQL.
    let matching: Vec<ManagedAccount> = store::list(&state.db, tenant.account_id, tenant.livemode)
        .await?
        .into_iter()
        .filter(|a| {
            filter.search.as_ref().is_none_or(|needle| {
                [&a.id, &a.email, &a.retailer]
                    .iter()
                    .any(|field| field.to_lowercase().contains(needle))
            })
        })
        .map(ManagedAccount::from)
        .collect();
    let total = matching.len() as i64;
    let page: Vec<ManagedAccount> = matching
        .into_iter()
        .skip(filter.page.offset as usize)
        .take(filter.page.limit as usize)
        .collect();
    Ok(Json(ManagedAccountList {
        data: page.clone(),
        credentials: page,
        total,
    }))
}

/// Create Managed Account
///
/// Stores a retailer account's sign-in details. The password and TOTP secret are
/// encrypted with the server's master key and never returned.
#[utoipa::path(
    post,
    path = "/managed-accounts",
    tag = "managed-accounts",
    operation_id = "create_managed_account_managed_accounts_post",
    request_body = ManagedAccountCreateDoc,
    responses(
        (status = 201, description = "Successful Response", body = ManagedAccount),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 422, description = "Validation Error", body = ValidationErrors),
    ),
    security(("BearerAuth" = []))
)]
pub async fn create_managed_account(
    State(state): State<AppState>,
    tenant: Tenant,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<ManagedAccount>), ApiError> {
    let new = request::parse_create(&body, &state.retailers)?;
    let account = store::create(
        &state.db,
        &state.vault,
        tenant.account_id,
        tenant.livemode,
        new,
    )
    .await?;
    tracing::info!(managed_account_id = %account.id, retailer = %account.retailer, "managed account created");
    Ok((StatusCode::CREATED, Json(account.into())))
}

/// Get Managed Account
#[utoipa::path(
    get,
    path = "/managed-accounts/{short_id}",
    tag = "managed-accounts",
    operation_id = "get_managed_account_managed_accounts__id__get",
    params(("short_id" = String, Path, description = "The managed account's id, e.g. acct_x7k2m9p4")),
    responses(
        (status = 200, description = "Successful Response", body = ManagedAccount),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 404, description = "No such managed account for this key", body = ErrorEnvelope),
    ),
    security(("BearerAuth" = []))
)]
pub async fn get_managed_account(
    State(state): State<AppState>,
    tenant: Tenant,
    PathParams(id): PathParams<String>,
) -> Result<Json<ManagedAccount>, ApiError> {
    let account = store::get(&state.db, tenant.account_id, tenant.livemode, id.trim()).await?;
    Ok(Json(account.into()))
}

/// Update Managed Account
///
/// Changes the fields given and leaves the others as they are; `"totp_secret": null`
/// removes the TOTP secret. The retailer cannot be changed. `PATCH` does the same.
#[utoipa::path(
    put,
    path = "/managed-accounts/{short_id}",
    tag = "managed-accounts",
    operation_id = "update_managed_account_managed_accounts__short_id__put",
    params(("short_id" = String, Path, description = "The managed account's id, e.g. acct_x7k2m9p4")),
    request_body = ManagedAccountUpdateDoc,
    responses(
        (status = 200, description = "Successful Response", body = ManagedAccount),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 404, description = "No such managed account for this key", body = ErrorEnvelope),
        (status = 409, description = "Changed by another request at the same time", body = ErrorEnvelope),
        (status = 422, description = "Validation Error", body = ValidationErrors),
    ),
    security(("BearerAuth" = []))
)]
pub async fn update_managed_account(
    State(state): State<AppState>,
    tenant: Tenant,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<ManagedAccount>, ApiError> {
    let change = request::parse_update(&body)?;
    let account = store::update(
        &state.db,
        &state.vault,
        tenant.account_id,
        tenant.livemode,
        id.trim(),
        change,
    )
    .await?;
    tracing::info!(managed_account_id = %account.id, "managed account updated");
    Ok(Json(account.into()))
}

/// Delete Managed Account
///
/// The account is no longer listed nor used for new orders; orders already placed with
/// it are still tracked with it.
#[utoipa::path(
    delete,
    path = "/managed-accounts/{short_id}",
    tag = "managed-accounts",
    operation_id = "delete_managed_account_managed_accounts__id__delete",
    params(("short_id" = String, Path, description = "The managed account's id, e.g. acct_x7k2m9p4")),
    responses(
        (status = 204, description = "The managed account was deleted"),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 404, description = "No such managed account for this key", body = ErrorEnvelope),
    ),
    security(("BearerAuth" = []))
)]
pub async fn delete_managed_account(
    State(state): State<AppState>,
    tenant: Tenant,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let id = id.trim();
    store::delete(&state.db, tenant.account_id, tenant.livemode, id).await?;
    tracing::info!(managed_account_id = %id, "managed account deleted");
    Ok(StatusCode::NO_CONTENT)
}
