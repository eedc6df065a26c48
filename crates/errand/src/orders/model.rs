//! What an order is: its statuses, items and the shape the API returns
//! (`OrderResponse` in the contract).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::address::Address;
use crate::returns::ReturnSummary;
use crate::storage::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    InProgress,
    OrderPlaced,
    OrderFailed,
    Cancelled,
    CancelledByRetailer,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::Pending,
        OrderStatus::InProgress,
        OrderStatus::OrderPlaced,
        OrderStatus::OrderFailed,
        OrderStatus::Cancelled,
        OrderStatus::CancelledByRetailer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::InProgress => "in_progress",
            OrderStatus::OrderPlaced => "order_placed",
            OrderStatus::OrderFailed => "order_failed",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::CancelledByRetailer => "cancelled_by_retailer",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderItemStatus {
    Pending,
    Processing,
    Ordered,
    Shipped,
    Delivered,
    Cancelled,
    Failed,
}

impl OrderItemStatus {
    pub const ALL: [OrderItemStatus; 7] = [
        OrderItemStatus::Pending,
        OrderItemStatus::Processing,
        OrderItemStatus::Ordered,
        OrderItemStatus::Shipped,
        OrderItemStatus::Delivered,
        OrderItemStatus::Cancelled,
        OrderItemStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderItemStatus::Pending => "pending",
            OrderItemStatus::Processing => "processing",
            OrderItemStatus::Ordered => "ordered",
            OrderItemStatus::Shipped => "shipped",
            OrderItemStatus::Delivered => "delivered",
            OrderItemStatus::Cancelled => "cancelled",
            OrderItemStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Product variant schema for selecting product options (color, size, etc.).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = ProductVariant)]
pub struct Variant {
    /// Variant label (e.g., 'Color', 'Size')
    #[schema(min_length = 1)]
    pub label: String,
    /// Variant value (e.g., 'Black', 'Large')
    #[schema(min_length = 1)]
    pub value: String,
}

/// Response model for order item data.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = OrderItemResponse)]
pub struct OrderItem {
    pub id: Uuid,
    pub url: String,
    pub quantity: i32,
    #[schema(required = false)]
    pub variant: Option<Vec<Variant>>,
    pub status: OrderItemStatus,
    #[schema(required = false)]
    pub cancellation_reason: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// Response model for tracking number data.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = TrackingNumberResponse)]
pub struct TrackingNumber {
    pub id: Uuid,
    pub carrier: String,
    pub tracking_number: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// Response model for order data.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = OrderResponse)]
pub struct Order {
    pub id: Uuid,
    pub status: OrderStatus,
    /// The price cap in cents: the retailer's full total may not exceed it.
    pub max_price: i64,
    pub attempts: i32,
    pub items: Vec<OrderItem>,
    #[schema(value_type = Object)]
    pub shipping_address: Address,
    #[schema(
        value_type = std::collections::HashMap<String, serde_json::Value>,
        required = false,
        default = json!({})
    )]
    pub metadata: Map<String, Value>,
    #[schema(required = false)]
    pub po_number: Option<String>,
    #[schema(required = true)]
    pub retailer_credentials_id: Option<String>,
    #[schema(required = false, default = json!([]))]
    pub tracking_numbers: Vec<TrackingNumber>,
    /// The API key that created the order.
    #[schema(required = false)]
    pub created_by: Option<String>,
    /// Kept for compatibility with the reference API; always null.
    #[schema(required = false)]
    pub user_id: Option<i64>,
    #[schema(required = false, default = json!([]))]
    pub returns: Vec<ReturnSummary>,
    /// The outcome of placing the order, once there is one.
    #[schema(required = false)]
    pub job_result: Option<JobResult>,
    /// The order fails with `error_type: expired` if it is not placed by then.
    #[schema(required = false)]
    pub expiration: Option<Expiration>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    /// What the browser saw while buying, in the order it was taken: absolute URLs of
    /// PNG screenshots, served to the order's owner with the same API key. Always
    /// present (`[]` when none).
    #[schema(required = false, default = json!([]))]
    pub screenshots: Vec<String>,
    /// The screenshots' names, from which `screenshots` is built once the server's
    /// public address is known.
    #[serde(skip)]
    pub screenshot_names: Vec<String>,
}

/// An order as the system sees it, not scoped to a tenant (jobs act for the system):
/// whose it is, which retailer sells it, and what placing it needs.
#[derive(Debug, Clone)]
pub struct OrderRecord {
    pub id: Uuid,
    pub account_id: Uuid,
    pub livemode: bool,
    pub status: OrderStatus,
    pub max_price: i64,
    /// The configured retailer that sells every product of the order.
    pub retailer: Option<String>,
    pub retailer_credentials_id: Option<String>,
    /// The retailer account that placed it.
    pub placed_with: Option<String>,
    pub shipping_address: Address,
    pub expires_at: Option<Timestamp>,
    pub expiration: Option<Expiration>,
    pub job_result: Option<JobResult>,
    pub items: Vec<OrderItem>,
}

impl Order {
    /// Fills `screenshots` with the URLs of the order's screenshots under `base` (the
    /// server's public address, without a trailing slash).
    pub fn link_screenshots(&mut self, base: &str) {
        self.screenshots = self
            .screenshot_names
            .iter()
            .map(|name| screenshot_url(base, self.id, name))
            .collect();
    }
}

/// Where a screenshot is served.
pub fn screenshot_url(base: &str, order_id: Uuid, name: &str) -> String {
    format!("{base}/orders/{order_id}/screenshots/{name}")
}

/// What placing the order led to (as the reference API reports it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobResult {
    pub success: bool,
    /// Why the order failed, e.g. `max_price_exceeded`, `out_of_stock`, `expired`.
    pub error_type: Option<String>,
    /// A sentence a person can act on.
    pub error: Option<String>,
    /// What the retailer charged, or quoted when the cap refused it.
    pub price_components: Option<PriceComponents>,
    #[serde(default)]
    pub merchant_order_ids: Vec<MerchantOrder>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub estimated_delivery: Option<Timestamp>,
}

/// What the retailer will charge, in minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PriceComponents {
    pub subtotal: i64,
    pub shipping: i64,
    pub tax: i64,
    pub discount: i64,
    pub total: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MerchantOrder {
    pub merchant_order_id: String,
    /// The retailer's name in Errand's configuration.
    pub merchant: String,
    /// The managed retailer account that placed it.
    pub account: String,
    #[schema(value_type = String, format = DateTime)]
    pub placed_at: Timestamp,
}

/// A deadline for placing the order (`timestamp` in Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = OrderExpiry)]
pub struct Expiration {
    pub timestamp: i64,
    pub description: Option<String>,
}

/// Names of the events in the order-event log (the timeline and webhooks read them).
pub mod events {
    pub const CREATED: &str = "order.created";
    pub const CANCELLED: &str = "order.cancelled";
    pub const WAITING_FOR_ACCOUNT: &str = "order.waiting_for_account";
    pub const STARTED: &str = "order.started";
    pub const PLACED: &str = "order.placed";
    pub const FAILED: &str = "order.failed";
    pub const TRACKING_RECEIVED: &str = "order.tracking_received";
    pub const SHIPPED: &str = "order.shipped";
    pub const DELIVERED: &str = "order.delivered";
    pub const CANCELLED_BY_RETAILER: &str = "order.cancelled_by_retailer";
}
