//! API keys and tenancy: every request carries `Authorization: Bearer <key>`; the key
//! names an account (the tenant) and a mode (live or test), and every read and write is
//! scoped to both.
//!
//! Keys are 190-bit random strings, so a fast SHA-256 is a safe way to store them (a
//! slow password hash would only add latency to every request).

pub mod keys;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::http::{ApiError, AppState};

/// Who is calling: the scope of every query a request makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenant {
    pub account_id: Uuid,
    /// `false` for keys made with `--test`, whose orders never reach real retailers.
    pub livemode: bool,
    pub key_id: Uuid,
}

pub const LIVE_PREFIX: &str = "er_live_";
pub const TEST_PREFIX: &str = "er_test_";
const SECRET_LEN: usize = 32;
/// Characters of the random part kept in clear to tell keys apart in listings.
const DISPLAY_CHARS: usize = 6;

/// A freshly generated key: `secret` is shown once and never stored.
pub struct GeneratedKey {
    pub secret: String,
    pub hash: Vec<u8>,
    pub display_prefix: String,
}

pub fn generate_key(livemode: bool) -> GeneratedKey {
    let prefix = if livemode { LIVE_PREFIX } else { TEST_PREFIX };
    let random = Alphanumeric.sample_string(&mut rand::rng(), SECRET_LEN);
    let secret = format!("{prefix}{random}");
    GeneratedKey {
        hash: hash_key(&secret),
        display_prefix: format!("{prefix}{}", &random[..DISPLAY_CHARS]),
        secret,
    }
}

pub fn hash_key(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// The key from an `Authorization: Bearer <key>` header.
fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(parts).ok_or_else(|| {
            ApiError::unauthorized("Missing API key: send the header 'Authorization: Bearer <key>'")
        })?;
        if !(token.starts_with(LIVE_PREFIX) || token.starts_with(TEST_PREFIX)) {
            return Err(ApiError::unauthorized("Invalid API key"));
        }
        let tenant = keys::find_tenant(&state.db, &hash_key(token)).await?;
        tenant.ok_or_else(|| ApiError::unauthorized("Invalid or revoked API key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_mode_prefix_and_stable_hash() {
        let live = generate_key(true);
        assert!(live.secret.starts_with("er_live_"));
        assert_eq!(live.secret.len(), 8 + SECRET_LEN);
        assert!(live.secret.starts_with(&live.display_prefix));
        assert_eq!(hash_key(&live.secret), live.hash);
        let test = generate_key(false);
        assert!(test.secret.starts_with("er_test_"));
        assert_ne!(test.hash, live.hash);
    }
}
