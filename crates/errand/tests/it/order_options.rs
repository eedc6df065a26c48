//! The order options Zinc's SDK sends, against the demo store over HTTP: a gift (with a
//! message) and a PO number reach the store; `handling_days_max` buys a seller that ships
//! in time or fails precisely; `fulfillment` `best_effort` skips an item, buys fewer or
//! drops the gift option, each recorded as a concession, while a strict order fails;
//! the end customer gets an e-mail when the order is placed, shipped and delivered,
//! over SMTP or into a directory; the rules are checked with precise errors.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::smtp::SmtpServer;
use crate::support::{TestApp, error_list, order_body};
use errand::config::SecretText;

/// An order body for `(product, quantity)` lines at the demo store, with `extra` fields.
fn body(app: &TestApp, lines: &[(&str, i64)], extra: Value) -> Value {
    let mut body = order_body();
    body["products"] = lines
        .iter()
        .map(|(product, quantity)| json!({"url": app.product_url(product), "quantity": quantity}))
        .collect();
    body["max_price"] = json!(1_000_000);
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

/// Creates the order and waits until it is placed or failed.
async fn settled(app: &TestApp, body: &Value) -> Value {
    let order = app.created(body).await;
    app.wait_until_settled(order["id"].as_str().unwrap()).await
}

/// The one store order placed for an Errand order.
async fn store_order(app: &TestApp, order: &Value) -> Value {
    let found = app.store_orders_for(order["id"].as_str().unwrap()).await;
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

fn concessions(order: &Value) -> Vec<(String, String)> {
    order["fulfillment"]["concessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no concessions list: {order}"))
        .iter()
        .map(|c| {
            (
                c["concern"].as_str().unwrap().to_string(),
                c["code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A product whose usual seller handles orders in 4 days; another ships in 1.
const SLOW_USUAL_SELLER: &str = "B0DEMO0025";
/// A product whose only seller takes 10 days.
const MADE_TO_ORDER: &str = "B0DEMO0026";
/// A product the store sends no gifts of.
const NOT_GIFTABLE: &str = "B0DEMO0019";
/// A test product that is never in stock.
const NEVER_IN_STOCK: &str = "B0TEST0001";
/// Sold at most 10 to an order (50 in stock, no variants).
const LIMIT_TEN: &str = "B0DEMO0008";

/// Places an order that asks for customer e-mails and waits until it is delivered and
/// its three e-mails are recorded.
async fn delivered_with_emails(app: &TestApp, email: &str) -> Value {
    let order = settled(
        app,
        &body(
            app,
            &[("B0DEMO0005", 1)],
            json!({
                "customer_notifications": {"email": email}
            }),
        ),
    )
    .await;
    assert_eq!(order["status"], "order_placed", "{order}");
    app.wait_for_order(order["id"].as_str().unwrap(), |o| {
        o["customer_notifications"]["sent"]
            .as_array()
            .is_some_and(|s| s.len() == 3)
    })
    .await
}

crate::on_both_databases! {
    async fn the_customer_is_emailed_over_smtp_when_placed_shipped_and_delivered(backend: Backend) {
        let smtp = SmtpServer::start().await;
        let url = smtp.url.clone();
        let app = TestApp::spawn_engine_with(backend, |s| {
            s.mail.smtp_url = Some(SecretText::from(url.as_str()));
            s.mail.mail_from = Some("Shop <orders@shop.example>".into());
        })
        .await;
        let order = delivered_with_emails(&app, "ada@example.com").await;
        assert_eq!(
            order["customer_notifications"],
            json!({"email": "ada@example.com", "delivered": true,
                   "sent": ["order_placed", "order_shipped", "order_delivered"]})
        );
        let mails = smtp.mails();
        let subjects: Vec<&str> = mails.iter().map(|m| m.header("Subject").unwrap()).collect();
        assert_eq!(subjects, ["Your order is placed", "Your order has shipped", "Your order was delivered"]);
        let id = order["id"].as_str().unwrap();
        for mail in &mails {
            assert_eq!(mail.to, ["<ada@example.com>"]);
            assert_eq!(mail.from, "<orders@shop.example>");
            assert!(mail.data.contains(id), "{}", mail.data);
        }
        // An order without the option sends nothing.
        let quiet = settled(&app, &body(&app, &[("B0DEMO0005", 1)], json!({}))).await;
        assert_eq!(quiet["customer_notifications"], Value::Null);
        app.wait_for_order(quiet["id"].as_str().unwrap(), |o| o["items"][0]["status"] == "delivered").await;
        assert_eq!(smtp.mails().len(), 3);
    }

    async fn without_smtp_the_emails_are_written_to_the_mail_directory(backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        let mail_dir = dir.path().to_path_buf();
        let app = TestApp::spawn_engine_with(backend, |s| s.mail.mail_dir = Some(mail_dir)).await;
        let order = delivered_with_emails(&app, "grace@example.com").await;
        assert_eq!(order["customer_notifications"]["delivered"], true);
        let files: Vec<String> = std::fs::read_dir(dir.path()).unwrap()
            .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
            .collect();
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(files.iter().all(|f| f.contains("To: grace@example.com") && f.contains(order["id"].as_str().unwrap())), "{files:?}");
    }

    async fn a_gift_with_a_message_and_a_po_number_reach_the_store(app: Engine) {
        let order = settled(&app, &body(&app, &[("B0DEMO0005", 1)], json!({
            "is_gift": true, "gift_message": "Happy birthday, Ada!", "po_number": "PO-2026-0042"
        }))).await;
        assert_eq!(order["status"], "order_placed", "{order}");
        assert_eq!(order["is_gift"], true);
        assert_eq!(order["gift_message"], "Happy birthday, Ada!");
        assert_eq!(order["po_number"], "PO-2026-0042");
        assert_eq!(order["fulfillment"], json!({"gift": null, "items": null, "quantity": null, "concessions": []}));
        let at_store = store_order(&app, &order).await;
        assert_eq!(at_store["gift"], true, "{at_store}");
        assert_eq!(at_store["gift_message"], "Happy birthday, Ada!");
        assert_eq!(at_store["po_number"], "PO-2026-0042");
        assert_eq!(order["merchant_order_ids"], json!([at_store["id"]]));

        // Without the options, the store gets none.
        let plain = settled(&app, &body(&app, &[("B0DEMO0005", 1)], json!({}))).await;
        assert_eq!(plain["is_gift"], false);
        let at_store = store_order(&app, &plain).await;
        assert_eq!(at_store["gift"], false, "{at_store}");
        assert_eq!(at_store["po_number"], Value::Null);
    }

    async fn a_gift_the_store_cannot_send_fails_unless_the_order_allows_a_plain_one(app: Engine) {
        let strict = settled(&app, &body(&app, &[(NOT_GIFTABLE, 1)], json!({"is_gift": true}))).await;
        assert_eq!(strict["status"], "order_failed", "{strict}");
        assert_eq!(strict["job_result"]["error_type"], "gift_option_unavailable");
        assert!(app.store_orders_for(strict["id"].as_str().unwrap()).await.is_empty());

        let relaxed = settled(&app, &body(&app, &[(NOT_GIFTABLE, 1)], json!({
            "is_gift": true, "gift_message": "Enjoy", "fulfillment": {"gift": "best_effort"}
        }))).await;
        assert_eq!(relaxed["status"], "order_placed", "{relaxed}");
        assert_eq!(concessions(&relaxed), [("gift".to_string(), "gift_option_unavailable".to_string())]);
        assert_eq!(relaxed["fulfillment"]["gift"], "best_effort");
        let at_store = store_order(&app, &relaxed).await;
        assert_eq!(at_store["gift"], false, "{at_store}");
        assert_eq!(at_store["gift_message"], Value::Null);
    }

    async fn handling_days_max_buys_a_seller_that_ships_in_time_or_fails(app: Engine) {
        // The usual seller takes 4 days: another, that takes 1, is bought.
        let order = settled(&app, &body(&app, &[(SLOW_USUAL_SELLER, 1)], json!({"handling_days_max": 2}))).await;
        assert_eq!(order["status"], "order_placed", "{order}");
        assert_eq!(order["handling_days_max"], 2);
        let at_store = store_order(&app, &order).await;
        assert_eq!(at_store["lines"][0]["offer_id"], "B0DEMO0025-HARB", "{at_store}");
        // Without a limit, the store's usual seller.
        let any = settled(&app, &body(&app, &[(SLOW_USUAL_SELLER, 1)], json!({}))).await;
        assert_eq!(store_order(&app, &any).await["lines"][0]["offer_id"], "B0DEMO0025-KILN");

        // No seller ships within 3 days.
        let failed = settled(&app, &body(&app, &[(MADE_TO_ORDER, 1)], json!({"handling_days_max": 3}))).await;
        assert_eq!(failed["status"], "order_failed", "{failed}");
        assert_eq!(failed["job_result"]["error_type"], "handling_time_exceeded");
        assert!(failed["job_result"]["error"].as_str().unwrap().contains("3 handling days"), "{failed}");
    }

    async fn best_effort_items_skips_what_cannot_be_bought_and_ships_the_rest(app: Engine) {
        let lines = [("B0DEMO0005", 1), (NEVER_IN_STOCK, 1), (MADE_TO_ORDER, 1)];
        // Strict: all or nothing.
        let strict = settled(&app, &body(&app, &lines, json!({}))).await;
        assert_eq!(strict["status"], "order_failed", "{strict}");
        assert_eq!(strict["job_result"]["error_type"], "out_of_stock");

        let relaxed = settled(&app, &body(&app, &lines, json!({
            "handling_days_max": 5, "fulfillment": {"items": "best_effort"}
        }))).await;
        assert_eq!(relaxed["status"], "order_placed", "{relaxed}");
        assert_eq!(
            concessions(&relaxed),
            [("items".to_string(), "out_of_stock".to_string()),
             ("items".to_string(), "handling_time_exceeded".to_string())]
        );
        let items = relaxed["items"].as_array().unwrap();
        let statuses: Vec<(&str, Option<&str>)> =
            items.iter().map(|i| (i["status"].as_str().unwrap(), i["error_type"].as_str())).collect();
        assert_eq!(statuses, [("ordered", None), ("skipped", Some("out_of_stock")), ("skipped", Some("handling_time_exceeded"))]);
        let skipped = &relaxed["fulfillment"]["concessions"][0];
        assert_eq!(skipped["item_id"], items[1]["id"]);
        assert_eq!(skipped["url"], items[1]["url"]);
        assert_eq!((skipped["requested_quantity"].as_i64(), skipped["fulfilled_quantity"].as_i64()), (Some(1), Some(0)));
        let at_store = store_order(&app, &relaxed).await;
        let products: Vec<&str> = at_store["lines"].as_array().unwrap().iter().map(|l| l["product_id"].as_str().unwrap()).collect();
        assert_eq!(products, ["B0DEMO0005"]);

        // What was bought is delivered, and that is the order delivered.
        let id = relaxed["id"].as_str().unwrap();
        let delivered = app.wait_for_order(id, |o| o["items"][0]["status"] == "delivered").await;
        assert_eq!(delivered["items"][1]["status"], "skipped");
        let steps = app.timeline(id).await;
        assert!(steps.contains(&"delivered".to_string()), "{steps:?}");

        // Nothing left to buy still fails.
        let nothing = settled(&app, &body(&app, &[(NEVER_IN_STOCK, 1)], json!({"fulfillment": {"items": "best_effort"}}))).await;
        assert_eq!(nothing["status"], "order_failed", "{nothing}");
        assert_eq!(nothing["job_result"]["error_type"], "out_of_stock");
    }

    async fn best_effort_quantity_buys_what_the_store_sells(app: Engine) {
        let strict = settled(&app, &body(&app, &[(LIMIT_TEN, 12)], json!({}))).await;
        assert_eq!(strict["status"], "order_failed", "{strict}");
        assert_eq!(strict["job_result"]["error_type"], "purchase_limit_exceeded");

        let relaxed = settled(&app, &body(&app, &[(LIMIT_TEN, 12)], json!({"fulfillment": {"quantity": "best_effort"}}))).await;
        assert_eq!(relaxed["status"], "order_placed", "{relaxed}");
        assert_eq!(concessions(&relaxed), [("quantity".to_string(), "purchase_limit_exceeded".to_string())]);
        let concession = &relaxed["fulfillment"]["concessions"][0];
        assert_eq!((concession["requested_quantity"].as_i64(), concession["fulfilled_quantity"].as_i64()), (Some(12), Some(10)));
        assert_eq!(relaxed["items"][0]["quantity"], 10);
        assert_eq!(relaxed["items"][0]["status"], "ordered");
        let at_store = store_order(&app, &relaxed).await;
        assert_eq!(at_store["lines"][0]["quantity"], 10, "{at_store}");
        // The price cap holds for what is bought.
        assert!(relaxed["job_result"]["price_components"]["total"].as_i64().unwrap() <= 1_000_000);
    }

    async fn the_options_rules_are_checked_with_precise_errors(app: TestApp) {
        let mut bad = order_body();
        bad["gift_message"] = json!("Hello");
        bad["handling_days_max"] = json!(-2);
        bad["fulfillment"] = json!({"items": "always", "quantity": "best_effort", "gifts": "best_effort"});
        bad["customer_notifications"] = json!({"email": "nobody"});
        let response = app.create_order(&bad).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let errors = error_list(&response.json().await.unwrap());
        for expected in [
            (json!(["body", "gift_message"]), "gift_message_requires_gift"),
            (json!(["body", "handling_days_max"]), "greater_than_equal"),
            (json!(["body", "fulfillment", "items"]), "enum"),
            (json!(["body", "fulfillment", "gifts"]), "extra_forbidden"),
            (json!(["body", "customer_notifications", "email"]), "value_error"),
        ] {
            assert!(errors.contains(&(expected.0.clone(), expected.1.to_string())), "{expected:?} not in {errors:?}");
        }

        // Accepted, stored and reported back as given.
        let mut good = order_body();
        good["is_gift"] = json!(true);
        good["handling_days_max"] = json!(3);
        good["fulfillment"] = json!({"items": "best_effort", "gift": null});
        good["customer_notifications"] = json!({"email": "ada@example.com"});
        let order = app.created(&good).await;
        let (_, read) = app.get_order(order["id"].as_str().unwrap()).await;
        for o in [&order, &read] {
            assert_eq!(o["is_gift"], true);
            assert_eq!(o["handling_days_max"], 3);
            assert_eq!(o["fulfillment"], json!({"gift": null, "items": "best_effort", "quantity": null, "concessions": []}));
            assert_eq!(o["customer_notifications"]["email"], "ada@example.com");
            assert_eq!(o["customer_notifications"]["delivered"], Value::Null);
        }
    }
}
