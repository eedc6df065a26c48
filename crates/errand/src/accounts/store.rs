//! Storage of retailer accounts. Every query an API client can reach is scoped to the
//! tenant (account and mode); [`secrets`] alone is not, for the engine.

use std::fmt;

use rand::Rng;
use uuid::Uuid;

use super::vault::{Secrets, Vault, VaultError};
use crate::on_db;
use crate::storage::{Db, DbId, Timestamp};

pub const ID_PREFIX: &str = "acct_";
const ID_RANDOM_LEN: usize = 8;
const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// New ids tried before giving up; a collision among 36^8 ids is already rare.
const ID_ATTEMPTS: usize = 5;
/// Times a secrets update is redone when another update changed them in between.
const UPDATE_ATTEMPTS: usize = 3;

/// A retailer account, without its secrets.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RetailerAccount {
    pub id: String,
    #[sqlx(try_from = "DbId")]
    pub account_id: Uuid,
    pub livemode: bool,
    pub retailer: String,
    pub email: String,
    pub has_totp: bool,
    pub active: bool,
    pub last_used_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set by a delete: the row stays for the orders placed with it.
    pub deleted_at: Option<Timestamp>,
    /// The order holding the account for its checkout, until `checkout_lease_until`.
    pub checkout_order_id: Option<DbId>,
    pub checkout_lease_until: Option<Timestamp>,
}

impl RetailerAccount {
    /// The order checking out with the account right now, if any.
    pub fn checking_out(&self) -> Option<Uuid> {
        match (self.checkout_order_id, self.checkout_lease_until) {
            (Some(order), Some(until)) if until > Timestamp::now() => Some(order.0),
            _ => None,
        }
    }
}

const COLUMNS: &str = "id, account_id, livemode, retailer, email, has_totp, active, last_used_at, \
                       created_at, updated_at, deleted_at, checkout_order_id, checkout_lease_until";

#[derive(sqlx::FromRow)]
struct SealedRow {
    #[sqlx(flatten)]
    account: RetailerAccount,
    secrets: Vec<u8>,
}

/// A validated new account.
#[derive(Debug, Clone)]
pub struct NewRetailerAccount {
    pub retailer: String,
    pub email: String,
    pub secrets: Secrets,
    pub active: bool,
}

/// A partial update: `None` leaves a field as it is.
#[derive(Clone, Default)]
pub struct RetailerAccountUpdate {
    /// The retailer cannot change: given, it must be the account's own.
    pub retailer: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
    /// `Some(None)` removes the TOTP secret.
    pub totp_secret: Option<Option<String>>,
    pub active: Option<bool>,
}

impl fmt::Debug for RetailerAccountUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |set: bool| if set { "****" } else { "unchanged" };
        f.debug_struct("RetailerAccountUpdate")
            .field("retailer", &self.retailer)
            .field("email", &self.email)
            .field("password", &redacted(self.password.is_some()))
            .field("totp_secret", &redacted(self.totp_secret.is_some()))
            .field("active", &self.active)
            .finish()
    }
}

impl RetailerAccountUpdate {
    fn changes_secrets(&self) -> bool {
        self.password.is_some() || self.totp_secret.is_some()
    }

    fn is_empty(&self) -> bool {
        !self.changes_secrets() && self.email.is_none() && self.active.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("managed account not found")]
    NotFound,
    #[error("the managed account's secrets were changed by another request at the same time")]
    Contended,
    #[error("the retailer of a managed account cannot be changed (it is {0:?})")]
    RetailerCannotChange(String),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn new_id() -> String {
    let mut rng = rand::rng();
    let random: String = (0..ID_RANDOM_LEN)
        .map(|_| char::from(ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())]))
        .collect();
    format!("{ID_PREFIX}{random}")
}

/// Stores a new account for the tenant `(account_id, livemode)`.
pub async fn create(
    db: &Db,
    vault: &Vault,
    account_id: Uuid,
    livemode: bool,
    new: NewRetailerAccount,
) -> Result<RetailerAccount, AccountError> {
    let now = Timestamp::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let id = new_id();
        let sealed = vault.seal(&id, &new.secrets)?;
        let inserted = on_db!(db, writer, |pool| {
            sqlx::query(
                "INSERT INTO retailer_accounts
                     (id, account_id, livemode, retailer, email, secrets, has_totp, active,
                      created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
            )
            .bind(&id)
            .bind(DbId(account_id))
            .bind(livemode)
            .bind(&new.retailer)
            .bind(&new.email)
            .bind(&sealed)
            .bind(new.secrets.totp_secret.is_some())
            .bind(new.active)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ())
        });
        match inserted {
            Ok(()) => {
                return Ok(RetailerAccount {
                    id,
                    account_id,
                    livemode,
                    retailer: new.retailer,
                    email: new.email,
                    has_totp: new.secrets.totp_secret.is_some(),
                    active: new.active,
                    last_used_at: None,
                    created_at: now,
                    updated_at: now,
                    deleted_at: None,
                    checkout_order_id: None,
                    checkout_lease_until: None,
                });
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() && attempt < ID_ATTEMPTS => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The tenant's accounts that are not deleted, newest first.
pub async fn list(
    db: &Db,
    account_id: Uuid,
    livemode: bool,
) -> Result<Vec<RetailerAccount>, AccountError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM retailer_accounts
         WHERE account_id = $1 AND livemode = $2 AND deleted_at IS NULL
         ORDER BY created_at DESC, id DESC"
    );
    let accounts = on_db!(db, reader, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(DbId(account_id))
            .bind(livemode)
            .fetch_all(pool)
            .await
    })?;
    Ok(accounts)
}

/// One of the tenant's accounts; a deleted one or another tenant's is
/// [`AccountError::NotFound`].
pub async fn get(
    db: &Db,
    account_id: Uuid,
    livemode: bool,
    id: &str,
) -> Result<RetailerAccount, AccountError> {
    Ok(get_sealed(db, account_id, livemode, id).await?.account)
}

async fn get_sealed(
    db: &Db,
    account_id: Uuid,
    livemode: bool,
    id: &str,
) -> Result<SealedRow, AccountError> {
    let sql = format!(
        "SELECT {COLUMNS}, secrets FROM retailer_accounts
         WHERE id = $1 AND account_id = $2 AND livemode = $3 AND deleted_at IS NULL"
    );
    let row = on_db!(db, reader, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(DbId(account_id))
            .bind(livemode)
            .fetch_optional(pool)
            .await
    })?;
    row.ok_or(AccountError::NotFound)
}

/// Applies a partial update. Secrets are re-encrypted whole, so changing only the
/// password keeps the TOTP secret (and the reverse); the write is conditional on the
/// secrets read, so two concurrent updates cannot lose each other's change.
pub async fn update(
    db: &Db,
    vault: &Vault,
    account_id: Uuid,
    livemode: bool,
    id: &str,
    change: RetailerAccountUpdate,
) -> Result<RetailerAccount, AccountError> {
    if let Some(retailer) = &change.retailer {
        let current = get(db, account_id, livemode, id).await?;
        if current.retailer != *retailer {
            return Err(AccountError::RetailerCannotChange(current.retailer));
        }
    }
    // Nothing to change: `updated_at` keeps meaning "last changed".
    if change.is_empty() {
        return get(db, account_id, livemode, id).await;
    }
    for _ in 0..UPDATE_ATTEMPTS {
        let (sealed, expected) = match (&change.password, &change.totp_secret) {
            // Both given: nothing to keep from the old secrets, which need not even
            // decrypt (a lost master key is recovered by entering the secrets again).
            (Some(password), Some(totp_secret)) => {
                let secrets = Secrets {
                    password: password.clone(),
                    totp_secret: totp_secret.clone(),
                };
                (Some((vault.seal(id, &secrets)?, secrets)), None)
            }
            _ if change.changes_secrets() => {
                let current = get_sealed(db, account_id, livemode, id).await?;
                let mut secrets: Secrets = vault.open(id, &current.secrets)?;
                if let Some(password) = &change.password {
                    secrets.password = password.clone();
                }
                if let Some(totp_secret) = &change.totp_secret {
                    secrets.totp_secret = totp_secret.clone();
                }
                (
                    Some((vault.seal(id, &secrets)?, secrets)),
                    Some(current.secrets),
                )
            }
            _ => (None, None),
        };
        let has_totp = sealed.as_ref().map(|(_, s)| s.totp_secret.is_some());
        let sql = format!(
            "UPDATE retailer_accounts
             SET email = COALESCE($1, email), active = COALESCE($2, active),
                 secrets = COALESCE($3, secrets), has_totp = COALESCE($4, has_totp),
                 updated_at = $5
             WHERE id = $6 AND account_id = $7 AND livemode = $8 AND deleted_at IS NULL
               AND ($9 IS NULL OR secrets = $9)
             RETURNING {COLUMNS}"
        );
        let updated: Option<RetailerAccount> = on_db!(db, writer, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(&change.email)
                .bind(change.active)
                .bind(sealed.as_ref().map(|(bytes, _)| bytes))
                .bind(has_totp)
                .bind(Timestamp::now())
                .bind(id)
                .bind(DbId(account_id))
                .bind(livemode)
                .bind(&expected)
                .fetch_optional(pool)
                .await
        })?;
        match updated {
            Some(account) => return Ok(account),
            // Gone, or the secrets changed since they were read: find out which.
            None if expected.is_some() => continue,
            None => return Err(AccountError::NotFound),
        }
    }
    Err(AccountError::Contended)
}

/// Soft delete: the account is hidden and never used again, but the row (and its
/// secrets) stays, since tracking orders already placed with it signs in with it.
pub async fn delete(
    db: &Db,
    account_id: Uuid,
    livemode: bool,
    id: &str,
) -> Result<(), AccountError> {
    let now = Timestamp::now();
    let result = on_db!(db, writer, |pool| {
        sqlx::query(
            "UPDATE retailer_accounts SET deleted_at = $1, active = false, updated_at = $1
             WHERE id = $2 AND account_id = $3 AND livemode = $4 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .bind(DbId(account_id))
        .bind(livemode)
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
    })?;
    if result == 0 {
        return Err(AccountError::NotFound);
    }
    Ok(())
}

/// Any account by id with its decrypted secrets, deleted ones included, whoever its
/// tenant: for the engine, which signs in to place and to track orders.
pub async fn secrets(
    db: &Db,
    vault: &Vault,
    id: &str,
) -> Result<Option<(RetailerAccount, Secrets)>, AccountError> {
    let sql = format!("SELECT {COLUMNS}, secrets FROM retailer_accounts WHERE id = $1");
    let row: Option<SealedRow> = on_db!(db, reader, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(pool)
            .await
    })?;
    row.map(|row| {
        let secrets = vault.open(&row.account.id, &row.secrets)?;
        Ok((row.account, secrets))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_prefix_and_eight_lowercase_alphanumerics() {
        for _ in 0..100 {
            let id = new_id();
            let random = id.strip_prefix(ID_PREFIX).unwrap();
            assert_eq!(random.len(), ID_RANDOM_LEN);
            assert!(
                random
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            );
        }
    }
}
