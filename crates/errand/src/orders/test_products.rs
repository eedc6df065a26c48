//! `GET /orders/test-products`: the demo retailer's test products and what an order for
//! each ends in, so integrations can exercise every outcome with a test key.

use serde::Serialize;
use utoipa::ToSchema;

use super::model::{ErrorType, OrderStatus};

/// A product with a fixed outcome.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TestProduct {
    pub product_id: &'static str,
    /// The product's URL at the sandbox retailer (null when none is configured).
    pub url: Option<String>,
    pub behavior: &'static str,
    /// The status an order for it (alone, with a sufficient `max_price`) ends in.
    pub outcome_status: OrderStatus,
    /// The `job_result.error_type` of a failed order.
    pub outcome_error_type: Option<ErrorType>,
    pub description: &'static str,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TestProductList {
    pub test_products: Vec<TestProduct>,
}

const PRODUCTS: &[(&str, &str, OrderStatus, Option<ErrorType>, &str)] = &[
    (
        "B0TEST0001",
        "out_of_stock",
        OrderStatus::OrderFailed,
        Some(ErrorType::OutOfStock),
        "Always out of stock.",
    ),
    (
        "B0TEST0002",
        "price_rise",
        OrderStatus::OrderFailed,
        Some(ErrorType::MaxPriceExceeded),
        "The checkout total is $20.00 above the listed price: fails unless max_price covers it, and nothing is bought.",
    ),
    (
        "B0TEST0003",
        "slow_checkout",
        OrderStatus::OrderPlaced,
        None,
        "Placing takes 3 seconds.",
    ),
    (
        "B0TEST0004",
        "intermittent_5xx",
        OrderStatus::OrderPlaced,
        None,
        "The first attempt to place gets a 503; the retry succeeds (attempts: 2).",
    ),
    (
        "B0TEST0005",
        "payment_declined",
        OrderStatus::OrderFailed,
        Some(ErrorType::PaymentDeclined),
        "The card is declined.",
    ),
    (
        "B0TEST0006",
        "checkout_blocked",
        OrderStatus::OrderFailed,
        Some(ErrorType::CheckoutBlocked),
        "A bot check blocks the checkout.",
    ),
    (
        "B0TEST0007",
        "address_refused",
        OrderStatus::OrderFailed,
        Some(ErrorType::ShippingAddressRefused),
        "Every shipping address is refused.",
    ),
    (
        "B0TEST0008",
        "retailer_cancels",
        OrderStatus::CancelledByRetailer,
        None,
        "Placed, then cancelled by the retailer when it would ship.",
    ),
    (
        "B0TEST0009",
        "never_ships",
        OrderStatus::OrderPlaced,
        None,
        "Placed, never ships.",
    ),
    (
        "B0TEST0010",
        "needs_two_factor",
        OrderStatus::OrderFailed,
        Some(ErrorType::LoginFailed),
        "Needs two-factor sign-in: fails with an account without a TOTP secret, is placed with one.",
    ),
];

/// The list, with URLs at `sandbox_base_url`.
pub fn list(sandbox_base_url: Option<&str>) -> TestProductList {
    TestProductList {
        test_products: PRODUCTS
            .iter()
            .map(
                |(id, behavior, status, error_type, description)| TestProduct {
                    product_id: id,
                    url: sandbox_base_url
                        .map(|base| format!("{}/dp/{id}", base.trim_end_matches('/'))),
                    behavior,
                    outcome_status: *status,
                    outcome_error_type: *error_type,
                    description,
                },
            )
            .collect(),
    }
}
