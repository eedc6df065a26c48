//! Returns through the pages, on the same logic as the JSON API: a delivered order's
//! return form (`/orders/{id}/return`: a reason, how many of each item, an optional
//! reference and notes), the return's page (`/returns/{id}`: status, decision, lines,
//! refund once credited, the label as a PDF), and the shopper's returns, searchable by
//! reference (`/returns?reference=`). A refusal shows in `#error` with the JSON API's
//! error code in `data-error` and `data-code`.

use std::collections::HashMap;

use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::api::{self, AppState, ReturnLineRequest, ReturnRequest, StoreError};
use crate::db::{Customer, ReturnError, ReturnRecord, Returnable};
use crate::pages::{error_box, esc, money, not_found, page};
use crate::shop::{Shopper, date_of, error_page, see_other, something_went_wrong};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/orders/{id}/return",
            get(return_form_page).post(submit_return),
        )
        .route("/returns", get(returns_page))
        .route("/returns/{id}", get(return_page))
        .route("/returns/{id}/label.pdf", get(label_pdf))
}

/// What the shopper entered in the return form, shown again after a refusal.
#[derive(Default)]
struct Entered {
    reason: String,
    reference: String,
    notes: String,
    /// `qty_{sku}` by SKU, as typed.
    quantities: HashMap<String, String>,
}

fn reason_label(reason: &str) -> &str {
    api::RETURN_REASONS
        .iter()
        .find(|(r, _)| *r == reason)
        .map_or(reason, |(_, label)| label)
}

fn form_html(returnable: &Returnable, entered: &Entered, error: Option<(&str, &str)>) -> String {
    let catalogue = crate::catalogue::Catalogue::get();
    let id = esc(&returnable.order_id);
    let reasons: String = api::RETURN_REASONS
        .iter()
        .map(|(value, label)| {
            let selected = if *value == entered.reason {
                " selected"
            } else {
                ""
            };
            format!(r#"<option value="{value}"{selected}>{label}</option>"#)
        })
        .collect();
    let skus = returnable.skus();
    let rows: String = skus
        .iter()
        .map(|s| {
            let final_sale = catalogue
                .product(&s.product_id)
                .is_some_and(|p| p.final_sale);
            format!(
                r#"<tr class="return-line" data-sku="{sku}" data-product-id="{product}" data-bought="{bought}" data-remaining="{remaining}" data-final-sale="{final_sale}"><td class="title">{title}{note}</td><td class="sku">{sku}</td><td class="bought">{bought}</td><td class="remaining">{remaining}</td>
<td><input id="qty_{sku}" class="return-quantity" name="qty_{sku}" type="number" min="0" max="{remaining}" value="{value}" aria-label="How many {title} to return"></td></tr>"#,
                sku = esc(&s.sku),
                product = esc(&s.product_id),
                title = esc(&s.title),
                bought = s.bought,
                remaining = s.remaining,
                note = if final_sale { " (final sale)" } else { "" },
                value = esc(
                    entered
                        .quantities
                        .get(&s.sku)
                        .map(String::as_str)
                        .unwrap_or("0")
                ),
            )
        })
        .collect();
    let nothing_left = skus.iter().all(|s| s.remaining == 0);
    format!(
        r#"<h1>Return items</h1><p>Order <a id="merchant-order-id" href="/orders/{id}">{id}</a></p>{error}{nothing}
<form id="return-form" method="post" action="/orders/{id}/return">
<label for="reason">Why are you returning them?</label><select id="reason" name="reason"><option value="">Choose a reason</option>{reasons}</select>
<table id="return-lines" data-count="{count}"><tr><th>Item</th><th>SKU</th><th>Bought</th><th>Returnable</th><th>Return</th></tr>{rows}</table>
<label for="reference">Your reference (optional)</label><input id="reference" name="reference" maxlength="100" value="{reference}">
<label for="notes">Notes (optional)</label><textarea id="notes" name="notes" maxlength="1000">{notes}</textarea>
<button id="request-return" type="submit">Request return</button></form>"#,
        error = error_box(error),
        nothing = if nothing_left {
            r#"<p id="nothing-to-return">Everything in this order has been returned.</p>"#
        } else {
            ""
        },
        count = skus.len(),
        reference = esc(&entered.reference),
        notes = esc(&entered.notes),
    )
}

/// The return form of a delivered order within its return window; otherwise the page
/// says why not (`#error`: `not_delivered`, `return_window_closed`).
async fn render_form(
    state: &AppState,
    customer: &Customer,
    order_id: &str,
    entered: &Entered,
    error: Option<StoreError>,
) -> Response {
    const TITLE: &str = "Return items";
    const KIND: &str = "return-request";
    match state
        .db
        .returnable(customer.id, order_id, state.clock)
        .await
    {
        Ok(returnable) => {
            let status = error.as_ref().map_or(StatusCode::OK, StoreError::status);
            let shown = error.as_ref().map(|e| (e.code, e.message.as_str()));
            error_page(status, TITLE, KIND, form_html(&returnable, entered, shown))
        }
        Err(ReturnError::NotFound) => not_found(),
        Err(e) => {
            let e = api::return_error(order_id, e);
            if e.status() == StatusCode::INTERNAL_SERVER_ERROR {
                return something_went_wrong(TITLE, KIND);
            }
            let body = format!(
                r#"<h1>Return items</h1><p>Order <a id="merchant-order-id" href="/orders/{id}">{id}</a></p>{}"#,
                error_box(Some(&e)),
                id = esc(order_id),
            );
            error_page(e.status(), TITLE, KIND, body)
        }
    }
}

async fn return_form_page(
    State(state): State<AppState>,
    Shopper(customer): Shopper,
    Path(id): Path<String>,
) -> Response {
    render_form(&state, &customer, &id, &Entered::default(), None).await
}

/// Requests the return the form describes; on success, to the return's page (also when
/// the reference finds a return made before).
async fn submit_return(
    State(state): State<AppState>,
    Shopper(customer): Shopper,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| {
        form.get(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let entered = Entered {
        reason: field("reason"),
        reference: field("reference"),
        notes: field("notes"),
        quantities: form
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("qty_")?.to_string(), v.trim().to_string())))
            .collect(),
    };
    let mut lines = Vec::new();
    let mut unreadable = None;
    for (sku, quantity) in &entered.quantities {
        match quantity.parse::<i64>() {
            _ if quantity.is_empty() => {}
            Ok(0) => {}
            Ok(quantity) => lines.push(ReturnLineRequest {
                sku: sku.clone(),
                quantity,
            }),
            Err(_) => unreadable = Some(sku.clone()),
        }
    }
    lines.sort_by(|a, b| a.sku.cmp(&b.sku));
    let refused = if let Some(sku) = unreadable {
        Some(StoreError::unprocessable(
            "invalid_quantity",
            format!("Enter how many of {sku} to return, as a number"),
        ))
    } else if lines.is_empty() {
        Some(StoreError::unprocessable(
            "no_items_chosen",
            "Choose how many of each item to return",
        ))
    } else {
        None
    };
    if let Some(error) = refused {
        return render_form(&state, &customer, &id, &entered, Some(error)).await;
    }
    let request = ReturnRequest {
        reason: entered.reason.clone(),
        reference: Some(entered.reference.clone()),
        lines,
        skus: vec![],
        notes: Some(entered.notes.clone()),
    };
    match api::create_return(&state, &customer, &id, &request).await {
        Ok((_, record)) => see_other(&format!("/returns/{}", record.id)),
        Err(e) => render_form(&state, &customer, &id, &entered, Some(e)).await,
    }
}

/// A return's page: `#return-status[data-status]` (`approved`, `received`, `credited`,
/// `denied`), `#return-decision`, `.return-line` rows, `#return-refund[data-cents]` once
/// credited, and the label links.
async fn return_page(
    State(state): State<AppState>,
    Shopper(customer): Shopper,
    Path(id): Path<String>,
) -> Response {
    let record = match state.db.customer_return(customer.id, &id).await {
        Ok(Some(record)) => record,
        Ok(None) => return not_found(),
        Err(_) => return something_went_wrong("Return", "return"),
    };
    page("Return", "return", &return_html(&record)).into_response()
}

fn return_html(r: &ReturnRecord) -> String {
    let catalogue = crate::catalogue::Catalogue::get();
    let rows: String = r
        .lines
        .iter()
        .map(|l| {
            format!(
                r#"<tr class="return-line" data-sku="{sku}" data-product-id="{product}" data-quantity="{q}" data-unit-price="{unit}"><td class="title">{title}</td><td class="sku">{sku}</td><td class="quantity">{q}</td><td class="unit-price">{price}</td></tr>"#,
                sku = esc(&l.sku),
                product = esc(&l.product_id),
                title = esc(catalogue
                    .product(&l.product_id)
                    .map_or("", |p| p.title.as_str())),
                q = l.quantity,
                unit = l.unit_price,
                price = money(l.unit_price),
            )
        })
        .collect();
    let time = |id: &str, at: &str| {
        format!(
            r#"<time id="{id}" datetime="{full}">{date}</time>"#,
            full = esc(at),
            date = esc(date_of(at))
        )
    };
    let received = match &r.received_at {
        Some(at) => format!("<p>Received: {}</p>", time("return-received-at", at)),
        None if r.status == "denied" => String::new(),
        None => r#"<p id="return-not-received">We have not received the parcel yet.</p>"#.into(),
    };
    let refund = match (r.refund, &r.credited_at) {
        (Some(cents), Some(at)) => format!(
            r#"<p>Refund: <span id="return-refund" data-cents="{cents}">{}</span>, credited {}</p>"#,
            money(cents),
            time("return-credited-at", at)
        ),
        _ if r.status == "denied" => {
            r#"<p id="no-refund">No refund: the return was denied.</p>"#.into()
        }
        _ => {
            r#"<p id="refund-pending">The refund is credited once we have received the parcel.</p>"#
                .into()
        }
    };
    let label = if r.label_url.is_some() {
        format!(
            r#"<p><a id="return-label-pdf" href="/returns/{id}/label.pdf" type="application/pdf">Download the return label (PDF)</a> · <a id="return-label-page" href="/returns/{id}/label">Print the label</a></p>"#,
            id = esc(&r.id)
        )
    } else {
        String::new()
    };
    format!(
        r#"<h1>Return <span id="return-id">{id}</span></h1>
<p>Order: <a id="return-order" data-order-id="{order}" href="/orders/{order}">{order}</a></p>
<p>Status: <strong id="return-status" data-status="{status}">{status}</strong></p>
<p id="return-decision">{decision}</p>
<p>Reason: <span id="return-reason" data-reason="{reason}">{reason_label}</span></p>
<p>Your reference: <span id="return-reference">{reference}</span></p>
<p>Notes: <span id="return-notes">{notes}</span></p>
<table id="return-lines" data-count="{count}"><tr><th>Item</th><th>SKU</th><th>Qty</th><th>Price</th></tr>{rows}</table>
<p>Requested: {created}</p>{received}{refund}{label}"#,
        id = esc(&r.id),
        order = esc(&r.order_id),
        status = esc(&r.status),
        decision = esc(r.decision.as_deref().unwrap_or("")),
        reason = esc(&r.reason),
        reason_label = esc(reason_label(&r.reason)),
        reference = esc(r.reference.as_deref().unwrap_or("")),
        notes = esc(r.notes.as_deref().unwrap_or("")),
        count = r.lines.len(),
        created = time("return-created-at", &r.created_at),
    )
}

/// The shopper's returns, oldest first; `?reference=` keeps those with that reference
/// (exactly). Each row carries `data-return-id`, `data-order-id`, `data-reference` and
/// `data-status`.
async fn returns_page(
    State(state): State<AppState>,
    Shopper(customer): Shopper,
    Query(q): Query<crate::api::ReferenceQuery>,
) -> Response {
    let reference = q.given();
    let filter = crate::db::ReturnFilter {
        customer_id: Some(customer.id),
        reference,
        ..Default::default()
    };
    let Ok(returns) = state.db.returns(filter).await else {
        return something_went_wrong("Your returns", "returns");
    };
    let rows: String = returns
        .iter()
        .map(|r| {
            format!(
                r#"<tr class="return-row" data-return-id="{id}" data-order-id="{order}" data-reference="{reference}" data-status="{status}"><td class="return-id"><a href="/returns/{id}">{id}</a></td><td class="order-id">{order}</td><td class="created">{created}</td><td class="reference">{reference}</td><td class="status">{status}</td><td class="refund">{refund}</td></tr>"#,
                id = esc(&r.id),
                order = esc(&r.order_id),
                created = esc(&r.created_at),
                reference = esc(r.reference.as_deref().unwrap_or("")),
                status = esc(&r.status),
                refund = r.refund.map(money).unwrap_or_default(),
            )
        })
        .collect();
    page(
        "Your returns",
        "returns",
        &format!(
            r#"<h1>Your returns</h1><form id="return-search" action="/returns"><label for="reference">Find by your reference</label><input id="reference" name="reference" value="{}"><button type="submit">Search</button></form>
<table id="returns" data-count="{}"><tr><th>Return</th><th>Order</th><th>Requested</th><th>Reference</th><th>Status</th><th>Refund</th></tr>{rows}</table>{}"#,
            esc(reference.unwrap_or("")),
            returns.len(),
            if returns.is_empty() {
                r#"<p id="no-returns">No returns found.</p>"#
            } else {
                ""
            }
        ),
    )
    .into_response()
}

/// The label PDF, for the signed-in shopper's return.
async fn label_pdf(
    State(state): State<AppState>,
    Shopper(customer): Shopper,
    Path(id): Path<String>,
) -> Response {
    match api::label_pdf(&state, &customer, &id).await {
        Ok(response) => response,
        Err(e) if e.status() == StatusCode::NOT_FOUND => not_found(),
        Err(_) => something_went_wrong("Return label", "return-label"),
    }
}
