//! The webhook endpoint of an account and mode: its URL and signing secrets.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::signing::generate_secret;
use crate::accounts::Vault;
use crate::auth::Tenant;
use crate::on_db;
use crate::storage::{Db, DbId, Timestamp};

/// How long the previous secret keeps signing after a rotation.
pub const ROTATION_OVERLAP: time::Duration = time::Duration::hours(24);

/// An endpoint with its secrets in clear (never logged: `Debug` redacts them).
#[derive(Clone)]
pub struct Endpoint {
    pub url: Option<String>,
    pub secret: String,
    /// The secret before the last rotation, while it still signs.
    pub previous_secret: Option<String>,
    pub disabled_reason: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("disabled_reason", &self.disabled_reason)
            .finish_non_exhaustive()
    }
}

/// What is sealed: the secret alone, bound to the tenant by the vault's row id.
#[derive(Serialize, Deserialize)]
struct Sealed {
    secret: String,
}

fn row_id(tenant: &Tenant) -> String {
    format!("webhook:{}:{}", tenant.account_id, tenant.livemode)
}

#[derive(sqlx::FromRow)]
struct Row {
    url: Option<String>,
    secret: Vec<u8>,
    previous_secret: Option<Vec<u8>>,
    previous_valid_until: Option<Timestamp>,
    disabled_reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(transparent)]
    Vault(#[from] crate::accounts::vault::VaultError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn open(vault: &Vault, tenant: &Tenant, row: Row) -> Result<Endpoint, EndpointError> {
    let id = row_id(tenant);
    let secret = vault.open::<Sealed>(&id, &row.secret)?.secret;
    let previous_secret = match (row.previous_secret, row.previous_valid_until) {
        (Some(sealed), Some(until)) if until > Timestamp::now() => {
            Some(vault.open::<Sealed>(&id, &sealed)?.secret)
        }
        _ => None,
    };
    Ok(Endpoint {
        url: row.url,
        secret,
        previous_secret,
        disabled_reason: row.disabled_reason,
    })
}

pub async fn get(
    db: &Db,
    vault: &Vault,
    tenant: &Tenant,
) -> Result<Option<Endpoint>, EndpointError> {
    let row: Option<Row> = on_db!(db, reader, |pool| {
        sqlx::query_as(
            "SELECT url, secret, previous_secret, previous_valid_until, disabled_reason
             FROM webhook_endpoints WHERE account_id = $1 AND livemode = $2",
        )
        .bind(DbId(tenant.account_id))
        .bind(tenant.livemode)
        .fetch_optional(pool)
        .await
    })?;
    row.map(|row| open(vault, tenant, row)).transpose()
}

/// Sets the URL (re-enabling a disabled endpoint); the first call creates the secret,
/// later ones keep it.
pub async fn set_url(
    db: &Db,
    vault: &Vault,
    tenant: &Tenant,
    url: &str,
) -> Result<Endpoint, EndpointError> {
    let now = Timestamp::now();
    let sealed = vault.seal(
        &row_id(tenant),
        &Sealed {
            secret: generate_secret(),
        },
    )?;
    on_db!(db, writer, |pool| {
        sqlx::query(
            "INSERT INTO webhook_endpoints (account_id, livemode, url, secret, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (account_id, livemode) DO UPDATE
             SET url = excluded.url, disabled_at = NULL, disabled_reason = NULL, failing_since = NULL,
                 updated_at = excluded.updated_at",
        )
        .bind(DbId(tenant.account_id))
        .bind(tenant.livemode)
        .bind(url)
        .bind(&sealed)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
    })?;
    get(db, vault, tenant)
        .await?
        .ok_or(EndpointError::Database(sqlx::Error::RowNotFound))
}

/// Stops deliveries; the secret stays for a later `set_url`. Returns whether an
/// endpoint existed.
pub async fn clear_url(db: &Db, tenant: &Tenant) -> Result<bool, EndpointError> {
    let now = Timestamp::now();
    let changed = on_db!(db, writer, |pool| {
        sqlx::query(
            "UPDATE webhook_endpoints SET url = NULL, updated_at = $1 WHERE account_id = $2 AND livemode = $3",
        )
        .bind(now)
        .bind(DbId(tenant.account_id))
        .bind(tenant.livemode)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(changed > 0)
}

/// Replaces the secret; the old one keeps signing for [`ROTATION_OVERLAP`]. `None` when
/// no endpoint exists yet.
pub async fn rotate_secret(
    db: &Db,
    vault: &Vault,
    tenant: &Tenant,
) -> Result<Option<Endpoint>, EndpointError> {
    let now = Timestamp::now();
    let sealed = vault.seal(
        &row_id(tenant),
        &Sealed {
            secret: generate_secret(),
        },
    )?;
    let changed = on_db!(db, writer, |pool| {
        sqlx::query(
            "UPDATE webhook_endpoints
             SET previous_secret = secret, previous_valid_until = $1, secret = $2, updated_at = $3
             WHERE account_id = $4 AND livemode = $5",
        )
        .bind(now.plus(ROTATION_OVERLAP))
        .bind(&sealed)
        .bind(now)
        .bind(DbId(tenant.account_id))
        .bind(tenant.livemode)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
    })?;
    if changed == 0 {
        return Ok(None);
    }
    get(db, vault, tenant).await
}

/// Stops deliveries to an endpoint that asked for it (410 Gone); setting a URL again
/// re-enables it.
pub async fn disable(db: &Db, tenant: &Tenant, reason: &str) -> Result<(), sqlx::Error> {
    let now = Timestamp::now();
    on_db!(db, writer, |pool| {
        sqlx::query(
            "UPDATE webhook_endpoints SET disabled_at = $1, disabled_reason = $2, updated_at = $1
             WHERE account_id = $3 AND livemode = $4",
        )
        .bind(now)
        .bind(reason)
        .bind(DbId(tenant.account_id))
        .bind(tenant.livemode)
        .execute(pool)
        .await
        .map(|_| ())
    })
}

/// Endpoints with a URL that are disabled, across all tenants (a metric).
pub async fn count_disabled(db: &Db) -> Result<i64, sqlx::Error> {
    on_db!(db, reader, |pool| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM webhook_endpoints WHERE url IS NOT NULL AND disabled_at IS NOT NULL",
        )
        .fetch_one(pool)
        .await
    })
}

/// Why a URL may not receive webhooks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeUrl {
    #[error("the URL must be an absolute http(s) URL with a host")]
    Malformed,
    #[error("the host {0} cannot be resolved")]
    Unresolvable(String),
    #[error(
        "{0} is a private, loopback or link-local address; webhooks go only to public addresses (set webhooks_allow_private_addresses to allow it)"
    )]
    Private(IpAddr),
}

/// Checks that `url` is http(s) and, unless private addresses are allowed, that every
/// address its host resolves to is public. Run at registration and before every
/// delivery (DNS can change).
pub async fn check_url(url: &str, allow_private: bool) -> Result<url::Url, UnsafeUrl> {
    let parsed = url::Url::parse(url).map_err(|_| UnsafeUrl::Malformed)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(UnsafeUrl::Malformed);
    }
    let host = parsed.host().ok_or(UnsafeUrl::Malformed)?;
    if allow_private {
        return Ok(parsed);
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addresses: Vec<IpAddr> = match host {
        url::Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
        url::Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
        url::Host::Domain(name) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|_| UnsafeUrl::Unresolvable(name.to_string()))?
            .map(|a| a.ip())
            .collect(),
    };
    if addresses.is_empty() {
        return Err(UnsafeUrl::Unresolvable(host.to_string()));
    }
    match addresses.into_iter().find(|ip| !is_public(ip)) {
        Some(ip) => Err(UnsafeUrl::Private(ip)),
        None => Ok(parsed),
    }
}

/// Whether an address is on the public internet.
fn is_public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                // Carrier-grade NAT, 100.64.0.0/10.
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(&IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // Unique local fc00::/7 and link-local fe80::/10.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn private_addresses_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1/hook",
            "http://10.1.2.3/hook",
            "http://192.168.0.10:8080/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/hook",
            "http://[::1]/hook",
            "http://[fd00::1]/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://0.0.0.0/hook",
        ] {
            assert!(
                matches!(check_url(url, false).await, Err(UnsafeUrl::Private(_))),
                "{url}"
            );
            assert!(check_url(url, true).await.is_ok(), "{url}");
        }
        assert!(check_url("http://93.184.215.14/hook", false).await.is_ok());
        assert_eq!(
            check_url("ftp://93.184.215.14/x", true).await,
            Err(UnsafeUrl::Malformed)
        );
        assert_eq!(
            check_url("not a url", true).await,
            Err(UnsafeUrl::Malformed)
        );
    }
}
