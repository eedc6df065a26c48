//! Path parameters and query strings, checked once for what no database may be given:
//! a NUL character (PostgreSQL refuses it in text, SQLite would keep it) is a 422 naming
//! the parameter, before any handler sees it.

use axum::extract::{FromRequestParts, Path, RawPathParams};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::validation::{Errors, Loc, ValidationErrors};

/// Path parameters, refused with a 422 when one holds a NUL character, or with a 400
/// when one is not UTF-8 once percent-decoded.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let bad_request =
            |text: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", text);
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|rejection| bad_request(rejection.body_text()))?;
        let mut errors = Errors::default();
        for (name, value) in &raw {
            check_text(value, &Loc::path(name), &mut errors);
        }
        errors.into_result()?;
        let Path(value) = Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| bad_request(rejection.body_text()))?;
        Ok(PathParams(value))
    }
}

/// Query parameters as ordered pairs; parameters given twice keep the last value. A
/// name or value holding a NUL character is a 422.
pub fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ValidationErrors> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut errors = Errors::default();
    for (name, value) in &pairs {
        let loc = Loc::query(name);
        check_text(name, &loc, &mut errors);
        check_text(value, &loc, &mut errors);
    }
    errors.finish(|| pairs)
}

fn check_text(text: &str, loc: &Loc, errors: &mut Errors) {
    if text.contains('\0') {
        errors.add(
            loc,
            "string_invalid_character",
            "String must not contain NUL characters",
        );
    }
}
