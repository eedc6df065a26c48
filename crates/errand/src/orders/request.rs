//! `POST /orders` bodies: parsed from JSON into a [`NewOrder`], with every failing field
//! reported. Unknown fields are ignored, as the reference API does.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::address::Address;
use super::model::{Expiration, Variant};
use super::options::{self, CustomerNotificationsDoc, FulfillmentModes, OrderOptions};
use crate::validation::{
    Errors, Loc, Object, ValidationErrors, as_array, as_int, int_in_range, non_blank,
};

/// Most products one order may hold.
pub const MAX_PRODUCTS: usize = 50;
pub const MAX_QUANTITY: i64 = 100;
/// The highest accepted price cap: $1 billion, in cents.
pub const MAX_PRICE_LIMIT: i64 = 100_000_000_000;
pub const MAX_URL_LEN: usize = 2048;
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 36;
pub const MAX_SHORT_TEXT_LEN: usize = 100;
pub const MAX_DESCRIPTION_LEN: usize = 500;
/// Largest `metadata` object, measured as compact JSON.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// A validated order request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewOrder {
    pub products: Vec<NewProduct>,
    pub shipping_address: Address,
    pub max_price: i64,
    pub idempotency_key: Option<String>,
    pub retailer_credentials_id: Option<String>,
    pub metadata: Map<String, Value>,
    pub po_number: Option<String>,
    pub expiration: Option<Expiration>,
    /// Left out of the fingerprint when default, so that a request without options
    /// fingerprints as it did before options existed.
    #[serde(skip_serializing_if = "OrderOptions::is_default")]
    pub options: OrderOptions,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewProduct {
    pub url: String,
    pub quantity: i32,
    pub variant: Option<Vec<Variant>>,
}

impl NewOrder {
    pub fn parse(body: &Value) -> Result<NewOrder, ValidationErrors> {
        let mut errors = Errors::default();
        let Some(obj) = Object::new(body, Loc::body(), &mut errors) else {
            return Err(ValidationErrors::single(
                &Loc::body(),
                "model_attributes_type",
                "Input should be a valid dictionary or object to extract fields from",
            ));
        };

        let products = obj
            .required("products", &mut errors)
            .and_then(|v| parse_products(v, obj.loc("products"), &mut errors));
        let shipping_address = obj
            .required("shipping_address", &mut errors)
            .and_then(|v| Address::parse(v, obj.loc("shipping_address"), &mut errors));
        let max_price = obj.required("max_price", &mut errors).and_then(|v| {
            let loc = obj.loc("max_price");
            let cents = as_int(v, &loc, &mut errors)?;
            if cents <= 0 {
                errors.add(&loc, "greater_than", "Input should be greater than 0");
                None
            } else if cents > MAX_PRICE_LIMIT {
                errors.add(
                    &loc,
                    "less_than_equal",
                    format!("Input should be less than or equal to {MAX_PRICE_LIMIT}"),
                );
                None
            } else {
                Some(cents)
            }
        });
        let idempotency_key = obj
            .optional_str("idempotency_key", &mut errors)
            .and_then(|key| {
                non_blank(
                    key,
                    MAX_IDEMPOTENCY_KEY_LEN,
                    &obj.loc("idempotency_key"),
                    &mut errors,
                )
            });
        let retailer_credentials_id = obj
            .optional_str("retailer_credentials_id", &mut errors)
            .and_then(|id| {
                non_blank(
                    id,
                    MAX_SHORT_TEXT_LEN,
                    &obj.loc("retailer_credentials_id"),
                    &mut errors,
                )
            });
        let po_number = obj
            .optional_str("po_number", &mut errors)
            .and_then(|po| non_blank(po, MAX_SHORT_TEXT_LEN, &obj.loc("po_number"), &mut errors));
        let metadata = match obj.optional("metadata") {
            None => Some(Map::new()),
            Some(v) => parse_metadata(v, obj.loc("metadata"), &mut errors),
        };

        let expiration = match obj.optional("expiration") {
            None => Some(None),
            Some(v) => parse_expiration(v, obj.loc("expiration"), &mut errors).map(Some),
        };
        if let Some(payment) = obj.optional("payment") {
            check_payment(payment, obj.loc("payment"), &mut errors);
        }
        let options = options::parse(&obj, &mut errors);

        match (products, shipping_address, max_price, metadata, expiration) {
            (
                Some(products),
                Some(shipping_address),
                Some(max_price),
                Some(metadata),
                Some(expiration),
            ) if errors.is_empty() => Ok(NewOrder {
                products,
                shipping_address,
                max_price,
                idempotency_key,
                retailer_credentials_id,
                metadata,
                po_number,
                expiration,
                options,
            }),
            _ => Err(errors.into_rejection()),
        }
    }

    /// A digest of the normalised request: equal for requests that mean the same order,
    /// whatever their key order, whitespace or ignored fields.
    pub fn fingerprint(&self) -> Vec<u8> {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        Sha256::digest(&canonical).to_vec()
    }
}

/// The contract's payment modes.
const PAYMENT_MODES: [&str; 3] = ["wallet", "card", "connect"];

/// `payment`: Errand pays with the retailer account's own saved payment method, which is
/// the contract's default (`wallet`, or no `payment` at all). A card held or charged
/// through a payment processor (`card`, `connect`) is not something Errand does, so it
/// is refused rather than ignored: the order would not be paid as asked.
fn check_payment(value: &Value, loc: Loc, errors: &mut Errors) {
    let Some(obj) = Object::new(value, loc, errors) else {
        return;
    };
    obj.refuse_unknown(&["mode", "payment_method", "customer", "margin"], errors);
    let Some(mode) = obj.optional_str("mode", errors) else {
        return;
    };
    let mode_loc = obj.loc("mode");
    if !PAYMENT_MODES.contains(&mode) {
        errors.add(
            &mode_loc,
            "enum",
            format!(
                "Input should be {}",
                PAYMENT_MODES.map(|m| format!("'{m}'")).join(", ")
            ),
        );
    } else if mode != "wallet" {
        errors.add(
            &mode_loc,
            "payment_mode_unsupported",
            format!(
                "Errand pays with the retailer account's own saved payment method; payment mode '{mode}' is not available (omit payment, or use 'wallet')"
            ),
        );
    }
}

fn parse_products(value: &Value, loc: Loc, errors: &mut Errors) -> Option<Vec<NewProduct>> {
    let items = as_array(value, &loc, errors)?;
    if items.is_empty() {
        errors.add(
            &loc,
            "too_short",
            "List should have at least 1 item after validation, not 0",
        );
        return None;
    }
    if items.len() > MAX_PRODUCTS {
        errors.add(
            &loc,
            "too_long",
            format!(
                "List should have at most {MAX_PRODUCTS} items after validation, not {}",
                items.len()
            ),
        );
        return None;
    }
    let parsed: Vec<Option<NewProduct>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_product(item, loc.at(i), errors))
        .collect();
    parsed.into_iter().collect()
}

fn parse_product(value: &Value, loc: Loc, errors: &mut Errors) -> Option<NewProduct> {
    let obj = Object::new(value, loc, errors)?;
    let url = obj
        .required_str("url", errors)
        .and_then(|url| parse_url(url, obj.loc("url"), errors));
    let quantity = match obj.optional("quantity") {
        None => Some(1),
        Some(v) => int_in_range(v, 1, MAX_QUANTITY, &obj.loc("quantity"), errors),
    };
    let variant = match obj.optional("variant") {
        None => Some(None),
        Some(v) => parse_variants(v, obj.loc("variant"), errors).map(Some),
    };
    Some(NewProduct {
        url: url?,
        quantity: quantity? as i32,
        variant: variant?,
    })
}

fn parse_url(text: &str, loc: Loc, errors: &mut Errors) -> Option<String> {
    let text = text.trim();
    if text.len() > MAX_URL_LEN {
        errors.add(
            &loc,
            "string_too_long",
            format!("String should have at most {MAX_URL_LEN} characters"),
        );
        return None;
    }
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
            Some(url.to_string())
        }
        Ok(_) => {
            errors.add(&loc, "url_scheme", "URL scheme should be 'http' or 'https'");
            None
        }
        Err(e) => {
            errors.add(
                &loc,
                "url_parsing",
                format!("Input should be a valid URL, {e}"),
            );
            None
        }
    }
}

fn parse_variants(value: &Value, loc: Loc, errors: &mut Errors) -> Option<Vec<Variant>> {
    let items = as_array(value, &loc, errors)?;
    let parsed: Vec<Option<Variant>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let obj = Object::new(item, loc.at(i), errors)?;
            let mut field = |name: &str| {
                let text = obj.required_str(name, errors)?;
                non_blank(text, MAX_SHORT_TEXT_LEN, &obj.loc(name), errors)
            };
            let label = field("label");
            let value = field("value");
            Some(Variant {
                label: label?,
                value: value?,
            })
        })
        .collect();
    parsed.into_iter().collect()
}

/// `{timestamp, description}`: the timestamp (Unix seconds) is required, the
/// description optional.
fn parse_expiration(value: &Value, loc: Loc, errors: &mut Errors) -> Option<Expiration> {
    let obj = Object::new(value, loc, errors)?;
    let timestamp = obj.required("timestamp", errors).and_then(|v| {
        // Between 2000-01-01 and 9999-12-31: anything else is a unit mistake.
        int_in_range(
            v,
            946_684_800,
            253_402_300_799,
            &obj.loc("timestamp"),
            errors,
        )
    });
    let description = obj
        .optional_str("description", errors)
        .and_then(|d| non_blank(d, MAX_DESCRIPTION_LEN, &obj.loc("description"), errors));
    Some(Expiration {
        timestamp: timestamp?,
        description,
    })
}

fn parse_metadata(value: &Value, loc: Loc, errors: &mut Errors) -> Option<Map<String, Value>> {
    let Value::Object(map) = value else {
        errors.add(&loc, "dict_type", "Input should be a valid dictionary");
        return None;
    };
    let size = serde_json::to_vec(map)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_METADATA_BYTES {
        errors.add(
            &loc,
            "too_long",
            format!("Metadata should be at most {MAX_METADATA_BYTES} bytes of JSON, not {size}"),
        );
        return None;
    }
    if contains_nul(value) {
        errors.add(
            &loc,
            "string_invalid_character",
            "Metadata must not contain NUL characters",
        );
        return None;
    }
    Some(map.clone())
}

fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// Request model for creating a new order.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = OrderCreate)]
pub struct OrderCreateDoc {
    /// Between 1 and 50 products, all from the same retailer.
    #[schema(min_items = 1, max_items = 50)]
    products: Vec<OrderProductDoc>,
    shipping_address: Address,
    /// Maximum price (in cents) allowed for an order before it is finalized.
    #[schema(minimum = 1, maximum = 100_000_000_000_i64)]
    max_price: i64,
    /// Optional idempotency key to prevent duplicate orders. If not provided, one will be
    /// generated.
    #[schema(min_length = 1, max_length = 36)]
    idempotency_key: Option<String>,
    /// Optional short ID (e.g., 'zn_acct_XXXXXXXX') of specific retailer credentials to use
    /// for this order. If not provided, credentials will be selected automatically.
    #[schema(max_length = 100)]
    retailer_credentials_id: Option<String>,
    /// Optional metadata to attach to the order. Can contain arbitrary key-value pairs.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
    /// Optional purchase order number for the order.
    #[schema(max_length = 100)]
    po_number: Option<String>,
    /// If the order is not placed by `timestamp` (Unix seconds), it fails with
    /// `error_type: expired` and `description` as its message.
    expiration: Option<ExpirationDoc>,
    /// The longest a seller may take to ship (handling days): offers that ship later are
    /// not bought. Omit or send null for no limit.
    #[schema(minimum = 0, maximum = 365)]
    handling_days_max: Option<i64>,
    /// A gift: the retailer's gift option is chosen (no prices on the packing slip). If
    /// the retailer offers none, the order fails with `gift_option_unavailable` unless
    /// `fulfillment.gift` is `best_effort`.
    #[schema(default = false, required = false)]
    is_gift: bool,
    /// A note for the recipient, entered in the retailer's gift-message field. Requires
    /// `is_gift: true`.
    #[schema(min_length = 1, max_length = 240)]
    gift_message: Option<String>,
    /// Errand pays with the retailer account's own saved payment method: omit this, or
    /// send `{"mode": "wallet"}`.
    payment: Option<PaymentDoc>,
    /// E-mail the end customer when the order is placed, shipped and delivered.
    customer_notifications: Option<CustomerNotificationsDoc>,
    /// Rules that may be relaxed (`best_effort`); anything unset stays strict. What was
    /// relaxed is reported in the order's `fulfillment.concessions`. `max_price` is
    /// never relaxed.
    fulfillment: Option<FulfillmentModes>,
}

/// How the order is paid.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = OrderPayment)]
pub struct PaymentDoc {
    /// `wallet` (the retailer account's saved payment method) is the one mode Errand
    /// pays with; `card` and `connect` are refused with a 422.
    #[schema(pattern = "^(wallet|card|connect)$")]
    mode: Option<String>,
}

/// When an order stops being worth placing.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = OrderExpiryCreate)]
pub struct ExpirationDoc {
    #[schema(minimum = 946_684_800_i64, maximum = 253_402_300_799_i64)]
    timestamp: i64,
    #[schema(min_length = 1, max_length = 500)]
    description: Option<String>,
}

/// Product item for an order.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = OrderProduct)]
pub struct OrderProductDoc {
    /// An absolute http(s) URL of the product page.
    #[schema(example = "https://www.amazon.com/dp/B07JGBW826", max_length = 2048)]
    url: String,
    #[schema(minimum = 1, maximum = 100, default = 1, required = false)]
    quantity: i64,
    /// Product variants to select (e.g., color, size)
    variant: Option<Vec<Variant>>,
}
