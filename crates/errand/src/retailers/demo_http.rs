//! The demo retailer through its JSON API (`/api/...`, documented in the demo store's
//! README).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    CheckoutRequest, Credentials, Driver, DriverError, ProductInfo, Quote, RetailerLine,
    RetailerOrder, RetailerOrderStatus, RetailerReturn, RetailerReturnStatus, RetailerVariant,
    ReturnRequest, Session, Shipment,
};
use crate::orders::model::{ErrorType, PriceComponents, Variant};
use crate::storage::Timestamp;

/// Extra tries of a repeatable call after a temporary failure.
const IDEMPOTENT_RETRIES: usize = 2;

pub struct DemoHttpDriver {
    /// The retailer's configured name (for metrics).
    name: String,
    base: url::Url,
    client: reqwest::Client,
    /// Signed-in sessions, by a digest of the credentials (so only someone holding the
    /// same password reuses a session): signing in for every order is slow and looks
    /// like a bot to a store.
    sessions: Mutex<HashMap<[u8; 32], String>>,
}

impl DemoHttpDriver {
    pub fn new(name: &str, base: url::Url, timeout: Duration) -> anyhow::Result<DemoHttpDriver> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(DemoHttpDriver {
            name: name.to_string(),
            base,
            client,
            sessions: Mutex::default(),
        })
    }

    /// A call that may safely be repeated: temporary failures are retried a few times
    /// before the error reaches the engine (which would redo the whole checkout).
    async fn call(
        &self,
        method: Method,
        path: &str,
        session: Option<&Session>,
        body: Option<Value>,
    ) -> Result<Value, DriverError> {
        self.call_detailed(method, path, session, body)
            .await
            .map_err(|r| r.error)
    }

    /// [`call`](Self::call), keeping the store's `details` of a refusal.
    async fn call_detailed(
        &self,
        method: Method,
        path: &str,
        session: Option<&Session>,
        body: Option<Value>,
    ) -> Result<Value, Refusal> {
        let mut delay = Duration::from_millis(50);
        for _ in 0..IDEMPOTENT_RETRIES {
            match self
                .call_once_detailed(method.clone(), path, session, body.clone())
                .await
            {
                Err(Refusal {
                    error: DriverError::Transient { retry_after, .. },
                    ..
                }) if retry_after.is_none_or(|d| d <= Duration::from_secs(1)) => {
                    tokio::time::sleep(retry_after.unwrap_or(delay)).await;
                    delay *= 3;
                }
                other => return other,
            }
        }
        self.call_once_detailed(method, path, session, body).await
    }

    /// One request, never repeated (placing an order).
    async fn call_once(
        &self,
        method: Method,
        path: &str,
        session: Option<&Session>,
        body: Option<Value>,
    ) -> Result<Value, DriverError> {
        self.call_once_detailed(method, path, session, body)
            .await
            .map_err(|r| r.error)
    }

    async fn call_once_detailed(
        &self,
        method: Method,
        path: &str,
        session: Option<&Session>,
        body: Option<Value>,
    ) -> Result<Value, Refusal> {
        let url = self
            .base
            .join(path)
            .map_err(|e| DriverError::permanent(ErrorType::RetailerError, e.to_string()))
            .map_err(Refusal::from)?;
        let mut request = self.client.request(method, url);
        if let Some(session) = session {
            request = request.bearer_auth(&session.0);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let started = std::time::Instant::now();
        let response = request.send().await;
        metrics::histogram!("errand_retailer_call_seconds", "retailer" => self.name.clone(), "path" => route_label(path))
            .record(started.elapsed().as_secs_f64());
        let response = response
            .map_err(|e| {
                if e.is_connect() {
                    // Refused before anything was sent: nothing can have happened.
                    DriverError::Transient {
                        message: format!("cannot reach the store: {e}"),
                        retry_after: None,
                    }
                } else {
                    DriverError::Ambiguous {
                        message: format!("no answer from the store: {e}"),
                    }
                }
            })
            .map_err(Refusal::from)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let body: Value = match response.bytes().await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Err(e) => {
                return Err(Refusal::from(DriverError::Ambiguous {
                    message: format!("the store's answer was cut off: {e}"),
                }));
            }
        };
        if status.is_success() {
            return Ok(body);
        }
        let code = body["error"]["code"].as_str().unwrap_or("").to_string();
        if code == "sign_in_required"
            && let Some(session) = session
        {
            // The store forgot the session: sign in again on the next try.
            self.forget(session);
            return Err(Refusal::from(DriverError::Transient {
                message: "the store's session expired".into(),
                retry_after: Some(Duration::ZERO),
            }));
        }
        let message = body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("the store answered {status}"));
        Err(Refusal {
            error: classify(status, &code, message, retry_after),
            details: body["error"]["details"].clone(),
        })
    }
}

/// A failed call, with the store's `details` when it refused.
struct Refusal {
    error: DriverError,
    details: Value,
}

impl From<DriverError> for Refusal {
    fn from(error: DriverError) -> Refusal {
        Refusal {
            error,
            details: Value::Null,
        }
    }
}

impl Refusal {
    /// The refusal of one line of the checkout, when it is about that line's product,
    /// with how many units the store says it would sell.
    fn for_line(self, line: usize) -> DriverError {
        let available = self.details["available"]
            .as_i64()
            .and_then(|n| i32::try_from(n).ok());
        self.error.for_line(line, available)
    }
}

fn session_key(credentials: &Credentials) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for part in [
        credentials.email.as_str(),
        credentials.password.as_str(),
        credentials.totp_secret.as_deref().unwrap_or(""),
    ] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    digest.finalize().into()
}

impl DemoHttpDriver {
    fn forget(&self, session: &Session) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.retain(|_, token| *token != session.0);
        }
    }
}

/// A low-cardinality label for a store path.
fn route_label(path: &str) -> &'static str {
    match path {
        p if p.starts_with("api/session") => "session",
        p if p.starts_with("api/cart") => "cart",
        p if p.starts_with("api/checkout/quote") => "quote",
        p if p.starts_with("api/checkout/place") => "place",
        p if p.starts_with("api/orders") => "orders",
        _ => "other",
    }
}

/// Maps the store's error codes onto Errand's `error_type`s.
fn classify(
    status: StatusCode,
    code: &str,
    message: String,
    retry_after: Option<Duration>,
) -> DriverError {
    let permanent = |error_type| DriverError::Permanent {
        error_type,
        message: message.clone(),
    };
    match code {
        "price_changed" => DriverError::PriceChanged,
        "invalid_credentials" => permanent(ErrorType::LoginFailed),
        "totp_required" | "invalid_totp" => permanent(ErrorType::LoginFailed),
        "out_of_stock" => permanent(ErrorType::OutOfStock),
        "invalid_variant" => permanent(ErrorType::InvalidVariant),
        "insufficient_variants" => permanent(ErrorType::InsufficientVariants),
        "product_not_found" => permanent(ErrorType::ProductNotFound),
        "invalid_offer" => permanent(ErrorType::ProductUnavailable),
        "purchase_limit_exceeded" => permanent(ErrorType::PurchaseLimitExceeded),
        "payment_declined" => permanent(ErrorType::PaymentDeclined),
        "checkout_blocked" => permanent(ErrorType::CheckoutBlocked),
        "shipping_address_refused" | "address_invalid" => {
            permanent(ErrorType::ShippingAddressRefused)
        }
        "gift_option_unavailable" => permanent(ErrorType::GiftOptionUnavailable),
        "gift_message_too_long" | "buyer_reference_too_long" | "po_number_too_long" => {
            permanent(ErrorType::CheckoutRefused)
        }
        // The quote filled the cart: another session of the account emptied it since.
        "cart_empty" => DriverError::Transient {
            message,
            retry_after: None,
        },
        _ if status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT =>
        {
            DriverError::Transient {
                message,
                retry_after,
            }
        }
        _ if status == StatusCode::UNAUTHORIZED => permanent(ErrorType::LoginFailed),
        _ => DriverError::Permanent {
            error_type: ErrorType::RetailerError,
            message: format!("{message} ({status}, {code:?})"),
        },
    }
}

#[derive(Deserialize)]
struct StoreTotals {
    subtotal: i64,
    shipping: i64,
    tax: i64,
    discount: i64,
    total: i64,
    #[serde(default = "usd")]
    currency: String,
    delivery_days: Option<i64>,
}

fn usd() -> String {
    "USD".into()
}

impl StoreTotals {
    fn price(&self) -> PriceComponents {
        PriceComponents {
            subtotal: self.subtotal,
            shipping: self.shipping,
            tax: self.tax,
            discount: self.discount,
            total: self.total,
            currency: self.currency.clone(),
        }
    }
}

#[derive(Deserialize)]
struct StoreShipment {
    carrier: String,
    tracking_number: String,
    skus: Vec<String>,
    delivered_at: Option<String>,
}

#[derive(Deserialize)]
struct StoreLine {
    product_id: String,
    sku: String,
}

#[derive(Deserialize)]
struct StoreOrder {
    id: String,
    status: String,
    subtotal: i64,
    shipping: i64,
    tax: i64,
    discount: i64,
    total: i64,
    placed_at: String,
    estimated_delivery: Option<String>,
    lines: Vec<StoreLine>,
    #[serde(default)]
    shipments: Vec<StoreShipment>,
}

fn malformed(what: &str, e: impl std::fmt::Display) -> DriverError {
    DriverError::Transient {
        message: format!("the store's {what} could not be read: {e}"),
        retry_after: None,
    }
}

impl StoreOrder {
    fn into_order(self) -> Result<RetailerOrder, DriverError> {
        let status = match self.status.as_str() {
            "placed" => RetailerOrderStatus::Placed,
            "shipped" => RetailerOrderStatus::Shipped,
            "delivered" => RetailerOrderStatus::Delivered,
            "cancelled" => RetailerOrderStatus::Cancelled,
            other => return Err(malformed("order", format!("unknown status {other:?}"))),
        };
        Ok(RetailerOrder {
            merchant_order_id: self.id,
            status,
            price: PriceComponents {
                subtotal: self.subtotal,
                shipping: self.shipping,
                tax: self.tax,
                discount: self.discount,
                total: self.total,
                currency: usd(),
            },
            placed_at: Timestamp::parse(&self.placed_at).unwrap_or_else(Timestamp::now),
            estimated_delivery: self
                .estimated_delivery
                .as_deref()
                .and_then(Timestamp::parse),
            lines: self
                .lines
                .into_iter()
                .map(|l| RetailerLine {
                    product_id: l.product_id,
                    sku: l.sku,
                })
                .collect(),
            shipments: self
                .shipments
                .into_iter()
                .map(|s| Shipment {
                    carrier: s.carrier,
                    tracking_number: s.tracking_number,
                    skus: s.skus,
                    delivered: s.delivered_at.is_some(),
                })
                .collect(),
        })
    }
}

fn order_from(body: Value) -> Result<RetailerOrder, DriverError> {
    serde_json::from_value::<StoreOrder>(body)
        .map_err(|e| malformed("order", e))?
        .into_order()
}

/// The quote must be for exactly the order's quantities (a retried add could have
/// doubled a line): otherwise the checkout is built again on the next attempt.
fn check_lines(
    driver: &DemoHttpDriver,
    checkout: &CheckoutRequest,
    lines: &Value,
) -> Result<(), DriverError> {
    let mut wanted: BTreeMap<String, i64> = BTreeMap::new();
    for line in &checkout.lines {
        let id = url::Url::parse(&line.url)
            .ok()
            .and_then(|u| driver.product_id(&u))
            .unwrap_or_default();
        *wanted.entry(id).or_default() += i64::from(line.quantity);
    }
    let mut quoted: BTreeMap<String, i64> = BTreeMap::new();
    for line in lines.as_array().map(Vec::as_slice).unwrap_or_default() {
        let id = line["product_id"].as_str().unwrap_or_default().to_string();
        *quoted.entry(id).or_default() += line["quantity"].as_i64().unwrap_or(0);
    }
    if wanted != quoted {
        return Err(DriverError::Transient {
            message: format!("the store's cart {quoted:?} does not match the order {wanted:?}"),
            retry_after: None,
        });
    }
    Ok(())
}

fn checkout_body(checkout: &CheckoutRequest) -> Value {
    json!({
        "shipping_address": checkout.shipping_address,
        "buyer_reference": checkout.reference,
        "gift": checkout.gift.is_some(),
        "gift_message": checkout.gift.as_ref().and_then(|g| g.message.as_deref()),
        "po_number": checkout.po_number,
    })
}

/// The offer to buy when the order limits handling days: the store's own choice (the
/// buy box) if it ships in time, else the cheapest new one that does.
fn offer_within(product: &Value, days: i64) -> Option<String> {
    let offers = product["offers"].as_array()?;
    let in_time = |o: &&Value| o["handling_days"].as_i64().is_some_and(|d| d <= days);
    let buy_box = product["buy_box_offer_id"].as_str();
    offers
        .iter()
        .filter(in_time)
        .find(|o| o["offer_id"].as_str() == buy_box)
        .or_else(|| {
            offers
                .iter()
                .filter(in_time)
                .filter(|o| o["condition"].as_str() == Some("new"))
                .min_by_key(|o| o["price_delta_cents"].as_i64().unwrap_or(0))
        })
        .and_then(|o| o["offer_id"].as_str())
        .map(str::to_string)
}

#[async_trait]
impl Driver for DemoHttpDriver {
    fn product_id(&self, url: &url::Url) -> Option<String> {
        let segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
        match segments.as_slice() {
            ["dp", id] | [_, "dp", id] if !id.is_empty() => Some(id.to_string()),
            _ => None,
        }
    }

    async fn product(&self, url: &url::Url) -> Result<ProductInfo, DriverError> {
        let id = self.product_id(url).ok_or_else(|| {
            DriverError::permanent(
                ErrorType::ProductNotFound,
                format!("{url} is not a product page"),
            )
        })?;
        let answer = self
            .call(Method::GET, &format!("api/products/{id}"), None, None)
            .await?;
        let variants = answer["variants"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|v| {
                let mut options: Vec<Variant> = v["options"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(label, value)| Variant {
                        label: label.clone(),
                        value: value.as_str().unwrap_or_default().to_string(),
                    })
                    .collect();
                options.sort_by(|a, b| a.label.cmp(&b.label));
                RetailerVariant {
                    options,
                    price: v["price"].as_i64().unwrap_or(0),
                    in_stock: v["in_stock"].as_bool().unwrap_or(false),
                }
            })
            .collect();
        Ok(ProductInfo {
            product_id: id,
            title: answer["title"].as_str().unwrap_or_default().to_string(),
            currency: answer["currency"].as_str().unwrap_or("USD").to_string(),
            variants,
        })
    }

    async fn sign_in(&self, credentials: &Credentials) -> Result<Session, DriverError> {
        let key = session_key(credentials);
        if let Some(token) = self.sessions.lock().ok().and_then(|s| s.get(&key).cloned()) {
            return Ok(Session(token));
        }
        let totp = match &credentials.totp_secret {
            Some(secret) => Some(super::totp::current_code(secret).ok_or_else(|| {
                DriverError::permanent(
                    ErrorType::LoginFailed,
                    "the account's TOTP secret is not valid base32",
                )
            })?),
            None => None,
        };
        let body =
            json!({"email": credentials.email, "password": credentials.password, "totp": totp});
        let answer = self
            .call(Method::POST, "api/session", None, Some(body))
            .await?;
        let token = answer["token"]
            .as_str()
            .ok_or_else(|| malformed("sign-in answer", "no token"))?
            .to_string();
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(key, token.clone());
        }
        Ok(Session(token))
    }

    async fn quote(
        &self,
        session: &Session,
        checkout: &CheckoutRequest,
    ) -> Result<Quote, DriverError> {
        self.call(Method::DELETE, "api/cart", Some(session), None)
            .await?;
        for (index, line) in checkout.lines.iter().enumerate() {
            let refused = |error_type, message: String| DriverError::LineRefused {
                line: index,
                error_type,
                message,
                available: None,
            };
            let product_id = url::Url::parse(&line.url)
                .ok()
                .and_then(|url| self.product_id(&url))
                .ok_or_else(|| {
                    refused(
                        ErrorType::ProductNotFound,
                        format!("{} is not a product page", line.url),
                    )
                })?;
            let offer_id = match checkout.handling_days_max {
                None => None,
                Some(days) => {
                    let product = self
                        .call_detailed(
                            Method::GET,
                            &format!("api/products/{product_id}"),
                            None,
                            None,
                        )
                        .await
                        .map_err(|r| r.for_line(index))?;
                    let offer = offer_within(&product, days).ok_or_else(|| {
                        refused(
                            ErrorType::HandlingTimeExceeded,
                            format!("No seller of {product_id} ships within {days} handling days"),
                        )
                    })?;
                    Some(offer)
                }
            };
            let body = json!({
                "product_id": product_id,
                "quantity": line.quantity,
                "variant": line.variant.clone().unwrap_or_default(),
                "offer_id": offer_id,
            });
            self.call_detailed(Method::POST, "api/cart/items", Some(session), Some(body))
                .await
                .map_err(|r| r.for_line(index))?;
        }
        let answer = self
            .call(
                Method::POST,
                "api/checkout/quote",
                Some(session),
                Some(checkout_body(checkout)),
            )
            .await?;
        check_lines(self, checkout, &answer["lines"])?;
        let totals: StoreTotals =
            serde_json::from_value(answer["totals"].clone()).map_err(|e| malformed("quote", e))?;
        Ok(Quote {
            price: totals.price(),
            delivery_days: totals.delivery_days,
        })
    }

    async fn place(
        &self,
        session: &Session,
        checkout: &CheckoutRequest,
        expected_total: i64,
        send_by: Timestamp,
    ) -> Result<RetailerOrder, DriverError> {
        let mut body = checkout_body(checkout);
        body["expected_total"] = json!(expected_total);
        if let Some(why) = super::too_late(send_by) {
            // Certainly not placed: the request was never sent.
            return Err(DriverError::Transient {
                message: format!("{}: {why}", self.name),
                retry_after: None,
            });
        }
        let answer = self
            .call_once(
                Method::POST,
                "api/checkout/place",
                Some(session),
                Some(body),
            )
            .await?;
        order_from(answer["order"].clone())
    }

    async fn find_by_reference(
        &self,
        session: &Session,
        reference: &str,
    ) -> Result<Option<RetailerOrder>, DriverError> {
        let mut url = self
            .base
            .join("api/orders")
            .map_err(|e| DriverError::permanent(ErrorType::RetailerError, e.to_string()))?;
        url.query_pairs_mut().append_pair("reference", reference);
        let path = format!("api/orders?{}", url.query().unwrap_or_default());
        let answer = self.call(Method::GET, &path, Some(session), None).await?;
        let orders = answer["orders"].as_array().cloned().unwrap_or_default();
        match orders.len() {
            0 => Ok(None),
            1 => order_from(orders[0].clone()).map(Some),
            n => Err(DriverError::permanent(
                ErrorType::DuplicatePurchase,
                format!("the store holds {n} orders with reference {reference}"),
            )),
        }
    }

    async fn order(
        &self,
        session: &Session,
        merchant_order_id: &str,
    ) -> Result<RetailerOrder, DriverError> {
        let answer = self
            .call(
                Method::GET,
                &format!("api/orders/{merchant_order_id}"),
                Some(session),
                None,
            )
            .await?;
        order_from(answer["order"].clone())
    }

    fn takes_returns(&self) -> bool {
        true
    }

    async fn request_return(
        &self,
        session: &Session,
        request: &ReturnRequest,
    ) -> Result<RetailerReturn, DriverError> {
        let lines: Vec<Value> = request
            .lines
            .iter()
            .map(|l| json!({"sku": l.sku, "quantity": l.quantity}))
            .collect();
        // Not repeated on its own: a lost answer is settled by looking the reference up.
        let answer = self
            .call_once(
                Method::POST,
                &format!("api/orders/{}/returns", request.merchant_order_id),
                Some(session),
                Some(
                    json!({"reason": request.reason, "reference": request.reference,
                            "lines": lines, "notes": request.notes}),
                ),
            )
            .await?;
        return_from(&answer["return"])
    }

    async fn find_return(
        &self,
        session: &Session,
        reference: &str,
    ) -> Result<Option<RetailerReturn>, DriverError> {
        let mut url = self
            .base
            .join("api/returns")
            .map_err(|e| DriverError::permanent(ErrorType::RetailerError, e.to_string()))?;
        url.query_pairs_mut().append_pair("reference", reference);
        let path = format!("api/returns?{}", url.query().unwrap_or_default());
        let answer = self.call(Method::GET, &path, Some(session), None).await?;
        match answer["returns"].as_array().map(Vec::as_slice) {
            Some([]) | None => Ok(None),
            Some([found]) => return_from(found).map(Some),
            Some(many) => Err(DriverError::permanent(
                ErrorType::RetailerError,
                format!(
                    "the store holds {} returns with reference {reference}",
                    many.len()
                ),
            )),
        }
    }

    async fn get_return(
        &self,
        session: &Session,
        merchant_return_id: &str,
    ) -> Result<RetailerReturn, DriverError> {
        let answer = self
            .call(
                Method::GET,
                &format!("api/returns/{merchant_return_id}"),
                Some(session),
                None,
            )
            .await?;
        return_from(&answer["return"])
    }

    async fn return_label(&self, session: &Session, url: &str) -> Result<Vec<u8>, DriverError> {
        let url = self
            .base
            .join(url)
            .map_err(|e| DriverError::permanent(ErrorType::RetailerError, e.to_string()))?;
        let response = self
            .client
            .get(url)
            .bearer_auth(&session.0)
            .send()
            .await
            .map_err(|e| DriverError::Transient {
                message: format!("cannot fetch the return label: {e}"),
                retry_after: None,
            })?;
        if !response.status().is_success() {
            return Err(DriverError::Transient {
                message: format!(
                    "the store answered {} for the return label",
                    response.status()
                ),
                retry_after: None,
            });
        }
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| DriverError::Transient {
                message: format!("the return label was cut off: {e}"),
                retry_after: None,
            })
    }

    async fn cancel(&self, session: &Session, merchant_order_id: &str) -> Result<(), DriverError> {
        self.call(
            Method::POST,
            &format!("api/orders/{merchant_order_id}/cancel"),
            Some(session),
            None,
        )
        .await
        .map(|_| ())
    }
}

/// A return in the store's JSON.
fn return_from(value: &Value) -> Result<RetailerReturn, DriverError> {
    let malformed = || {
        DriverError::permanent(
            ErrorType::RetailerError,
            format!("the store's return is malformed: {value}"),
        )
    };
    let id = value["id"].as_str().ok_or_else(malformed)?;
    let status = match value["status"].as_str().ok_or_else(malformed)? {
        "approved" => RetailerReturnStatus::Approved,
        "denied" => RetailerReturnStatus::Denied,
        "received" => RetailerReturnStatus::Received,
        "credited" => RetailerReturnStatus::Credited,
        _ => return Err(malformed()),
    };
    Ok(RetailerReturn {
        merchant_return_id: id.to_string(),
        status,
        decision: value["decision"].as_str().map(str::to_string),
        label_url: value["label_url"].as_str().map(str::to_string),
    })
}
