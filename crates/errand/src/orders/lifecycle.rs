//! The order lifecycle: the only code that changes an order's or an item's status and
//! writes `order_events`. Creation, the customer's cancellation, placement, tracking,
//! expiry and the retailer's cancellation all come through here, each as one change
//! applied inside the caller's transaction with its events, their webhooks (through
//! the outbox) and the jobs it schedules.
//!
//! Order statuses move only along [`OrderStatus::can_become`]:
//!
//! ```text
//! pending ──► in_progress ──► order_placed ──► cancelled_by_retailer
//!    │  │          │  ▲
//!    │  │          │  └─ (another attempt)
//!    │  │          └────► order_failed
//!    │  └───────────────► order_failed (expired, unknown retailer, …)
//!    └──────────────────► cancelled (by the customer)
//! ```

use serde_json::{Value, json};
use sqlx::QueryBuilder;
use sqlx::types::Json;
use uuid::Uuid;

use super::model::{ErrorType, JobResult, OrderItemStatus, OrderStatus, events};
use super::options::Concession;
use super::store::{PendingInsert, corrupt, expires_at};
use crate::auth::Tenant;
use crate::on_tx;
use crate::queue::{self, NewJob};
use crate::storage::{DbId, Timestamp, Tx};
use crate::webhooks::outbox::{self, RecordedEvent};

/// Rows per multi-row INSERT: keeps every statement under SQLite's 32 766 parameters.
pub(crate) const ROWS_PER_INSERT: usize = 1000;

impl OrderStatus {
    /// Whether an order in this status may move to `next`. A change that leaves the
    /// status as it is (events, items, tracking) is not a move and is always allowed.
    pub fn can_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (Pending, InProgress | OrderFailed | Cancelled)
                // Every placement run counts an attempt and restarts from in_progress.
                | (InProgress, InProgress | OrderPlaced | OrderFailed)
                | (OrderPlaced, CancelledByRetailer)
        )
    }

    /// No status follows this one.
    pub fn is_final(self) -> bool {
        OrderStatus::ALL.iter().all(|next| !self.can_become(*next))
    }
}

/// A change to one order, applied atomically by [`apply`].
#[derive(Debug, Default)]
pub struct Change {
    /// The new status; `None` keeps the current one.
    pub status: Option<OrderStatus>,
    /// Count one more placement attempt.
    pub count_attempt: bool,
    pub job_result: Option<JobResult>,
    /// The retailer account that placed the order.
    pub placed_with: Option<String>,
    /// Item changes.
    pub items: Vec<ItemChange>,
    /// Events, in order: `(name, detail)`.
    pub events: Vec<(&'static str, Value)>,
    /// Work the change causes, committed with it.
    pub jobs: Vec<NewJob>,
    /// New tracking numbers `(carrier, number)`; ones already known are skipped.
    pub tracking: Vec<(String, String)>,
    /// What placing the order gave up (`fulfillment.concessions`).
    pub concessions: Option<Vec<Concession>>,
}

/// One item's new status, and what else its change learnt.
#[derive(Debug, Clone)]
pub struct ItemChange {
    pub id: Uuid,
    pub status: OrderItemStatus,
    pub cancellation_reason: Option<String>,
    /// The quantity bought, when the retailer sold fewer than asked.
    pub quantity: Option<i32>,
    /// Why the item was not bought.
    pub error_type: Option<ErrorType>,
}

impl ItemChange {
    pub fn new(id: Uuid, status: OrderItemStatus) -> ItemChange {
        ItemChange {
            id,
            status,
            cancellation_reason: None,
            quantity: None,
            error_type: None,
        }
    }
}

/// One row of `order_events`: the event as its webhook sees it, and its detail.
struct EventRow<'a> {
    event: RecordedEvent<'a>,
    detail: &'a Value,
}

/// Writes events (many rows per statement) and, through the outbox, their webhooks.
async fn record_events(tx: &mut Tx, rows: &[EventRow<'_>]) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        on_tx!(tx, |conn| {
            let mut qb = QueryBuilder::new(
                "INSERT INTO order_events (id, order_id, account_id, sequence, event, status, detail, created_at) ",
            );
            qb.push_values(chunk, |mut b, row| {
                let event = &row.event;
                b.push_bind(DbId(Uuid::now_v7()))
                    .push_bind(DbId(event.order_id))
                    .push_bind(DbId(event.account_id))
                    .push_bind(event.sequence)
                    .push_bind(event.event)
                    .push_bind(event.status)
                    .push_bind(Json(row.detail))
                    .push_bind(event.at);
            });
            qb.build().execute(&mut *conn).await.map(|_| ())
        })?;
    }
    for row in rows {
        outbox::record(tx, &row.event).await?;
    }
    Ok(())
}

/// Inserts new orders with their items, their `order.created` events and the jobs
/// they cause (placing them, expiring them).
pub(crate) async fn create(tx: &mut Tx, orders: &[&PendingInsert]) -> Result<(), sqlx::Error> {
    for chunk in orders.chunks(ROWS_PER_INSERT) {
        on_tx!(tx, |conn| {
            let mut qb = QueryBuilder::new(
                "INSERT INTO orders (id, account_id, livemode, status, max_price, attempts, shipping_address, \
                 metadata, po_number, retailer_credentials_id, created_by, last_event_sequence, created_at, updated_at, \
                 retailer, expiration, expires_at, options) ",
            );
            qb.push_values(chunk, |mut b, p| {
                let o = &p.order;
                b.push_bind(DbId(o.id))
                    .push_bind(DbId(p.tenant.account_id))
                    .push_bind(p.tenant.livemode)
                    .push_bind(o.status.as_str())
                    .push_bind(o.max_price)
                    .push_bind(o.attempts)
                    .push_bind(Json(&o.shipping_address))
                    .push_bind(Json(&o.metadata))
                    .push_bind(o.po_number.clone())
                    .push_bind(o.retailer_credentials_id.clone())
                    .push_bind(o.created_by.clone())
                    .push_bind(1_i64)
                    .push_bind(o.created_at)
                    .push_bind(o.updated_at)
                    .push_bind(p.retailer.clone())
                    .push_bind(o.expiration.as_ref().map(Json))
                    .push_bind(o.expiration.as_ref().and_then(expires_at))
                    .push_bind(Some(o.options()).filter(|o| !o.is_default()).map(Json));
            });
            qb.build().execute(&mut *conn).await.map(|_| ())
        })?;
    }

    let created = json!({});
    let events: Vec<EventRow> = orders
        .iter()
        .map(|p| EventRow {
            event: RecordedEvent {
                order_id: p.order.id,
                account_id: p.tenant.account_id,
                livemode: p.tenant.livemode,
                sequence: 1,
                event: events::CREATED,
                status: p.order.status.as_str(),
                at: p.order.created_at,
            },
            detail: &created,
        })
        .collect();
    record_events(tx, &events).await?;

    let items: Vec<(Uuid, usize, &super::model::OrderItem)> = orders
        .iter()
        .flat_map(|p| {
            p.order
                .items
                .iter()
                .enumerate()
                .map(|(pos, item)| (p.order.id, pos, item))
        })
        .collect();
    for chunk in items.chunks(ROWS_PER_INSERT) {
        on_tx!(tx, |conn| {
            let mut qb = QueryBuilder::new(
                "INSERT INTO order_items (id, order_id, position, url, quantity, variant, status, \
                 cancellation_reason, created_at, updated_at) ",
            );
            qb.push_values(chunk, |mut b, (order_id, pos, item)| {
                b.push_bind(DbId(item.id))
                    .push_bind(DbId(*order_id))
                    .push_bind(*pos as i32)
                    .push_bind(item.url.clone())
                    .push_bind(item.quantity)
                    .push_bind(item.variant.as_ref().map(Json))
                    .push_bind(item.status.as_str())
                    .push_bind(item.cancellation_reason.clone())
                    .push_bind(item.created_at)
                    .push_bind(item.updated_at);
            });
            qb.build().execute(&mut *conn).await.map(|_| ())
        })?;
    }

    let jobs: Vec<NewJob> = orders.iter().flat_map(|p| p.jobs.iter().cloned()).collect();
    for chunk in jobs.chunks(ROWS_PER_INSERT) {
        queue::enqueue(tx, chunk).await?;
    }
    Ok(())
}

/// Applies `change` if the order's status is one of `from` and the change's status may
/// follow it; returns whether it did (nothing is written when not).
pub async fn apply(
    tx: &mut Tx,
    order_id: Uuid,
    from: &[OrderStatus],
    change: Change,
) -> Result<bool, sqlx::Error> {
    let now = Timestamp::now();
    let lock = tx.for_update();
    let current: Option<(String, i64, DbId, bool)> = on_tx!(tx, |conn| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT status, last_event_sequence, account_id, livemode FROM orders WHERE id = $1{lock}"
        )))
        .bind(DbId(order_id))
        .fetch_optional(&mut *conn)
        .await
    })?;
    let Some((status, mut sequence, account_id, livemode)) = current else {
        return Ok(false);
    };
    let current = OrderStatus::parse(&status).ok_or_else(|| corrupt("order status", &status))?;
    if !from.contains(&current) {
        return Ok(false);
    }
    let next = change.status.unwrap_or(current);
    if change.status.is_some() && !current.can_become(next) {
        tracing::error!(%order_id, from = current.as_str(), to = next.as_str(), "refused an order status change the lifecycle does not allow");
        return Ok(false);
    }

    let events: Vec<EventRow> = change
        .events
        .iter()
        .map(|(event, detail)| {
            sequence += 1;
            EventRow {
                event: RecordedEvent {
                    order_id,
                    account_id: account_id.0,
                    livemode,
                    sequence,
                    event,
                    status: next.as_str(),
                    at: now,
                },
                detail,
            }
        })
        .collect();
    record_events(tx, &events).await?;

    on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE orders SET status = $1, attempts = attempts + $2,
                 job_result = COALESCE($3, job_result), placed_with = COALESCE($4, placed_with),
                 concessions = COALESCE($8, concessions), last_event_sequence = $5, updated_at = $6
             WHERE id = $7",
        )
        .bind(next.as_str())
        .bind(i32::from(change.count_attempt))
        .bind(change.job_result.as_ref().map(Json))
        .bind(change.placed_with.as_deref())
        .bind(sequence)
        .bind(now)
        .bind(DbId(order_id))
        .bind(change.concessions.as_ref().map(Json))
        .execute(&mut *conn)
        .await?;
        for item in &change.items {
            sqlx::query(
                "UPDATE order_items SET status = $1, cancellation_reason = COALESCE($2, cancellation_reason),
                     quantity = COALESCE($3, quantity), error_type = COALESCE($4, error_type), updated_at = $5
                 WHERE id = $6 AND order_id = $7",
            )
            .bind(item.status.as_str())
            .bind(item.cancellation_reason.as_deref())
            .bind(item.quantity)
            .bind(item.error_type.map(ErrorType::as_str))
            .bind(now)
            .bind(DbId(item.id))
            .bind(DbId(order_id))
            .execute(&mut *conn)
            .await?;
        }
        for (carrier, number) in &change.tracking {
            sqlx::query(
                "INSERT INTO tracking_numbers (id, order_id, carrier, tracking_number, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(DbId(Uuid::now_v7()))
            .bind(DbId(order_id))
            .bind(carrier)
            .bind(number)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        Ok::<(), sqlx::Error>(())
    })?;
    queue::enqueue(tx, &change.jobs).await?;
    Ok(true)
}

/// Records an event without changing the order, unless one of that name exists
/// already.
pub async fn note_once(
    tx: &mut Tx,
    order_id: Uuid,
    event: &'static str,
    detail: Value,
) -> Result<(), sqlx::Error> {
    let seen: bool = on_tx!(tx, |conn| {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM order_events WHERE order_id = $1 AND event = $2)",
        )
        .bind(DbId(order_id))
        .bind(event)
        .fetch_one(&mut *conn)
        .await
    })?;
    if !seen {
        let change = Change {
            events: vec![(event, detail)],
            ..Change::default()
        };
        apply(tx, order_id, &OrderStatus::ALL, change).await?;
    }
    Ok(())
}

#[derive(Debug)]
pub enum CancelOutcome {
    Cancelled,
    NotFound,
    NotCancellable(OrderStatus),
}

/// The customer cancels their order: only while it is pending, with its items.
pub async fn cancel_by_customer(
    tx: &mut Tx,
    tenant: &Tenant,
    order_id: Uuid,
) -> Result<CancelOutcome, sqlx::Error> {
    let lock = tx.for_update();
    let owned: Option<(String, Vec<DbId>)> = on_tx!(tx, |conn| {
        let status: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT status FROM orders WHERE id = $1 AND account_id = $2 AND livemode = $3{lock}"
        )))
        .bind(DbId(order_id))
        .bind(DbId(tenant.account_id))
        .bind(tenant.livemode)
        .fetch_optional(&mut *conn)
        .await?;
        match status {
            Some(status) => {
                let items: Vec<DbId> =
                    sqlx::query_scalar("SELECT id FROM order_items WHERE order_id = $1")
                        .bind(DbId(order_id))
                        .fetch_all(&mut *conn)
                        .await?;
                Ok::<_, sqlx::Error>(Some((status, items)))
            }
            None => Ok(None),
        }
    })?;
    let Some((status, items)) = owned else {
        return Ok(CancelOutcome::NotFound);
    };
    let status = OrderStatus::parse(&status).ok_or_else(|| corrupt("order status", &status))?;
    let change = Change {
        status: Some(OrderStatus::Cancelled),
        items: items
            .into_iter()
            .map(|id| ItemChange {
                cancellation_reason: Some("Cancelled at the customer's request".to_string()),
                ..ItemChange::new(id.0, OrderItemStatus::Cancelled)
            })
            .collect(),
        events: vec![(
            events::CANCELLED,
            json!({"reason": "cancelled_by_customer"}),
        )],
        ..Change::default()
    };
    Ok(
        if apply(tx, order_id, &[OrderStatus::Pending], change).await? {
            CancelOutcome::Cancelled
        } else {
            CancelOutcome::NotCancellable(status)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::{self, *};

    /// Every pair of statuses, allowed or refused, as the state diagram draws them.
    #[test]
    fn every_status_change_is_allowed_or_refused_as_drawn() {
        let allowed = [
            (Pending, InProgress),
            (Pending, OrderFailed),
            (Pending, Cancelled),
            (InProgress, InProgress),
            (InProgress, OrderPlaced),
            (InProgress, OrderFailed),
            (OrderPlaced, CancelledByRetailer),
        ];
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{} → {}",
                    from.as_str(),
                    to.as_str()
                );
            }
        }
    }

    #[test]
    fn failed_and_cancelled_orders_are_final() {
        let finals: Vec<OrderStatus> = OrderStatus::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(finals, [OrderFailed, Cancelled, CancelledByRetailer]);
        // A placed order is not final: the retailer may still cancel it.
        assert!(!OrderPlaced.is_final());
    }
}
