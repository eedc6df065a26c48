//! Returns end to end against the demo store over HTTP: a delivered order's items are
//! returned through `POST /returns`, asked of the store exactly once (also when the
//! store's answer was lost), approved with a label, then credited on the store's
//! clock; a final-sale item is denied; every step is an order event and a signed
//! webhook; the rules are enforced with precise errors; other accounts see nothing.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::receiver::{Receiver, assert_signed};
use crate::support::{Backend, TestApp, json_of, order_body};

/// Places an order of `(product, quantity)` lines and waits until every item is
/// delivered (the demo store's clock runs a day per second in tests).
async fn delivered_order(app: &TestApp, lines: &[(&str, i64)]) -> Value {
    let mut body = order_body();
    body["products"] = lines
        .iter()
        .map(|(product, quantity)| json!({"url": app.product_url(product), "quantity": quantity}))
        .collect();
    body["max_price"] = json!(1_000_000);
    let order = app.created(&body).await;
    let id = order["id"].as_str().unwrap().to_string();
    app.wait_for_order(&id, |o| {
        o["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "delivered")
    })
    .await
}

fn item_id(order: &Value, index: usize) -> String {
    order["items"][index]["id"].as_str().unwrap().to_string()
}

async fn request_return(app: &TestApp, key: &str, body: &Value) -> (StatusCode, Value) {
    json_of(
        app.client
            .post(app.url("/returns"))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Polls the return until `done` holds for it (at most a minute).
async fn wait_for_return(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, ret) = json_of(app.get(&format!("/returns/{id}")).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{ret}");
        if done(&ret) {
            return ret;
        }
        if Instant::now() >= deadline {
            let jobs = errand::queue::list(app.db(), None, 20).await.unwrap();
            panic!("return {id} did not get there: {ret:#}\njobs: {jobs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The store's returns carrying `reference` (its ground truth).
async fn store_returns_for(app: &TestApp, reference: &str) -> Vec<Value> {
    let store = app.store.as_ref().expect("a store");
    let body: Value = app
        .client
        .get(format!("{}/api/admin/returns", store.base_url()))
        .bearer_auth(&store.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["returns"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r["reference"] == reference)
        .collect()
}

crate::on_both_databases! {
    async fn a_delivered_item_is_returned_approved_with_a_label_then_credited(app: Engine) {
        let receiver = Receiver::start(0, StatusCode::OK).await;
        let secret = {
            let (status, endpoint) = json_of(app.client.put(app.url("/webhooks/endpoint")).bearer_auth(&app.key)
                .json(&json!({"url": receiver.url})).send().await.unwrap()).await;
            assert_eq!(status, StatusCode::OK, "{endpoint}");
            endpoint["webhook_secret"].as_str().unwrap().to_string()
        };
        let order = delivered_order(&app, &[("B0DEMO0005", 2), ("B0DEMO0008", 1)]).await;
        let order_id = order["id"].as_str().unwrap().to_string();

        let (status, created) = request_return(&app, &app.key, &json!({
            "order_id": order_id, "reason": "damaged", "notes": "The glass arrived cracked",
            "items": [{"order_item_id": item_id(&order, 0), "quantity": 1}]})).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["status"], "open");
        assert_eq!(created["order_id"], order_id.as_str());
        let id = created["id"].as_str().unwrap().to_string();

        let credited = wait_for_return(&app, &id, |r| r["status"] == "credited").await;
        assert!(credited["merchant_return_id"].as_str().is_some_and(|m| m.starts_with("RT-")), "{credited}");
        assert_eq!(credited["items"], json!([{"order_item_id": item_id(&order, 0), "quantity": 1}]));
        let labels = credited["label_urls"].as_array().unwrap();
        assert_eq!(labels.len(), 1, "{credited}");
        let label = app.client.get(labels[0].as_str().unwrap()).bearer_auth(&app.key).send().await.unwrap();
        assert_eq!(label.status(), StatusCode::OK);
        assert_eq!(label.headers()["content-type"], "application/pdf");
        assert!(label.bytes().await.unwrap().starts_with(b"%PDF-"));
        // Served to its owner only.
        let stranger = app.new_account_key("stranger").await;
        let other = app.client.get(labels[0].as_str().unwrap()).bearer_auth(&stranger).send().await.unwrap();
        assert_eq!(other.status(), StatusCode::NOT_FOUND);

        // Exactly one return at the store, with our reference, for the one unit.
        let at_store = store_returns_for(&app, &id).await;
        assert_eq!(at_store.len(), 1, "{at_store:?}");
        assert_eq!(at_store[0]["status"], "credited");

        // The order lists it; the timeline and the webhooks show every step.
        let (_, with_return) = app.get_order(&order_id).await;
        assert_eq!(with_return["returns"][0]["id"], id.as_str());
        assert_eq!(with_return["returns"][0]["status"], "credited");
        assert_eq!(with_return["returns"][0]["label_urls"], credited["label_urls"]);
        let steps = app.timeline(&order_id).await;
        for step in ["return_requested", "return_approved", "return_credited"] {
            assert!(steps.contains(&step.to_string()), "{step}: {steps:?}");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let events = loop {
            let events: Vec<String> = receiver.accepted().iter()
                .filter(|b| b["event"].as_str().is_some_and(|e| e.starts_with("return.")))
                .map(|b| b["event"].as_str().unwrap().to_string()).collect();
            if events.len() >= 3 || Instant::now() > deadline {
                break events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(events, ["return.requested", "return.approved", "return.credited"]);
        for request in receiver.all().iter().filter(|r| r.json()["event"].as_str().unwrap_or("").starts_with("return.")) {
            assert_signed(request, &secret);
            assert_eq!(request.json()["data"]["returns"][0]["id"], id.as_str());
        }
    }

    async fn a_final_sale_item_is_denied_in_the_stores_words(app: Engine) {
        let order = delivered_order(&app, &[("B0DEMO0023", 1)]).await;
        let (status, created) = request_return(&app, &app.key, &json!({
            "order_id": order["id"], "reason": "no_longer_needed",
            "items": [{"order_item_id": item_id(&order, 0), "quantity": 1}]})).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["id"].as_str().unwrap();
        let denied = wait_for_return(&app, id, |r| r["status"] == "denied").await;
        assert!(denied["resolution_notes"].as_str().is_some_and(|n| n.contains("inal")), "{denied}");
        assert_eq!(denied["label_urls"], json!([]));
        assert_eq!(store_returns_for(&app, id).await.len(), 1);
        // A denied return does not count: the item can be asked for again.
        let (status, again) = request_return(&app, &app.key, &json!({
            "order_id": order["id"], "reason": "defective",
            "items": [{"order_item_id": item_id(&order, 0), "quantity": 1}]})).await;
        assert_eq!(status, StatusCode::CREATED, "{again}");
    }

    async fn the_rules_are_enforced_with_precise_errors(app: Engine) {
        let order = delivered_order(&app, &[("B0DEMO0005", 2)]).await;
        let item = item_id(&order, 0);
        let body = |quantity: i64| json!({"order_id": order["id"], "reason": "wrong_item",
                                          "items": [{"order_item_id": item, "quantity": quantity}]});
        // More than was bought.
        let (status, error) = request_return(&app, &app.key, &body(3)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert_eq!(error["detail"][0]["loc"], json!(["body", "items", 0, "quantity"]));
        assert_eq!(error["detail"][0]["type"], "return_quantity_exceeded");
        // Two units, in two returns; a third is one too many.
        assert_eq!(request_return(&app, &app.key, &body(1)).await.0, StatusCode::CREATED);
        assert_eq!(request_return(&app, &app.key, &body(1)).await.0, StatusCode::CREATED);
        let (status, error) = request_return(&app, &app.key, &body(1)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert_eq!(error["detail"][0]["type"], "return_quantity_exceeded");
        // An item of another order, an item not delivered yet.
        let (status, error) = request_return(&app, &app.key, &json!({"order_id": order["id"], "reason": "other",
            "items": [{"order_item_id": uuid::Uuid::now_v7(), "quantity": 1}]})).await;
        assert_eq!((status, error["detail"][0]["type"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("order_item_not_found")));
        let mut fresh = order_body();
        fresh["products"] = json!([{"url": app.product_url("B0DEMO0006"), "quantity": 1}]);
        fresh["max_price"] = json!(1_000_000);
        let fresh = app.created(&fresh).await;
        let (status, error) = request_return(&app, &app.key, &json!({"order_id": fresh["id"], "reason": "other",
            "items": [{"order_item_id": fresh["items"][0]["id"], "quantity": 1}]})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert_eq!(error["detail"][0]["loc"], json!(["body", "items", 0, "order_item_id"]));
        assert_eq!(error["detail"][0]["type"], "item_not_delivered");

        // Another account sees nothing: its requests are 404s, its list is empty.
        let stranger = app.new_account_key("stranger").await;
        let (status, _) = request_return(&app, &stranger, &body(1)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, mine) = json_of(app.get("/returns?limit=10").send().await.unwrap()).await;
        assert_eq!(mine["total"], 2);
        let id = mine["return_requests"][0]["id"].as_str().unwrap();
        let theirs = app.client.get(app.url(&format!("/returns/{id}"))).bearer_auth(&stranger).send().await.unwrap();
        assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
        let (_, their_list) = json_of(app.client.get(app.url("/returns")).bearer_auth(&stranger).send().await.unwrap()).await;
        assert_eq!(their_list, json!({"return_requests": [], "total": 0}));
        // Filters.
        let (_, by_order) = json_of(app.get(&format!("/returns?search={}", &order["id"].as_str().unwrap()[..13])).send().await.unwrap()).await;
        assert_eq!(by_order["total"], 2);
        let (status, error) = json_of(app.get("/returns?status=lost").send().await.unwrap()).await;
        assert_eq!((status, error["detail"][0]["loc"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!(["query", "status"])));
    }

    async fn a_request_whose_answer_was_lost_is_found_by_its_reference(app: Engine) {
        let mut app = app;
        let order = delivered_order(&app, &[("B0DEMO0005", 1)]).await;
        app.stop_workers().await;
        let (status, created) = request_return(&app, &app.key, &json!({
            "order_id": order["id"], "reason": "damaged",
            "items": [{"order_item_id": item_id(&order, 0), "quantity": 1}]})).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["id"].as_str().unwrap().to_string();
        // What a crash right after asking the store leaves: the store has the return,
        // Errand has it recorded as asked and unanswered.
        let store = app.store.as_ref().unwrap();
        let merchant_order = order["job_result"]["merchant_order_ids"][0]["merchant_order_id"].as_str().unwrap();
        let session: Value = app.client.post(format!("{}/api/session", store.base_url()))
            .json(&json!({"email": errand_demo_store::DEMO_EMAIL, "password": errand_demo_store::DEMO_PASSWORD}))
            .send().await.unwrap().json().await.unwrap();
        let token = session["token"].as_str().expect("a session token");
        let sku = app.store_orders_for(order["id"].as_str().unwrap()).await[0]["lines"][0]["sku"].clone();
        let asked = app.client.post(format!("{}/api/orders/{merchant_order}/returns", store.base_url()))
            .bearer_auth(token)
            .json(&json!({"reason": "damaged", "reference": id, "lines": [{"sku": sku, "quantity": 1}]}))
            .send().await.unwrap();
        assert_eq!(asked.status(), StatusCode::CREATED);
        mark_submitting(&app, &id).await;

        app.start_workers();
        let approved = wait_for_return(&app, &id, |r| r["status"] != "open").await;
        assert!(matches!(approved["status"].as_str(), Some("approved" | "credited")), "{approved}");
        assert_eq!(store_returns_for(&app, &id).await.len(), 1, "asked once, found again, never twice");
    }
}

/// Marks a return as asked of the retailer and unanswered, its wait over.
async fn mark_submitting(app: &TestApp, id: &str) {
    let id = errand::storage::DbId(uuid::Uuid::parse_str(id).unwrap());
    let past = errand::storage::Timestamp::now();
    match app.db() {
        errand::storage::Db::Sqlite(sqlite) => {
            sqlx::query("UPDATE order_returns SET request_state = 'submitting', settles_at = $1 WHERE id = $2")
                .bind(past).bind(id).execute(&sqlite.writer).await.unwrap();
        }
        errand::storage::Db::Postgres(pool) => {
            sqlx::query("UPDATE order_returns SET request_state = 'submitting', settles_at = $1 WHERE id = $2")
                .bind(past).bind(id).execute(pool).await.unwrap();
        }
    }
}

/// The API refuses returns from a retailer whose driver takes none, and documents the
/// routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_the_return_operations() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, method) in [
        ("/returns", "post"),
        ("/returns", "get"),
        ("/returns/{return_id}", "get"),
        ("/returns/{return_id}/labels/{name}", "get"),
    ] {
        assert_eq!(
            doc["paths"][path][method]["tags"],
            json!(["returns"]),
            "{method} {path}"
        );
    }
    let statuses = &doc["components"]["schemas"]["ReturnRequestStatus"]["enum"];
    assert_eq!(*statuses, json!(["open", "approved", "denied", "credited"]));
}
