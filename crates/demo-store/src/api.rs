//! The store's JSON API (`/api/…`): catalogue, sign-in, cart, checkout, order history,
//! and admin endpoints for tests (ground truth, reset, accounts).

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::catalogue::{Catalogue, Product, TestBehavior, VariantError};
use crate::db::{
    CancelOutcome, CartLine, Customer, Db, NewOrder, NewReturn, PlaceError, ReturnError,
    ReturnFilter, ReturnItems, ReturnOutcome, ReturnRecord, SignIn, StoredOrder,
};
use crate::pricing::{self, Line, PricingError, ShippingMethod};

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub admin_token: Arc<String>,
    pub clock: crate::fulfilment::Clock,
    pub faults: Arc<std::sync::RwLock<Faults>>,
    /// Customers whose last attempt to buy an `intermittent_5xx` product failed.
    pub flaky_failed: Arc<std::sync::Mutex<std::collections::HashSet<i64>>>,
}

/// Faults injected into the shopper-facing API, for reliability tests.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Added to every response.
    #[serde(default)]
    pub latency_ms: u64,
    /// Share of requests (0 to 1) answered 503 without doing anything.
    #[serde(default)]
    pub error_rate: f64,
    /// Place orders, then drop the connection before answering.
    #[serde(default)]
    pub drop_after_commit: bool,
    /// Record each new return, then hold the answer this many milliseconds: the window
    /// in which a buyer that dies has asked for a return it never hears about.
    #[serde(default)]
    pub return_answer_delay_ms: u64,
}

/// Applies the injected latency and error rate to `/api/…` (never to `/api/admin/…`).
pub async fn inject_faults(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    if path.starts_with("/api/") && !path.starts_with("/api/admin/") {
        let faults = state.faults.read().map(|f| f.clone()).unwrap_or_default();
        if faults.latency_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(faults.latency_ms)).await;
        }
        if faults.error_rate > 0.0 && rand::random::<f64>() < faults.error_rate {
            return StoreError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "Please try again later",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// An error a real store's API would give: a status, a stable code and a message.
#[derive(Debug)]
pub struct StoreError {
    status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    details: Option<Value>,
}

impl StoreError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        StoreError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }
    pub(crate) fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }
    /// `details.available`: for `out_of_stock` and `purchase_limit_exceeded`, how many
    /// more units the cart could take.
    pub(crate) fn available(&self) -> Option<i64> {
        self.details.as_ref()?.get("available")?.as_i64()
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "store database error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on our side",
        )
    }
}

impl IntoResponse for StoreError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(details) = self.details {
            error["details"] = details;
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

type ApiResult<T> = Result<T, StoreError>;

/// JSON bodies whose rejection is a store error rather than axum's plain text.
pub struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = StoreError;
    async fn from_request(req: axum::extract::Request, state: &S) -> ApiResult<Self> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| Body(v))
            .map_err(|e| StoreError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    value.strip_prefix("Bearer ").map(str::trim)
}

impl FromRequestParts<AppState> for Customer {
    type Rejection = StoreError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let token = bearer(parts).ok_or_else(|| {
            StoreError::new(
                StatusCode::UNAUTHORIZED,
                "sign_in_required",
                "Sign in to continue",
            )
        })?;
        state.db.customer_for_token(token).await?.ok_or_else(|| {
            StoreError::new(
                StatusCode::UNAUTHORIZED,
                "sign_in_required",
                "Your session has expired; sign in again",
            )
        })
    }
}

/// The address the store was reached at (`http://host:port`, from the `Host` header), for
/// the absolute URLs it gives; empty when unknown, which leaves them relative.
pub struct BaseUrl(pub String);

impl<S: Send + Sync> FromRequestParts<S> for BaseUrl {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let host = header("host")
            .map(str::to_string)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .filter(|h| {
                h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
            });
        let scheme = match header("x-forwarded-proto") {
            Some("https") => "https",
            _ => "http",
        };
        Ok(BaseUrl(
            host.map(|h| format!("{scheme}://{h}")).unwrap_or_default(),
        ))
    }
}

impl BaseUrl {
    /// The return with its label URL absolute.
    pub fn on_return(&self, mut record: ReturnRecord) -> ReturnRecord {
        if let Some(path) = record.label_url.take() {
            record.label_url = Some(format!("{}{path}", self.0));
        }
        record
    }

    /// The order with its returns' label URLs absolute.
    pub fn on_order(&self, mut order: StoredOrder) -> StoredOrder {
        order.returns = std::mem::take(&mut order.returns)
            .into_iter()
            .map(|r| self.on_return(r))
            .collect();
        order
    }
}

/// Proof that the request carries the store's admin token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = StoreError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        match bearer(parts) {
            Some(token) if token == state.admin_token.as_str() => Ok(Admin),
            _ => Err(StoreError::new(
                StatusCode::UNAUTHORIZED,
                "admin_token_required",
                "This endpoint needs the admin token",
            )),
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/categories", get(categories))
        .route("/api/products", get(products))
        .route("/api/products/{id}", get(product))
        .route("/api/session", post(sign_in))
        .route("/api/cart", get(cart).delete(clear_cart))
        .route("/api/cart/items", post(add_to_cart))
        .route("/api/checkout/quote", post(quote))
        .route("/api/checkout/place", post(place))
        .route("/api/orders", get(order_history))
        .route("/api/orders/{id}", get(order))
        .route("/api/orders/{id}/cancel", post(cancel_order))
        .route("/api/orders/{id}/returns", post(request_return))
        .route("/api/returns", get(customer_returns))
        .route("/api/returns/{id}", get(customer_return))
        .route("/api/returns/{id}/label", get(return_label_pdf))
        .route("/api/admin/orders", get(admin_orders))
        .route("/api/admin/returns", get(admin_returns))
        .route("/api/admin/reset", post(admin_reset))
        .route("/api/admin/customers", post(admin_create_customer))
        .route(
            "/api/admin/faults",
            get(admin_faults)
                .put(admin_set_faults)
                .delete(admin_clear_faults),
        )
        .route("/api/test-products", get(test_products))
        .route(
            "/api/admin/stock/{sku}",
            axum::routing::put(admin_set_stock),
        )
}

async fn categories() -> Json<Value> {
    Json(json!({ "categories": Catalogue::get().categories }))
}

#[derive(Deserialize)]
struct ProductQuery {
    q: Option<String>,
    category: Option<String>,
}

fn summary(p: &Product) -> Value {
    let price = p.variants.iter().map(|v| v.price_cents).min().unwrap_or(0);
    json!({"id": p.id, "title": p.title, "brand": p.brand, "category": p.category, "price_from": price,
           "url": format!("/dp/{}", p.id), "has_variants": !p.dimensions.is_empty()})
}

async fn products(Query(q): Query<ProductQuery>) -> Json<Value> {
    let catalogue = Catalogue::get();
    let found: Vec<Value> = catalogue
        .search(q.q.as_deref().unwrap_or(""))
        .into_iter()
        .filter(|p| q.category.as_deref().is_none_or(|c| p.category == c))
        .map(summary)
        .collect();
    Json(json!({ "products": found }))
}

async fn product(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let p = Catalogue::get().product(&id).ok_or_else(|| {
        StoreError::new(
            StatusCode::NOT_FOUND,
            "product_not_found",
            format!("No product {id}"),
        )
    })?;
    let mut variants = Vec::with_capacity(p.variants.len());
    for v in &p.variants {
        let stock = state.db.stock(&v.sku).await?;
        variants.push(json!({"sku": v.sku, "options": v.options, "price": v.price_cents, "in_stock": stock > 0, "stock": stock}));
    }
    let mut body = serde_json::to_value(p).unwrap_or_default();
    body["variants"] = Value::Array(variants);
    body["currency"] = json!(pricing::CURRENCY);
    Ok(Json(body))
}

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
    /// The authenticator's current code, for accounts with two-factor sign-in.
    totp: Option<String>,
}

async fn sign_in(
    State(state): State<AppState>,
    Body(creds): Body<Credentials>,
) -> ApiResult<Json<Value>> {
    let unauthorized =
        |code, message: &str| StoreError::new(StatusCode::UNAUTHORIZED, code, message);
    match state
        .db
        .sign_in(&creds.email, &creds.password, creds.totp.as_deref())
        .await?
    {
        SignIn::Ok { token, customer } => Ok(Json(json!({"token": token, "customer": customer}))),
        SignIn::BadCredentials => Err(unauthorized(
            "invalid_credentials",
            "Wrong e-mail or password",
        )),
        SignIn::TotpRequired => Err(unauthorized(
            "totp_required",
            "Enter the code from your authenticator app",
        )),
        SignIn::BadTotp => Err(unauthorized(
            "invalid_totp",
            "That code is not right; try the current one",
        )),
    }
}

/// Cart lines priced from the catalogue.
pub(crate) fn price_lines(cart: &[CartLine]) -> Vec<(Line, &'static Product)> {
    let catalogue = Catalogue::get();
    cart.iter()
        .filter_map(|c| {
            let product = catalogue.product(&c.product_id)?;
            let variant = product.variants.iter().find(|v| v.sku == c.sku)?;
            let offer = product.offer(Some(&c.offer_id))?;
            let rise = if product.test_behavior == Some(TestBehavior::PriceRise) {
                crate::catalogue::PRICE_RISE_CENTS
            } else {
                0
            };
            let unit = variant.price_cents + offer.price_delta_cents + rise;
            Some((
                Line {
                    product_id: product.id.clone(),
                    sku: c.sku.clone(),
                    offer_id: offer.offer_id.clone(),
                    title: product.title.clone(),
                    quantity: c.quantity,
                    unit_price: unit,
                    line_total: unit * c.quantity,
                    handling_days: offer.handling_days,
                },
                product,
            ))
        })
        .collect()
}

async fn cart(State(state): State<AppState>, customer: Customer) -> ApiResult<Json<Value>> {
    let lines: Vec<Line> = price_lines(&state.db.cart(customer.id).await?)
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    let subtotal: i64 = lines.iter().map(|l| l.line_total).sum();
    Ok(Json(
        json!({"lines": lines, "subtotal": subtotal, "currency": pricing::CURRENCY}),
    ))
}

async fn clear_cart(State(state): State<AppState>, customer: Customer) -> ApiResult<StatusCode> {
    state.db.cart_clear(customer.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct VariantChoice {
    pub(crate) label: String,
    pub(crate) value: String,
}

#[derive(Deserialize)]
pub(crate) struct AddToCart {
    pub(crate) product_id: String,
    #[serde(default = "one")]
    pub(crate) quantity: i64,
    #[serde(default)]
    pub(crate) variant: Vec<VariantChoice>,
    pub(crate) offer_id: Option<String>,
}

fn one() -> i64 {
    1
}

async fn add_to_cart(
    State(state): State<AppState>,
    customer: Customer,
    Body(add): Body<AddToCart>,
) -> ApiResult<Json<Value>> {
    let (line, quantity) = add_line(&state, &customer, add).await?;
    Ok(Json(
        json!({"sku": line.sku, "offer_id": line.offer_id, "quantity": quantity}),
    ))
}

/// Adds to the customer's cart after the store's checks; the line and its new quantity.
pub(crate) async fn add_line(
    state: &AppState,
    customer: &Customer,
    add: AddToCart,
) -> ApiResult<(CartLine, i64)> {
    let product = Catalogue::get().product(&add.product_id).ok_or_else(|| {
        StoreError::new(
            StatusCode::NOT_FOUND,
            "product_not_found",
            format!("No product {}", add.product_id),
        )
    })?;
    if add.quantity < 1 {
        return Err(StoreError::unprocessable(
            "invalid_quantity",
            "Quantity must be at least 1",
        ));
    }
    let choice: Vec<(String, String)> = add
        .variant
        .into_iter()
        .map(|v| (v.label, v.value))
        .collect();
    let variant = product.variant(&choice).map_err(|e| match e {
        VariantError::Insufficient(missing) => StoreError {
            details: Some(json!({ "missing": missing })),
            ..StoreError::unprocessable(
                "insufficient_variants",
                format!("Choose a {} first", missing.join(" and ")),
            )
        },
        VariantError::Invalid(message) => StoreError::unprocessable("invalid_variant", message),
    })?;
    let offer = product.offer(add.offer_id.as_deref()).ok_or_else(|| {
        StoreError::unprocessable("invalid_offer", "No such offer for this product")
    })?;
    let cart = state.db.cart(customer.id).await?;
    let units = |keep: &dyn Fn(&CartLine) -> bool| -> i64 {
        cart.iter().filter(|l| keep(l)).map(|l| l.quantity).sum()
    };
    check_units(
        state,
        product,
        &variant.sku,
        add.quantity,
        units(&|l| l.product_id == product.id),
        units(&|l| l.sku == variant.sku),
    )
    .await?;
    let line = CartLine {
        product_id: product.id.clone(),
        sku: variant.sku.clone(),
        offer_id: offer.offer_id.clone(),
        quantity: add.quantity,
    };
    let quantity = state.db.cart_add(customer.id, &line).await?;
    Ok((line, quantity))
}

/// The store's limits on what one cart holds of a product, for `quantity` more units of
/// `sku` when the cart's other lines hold `product_units` of the product and `sku_units`
/// of this variant (from any seller, as they share the stock). A refusal's
/// `details.available` is the most `quantity` could have been: the purchase limit or the
/// stock less what the rest of the cart holds, at least 0.
async fn check_units(
    state: &AppState,
    product: &Product,
    sku: &str,
    quantity: i64,
    product_units: i64,
    sku_units: i64,
) -> ApiResult<()> {
    let limit = product.purchase_limit;
    let available = (limit - product_units).max(0);
    if quantity > available {
        let held = if product_units > 0 {
            format!(" (your cart has {product_units})")
        } else {
            String::new()
        };
        return Err(StoreError {
            details: Some(json!({ "limit": limit, "available": available })),
            ..StoreError::unprocessable(
                "purchase_limit_exceeded",
                format!("You can buy at most {limit} of this item per order{held}"),
            )
        });
    }
    let stock = state.db.stock(sku).await?;
    let available = (stock - sku_units).max(0);
    if quantity > available {
        let held = if sku_units > 0 {
            format!(" (your cart has {sku_units})")
        } else {
            String::new()
        };
        return Err(StoreError {
            details: Some(json!({ "available": available })),
            ..StoreError::new(
                StatusCode::CONFLICT,
                "out_of_stock",
                format!("Only {stock} left in stock{held}"),
            )
        });
    }
    Ok(())
}

/// Changes a cart line's quantity (0 removes it), with the same checks as adding.
pub(crate) async fn set_line_quantity(
    state: &AppState,
    customer: &Customer,
    sku: &str,
    offer_id: &str,
    quantity: i64,
) -> ApiResult<()> {
    if quantity < 0 {
        return Err(StoreError::unprocessable(
            "invalid_quantity",
            "Quantity cannot be negative",
        ));
    }
    let cart = state.db.cart(customer.id).await?;
    let line = cart
        .iter()
        .find(|l| l.sku == sku && l.offer_id == offer_id)
        .ok_or_else(|| {
            StoreError::new(
                StatusCode::NOT_FOUND,
                "line_not_found",
                "That item is no longer in your cart",
            )
        })?;
    if quantity == 0 {
        state.db.cart_remove(customer.id, sku, offer_id).await?;
        return Ok(());
    }
    if let Some(product) = Catalogue::get().product(&line.product_id) {
        // The other lines' units: this line's new quantity replaces its old one.
        let units = |keep: &dyn Fn(&CartLine) -> bool| -> i64 {
            cart.iter()
                .filter(|l| keep(l) && !(l.sku == sku && l.offer_id == offer_id))
                .map(|l| l.quantity)
                .sum()
        };
        check_units(
            state,
            product,
            sku,
            quantity,
            units(&|l| l.product_id == product.id),
            units(&|l| l.sku == sku),
        )
        .await?;
    }
    state
        .db
        .cart_set_quantity(customer.id, sku, offer_id, quantity)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub(crate) struct Checkout {
    pub(crate) shipping_address: Value,
    #[serde(default = "standard")]
    pub(crate) shipping_method: ShippingMethod,
    pub(crate) promo_code: Option<String>,
    pub(crate) gift_message: Option<String>,
    /// The gift option: a gift receipt (no prices on the packing slip). Refused with
    /// `gift_option_unavailable` when an item has no gift options.
    #[serde(default)]
    pub(crate) gift: bool,
    pub(crate) buyer_reference: Option<String>,
    /// The buyer's purchase-order number (trimmed; blank is none).
    pub(crate) po_number: Option<String>,
    /// When given, placing fails with `price_changed` unless the total still equals it.
    pub(crate) expected_total: Option<i64>,
}

fn standard() -> ShippingMethod {
    ShippingMethod::Standard
}

/// The longest purchase-order number a checkout takes.
const PO_NUMBER_MAX: usize = 50;

impl Checkout {
    /// The purchase-order number given, trimmed; `None` when absent or blank.
    pub(crate) fn po_number(&self) -> Option<&str> {
        self.po_number
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }
}

const US_STATES: &[&str] = &[
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
    "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM",
    "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA",
    "WV", "WI", "WY", "AS", "GU", "MP", "PR", "VI", "FM", "MH", "PW", "AA", "AE", "AP",
];

/// Checks the address the way a store does; returns the state used for tax.
fn check_address(address: &Value, products: &[&Product]) -> ApiResult<String> {
    let field = |name: &str| {
        address
            .get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or("")
    };
    for name in [
        "first_name",
        "last_name",
        "address_line1",
        "city",
        "postal_code",
    ] {
        if field(name).is_empty() {
            return Err(StoreError {
                details: Some(json!({ "field": name })),
                ..StoreError::unprocessable(
                    "address_invalid",
                    format!("The address needs a {}", name.replace('_', " ")),
                )
            });
        }
    }
    if products
        .iter()
        .any(|p| p.test_behavior == Some(TestBehavior::AddressRefused))
    {
        return Err(StoreError::unprocessable(
            "shipping_address_refused",
            "We can't deliver to this address",
        ));
    }
    let country = match field("country") {
        "" => "US".to_string(),
        c => c.to_ascii_uppercase(),
    };
    if country != "US" {
        if products.iter().all(|p| p.international) {
            return Ok(String::new());
        }
        return Err(StoreError::unprocessable(
            "shipping_address_refused",
            format!("We can't ship these items to {country}"),
        ));
    }
    let state = field("state").to_ascii_uppercase();
    if !US_STATES.contains(&state.as_str()) {
        return Err(StoreError {
            details: Some(json!({ "field": "state" })),
            ..StoreError::unprocessable("address_invalid", "Choose a valid US state")
        });
    }
    let zip = field("postal_code");
    let zip_ok = zip.len() >= 5
        && zip.as_bytes()[..5].iter().all(u8::is_ascii_digit)
        && (zip.len() == 5
            || (zip.len() == 10
                && zip.as_bytes()[5] == b'-'
                && zip.as_bytes()[6..].iter().all(u8::is_ascii_digit)));
    if !zip_ok {
        return Err(StoreError {
            details: Some(json!({ "field": "postal_code" })),
            ..StoreError::unprocessable("address_invalid", "Enter a valid ZIP code")
        });
    }
    Ok(state)
}

/// The priced checkout for the customer's current cart.
pub(crate) async fn checkout_quote(
    state: &AppState,
    customer: &Customer,
    checkout: &Checkout,
) -> ApiResult<(Vec<Line>, pricing::Totals, String)> {
    let cart = state.db.cart(customer.id).await?;
    let priced = price_lines(&cart);
    let products: Vec<&Product> = priced.iter().map(|(_, p)| *p).collect();
    let tax_state = check_address(&checkout.shipping_address, &products)?;
    if let Some(message) = &checkout.gift_message
        && message.chars().count() > 240
    {
        return Err(StoreError::unprocessable(
            "gift_message_too_long",
            "Gift messages are limited to 240 characters",
        ));
    }
    if checkout
        .buyer_reference
        .as_deref()
        .is_some_and(|r| r.chars().count() > 100)
    {
        return Err(StoreError::unprocessable(
            "buyer_reference_too_long",
            "References are limited to 100 characters",
        ));
    }
    if checkout
        .po_number()
        .is_some_and(|p| p.chars().count() > PO_NUMBER_MAX)
    {
        return Err(StoreError::unprocessable(
            "po_number_too_long",
            format!("PO numbers are limited to {PO_NUMBER_MAX} characters"),
        ));
    }
    if checkout.gift
        && let Some(product) = products.iter().find(|p| !p.gift_options)
    {
        return Err(StoreError {
            details: Some(json!({ "product_id": product.id })),
            ..StoreError::unprocessable(
                "gift_option_unavailable",
                format!("Gift options are not available for {}", product.title),
            )
        });
    }
    let lines: Vec<Line> = priced.into_iter().map(|(l, _)| l).collect();
    let totals = pricing::price(
        &lines,
        &tax_state,
        checkout.shipping_method,
        checkout.promo_code.as_deref(),
    )
    .map_err(|e| match e {
        PricingError::EmptyCart => StoreError::unprocessable("cart_empty", e.to_string()),
        PricingError::InvalidPromo(_) => {
            StoreError::unprocessable("invalid_promo_code", e.to_string())
        }
        PricingError::PromoNotApplicable(_) => {
            StoreError::unprocessable("promo_not_applicable", e.to_string())
        }
    })?;
    Ok((lines, totals, tax_state))
}

async fn quote(
    State(state): State<AppState>,
    customer: Customer,
    Body(checkout): Body<Checkout>,
) -> ApiResult<Json<Value>> {
    let (lines, totals, tax_state) = checkout_quote(&state, &customer, &checkout).await?;
    let subtotal = totals.subtotal;
    let handling = lines.iter().map(|l| l.handling_days).max().unwrap_or(0);
    let methods: Vec<Value> = ShippingMethod::ALL
        .iter()
        .map(|m| json!({"method": m, "price": m.price(subtotal), "delivery_days": handling + m.transit_days()}))
        .collect();
    Ok(Json(
        json!({"lines": lines, "totals": totals, "tax_state": tax_state, "shipping_methods": methods}),
    ))
}

async fn place(
    State(state): State<AppState>,
    customer: Customer,
    Body(checkout): Body<Checkout>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let order = place_order(&state, &customer, &checkout).await?;
    Ok((StatusCode::CREATED, Json(json!({ "order": order }))))
}

/// Places the customer's cart as an order, after the store's checks and the test
/// products' fixed outcomes.
pub(crate) async fn place_order(
    state: &AppState,
    customer: &Customer,
    checkout: &Checkout,
) -> ApiResult<crate::db::StoredOrder> {
    let (lines, totals, _) = checkout_quote(state, customer, checkout).await?;
    if let Some(expected) = checkout.expected_total
        && expected != totals.total
    {
        return Err(StoreError {
            details: Some(json!({ "totals": totals })),
            ..StoreError::new(
                StatusCode::CONFLICT,
                "price_changed",
                "The total changed; review the order again",
            )
        });
    }
    let behaviors: Vec<TestBehavior> = lines
        .iter()
        .filter_map(|l| Catalogue::get().product(&l.product_id)?.test_behavior)
        .collect();
    test_product_checkout(state, customer, &behaviors).await?;
    let handling = lines.iter().map(|l| l.handling_days).max().unwrap_or(0);
    let (ship_at, deliver_at) = if behaviors.contains(&TestBehavior::NeverShips) {
        let never = time::macros::datetime!(9999-12-31 0:00 UTC);
        (never, never)
    } else {
        state.clock.schedule(
            time::OffsetDateTime::now_utc(),
            handling,
            checkout.shipping_method.transit_days(),
        )
    };
    let new = NewOrder {
        ship_at,
        deliver_at,
        customer_id: customer.id,
        customer_email: &customer.email,
        buyer_reference: checkout
            .buyer_reference
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty()),
        shipping_method: checkout.shipping_method,
        shipping_address: &checkout.shipping_address,
        gift_message: checkout.gift_message.as_deref(),
        gift: checkout.gift,
        po_number: checkout.po_number(),
        promo_code: checkout.promo_code.as_deref(),
    };
    let order = state
        .db
        .place(&new, &lines, &totals)
        .await
        .map_err(|e| match e {
            PlaceError::OutOfStock(sku) => StoreError::new(
                StatusCode::CONFLICT,
                "out_of_stock",
                format!("{sku} sold out while you were checking out"),
            ),
            PlaceError::Database(e) => e.into(),
        })?;
    tracing::info!(order_id = %order.id, customer = %customer.email, total = totals.total, "order placed");
    if state.faults.read().is_ok_and(|f| f.drop_after_commit) {
        // The order is committed; the buyer never hears so. Unwinding ends this
        // connection's task, which closes the socket without a response (and, unlike a
        // panic, prints nothing).
        tracing::warn!(order_id = %order.id, "fault injection: dropping the connection after placing the order");
        std::panic::resume_unwind(Box::new("connection dropped by fault injection"));
    }
    Ok(order)
}

/// The fixed outcomes of test products at the moment of placing.
async fn test_product_checkout(
    state: &AppState,
    customer: &Customer,
    behaviors: &[TestBehavior],
) -> ApiResult<()> {
    for behavior in behaviors {
        match behavior {
            TestBehavior::SlowCheckout => tokio::time::sleep(crate::catalogue::SLOW_CHECKOUT).await,
            TestBehavior::PaymentDeclined => {
                return Err(StoreError::new(
                    StatusCode::PAYMENT_REQUIRED,
                    "payment_declined",
                    "Your card was declined",
                ));
            }
            TestBehavior::NeedsTwoFactor if !customer.two_factor => {
                return Err(StoreError::new(
                    StatusCode::UNAUTHORIZED,
                    "totp_required",
                    "This purchase needs two-factor sign-in: sign in again with your authenticator code",
                ));
            }
            TestBehavior::CheckoutBlocked => {
                return Err(StoreError::new(
                    StatusCode::FORBIDDEN,
                    "checkout_blocked",
                    "Please verify that you are not a robot",
                ));
            }
            TestBehavior::Intermittent5xx => {
                let mut failed = state.flaky_failed.lock().unwrap_or_else(|e| e.into_inner());
                if failed.insert(customer.id) {
                    return Err(StoreError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "service_unavailable",
                        "Please try again later",
                    ));
                }
                failed.remove(&customer.id);
            }
            _ => {}
        }
    }
    Ok(())
}

async fn test_products() -> Json<Value> {
    let products: Vec<Value> = Catalogue::get()
        .products
        .iter()
        .filter_map(|p| {
            let behavior = p.test_behavior?;
            Some(json!({"id": p.id, "title": p.title, "url": format!("/dp/{}", p.id), "behavior": behavior,
                        "description": p.description, "price": p.variants.first().map(|v| v.price_cents)}))
        })
        .collect();
    Json(json!({ "test_products": products }))
}

async fn admin_faults(State(state): State<AppState>, _: Admin) -> Json<Faults> {
    Json(state.faults.read().map(|f| f.clone()).unwrap_or_default())
}

async fn admin_set_faults(
    State(state): State<AppState>,
    _: Admin,
    Body(faults): Body<Faults>,
) -> ApiResult<Json<Faults>> {
    if !(0.0..=1.0).contains(&faults.error_rate) {
        return Err(StoreError::unprocessable(
            "invalid_fault",
            "error_rate must be between 0 and 1",
        ));
    }
    if let Ok(mut current) = state.faults.write() {
        *current = faults.clone();
    }
    tracing::warn!(?faults, "fault injection changed");
    Ok(Json(faults))
}

async fn admin_clear_faults(State(state): State<AppState>, _: Admin) -> StatusCode {
    if let Ok(mut current) = state.faults.write() {
        *current = Faults::default();
    }
    StatusCode::NO_CONTENT
}

/// `?reference=`, as the order history and the returns list (API and pages) take it.
#[derive(Deserialize)]
pub(crate) struct ReferenceQuery {
    pub(crate) reference: Option<String>,
}

impl ReferenceQuery {
    /// The reference given, trimmed; `None` when absent or blank.
    pub(crate) fn given(&self) -> Option<&str> {
        self.reference
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
    }
}

async fn order_history(
    State(state): State<AppState>,
    customer: Customer,
    base: BaseUrl,
    Query(q): Query<ReferenceQuery>,
) -> ApiResult<Json<Value>> {
    let orders: Vec<StoredOrder> = state
        .db
        .orders(Some(customer.id), q.reference.as_deref(), None)
        .await?
        .into_iter()
        .map(|o| base.on_order(o))
        .collect();
    Ok(Json(json!({ "orders": orders })))
}

async fn order(
    State(state): State<AppState>,
    customer: Customer,
    base: BaseUrl,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    match state.db.customer_order(customer.id, &id).await? {
        Some(order) => Ok(Json(json!({ "order": base.on_order(order) }))),
        None => Err(StoreError::new(
            StatusCode::NOT_FOUND,
            "order_not_found",
            format!("No order {id}"),
        )),
    }
}

async fn admin_orders(
    State(state): State<AppState>,
    _: Admin,
    base: BaseUrl,
) -> ApiResult<Json<Value>> {
    let orders: Vec<StoredOrder> = state
        .db
        .orders(None, None, None)
        .await?
        .into_iter()
        .map(|o| base.on_order(o))
        .collect();
    Ok(Json(json!({ "orders": orders })))
}

/// Ground truth: every return of every customer, oldest first.
async fn admin_returns(
    State(state): State<AppState>,
    _: Admin,
    base: BaseUrl,
) -> ApiResult<Json<Value>> {
    let returns: Vec<ReturnRecord> = state
        .db
        .returns(ReturnFilter::default())
        .await?
        .into_iter()
        .map(|r| base.on_return(r))
        .collect();
    Ok(Json(json!({ "returns": returns })))
}

async fn admin_reset(State(state): State<AppState>, _: Admin) -> ApiResult<StatusCode> {
    state.db.reset().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct NewCustomer {
    email: String,
    password: String,
    #[serde(default = "default_card")]
    card_last4: String,
    #[serde(default)]
    gift_balance_cents: i64,
    /// Base32 authenticator secret, for two-factor sign-in.
    totp_secret: Option<String>,
}

fn default_card() -> String {
    "4242".into()
}

async fn admin_create_customer(
    State(state): State<AppState>,
    _: Admin,
    Body(c): Body<NewCustomer>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !c.email.contains('@') || c.password.is_empty() {
        return Err(StoreError::unprocessable(
            "invalid_customer",
            "An e-mail address and a password are required",
        ));
    }
    if c.totp_secret
        .as_deref()
        .is_some_and(|s| crate::totp::decode_base32(s).is_none())
    {
        return Err(StoreError::unprocessable(
            "invalid_totp_secret",
            "totp_secret must be base32",
        ));
    }
    match state
        .db
        .create_customer(
            &c.email,
            &c.password,
            &c.card_last4,
            c.gift_balance_cents,
            c.totp_secret.as_deref(),
        )
        .await
    {
        Ok(id) => Ok((
            StatusCode::CREATED,
            Json(json!({"id": id, "email": c.email})),
        )),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::new(
            StatusCode::CONFLICT,
            "customer_exists",
            "An account with that e-mail exists",
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct SetStock {
    quantity: i64,
}

async fn admin_set_stock(
    State(state): State<AppState>,
    _: Admin,
    Path(sku): Path<String>,
    Body(set): Body<SetStock>,
) -> ApiResult<StatusCode> {
    if set.quantity < 0 {
        return Err(StoreError::unprocessable(
            "invalid_quantity",
            "Stock cannot be negative",
        ));
    }
    if !state.db.set_stock(&sku, set.quantity).await? {
        return Err(StoreError::new(
            StatusCode::NOT_FOUND,
            "sku_not_found",
            format!("No SKU {sku}"),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn cancel_order(
    State(state): State<AppState>,
    customer: Customer,
    base: BaseUrl,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    match state
        .db
        .cancel(customer.id, &id, "cancelled_by_customer")
        .await?
    {
        CancelOutcome::Cancelled => {
            let order = state
                .db
                .customer_order(customer.id, &id)
                .await?
                .map(|o| base.on_order(o));
            Ok(Json(json!({ "order": order })))
        }
        CancelOutcome::NotFound => Err(StoreError::new(
            StatusCode::NOT_FOUND,
            "order_not_found",
            format!("No order {id}"),
        )),
        CancelOutcome::NotCancellable(status) => Err(StoreError {
            details: Some(json!({ "status": status })),
            ..StoreError::new(
                StatusCode::CONFLICT,
                "not_cancellable",
                format!("This order is {status} and can no longer be cancelled"),
            )
        }),
    }
}

/// Return reasons, as the reference API names them, with what the pages call them.
pub(crate) const RETURN_REASONS: &[(&str, &str)] = &[
    ("damaged", "Arrived damaged"),
    ("not_delivered", "Never arrived"),
    ("empty_box", "The box was empty"),
    ("wrong_item", "Wrong item sent"),
    ("defective", "Defective or doesn't work"),
    ("not_as_described", "Not as described"),
    ("wrong_size", "Wrong size"),
    ("no_longer_needed", "No longer needed"),
    ("forced_cancellation", "Order should have been cancelled"),
    ("other", "Other"),
];

/// The longest buyer reference and notes a return takes.
const RETURN_REFERENCE_MAX: usize = 100;
const RETURN_NOTES_MAX: usize = 1000;

#[derive(Deserialize)]
pub(crate) struct ReturnLineRequest {
    pub(crate) sku: String,
    pub(crate) quantity: i64,
}

#[derive(Deserialize)]
pub(crate) struct ReturnRequest {
    pub(crate) reason: String,
    /// The buyer's reference: a repeated request with it gives back the same return.
    #[serde(default)]
    pub(crate) reference: Option<String>,
    /// How many of which SKUs.
    #[serde(default)]
    pub(crate) lines: Vec<ReturnLineRequest>,
    /// Which SKUs, each with every unit not returned yet; with neither, the whole order.
    #[serde(default)]
    pub(crate) skus: Vec<String>,
    #[serde(default)]
    pub(crate) notes: Option<String>,
}

/// Requests a return for the customer, after the store's checks: the return and whether
/// it is new (false when the reference found the one made before).
pub(crate) async fn create_return(
    state: &AppState,
    customer: &Customer,
    order_id: &str,
    request: &ReturnRequest,
) -> ApiResult<(bool, ReturnRecord)> {
    if !RETURN_REASONS.iter().any(|(r, _)| *r == request.reason) {
        let reasons: Vec<&str> = RETURN_REASONS.iter().map(|(r, _)| *r).collect();
        return Err(StoreError::unprocessable(
            "invalid_reason",
            format!("Choose one of: {}", reasons.join(", ")),
        ));
    }
    let reference = request
        .reference
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if reference.is_some_and(|r| r.chars().count() > RETURN_REFERENCE_MAX) {
        return Err(StoreError::unprocessable(
            "reference_too_long",
            format!("References are limited to {RETURN_REFERENCE_MAX} characters"),
        ));
    }
    let notes = request
        .notes
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    if notes.is_some_and(|n| n.chars().count() > RETURN_NOTES_MAX) {
        return Err(StoreError::unprocessable(
            "notes_too_long",
            format!("Notes are limited to {RETURN_NOTES_MAX} characters"),
        ));
    }
    let items = match (request.lines.is_empty(), request.skus.is_empty()) {
        (false, false) => {
            return Err(StoreError::unprocessable(
                "invalid_items",
                "Give either lines or skus, not both",
            ));
        }
        (false, true) => ReturnItems::Quantities(
            request
                .lines
                .iter()
                .map(|l| (l.sku.clone(), l.quantity))
                .collect(),
        ),
        (true, false) => ReturnItems::Skus(request.skus.clone()),
        (true, true) => ReturnItems::Everything,
    };
    let new = NewReturn {
        customer_id: customer.id,
        order_id,
        reason: &request.reason,
        reference,
        notes,
        items,
    };
    let outcome = state
        .db
        .request_return(&new, state.clock)
        .await
        .map_err(|e| return_error(order_id, e))?;
    Ok(match outcome {
        ReturnOutcome::Created(record) => {
            tracing::info!(return_id = %record.id, order_id, status = %record.status, "return requested");
            let delay = state
                .faults
                .read()
                .map(|f| f.return_answer_delay_ms)
                .unwrap_or(0);
            if delay > 0 {
                // The return is committed; the buyer hears so only after the delay.
                tracing::warn!(return_id = %record.id, delay_ms = delay, "fault injection: holding the answer to a return request");
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            (true, record)
        }
        ReturnOutcome::Existing(record) => (false, record),
    })
}

/// The store's error for a refused return request.
pub(crate) fn return_error(order_id: &str, e: ReturnError) -> StoreError {
    let message = e.to_string();
    match e {
        ReturnError::NotFound => StoreError::new(
            StatusCode::NOT_FOUND,
            "order_not_found",
            format!("No order {order_id}"),
        ),
        ReturnError::NotDelivered(status) => StoreError {
            details: Some(json!({ "status": status })),
            ..StoreError::new(StatusCode::CONFLICT, "not_delivered", message)
        },
        ReturnError::WindowClosed => {
            StoreError::new(StatusCode::CONFLICT, "return_window_closed", message)
        }
        ReturnError::UnknownSku(sku) => StoreError {
            details: Some(json!({ "sku": sku })),
            ..StoreError::unprocessable("unknown_sku", message)
        },
        ReturnError::InvalidQuantity(sku) => StoreError {
            details: Some(json!({ "sku": sku })),
            ..StoreError::unprocessable("invalid_quantity", message)
        },
        ReturnError::QuantityExceeded { sku, remaining } => StoreError {
            details: Some(json!({ "sku": sku, "remaining": remaining })),
            ..StoreError::unprocessable("quantity_exceeded", message)
        },
        ReturnError::NothingToReturn => StoreError::unprocessable("nothing_to_return", message),
        ReturnError::ReferenceInUse(other) => StoreError {
            details: Some(json!({ "order_id": other })),
            ..StoreError::new(StatusCode::CONFLICT, "reference_in_use", message)
        },
        ReturnError::Database(e) => e.into(),
    }
}

async fn request_return(
    State(state): State<AppState>,
    customer: Customer,
    base: BaseUrl,
    Path(id): Path<String>,
    Body(request): Body<ReturnRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (created, record) = create_return(&state, &customer, &id, &request).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "return": base.on_return(record) }))))
}

/// The customer's returns, oldest first; `?reference=` keeps those with that reference.
async fn customer_returns(
    State(state): State<AppState>,
    customer: Customer,
    base: BaseUrl,
    Query(q): Query<ReferenceQuery>,
) -> ApiResult<Json<Value>> {
    let reference = q.given();
    let returns: Vec<ReturnRecord> = state
        .db
        .returns(ReturnFilter {
            customer_id: Some(customer.id),
            reference,
            ..Default::default()
        })
        .await?
        .into_iter()
        .map(|r| base.on_return(r))
        .collect();
    Ok(Json(json!({ "returns": returns })))
}

fn return_not_found(id: &str) -> StoreError {
    StoreError::new(
        StatusCode::NOT_FOUND,
        "return_not_found",
        format!("No return {id}"),
    )
}

async fn customer_return(
    State(state): State<AppState>,
    customer: Customer,
    base: BaseUrl,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    match state.db.customer_return(customer.id, &id).await? {
        Some(record) => Ok(Json(json!({ "return": base.on_return(record) }))),
        None => Err(return_not_found(&id)),
    }
}

/// The label of one of the customer's returns, as a PDF; none for a denied return.
pub(crate) async fn label_pdf(
    state: &AppState,
    customer: &Customer,
    id: &str,
) -> ApiResult<Response> {
    let record = state
        .db
        .customer_return(customer.id, id)
        .await?
        .ok_or_else(|| return_not_found(id))?;
    if record.label_url.is_none() {
        return Err(StoreError::new(
            StatusCode::NOT_FOUND,
            "label_not_found",
            "Denied returns have no label",
        ));
    }
    let order = state
        .db
        .customer_order(customer.id, &record.order_id)
        .await?;
    let from = order
        .map(|o| crate::label::address_lines(&o.shipping_address))
        .unwrap_or_default();
    let bytes = crate::label::pdf(&crate::label::label_lines(&record, &from));
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/pdf".to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("inline; filename=\"return-label-{}.pdf\"", record.id),
            ),
        ],
        bytes,
    )
        .into_response())
}

async fn return_label_pdf(
    State(state): State<AppState>,
    customer: Customer,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    label_pdf(&state, &customer, &id).await
}
