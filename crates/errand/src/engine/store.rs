//! The engine's own records: placement attempts (the exactly-once record) and the
//! holds that give one order at a time a retailer account. Order state changes go
//! through [`lifecycle`], often in the same transaction as these.

use sqlx::QueryBuilder;
use sqlx::types::Json;
use uuid::Uuid;

use crate::orders::lifecycle::{self, Change};
use crate::orders::model::{OrderRecord, OrderStatus};
use crate::orders::options::Concession;
use crate::queue::JobState;
use crate::storage::{Db, DbId, Timestamp, Tx};
use crate::{on_db, on_tx};

/// Where a placement attempt stands, stored as text in `placement_attempts.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptState {
    /// Committed before the retailer is asked; unresolved until one of the others.
    Submitting,
    Placed,
    /// The retailer certainly did not place it.
    NotPlaced,
}

impl AttemptState {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptState::Submitting => "submitting",
            AttemptState::Placed => "placed",
            AttemptState::NotPlaced => "not_placed",
        }
    }
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
    /// What the checkout gave up (see [`Attempt::concessions`]).
    concessions: Option<Json<Vec<Concession>>>,
}

impl Attempt {
    /// What the checkout this attempt placed gave up: kept with the attempt, so that an
    /// order adopted after a crash reports the same.
    pub fn concessions(&self) -> &[Concession] {
        self.concessions
            .as_ref()
            .map(|c| c.0.as_slice())
            .unwrap_or_default()
    }
}

/// The latest attempt whose outcome is unknown, if any.
pub async fn unresolved_attempt(db: &Db, order_id: Uuid) -> Result<Option<Attempt>, sqlx::Error> {
    on_db!(db, reader, |pool| {
        sqlx::query_as(
            "SELECT attempt, retailer_account_id, reference, expected_total, settles_at, concessions
             FROM placement_attempts WHERE order_id = $1 AND state = $2
             ORDER BY attempt DESC LIMIT 1",
        )
        .bind(DbId(order_id))
        .bind(AttemptState::Submitting.as_str())
        .fetch_optional(pool)
        .await
    })
}

/// A placement attempt about to be made.
pub struct NewAttempt<'a> {
    pub order_id: Uuid,
    pub retailer_account_id: &'a str,
    pub reference: &'a str,
    pub expected_total: i64,
    pub settles_at: Timestamp,
    /// What the checkout gave up.
    pub concessions: &'a [Concession],
}

/// Commits an attempt before the retailer is asked to place (the exactly-once record).
pub async fn begin_attempt(
    db: &Db,
    job: &crate::queue::Job,
    new: NewAttempt<'_>,
) -> Result<Option<Attempt>, sqlx::Error> {
    let now = Timestamp::now();
    // Only while this run still holds its claim on the job (a rescued and reclaimed job
    // has another attempt number) under a live lease, still holds the account, and no
    // other attempt is unresolved: two runs of one job can never both place, and a run
    // that was paused past its leases finds out here.
    on_db!(db, writer, |pool| {
        sqlx::query_as(
            "INSERT INTO placement_attempts (order_id, attempt, retailer_account_id, reference, expected_total,
                 state, settles_at, created_at, updated_at, concessions)
             SELECT $1, (SELECT COALESCE(MAX(attempt), 0) + 1 FROM placement_attempts WHERE order_id = $1),
                    $2, $3, $4, $5, $6, $7, $7, $11
             WHERE EXISTS (SELECT 1 FROM jobs WHERE id = $8 AND attempt = $9 AND state = $10 AND lease_until > $7)
               AND EXISTS (SELECT 1 FROM retailer_accounts
                           WHERE id = $2 AND checkout_order_id = $1 AND checkout_lease_until > $7)
               AND NOT EXISTS (SELECT 1 FROM placement_attempts WHERE order_id = $1 AND state = $5)
             RETURNING attempt, retailer_account_id, reference, expected_total, settles_at, concessions",
        )
        .bind(DbId(new.order_id))
        .bind(new.retailer_account_id)
        .bind(new.reference)
        .bind(new.expected_total)
        .bind(AttemptState::Submitting.as_str())
        .bind(new.settles_at)
        .bind(now)
        .bind(job.id)
        .bind(job.attempt)
        .bind(JobState::Running.as_str())
        .bind(Some(new.concessions).filter(|c| !c.is_empty()).map(Json))
        .fetch_optional(pool)
        .await
    })
}

/// Settles an unresolved attempt: its state, the retailer's order id once known, and a
/// new time before which "not found at the retailer" proves nothing. An attempt whose
/// outcome is known keeps it (a late write from a run that lost its claim changes
/// nothing).
pub async fn settle_attempt(
    tx: &mut Tx,
    order_id: Uuid,
    attempt: i32,
    state: AttemptState,
    merchant_order_id: Option<&str>,
    settles_at: Option<Timestamp>,
) -> Result<(), sqlx::Error> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE placement_attempts SET state = $1, merchant_order_id = COALESCE($2, merchant_order_id),
                 settles_at = COALESCE($3, settles_at), updated_at = $4
             WHERE order_id = $5 AND attempt = $6 AND state = $7",
        )
        .bind(state.as_str())
        .bind(merchant_order_id)
        .bind(settles_at)
        .bind(Timestamp::now())
        .bind(DbId(order_id))
        .bind(attempt)
        .bind(AttemptState::Submitting.as_str())
        .execute(&mut *conn)
        .await
        .map(|_| ())
    })
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
    order: &OrderRecord,
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
    order: &OrderRecord,
    retailer: &str,
    choice: AccountChoice<'_>,
    lease_until: Timestamp,
    start: Change,
) -> Result<Acquired, sqlx::Error> {
    let now = Timestamp::now();
    let mut tx = db.begin().await?;
    let skip_locked = tx.skip_locked();
    let held: Option<HeldAccount> = on_tx!(tx, |conn| {
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
        qb.build_query_as().fetch_optional(&mut *conn).await
    })?;
    if let Some(held) = held {
        let placeable = [OrderStatus::Pending, OrderStatus::InProgress];
        return Ok(
            if lifecycle::apply(&mut tx, order.id, &placeable, start).await? {
                tx.commit().await?;
                Acquired::Held(held)
            } else {
                Acquired::Gone
            },
        );
    }
    drop(tx);
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

/// Extends `order_id`'s hold on the account for the run of `job` holding it; `false` if
/// that run no longer may use the account: the order no longer holds it (a hold another
/// order has taken since is left alone), or the job was claimed again by another run
/// (which holds the account for the same order now).
pub async fn extend_account_hold(
    db: &Db,
    account: &str,
    order_id: Uuid,
    job: (i64, i32),
    until: Timestamp,
) -> Result<bool, sqlx::Error> {
    on_db!(db, writer, |pool| {
        sqlx::query(
            "UPDATE retailer_accounts SET checkout_lease_until = $1
             WHERE id = $2 AND checkout_order_id = $3
               AND EXISTS (SELECT 1 FROM jobs WHERE id = $4 AND attempt = $5 AND state = $6)",
        )
        .bind(until)
        .bind(account)
        .bind(DbId(order_id))
        .bind(job.0)
        .bind(job.1)
        .bind(JobState::Running.as_str())
        .execute(pool)
        .await
        .map(|done| done.rows_affected() > 0)
    })
}

/// Lets other orders check out with the account (a hold another order has taken
/// since is left alone).
pub async fn release_account(
    tx: &mut Tx,
    account: &str,
    order_id: Uuid,
) -> Result<(), sqlx::Error> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE retailer_accounts SET checkout_order_id = NULL, checkout_lease_until = NULL
             WHERE id = $1 AND checkout_order_id = $2",
        )
        .bind(account)
        .bind(DbId(order_id))
        .execute(&mut *conn)
        .await
        .map(|_| ())
    })
}
