//! The one error type of the HTTP boundary. 422s carry FastAPI's `{"detail": [...]}`;
//! every other error carries `{"error": {"code", "message", "details"}}`. A 5xx body
//! says nothing about the cause, which is logged instead.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::validation::ValidationErrors;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request validation failed")]
    Validation(ValidationErrors),
    #[error("{status} {code}: {message}")]
    Http {
        status: StatusCode,
        code: &'static str,
        message: String,
        details: Option<Value>,
    },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// `{"error": {...}}`, the body of every error other than 422.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable: `unauthorized`, `not_found`, `idempotency_conflict`,
    /// `order_not_cancellable`, `bad_request`, `internal_error`, ...
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Http {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(self, extra: Value) -> Self {
        match self {
            ApiError::Http {
                status,
                code,
                message,
                ..
            } => ApiError::Http {
                status,
                code,
                message,
                details: Some(extra),
            },
            other => other,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> Self {
        ApiError::Validation(errors)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if crate::storage::is_unavailable(&error) {
            return ApiError::database_unavailable(&error);
        }
        ApiError::Internal(anyhow::Error::new(error).context("database error"))
    }
}

impl ApiError {
    /// The 503 for a database that cannot be reached now (overloaded, restarting,
    /// away): not a fault, and the client may try again shortly (a write whose commit
    /// went unanswered is found by its idempotency key).
    pub fn database_unavailable(error: &dyn std::fmt::Display) -> ApiError {
        tracing::warn!(error = %error, "a request could not reach the database");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "The server cannot reach its database now; try again shortly",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Validation(errors) => {
                (StatusCode::UNPROCESSABLE_ENTITY, Json(errors)).into_response()
            }
            ApiError::Http {
                status,
                code,
                message,
                details,
            } => {
                let body = ErrorEnvelope {
                    error: ErrorBody {
                        code: code.to_string(),
                        message,
                        details,
                    },
                };
                (status, Json(body)).into_response()
            }
            ApiError::Internal(error) => {
                // However deep it was wrapped, an unreachable database is a 503.
                let database = error.chain().find_map(|e| e.downcast_ref::<sqlx::Error>());
                if let Some(database) = database.filter(|e| crate::storage::is_unavailable(e)) {
                    return ApiError::database_unavailable(database).into_response();
                }
                tracing::error!(error = format!("{error:#}"), "request failed");
                internal_error_response()
            }
        }
    }
}

pub fn internal_error_response() -> Response {
    let body = ErrorEnvelope {
        error: ErrorBody {
            code: "internal_error".into(),
            message: "Internal server error".into(),
            details: None,
        },
    };
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}
