//! `GET /orders/{id}/timeline`: the milestones of an order, derived from its events.

use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::model::events;
use crate::auth::Tenant;
use crate::on_db;
use crate::storage::{Db, DbId, Timestamp};

/// One step in an order's life.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Milestone {
    /// `order_created`, `waiting_for_account`, `placement_started`, `order_placed`,
    /// `tracking_acquired`, `shipped`, `delivered`, `order_failed` or `cancelled`.
    pub milestone: &'static str,
    pub label: String,
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: Timestamp,
    /// Who caused it: `customer`, `errand` or `retailer`.
    pub source: &'static str,
    #[schema(value_type = Object)]
    pub detail: Value,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Timeline {
    pub order_id: Uuid,
    pub milestones: Vec<Milestone>,
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
    let rows: Option<Vec<EventRow>> = on_db!(db, reader, |pool| {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM orders WHERE id = $1 AND account_id = $2 AND livemode = $3)",
        )
        .bind(DbId(order_id))
        .bind(DbId(tenant.account_id))
        .bind(tenant.livemode)
        .fetch_one(pool)
        .await?;
        if !exists {
            return Ok(None);
        }
        Some(
            sqlx::query_as(
                "SELECT event, detail, created_at FROM order_events WHERE order_id = $1 ORDER BY sequence",
            )
            .bind(DbId(order_id))
            .fetch_all(pool)
            .await?,
        )
    });
    Ok(rows.map(|rows| Timeline {
        order_id,
        milestones: rows.into_iter().filter_map(milestone).collect(),
    }))
}

fn milestone(row: EventRow) -> Option<Milestone> {
    let detail = row.detail.0;
    let text = |key: &str| detail[key].as_str().unwrap_or_default().to_string();
    let (milestone, source, label) = match row.event.as_str() {
        events::CREATED => ("order_created", "customer", "Order received".to_string()),
        events::WAITING_FOR_ACCOUNT => (
            "waiting_for_account",
            "errand",
            "Waiting for a free retailer account".to_string(),
        ),
        events::STARTED => (
            "placement_started",
            "errand",
            format!("Checking out at {}", text("retailer")),
        ),
        events::PLACED => (
            "order_placed",
            "retailer",
            format!("Placed with the retailer as {}", text("merchant_order_id")),
        ),
        events::TRACKING_RECEIVED => (
            "tracking_acquired",
            "retailer",
            "Tracking number received".to_string(),
        ),
        events::SHIPPED => ("shipped", "retailer", "Shipped".to_string()),
        events::DELIVERED => ("delivered", "retailer", "Delivered".to_string()),
        events::FAILED => (
            "order_failed",
            "errand",
            format!("Failed: {}", text("message")),
        ),
        events::CANCELLED => (
            "cancelled",
            "customer",
            "Cancelled at the customer's request".to_string(),
        ),
        events::CANCELLED_BY_RETAILER => (
            "cancelled",
            "retailer",
            "Cancelled by the retailer".to_string(),
        ),
        _ => return None,
    };
    Some(Milestone {
        milestone,
        label,
        occurred_at: row.created_at,
        source,
        detail,
    })
}
