//! An order's options beyond what to buy and where to send it: a gift, how long a seller
//! may take to ship, which rules may be relaxed (`fulfillment`), and whom to e-mail as it
//! progresses. Parsed from `POST /orders`, kept with the order, reported back on it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::model::ErrorType;
use crate::validation::{Errors, Loc, Object, as_bool, email_address, int_in_range, non_blank};

/// The longest gift message (the contract's limit).
pub const MAX_GIFT_MESSAGE_LEN: usize = 240;
/// The longest `handling_days_max` accepted: a year.
pub const MAX_HANDLING_DAYS: i64 = 365;

/// The options an order was created with. The default is an order without any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderOptions {
    #[serde(default)]
    pub is_gift: bool,
    #[serde(default)]
    pub gift_message: Option<String>,
    #[serde(default)]
    pub handling_days_max: Option<i64>,
    #[serde(default)]
    pub fulfillment: FulfillmentModes,
    /// Whom to e-mail as the order progresses.
    #[serde(default)]
    pub notify_email: Option<String>,
}

impl OrderOptions {
    pub fn is_default(&self) -> bool {
        *self == OrderOptions::default()
    }
}

/// How hard to hold a rule: only ever loosened, so strict is the absence of a mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FulfillmentMode {
    BestEffort,
}

/// Which of the order's strict rules may be relaxed (`fulfillment` in `POST /orders`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = FulfillmentPreferences)]
pub struct FulfillmentModes {
    /// `best_effort`: if the retailer offers no gift option, place a normal order instead
    /// of failing with `gift_option_unavailable`. Requires `is_gift: true`.
    #[schema(required = false)]
    pub gift: Option<FulfillmentMode>,
    /// `best_effort`: an item that cannot be bought (not found, out of stock, no offer
    /// within `handling_days_max`, …) is skipped and the rest bought; its status becomes
    /// `skipped`. An order with nothing left still fails.
    #[schema(required = false)]
    pub items: Option<FulfillmentMode>,
    /// `best_effort`: if the retailer sells fewer units than asked (its stock or its
    /// per-order limit), buy what it sells instead of failing.
    #[schema(required = false)]
    pub quantity: Option<FulfillmentMode>,
}

/// Which rule a concession relaxed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Concern {
    Gift,
    Items,
    Quantity,
}

/// One rule that was relaxed while placing the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = FulfillmentConcession)]
pub struct Concession {
    pub concern: Concern,
    /// The `error_type` that would have failed a strict order.
    pub code: ErrorType,
    #[schema(required = false)]
    pub message: Option<String>,
    /// The order item it is about, if any.
    #[schema(required = false)]
    pub item_id: Option<Uuid>,
    #[schema(required = false)]
    pub url: Option<String>,
    #[schema(required = false)]
    pub requested_quantity: Option<i32>,
    #[schema(required = false)]
    pub fulfilled_quantity: Option<i32>,
}

/// `fulfillment` on an order: the modes it asked for and what was relaxed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = OrderFulfillment)]
pub struct OrderFulfillment {
    #[schema(required = false)]
    pub gift: Option<FulfillmentMode>,
    #[schema(required = false)]
    pub items: Option<FulfillmentMode>,
    #[schema(required = false)]
    pub quantity: Option<FulfillmentMode>,
    /// Every rule that was relaxed; empty when the order was bought exactly as asked.
    #[schema(required = false, default = json!([]))]
    pub concessions: Vec<Concession>,
}

impl OrderFulfillment {
    pub fn new(modes: FulfillmentModes, concessions: Vec<Concession>) -> OrderFulfillment {
        OrderFulfillment {
            gift: modes.gift,
            items: modes.items,
            quantity: modes.quantity,
            concessions,
        }
    }
}

/// Reads the options from a `POST /orders` body, recording every failing field.
pub fn parse(obj: &Object, errors: &mut Errors) -> OrderOptions {
    let is_gift = obj
        .optional("is_gift")
        .and_then(|v| as_bool(v, &obj.loc("is_gift"), errors))
        .unwrap_or(false);
    let gift_message = obj
        .optional_str("gift_message", errors)
        .and_then(|m| non_blank(m, MAX_GIFT_MESSAGE_LEN, &obj.loc("gift_message"), errors));
    if gift_message.is_some() && !is_gift {
        errors.add(
            &obj.loc("gift_message"),
            "gift_message_requires_gift",
            "A gift message needs is_gift: true",
        );
    }
    let handling_days_max = obj.optional("handling_days_max").and_then(|v| {
        int_in_range(
            v,
            0,
            MAX_HANDLING_DAYS,
            &obj.loc("handling_days_max"),
            errors,
        )
    });
    let fulfillment = obj
        .optional("fulfillment")
        .map(|v| parse_fulfillment(v, obj.loc("fulfillment"), errors))
        .unwrap_or_default();
    if fulfillment.gift.is_some() && !is_gift {
        errors.add(
            &obj.loc("fulfillment").at("gift"),
            "gift_mode_requires_gift",
            "fulfillment.gift relaxes a gift order's rule; it needs is_gift: true",
        );
    }
    let notify_email = obj.optional("customer_notifications").and_then(|v| {
        let loc = obj.loc("customer_notifications");
        let notifications = Object::new(v, loc, errors)?;
        notifications.refuse_unknown(&["email"], errors);
        let email = notifications.required_str("email", errors)?;
        email_address(email, &notifications.loc("email"), errors)
    });
    OrderOptions {
        is_gift,
        gift_message,
        handling_days_max,
        fulfillment,
        notify_email,
    }
}

/// `fulfillment`: unknown keys and modes are refused, so that a typo never silently
/// means "strict".
fn parse_fulfillment(value: &Value, loc: Loc, errors: &mut Errors) -> FulfillmentModes {
    let Some(obj) = Object::new(value, loc, errors) else {
        return FulfillmentModes::default();
    };
    obj.refuse_unknown(&["gift", "items", "quantity"], errors);
    let mode = |name: &str, errors: &mut Errors| match obj.optional_str(name, errors)? {
        "best_effort" => Some(FulfillmentMode::BestEffort),
        _ => {
            errors.add(&obj.loc(name), "enum", "Input should be 'best_effort'");
            None
        }
    };
    FulfillmentModes {
        gift: mode("gift", errors),
        items: mode("items", errors),
        quantity: mode("quantity", errors),
    }
}

/// `customer_notifications` on an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = CustomerNotificationStatus)]
pub struct NotificationStatus {
    pub email: String,
    /// True once an e-mail reached the recipient's mail server, false if the last one
    /// failed for good, null while none has been sent.
    #[schema(required = false)]
    pub delivered: Option<bool>,
    /// The e-mails sent so far: `order_placed`, `order_shipped`, `order_delivered`.
    #[schema(required = false, default = json!([]))]
    pub sent: Vec<String>,
}

/// Opt-in to e-mail the end customer as the order progresses.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = CustomerNotifications)]
pub struct CustomerNotificationsDoc {
    /// The end customer's e-mail address.
    #[schema(max_length = 254)]
    email: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parsed(body: Value) -> Result<OrderOptions, Vec<(Value, &'static str)>> {
        let mut errors = Errors::default();
        let obj = Object::new(&body, Loc::body(), &mut errors).unwrap();
        let options = parse(&obj, &mut errors);
        match errors.into_result() {
            Ok(()) => Ok(options),
            Err(e) => Err(e
                .detail
                .into_iter()
                .map(|f| (serde_json::to_value(&f.loc).unwrap(), f.kind))
                .collect()),
        }
    }

    #[test]
    fn every_option_is_read() {
        let options = parsed(json!({
            "is_gift": true, "gift_message": " Happy birthday! ", "handling_days_max": 3,
            "fulfillment": {"items": "best_effort", "quantity": "best_effort", "gift": "best_effort"},
            "customer_notifications": {"email": " ada@example.com "}
        }))
        .unwrap();
        assert_eq!(
            options,
            OrderOptions {
                is_gift: true,
                gift_message: Some("Happy birthday!".into()),
                handling_days_max: Some(3),
                fulfillment: FulfillmentModes {
                    gift: Some(FulfillmentMode::BestEffort),
                    items: Some(FulfillmentMode::BestEffort),
                    quantity: Some(FulfillmentMode::BestEffort),
                },
                notify_email: Some("ada@example.com".into()),
            }
        );
        assert!(
            parsed(json!({"fulfillment": {}, "handling_days_max": null}))
                .unwrap()
                .is_default()
        );
    }

    #[test]
    fn mistakes_are_named_by_field() {
        let errors = parsed(json!({
            "gift_message": "hi", "handling_days_max": -1,
            "fulfillment": {"items": "strict", "colour": "best_effort", "gift": "best_effort"},
            "customer_notifications": {"email": "not an address"}
        }))
        .unwrap_err();
        for expected in [
            (
                json!(["body", "gift_message"]),
                "gift_message_requires_gift",
            ),
            (json!(["body", "handling_days_max"]), "greater_than_equal"),
            (json!(["body", "fulfillment", "items"]), "enum"),
            (json!(["body", "fulfillment", "colour"]), "extra_forbidden"),
            (
                json!(["body", "fulfillment", "gift"]),
                "gift_mode_requires_gift",
            ),
            (
                json!(["body", "customer_notifications", "email"]),
                "value_error",
            ),
        ] {
            assert!(errors.contains(&expected), "{expected:?} not in {errors:?}");
        }
        let long = "x".repeat(MAX_GIFT_MESSAGE_LEN + 1);
        let errors = parsed(json!({"is_gift": true, "gift_message": long})).unwrap_err();
        assert_eq!(
            errors,
            [(json!(["body", "gift_message"]), "string_too_long")]
        );
    }
}
