//! The webhook outbox: a delivery and its job are written in the transaction that
//! records the order event, so a webhook exists exactly when its event does (none lost
//! on a crash, none invented by a rolled-back change).

use uuid::Uuid;

use super::delivery::MAX_JOB_ATTEMPTS;
use crate::on_tx;
use crate::orders::model::events;
use crate::queue::{self, JobKind, NewJob};
use crate::returns::events as returns;
use crate::storage::{DbId, Timestamp, Tx};

/// Order events that are sent as webhooks.
pub const WEBHOOK_EVENTS: [&str; 12] = [
    events::STARTED,
    events::PLACED,
    events::FAILED,
    events::TRACKING_RECEIVED,
    events::SHIPPED,
    events::DELIVERED,
    events::CANCELLED,
    events::CANCELLED_BY_RETAILER,
    returns::REQUESTED,
    returns::APPROVED,
    returns::DENIED,
    returns::CREDITED,
];

/// An order event as it was recorded, for its webhook.
#[derive(Debug, Clone, Copy)]
pub struct RecordedEvent<'a> {
    pub order_id: Uuid,
    pub account_id: Uuid,
    pub livemode: bool,
    pub sequence: i64,
    pub event: &'a str,
    /// The order's status after the event.
    pub status: &'a str,
    pub at: Timestamp,
}

/// A delivery's id, also its `webhook-id`: receivers de-duplicate on it.
pub fn new_delivery_id() -> String {
    format!("evt_{}", Uuid::now_v7().simple())
}

/// The job that delivers `delivery`.
pub fn delivery_job(delivery: &str) -> NewJob {
    NewJob {
        payload: serde_json::json!({ "delivery": delivery }),
        ..NewJob::now(JobKind::DeliverWebhook, None, MAX_JOB_ATTEMPTS)
    }
}

/// Records the webhook of an order event, with its delivery job, when the event is one
/// that is sent and the tenant has an active endpoint.
pub async fn record(tx: &mut Tx, event: &RecordedEvent<'_>) -> Result<(), sqlx::Error> {
    if !WEBHOOK_EVENTS.contains(&event.event) {
        return Ok(());
    }
    let id = new_delivery_id();
    let created: Option<String> = on_tx!(tx, |conn| {
        sqlx::query_scalar(
            "INSERT INTO webhook_deliveries (id, account_id, livemode, order_id, sequence, event, status, state, attempts, created_at, updated_at)
             SELECT $1, account_id, livemode, $2, $3, $4, $5, $6, 0, $7, $7 FROM webhook_endpoints
             WHERE account_id = $8 AND livemode = $9 AND url IS NOT NULL AND disabled_at IS NULL
             RETURNING id",
        )
        .bind(&id)
        .bind(DbId(event.order_id))
        .bind(event.sequence)
        .bind(event.event)
        .bind(event.status)
        .bind(super::delivery::DeliveryState::Pending.as_str())
        .bind(event.at)
        .bind(DbId(event.account_id))
        .bind(event.livemode)
        .fetch_optional(&mut *conn)
        .await
    })?;
    if created.is_some() {
        queue::enqueue(tx, &[delivery_job(&id)]).await?;
    }
    Ok(())
}
