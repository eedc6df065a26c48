//! What an order is: its statuses, items and the shape the API returns
//! (`OrderResponse` in the contract).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::address::Address;
use super::options::{FulfillmentModes, NotificationStatus, OrderFulfillment, OrderOptions};
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
    /// Not bought: the order allowed skipping an item that could not be bought
    /// (`fulfillment.items: best_effort`); its `error_type` says why.
    Skipped,
}

impl OrderItemStatus {
    pub const ALL: [OrderItemStatus; 8] = [
        OrderItemStatus::Pending,
        OrderItemStatus::Processing,
        OrderItemStatus::Ordered,
        OrderItemStatus::Shipped,
        OrderItemStatus::Delivered,
        OrderItemStatus::Cancelled,
        OrderItemStatus::Failed,
        OrderItemStatus::Skipped,
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
            OrderItemStatus::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Why an order failed, or a retailer refused: an order's `job_result.error_type`, a
/// test product's `outcome_error_type` and the `error_type` label of
/// `errand_placements_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// The retailer refused the sign-in: wrong e-mail, password or one-time code, a
    /// two-factor sign-in without a `totp_secret`, or a `totp_secret` that is not base32.
    LoginFailed,
    /// The retailer has no such product, or the URL is not a product page.
    ProductNotFound,
    /// The product exists but its offer cannot be bought.
    ProductUnavailable,
    /// Not enough in stock.
    OutOfStock,
    /// The product has no such variant value.
    InvalidVariant,
    /// The product needs variant choices the order did not make (e.g. Color and Size).
    InsufficientVariants,
    /// More than the retailer sells to one order.
    PurchaseLimitExceeded,
    /// The retailer refused or could not use the shipping address.
    ShippingAddressRefused,
    /// The retailer refused something else in the checkout (an empty cart, a message
    /// too long, …).
    CheckoutRefused,
    /// The account's payment was declined.
    PaymentDeclined,
    /// A bot check or similar blocked the checkout.
    CheckoutBlocked,
    /// The total changed while checking out (a recipe's detector); nothing was bought
    /// and the engine quotes again rather than fail the order.
    PriceChanged,
    /// Any other refusal or failure at the retailer.
    RetailerError,
    /// The retailer asks to try again later (a recipe's detector): the engine retries
    /// rather than fail the order.
    TemporarilyUnavailable,
    /// The retailer holds more than one order with this order's reference.
    DuplicatePurchase,
    /// The retailer's recipe has no tracking phase, so a placed order cannot be read
    /// back (a tracking job's error, not an order's).
    TrackingUnavailable,
    /// The retailer's orders cannot be cancelled through Errand (its recipe cannot).
    CancellationUnsupported,
    /// The retailer's total is above the order's `max_price`; nothing was bought.
    MaxPriceExceeded,
    /// The order was not placed by its `expiration.timestamp`.
    Expired,
    /// The order is a gift and the retailer's checkout offers no gift option.
    GiftOptionUnavailable,
    /// No offer of the product ships within the order's `handling_days_max`.
    HandlingTimeExceeded,
    /// No active managed account for the order's retailer in the key's mode.
    NoRetailerAccount,
    /// The order's named account was deleted or deactivated, or its secrets cannot
    /// be decrypted (another master key).
    RetailerAccountUnavailable,
    /// The order's retailer is no longer in the configuration.
    UnknownRetailer,
    /// Temporary failures used up every attempt; nothing was bought.
    RetailerUnavailable,
    /// An earlier purchase request's outcome could not be checked at the retailer:
    /// every attempt was used up, or the retailer now refuses the look-up.
    PlacementUnconfirmed,
    /// The final click may have bought the order and the retailer cannot be asked
    /// whether it did (its recipe has no lookup phase).
    OrderProbablyPlaced,
}

impl ErrorType {
    pub const ALL: [ErrorType; 27] = [
        ErrorType::LoginFailed,
        ErrorType::ProductNotFound,
        ErrorType::ProductUnavailable,
        ErrorType::OutOfStock,
        ErrorType::InvalidVariant,
        ErrorType::InsufficientVariants,
        ErrorType::PurchaseLimitExceeded,
        ErrorType::ShippingAddressRefused,
        ErrorType::CheckoutRefused,
        ErrorType::PaymentDeclined,
        ErrorType::CheckoutBlocked,
        ErrorType::PriceChanged,
        ErrorType::RetailerError,
        ErrorType::TemporarilyUnavailable,
        ErrorType::DuplicatePurchase,
        ErrorType::TrackingUnavailable,
        ErrorType::CancellationUnsupported,
        ErrorType::MaxPriceExceeded,
        ErrorType::Expired,
        ErrorType::GiftOptionUnavailable,
        ErrorType::HandlingTimeExceeded,
        ErrorType::NoRetailerAccount,
        ErrorType::RetailerAccountUnavailable,
        ErrorType::UnknownRetailer,
        ErrorType::RetailerUnavailable,
        ErrorType::PlacementUnconfirmed,
        ErrorType::OrderProbablyPlaced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::LoginFailed => "login_failed",
            ErrorType::ProductNotFound => "product_not_found",
            ErrorType::ProductUnavailable => "product_unavailable",
            ErrorType::OutOfStock => "out_of_stock",
            ErrorType::InvalidVariant => "invalid_variant",
            ErrorType::InsufficientVariants => "insufficient_variants",
            ErrorType::PurchaseLimitExceeded => "purchase_limit_exceeded",
            ErrorType::ShippingAddressRefused => "shipping_address_refused",
            ErrorType::CheckoutRefused => "checkout_refused",
            ErrorType::PaymentDeclined => "payment_declined",
            ErrorType::CheckoutBlocked => "checkout_blocked",
            ErrorType::PriceChanged => "price_changed",
            ErrorType::RetailerError => "retailer_error",
            ErrorType::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorType::DuplicatePurchase => "duplicate_purchase",
            ErrorType::TrackingUnavailable => "tracking_unavailable",
            ErrorType::CancellationUnsupported => "cancellation_unsupported",
            ErrorType::MaxPriceExceeded => "max_price_exceeded",
            ErrorType::Expired => "expired",
            ErrorType::GiftOptionUnavailable => "gift_option_unavailable",
            ErrorType::HandlingTimeExceeded => "handling_time_exceeded",
            ErrorType::NoRetailerAccount => "no_retailer_account",
            ErrorType::RetailerAccountUnavailable => "retailer_account_unavailable",
            ErrorType::UnknownRetailer => "unknown_retailer",
            ErrorType::RetailerUnavailable => "retailer_unavailable",
            ErrorType::PlacementUnconfirmed => "placement_unconfirmed",
            ErrorType::OrderProbablyPlaced => "order_probably_placed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    /// Why the item was not bought (a `skipped` item): an `ErrorType`.
    #[schema(required = false, value_type = Option<String>)]
    pub error_type: Option<ErrorType>,
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
    #[schema(required = false)]
    pub handling_days_max: Option<i64>,
    #[schema(required = false, default = false)]
    pub is_gift: bool,
    #[schema(required = false)]
    pub gift_message: Option<String>,
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
    /// The retailer's own order numbers, once placed.
    #[schema(required = false, default = json!([]))]
    pub merchant_order_ids: Vec<String>,
    /// The end-customer e-mails, when the order asked for them.
    #[schema(required = false)]
    pub customer_notifications: Option<NotificationStatus>,
    /// The rules the order asked to relax, and what was relaxed.
    #[schema(required = false)]
    pub fulfillment: OrderFulfillment,
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
    pub po_number: Option<String>,
    pub options: OrderOptions,
}

impl Order {
    /// The options the order was created with, read back from its fields.
    pub fn options(&self) -> OrderOptions {
        OrderOptions {
            is_gift: self.is_gift,
            gift_message: self.gift_message.clone(),
            handling_days_max: self.handling_days_max,
            fulfillment: FulfillmentModes {
                gift: self.fulfillment.gift,
                items: self.fulfillment.items,
                quantity: self.fulfillment.quantity,
            },
            notify_email: self
                .customer_notifications
                .as_ref()
                .map(|n| n.email.clone()),
        }
    }

    /// Fills `screenshots` with the URLs of the order's screenshots, and its returns'
    /// `label_urls`, under `base` (the server's public address, without a trailing
    /// slash).
    pub fn link_screenshots(&mut self, base: &str) {
        self.screenshots = self
            .screenshot_names
            .iter()
            .map(|name| screenshot_url(base, self.id, name))
            .collect();
        for ret in &mut self.returns {
            ret.label_urls = ret
                .label_names
                .iter()
                .map(|name| crate::returns::label_url(base, ret.id, name))
                .collect();
        }
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
    #[serde(default, deserialize_with = "stored_error_type")]
    pub error_type: Option<ErrorType>,
    /// A sentence a person can act on.
    pub error: Option<String>,
    /// What the retailer charged, or quoted when the cap refused it.
    pub price_components: Option<PriceComponents>,
    #[serde(default)]
    pub merchant_order_ids: Vec<MerchantOrder>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub estimated_delivery: Option<Timestamp>,
}

/// Reads a stored `job_result.error_type`. A name this version does not know (one a
/// newer version wrote before a downgrade) reads as none, and the order's `error` still
/// says why it failed: an order must stay readable, and one unknown name must not make
/// a whole list of orders fail to load.
fn stored_error_type<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ErrorType>, D::Error> {
    let name = Option::<String>::deserialize(deserializer)?;
    Ok(name.and_then(|name| {
        let known = ErrorType::parse(&name);
        if known.is_none() {
            tracing::warn!(error_type = %name, "a stored job_result has an unknown error_type; it reads as none");
        }
        known
    }))
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_error_type_is_listed_once_and_named_as_serde_names_it() {
        let distinct: HashSet<ErrorType> = ErrorType::ALL.into_iter().collect();
        assert_eq!(distinct.len(), ErrorType::ALL.len());
        for error_type in ErrorType::ALL {
            let name = error_type.as_str();
            assert_eq!(serde_json::to_value(error_type).unwrap(), name);
            assert_eq!(
                serde_json::from_value::<ErrorType>(name.into()).unwrap(),
                error_type
            );
            assert_eq!(ErrorType::parse(name), Some(error_type));
            assert_eq!(error_type.to_string(), name);
        }
        assert_eq!(ErrorType::parse("sold_out"), None);
    }

    #[test]
    fn stored_job_results_read_with_known_unknown_and_missing_error_types() {
        let read = |stored: serde_json::Value| {
            serde_json::from_value::<JobResult>(stored)
                .unwrap()
                .error_type
        };
        let failed = |error_type: serde_json::Value| {
            serde_json::json!({
                "success": false,
                "error_type": error_type,
                "error": "why",
                "price_components": null,
                "merchant_order_ids": [],
                "estimated_delivery": null,
            })
        };
        assert_eq!(
            read(failed("max_price_exceeded".into())),
            Some(ErrorType::MaxPriceExceeded)
        );
        assert_eq!(read(failed(serde_json::Value::Null)), None);
        assert_eq!(read(failed("a_newer_error_type".into())), None);
        assert_eq!(read(serde_json::json!({"success": true})), None);
        // And it is written as the same name it is read from.
        let result = JobResult {
            error_type: Some(ErrorType::OutOfStock),
            ..JobResult::default()
        };
        assert_eq!(
            serde_json::to_value(&result).unwrap()["error_type"],
            "out_of_stock"
        );
    }
}
