//! The browser the browser driver runs in: real headless Chromium (Debian's
//! `chromium`; `scripts/test` installs it), one process, a context per checkout.

use std::path::PathBuf;
use std::time::Duration;

use errand::retailers::browser::chromium::Chromium;

pub fn chromium_path() -> PathBuf {
    let path =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    assert!(
        path.exists(),
        "Chromium not found at {}: install it (apt-get install chromium) or run scripts/test",
        path.display()
    );
    path
}

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

async fn eval(page: &chromiumoxide::Page, js: &str) -> String {
    page.evaluate(js)
        .await
        .expect("evaluate")
        .into_value::<String>()
        .expect("a string")
}

/// A demo store on real time, its data in `dir`.
async fn start_store(dir: &std::path::Path) -> errand_demo_store::RunningStore {
    start_store_on_clock(dir, 1.0).await
}

/// A demo store whose clock runs `time_scale` times faster than real time.
async fn start_store_on_clock(
    dir: &std::path::Path,
    time_scale: f64,
) -> errand_demo_store::RunningStore {
    errand_demo_store::start(errand_demo_store::StoreOptions {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.into(),
        admin_token: None,
        time_scale,
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_get_isolated_contexts_and_the_browser_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = start_store(dir.path()).await;
    let chromium = Chromium::new(&chromium_path(), 2);
    assert_eq!(chromium.pid().await, None, "started only when first needed");

    let a = chromium.checkout().await.expect("a context");
    let b = chromium.checkout().await.expect("another context");
    let pid = chromium.pid().await.expect("running");
    for checkout in [&a, &b] {
        checkout.page.goto(store.base_url()).await.unwrap();
    }
    eval(&a.page, "document.cookie = 'shopper=a'; document.cookie").await;
    assert_eq!(eval(&a.page, "document.cookie").await, "shopper=a");
    assert_eq!(
        eval(&b.page, "document.cookie").await,
        "",
        "contexts share no cookies"
    );

    // Two slots: a third checkout waits until one is closed.
    let third = tokio::spawn({
        let chromium = chromium.clone();
        async move { chromium.checkout().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "the third checkout waits for a slot");
    a.close().await;
    let third = third
        .await
        .unwrap()
        .expect("the third checkout got the freed slot");
    third.close().await;
    b.close().await;

    chromium.shutdown().await;
    assert!(!process_exists(pid), "Chromium {pid} exited");
    assert_eq!(chromium.pid().await, None);
}

fn demo_recipe() -> errand::recipes::Recipe {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/demo.toml");
    errand::recipes::Recipe::load(std::path::Path::new(path)).expect("the demo recipe loads")
}

fn shipping() -> errand::orders::address::Address {
    errand::retailers::browser::trial::sample_address()
}

async fn store_orders(store: &errand_demo_store::RunningStore) -> Vec<serde_json::Value> {
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/admin/orders", store.base_url()))
        .bearer_auth(&store.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["orders"].as_array().unwrap().clone()
}

/// The demo recipe, phase by phase, in real Chromium at the demo store: nothing is
/// bought until `place`, then exactly one order with our reference, which `lookup`
/// finds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_recipe_buys_through_the_store_pages() {
    use errand::recipes::model::Phase;
    use errand::retailers::browser::runner::{ItemInput, OrderInputs, Runner};

    let dir = tempfile::tempdir().unwrap();
    let store = start_store(dir.path()).await;
    let recipe = std::sync::Arc::new(demo_recipe());
    let chromium = Chromium::new(&chromium_path(), 2);
    let base = url::Url::parse(&store.base_url()).unwrap();
    let address = shipping();
    let product = format!(
        "{}/dp/{}",
        store.base_url(),
        errand_demo_store::FIRST_RUN_PRODUCT
    );
    let inputs = OrderInputs {
        shipping: address,
        reference: "ord-browser-1".into(),
        is_gift: false,
        gift_message: None,
        po_number: None,
        handling_days_max: None,
        merchant_order_id: None,
        email: errand_demo_store::DEMO_EMAIL.into(),
        password: Some(errand_demo_store::DEMO_PASSWORD.into()),
        totp_secret: None,
        items: vec![ItemInput {
            url: product,
            quantity: 2,
            offer_id: None,
            variant: vec![],
        }],
    };
    let checkout = chromium.checkout().await.unwrap();
    let mut runner = Runner::new(
        checkout.page.clone(),
        recipe.clone(),
        base.clone(),
        inputs.clone(),
        Duration::from_secs(10),
    );
    for (phase, item) in [
        (Phase::SignIn, None),
        (Phase::Product, Some(0)),
        (Phase::Cart, None),
        (Phase::Checkout, None),
        (Phase::Review, None),
    ] {
        if let Err(failure) = runner.run_phase(phase, item).await {
            panic!("{phase}: {failure}\n{:#?}", runner.report);
        }
    }
    let price = runner.money("price").expect("the product's price");
    assert_eq!(
        runner.money("subtotal"),
        Some(2 * price),
        "{:#?}",
        runner.report
    );
    let total = runner.money("total").expect("the review's total");
    assert!(total >= 2 * price);
    assert!(
        store_orders(&store).await.is_empty(),
        "nothing is bought before place"
    );
    let names: Vec<&str> = runner.screenshots.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["product", "cart", "review"]);
    assert!(
        runner
            .screenshots
            .iter()
            .all(|(_, png)| png.starts_with(b"\x89PNG"))
    );

    for phase in [Phase::Place, Phase::Confirm] {
        if let Err(failure) = runner.run_phase(phase, None).await {
            panic!("{phase}: {failure}\n{:#?}", runner.report);
        }
    }
    let merchant_id = runner
        .text("merchant_order_id")
        .expect("a merchant order id")
        .to_string();
    let bought = store_orders(&store).await;
    assert_eq!(bought.len(), 1, "{bought:#?}");
    assert_eq!(bought[0]["buyer_reference"], "ord-browser-1");
    assert_eq!(bought[0]["id"], merchant_id.as_str());
    checkout.close().await;

    // A fresh context (as after a crash) signs in and finds the order by reference.
    let checkout = chromium.checkout().await.unwrap();
    let mut lookup = Runner::new(
        checkout.page.clone(),
        recipe.clone(),
        base.clone(),
        inputs,
        Duration::from_secs(10),
    );
    for phase in [Phase::SignIn, Phase::Lookup] {
        if let Err(failure) = lookup.run_phase(phase, None).await {
            panic!("{phase}: {failure}\n{:#?}", lookup.report);
        }
    }
    assert_eq!(lookup.text("merchant_order_id"), Some(merchant_id.as_str()));
    checkout.close().await;
    chromium.shutdown().await;
}

/// The browser driver's return calls on the demo recipe, against the store's pages: the
/// order's lines with the variant's SKU, a return asked for and found again by its
/// reference (and none for another), its label as a PDF, and a final-sale item denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_driver_asks_for_finds_and_follows_returns_on_the_store_pages() {
    use errand::retailers::browser::driver::BrowserDriver;
    use errand::retailers::{Credentials, Driver, RetailerReturnStatus, ReturnLine, ReturnRequest};
    use serde_json::{Value, json};

    let dir = tempfile::tempdir().unwrap();
    // A store day a second: the order is delivered within seconds.
    let store = start_store_on_clock(dir.path(), 86_400.0).await;
    let base = store.base_url();
    let client = reqwest::Client::new();
    let session: Value = client
        .post(format!("{base}/api/session"))
        .json(&json!({"email": errand_demo_store::DEMO_EMAIL, "password": errand_demo_store::DEMO_PASSWORD}))
        .send().await.unwrap().json().await.unwrap();
    let token = session["token"].as_str().unwrap().to_string();
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let request = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&token);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            assert!(status.is_success(), "{status}: {body}");
            body
        }
    };
    // Bought through the JSON API (the pages' purchase is tested above): a shirt of a
    // chosen size, twice, and the final-sale plush toy.
    let variant =
        json!([{"label": "Color", "value": "Forest Green"}, {"label": "Size", "value": "M"}]);
    call(
        reqwest::Method::POST,
        "/api/cart/items",
        Some(json!({"product_id": "B0DEMO0010", "quantity": 2, "variant": variant})),
    )
    .await;
    call(
        reqwest::Method::POST,
        "/api/cart/items",
        Some(json!({"product_id": "B0DEMO0023", "quantity": 1, "variant": []})),
    )
    .await;
    let placed = call(
        reqwest::Method::POST,
        "/api/checkout/place",
        Some(json!({"shipping_address": shipping(), "buyer_reference": "ord-returns"})),
    )
    .await;
    let merchant_order_id = placed["order"]["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let bought = loop {
        let order = call(
            reqwest::Method::GET,
            &format!("/api/orders/{merchant_order_id}"),
            None,
        )
        .await;
        if order["order"]["status"] == "delivered" {
            break order["order"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never delivered: {order}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let sku_of = |product: &str| {
        bought["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["product_id"] == product)
            .unwrap()["sku"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (shirt, plush) = (sku_of("B0DEMO0010"), sku_of("B0DEMO0023"));
    assert_ne!(shirt, "B0DEMO0010", "the shirt's SKU is its variant's");

    let chromium = Chromium::new(&chromium_path(), 2);
    let driver = BrowserDriver::new(
        "demo",
        demo_recipe(),
        url::Url::parse(&base).unwrap(),
        chromium.clone(),
        Duration::from_secs(10),
        None,
    );
    assert!(driver.takes_returns());
    let credentials = Credentials {
        email: errand_demo_store::DEMO_EMAIL.into(),
        password: errand_demo_store::DEMO_PASSWORD.into(),
        totp_secret: None,
    };
    let session = driver.sign_in(&credentials).await.unwrap();

    // Tracking reads which product and SKU each line is, so the items are delivered.
    let order = driver.order(&session, &merchant_order_id).await.unwrap();
    let lines: Vec<(&str, &str)> = order
        .lines
        .iter()
        .map(|l| (l.product_id.as_str(), l.sku.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            ("B0DEMO0010", shirt.as_str()),
            ("B0DEMO0023", plush.as_str())
        ]
    );
    assert!(
        !order.shipments.is_empty()
            && order
                .shipments
                .iter()
                .all(|s| s.delivered && s.skus.contains(&shirt)),
        "{order:?}"
    );

    assert!(
        driver
            .find_return(&session, "ret-1")
            .await
            .unwrap()
            .is_none(),
        "nothing asked for yet"
    );
    let ask = |reference: &str, sku: &str, reason: &'static str| ReturnRequest {
        merchant_order_id: merchant_order_id.clone(),
        reference: reference.into(),
        reason,
        notes: Some("Runs small".into()),
        lines: vec![ReturnLine {
            sku: sku.into(),
            quantity: 1,
        }],
    };
    let approved = driver
        .request_return(&session, &ask("ret-1", &shirt, "wrong_size"))
        .await
        .unwrap();
    assert!(
        approved.merchant_return_id.starts_with("RT-"),
        "{approved:?}"
    );
    assert_ne!(
        approved.status,
        RetailerReturnStatus::Denied,
        "{approved:?}"
    );
    assert!(
        approved
            .decision
            .as_deref()
            .is_some_and(|d| d.starts_with("Approved")),
        "{approved:?}"
    );
    let label_url = approved
        .label_url
        .clone()
        .expect("an approved return's label");
    assert!(
        label_url.starts_with(&base) && label_url.ends_with(".pdf"),
        "{label_url}"
    );

    // Found again by its reference, and followed by its id.
    let found = driver
        .find_return(&session, "ret-1")
        .await
        .unwrap()
        .expect("found by its reference");
    assert_eq!(found.merchant_return_id, approved.merchant_return_id);
    assert!(
        driver
            .find_return(&session, "ret-other")
            .await
            .unwrap()
            .is_none()
    );
    let followed = driver
        .get_return(&session, &approved.merchant_return_id)
        .await
        .unwrap();
    assert_eq!(followed.label_url.as_deref(), Some(label_url.as_str()));
    let label = driver.return_label(&session, &label_url).await.unwrap();
    assert!(label.starts_with(b"%PDF-"));

    let denied = driver
        .request_return(&session, &ask("ret-2", &plush, "no_longer_needed"))
        .await
        .unwrap();
    assert_eq!(denied.status, RetailerReturnStatus::Denied, "{denied:?}");
    assert!(
        denied
            .decision
            .as_deref()
            .is_some_and(|d| d.contains("inal")),
        "{denied:?}"
    );
    assert_eq!(denied.label_url, None);
    driver.release(&session).await;

    // The store's ground truth: one return each, as asked.
    let all: Value = client
        .get(format!("{base}/api/admin/returns"))
        .bearer_auth(&store.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let returns: Vec<(&str, &str, &str, &str)> = all["returns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["reference"].as_str().unwrap(),
                r["reason"].as_str().unwrap(),
                r["lines"][0]["sku"].as_str().unwrap(),
                r["notes"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        returns,
        [
            ("ret-1", "wrong_size", shirt.as_str(), "Runs small"),
            ("ret-2", "no_longer_needed", plush.as_str(), "Runs small")
        ]
    );
    chromium.shutdown().await;
}

/// The engine with the demo retailer bought through its web pages (the browser driver
/// running the built-in demo recipe) instead of its JSON API.
async fn spawn_browser_engine(backend: crate::support::Backend) -> crate::support::TestApp {
    spawn_browser_engine_with(backend, |_| {}).await
}

async fn spawn_browser_engine_with(
    backend: crate::support::Backend,
    tweak: impl FnOnce(&mut errand::config::Settings),
) -> crate::support::TestApp {
    crate::support::TestApp::spawn_engine_with(backend, |settings| {
        let demo = &mut settings.retailers[0];
        demo.driver = "browser".into();
        demo.recipe = Some("builtin:demo".into());
        settings.browser.chromium_path = chromium_path();
        // The suite runs many tests at once on few cores: pages may be slow to come.
        settings.browser.browser_step_timeout_seconds = 30.0;
        tweak(settings);
    })
    .await
}

/// Orders one product from a store that takes the order and hangs up before answering;
/// returns the order's id and the order once settled.
async fn order_with_the_answer_lost(app: &crate::support::TestApp) -> (String, serde_json::Value) {
    app.store_admin(
        reqwest::Method::PUT,
        "/api/admin/faults",
        serde_json::json!({"drop_after_commit": true}),
    )
    .await;
    let mut body = crate::support::order_body();
    body["products"] = serde_json::json!([{"url": app.product_url("B0DEMO0005"), "quantity": 1}]);
    body["max_price"] = serde_json::json!(1_000_000);
    let id = app.created(&body).await["id"].as_str().unwrap().to_string();
    let order = app.wait_until_settled(&id).await;
    (id, order)
}

/// Adds `n` store customers as managed accounts of the test's key, so that as many
/// checkouts can run side by side (one per account at a time).
async fn add_shoppers(app: &crate::support::TestApp, n: usize) {
    for i in 0..n {
        let email = format!("shopper{i}@errand.test");
        app.store_admin(
            reqwest::Method::POST,
            "/api/admin/customers",
            serde_json::json!({"email": email, "password": errand_demo_store::DEMO_PASSWORD}),
        )
        .await;
        app.add_retailer_account(&email, None).await;
    }
}

crate::on_both_databases! {
    async fn an_order_is_placed_through_the_store_pages(backend: Backend) {
        let app = spawn_browser_engine(backend).await;
        let mut body = crate::support::order_body();
        body["products"] = serde_json::json!([{"url": app.product_url("B0DEMO0005"), "quantity": 2}]);
        body["max_price"] = serde_json::json!(20_000);
        let created = app.created(&body).await;
        let id = created["id"].as_str().unwrap().to_string();
        let order = app.wait_until_settled(&id).await;
        assert_eq!(order["status"], "order_placed", "{order:#}");
        let at_store = app.store_orders_for(&id).await;
        assert_eq!(at_store.len(), 1, "exactly one purchase: {at_store:?}");
        let bought = &at_store[0];
        let result = &order["job_result"];
        assert_eq!(result["merchant_order_ids"][0]["merchant_order_id"], bought["id"]);
        let price = &result["price_components"];
        for part in ["subtotal", "shipping", "tax", "discount", "total"] {
            assert_eq!(price[part], bought[part], "{part}");
        }
        assert_eq!(bought["lines"][0]["quantity"], 2);

        // What the browser saw is kept with the order: product, cart, review (before
        // the final click) and confirmation.
        let shots: Vec<String> = order["screenshots"].as_array().expect("screenshots").iter().map(|u| u.as_str().unwrap().to_string()).collect();
        for name in ["product", "cart", "review", "confirmation"] {
            assert!(shots.iter().any(|u| u.ends_with(&format!("/screenshots/{name}"))), "{name} in {shots:?}");
        }
        let review = shots.iter().find(|u| u.ends_with("/screenshots/review")).unwrap();
        let response = app.client.get(review).bearer_auth(&app.key).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "image/png");
        assert!(response.bytes().await.unwrap().starts_with(b"\x89PNG"));
    }

    async fn gifts_po_numbers_and_best_effort_go_through_the_store_pages(backend: Backend) {
        let app = spawn_browser_engine(backend).await;
        add_shoppers(&app, 2).await;
        let order = |lines: &[&str], extra: serde_json::Value| {
            let mut body = crate::support::order_body();
            body["products"] = lines.iter().map(|p| serde_json::json!({"url": app.product_url(p)})).collect();
            body["max_price"] = serde_json::json!(1_000_000);
            for (key, value) in extra.as_object().unwrap() {
                body[key] = value.clone();
            }
            body
        };
        let cases = [
            order(&["B0DEMO0005"], serde_json::json!({"is_gift": true, "gift_message": "For you", "po_number": "PO-77"})),
            order(&["B0DEMO0019"], serde_json::json!({"is_gift": true})),
            order(&["B0DEMO0005", "B0TEST0001", "B0DEMO0019"], serde_json::json!({
                "is_gift": true, "fulfillment": {"items": "best_effort", "gift": "best_effort"}})),
        ];
        let mut ids = vec![];
        for body in &cases {
            ids.push(app.created(body).await["id"].as_str().unwrap().to_string());
        }
        let gift = app.wait_until_settled(&ids[0]).await;
        assert_eq!(gift["status"], "order_placed", "{gift:#}");
        let at_store = &app.store_orders_for(&ids[0]).await[0];
        assert_eq!((&at_store["gift"], &at_store["gift_message"], &at_store["po_number"]),
                   (&serde_json::json!(true), &serde_json::json!("For you"), &serde_json::json!("PO-77")), "{at_store}");

        let strict = app.wait_until_settled(&ids[1]).await;
        assert_eq!(strict["job_result"]["error_type"], "gift_option_unavailable", "{strict:#}");
        assert!(app.store_orders_for(&ids[1]).await.is_empty());

        let relaxed = app.wait_until_settled(&ids[2]).await;
        assert_eq!(relaxed["status"], "order_placed", "{relaxed:#}");
        let given_up: Vec<(&str, &str)> = relaxed["fulfillment"]["concessions"].as_array().unwrap().iter()
            .map(|c| (c["concern"].as_str().unwrap(), c["code"].as_str().unwrap())).collect();
        assert_eq!(given_up, [("items", "out_of_stock"), ("gift", "gift_option_unavailable")]);
        assert_eq!(relaxed["items"][1]["status"], "skipped");
        let at_store = &app.store_orders_for(&ids[2]).await[0];
        assert_eq!(at_store["gift"], false, "{at_store}");
        let products: Vec<&str> = at_store["lines"].as_array().unwrap().iter().map(|l| l["product_id"].as_str().unwrap()).collect();
        assert_eq!(products, ["B0DEMO0005", "B0DEMO0019"]);
    }

    async fn handling_days_smaller_quantities_and_emails_go_through_the_store_pages(backend: Backend) {
        let mail = tempfile::tempdir().unwrap();
        let mail_dir = mail.path().to_path_buf();
        let app = spawn_browser_engine_with(backend, |s| s.mail.mail_dir = Some(mail_dir)).await;
        add_shoppers(&app, 2).await;
        let order = |product: &str, quantity: i64, extra: serde_json::Value| {
            let mut body = crate::support::order_body();
            body["products"] = serde_json::json!([{"url": app.product_url(product), "quantity": quantity}]);
            body["max_price"] = serde_json::json!(1_000_000);
            for (key, value) in extra.as_object().unwrap() {
                body[key] = value.clone();
            }
            body
        };
        let cases = [
            // The usual seller takes 4 days; another takes 1.
            order("B0DEMO0025", 1, serde_json::json!({"handling_days_max": 2,
                "customer_notifications": {"email": "ada@example.com"}})),
            // Its only seller takes 10 days.
            order("B0DEMO0026", 1, serde_json::json!({"handling_days_max": 3})),
            // Sold at most 10 to an order.
            order("B0DEMO0008", 12, serde_json::json!({"fulfillment": {"quantity": "best_effort"}})),
        ];
        let mut ids = vec![];
        for body in &cases {
            ids.push(app.created(body).await["id"].as_str().unwrap().to_string());
        }
        let in_time = app.wait_until_settled(&ids[0]).await;
        assert_eq!(in_time["status"], "order_placed", "{in_time:#}");
        let at_store = &app.store_orders_for(&ids[0]).await[0];
        assert_eq!(at_store["lines"][0]["offer_id"], "B0DEMO0025-HARB", "{at_store}");
        // The customer's e-mail is sent whichever driver bought the order.
        let emailed = app.wait_for_order(&ids[0], |o| {
            o["customer_notifications"]["sent"].as_array().is_some_and(|s| !s.is_empty())
        }).await;
        assert_eq!(emailed["customer_notifications"]["sent"][0], "order_placed");
        let files: Vec<_> = std::fs::read_dir(mail.path()).unwrap().collect();
        assert!(!files.is_empty());

        let too_slow = app.wait_until_settled(&ids[1]).await;
        assert_eq!(too_slow["job_result"]["error_type"], "handling_time_exceeded", "{too_slow:#}");
        assert!(app.store_orders_for(&ids[1]).await.is_empty());

        let fewer = app.wait_until_settled(&ids[2]).await;
        assert_eq!(fewer["status"], "order_placed", "{fewer:#}");
        let concession = &fewer["fulfillment"]["concessions"][0];
        assert_eq!((concession["concern"].as_str(), concession["code"].as_str()), (Some("quantity"), Some("purchase_limit_exceeded")));
        assert_eq!((concession["requested_quantity"].as_i64(), concession["fulfilled_quantity"].as_i64()), (Some(12), Some(10)));
        assert_eq!(app.store_orders_for(&ids[2]).await[0]["lines"][0]["quantity"], 10);
    }

    async fn each_test_product_ends_as_through_the_json_api(backend: Backend) {
        let app = spawn_browser_engine(backend).await;
        add_shoppers(&app, 3).await;
        let no_variant = serde_json::Value::Null;
        let forest_m = serde_json::json!([{"label": "Color", "value": "Forest Green"}, {"label": "Size", "value": "M"}]);
        // Outcomes as the `demo-http` driver gets them (engine::each_test_product_ends_as_documented),
        // with each order's price cap.
        let cases = [
            ("B0TEST0001", no_variant.clone(), 1_000_000, "order_failed", "out_of_stock"),
            // Room for the listed $39.99, not for the $20 rise at checkout.
            ("B0TEST0002", no_variant.clone(), 4_500, "order_failed", "max_price_exceeded"),
            ("B0TEST0003", no_variant.clone(), 1_000_000, "order_placed", ""),
            ("B0TEST0004", no_variant.clone(), 1_000_000, "order_placed", ""),
            ("B0TEST0005", no_variant.clone(), 1_000_000, "order_failed", "payment_declined"),
            ("B0TEST0006", no_variant.clone(), 1_000_000, "order_failed", "checkout_blocked"),
            ("B0TEST0007", no_variant.clone(), 1_000_000, "order_failed", "shipping_address_refused"),
            ("B0TEST0010", no_variant.clone(), 1_000_000, "order_failed", "login_failed"),
            ("B0DEMO0010", forest_m.clone(), 1_000_000, "order_placed", ""),
            ("B0DEMO0010", serde_json::json!([{"label": "Size", "value": "M"}]), 1_000_000, "order_failed", "insufficient_variants"),
            ("B0DEMO0010", serde_json::json!([{"label": "Color", "value": "Plaid"}, {"label": "Size", "value": "M"}]), 1_000_000, "order_failed", "invalid_variant"),
            // An ordinary product whose review total is a cent above the cap.
            ("B0DEMO0005", no_variant.clone(), 1, "order_failed", "max_price_exceeded"),
        ];
        let mut ids = vec![];
        for (product, variant, max_price, _, _) in &cases {
            let mut body = crate::support::order_body();
            let mut line = serde_json::json!({"url": app.product_url(product)});
            if !variant.is_null() {
                line["variant"] = variant.clone();
            }
            body["products"] = serde_json::json!([line]);
            body["max_price"] = serde_json::json!(max_price);
            let created = app.created(&body).await;
            ids.push(created["id"].as_str().unwrap().to_string());
        }
        for ((product, _, max_price, status, error), id) in cases.iter().zip(&ids) {
            let order = app.wait_until_settled(id).await;
            assert_eq!(order["status"], *status, "{product}: {order:#}");
            assert_eq!(order["job_result"]["error_type"].as_str().unwrap_or(""), *error, "{product}: {order:#}");
            let bought = app.store_orders_for(id).await;
            assert_eq!(bought.len(), usize::from(*status == "order_placed"), "{product}");
            if *error == "max_price_exceeded" {
                // The review page's total, read before the final click, is the quote.
                let quoted = order["job_result"]["price_components"]["total"].as_i64().expect("the quoted total");
                assert!(quoted > *max_price, "{product}: {order:#}");
                let shots = order["screenshots"].as_array().unwrap();
                assert!(shots.iter().any(|u| u.as_str().unwrap().ends_with("/screenshots/review")), "{product}: {shots:?}");
            }
        }
        // The variant chosen on the page is the one bought.
        let variant_order = &app.store_orders_for(&ids[8]).await[0];
        let sku = variant_order["lines"][0]["sku"].as_str().unwrap().to_string();
        let product = app.client.get(format!("{}/api/products/B0DEMO0010", app.store.as_ref().unwrap().base_url())).send().await.unwrap().json::<serde_json::Value>().await.unwrap();
        let chosen = product["variants"].as_array().unwrap().iter().find(|v| v["sku"] == sku.as_str()).expect("a sku of the product");
        assert_eq!(chosen["options"], serde_json::json!({"Color": "Forest Green", "Size": "M"}), "{chosen}");
        // A failure keeps the page the store showed.
        let declined = app.wait_until_settled(&ids[4]).await;
        let shots = declined["screenshots"].as_array().unwrap();
        assert!(shots.iter().any(|u| u.as_str().unwrap().ends_with("/screenshots/failure")), "{shots:?}");
    }

    async fn an_account_checks_out_one_order_at_a_time_however_long_it_takes(backend: Backend) {
        // The account's hold lasts 0.3 + 4 × 0.1 s without extension, far less than a
        // checkout through the pages: the store keeps one cart and one checkout per
        // account, so a second order sharing it would buy with the first one's state.
        let app = spawn_browser_engine_with(backend, |settings| {
            settings.queue.job_lease_seconds = 0.3;
            settings.retailers[0].timeout_seconds = 0.1;
        })
        .await;
        let mut ids = vec![];
        for product in ["B0DEMO0001", "B0DEMO0002", "B0DEMO0006"] {
            let mut body = crate::support::order_body();
            body["products"] = serde_json::json!([{"url": app.product_url(product), "quantity": 1}]);
            body["max_price"] = serde_json::json!(1_000_000);
            ids.push((product, app.created(&body).await["id"].as_str().unwrap().to_string()));
        }
        let mut waited = 0;
        for (product, id) in &ids {
            let order = app.wait_until_settled(id).await;
            assert_eq!(order["status"], "order_placed", "{product}: {order:#}");
            let bought = app.store_orders_for(id).await;
            assert_eq!(bought.len(), 1, "{product}: one purchase with its reference: {bought:?}");
            assert_eq!(bought[0]["lines"].as_array().unwrap().len(), 1, "{product}: {bought:?}");
            assert_eq!(bought[0]["lines"][0]["product_id"], *product);
            waited += usize::from(app.timeline(id).await.iter().any(|m| m == "waiting_for_account"));
        }
        assert!(waited >= 2, "the later orders waited for the account");
        assert_eq!(app.store_orders().await.len(), 3);
    }

    async fn a_purchase_whose_answer_was_lost_is_found_in_the_order_history(backend: Backend) {
        let app = spawn_browser_engine(backend).await;
        // The store takes the order, then hangs up before answering; Chromium sends the
        // form again, and the store refuses the copy (the cart is empty by then).
        let (id, order) = order_with_the_answer_lost(&app).await;
        assert_eq!(order["status"], "order_placed", "{order:#}");
        let bought = app.store_orders_for(&id).await;
        assert_eq!(bought.len(), 1, "bought exactly once");
        assert_eq!(order["job_result"]["merchant_order_ids"][0]["merchant_order_id"], bought[0]["id"]);
        assert_eq!(order["job_result"]["price_components"]["total"], bought[0]["total"]);
    }

    async fn without_lookup_an_unanswered_final_click_is_never_repeated(backend: Backend) {
        // The demo recipe without its lookup phase: the store cannot be asked whether an
        // order went through.
        let demo = errand::recipes::DEMO_RECIPE;
        let (head, rest) = demo.split_once("\nlookup = [").expect("the demo recipe has a lookup phase");
        let tracking = &rest[rest.find("\ntracking = [").expect("and a tracking phase")..];
        let dir = tempfile::tempdir().unwrap().keep();
        let recipe = dir.join("no-lookup.toml");
        std::fs::write(&recipe, format!("{head}{tracking}")).unwrap();
        let app = spawn_browser_engine_with(backend, |settings| {
            settings.retailers[0].recipe = Some(recipe.display().to_string());
        })
        .await;
        // The store takes the order, then hangs up before answering.
        let (id, order) = order_with_the_answer_lost(&app).await;
        assert_eq!(order["status"], "order_failed", "{order:#}");
        assert_eq!(order["job_result"]["error_type"], "order_probably_placed", "{order:#}");
        assert_eq!(app.store_orders_for(&id).await.len(), 1, "bought once, never clicked again");
        // The evidence: the page the final click led to.
        let shots = order["screenshots"].as_array().unwrap();
        assert!(shots.iter().any(|u| u.as_str().unwrap().ends_with("/screenshots/review")), "{shots:?}");
        assert!(shots.iter().any(|u| u.as_str().unwrap().ends_with("/screenshots/failure")), "{shots:?}");
    }

    async fn returns_go_through_the_store_pages_exactly_once(backend: Backend) {
        use crate::returns::{item_id, request_return, store_returns_for, wait_for_return};
        use reqwest::StatusCode;
        use serde_json::json;

        let app = spawn_browser_engine(backend).await;
        // A shirt of a chosen size (its SKU is the variant's, not the product's) and a
        // glass; and the final-sale plush toy.
        let forest_m = json!([{"label": "Color", "value": "Forest Green"}, {"label": "Size", "value": "M"}]);
        let order = crate::returns::delivered_order_of(&app, json!([
            {"url": app.product_url("B0DEMO0010"), "variant": forest_m, "quantity": 2},
            {"url": app.product_url("B0DEMO0005"), "quantity": 1},
        ])).await;
        let order_id = order["id"].as_str().unwrap().to_string();
        let final_sale = crate::returns::delivered_order(&app, &[("B0DEMO0023", 1)]).await;

        // One of the two shirts: asked for on the store's return form, approved with a
        // label, then credited.
        let (status, created) = request_return(&app, &app.key, &json!({
            "order_id": order_id, "reason": "wrong_size", "notes": "Runs small",
            "items": [{"order_item_id": item_id(&order, 0), "quantity": 1}]})).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["id"].as_str().unwrap().to_string();
        let credited = wait_for_return(&app, &id, |r| r["status"] == "credited").await;
        let steps = app.timeline(&order_id).await;
        let at = |step: &str| steps.iter().position(|s| s == step).unwrap_or_else(|| panic!("{step} in {steps:?}"));
        assert!(at("return_requested") < at("return_approved") && at("return_approved") < at("return_credited"), "{steps:?}");
        let labels = credited["label_urls"].as_array().unwrap();
        assert_eq!(labels.len(), 1, "{credited}");
        let label = app.client.get(labels[0].as_str().unwrap()).bearer_auth(&app.key).send().await.unwrap();
        assert_eq!(label.status(), StatusCode::OK);
        assert_eq!(label.headers()["content-type"], "application/pdf");
        assert!(label.bytes().await.unwrap().starts_with(b"%PDF-"));
        // The store's ground truth: exactly one return with our reference, of the size
        // bought, with our reason and notes.
        let at_store = store_returns_for(&app, &id).await;
        assert_eq!(at_store.len(), 1, "{at_store:?}");
        let ret = &at_store[0];
        assert_eq!(ret["id"], credited["merchant_return_id"]);
        assert_eq!(ret["status"], "credited");
        assert_eq!((ret["reason"].as_str(), ret["notes"].as_str()), (Some("wrong_size"), Some("Runs small")));
        let bought = &app.store_orders_for(&order_id).await[0];
        let shirt = bought["lines"].as_array().unwrap().iter().find(|l| l["product_id"] == "B0DEMO0010").unwrap();
        let returned = ret["lines"].as_array().unwrap();
        assert_eq!(returned.len(), 1, "{ret}");
        assert_eq!((&returned[0]["sku"], &returned[0]["quantity"]), (&shirt["sku"], &json!(1)), "{ret}");

        // Final sale: the store denies it, in its words, with no label.
        let (status, created) = request_return(&app, &app.key, &json!({
            "order_id": final_sale["id"], "reason": "no_longer_needed",
            "items": [{"order_item_id": item_id(&final_sale, 0), "quantity": 1}]})).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let denied_id = created["id"].as_str().unwrap().to_string();
        let denied = wait_for_return(&app, &denied_id, |r| r["status"] == "denied").await;
        assert!(denied["resolution_notes"].as_str().is_some_and(|n| n.contains("inal")), "{denied}");
        assert_eq!(denied["label_urls"], json!([]));
        let at_store = store_returns_for(&app, &denied_id).await;
        assert_eq!(at_store.len(), 1, "{at_store:?}");
        assert_eq!(at_store[0]["status"], "denied");
    }

    async fn eight_browser_checkouts_run_side_by_side(backend: Backend) {
        let app = spawn_browser_engine_with(backend, |settings| {
            settings.browser.browser_concurrency = 8;
            settings.queue.worker_concurrency = 8;
        })
        .await;
        add_shoppers(&app, 7).await;
        let products = ["B0DEMO0001", "B0DEMO0002", "B0DEMO0005", "B0DEMO0006", "B0DEMO0008", "B0DEMO0014", "B0DEMO0016", "B0DEMO0017"];
        let mut ids = vec![];
        for product in products {
            let mut body = crate::support::order_body();
            body["products"] = serde_json::json!([{"url": app.product_url(product), "quantity": 1}]);
            body["max_price"] = serde_json::json!(1_000_000);
            ids.push(app.created(&body).await["id"].as_str().unwrap().to_string());
        }
        let mut merchant_ids = std::collections::HashSet::new();
        let mut started = vec![];
        let mut placed = vec![];
        for (product, id) in products.iter().zip(&ids) {
            let order = app.wait_until_settled(id).await;
            assert_eq!(order["status"], "order_placed", "{product}: {order:#}");
            let bought = app.store_orders_for(id).await;
            assert_eq!(bought.len(), 1, "{product}: exactly one purchase");
            assert_eq!(bought[0]["total"], order["job_result"]["price_components"]["total"], "{product}");
            assert_eq!(bought[0]["lines"][0]["product_id"], *product);
            merchant_ids.insert(bought[0]["id"].as_str().unwrap().to_string());
            let events = crate::support::json_of(app.get(&format!("/orders/{id}/timeline")).send().await.unwrap()).await.1;
            // Fixed-width UTC RFC 3339 times: as strings, they sort as times.
            let at = |milestone: &str| events["progress"].as_array().unwrap().iter().find(|m| m["type"] == milestone).and_then(|m| m["occurred_at"].as_str()).map(str::to_string);
            started.push(at("placement_started").expect("a start"));
            placed.push(at("order_placed").expect("a placement"));
        }
        assert_eq!(merchant_ids.len(), 8, "eight distinct store orders");
        // Side by side: every checkout had begun before the first one was placed.
        let first_placed = placed.iter().min().unwrap();
        assert!(started.iter().all(|s| s < first_placed), "started {started:?}, placed {placed:?}");
    }
}

/// `errand recipes try` on the demo store: the steps up to the review page with their
/// timings and readings, the screenshots saved, and nothing bought; a product that
/// cannot be bought fails with the recipe's error type and keeps the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipes_try_runs_up_to_the_review_page_and_buys_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = start_store(&dir.path().join("store")).await;
    let recipe = concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/demo.toml");
    let try_recipe = |product: &str, extra: &[&str]| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_errand"));
        cmd.args(["recipes", "try", recipe, "--url"])
            .arg(format!("{}/dp/{product}", store.base_url()))
            .args(["--email", errand_demo_store::DEMO_EMAIL, "--output"])
            .arg(dir.path().join("out"))
            .arg("--chromium")
            .arg(chromium_path())
            .args(extra)
            .env("ERRAND_RECIPE_PASSWORD", errand_demo_store::DEMO_PASSWORD)
            .env("TMPDIR", dir.path())
            .kill_on_drop(true);
        async move {
            let output = cmd.output().await.expect("run errand recipes try");
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
    };

    let (ok, stdout, stderr) = try_recipe(
        "B0DEMO0010",
        &[
            "--variant",
            "Color=Forest Green",
            "--variant",
            "Size=M",
            "--quantity",
            "2",
        ],
    )
    .await;
    assert!(ok, "{stdout}\n{stderr}");
    for phase in ["sign_in", "product", "cart", "checkout", "review"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(phase) && l.contains(" ms")),
            "a timed {phase} step in:\n{stdout}"
        );
    }
    assert!(!stdout.lines().any(|l| l.starts_with("place")), "{stdout}");
    assert!(
        stdout.contains("title = \"Classic Organic Cotton T-Shirt"),
        "{stdout}"
    );
    assert!(stdout.contains("Reached the review page"), "{stdout}");
    assert!(
        !stdout.contains(errand_demo_store::DEMO_PASSWORD)
            && !stderr.contains(errand_demo_store::DEMO_PASSWORD),
        "the password is never printed"
    );
    // The totals it read: two shirts, and a total that adds up.
    let value = |name: &str| {
        stdout
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(name)?
                    .trim()
                    .strip_suffix(" USD")
                    .map(str::to_string)
            })
            .unwrap_or_else(|| panic!("{name} in:\n{stdout}"))
    };
    let cents = |text: String| -> i64 { text.replace('.', "").parse().unwrap() };
    let (price, subtotal, total) = (
        cents(value("price")),
        cents(value("subtotal")),
        cents(value("total")),
    );
    assert_eq!(subtotal, 2 * price, "{stdout}");
    assert_eq!(
        total,
        subtotal + cents(value("shipping")) + cents(value("tax")) - cents(value("discount")),
        "{stdout}"
    );
    for name in ["product", "cart", "review"] {
        let png = std::fs::read(dir.path().join(format!("out/demo/{name}.png"))).expect(name);
        assert!(png.starts_with(b"\x89PNG"), "{name}");
    }
    assert!(store_orders(&store).await.is_empty(), "nothing was bought");

    let (ok, stdout, stderr) = try_recipe("B0TEST0001", &[]).await;
    assert!(!ok, "{stdout}");
    assert!(stdout.contains("(out_of_stock)"), "{stdout}");
    assert!(stderr.contains("failed with out_of_stock"), "{stderr}");
    let html =
        std::fs::read_to_string(dir.path().join("out/demo/failure.html")).expect("the failed page");
    assert!(
        html.contains("Always Out of Stock Lamp"),
        "the product page was kept"
    );
    assert!(store_orders(&store).await.is_empty());

    // Without the account's password it says what is missing.
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_errand"));
    let output = cmd
        .args(["recipes", "try", recipe, "--url"])
        .arg(format!("{}/dp/B0DEMO0005", store.base_url()))
        .env_remove("ERRAND_RECIPE_PASSWORD")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--email and --password"));
}
