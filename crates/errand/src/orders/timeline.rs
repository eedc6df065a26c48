//! `GET /orders/{id}/timeline`: the milestones of an order, derived from its events.

use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::model::{OrderStatus, events};
use super::store::corrupt;
use crate::auth::Tenant;
use crate::on_db;
use crate::returns::events as returns;
use crate::storage::{Db, DbId, Timestamp};

/// What kind of step a milestone is. The contract lists the customer-facing kinds;
/// `waiting_for_account` and `placement_started` are Errand's own, shown only in
/// [`Timeline::progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = OrderMilestoneType)]
pub enum MilestoneType {
    OrderCreated,
    WaitingForAccount,
    PlacementStarted,
    OrderPlaced,
    TrackingAcquired,
    Shipped,
    Delivered,
    /// The carrier could not deliver (not reported by any retailer Errand drives yet).
    Undeliverable,
    OrderFailed,
    Cancelled,
    ReturnRequested,
    ReturnApproved,
    ReturnDenied,
    ReturnCredited,
}

impl MilestoneType {
    /// Whether the contract's timeline shows it (`milestones`): its kinds end at
    /// `cancelled`; Errand's own steps and a return's are in `progress` only.
    fn is_customer_facing(self) -> bool {
        !matches!(
            self,
            MilestoneType::WaitingForAccount
                | MilestoneType::PlacementStarted
                | MilestoneType::ReturnRequested
                | MilestoneType::ReturnApproved
                | MilestoneType::ReturnDenied
                | MilestoneType::ReturnCredited
        )
    }
}

/// One step in an order's life.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = OrderMilestone)]
pub struct Milestone {
    #[serde(rename = "type")]
    pub kind: MilestoneType,
    /// The same as `type` (kept for clients written before `type`).
    #[schema(deprecated)]
    pub milestone: MilestoneType,
    pub label: String,
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: Timestamp,
    /// Who caused it: `customer`, `errand` or `retailer`.
    pub source: &'static str,
    #[schema(value_type = Object)]
    pub detail: Value,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = OrderTimelineResponse)]
pub struct Timeline {
    pub order_id: Uuid,
    pub current_status: OrderStatus,
    /// The customer-facing milestones, oldest first.
    pub milestones: Vec<Milestone>,
    /// Every step, oldest first, Errand's own included (`waiting_for_account`,
    /// `placement_started`).
    pub progress: Vec<Milestone>,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    event: String,
    detail: Json<Value>,
    created_at: Timestamp,
}

/// The order's timeline, or `None` if the tenant has no such order.
pub async fn timeline(
    db: &Db,
    tenant: &Tenant,
    order_id: Uuid,
) -> Result<Option<Timeline>, sqlx::Error> {
    let found: Option<(String, Vec<EventRow>)> = on_db!(db, reader, |pool| {
        let status: Option<String> = sqlx::query_scalar(
            "SELECT status FROM orders WHERE id = $1 AND account_id = $2 AND livemode = $3",
        )
        .bind(DbId(order_id))
        .bind(DbId(tenant.account_id))
        .bind(tenant.livemode)
        .fetch_optional(pool)
        .await?;
        let Some(status) = status else {
            return Ok(None);
        };
        Some((
            status,
            sqlx::query_as(
                "SELECT event, detail, created_at FROM order_events WHERE order_id = $1 ORDER BY sequence",
            )
            .bind(DbId(order_id))
            .fetch_all(pool)
            .await?,
        ))
    });
    let Some((status, rows)) = found else {
        return Ok(None);
    };
    let current_status =
        OrderStatus::parse(&status).ok_or_else(|| corrupt("order status", &status))?;
    let progress: Vec<Milestone> = rows.into_iter().filter_map(milestone).collect();
    Ok(Some(Timeline {
        order_id,
        current_status,
        milestones: progress
            .iter()
            .filter(|m| m.kind.is_customer_facing())
            .cloned()
            .collect(),
        progress,
    }))
}

fn milestone(row: EventRow) -> Option<Milestone> {
    let detail = row.detail.0;
    let text = |key: &str| detail[key].as_str().unwrap_or_default().to_string();
    use MilestoneType::*;
    let (kind, source, label) = match row.event.as_str() {
        events::CREATED => (OrderCreated, "customer", "Order received".to_string()),
        events::WAITING_FOR_ACCOUNT => (
            WaitingForAccount,
            "errand",
            "Waiting for a free retailer account".to_string(),
        ),
        events::STARTED => (
            PlacementStarted,
            "errand",
            format!("Checking out at {}", text("retailer")),
        ),
        events::PLACED => (
            OrderPlaced,
            "retailer",
            format!("Placed with the retailer as {}", text("merchant_order_id")),
        ),
        events::TRACKING_RECEIVED => (
            TrackingAcquired,
            "retailer",
            "Tracking number received".to_string(),
        ),
        events::SHIPPED => (Shipped, "retailer", "Shipped".to_string()),
        events::DELIVERED => (Delivered, "retailer", "Delivered".to_string()),
        events::FAILED => (
            OrderFailed,
            "errand",
            format!("Failed: {}", text("message")),
        ),
        events::CANCELLED => (
            Cancelled,
            "customer",
            "Cancelled at the customer's request".to_string(),
        ),
        events::CANCELLED_BY_RETAILER => (
            Cancelled,
            "retailer",
            "Cancelled by the retailer".to_string(),
        ),
        returns::REQUESTED => (ReturnRequested, "customer", "Return requested".to_string()),
        returns::APPROVED => (
            ReturnApproved,
            "retailer",
            "Return approved: send the items back with the label".to_string(),
        ),
        returns::DENIED => (
            ReturnDenied,
            "retailer",
            format!("Return denied: {}", text("resolution_notes")),
        ),
        returns::CREDITED => (
            ReturnCredited,
            "retailer",
            "Return received and credited".to_string(),
        ),
        _ => return None,
    };
    Some(Milestone {
        kind,
        milestone: kind,
        label,
        occurred_at: row.created_at,
        source,
        detail,
    })
}
