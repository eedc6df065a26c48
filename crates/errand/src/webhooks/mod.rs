//! Webhooks: one endpoint per account and mode, signed with Standard Webhooks and with
//! the reference API's scheme.

pub mod delivery;
pub mod endpoint;
pub mod http;
pub mod log;
pub mod signing;

use crate::orders::model::events;

/// The job kind that delivers one webhook.
pub const DELIVER_WEBHOOK: &str = "deliver_webhook";

/// Order events that are sent as webhooks.
pub const WEBHOOK_EVENTS: [&str; 8] = [
    events::STARTED,
    events::PLACED,
    events::FAILED,
    events::TRACKING_RECEIVED,
    events::SHIPPED,
    events::DELIVERED,
    events::CANCELLED,
    events::CANCELLED_BY_RETAILER,
];

/// A delivery's id, also its `webhook-id`: receivers de-duplicate on it.
pub fn new_delivery_id() -> String {
    format!("evt_{}", uuid::Uuid::now_v7().simple())
}

/// Creates the delivery of an order event, when the tenant has an active endpoint, with
/// its job, inside the transaction that records the event (so none is lost or
/// invented). Evaluates to `Result<(), sqlx::Error>`.
#[macro_export]
macro_rules! webhook_in_tx {
    ($tx:ident, $order_id:expr, $account_id:expr, $livemode:expr, $sequence:expr, $event:expr, $status:expr, $now:expr) => {{
        let event: &str = $event;
        if $crate::webhooks::WEBHOOK_EVENTS.contains(&event) {
            let id = $crate::webhooks::new_delivery_id();
            let created: Option<String> = sqlx::query_scalar(
                "INSERT INTO webhook_deliveries (id, account_id, livemode, order_id, sequence, event, status, state, attempts, created_at, updated_at)
                 SELECT $1, account_id, livemode, $2, $3, $4, $5, 'pending', 0, $6, $6 FROM webhook_endpoints
                 WHERE account_id = $7 AND livemode = $8 AND url IS NOT NULL AND disabled_at IS NULL
                 RETURNING id",
            )
            .bind(&id)
            .bind($crate::storage::DbId($order_id))
            .bind($sequence)
            .bind(event)
            .bind($status)
            .bind($now)
            .bind($account_id)
            .bind($livemode)
            .fetch_optional(&mut *$tx)
            .await?;
            if created.is_some() {
                let job = $crate::queue::NewJob {
                    payload: serde_json::json!({ "delivery": id }),
                    ..$crate::queue::NewJob::now(
                        $crate::webhooks::DELIVER_WEBHOOK,
                        None,
                        $crate::webhooks::delivery::MAX_JOB_ATTEMPTS,
                    )
                };
                $crate::enqueue_in_tx!($tx, &[job])?;
            }
        }
        Ok::<(), sqlx::Error>(())
    }};
}
