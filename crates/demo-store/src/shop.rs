//! The HTML shopping path, for people and browser drivers: sign in (cookie session),
//! add to cart from the product page, a cart whose lines can be changed, removed or all
//! emptied, a three-page checkout (address → delivery → review, whose total appears after
//! a short client-side delay), confirmation, and order history searchable by the buyer
//! reference. It runs on the same logic as the JSON API, and a refusal shows in `#error`
//! with the JSON API's error code in `data-error`.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

use crate::api::{self, AddToCart, AppState, Checkout, VariantChoice};
use crate::db::{Customer, SignIn};
use crate::pages::{
    Refusal, error_box, error_from_query, error_query, esc, money, not_found, page, url_encode,
};
use crate::pricing::ShippingMethod;

const SESSION_COOKIE: &str = "sid";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/signin", get(signin_page).post(signin))
        .route("/cart", get(cart_page))
        .route("/cart/add", post(add_to_cart))
        .route("/cart/update", post(update_line))
        .route("/cart/remove", post(remove_line))
        .route("/cart/empty", post(empty_cart))
        .route(
            "/checkout",
            get(|| async { Redirect::to("/checkout/address") }),
        )
        .route("/checkout/address", get(address_page).post(save_address))
        .route("/checkout/delivery", get(delivery_page).post(save_delivery))
        .route("/checkout/review", get(review_page))
        .route("/checkout/place", post(place))
        .route("/orders", get(history_page))
        .route("/orders/{id}", get(order_page))
        .route("/orders/{id}/confirmation", get(confirmation_page))
}

/// The signed-in shopper, or a redirect to the sign-in page.
pub struct Shopper(pub(crate) Customer);

impl FromRequestParts<AppState> for Shopper {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let token = parts
            .headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| {
                c.trim()
                    .strip_prefix(&format!("{SESSION_COOKIE}="))
                    .map(str::to_string)
            });
        if let Some(token) = token
            && let Ok(Some(customer)) = state.db.customer_for_token(&token).await
        {
            return Ok(Shopper(customer));
        }
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let query = url_encode(next);
        Err(Redirect::to(&format!("/signin?next={query}")).into_response())
    }
}

pub(crate) fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_string())]).into_response()
}

pub(crate) fn error_page(status: StatusCode, title: &str, kind: &str, body: String) -> Response {
    (status, page(title, kind, &body)).into_response()
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn signin_form(next: &str, error: Option<(&str, &str)>) -> String {
    format!(
        r#"<h1>Sign in</h1>{}<form id="signin-form" method="post" action="/signin">
<input type="hidden" name="next" value="{next}">
<label for="email">E-mail</label><input id="email" name="email" type="email" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<label for="totp">Authenticator code (if you use two-factor sign-in)</label><input id="totp" name="totp" inputmode="numeric" autocomplete="one-time-code">
<button id="signin-submit" type="submit">Sign in</button></form>"#,
        error_box(error),
        next = esc(next)
    )
}

async fn signin_page(Query(q): Query<NextQuery>) -> Html<String> {
    page(
        "Sign in",
        "signin",
        &signin_form(q.next.as_deref().unwrap_or("/"), None),
    )
}

#[derive(Deserialize)]
struct SigninForm {
    email: String,
    password: String,
    totp: Option<String>,
    next: Option<String>,
}

async fn signin(State(state): State<AppState>, Form(f): Form<SigninForm>) -> Response {
    // Only same-site paths: never redirect a shopper to another host.
    let next = f
        .next
        .filter(|n| n.starts_with('/') && !n.starts_with("//"))
        .unwrap_or_else(|| "/".into());
    let totp = f.totp.as_deref().map(str::trim).filter(|t| !t.is_empty());
    // The codes are the JSON API's, so a page and a response say the same.
    let error = match state.db.sign_in(&f.email, &f.password, totp).await {
        Ok(SignIn::Ok { token, .. }) => {
            let mut response = see_other(&next);
            let cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax");
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(SET_COOKIE, value);
            }
            return response;
        }
        Ok(SignIn::BadCredentials) => ("invalid_credentials", "Wrong e-mail or password"),
        Ok(SignIn::TotpRequired) => (
            "totp_required",
            "Enter the code from your authenticator app",
        ),
        Ok(SignIn::BadTotp) => (
            "invalid_totp",
            "That code is not right; try the current one",
        ),
        Err(_) => ("internal_error", "Something went wrong; try again"),
    };
    error_page(
        StatusCode::UNAUTHORIZED,
        "Sign in",
        "signin",
        signin_form(&next, Some(error)),
    )
}

async fn add_to_cart(
    State(state): State<AppState>,
    Shopper(customer): Shopper,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let product_id = form.get("product_id").cloned().unwrap_or_default();
    let quantity = form
        .get("quantity")
        .and_then(|q| q.trim().parse().ok())
        .unwrap_or(1);
    let variant: Vec<VariantChoice> = form
        .iter()
        .filter_map(|(k, v)| {
            let label = k.strip_prefix("opt_")?;
            (!v.trim().is_empty()).then(|| VariantChoice {
                label: label.to_string(),
                value: v.clone(),
            })
        })
        .collect();
    let offer_id = form.get("offer_id").cloned().filter(|o| !o.is_empty());
    // Back on the product page after a refusal, the shopper's choices are kept.
    let mut back: Vec<String> = variant
        .iter()
        .map(|v| format!("opt_{}={}", url_encode(&v.label), url_encode(&v.value)))
        .collect();
    if let Some(offer) = &offer_id {
        back.push(format!("offer={}", url_encode(offer)));
    }
    back.push(format!("quantity={quantity}"));
    let add = AddToCart {
        product_id: product_id.clone(),
        quantity,
        variant,
        offer_id,
    };
    match api::add_line(&state, &customer, add).await {
        Ok(_) => see_other("/cart"),
        Err(e) => see_other(&format!(
            "/dp/{}?{}&{}",
            url_encode(&product_id),
            back.join("&"),
            error_query(&e)
        )),
    }
}

#[derive(Deserialize)]
struct LineForm {
    sku: String,
    offer_id: String,
    quantity: Option<String>,
}

/// Back to the cart, with the error if there is one.
fn to_cart(result: Result<(), api::StoreError>) -> Response {
    match result {
        Ok(()) => see_other("/cart"),
        Err(e) => see_other(&format!("/cart?{}", error_query(&e))),
    }
}

async fn update_line(
    State(state): State<AppState>,
    Shopper(customer): Shopper,
    Form(form): Form<LineForm>,
) -> Response {
    let Some(quantity) = form
        .quantity
        .as_deref()
        .and_then(|q| q.trim().parse::<i64>().ok())
    else {
        return see_other(&format!(
            "/cart?{}",
            error_query(("invalid_quantity", "Enter a quantity"))
        ));
    };
    to_cart(api::set_line_quantity(&state, &customer, &form.sku, &form.offer_id, quantity).await)
}

async fn remove_line(
    State(state): State<AppState>,
    Shopper(customer): Shopper,
    Form(form): Form<LineForm>,
) -> Response {
    to_cart(api::set_line_quantity(&state, &customer, &form.sku, &form.offer_id, 0).await)
}

async fn empty_cart(State(state): State<AppState>, Shopper(customer): Shopper) -> Response {
    match state.db.cart_clear(customer.id).await {
        Ok(()) => see_other("/cart"),
        Err(e) => to_cart(Err(e.into())),
    }
}

fn lines_table(lines: &[crate::pricing::Line]) -> String {
    let rows: String = lines
        .iter()
        .map(|l| {
            format!(
                r#"<tr class="order-line" data-product-id="{product}" data-sku="{sku}" data-quantity="{q}"><td>{title}</td><td>{sku}</td><td class="quantity">{q}</td><td>{unit}</td><td>{total}</td></tr>"#,
                product = esc(&l.product_id),
                sku = esc(&l.sku),
                title = esc(&l.title),
                q = l.quantity,
                unit = money(l.unit_price),
                total = money(l.line_total)
            )
        })
        .collect();
    format!(
        r#"<table id="lines"><tr><th>Item</th><th>SKU</th><th>Qty</th><th>Price</th><th>Total</th></tr>{rows}</table>"#
    )
}

/// The cart, each line with its own quantity and Remove controls. `#cart` (visible, so a
/// browser can wait for it) says how many lines (`data-line-count`) and units
/// (`data-item-count`) it holds, empty or not.
async fn cart_page(
    State(state): State<AppState>,
    Shopper(customer): Shopper,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Ok(cart) = state.db.cart(customer.id).await else {
        return something_went_wrong("Cart", "cart");
    };
    let lines: Vec<_> = api::price_lines(&cart)
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    let error = error_box(error_from_query(&q));
    let units: i64 = lines.iter().map(|l| l.quantity).sum();
    let section = format!(
        r#"<section id="cart" data-line-count="{}" data-item-count="{units}">"#,
        lines.len()
    );
    if lines.is_empty() {
        return page(
            "Cart",
            "cart",
            &format!(
                r#"{section}<h1 id="cart-empty">Your cart is empty</h1>{error}<p><a href="/">Keep shopping</a></p></section>"#
            ),
        )
        .into_response();
    }
    let line_key = |l: &crate::pricing::Line| {
        format!(
            r#"<input type="hidden" name="sku" value="{}"><input type="hidden" name="offer_id" value="{}">"#,
            esc(&l.sku),
            esc(&l.offer_id)
        )
    };
    let rows: String = lines
        .iter()
        .map(|l| {
            format!(
                r#"<tr class="cart-line" data-product-id="{product}" data-sku="{sku}" data-offer-id="{offer}" data-quantity="{q}"><td class="title">{title}</td><td class="sku">{sku}</td>
<td><form class="update-line-form" method="post" action="/cart/update">{key}<input class="line-quantity" name="quantity" type="number" min="0" value="{q}" aria-label="Quantity of {title}"><button class="update-line" type="submit">Update</button></form></td>
<td class="unit-price">{unit}</td><td class="line-total">{total}</td>
<td><form class="remove-line-form" method="post" action="/cart/remove">{key}<button class="remove-line" type="submit">Remove</button></form></td></tr>"#,
                product = esc(&l.product_id),
                sku = esc(&l.sku),
                offer = esc(&l.offer_id),
                title = esc(&l.title),
                key = line_key(l),
                q = l.quantity,
                unit = money(l.unit_price),
                total = money(l.line_total)
            )
        })
        .collect();
    let subtotal: i64 = lines.iter().map(|l| l.line_total).sum();
    page(
        "Cart",
        "cart",
        &format!(
            r#"{section}<h1>Your cart</h1>{error}<table id="lines"><tr><th>Item</th><th>SKU</th><th>Qty</th><th>Price</th><th>Total</th><th></th></tr>{rows}</table>
<p>Subtotal: <span id="cart-subtotal">{}</span></p>
<form id="empty-cart-form" method="post" action="/cart/empty"><button id="empty-cart" type="submit">Empty cart</button></form>
<a id="proceed-to-checkout" href="/checkout/address">Proceed to checkout</a></section>"#,
            money(subtotal)
        ),
    )
    .into_response()
}

pub(crate) fn something_went_wrong(title: &str, kind: &str) -> Response {
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        title,
        kind,
        format!(
            "<h1>Something went wrong</h1>{}",
            error_box(Some(("internal_error", "Something went wrong on our side")))
        ),
    )
}

async fn draft(state: &AppState, customer: &Customer) -> Value {
    state
        .db
        .checkout_draft(customer.id)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| json!({}))
}

fn address_form(address: &Value, error: Option<Refusal<'_>>) -> String {
    let field = |name: &str| esc(address.get(name).and_then(Value::as_str).unwrap_or(""));
    let input = |name: &str, label: &str| {
        format!(
            r#"<label for="{name}">{label}</label><input id="{name}" name="{name}" value="{}">"#,
            field(name)
        )
    };
    format!(
        r#"<h1>Shipping address</h1><p>Step 1 of 3</p>{error}<form id="address-form" method="post" action="/checkout/address">{}{}{}{}{}{}{}{}{}
<button id="continue-to-delivery" type="submit">Continue</button></form>"#,
        input("first_name", "First name"),
        input("last_name", "Last name"),
        input("address_line1", "Address"),
        input("address_line2", "Apartment, suite (optional)"),
        input("city", "City"),
        input("state", "State"),
        input("postal_code", "ZIP code"),
        input("country", "Country"),
        input("phone_number", "Phone"),
        error = error_box(error)
    )
}

async fn address_page(
    State(state): State<AppState>,
    Shopper(customer): Shopper,
    Query(q): Query<HashMap<String, String>>,
) -> Html<String> {
    let draft = draft(&state, &customer).await;
    let mut address = draft
        .get("shipping_address")
        .cloned()
        .unwrap_or_else(|| json!({"country": "US"}));
    if address.get("country").is_none() {
        address["country"] = json!("US");
    }
    page(
        "Checkout: address",
        "checkout-address",
        &address_form(&address, error_from_query(&q)),
    )
}

async fn save_address(
    State(state): State<AppState>,
    Shopper(customer): Shopper,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let address: serde_json::Map<String, Value> = form
        .into_iter()
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k, Value::String(v.trim().to_string())))
        .collect();
    let address = Value::Object(address);
    let mut draft = draft(&state, &customer).await;
    draft["shipping_address"] = address.clone();
    let checkout = checkout_from(&draft);
    if let Err(e) = api::checkout_quote(&state, &customer, &checkout).await {
        return error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Checkout: address",
            "checkout-address",
            address_form(&address, Some((&e).into())),
        );
    }
    let _ = state.db.save_checkout_draft(customer.id, &draft).await;
    see_other("/checkout/delivery")
}

fn checkout_from(draft: &Value) -> Checkout {
    Checkout {
        shipping_address: draft
            .get("shipping_address")
            .cloned()
            .unwrap_or_else(|| json!({})),
        shipping_method: draft
            .get("shipping_method")
            .cloned()
            .and_then(|m| serde_json::from_value(m).ok())
            .unwrap_or(ShippingMethod::Standard),
        promo_code: draft
            .get("promo_code")
            .and_then(Value::as_str)
            .map(str::to_string)
            .filter(|s| !s.is_empty()),
        gift_message: draft
            .get("gift_message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .filter(|s| !s.is_empty()),
        gift: draft.get("gift").and_then(Value::as_bool).unwrap_or(false),
        buyer_reference: draft
            .get("buyer_reference")
            .and_then(Value::as_str)
            .map(str::to_string)
            .filter(|s| !s.is_empty()),
        po_number: draft
            .get("po_number")
            .and_then(Value::as_str)
            .map(str::to_string)
            .filter(|s| !s.is_empty()),
        expected_total: None,
    }
}

async fn delivery_form(
    state: &AppState,
    customer: &Customer,
    draft: &Value,
    error: Option<Refusal<'_>>,
) -> String {
    let checkout = checkout_from(draft);
    let subtotal: i64 = match state.db.cart(customer.id).await {
        Ok(cart) => api::price_lines(&cart)
            .iter()
            .map(|(l, _)| l.line_total)
            .sum(),
        Err(_) => 0,
    };
    let methods: String = ShippingMethod::ALL
        .iter()
        .map(|m| {
            let checked = if *m == checkout.shipping_method { " checked" } else { "" };
            format!(
                r#"<label><input type="radio" name="shipping_method" id="shipping-{name}" value="{name}"{checked}> {label}: {price}</label>"#,
                name = m.as_str(),
                label = match m {
                    ShippingMethod::Standard => "Standard (free from $35.00)",
                    ShippingMethod::Expedited => "Expedited",
                    ShippingMethod::NextDay => "Next day",
                },
                price = money(m.price(subtotal))
            )
        })
        .collect();
    let text = |name: &str| esc(draft.get(name).and_then(Value::as_str).unwrap_or(""));
    format!(
        r#"<h1>Delivery</h1><p>Step 2 of 3</p>{error}<form id="delivery-form" method="post" action="/checkout/delivery">
<fieldset id="shipping-methods"><legend>Shipping method</legend>{methods}</fieldset>
<p><input type="checkbox" id="gift" name="gift" value="true"{gift_checked}> <label for="gift">This is a gift</label> (a gift receipt: no prices on the packing slip)</p>
<label for="gift_message">Gift message (optional, up to 240 characters)</label><textarea id="gift_message" name="gift_message" maxlength="240">{gift_message}</textarea>
<label for="promo_code">Promo code</label><input id="promo_code" name="promo_code" value="{promo}">
<label for="buyer_reference">Your reference</label><input id="buyer_reference" name="buyer_reference" value="{reference}">
<label for="po_number">PO number</label><input id="po_number" name="po_number" value="{po_number}">
<button id="continue-to-review" type="submit">Continue to review</button></form>"#,
        error = error_box(error),
        gift_checked = if checkout.gift { " checked" } else { "" },
        gift_message = text("gift_message"),
        promo = text("promo_code"),
        reference = text("buyer_reference"),
        po_number = text("po_number")
    )
}

async fn delivery_page(
    State(state): State<AppState>,
    Shopper(customer): Shopper,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let draft = draft(&state, &customer).await;
    if draft.get("shipping_address").is_none() {
        return see_other("/checkout/address");
    }
    page(
        "Checkout: delivery",
        "checkout-delivery",
        &delivery_form(&state, &customer, &draft, error_from_query(&q)).await,
    )
    .into_response()
}

async fn save_delivery(
    State(state): State<AppState>,
    Shopper(customer): Shopper,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut draft = draft(&state, &customer).await;
    for key in [
        "shipping_method",
        "gift_message",
        "promo_code",
        "buyer_reference",
        "po_number",
    ] {
        draft[key] = json!(form.get(key).map(|v| v.trim()).unwrap_or(""));
    }
    // A checkbox is sent only when ticked.
    draft["gift"] = json!(
        form.get("gift")
            .is_some_and(|v| !matches!(v.trim(), "" | "false" | "0" | "off"))
    );
    if draft["shipping_method"] == "" {
        draft["shipping_method"] = json!("standard");
    }
    if let Err(e) = api::checkout_quote(&state, &customer, &checkout_from(&draft)).await {
        let body = delivery_form(&state, &customer, &draft, Some((&e).into())).await;
        return error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Checkout: delivery",
            "checkout-delivery",
            body,
        );
    }
    let _ = state.db.save_checkout_draft(customer.id, &draft).await;
    see_other("/checkout/review")
}

/// The error codes of the delivery page's fields: a review refused for one of them (the
/// cart changed since) goes back to that page rather than the address.
const DELIVERY_ERRORS: &[&str] = &[
    "gift_option_unavailable",
    "gift_message_too_long",
    "po_number_too_long",
    "buyer_reference_too_long",
    "invalid_promo_code",
    "promo_not_applicable",
];

async fn review(state: &AppState, customer: &Customer, error: Option<(&str, &str)>) -> Response {
    let draft = draft(state, customer).await;
    let checkout = checkout_from(&draft);
    let (lines, totals, _) = match api::checkout_quote(state, customer, &checkout).await {
        Ok(quote) => quote,
        Err(e) => {
            let step = if DELIVERY_ERRORS.contains(&e.code) {
                "delivery"
            } else {
                "address"
            };
            return see_other(&format!("/checkout/{step}?{}", error_query(&e)));
        }
    };
    let body = format!(
        r#"<h1>Review your order</h1><p>Step 3 of 3</p>{error}{lines}
<table id="totals"><tr><td>Items</td><td id="subtotal" data-cents="{subtotal_cents}">{subtotal}</td></tr><tr><td>Shipping</td><td id="shipping" data-cents="{shipping_cents}">{shipping}</td></tr>
<tr><td>Tax</td><td id="tax" data-cents="{tax_cents}">{tax}</td></tr><tr><td>Discount</td><td id="discount" data-cents="{discount_cents}">-{discount}</td></tr>
<tr><th>Order total</th><th><span id="total-loading">Calculating…</span><span id="order-total" hidden data-cents="{total_cents}">{total}</span></th></tr></table>
<p>Reference: <span id="review-reference">{reference}</span></p>
<p>PO number: <span id="review-po-number">{po_number}</span></p>
<p>Gift: <span id="review-gift" data-gift="{gift}">{gift_text}</span></p>
<p id="payment">Paying with the card ending {card}{balance}</p>
<form id="place-order-form" method="post" action="/checkout/place"><input type="hidden" name="expected_total" value="{total_cents}">
<button id="place-order" type="submit">Place your order</button></form>
<script>setTimeout(()=>{{document.getElementById('total-loading').remove();document.getElementById('order-total').hidden=false;}},400);</script>"#,
        error = error_box(error),
        lines = lines_table(&lines),
        subtotal = money(totals.subtotal),
        shipping = money(totals.shipping),
        tax = money(totals.tax),
        discount = money(totals.discount),
        total = money(totals.total),
        subtotal_cents = totals.subtotal,
        shipping_cents = totals.shipping,
        tax_cents = totals.tax,
        discount_cents = totals.discount,
        total_cents = totals.total,
        reference = esc(checkout.buyer_reference.as_deref().unwrap_or("")),
        po_number = esc(checkout.po_number().unwrap_or("")),
        gift = checkout.gift,
        gift_text = gift_text(checkout.gift),
        card = esc(&customer.card_last4),
        balance = if customer.gift_balance_cents > 0 {
            format!(
                " (gift-card balance {} not applied)",
                money(customer.gift_balance_cents)
            )
        } else {
            String::new()
        },
    );
    page("Checkout: review", "checkout-review", &body).into_response()
}

async fn review_page(State(state): State<AppState>, Shopper(customer): Shopper) -> Response {
    review(&state, &customer, None).await
}

#[derive(Deserialize)]
struct PlaceForm {
    expected_total: Option<i64>,
}

async fn place(
    State(state): State<AppState>,
    Shopper(customer): Shopper,
    Form(form): Form<PlaceForm>,
) -> Response {
    let draft = draft(&state, &customer).await;
    let checkout = Checkout {
        expected_total: form.expected_total,
        ..checkout_from(&draft)
    };
    match api::place_order(&state, &customer, &checkout).await {
        Ok(order) => {
            let _ = state
                .db
                .save_checkout_draft(
                    customer.id,
                    &json!({"shipping_address": checkout.shipping_address}),
                )
                .await;
            see_other(&format!("/orders/{}/confirmation", order.id))
        }
        Err(e) => {
            // The review again, with the error and the JSON API's status for it.
            let mut response = review(&state, &customer, Some((e.code, &e.message))).await;
            if response.status() == StatusCode::OK {
                *response.status_mut() = e.status();
            }
            response
        }
    }
}

/// What the review and order pages say of the gift option.
fn gift_text(gift: bool) -> &'static str {
    if gift {
        "Yes: a gift receipt, no prices on the packing slip"
    } else {
        "No"
    }
}

/// The date part of a timestamp (`2026-11-24T…` → `2026-11-24`).
pub(crate) fn date_of(timestamp: &str) -> &str {
    timestamp.get(..10).unwrap_or(timestamp)
}

async fn confirmation_page(
    State(state): State<AppState>,
    Shopper(customer): Shopper,
    Path(id): Path<String>,
) -> Response {
    let Ok(Some(order)) = state.db.customer_order(customer.id, &id).await else {
        return not_found();
    };
    page(
        "Order placed",
        "confirmation",
        &format!(
            r#"<h1>Thank you, your order is placed</h1><p>Order number: <strong id="merchant-order-id">{id}</strong></p>
<p>Total charged: <span id="confirmation-total" data-cents="{cents}">{total}</span></p>
<p>Estimated delivery: <time id="estimated-delivery" datetime="{eta_full}">{eta}</time></p>
<p>Your reference: <span id="confirmation-reference">{reference}</span></p><p><a id="track-order" href="/orders/{id}">Track this order</a></p>"#,
            id = esc(&order.id),
            cents = order.total,
            total = money(order.total),
            eta_full = esc(&order.estimated_delivery),
            eta = esc(date_of(&order.estimated_delivery)),
            reference = esc(order.buyer_reference.as_deref().unwrap_or(""))
        ),
    )
    .into_response()
}

/// The shopper's orders; `?reference=` keeps those placed with that buyer reference
/// (exactly). Each row carries `data-order-id`, `data-reference` and `data-status`.
async fn history_page(
    State(state): State<AppState>,
    Shopper(customer): Shopper,
    Query(q): Query<crate::api::ReferenceQuery>,
) -> Response {
    let reference = q.given();
    let Ok(orders) = state.db.orders(Some(customer.id), reference, None).await else {
        return something_went_wrong("Orders", "orders");
    };
    let rows: String = orders
        .iter()
        .map(|o| {
            format!(
                r#"<tr class="order-row" data-order-id="{id}" data-reference="{reference}" data-status="{status}"><td class="order-id"><a href="/orders/{id}">{id}</a></td><td class="placed">{placed}</td><td class="reference">{reference}</td><td class="total">{total}</td><td class="status">{status}</td></tr>"#,
                id = esc(&o.id),
                placed = esc(&o.placed_at),
                reference = esc(o.buyer_reference.as_deref().unwrap_or("")),
                total = money(o.total),
                status = esc(&o.status)
            )
        })
        .collect();
    page(
        "Your orders",
        "orders",
        &format!(
            r#"<h1>Your orders</h1><form id="order-search" action="/orders"><label for="reference">Find by your reference</label><input id="reference" name="reference" value="{}"><button type="submit">Search</button></form>
<table id="orders" data-count="{}"><tr><th>Order</th><th>Placed</th><th>Reference</th><th>Total</th><th>Status</th></tr>{rows}</table>{}"#,
            esc(reference.unwrap_or("")),
            orders.len(),
            if orders.is_empty() { r#"<p id="no-orders">No orders found.</p>"# } else { "" }
        ),
    )
    .into_response()
}

/// One order: its status (`placed`, `shipped`, `delivered` or `cancelled`, also in
/// `data-status`), why it was cancelled, a `.shipment` per parcel with its carrier and
/// tracking number (as text and in `data-carrier` / `data-tracking-number`), and for a
/// delivered order its returns (`.order-return`) and a `#return-items` link.
async fn order_page(
    State(state): State<AppState>,
    Shopper(customer): Shopper,
    Path(id): Path<String>,
) -> Response {
    let Ok(Some(order)) = state.db.customer_order(customer.id, &id).await else {
        return not_found();
    };
    let shipments: String = order
        .shipments
        .iter()
        .map(|s| {
            let delivered = s.delivered_at.is_some();
            format!(
                r#"<li class="shipment" data-shipment-id="{id}" data-carrier="{carrier}" data-tracking-number="{number}" data-status="{status}"><span class="carrier">{carrier}</span> <span class="tracking-number">{number}</span> — <span class="shipment-status">{label}</span></li>"#,
                id = esc(&s.id),
                carrier = esc(&s.carrier),
                number = esc(&s.tracking_number),
                status = if delivered { "delivered" } else { "in_transit" },
                label = if delivered { "delivered" } else { "in transit" }
            )
        })
        .collect();
    let cancelled = order
        .cancel_reason
        .as_deref()
        .map(|reason| {
            format!(
                r#"<p id="cancel-reason" data-reason="{}">{}</p>"#,
                esc(reason),
                match reason {
                    "retailer_cancelled" => "We cancelled this order: we could not ship it.",
                    "cancelled_by_customer" => "You cancelled this order.",
                    _ => "This order was cancelled.",
                }
            )
        })
        .unwrap_or_default();
    let returns = if order.status == "delivered" || !order.returns.is_empty() {
        let items: String = order
            .returns
            .iter()
            .map(|r| {
                format!(
                    r#"<li class="order-return" data-return-id="{id}" data-status="{status}"><a href="/returns/{id}">{id}</a> — {status}</li>"#,
                    id = esc(&r.id),
                    status = esc(&r.status)
                )
            })
            .collect();
        let link = if order.status == "delivered" {
            format!(
                r#"<p><a id="return-items" href="/orders/{}/return">Return items</a></p>"#,
                esc(&order.id)
            )
        } else {
            String::new()
        };
        format!(
            r#"<h2>Returns</h2>{link}<ul id="order-returns" data-count="{}">{items}</ul>"#,
            order.returns.len()
        )
    } else {
        String::new()
    };
    page(
        "Order",
        "order",
        &format!(
            r#"<h1>Order <span id="merchant-order-id">{id}</span></h1><p>Status: <strong id="order-status" data-status="{status}">{status}</strong></p>{cancelled}
<p>Your reference: <span id="order-reference">{reference}</span></p>
<p>PO number: <span id="order-po-number">{po_number}</span></p>
<p>Gift: <span id="order-gift" data-gift="{gift}">{gift_text}</span></p>
<p>Estimated delivery: <time id="estimated-delivery" datetime="{eta_full}">{eta}</time></p>{lines}
<p>Total: <span id="order-total-charged" data-cents="{cents}">{total}</span></p><h2>Shipments</h2><ul id="shipments" data-count="{count}">{shipments}</ul>{none}{returns}"#,
            id = esc(&order.id),
            status = esc(&order.status),
            reference = esc(order.buyer_reference.as_deref().unwrap_or("")),
            po_number = esc(order.po_number.as_deref().unwrap_or("")),
            gift = order.gift,
            gift_text = gift_text(order.gift),
            eta_full = esc(&order.estimated_delivery),
            eta = esc(date_of(&order.estimated_delivery)),
            lines = lines_table(&order.lines),
            cents = order.total,
            total = money(order.total),
            count = order.shipments.len(),
            none = if order.shipments.is_empty() {
                r#"<p id="no-shipments">Not shipped yet.</p>"#
            } else {
                ""
            }
        ),
    )
    .into_response()
}
