//! Orders: the Zinc-compatible `/orders` API, its storage and the rules of its lifecycle.

pub mod address;
pub mod artifacts;
pub mod http;
pub mod lifecycle;
pub mod model;
pub mod options;
pub mod request;
pub mod retailer;
pub mod store;
pub mod test_products;
pub mod timeline;
pub mod writer;

use uuid::Uuid;

use crate::auth::Tenant;
use crate::queue::{JobKind, NewJob};
use crate::storage::{Db, Timestamp};
use model::{Order, OrderItem, OrderItemStatus, OrderStatus};
use options::{NotificationStatus, OrderFulfillment};
use request::NewOrder;
use store::{IdempotencyClaim, PendingInsert};
use writer::{OrderWriter, WriterError};

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("idempotency key {0:?} was already used with a different request")]
    IdempotencyConflict(String),
    #[error("order not found")]
    NotFound,
    #[error("an order with status {0:?} cannot be cancelled")]
    NotCancellable(OrderStatus),
    #[error(transparent)]
    Writer(#[from] WriterError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The result of `POST /orders`: a new order, or the one an earlier identical request
/// with the same idempotency key created.
pub enum Created {
    New(Order),
    Replayed(Order),
}

/// The order as it will be stored: `pending`, no attempts, one pending item per product.
fn build(tenant: &Tenant, new: NewOrder) -> Order {
    let now = Timestamp::now();
    let items = new
        .products
        .into_iter()
        .map(|p| OrderItem {
            id: Uuid::now_v7(),
            url: p.url,
            quantity: p.quantity,
            variant: p.variant,
            status: OrderItemStatus::Pending,
            cancellation_reason: None,
            error_type: None,
            created_at: now,
            updated_at: now,
        })
        .collect();
    let options = new.options;
    Order {
        id: Uuid::now_v7(),
        status: OrderStatus::Pending,
        max_price: new.max_price,
        attempts: 0,
        items,
        shipping_address: new.shipping_address,
        metadata: new.metadata,
        po_number: new.po_number,
        handling_days_max: options.handling_days_max,
        is_gift: options.is_gift,
        gift_message: options.gift_message,
        retailer_credentials_id: new.retailer_credentials_id,
        tracking_numbers: vec![],
        created_by: Some(tenant.key_id.to_string()),
        user_id: None,
        returns: vec![],
        job_result: None,
        merchant_order_ids: vec![],
        customer_notifications: options.notify_email.map(|email| NotificationStatus {
            email,
            delivered: None,
            sent: vec![],
        }),
        fulfillment: OrderFulfillment::new(options.fulfillment, vec![]),
        expiration: new.expiration,
        created_at: now,
        updated_at: now,
        screenshots: vec![],
        screenshot_names: vec![],
    }
}

/// Creates an order, or replays the one its idempotency key already names (Stripe's
/// semantics: same key and same request → same order; same key, other request → error).
/// The order's placement job (and its expiry, if it has one) commit with it.
pub async fn create(
    db: &Db,
    writer: &OrderWriter,
    tenant: &Tenant,
    new: NewOrder,
    retailer: String,
    placement_attempts: i32,
) -> Result<Created, OrderError> {
    let idempotency = new.idempotency_key.clone().map(|key| IdempotencyClaim {
        key,
        fingerprint: new.fingerprint(),
    });
    let order = build(tenant, new);
    let mut jobs = vec![NewJob::now(
        JobKind::PlaceOrder,
        Some(order.id),
        placement_attempts,
    )];
    if let Some(at) = order.expiration.as_ref().and_then(store::expires_at) {
        jobs.push(NewJob::now(JobKind::ExpireOrder, Some(order.id), 5).at(at));
    }
    let insert = PendingInsert {
        tenant: *tenant,
        order,
        retailer,
        idempotency: idempotency.clone(),
        jobs,
    };
    let Some(existing) = writer.insert(insert.clone()).await? else {
        return Ok(Created::New(insert.order));
    };
    match idempotency {
        Some(claim) if claim.fingerprint == existing.fingerprint => {}
        Some(claim) => return Err(OrderError::IdempotencyConflict(claim.key)),
        None => return Err(OrderError::NotFound),
    }
    let order = store::get(db, tenant, existing.order_id)
        .await?
        .ok_or(OrderError::NotFound)?;
    Ok(Created::Replayed(order))
}

pub async fn get(db: &Db, tenant: &Tenant, id: Uuid) -> Result<Order, OrderError> {
    store::get(db, tenant, id)
        .await?
        .ok_or(OrderError::NotFound)
}

pub async fn cancel(db: &Db, tenant: &Tenant, id: Uuid) -> Result<(), OrderError> {
    let mut tx = db.begin().await?;
    match lifecycle::cancel_by_customer(&mut tx, tenant, id).await? {
        lifecycle::CancelOutcome::Cancelled => Ok(tx.commit().await?),
        lifecycle::CancelOutcome::NotFound => Err(OrderError::NotFound),
        lifecycle::CancelOutcome::NotCancellable(status) => Err(OrderError::NotCancellable(status)),
    }
}
