//! Following a placed order: tracking numbers, shipped and delivered items, and a
//! cancellation by the retailer. The job reschedules itself, backing off, until every
//! item is final.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::{Engine, change_order};
use crate::orders::lifecycle::{Change, ItemChange};
use crate::orders::model::{OrderItemStatus, OrderRecord, OrderStatus, events};
use crate::orders::store;
use crate::queue::{Job, Outcome};
use crate::retailers::{RetailerOrder, RetailerOrderStatus};
use crate::storage::Timestamp;

/// Each wait is this much longer than the last, up to the retailer's maximum.
const BACKOFF: f64 = 1.5;
/// Orders still not final after this long are no longer followed.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120 * 24 * 3600);

pub async fn run(engine: &Engine, job: &Job, order_id: Uuid) -> Result<Outcome, sqlx::Error> {
    let db = engine.db();
    let Some(order) = store::load_record(db, order_id).await? else {
        return Ok(Outcome::Done);
    };
    if order.status != OrderStatus::OrderPlaced {
        return Ok(Outcome::Done);
    }
    let (Some(retailer), Some(placed)) = (
        order
            .retailer
            .as_deref()
            .and_then(|name| engine.inner.retailers.get(name))
            .cloned(),
        order
            .job_result
            .as_ref()
            .and_then(|r| r.merchant_order_ids.first())
            .cloned(),
    ) else {
        return Ok(Outcome::Dead(
            "the order's retailer is not configured any more, or it has no merchant order id"
                .into(),
        ));
    };
    let credentials = match engine.account_credentials(&placed.account).await? {
        Ok(credentials) => credentials,
        Err(outcome) => return Ok(outcome),
    };
    let driver = &retailer.driver;
    let looked_up = match driver.sign_in(&credentials).await {
        Ok(session) => {
            let order = driver.order(&session, &placed.merchant_order_id).await;
            driver.release(&session).await;
            order
        }
        Err(e) => Err(e),
    };
    let retailer_order = match looked_up {
        Ok(o) => o,
        Err(e) => {
            return Ok(Outcome::Retry {
                error: e.to_string(),
                after: None,
            });
        }
    };

    let known: HashSet<String> = store::tracking_numbers(db, order_id)
        .await?
        .into_iter()
        .collect();
    let item_products: Vec<Option<String>> = order
        .items
        .iter()
        .map(|i| {
            url::Url::parse(&i.url)
                .ok()
                .and_then(|u| driver.product_id(&u))
        })
        .collect();
    let mut change = changes(&order, &item_products, &retailer_order, &known);
    change
        .jobs
        .extend(crate::notifications::jobs_for(&order, &change.events));
    let finished =
        change.status == Some(OrderStatus::CancelledByRetailer) || all_delivered(&order, &change);
    if !change.events.is_empty() || !change.items.is_empty() {
        change_order(db, order_id, &[OrderStatus::OrderPlaced], change).await?;
    }
    if finished {
        return Ok(Outcome::Done);
    }

    let since = job.payload["since"]
        .as_str()
        .and_then(Timestamp::parse)
        .unwrap_or_else(Timestamp::now);
    if Timestamp::now().since(since) > GIVE_UP_AFTER {
        tracing::warn!(order_id = %order_id, "order still not delivered after 120 days; no longer tracking it");
        return Ok(Outcome::Done);
    }
    let interval = job.payload["interval"]
        .as_f64()
        .unwrap_or(retailer.settings.tracking_interval_seconds);
    let next = (interval * BACKOFF).min(retailer.settings.tracking_max_interval_seconds);
    Ok(Outcome::Reschedule {
        at: Timestamp::now().after(Duration::from_secs_f64(interval)),
        payload: json!({"interval": next, "since": since}),
    })
}

/// What the retailer's view of the order changes on ours.
fn changes(
    order: &OrderRecord,
    item_products: &[Option<String>],
    retailer_order: &RetailerOrder,
    known_tracking: &HashSet<String>,
) -> Change {
    let mut change = Change::default();
    let new_tracking: Vec<(String, String)> = retailer_order
        .shipments
        .iter()
        .filter(|s| !known_tracking.contains(&s.tracking_number))
        .map(|s| (s.carrier.clone(), s.tracking_number.clone()))
        .collect();
    if !new_tracking.is_empty() {
        change.events.push((
            events::TRACKING_RECEIVED,
            json!({"tracking_numbers": new_tracking.iter().map(|(c, n)| json!({"carrier": c, "tracking_number": n})).collect::<Vec<_>>()}),
        ));
        change.tracking = new_tracking;
    }

    if retailer_order.status == RetailerOrderStatus::Cancelled {
        change.status = Some(OrderStatus::CancelledByRetailer);
        change.items = order
            .items
            .iter()
            .filter(|i| {
                !matches!(
                    i.status,
                    OrderItemStatus::Delivered | OrderItemStatus::Skipped
                )
            })
            .map(|i| ItemChange {
                cancellation_reason: Some("Cancelled by the retailer".to_string()),
                ..ItemChange::new(i.id, OrderItemStatus::Cancelled)
            })
            .collect();
        change.events.push((
            events::CANCELLED_BY_RETAILER,
            json!({"merchant_order_id": retailer_order.merchant_order_id}),
        ));
        return change;
    }

    // Match our items to the retailer's lines by product, in order.
    let mut used = vec![false; retailer_order.lines.len()];
    let mut shipped_now = 0;
    for (item, product) in order.items.iter().zip(item_products) {
        if item.status == OrderItemStatus::Skipped {
            continue;
        }
        let Some(line) = retailer_order
            .lines
            .iter()
            .enumerate()
            .find(|(i, l)| !used[*i] && Some(&l.product_id) == product.as_ref())
        else {
            continue;
        };
        used[line.0] = true;
        let sku = &line.1.sku;
        let shipment = retailer_order
            .shipments
            .iter()
            .find(|s| s.skus.contains(sku));
        let status = match shipment {
            Some(s) if s.delivered => OrderItemStatus::Delivered,
            Some(_) => OrderItemStatus::Shipped,
            None => continue,
        };
        if status != item.status {
            if item.status == OrderItemStatus::Ordered {
                shipped_now += 1;
            }
            change.items.push(ItemChange::new(item.id, status));
        }
    }
    if shipped_now > 0 {
        change
            .events
            .push((events::SHIPPED, json!({"items": shipped_now})));
    }
    let delivered_before = order
        .items
        .iter()
        .filter(|i| i.status != OrderItemStatus::Skipped)
        .all(|i| i.status == OrderItemStatus::Delivered);
    if all_delivered(order, &change) && !delivered_before {
        change.events.push((events::DELIVERED, json!({})));
    }
    change
}

/// Whether every item bought is delivered once `change` is applied.
fn all_delivered(order: &OrderRecord, change: &Change) -> bool {
    let mut bought = order
        .items
        .iter()
        .filter(|i| i.status != OrderItemStatus::Skipped);
    bought.all(|item| {
        change
            .items
            .iter()
            .find(|c| c.id == item.id)
            .map(|c| c.status)
            .unwrap_or(item.status)
            == OrderItemStatus::Delivered
    })
}
