//! What the browser saw while buying an order: a screenshot (PNG) of each phase and the
//! page's HTML at a failure. Kept with the order, scoped to its tenant like every order
//! read, and served to its owner (`GET /orders/{id}/screenshots/{name}`,
//! `GET /orders/{id}/pages/{name}`).
//!
//! An artifact is named after its phase ([`names`]), with an item index where a phase
//! repeats per item (`product-2`). Saving the same name and kind again replaces the
//! artifact, so a retried phase leaves one screenshot, dated when it was retaken.

use std::collections::HashMap;

use sqlx::QueryBuilder;
use uuid::Uuid;

use crate::auth::Tenant;
use crate::on_db;
use crate::storage::{Db, DbId, Timestamp};

/// The largest artifact kept. A full-page PNG of a long retailer page stays well under
/// it; anything bigger is a mistake better refused than stored in every backup.
pub const MAX_ARTIFACT_BYTES: usize = 5 * 1024 * 1024;

/// The longest artifact name.
pub const MAX_NAME_LEN: usize = 64;

/// The phases the browser driver records.
pub mod names {
    /// A product's page (with several items: `product-1`, `product-2`, …).
    pub const PRODUCT: &str = "product";
    pub const CART: &str = "cart";
    /// The order review, just before the final click.
    pub const REVIEW: &str = "review";
    pub const CONFIRMATION: &str = "confirmation";
    /// The page at the moment a checkout failed.
    pub const FAILURE: &str = "failure";

    /// `phase-index`, e.g. `product-2` for the second item's product page.
    pub fn indexed(phase: &str, index: usize) -> String {
        format!("{phase}-{index}")
    }
}

/// The 8 bytes every PNG file starts with.
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArtifactKind {
    /// A PNG screenshot.
    Screenshot,
    /// A page's HTML.
    Page,
    /// A return label the retailer gave (PDF), named after its return.
    ReturnLabel,
}

impl ArtifactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::Screenshot => "screenshot",
            ArtifactKind::Page => "page",
            ArtifactKind::ReturnLabel => "label",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            ArtifactKind::Screenshot,
            ArtifactKind::Page,
            ArtifactKind::ReturnLabel,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ArtifactKind::Screenshot => "image/png",
            ArtifactKind::Page => "text/html; charset=utf-8",
            ArtifactKind::ReturnLabel => "application/pdf",
        }
    }
}

impl std::fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error(
        "artifact name {0:?} is invalid: use 1 to {MAX_NAME_LEN} lower-case letters, digits, '-' or '_', starting with a letter (e.g. \"product-2\")"
    )]
    InvalidName(String),
    #[error("the {kind} {name:?} is empty")]
    Empty { name: String, kind: ArtifactKind },
    #[error(
        "the {kind} {name:?} is {size} bytes; an artifact may be at most {MAX_ARTIFACT_BYTES} bytes"
    )]
    TooLarge {
        name: String,
        kind: ArtifactKind,
        size: usize,
    },
    #[error("the screenshot {0:?} is not a PNG image")]
    NotPng(String),
    #[error("order not found")]
    OrderNotFound,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Whether `name` can name an artifact: it appears in URLs as is, so it is kept to
/// characters that need no escaping.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME_LEN
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// An artifact with its content.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub name: String,
    pub kind: ArtifactKind,
    pub content_type: String,
    pub content: Vec<u8>,
    pub created_at: Timestamp,
}

/// An artifact without its content, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactInfo {
    pub name: String,
    pub kind: ArtifactKind,
    pub size: i64,
    pub created_at: Timestamp,
}

#[derive(sqlx::FromRow)]
struct InfoRow {
    name: String,
    kind: String,
    size: i64,
    created_at: Timestamp,
}

impl InfoRow {
    fn into_info(self) -> Result<ArtifactInfo, sqlx::Error> {
        Ok(ArtifactInfo {
            kind: ArtifactKind::parse(&self.kind)
                .ok_or_else(|| super::store::corrupt("artifact kind", &self.kind))?,
            name: self.name,
            size: self.size,
            created_at: self.created_at,
        })
    }
}

/// Checks an artifact before it is stored; a page's HTML is made valid UTF-8 (it is
/// served as such), replacing any byte that is not.
fn prepare<'a>(
    name: &str,
    kind: ArtifactKind,
    bytes: &'a [u8],
) -> Result<std::borrow::Cow<'a, [u8]>, ArtifactError> {
    if !valid_name(name) {
        return Err(ArtifactError::InvalidName(name.to_string()));
    }
    if bytes.is_empty() {
        return Err(ArtifactError::Empty {
            name: name.to_string(),
            kind,
        });
    }
    if bytes.len() > MAX_ARTIFACT_BYTES {
        return Err(ArtifactError::TooLarge {
            name: name.to_string(),
            kind,
            size: bytes.len(),
        });
    }
    Ok(match kind {
        ArtifactKind::Screenshot if !bytes.starts_with(PNG_SIGNATURE) => {
            return Err(ArtifactError::NotPng(name.to_string()));
        }
        ArtifactKind::Screenshot => bytes.into(),
        ArtifactKind::Page => match String::from_utf8_lossy(bytes) {
            std::borrow::Cow::Borrowed(_) => bytes.into(),
            std::borrow::Cow::Owned(text) => text.into_bytes().into(),
        },
        ArtifactKind::ReturnLabel => bytes.into(),
    })
}

/// Stores an artifact of the tenant's order, replacing one of the same name and kind.
/// Refuses invalid names, empty or oversized content, and screenshots that are not PNG;
/// `OrderNotFound` when the tenant has no such order.
pub async fn save(
    db: &Db,
    tenant: &Tenant,
    order_id: Uuid,
    name: &str,
    kind: ArtifactKind,
    bytes: &[u8],
) -> Result<(), ArtifactError> {
    let content = prepare(name, kind, bytes)?;
    let size = content.len() as i64;
    let now = Timestamp::now();
    // One statement: the order's tenant check and the upsert cannot be split by a
    // concurrent change. A replacement takes a new id and time, so it lists where it
    // was retaken.
    let saved = on_db!(db, writer, |pool| {
        sqlx::query(
            "INSERT INTO order_artifacts
                 (id, order_id, account_id, livemode, name, kind, content_type, content, size, created_at)
             SELECT $1, id, account_id, livemode, $2, $3, $4, $5, $6, $7
             FROM orders WHERE id = $8 AND account_id = $9 AND livemode = $10
             ON CONFLICT (order_id, name, kind) DO UPDATE SET
                 id = excluded.id, content_type = excluded.content_type,
                 content = excluded.content, size = excluded.size, created_at = excluded.created_at",
        )
        .bind(DbId(Uuid::now_v7()))
        .bind(name)
        .bind(kind.as_str())
        .bind(kind.content_type())
        .bind(content.as_ref())
        .bind(size)
        .bind(now)
        .bind(DbId(order_id))
        .bind(DbId(tenant.account_id))
        .bind(tenant.livemode)
        .execute(pool)
        .await?
        .rows_affected()
    });
    if saved == 0 {
        return Err(ArtifactError::OrderNotFound);
    }
    Ok(())
}

/// The artifacts of the tenant's order, without their content, oldest first (empty when
/// the tenant has no such order).
pub async fn list(
    db: &Db,
    tenant: &Tenant,
    order_id: Uuid,
) -> Result<Vec<ArtifactInfo>, sqlx::Error> {
    let rows: Vec<InfoRow> = on_db!(db, reader, |pool| {
        sqlx::query_as(
            "SELECT name, kind, size, created_at FROM order_artifacts
             WHERE order_id = $1 AND account_id = $2 AND livemode = $3
             ORDER BY created_at, id",
        )
        .bind(DbId(order_id))
        .bind(DbId(tenant.account_id))
        .bind(tenant.livemode)
        .fetch_all(pool)
        .await?
    });
    rows.into_iter().map(InfoRow::into_info).collect()
}

/// One artifact of the tenant's order with its content, or `None`.
pub async fn get(
    db: &Db,
    tenant: &Tenant,
    order_id: Uuid,
    name: &str,
    kind: ArtifactKind,
) -> Result<Option<Artifact>, sqlx::Error> {
    let row: Option<(String, Vec<u8>, Timestamp)> = on_db!(db, reader, |pool| {
        sqlx::query_as(
            "SELECT content_type, content, created_at FROM order_artifacts
             WHERE order_id = $1 AND account_id = $2 AND livemode = $3 AND name = $4 AND kind = $5",
        )
        .bind(DbId(order_id))
        .bind(DbId(tenant.account_id))
        .bind(tenant.livemode)
        .bind(name)
        .bind(kind.as_str())
        .fetch_optional(pool)
        .await?
    });
    Ok(row.map(|(content_type, content, created_at)| Artifact {
        name: name.to_string(),
        kind,
        content_type,
        content,
        created_at,
    }))
}

/// Whether the tenant has the order (to tell an unknown order from an unknown name).
pub async fn order_exists(db: &Db, tenant: &Tenant, order_id: Uuid) -> Result<bool, sqlx::Error> {
    on_db!(db, reader, |pool| {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM orders WHERE id = $1 AND account_id = $2 AND livemode = $3)",
        )
        .bind(DbId(order_id))
        .bind(DbId(tenant.account_id))
        .bind(tenant.livemode)
        .fetch_one(pool)
        .await
    })
}

/// The names of each listed order's artifacts of one kind, in the order they were
/// taken: one query for a whole page of orders.
pub async fn names_by_order(
    db: &Db,
    tenant: &Tenant,
    order_ids: &[Uuid],
    kind: ArtifactKind,
) -> Result<HashMap<Uuid, Vec<String>>, sqlx::Error> {
    let mut by_order: HashMap<Uuid, Vec<String>> = HashMap::new();
    if order_ids.is_empty() {
        return Ok(by_order);
    }
    let rows: Vec<(DbId, String)> = on_db!(db, reader, |pool| {
        let mut qb = QueryBuilder::new("SELECT order_id, name FROM order_artifacts WHERE kind = ");
        qb.push_bind(kind.as_str());
        qb.push(" AND account_id = ")
            .push_bind(DbId(tenant.account_id));
        qb.push(" AND livemode = ").push_bind(tenant.livemode);
        qb.push(" AND order_id IN ");
        qb.push_tuples(order_ids, |mut b, id| {
            b.push_bind(DbId(*id));
        });
        qb.push(" ORDER BY order_id, created_at, id");
        qb.build_query_as().fetch_all(pool).await?
    });
    for (order_id, name) in rows {
        by_order.entry(order_id.0).or_default().push(name);
    }
    Ok(by_order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_url_safe() {
        for good in ["product", "product-2", "cart", "failure_1", "a"] {
            assert!(valid_name(good), "{good}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "",
            "Product",
            "2cart",
            "cart/..",
            "cart.png",
            "caf\u{e9}",
            "a b",
            &long,
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(names::indexed(names::PRODUCT, 2), "product-2");
    }

    #[test]
    fn content_is_checked_before_it_is_stored() {
        let png = [PNG_SIGNATURE, b"rest"].concat();
        assert!(prepare("cart", ArtifactKind::Screenshot, &png).is_ok());
        assert!(matches!(
            prepare("cart", ArtifactKind::Screenshot, b"<html>"),
            Err(ArtifactError::NotPng(_))
        ));
        assert!(matches!(
            prepare("cart", ArtifactKind::Page, b""),
            Err(ArtifactError::Empty { .. })
        ));
        let big = vec![b'x'; MAX_ARTIFACT_BYTES + 1];
        let error = prepare("failure", ArtifactKind::Page, &big).unwrap_err();
        assert!(
            error.to_string().contains("at most 5242880 bytes"),
            "{error}"
        );
        assert!(matches!(
            prepare("Cart", ArtifactKind::Page, b"x"),
            Err(ArtifactError::InvalidName(_))
        ));
        let page = prepare("failure", ArtifactKind::Page, b"<p>caf\xe9</p>").unwrap();
        assert_eq!(std::str::from_utf8(&page).unwrap(), "<p>caf\u{fffd}</p>");
    }
}
