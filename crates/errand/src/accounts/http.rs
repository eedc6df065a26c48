//! `/managed-accounts` endpoints. Responses never carry a password or TOTP secret, not
//! even masked, and no handler logs a request body.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::request::{self, ManagedAccountCreateDoc, ManagedAccountUpdateDoc};
use super::store::{self, AccountError, RetailerAccount};
use crate::auth::Tenant;
use crate::http::body::JsonBody;
use crate::http::error::ErrorEnvelope;
use crate::http::{ApiError, AppState};
use crate::storage::Timestamp;
use crate::validation::ValidationErrors;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/managed-accounts",
            get(list_managed_accounts).post(create_managed_account),
        )
        .route(
            "/managed-accounts/{id}",
            get(get_managed_account)
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
            AccountError::Vault(e) => ApiError::Internal(e.into()),
            AccountError::Database(e) => e.into(),
        }
    }
}

/// A retailer account the engine signs in with to place and track orders.
#[derive(Debug, Serialize, ToSchema)]
pub struct ManagedAccount {
    #[schema(example = "acct_x7k2m9p4")]
    pub id: String,
    #[schema(example = "demo")]
    pub retailer: String,
    #[schema(example = "buyer@example.com")]
    pub email: String,
    /// Whether a TOTP secret is stored for the retailer's two-factor sign-in.
    pub has_totp: bool,
    /// Inactive accounts are never used to place orders.
    pub active: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    /// When an order was last placed or tracked with this account.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
}

impl From<RetailerAccount> for ManagedAccount {
    fn from(account: RetailerAccount) -> Self {
        ManagedAccount {
            id: account.id,
            retailer: account.retailer,
            email: account.email,
            has_totp: account.has_totp,
            active: account.active,
            created_at: account.created_at,
            updated_at: account.updated_at,
            last_used_at: account.last_used_at,
        }
    }
}

/// The tenant's managed accounts, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ManagedAccountList {
    pub data: Vec<ManagedAccount>,
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
    responses(
        (status = 200, description = "Successful Response", body = ManagedAccountList),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
    ),
    security(("BearerAuth" = []))
)]
pub async fn list_managed_accounts(
    State(state): State<AppState>,
    tenant: Tenant,
) -> Result<Json<ManagedAccountList>, ApiError> {
    let accounts = store::list(&state.db, tenant.account_id, tenant.livemode).await?;
    Ok(Json(ManagedAccountList {
        data: accounts.into_iter().map(ManagedAccount::from).collect(),
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
    path = "/managed-accounts/{id}",
    tag = "managed-accounts",
    operation_id = "get_managed_account_managed_accounts__id__get",
    params(("id" = String, Path, description = "The managed account's id, e.g. acct_x7k2m9p4")),
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
    Path(id): Path<String>,
) -> Result<Json<ManagedAccount>, ApiError> {
    let account = store::get(&state.db, tenant.account_id, tenant.livemode, id.trim()).await?;
    Ok(Json(account.into()))
}

/// Update Managed Account
///
/// Changes the fields given and leaves the others as they are; `"totp_secret": null`
/// removes the TOTP secret. The retailer cannot be changed.
#[utoipa::path(
    patch,
    path = "/managed-accounts/{id}",
    tag = "managed-accounts",
    operation_id = "update_managed_account_managed_accounts__id__patch",
    params(("id" = String, Path, description = "The managed account's id, e.g. acct_x7k2m9p4")),
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
    Path(id): Path<String>,
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
    path = "/managed-accounts/{id}",
    tag = "managed-accounts",
    operation_id = "delete_managed_account_managed_accounts__id__delete",
    params(("id" = String, Path, description = "The managed account's id, e.g. acct_x7k2m9p4")),
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
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = id.trim();
    store::delete(&state.db, tenant.account_id, tenant.livemode, id).await?;
    tracing::info!(managed_account_id = %id, "managed account deleted");
    Ok(StatusCode::NO_CONTENT)
}
