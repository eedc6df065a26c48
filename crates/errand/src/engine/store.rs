//! The engine's reads and state changes. Every change to an order is one transaction
//! holding the new state, its events and the jobs it schedules.

use serde_json::Value;
use sqlx::QueryBuilder;
use sqlx::types::Json;
use uuid::Uuid;

use crate::orders::address::Address;
use crate::orders::model::{Expiration, JobResult, OrderItemStatus, OrderStatus, Variant};
use crate::orders::store::corrupt;
use crate::queue::NewJob;
use crate::storage::{Db, DbId, Timestamp};
use crate::{enqueue_in_tx, on_db};

/// An order as the engine needs it (not scoped to a tenant: jobs act for the system).
#[derive(Debug, Clone)]
pub struct EngineOrder {
    pub id: Uuid,
    pub account_id: Uuid,
    pub livemode: bool,
    pub status: OrderStatus,
    pub max_price: i64,
    pub retailer: Option<String>,
    pub retailer_credentials_id: Option<String>,
    pub placed_with: Option<String>,
    pub shipping_address: Address,
    pub expires_at: Option<Timestamp>,
    pub expiration: Option<Expiration>,
    pub job_result: Option<JobResult>,
    pub items: Vec<EngineItem>,
}

#[derive(Debug, Clone)]
pub struct EngineItem {
    pub id: Uuid,
    pub url: String,
    pub quantity: i32,
    pub variant: Option<Vec<Variant>>,
    pub status: OrderItemStatus,
}

#[derive(sqlx::FromRow)]
struct OrderRow {
    id: DbId,
    account_id: DbId,
    livemode: bool,
    status: String,
    max_price: i64,
    retailer: Option<String>,
    retailer_credentials_id: Option<String>,
    placed_with: Option<String>,
    shipping_address: Json<Address>,
    expires_at: Option<Timestamp>,
    expiration: Option<Json<Expiration>>,
    job_result: Option<Json<JobResult>>,
}

#[derive(sqlx::FromRow)]
struct ItemRow {
    id: DbId,
    url: String,
    quantity: i32,
    variant: Option<Json<Vec<Variant>>>,
    status: String,
}

pub async fn load(db: &Db, id: Uuid) -> Result<Option<EngineOrder>, sqlx::Error> {
    on_db!(db, reader, |pool| {
        let row: Option<OrderRow> = sqlx::query_as(
            "SELECT id, account_id, livemode, status, max_price, retailer, retailer_credentials_id,
                    placed_with, shipping_address, expires_at, expiration, job_result
             FROM orders WHERE id = $1",
        )
        .bind(DbId(id))
        .fetch_optional(pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let items: Vec<ItemRow> = sqlx::query_as(
            "SELECT id, url, quantity, variant, status FROM order_items WHERE order_id = $1 ORDER BY position",
        )
        .bind(DbId(id))
        .fetch_all(pool)
        .await?;
        let items = items
            .into_iter()
            .map(|i| {
                Ok(EngineItem {
                    id: i.id.0,
                    url: i.url,
                    quantity: i.quantity,
                    variant: i.variant.map(|v| v.0),
                    status: OrderItemStatus::parse(&i.status)
                        .ok_or_else(|| corrupt("item status", &i.status))?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some(EngineOrder {
            id: row.id.0,
            account_id: row.account_id.0,
            livemode: row.livemode,
            status: OrderStatus::parse(&row.status)
                .ok_or_else(|| corrupt("order status", &row.status))?,
            max_price: row.max_price,
            retailer: row.retailer,
            retailer_credentials_id: row.retailer_credentials_id,
            placed_with: row.placed_with,
            shipping_address: row.shipping_address.0,
            expires_at: row.expires_at,
            expiration: row.expiration.map(|e| e.0),
            job_result: row.job_result.map(|j| j.0),
            items,
        }))
    })
}

/// A state change of one order, applied atomically by [`apply`].
#[derive(Debug, Default)]
pub struct Change {
    pub status: Option<OrderStatus>,
    /// Count one more placement attempt.
    pub count_attempt: bool,
    pub job_result: Option<JobResult>,
    pub placed_with: Option<String>,
    pub items: Vec<(Uuid, OrderItemStatus, Option<String>)>,
    /// Events, in order: `(name, detail)`.
    pub events: Vec<(&'static str, Value)>,
    pub jobs: Vec<NewJob>,
    /// New tracking numbers `(carrier, number)`; ones already known are skipped.
    pub tracking: Vec<(String, String)>,
    /// Settles a placement attempt: `(attempt, state, merchant order id)`.
    pub attempt: Option<(i32, &'static str, Option<String>)>,
    /// Frees this retailer account for other orders' checkouts.
    pub release_account: Option<String>,
}

/// Applies a [`Change`] inside a transaction: `Ok(false)` (nothing written) when the
/// order's status is not one of `$from`.
macro_rules! apply_in_tx {
    ($tx:ident, $order_id:expr, $from:expr, $change:expr, $now:expr, $lock:expr) => {
        'apply: {
            let current: Option<(String, i64, DbId, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT status, last_event_sequence, account_id, livemode FROM orders WHERE id = $1{}",
                $lock
            )))
            .bind(DbId($order_id))
            .fetch_optional(&mut *$tx)
            .await?;
            let Some((status, mut sequence, account_id, livemode)) = current else {
                break 'apply Ok::<bool, sqlx::Error>(false);
            };
            if !$from.iter().any(|s| s.as_str() == status) {
                break 'apply Ok(false);
            }
            let new_status = $change
                .status
                .map(|s| s.as_str())
                .unwrap_or(&status)
                .to_string();
            for (event, detail) in &$change.events {
                sequence += 1;
                sqlx::query(
                    "INSERT INTO order_events (id, order_id, account_id, sequence, event, status, detail, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(DbId(Uuid::now_v7()))
                .bind(DbId($order_id))
                .bind(account_id)
                .bind(sequence)
                .bind(*event)
                .bind(&new_status)
                .bind(Json(detail))
                .bind($now)
                .execute(&mut *$tx)
                .await?;
                $crate::webhook_in_tx!($tx, $order_id, account_id, livemode, sequence, *event, &new_status, $now)?;
            }
            sqlx::query(
                "UPDATE orders SET status = $1, attempts = attempts + $2,
                     job_result = COALESCE($3, job_result), placed_with = COALESCE($4, placed_with),
                     last_event_sequence = $5, updated_at = $6
                 WHERE id = $7",
            )
            .bind(&new_status)
            .bind(i32::from($change.count_attempt))
            .bind($change.job_result.as_ref().map(Json))
            .bind($change.placed_with.as_deref())
            .bind(sequence)
            .bind($now)
            .bind(DbId($order_id))
            .execute(&mut *$tx)
            .await?;
            for (item_id, item_status, reason) in &$change.items {
                sqlx::query(
                    "UPDATE order_items SET status = $1, cancellation_reason = COALESCE($2, cancellation_reason),
                         updated_at = $3
                     WHERE id = $4 AND order_id = $5",
                )
                .bind(item_status.as_str())
                .bind(reason.as_deref())
                .bind($now)
                .bind(DbId(*item_id))
                .bind(DbId($order_id))
                .execute(&mut *$tx)
                .await?;
            }
            for (carrier, number) in &$change.tracking {
                sqlx::query(
                    "INSERT INTO tracking_numbers (id, order_id, carrier, tracking_number, created_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(DbId(Uuid::now_v7()))
                .bind(DbId($order_id))
                .bind(carrier)
                .bind(number)
                .bind($now)
                .execute(&mut *$tx)
                .await?;
            }
            if let Some((attempt, state, merchant_order_id)) = &$change.attempt {
                sqlx::query(
                    "UPDATE placement_attempts SET state = $1, merchant_order_id = COALESCE($2, merchant_order_id),
                         updated_at = $3
                     WHERE order_id = $4 AND attempt = $5",
                )
                .bind(*state)
                .bind(merchant_order_id.as_deref())
                .bind($now)
                .bind(DbId($order_id))
                .bind(*attempt)
                .execute(&mut *$tx)
                .await?;
            }
            if let Some(account) = &$change.release_account {
                sqlx::query(
                    "UPDATE retailer_accounts SET checkout_order_id = NULL, checkout_lease_until = NULL
                     WHERE id = $1 AND checkout_order_id = $2",
                )
                .bind(account)
                .bind(DbId($order_id))
                .execute(&mut *$tx)
                .await?;
            }
            enqueue_in_tx!($tx, &$change.jobs)?;
            Ok(true)
        }
    };
}

/// Applies `change` if the order's status is one of `from`; returns whether it did.
pub async fn apply(
    db: &Db,
    order_id: Uuid,
    from: &[OrderStatus],
    change: Change,
) -> Result<bool, sqlx::Error> {
    let now = Timestamp::now();
    let lock = for_update(db);
    let applied = on_db!(db, writer, |pool| {
        let mut tx = pool.begin().await?;
        let applied = apply_in_tx!(tx, order_id, from, change, now, lock)?;
        if applied {
            tx.commit().await?;
        }
        Ok::<bool, sqlx::Error>(applied)
    })?;
    if applied {
        // Its events may have scheduled webhooks, besides `change.jobs`.
        db.jobs_committed();
    }
    Ok(applied)
}

/// Row locks for read-modify-write on PostgreSQL; SQLite's single writer needs none.
fn for_update(db: &Db) -> &'static str {
    match db {
        Db::Postgres(_) => " FOR UPDATE",
        Db::Sqlite(_) => "",
    }
}

/// States of a placement attempt.
pub mod attempt_state {
    /// Committed before the retailer is asked; unresolved until one of the others.
    pub const SUBMITTING: &str = "submitting";
    pub const PLACED: &str = "placed";
    /// The retailer certainly did not place it.
    pub const NOT_PLACED: &str = "not_placed";
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Attempt {
    pub attempt: i32,
    pub retailer_account_id: String,
    pub reference: String,
    pub expected_total: i64,
    /// Before this, the request may still be in flight at the retailer, so "not found
    /// there" proves nothing yet.
    pub settles_at: Timestamp,
}

/// The latest attempt whose outcome is unknown, if any.
pub async fn unresolved_attempt(db: &Db, order_id: Uuid) -> Result<Option<Attempt>, sqlx::Error> {
    on_db!(db, reader, |pool| {
        sqlx::query_as(
            "SELECT attempt, retailer_account_id, reference, expected_total, settles_at
             FROM placement_attempts WHERE order_id = $1 AND state = $2
             ORDER BY attempt DESC LIMIT 1",
        )
        .bind(DbId(order_id))
        .bind(attempt_state::SUBMITTING)
        .fetch_optional(pool)
        .await
    })
}

/// Commits an attempt before the retailer is asked to place (the exactly-once record).
pub async fn begin_attempt(
    db: &Db,
    job: &crate::queue::Job,
    order_id: Uuid,
    retailer_account_id: &str,
    reference: &str,
    expected_total: i64,
    settles_at: Timestamp,
) -> Result<Option<Attempt>, sqlx::Error> {
    let now = Timestamp::now();
    // Only while this run still holds its claim on the job (a rescued and reclaimed job
    // has another attempt number) and no other attempt is unresolved: two runs of one
    // job can never both place.
    on_db!(db, writer, |pool| {
        sqlx::query_as(
            "INSERT INTO placement_attempts (order_id, attempt, retailer_account_id, reference, expected_total,
                 state, settles_at, created_at, updated_at)
             SELECT $1, (SELECT COALESCE(MAX(attempt), 0) + 1 FROM placement_attempts WHERE order_id = $1),
                    $2, $3, $4, $5, $6, $7, $7
             WHERE EXISTS (SELECT 1 FROM jobs WHERE id = $8 AND attempt = $9 AND state = $10)
               AND NOT EXISTS (SELECT 1 FROM placement_attempts WHERE order_id = $1 AND state = $5)
             RETURNING attempt, retailer_account_id, reference, expected_total, settles_at",
        )
        .bind(DbId(order_id))
        .bind(retailer_account_id)
        .bind(reference)
        .bind(expected_total)
        .bind(attempt_state::SUBMITTING)
        .bind(settles_at)
        .bind(now)
        .bind(job.id)
        .bind(job.attempt)
        .bind(crate::queue::RUNNING)
        .fetch_optional(pool)
        .await
    })
}

/// Settles an attempt outside an order change (the order's state is unchanged).
pub async fn settle_attempt(
    db: &Db,
    order_id: Uuid,
    attempt: i32,
    state: &str,
    settles_at: Option<Timestamp>,
) -> Result<(), sqlx::Error> {
    on_db!(db, writer, |pool| {
        sqlx::query(
            "UPDATE placement_attempts SET state = $1, settles_at = COALESCE($2, settles_at), updated_at = $3
             WHERE order_id = $4 AND attempt = $5",
        )
        .bind(state)
        .bind(settles_at)
        .bind(Timestamp::now())
        .bind(DbId(order_id))
        .bind(attempt)
        .execute(pool)
        .await
        .map(|_| ())
    })
}

/// Records an event without changing the order, unless one of that name exists already.
pub async fn note_once(
    db: &Db,
    order_id: Uuid,
    event: &'static str,
    detail: Value,
) -> Result<(), sqlx::Error> {
    let seen: bool = on_db!(db, reader, |pool| {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM order_events WHERE order_id = $1 AND event = $2)",
        )
        .bind(DbId(order_id))
        .bind(event)
        .fetch_one(pool)
        .await
    })?;
    if !seen {
        let change = Change {
            events: vec![(event, detail)],
            ..Change::default()
        };
        apply(db, order_id, &OrderStatus::ALL, change).await?;
    }
    Ok(())
}

/// A retailer account held for one order's checkout.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HeldAccount {
    pub id: String,
    pub email: String,
    pub secrets: Vec<u8>,
}

pub enum Acquired {
    /// Held, and the order's start was recorded with it.
    Held(HeldAccount),
    /// The order is no longer pending or in progress (nothing was held).
    Gone,
    /// Every matching account is checking out another order.
    Busy,
    /// No usable account exists.
    Missing,
}

/// Which account an order may use.
pub enum AccountChoice<'a> {
    /// The account a previous attempt used (it must be asked about that attempt), even if
    /// it was deactivated since.
    Resume(&'a str),
    /// The account the order asked for.
    Named(&'a str),
    /// Any active account of the tenant for the retailer, least recently used first.
    Any,
}

/// Appends the condition selecting the accounts `choice` allows.
fn push_account_filter<DB: sqlx::Database>(
    qb: &mut QueryBuilder<DB>,
    order: &EngineOrder,
    retailer: &str,
    choice: &AccountChoice<'_>,
) where
    DbId: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    String: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    match choice {
        AccountChoice::Resume(id) => {
            qb.push("id = ").push_bind(id.to_string());
        }
        AccountChoice::Named(id) => {
            qb.push("id = ").push_bind(id.to_string());
        }
        AccountChoice::Any => {
            qb.push("retailer = ").push_bind(retailer.to_string());
        }
    }
    if !matches!(choice, AccountChoice::Resume(_)) {
        qb.push(" AND active AND deleted_at IS NULL AND account_id = ")
            .push_bind(DbId(order.account_id))
            .push(" AND livemode = ")
            .push_bind(order.livemode);
    }
}

/// Holds an account for `order`'s checkout until `lease_until` (or until released) and,
/// in the same transaction, applies `start` to the order (which must be pending or in
/// progress). An account already held for the same order is held again.
pub async fn acquire_account(
    db: &Db,
    order: &EngineOrder,
    retailer: &str,
    choice: AccountChoice<'_>,
    lease_until: Timestamp,
    start: Change,
) -> Result<Acquired, sqlx::Error> {
    let now = Timestamp::now();
    let lock = for_update(db);
    let placeable = [OrderStatus::Pending, OrderStatus::InProgress];
    let skip_locked = match db {
        Db::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        Db::Sqlite(_) => "",
    };
    let held: Option<Option<HeldAccount>> = on_db!(db, writer, |pool| {
        let mut tx = pool.begin().await?;
        let mut qb = QueryBuilder::new("UPDATE retailer_accounts SET checkout_order_id = ");
        qb.push_bind(DbId(order.id))
            .push(", checkout_lease_until = ")
            .push_bind(lease_until)
            .push(", last_used_at = ")
            .push_bind(now)
            .push(" WHERE id = (SELECT id FROM retailer_accounts WHERE ");
        push_account_filter(&mut qb, order, retailer, &choice);
        qb.push(" AND (checkout_order_id IS NULL OR checkout_order_id = ")
            .push_bind(DbId(order.id))
            .push(" OR checkout_lease_until < ")
            .push_bind(now)
            .push(") ORDER BY last_used_at IS NOT NULL, last_used_at LIMIT 1")
            .push(skip_locked)
            .push(") RETURNING id, email, secrets");
        let held: Option<HeldAccount> = qb.build_query_as().fetch_optional(&mut *tx).await?;
        match held {
            Some(held) => {
                if apply_in_tx!(tx, order.id, &placeable, start, now, lock)? {
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(Some(Some(held)))
                } else {
                    Ok(Some(None))
                }
            }
            None => Ok(None),
        }
    })?;
    match held {
        Some(Some(held)) => {
            db.jobs_committed();
            return Ok(Acquired::Held(held));
        }
        Some(None) => return Ok(Acquired::Gone),
        None => {}
    }
    let exists: bool = on_db!(db, reader, |pool| {
        let mut qb = QueryBuilder::new("SELECT EXISTS (SELECT 1 FROM retailer_accounts WHERE ");
        push_account_filter(&mut qb, order, retailer, &choice);
        qb.push(")");
        qb.build_query_scalar().fetch_one(pool).await
    })?;
    Ok(if exists {
        Acquired::Busy
    } else {
        Acquired::Missing
    })
}

/// Extends `order_id`'s hold on the account (a hold another order has taken since is
/// left alone).
pub async fn extend_account_hold(
    db: &Db,
    account: &str,
    order_id: Uuid,
    until: Timestamp,
) -> Result<(), sqlx::Error> {
    on_db!(db, writer, |pool| {
        sqlx::query(
            "UPDATE retailer_accounts SET checkout_lease_until = $1
             WHERE id = $2 AND checkout_order_id = $3",
        )
        .bind(until)
        .bind(account)
        .bind(DbId(order_id))
        .execute(pool)
        .await
        .map(|_| ())
    })
}

/// Lets other orders check out with the account.
pub async fn release_account(db: &Db, account: &str, order_id: Uuid) -> Result<(), sqlx::Error> {
    on_db!(db, writer, |pool| {
        sqlx::query(
            "UPDATE retailer_accounts SET checkout_order_id = NULL, checkout_lease_until = NULL
             WHERE id = $1 AND checkout_order_id = $2",
        )
        .bind(account)
        .bind(DbId(order_id))
        .execute(pool)
        .await
        .map(|_| ())
    })
}

/// The tracking numbers already recorded for an order.
pub async fn tracking_numbers(db: &Db, order_id: Uuid) -> Result<Vec<String>, sqlx::Error> {
    on_db!(db, reader, |pool| {
        sqlx::query_scalar("SELECT tracking_number FROM tracking_numbers WHERE order_id = $1")
            .bind(DbId(order_id))
            .fetch_all(pool)
            .await
    })
}
