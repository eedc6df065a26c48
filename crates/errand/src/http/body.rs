//! Request bodies read without ever failing with a 500: malformed JSON, a wrong content
//! type or an oversized body become precise 4xx errors.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde_json::Value;

use super::ApiError;
use crate::validation::{Loc, ValidationErrors};

/// The request body as untyped JSON, for parsers that report every failing field.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // As FastAPI does: a missing content type is read as JSON, any other is refused.
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or(""));
        if let Some(ct) = content_type {
            let mime = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if mime != "application/json" && !mime.ends_with("+json") {
                return Err(ValidationErrors::single(
                    &Loc::body(),
                    "model_attributes_type",
                    format!("Request body should be JSON sent with 'Content-Type: application/json', not {ct:?}"),
                )
                .into());
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "Request body is too large",
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    rejection.body_text(),
                )
            }
        })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ValidationErrors::single(
                &Loc::body(),
                "json_invalid",
                format!("JSON decode error: {e}"),
            )
            .into()
        })
    }
}
