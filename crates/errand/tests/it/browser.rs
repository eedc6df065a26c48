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
    errand_demo_store::start(errand_demo_store::StoreOptions {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.into(),
        admin_token: None,
        time_scale: 1.0,
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
    errand::orders::address::Address {
        first_name: "Grace".into(),
        last_name: "Hopper".into(),
        address_line1: "1701 Navy Way".into(),
        address_line2: None,
        city: "Arlington".into(),
        state: Some("VA".into()),
        postal_code: "22202".into(),
        phone_number: "(703) 555-0142".into(),
        country: "US".into(),
    }
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
        gift_message: None,
        merchant_order_id: None,
        email: errand_demo_store::DEMO_EMAIL.into(),
        password: Some(errand_demo_store::DEMO_PASSWORD.into()),
        totp_secret: None,
        items: vec![ItemInput {
            url: product,
            quantity: 2,
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
    assert_eq!(names, ["product", "review"]);
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

/// The engine with the demo retailer bought through its web pages (the browser driver
/// running the built-in demo recipe) instead of its JSON API.
async fn spawn_browser_engine(backend: crate::harness::Backend) -> crate::harness::TestApp {
    crate::harness::TestApp::spawn_engine_with(backend, |settings| {
        let demo = &mut settings.retailers[0];
        demo.driver = "browser".into();
        demo.recipe = Some("builtin:demo".into());
        settings.chromium_path = chromium_path();
    })
    .await
}

crate::on_both_databases! {
    async fn an_order_is_placed_through_the_store_pages(app: TestApp) {
        let app = spawn_browser_engine(app.backend).await;
        let mut body = crate::harness::order_body();
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

        // What the browser saw is kept with the order: product, review (before the
        // final click) and confirmation.
        let shots: Vec<String> = order["screenshots"].as_array().expect("screenshots").iter().map(|u| u.as_str().unwrap().to_string()).collect();
        for name in ["product", "review", "confirmation"] {
            assert!(shots.iter().any(|u| u.ends_with(&format!("/screenshots/{name}"))), "{name} in {shots:?}");
        }
        let review = shots.iter().find(|u| u.ends_with("/screenshots/review")).unwrap();
        let response = app.client.get(review).bearer_auth(&app.key).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "image/png");
        assert!(response.bytes().await.unwrap().starts_with(b"\x89PNG"));
    }

    async fn each_test_product_ends_as_through_the_json_api(app: TestApp) {
        let app = spawn_browser_engine(app.backend).await;
        // Three more store customers, so that checkouts run side by side (one per
        // account at a time).
        for i in 0..3 {
            let email = format!("shopper{i}@errand.test");
            app.store_admin(reqwest::Method::POST, "/api/admin/customers", serde_json::json!({"email": email, "password": errand_demo_store::DEMO_PASSWORD})).await;
            app.add_retailer_account(&email, None).await;
        }
        // Outcomes as the `demo-http` driver gets them (engine::each_test_product_ends_as_documented).
        let cases = [
            ("B0TEST0001", serde_json::Value::Null, "order_failed", "out_of_stock"),
            ("B0TEST0002", serde_json::Value::Null, "order_failed", "max_price_exceeded"),
            ("B0TEST0003", serde_json::Value::Null, "order_placed", ""),
            ("B0TEST0004", serde_json::Value::Null, "order_placed", ""),
            ("B0TEST0005", serde_json::Value::Null, "order_failed", "payment_declined"),
            ("B0TEST0006", serde_json::Value::Null, "order_failed", "checkout_blocked"),
            ("B0TEST0007", serde_json::Value::Null, "order_failed", "shipping_address_refused"),
            ("B0TEST0010", serde_json::Value::Null, "order_failed", "login_failed"),
            ("B0DEMO0010", serde_json::json!([{"label": "Color", "value": "Forest Green"}, {"label": "Size", "value": "M"}]), "order_placed", ""),
            ("B0DEMO0010", serde_json::json!([{"label": "Size", "value": "M"}]), "order_failed", "insufficient_variants"),
            ("B0DEMO0010", serde_json::json!([{"label": "Color", "value": "Plaid"}, {"label": "Size", "value": "M"}]), "order_failed", "invalid_variant"),
        ];
        let mut ids = vec![];
        for (product, variant, _, _) in &cases {
            let mut body = crate::harness::order_body();
            let mut line = serde_json::json!({"url": app.product_url(product)});
            if !variant.is_null() {
                line["variant"] = variant.clone();
            }
            body["products"] = serde_json::json!([line]);
            // Room for the listed $39.99, not for B0TEST0002's $20 rise at checkout.
            body["max_price"] = serde_json::json!(if *product == "B0TEST0002" { 4_500 } else { 1_000_000 });
            let created = app.created(&body).await;
            ids.push(created["id"].as_str().unwrap().to_string());
        }
        for ((product, _, status, error), id) in cases.iter().zip(&ids) {
            let order = app.wait_until_settled(id).await;
            assert_eq!(order["status"], *status, "{product}: {order:#}");
            assert_eq!(order["job_result"]["error_type"].as_str().unwrap_or(""), *error, "{product}: {order:#}");
            let bought = app.store_orders_for(id).await.len();
            assert_eq!(bought, usize::from(*status == "order_placed"), "{product}");
        }
        // A failure keeps the page the store showed.
        let declined = app.wait_until_settled(&ids[4]).await;
        let shots = declined["screenshots"].as_array().unwrap();
        assert!(shots.iter().any(|u| u.as_str().unwrap().ends_with("/screenshots/failure")), "{shots:?}");
    }
}
