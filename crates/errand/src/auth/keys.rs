//! Storage of accounts and API keys.

use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::{Tenant, generate_key};
use crate::on_db;
use crate::storage::{Db, DbId, Timestamp};

/// A key as `errand keys list` shows it: never the secret.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub id: Uuid,
    pub account_id: Uuid,
    pub account_name: String,
    pub name: String,
    pub livemode: bool,
    pub prefix: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// A key just created; `secret` exists only here.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub id: Uuid,
    pub account_id: Uuid,
    pub secret: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no account with id {0}")]
    UnknownAccount(Uuid),
    #[error("no API key matches {0:?} (give a key id or its prefix, as `errand keys list` shows)")]
    UnknownKey(String),
    #[error("{0:?} matches several keys; give the key id")]
    Ambiguous(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub async fn find_tenant(db: &Db, hash: &[u8]) -> Result<Option<Tenant>, sqlx::Error> {
    on_db!(db, reader, |pool| {
        let row = sqlx::query(
            "SELECT id, account_id, livemode FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(pool)
        .await?;
        row.map(|r| {
            Ok(Tenant {
                key_id: r.try_get::<DbId, _>("id")?.0,
                account_id: r.try_get::<DbId, _>("account_id")?.0,
                livemode: r.try_get("livemode")?,
            })
        })
        .transpose()
    })
}

/// Creates a key, in a new account named like the key unless `account` is given.
pub async fn create_key(
    db: &Db,
    name: &str,
    livemode: bool,
    account: Option<Uuid>,
) -> Result<CreatedKey, KeyError> {
    let key = generate_key(livemode);
    let key_id = Uuid::now_v7();
    let now = Timestamp::now();
    on_db!(db, writer, |pool| {
        let mut tx = pool.begin().await?;
        let account_id = match account {
            Some(id) => {
                let exists = sqlx::query("SELECT 1 FROM accounts WHERE id = $1")
                    .bind(DbId(id))
                    .fetch_optional(&mut *tx)
                    .await?;
                if exists.is_none() {
                    return Err(KeyError::UnknownAccount(id));
                }
                id
            }
            None => {
                let id = Uuid::now_v7();
                sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)")
                    .bind(DbId(id))
                    .bind(name)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                id
            }
        };
        sqlx::query(
            "INSERT INTO api_keys (id, account_id, name, livemode, key_prefix, key_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(DbId(key_id))
        .bind(DbId(account_id))
        .bind(name)
        .bind(livemode)
        .bind(&key.display_prefix)
        .bind(&key.hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(CreatedKey {
            id: key_id,
            account_id,
            secret: key.secret,
        })
    })
}

pub async fn list_keys(db: &Db) -> Result<Vec<KeyInfo>, sqlx::Error> {
    on_db!(db, reader, |pool| {
        let rows = sqlx::query(
            "SELECT k.id, k.account_id, a.name AS account_name, k.name, k.livemode, k.key_prefix,
                    k.created_at, k.revoked_at
             FROM api_keys k JOIN accounts a ON a.id = k.account_id
             ORDER BY k.created_at, k.id",
        )
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyInfo {
                    id: r.try_get::<DbId, _>("id")?.0,
                    account_id: r.try_get::<DbId, _>("account_id")?.0,
                    account_name: r.try_get("account_name")?,
                    name: r.try_get("name")?,
                    livemode: r.try_get("livemode")?,
                    prefix: r.try_get("key_prefix")?,
                    created_at: r.try_get("created_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                })
            })
            .collect()
    })
}

/// Whether any key can still be used (the first `serve` creates one when none can).
pub async fn any_active_key(db: &Db) -> Result<bool, sqlx::Error> {
    on_db!(db, reader, |pool| {
        let row = sqlx::query("SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1")
            .fetch_optional(pool)
            .await?;
        Ok(row.is_some())
    })
}

/// Revokes the key with this id, or the one key whose display prefix this is. Takes
/// effect at the next request: keys are looked up on every request, never cached.
pub async fn revoke_key(db: &Db, id_or_prefix: &str) -> Result<KeyInfo, KeyError> {
    let keys = list_keys(db).await?;
    let wanted = id_or_prefix.trim();
    let matches: Vec<&KeyInfo> = keys
        .iter()
        .filter(|k| k.id.to_string() == wanted || k.prefix == wanted)
        .collect();
    let key = match matches.as_slice() {
        [] => return Err(KeyError::UnknownKey(wanted.to_string())),
        [one] => (*one).clone(),
        _ => return Err(KeyError::Ambiguous(wanted.to_string())),
    };
    let now = Timestamp::now();
    on_db!(db, writer, |pool| {
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(DbId(key.id))
            .execute(pool)
            .await
            .map(|_| ())
    })?;
    Ok(KeyInfo {
        revoked_at: key.revoked_at.or(Some(now)),
        ..key
    })
}
