//! `/webhooks/endpoint`: where an account's webhooks go, and their signing secret.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::endpoint::{self, Endpoint, EndpointError, UnsafeUrl};
use crate::auth::Tenant;
use crate::http::body::JsonBody;
use crate::http::error::ErrorEnvelope;
use crate::http::{ApiError, AppState};
use crate::validation::{Errors, Loc, Object, ValidationErrors};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/webhooks/endpoint",
            get(get_endpoint).put(put_endpoint).delete(delete_endpoint),
        )
        .route("/webhooks/endpoint/rotate-secret", post(rotate_secret))
}

/// The account's webhook endpoint (the contract's `WebhookEndpointResponse`): URL and
/// secret are null until a URL is set.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookEndpointResponse)]
pub struct WebhookEndpoint {
    pub webhook_url: Option<String>,
    /// Signs every delivery (`whsec_…`): verify `webhook-signature` (Standard Webhooks)
    /// or `X-Webhook-Signature` with it.
    pub webhook_secret: Option<String>,
    /// The same as `webhook_url` (kept for clients written before it).
    #[schema(deprecated)]
    pub url: Option<String>,
    /// The same as `webhook_secret` (kept for clients written before it).
    #[schema(deprecated)]
    pub secret: Option<String>,
    /// Why deliveries stopped (the receiver answered 410 Gone, or every attempt failed
    /// for too long); null while active. Setting the URL again re-enables it.
    pub disabled_reason: Option<String>,
}

/// Request body of `PUT /webhooks/endpoint`.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = WebhookEndpointUpdate)]
pub struct WebhookEndpointUpdateDoc {
    /// An absolute http(s) URL on a public address.
    #[schema(max_length = 2048)]
    url: String,
}

impl From<Option<Endpoint>> for WebhookEndpoint {
    fn from(endpoint: Option<Endpoint>) -> Self {
        match endpoint {
            Some(e) => WebhookEndpoint {
                webhook_url: e.url.clone(),
                webhook_secret: Some(e.secret.clone()),
                url: e.url,
                secret: Some(e.secret),
                disabled_reason: e.disabled_reason,
            },
            None => WebhookEndpoint {
                webhook_url: None,
                webhook_secret: None,
                url: None,
                secret: None,
                disabled_reason: None,
            },
        }
    }
}

impl From<EndpointError> for ApiError {
    fn from(error: EndpointError) -> Self {
        ApiError::Internal(error.into())
    }
}

/// Get Webhook Endpoint
#[utoipa::path(
    get,
    path = "/webhooks/endpoint",
    tag = "webhooks",
    operation_id = "get_webhook_endpoint_webhooks_endpoint_get",
    responses(
        (status = 200, description = "Successful Response", body = WebhookEndpoint),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
    ),
    security(("BearerAuth" = []))
)]
pub async fn get_endpoint(
    State(state): State<AppState>,
    tenant: Tenant,
) -> Result<Json<WebhookEndpoint>, ApiError> {
    let endpoint = endpoint::get(&state.db, &state.vault, &tenant).await?;
    Ok(Json(endpoint.into()))
}

/// Set Webhook Endpoint
///
/// The first call creates the signing secret and returns it; changing the URL later
/// keeps the secret. Addresses that are not public (private, loopback, link-local and
/// the other special-use blocks) are refused unless the server allows them.
#[utoipa::path(
    put,
    path = "/webhooks/endpoint",
    tag = "webhooks",
    operation_id = "set_webhook_endpoint_webhooks_endpoint_put",
    request_body = WebhookEndpointUpdateDoc,
    responses(
        (status = 200, description = "Successful Response", body = WebhookEndpoint),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 422, description = "Validation Error", body = ValidationErrors),
    ),
    security(("BearerAuth" = []))
)]
pub async fn put_endpoint(
    State(state): State<AppState>,
    tenant: Tenant,
    JsonBody(body): JsonBody,
) -> Result<Json<WebhookEndpoint>, ApiError> {
    let mut errors = Errors::default();
    let Some(obj) = Object::new(&body, Loc::body(), &mut errors) else {
        return Err(errors.into_rejection().into());
    };
    let url = obj.required_str("url", &mut errors).map(str::trim);
    let loc = obj.loc("url");
    errors.into_result()?;
    let url = url.unwrap_or_default();
    if url.len() > 2048 {
        return Err(ValidationErrors::single(
            &loc,
            "string_too_long",
            "String should have at most 2048 characters",
        )
        .into());
    }
    let allow_private = state.settings.webhooks.webhooks_allow_private_addresses;
    let checked = endpoint::check_url(url, &*state.webhook_resolver, allow_private)
        .await
        .map_err(|e| {
            let kind = match e {
                UnsafeUrl::Malformed => "url_parsing",
                UnsafeUrl::Unresolvable(_) => "url_unresolvable",
                UnsafeUrl::NotPublic { .. } => "url_not_public",
            };
            ValidationErrors::single(&loc, kind, e.to_string())
        })?;
    let endpoint = endpoint::set_url(&state.db, &state.vault, &tenant, checked.as_str()).await?;
    tracing::info!(url = %checked, "webhook endpoint set");
    Ok(Json(Some(endpoint).into()))
}

/// Delete Webhook Endpoint
///
/// Stops deliveries. The secret is kept: setting a URL again reuses it.
#[utoipa::path(
    delete,
    path = "/webhooks/endpoint",
    tag = "webhooks",
    operation_id = "delete_webhook_endpoint_webhooks_endpoint_delete",
    responses(
        (status = 204, description = "Deliveries stopped"),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
    ),
    security(("BearerAuth" = []))
)]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    tenant: Tenant,
) -> Result<StatusCode, ApiError> {
    endpoint::clear_url(&state.db, &tenant).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate Webhook Secret
///
/// Creates a new secret and returns it. For 24 hours deliveries are signed with both
/// the old and the new secret, so receivers can switch without missing one.
#[utoipa::path(
    post,
    path = "/webhooks/endpoint/rotate-secret",
    tag = "webhooks",
    operation_id = "rotate_webhook_secret_webhooks_endpoint_rotate_secret_post",
    responses(
        (status = 200, description = "Successful Response", body = WebhookEndpoint),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorEnvelope),
        (status = 404, description = "No webhook endpoint was ever set", body = ErrorEnvelope),
    ),
    security(("BearerAuth" = []))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    tenant: Tenant,
) -> Result<Json<WebhookEndpoint>, ApiError> {
    match endpoint::rotate_secret(&state.db, &state.vault, &tenant).await? {
        Some(endpoint) => {
            tracing::info!("webhook secret rotated");
            Ok(Json(Some(endpoint).into()))
        }
        None => Err(ApiError::not_found(
            "No webhook endpoint is set: PUT /webhooks/endpoint first",
        )),
    }
}
