//! The store's HTML face for the catalogue: the home page, product pages at `/dp/{id}`
//! (also `/{slug}/dp/{id}`; `?opt_{Label}=` chooses a variant and `?offer=` a seller),
//! search at `/search?q=` and categories at `/c/{slug}`. Search and category pages are
//! not product pages, and say so in their markup (`data-page`).

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::api::{AppState, StoreError};
use crate::catalogue::{Catalogue, Offer, Product, Variant};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/dp/{id}", get(product_page))
        .route("/{slug}/dp/{id}", get(product_page_with_slug))
        .route("/search", get(search))
        .route("/c/{slug}", get(category))
        .route("/returns/{id}/label", get(return_label))
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

pub(crate) fn money(cents: i64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d2530;background:#f6f7f9}\
header{background:#16324f;color:#fff;padding:.8rem 1.5rem;display:flex;gap:1.5rem;align-items:center}\
header a{color:#fff;text-decoration:none;font-weight:600}header input{min-width:10rem}main{max-width:64rem;margin:1.5rem auto;padding:0 1rem}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(14rem,1fr));gap:1rem}\
.card{background:#fff;border-radius:.5rem;padding:1rem;box-shadow:0 1px 3px #0002}.price{font-weight:700;color:#0b6e3a}\
.swatch{display:inline-block;border:1px solid #889;border-radius:.3rem;padding:.3rem .7rem;background:#fff;margin:.2rem;color:inherit;text-decoration:none}\
.swatch.selected{border:2px solid #16324f;font-weight:700}.error{background:#fde8e8;color:#8a1c1c;padding:.6rem;border-radius:.4rem}\
#cookie-banner{position:fixed;bottom:1rem;left:1rem;right:1rem;z-index:9}label{display:block;margin-top:.5rem}\
input,select,textarea{padding:.35rem;min-width:16rem}button{padding:.45rem 1rem;margin-top:.6rem}\
input[type=checkbox]{min-width:0}input[type=checkbox]+label{display:inline}table{border-collapse:collapse}td,th{padding:.3rem .6rem;border-bottom:1px solid #dde}";

pub(crate) fn page(title: &str, kind: &str, body: &str) -> Html<String> {
    let categories: String = Catalogue::get()
        .categories
        .iter()
        .map(|c| format!(r#"<a href="/c/{}">{}</a>"#, esc(&c.slug), esc(&c.name)))
        .collect();
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{} · Errand Demo Store</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>
<body data-page="{kind}"><header><a href="/">Errand Demo Store</a>{categories}
<a href="/cart" id="cart-link">Cart</a><a href="/orders">Orders</a><a href="/returns">Returns</a><a href="/signin">Sign in</a>
<form action="/search" role="search"><label for="q" hidden>Search</label><input id="q" name="q" placeholder="Search"></form></header>
<div id="cookie-banner" class="card">We use cookies to keep you signed in and remember your cart.
<button id="accept-cookies" type="button">Accept</button></div>
<script>if(document.cookie.includes('cookies_ok=1'))document.getElementById('cookie-banner').remove();
else document.getElementById('accept-cookies').onclick=()=>{{document.cookie='cookies_ok=1; path=/';document.getElementById('cookie-banner').remove();}};</script>
<main>{body}</main></body></html>"#,
        esc(title)
    ))
}

fn card(p: &Product) -> String {
    let from = p.variants.iter().map(|v| v.price_cents).min().unwrap_or(0);
    format!(
        r#"<article class="card" data-product-id="{id}"><a href="/dp/{id}">{img}<h3>{title}</h3></a><p>{brand}</p><p class="price">{price}</p></article>"#,
        id = esc(&p.id),
        img = product_image(p, 180),
        title = esc(&p.title),
        brand = esc(&p.brand),
        price = money(from)
    )
}

/// A generated SVG picture (nothing is downloaded): the product's initials on a colour
/// derived from its id.
fn product_image(p: &Product, size: u32) -> String {
    let hue =
        p.id.bytes()
            .fold(0u32, |h, b| (h * 31 + u32::from(b)) % 360);
    let initials: String = p
        .title
        .split_whitespace()
        .filter_map(|w| w.chars().next())
        .filter(|c| c.is_alphanumeric())
        .take(2)
        .collect();
    format!(
        r##"<svg role="img" aria-label="{title}" width="{size}" height="{size}" viewBox="0 0 100 100"><rect width="100" height="100" rx="8" fill="hsl({hue},55%,45%)"/><text x="50" y="62" font-size="34" text-anchor="middle" fill="#fff" font-family="sans-serif">{initials}</text></svg>"##,
        title = esc(&p.title),
        initials = esc(&initials)
    )
}

async fn home() -> Html<String> {
    let cards: String = Catalogue::get().search("").into_iter().map(card).collect();
    page(
        "Home",
        "home",
        &format!(r#"<h1>Everything, delivered</h1><div class="grid">{cards}</div>"#),
    )
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
}

async fn search(Query(q): Query<SearchQuery>) -> Html<String> {
    let query = q.q.unwrap_or_default();
    let cards: String = Catalogue::get()
        .search(&query)
        .into_iter()
        .map(card)
        .collect();
    let body = if cards.is_empty() {
        format!("<h1>No results for “{}”</h1>", esc(&query))
    } else {
        format!(
            r#"<h1>Results for “{}”</h1><div class="grid">{cards}</div>"#,
            esc(&query)
        )
    };
    page("Search", "search", &body)
}

async fn category(Path(slug): Path<String>) -> Response {
    let catalogue = Catalogue::get();
    let Some(cat) = catalogue.categories.iter().find(|c| c.slug == slug) else {
        return not_found();
    };
    let cards: String = catalogue
        .products
        .iter()
        .filter(|p| p.category == slug)
        .map(card)
        .collect();
    page(
        &cat.name,
        "category",
        &format!(
            r#"<h1>{}</h1><div class="grid">{cards}</div>"#,
            esc(&cat.name)
        ),
    )
    .into_response()
}

pub(crate) fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        page(
            "Not found",
            "not-found",
            "<h1>We couldn't find that page</h1>",
        ),
    )
        .into_response()
}

async fn product_page_with_slug(
    State(state): State<AppState>,
    Path((_slug, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    render_product(&state, &id, &q).await
}

async fn product_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    render_product(&state, &id, &q).await
}

/// Percent-encodes text for a URL's path or query.
pub(crate) fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A refusal as a page shows it: the store's error code (the JSON API's `error.code`),
/// its message, and for `out_of_stock` and `purchase_limit_exceeded` how many more units
/// the cart could take (the JSON API's `details.available`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal<'a> {
    pub(crate) code: &'a str,
    pub(crate) message: &'a str,
    pub(crate) available: Option<i64>,
}

impl<'a> From<(&'a str, &'a str)> for Refusal<'a> {
    fn from((code, message): (&'a str, &'a str)) -> Self {
        Refusal {
            code,
            message,
            available: None,
        }
    }
}

impl<'a> From<&'a StoreError> for Refusal<'a> {
    fn from(e: &'a StoreError) -> Self {
        Refusal {
            code: e.code,
            message: &e.message,
            available: e.available(),
        }
    }
}

/// An error box (`#error`) when there is one: `data-error` (and `data-code`) hold the
/// store's error code, `data-available` (when known) how many more units the cart could
/// take, the text its message.
pub(crate) fn error_box<'a>(error: Option<impl Into<Refusal<'a>>>) -> String {
    error
        .map(|e| {
            let e = e.into();
            format!(
                r#"<div id="error" role="alert" class="error" data-error="{code}" data-code="{code}"{available}>{}</div>"#,
                esc(e.message),
                code = esc(e.code),
                available = e
                    .available
                    .map(|n| format!(r#" data-available="{n}""#))
                    .unwrap_or_default(),
            )
        })
        .unwrap_or_default()
}

/// The `?error=<code>&message=<text>[&available=<n>]` a page was redirected to after a
/// failed form.
pub(crate) fn error_from_query(q: &HashMap<String, String>) -> Option<Refusal<'_>> {
    let code = q
        .get("error")
        .map(String::as_str)
        .filter(|c| !c.is_empty())?;
    Some(Refusal {
        code,
        message: q.get("message").map(String::as_str).unwrap_or(code),
        available: q.get("available").and_then(|n| n.parse().ok()),
    })
}

/// The query that shows an error after a redirect.
pub(crate) fn error_query<'a>(error: impl Into<Refusal<'a>>) -> String {
    let e = error.into();
    let mut query = format!(
        "error={}&message={}",
        url_encode(e.code),
        url_encode(e.message)
    );
    if let Some(n) = e.available {
        query.push_str(&format!("&available={n}"));
    }
    query
}

/// When an offer ships, in words: `today`, `in 1 day`, `in 3 days`.
fn handling_in_words(days: i64) -> String {
    match days {
        ..=0 => "today".into(),
        1 => "in 1 day".into(),
        n => format!("in {n} days"),
    }
}

/// What the product page shows chosen: one value per dimension (from `opt_<Label>`, as
/// the add-to-cart form names them) and the seller (`offer`).
struct Selection<'a> {
    options: Vec<(&'a str, &'a str)>,
    offer: &'a Offer,
}

impl<'a> Selection<'a> {
    fn from_query(p: &'a Product, q: &HashMap<String, String>) -> Self {
        let options = p
            .dimensions
            .iter()
            .filter_map(|d| {
                let wanted = q.iter().find_map(|(k, v)| {
                    k.strip_prefix("opt_")
                        .filter(|l| l.eq_ignore_ascii_case(&d.label))
                        .map(|_| v)
                })?;
                // Unknown values are ignored: the shopper chooses again.
                let value = d.values.iter().find(|v| v.eq_ignore_ascii_case(wanted))?;
                Some((d.label.as_str(), value.as_str()))
            })
            .collect();
        let offer = q
            .get("offer")
            .and_then(|o| p.offer(Some(o)))
            .or_else(|| p.offer(None))
            .unwrap_or(&p.offers[0]);
        Selection { options, offer }
    }

    fn value(&self, label: &str) -> Option<&'a str> {
        self.options
            .iter()
            .find(|(l, _)| *l == label)
            .map(|(_, v)| *v)
    }

    /// The variant, once every dimension is chosen.
    fn variant(&self, p: &'a Product) -> Option<&'a Variant> {
        let choice: Vec<(String, String)> = self
            .options
            .iter()
            .map(|(l, v)| (l.to_string(), v.to_string()))
            .collect();
        p.variant(&choice).ok()
    }

    /// The product page with this selection, one dimension changed or another seller.
    fn url(&self, p: &Product, change: Option<(&str, &str)>, offer: Option<&str>) -> String {
        let mut params: Vec<String> = p
            .dimensions
            .iter()
            .filter_map(|d| {
                let value = match change {
                    Some((label, value)) if label == d.label => Some(value),
                    _ => self.value(&d.label),
                }?;
                Some(format!(
                    "opt_{}={}",
                    url_encode(&d.label),
                    url_encode(value)
                ))
            })
            .collect();
        let offer = offer.unwrap_or(&self.offer.offer_id);
        if offer != p.buy_box_offer_id {
            params.push(format!("offer={}", url_encode(offer)));
        }
        if params.is_empty() {
            format!("/dp/{}", url_encode(&p.id))
        } else {
            format!("/dp/{}?{}", url_encode(&p.id), params.join("&"))
        }
    }
}

/// The product page. Swatches and sellers are links that show the page again with that
/// choice, so `#price` and `#availability` are always the chosen variant's, rendered by
/// the server.
async fn render_product(state: &AppState, id: &str, q: &HashMap<String, String>) -> Response {
    let Some(p) = Catalogue::get().product(id) else {
        return not_found();
    };
    let selection = Selection::from_query(p, q);
    let variant = selection.variant(p);
    let dimensions: String = p
        .dimensions
        .iter()
        .map(|d| {
            let swatches: String = d
                .values
                .iter()
                .map(|v| {
                    let selected = selection.value(&d.label) == Some(v.as_str());
                    format!(
                        r#"<a class="swatch{class}" data-dimension="{l}" data-value="{v}" href="{href}"{current}>{v}</a>"#,
                        class = if selected { " selected" } else { "" },
                        current = if selected { r#" aria-current="true""# } else { "" },
                        l = esc(&d.label),
                        v = esc(v),
                        href = esc(&selection.url(p, Some((&d.label, v)), None)),
                    )
                })
                .collect();
            format!(
                r#"<fieldset id="variant-{l}" data-selected="{chosen}"><legend>{l}</legend>{swatches}</fieldset>"#,
                l = esc(&d.label),
                chosen = esc(selection.value(&d.label).unwrap_or(""))
            )
        })
        .collect();
    // Until every option is chosen, prices are the cheapest variant's.
    let base = variant
        .map(|v| v.price_cents)
        .unwrap_or_else(|| p.variants.iter().map(|v| v.price_cents).min().unwrap_or(0));
    let price = base + selection.offer.price_delta_cents;
    let availability = match variant {
        Some(v) => {
            let stock = state.db.stock(&v.sku).await.unwrap_or(0);
            format!(
                r#"<p id="availability" data-available="{}" data-stock="{stock}">{}</p>"#,
                stock > 0,
                if stock > 0 {
                    "In stock"
                } else {
                    "Out of stock"
                }
            )
        }
        None => {
            let missing: Vec<&str> = p
                .dimensions
                .iter()
                .filter(|d| selection.value(&d.label).is_none())
                .map(|d| d.label.as_str())
                .collect();
            format!(
                r#"<p id="availability" data-missing="{}">Choose a {} to see availability</p>"#,
                esc(&missing.join(",")),
                esc(&missing.join(" and "))
            )
        }
    };
    let offers: String = p
        .offers
        .iter()
        .map(|o| {
            let selected = o.offer_id == selection.offer.offer_id;
            format!(
                r#"<tr class="offer{class}" data-offer-id="{id}" data-price-cents="{cents}" data-handling-days="{days}" data-condition="{cond}"><td>{seller}</td><td>{cond}</td><td class="price">{price}</td><td>{rating}</td><td>{ship}</td><td>{choose}</td></tr>"#,
                class = if selected { " selected" } else { "" },
                id = esc(&o.offer_id),
                cents = base + o.price_delta_cents,
                days = o.handling_days,
                seller = esc(&o.seller_name),
                cond = esc(&o.condition),
                price = money(base + o.price_delta_cents),
                rating = if o.first_party { String::new() } else { format!("{}% positive ({} ratings)", o.positive_pct, o.rating_count) },
                ship = {
                    let when = handling_in_words(o.handling_days);
                    if o.ships_from_abroad {
                        format!("Ships from abroad {when}")
                    } else if o.fast_shipping {
                        format!("Fast shipping, ships {when}")
                    } else {
                        format!("Ships {when}")
                    }
                },
                choose = if selected {
                    "Chosen".to_string()
                } else {
                    format!(
                        r#"<a class="choose-offer" href="{}">Choose</a>"#,
                        esc(&selection.url(p, None, Some(&o.offer_id)))
                    )
                },
            )
        })
        .collect();
    let hidden: String = p
        .dimensions
        .iter()
        .map(|d| {
            format!(
                r#"<input type="hidden" name="opt_{l}" id="opt-{l}" value="{v}">"#,
                l = esc(&d.label),
                v = esc(selection.value(&d.label).unwrap_or(""))
            )
        })
        .collect();
    let offer_options: String = p
        .offers
        .iter()
        .map(|o| {
            let selected = if o.offer_id == selection.offer.offer_id {
                " selected"
            } else {
                ""
            };
            format!(
                r#"<option value="{id}" data-href="{href}"{selected}>{seller} ({cond})</option>"#,
                id = esc(&o.offer_id),
                href = esc(&selection.url(p, None, Some(&o.offer_id))),
                seller = esc(&o.seller_name),
                cond = esc(&o.condition)
            )
        })
        .collect();
    let quantity = q
        .get("quantity")
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1);
    let body = format!(
        r#"<article class="card" itemscope itemtype="https://schema.org/Product" data-product-id="{id}">{img}
<h1 id="product-title" itemprop="name">{title}</h1><p>by <span itemprop="brand">{brand}</span></p>
<p id="price" class="price" data-price-cents="{price_cents}"{sku} data-offer-id="{offer_id}">{price}</p>{availability}<p>{desc}</p>{dimensions}
<p>Limit {limit} per order.{final_sale}{no_gift}</p>
{error}<form id="add-to-cart-form" method="post" action="/cart/add"><input type="hidden" name="product_id" value="{id}">{hidden}
<label for="quantity">Quantity</label><input id="quantity" name="quantity" type="number" min="1" value="{quantity}">
<label for="offer">Seller</label><select id="offer" name="offer_id">{offer_options}</select>
<button id="add-to-cart" type="submit">Add to cart</button></form>
<script>document.getElementById('offer').addEventListener('change',e=>{{location.href=e.target.selectedOptions[0].dataset.href;}});</script>
<h2>Offers</h2><table id="offers"><tr><th>Seller</th><th>Condition</th><th>Price</th><th>Rating</th><th>Shipping</th><th></th></tr>{offers}</table></article>"#,
        id = esc(&p.id),
        img = product_image(p, 240),
        title = esc(&p.title),
        brand = esc(&p.brand),
        price_cents = price,
        sku = variant
            .map(|v| format!(r#" data-sku="{}""#, esc(&v.sku)))
            .unwrap_or_default(),
        offer_id = esc(&selection.offer.offer_id),
        price = money(price),
        desc = esc(&p.description),
        limit = p.purchase_limit,
        final_sale = if p.final_sale {
            " Final sale: not returnable."
        } else {
            ""
        },
        no_gift = if p.gift_options {
            ""
        } else {
            " Gift options are not available for this item."
        },
        error = error_box(error_from_query(q)),
    );
    page(&p.title, "product", &body).into_response()
}

/// A printable prepaid label for a return that is not denied (the same as the PDF).
async fn return_label(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.db.return_record(&id).await {
        Ok(Some(record)) if record.status != "denied" => {
            let items: String = record
                .lines
                .iter()
                .map(|l| {
                    format!(
                        r#"<li class="label-line" data-sku="{sku}" data-quantity="{q}">{q} × {sku}</li>"#,
                        sku = esc(&l.sku),
                        q = l.quantity
                    )
                })
                .collect();
            page(
                "Return label",
                "return-label",
                &format!(
                    r#"<article class="card" id="return-label"><h1>Prepaid return label</h1>
<p>Return <strong>{id}</strong> for order <strong>{order}</strong></p>
<p>Ship to: {address}</p>
<p style="font-family:monospace;font-size:2rem;letter-spacing:.3rem">*{id}*</p>
<p>Items: {skus}</p><ul id="label-lines">{items}</ul><button onclick="window.print()">Print</button></article>"#,
                    id = esc(&record.id),
                    order = esc(&record.order_id),
                    address = esc(&crate::label::RETURN_ADDRESS.join(", ")),
                    skus = esc(&record.skus.join(", "))
                ),
            )
            .into_response()
        }
        Ok(_) => not_found(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a return");
            (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn escaping() {
        assert_eq!(
            super::esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(super::money(1999), "$19.99");
        assert_eq!(super::money(5), "$0.05");
    }

    #[test]
    fn error_boxes_and_their_redirect_query() {
        let out_of_stock = super::Refusal {
            code: "out_of_stock",
            message: "Only 2 left & more",
            available: Some(2),
        };
        assert_eq!(
            super::error_query(out_of_stock),
            "error=out_of_stock&message=Only%202%20left%20%26%20more&available=2"
        );
        assert!(super::error_box(Some(out_of_stock)).contains(
            r#"class="error" data-error="out_of_stock" data-code="out_of_stock" data-available="2">Only 2 left &amp; more<"#
        ));
        assert!(!super::error_box(Some(("cart_empty", "Empty"))).contains("data-available"));
        assert_eq!(super::handling_in_words(0), "today");
        assert_eq!(super::handling_in_words(1), "in 1 day");
        assert_eq!(super::handling_in_words(7), "in 7 days");
    }
}
