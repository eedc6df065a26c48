//! The webhook endpoint of an account and mode: its URL and signing secrets.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::address::{self, Resolver, SpecialUse};
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
    /// `host` is `None` when the URL names the address itself.
    #[error("{}", not_public_message(host.as_deref(), *address, why))]
    NotPublic {
        host: Option<String>,
        address: IpAddr,
        why: SpecialUse,
    },
}

fn not_public_message(host: Option<&str>, address: IpAddr, why: &SpecialUse) -> String {
    let what = match host {
        Some(host) => format!("{host} resolves to {address}, which"),
        None => address.to_string(),
    };
    format!(
        "{what} is not a public address ({why}); webhooks go only to public addresses \
         (set webhooks_allow_private_addresses to allow it)"
    )
}

/// Checks that `url` is an absolute http(s) URL with a host.
pub fn parse_url(url: &str) -> Result<url::Url, UnsafeUrl> {
    let parsed = url::Url::parse(url).map_err(|_| UnsafeUrl::Malformed)?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(UnsafeUrl::Malformed);
    }
    Ok(parsed)
}

/// The addresses a request to `url` may connect to: the address the URL names, or
/// those its host resolves to, in one lookup. Unless private addresses are allowed,
/// every one of them must be public ([`address::is_public`]): a name with one
/// address that is not is refused whole.
pub async fn resolve(
    url: &url::Url,
    resolver: &dyn Resolver,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, UnsafeUrl> {
    let port = url.port_or_known_default().ok_or(UnsafeUrl::Malformed)?;
    let (host, addresses) = match url.host().ok_or(UnsafeUrl::Malformed)? {
        url::Host::Ipv4(ip) => (None, vec![SocketAddr::new(IpAddr::V4(ip), port)]),
        url::Host::Ipv6(ip) => (None, vec![SocketAddr::new(IpAddr::V6(ip), port)]),
        url::Host::Domain(name) => {
            let found = resolver
                .lookup(name, port)
                .await
                .map_err(|_| UnsafeUrl::Unresolvable(name.to_string()))?;
            // The port is the URL's, whatever the resolver said.
            let found: Vec<SocketAddr> = found
                .into_iter()
                .map(|a| SocketAddr::new(a.ip(), port))
                .collect();
            (Some(name.to_string()), found)
        }
    };
    if addresses.is_empty() {
        return Err(UnsafeUrl::Unresolvable(
            host.unwrap_or_else(|| url.host_str().unwrap_or_default().to_string()),
        ));
    }
    if !allow_private
        && let Some((address, why)) = addresses
            .iter()
            .find_map(|a| address::special_use(a.ip()).map(|why| (a.ip(), why)))
    {
        return Err(UnsafeUrl::NotPublic { host, address, why });
    }
    Ok(addresses)
}

/// Checks a URL at registration: http(s), and unless private addresses are allowed,
/// on public addresses only. Deliveries check again, and connect to what they checked
/// (DNS can change).
pub async fn check_url(
    url: &str,
    resolver: &dyn Resolver,
    allow_private: bool,
) -> Result<url::Url, UnsafeUrl> {
    let parsed = parse_url(url)?;
    if !allow_private {
        resolve(&parsed, resolver, false).await?;
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::address::SystemResolver;

    /// Answers every lookup with the same addresses (the port is the resolver's own).
    struct Fixed(Vec<IpAddr>);

    #[async_trait::async_trait]
    impl Resolver for Fixed {
        async fn lookup(&self, _host: &str, _port: u16) -> std::io::Result<Vec<SocketAddr>> {
            Ok(self.0.iter().map(|ip| SocketAddr::new(*ip, 1)).collect())
        }
    }

    #[tokio::test]
    async fn special_use_addresses_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1/hook",
            "http://10.1.2.3/hook",
            "http://192.168.0.10:8080/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/hook",
            "http://198.18.0.1/hook",
            "http://192.0.0.1/hook",
            "http://240.0.0.1/hook",
            "http://255.255.255.255/hook",
            "http://0.0.0.0/hook",
            "http://[::1]/hook",
            "http://[fd00::1]/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://[::127.0.0.1]/hook",
            "http://[64:ff9b::a9fe:a9fe]/hook",
            "http://[64:ff9b:1::5db8:d822]/hook",
            "http://[2002:7f00:1::]/hook",
            "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",
            "http://[fec0::1]/hook",
        ] {
            let refused = check_url(url, &SystemResolver, false).await;
            assert!(
                matches!(refused, Err(UnsafeUrl::NotPublic { host: None, .. })),
                "{url}: {refused:?}"
            );
            assert!(check_url(url, &SystemResolver, true).await.is_ok(), "{url}");
        }
        for url in [
            "http://93.184.215.14/hook",
            "https://[2606:4700::1111]/hook",
            "http://[2002:5db8:d822::1]:8080/hook",
        ] {
            assert!(
                check_url(url, &SystemResolver, false).await.is_ok(),
                "{url}"
            );
        }
        assert_eq!(
            check_url("ftp://93.184.215.14/x", &SystemResolver, true).await,
            Err(UnsafeUrl::Malformed)
        );
        assert_eq!(
            check_url("not a url", &SystemResolver, true).await,
            Err(UnsafeUrl::Malformed)
        );
    }

    #[tokio::test]
    async fn a_name_with_any_special_use_address_is_refused_whole() {
        let public: IpAddr = "93.184.215.14".parse().unwrap();
        let metadata: IpAddr = "169.254.169.254".parse().unwrap();
        let url = parse_url("http://hooks.example.com:8080/in").unwrap();
        let found = resolve(&url, &Fixed(vec![public]), false).await.unwrap();
        assert_eq!(found, vec![SocketAddr::new(public, 8080)], "the URL's port");
        let refused = resolve(&url, &Fixed(vec![public, metadata]), false).await;
        let Err(error @ UnsafeUrl::NotPublic { .. }) = refused else {
            panic!("{refused:?}");
        };
        assert_eq!(
            error.to_string(),
            "hooks.example.com resolves to 169.254.169.254, which is not a public address \
             (169.254.0.0/16: link-local); webhooks go only to public addresses \
             (set webhooks_allow_private_addresses to allow it)"
        );
        assert_eq!(
            resolve(&url, &Fixed(vec![public, metadata]), true)
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            resolve(&url, &Fixed(vec![]), false).await,
            Err(UnsafeUrl::Unresolvable("hooks.example.com".into()))
        );
    }
}
