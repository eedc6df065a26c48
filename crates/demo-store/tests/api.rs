//! The store's JSON API, driven over real HTTP against a store on 127.0.0.1:0 with its
//! own SQLite file.

use errand_demo_store::{DEMO_EMAIL, DEMO_PASSWORD, RunningStore, StoreOptions, start};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;

const ADMIN: &str = "test-admin-token";

struct Store {
    running: Option<RunningStore>,
    base: String,
    client: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Store {
    /// A store whose clock runs in real time (nothing ships during a test).
    async fn open() -> Store {
        Self::open_with_clock(1.0).await
    }

    async fn open_with_clock(time_scale: f64) -> Store {
        let dir = tempfile::tempdir().unwrap();
        let running = start(StoreOptions {
            time_scale,
            ..options(&dir)
        })
        .await
        .unwrap();
        Store {
            base: running.base_url(),
            running: Some(running),
            client: reqwest::Client::new(),
            dir,
        }
    }

    async fn restart(&mut self) {
        let running = self.running.take().unwrap();
        running.stop().await.unwrap();
        let running = start(options(&self.dir)).await.unwrap();
        self.base = running.base_url();
        self.running = Some(running);
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    /// Signs in a fresh customer (created through the admin API).
    async fn customer(&self, email: &str) -> String {
        let (status, _) = self
            .post(
                "/api/admin/customers",
                Some(ADMIN),
                json!({"email": email, "password": "pw"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, body) = self
            .post(
                "/api/session",
                None,
                json!({"email": email, "password": "pw"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        body["token"].as_str().unwrap().to_string()
    }

    async fn add(&self, token: &str, item: Value) -> (StatusCode, Value) {
        self.post("/api/cart/items", Some(token), item).await
    }
}

fn options(dir: &tempfile::TempDir) -> StoreOptions {
    StoreOptions {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().to_path_buf(),
        admin_token: Some(ADMIN.into()),
        time_scale: 1.0,
    }
}

fn address(state: &str) -> Value {
    json!({"first_name": "Ada", "last_name": "Lovelace", "address_line1": "1 Main St", "city": "Austin",
           "state": state, "postal_code": "78701", "country": "US"})
}

/// A product without variants, and one with Color × Size.
const PLAIN: &str = "B0DEMO0005"; // French press, $29.99
const SHIRT: &str = "B0DEMO0010";
/// A product without gift options (the board game).
const NO_GIFT: &str = "B0DEMO0022";

#[tokio::test]
async fn catalogue_products_offers_and_search() {
    let store = Store::open().await;
    let (_, list) = store.get("/api/products", None).await;
    assert!(list["products"].as_array().unwrap().len() >= 24);
    let (_, found) = store.get("/api/products?q=cast%20iron", None).await;
    assert!(found["products"].as_array().unwrap().len() >= 2);
    let (_, books) = store.get("/api/products?category=books", None).await;
    assert!(
        books["products"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["category"] == "books")
    );

    let (status, shirt) = store.get(&format!("/api/products/{SHIRT}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shirt["dimensions"].as_array().unwrap().len(), 2);
    let offers = shirt["offers"].as_array().unwrap();
    assert!(offers.len() >= 2, "the store and third-party sellers");
    assert!(offers.iter().any(|o| o["first_party"] == true));
    assert!(
        offers
            .iter()
            .any(|o| o["offer_id"] == shirt["buy_box_offer_id"])
    );
    assert!(
        shirt["variants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["stock"].as_i64().unwrap() >= 0)
    );

    let (status, body) = store.get("/api/products/B0NOPE0000", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("product_not_found"))
    );
}

#[tokio::test]
async fn the_demo_account_signs_in_and_bad_credentials_are_refused() {
    let store = Store::open().await;
    let (status, body) = store
        .post(
            "/api/session",
            None,
            json!({"email": DEMO_EMAIL, "password": DEMO_PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["customer"]["card_last4"], "4242");
    let (status, body) = store
        .post(
            "/api/session",
            None,
            json!({"email": DEMO_EMAIL, "password": "wrong"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
    );
    let (status, body) = store.get("/api/cart", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("sign_in_required"))
    );
    let (status, _) = store.get("/api/admin/orders", Some("not-the-admin")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn variant_offer_limit_and_stock_rules() {
    let store = Store::open().await;
    let token = store.customer("rules@example.com").await;
    let (_, shirt) = store.get(&format!("/api/products/{SHIRT}"), None).await;
    let color = shirt["dimensions"][0]["values"][0].as_str().unwrap();

    let (status, body) = store
        .add(
            &token,
            json!({"product_id": SHIRT, "variant": [{"label": "Color", "value": color}]}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("insufficient_variants")
        )
    );
    assert_eq!(body["error"]["details"]["missing"], json!(["Size"]));
    let (status, body) = store.add(&token, json!({"product_id": SHIRT, "variant": [{"label": "Color", "value": "Plaid"}, {"label": "Size", "value": "M"}]})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_variant"))
    );
    let (status, body) = store
        .add(&token, json!({"product_id": PLAIN, "offer_id": "nope"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_offer"))
    );

    let (_, plain) = store.get(&format!("/api/products/{PLAIN}"), None).await;
    let limit = plain["purchase_limit"].as_i64().unwrap();
    let (status, body) = store
        .add(&token, json!({"product_id": PLAIN, "quantity": limit + 1}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("purchase_limit_exceeded")
        )
    );
    assert_eq!(
        body["error"]["details"],
        json!({"limit": limit, "available": limit})
    );

    let sku = plain["variants"][0]["sku"].as_str().unwrap();
    let (status, _) = store
        .call(
            reqwest::Method::PUT,
            &format!("/api/admin/stock/{sku}"),
            Some(ADMIN),
            Some(json!({"quantity": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = store
        .add(&token, json!({"product_id": PLAIN, "quantity": 3}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("out_of_stock"))
    );
    assert_eq!(body["error"]["details"]["available"], 2);

    let (status, body) = store
        .add(
            &token,
            json!({"product_id": SHIRT, "quantity": 1,
        "variant": [{"label": "size", "value": "m"}, {"label": "COLOR", "value": color}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = store
        .add(
            &token,
            json!({"product_id": SHIRT, "quantity": 1,
        "variant": [{"label": "Size", "value": "M"}, {"label": "Color", "value": color}]}),
        )
        .await;
    assert_eq!(
        (status, body["quantity"].as_i64()),
        (StatusCode::OK, Some(2)),
        "same variant and offer merge"
    );
}

#[tokio::test]
async fn checkout_prices_add_up_and_placing_takes_stock() {
    let store = Store::open().await;
    let token = store.customer("buyer@example.com").await;
    let (_, plain) = store.get(&format!("/api/products/{PLAIN}"), None).await;
    let stock_before = plain["variants"][0]["stock"].as_i64().unwrap();
    let unit = plain["variants"][0]["price"].as_i64().unwrap();
    assert_eq!(
        store
            .add(&token, json!({"product_id": PLAIN, "quantity": 2}))
            .await
            .0,
        StatusCode::OK
    );

    for (state, method, promo) in [
        ("CA", "standard", None),
        ("OR", "next_day", Some("SAVE10")),
        ("TX", "expedited", Some("FREESHIP")),
    ] {
        let (status, quote) = store
            .post("/api/checkout/quote", Some(&token), json!({"shipping_address": address(state), "shipping_method": method, "promo_code": promo}))
            .await;
        assert_eq!(status, StatusCode::OK, "{quote}");
        let t = &quote["totals"];
        let part = |k: &str| t[k].as_i64().unwrap();
        assert_eq!(part("subtotal"), unit * 2);
        assert_eq!(
            part("total"),
            part("subtotal") + part("shipping") + part("tax") - part("discount"),
            "{t}"
        );
        if state == "OR" {
            assert_eq!(part("tax"), 0, "Oregon has no sales tax");
            assert_eq!(part("discount"), unit * 2 / 10);
        }
        if state == "CA" {
            assert_eq!(part("tax"), (unit * 2 * 725 + 5000) / 10000);
        }
        assert_eq!(quote["shipping_methods"].as_array().unwrap().len(), 3);
    }

    let checkout = json!({"shipping_address": address("CA"), "buyer_reference": "errand-ref-1", "gift_message": "Happy birthday!"});
    let (status, body) = store
        .post(
            "/api/checkout/place",
            Some(&token),
            json!({"shipping_address": address("CA"), "expected_total": 1}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("price_changed"))
    );
    let (status, placed) = store
        .post("/api/checkout/place", Some(&token), checkout)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let order = &placed["order"];
    let id = order["id"].as_str().unwrap();
    assert!(
        id.len() == 19 && id.starts_with("112-") && id.as_bytes()[11] == b'-',
        "{id}"
    );
    assert_eq!(order["buyer_reference"], "errand-ref-1");
    assert_eq!(order["lines"][0]["quantity"], 2);

    let (_, after) = store.get(&format!("/api/products/{PLAIN}"), None).await;
    assert_eq!(
        after["variants"][0]["stock"].as_i64().unwrap(),
        stock_before - 2
    );
    let (_, cart) = store.get("/api/cart", Some(&token)).await;
    assert_eq!(cart["lines"], json!([]), "placing empties the cart");
    let (status, body) = store
        .post(
            "/api/checkout/place",
            Some(&token),
            json!({"shipping_address": address("CA")}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("cart_empty"))
    );
}

#[tokio::test]
async fn checkout_refuses_bad_addresses_promos_and_sold_out_items() {
    let store = Store::open().await;
    let token = store.customer("strict@example.com").await;
    store.add(&token, json!({"product_id": PLAIN})).await;
    let quote = |body: Value| store.post("/api/checkout/quote", Some(&token), body);

    let mut no_city = address("CA");
    no_city["city"] = json!("");
    let (_, body) = quote(json!({"shipping_address": no_city})).await;
    assert_eq!(
        (
            body["error"]["code"].as_str(),
            body["error"]["details"]["field"].as_str()
        ),
        (Some("address_invalid"), Some("city"))
    );
    let (_, body) = quote(json!({"shipping_address": address("ZZ")})).await;
    assert_eq!(body["error"]["details"]["field"], "state");
    let mut bad_zip = address("CA");
    bad_zip["postal_code"] = json!("9021");
    let (_, body) = quote(json!({"shipping_address": bad_zip})).await;
    assert_eq!(body["error"]["details"]["field"], "postal_code");
    let mut abroad = address("CA");
    abroad["country"] = json!("DE");
    let (_, body) = quote(json!({"shipping_address": abroad.clone()})).await;
    assert_eq!(body["error"]["code"], "shipping_address_refused");
    let (_, body) = quote(json!({"shipping_address": address("CA"), "promo_code": "BOGUS"})).await;
    assert_eq!(body["error"]["code"], "invalid_promo_code");
    let (_, body) =
        quote(json!({"shipping_address": address("CA"), "gift_message": "x".repeat(241)})).await;
    assert_eq!(body["error"]["code"], "gift_message_too_long");

    // Books ship abroad.
    let reader = store.customer("reader@example.com").await;
    store
        .add(&reader, json!({"product_id": "B0DEMO0017"}))
        .await;
    let (status, _) = store
        .post(
            "/api/checkout/quote",
            Some(&reader),
            json!({"shipping_address": abroad}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Sold out between adding and placing: nothing is bought.
    let (_, plain) = store.get(&format!("/api/products/{PLAIN}"), None).await;
    let sku = plain["variants"][0]["sku"].as_str().unwrap();
    store
        .call(
            reqwest::Method::PUT,
            &format!("/api/admin/stock/{sku}"),
            Some(ADMIN),
            Some(json!({"quantity": 0})),
        )
        .await;
    let (status, body) = store
        .post(
            "/api/checkout/place",
            Some(&token),
            json!({"shipping_address": address("CA")}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("out_of_stock"))
    );
    let (_, truth) = store.get("/api/admin/orders", Some(ADMIN)).await;
    assert_eq!(truth["orders"], json!([]));
}

#[tokio::test]
async fn order_history_by_buyer_reference_ground_truth_and_persistence() {
    let mut store = Store::open().await;
    let alice = store.customer("alice@example.com").await;
    let bob = store.customer("bob@example.com").await;
    for (token, reference) in [(&alice, "ref-A"), (&alice, "ref-B"), (&bob, "ref-A")] {
        store.add(token, json!({"product_id": PLAIN})).await;
        let (status, _) = store
            .post(
                "/api/checkout/place",
                Some(token),
                json!({"shipping_address": address("NY"), "buyer_reference": reference}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (_, found) = store.get("/api/orders?reference=ref-A", Some(&alice)).await;
    let found = found["orders"].as_array().unwrap();
    assert_eq!(found.len(), 1, "only alice's order with that reference");
    assert_eq!(found[0]["customer_email"], "alice@example.com");
    let (_, none) = store.get("/api/orders?reference=ref-C", Some(&alice)).await;
    assert_eq!(none["orders"], json!([]));
    let (status, _) = store
        .get(
            &format!("/api/orders/{}", found[0]["id"].as_str().unwrap()),
            Some(&bob),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "customers see only their own orders"
    );

    let (_, truth) = store.get("/api/admin/orders", Some(ADMIN)).await;
    assert_eq!(truth["orders"].as_array().unwrap().len(), 3);

    store.restart().await;
    let (_, truth_after) = store.get("/api/admin/orders", Some(ADMIN)).await;
    assert_eq!(truth_after, truth, "a restart loses nothing");
    let (status, _) = store.get("/api/orders?reference=ref-B", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK, "sessions survive a restart");

    let (status, _) = store.post("/api/admin/reset", Some(ADMIN), json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, truth) = store.get("/api/admin/orders", Some(ADMIN)).await;
    assert_eq!(truth["orders"], json!([]));
}

#[tokio::test]
async fn refusals_say_how_many_more_units_the_cart_could_take() {
    let store = Store::open().await;
    let token = store.customer("units@example.com").await;
    // The French press: limit 10 per order, over all its sellers.
    let (_, plain) = store.get(&format!("/api/products/{PLAIN}"), None).await;
    assert_eq!(plain["purchase_limit"], 10);
    let other_seller = format!("{PLAIN}-RENE");
    assert_eq!(
        store
            .add(&token, json!({"product_id": PLAIN, "quantity": 4}))
            .await
            .0,
        StatusCode::OK
    );
    for offer in [None, Some(other_seller.as_str())] {
        let (status, body) = store
            .add(
                &token,
                json!({"product_id": PLAIN, "quantity": 7, "offer_id": offer}),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("purchase_limit_exceeded")
            )
        );
        assert_eq!(
            body["error"]["details"],
            json!({"limit": 10, "available": 6}),
            "{offer:?}"
        );
    }
    let (status, _) = store
        .add(
            &token,
            json!({"product_id": PLAIN, "quantity": 6, "offer_id": other_seller}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "exactly the limit");
    let (_, body) = store.add(&token, json!({"product_id": PLAIN})).await;
    assert_eq!(
        body["error"]["details"],
        json!({"limit": 10, "available": 0})
    );

    // Stock: 5 of the skillet, 3 of them in the cart already (from any seller).
    let skillet = "B0DEMO0006";
    store
        .call(
            reqwest::Method::PUT,
            &format!("/api/admin/stock/{skillet}"),
            Some(ADMIN),
            Some(json!({"quantity": 5})),
        )
        .await;
    assert_eq!(
        store
            .add(&token, json!({"product_id": skillet, "quantity": 3}))
            .await
            .0,
        StatusCode::OK
    );
    for offer in [None, Some("B0DEMO0006-HARB")] {
        let (status, body) = store
            .add(
                &token,
                json!({"product_id": skillet, "quantity": 3, "offer_id": offer}),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("out_of_stock"))
        );
        assert_eq!(
            body["error"]["details"],
            json!({"available": 2}),
            "{offer:?}"
        );
    }
    let (status, _) = store
        .add(&token, json!({"product_id": skillet, "quantity": 2}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = store.add(&token, json!({"product_id": skillet})).await;
    assert_eq!(body["error"]["details"], json!({"available": 0}));
}

#[tokio::test]
async fn gift_option_and_po_number_are_checked_stored_and_shown() {
    let mut store = Store::open().await;
    let token = store.customer("gifts@example.com").await;
    let (_, game) = store.get(&format!("/api/products/{NO_GIFT}"), None).await;
    assert_eq!(game["gift_options"], false);
    let (_, book) = store.get("/api/products/B0DEMO0019", None).await;
    assert_eq!(book["gift_options"], false);
    let (_, plain) = store.get(&format!("/api/products/{PLAIN}"), None).await;
    assert_eq!(plain["gift_options"], true);

    store.add(&token, json!({"product_id": PLAIN})).await;
    store.add(&token, json!({"product_id": NO_GIFT})).await;
    for path in ["/api/checkout/quote", "/api/checkout/place"] {
        let (status, body) = store
            .post(
                path,
                Some(&token),
                json!({"shipping_address": address("CA"), "gift": true}),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("gift_option_unavailable")
            ),
            "{path}"
        );
        assert_eq!(
            body["error"]["message"],
            "Gift options are not available for Strategy Board Game: Harbor Lights"
        );
        assert_eq!(body["error"]["details"], json!({"product_id": NO_GIFT}));
    }
    // Not a gift: the same cart is fine, and a gift message alone is accepted as before.
    let (status, body) = store
        .post(
            "/api/checkout/quote",
            Some(&token),
            json!({"shipping_address": address("CA"), "gift": false, "gift_message": "Enjoy"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = store
        .post(
            "/api/checkout/quote",
            Some(&token),
            json!({"shipping_address": address("CA"), "po_number": "P".repeat(51)}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("po_number_too_long"))
    );
    let (status, _) = store
        .post(
            "/api/checkout/quote",
            Some(&token),
            json!({"shipping_address": address("CA"), "po_number": format!("  {}  ", "P".repeat(50))}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "50 characters, once trimmed");
    let (_, truth) = store.get("/api/admin/orders", Some(ADMIN)).await;
    assert_eq!(
        truth["orders"],
        json!([]),
        "the refused gift bought nothing"
    );

    // Without the board game, the gift order goes through.
    store
        .call(reqwest::Method::DELETE, "/api/cart", Some(&token), None)
        .await;
    store.add(&token, json!({"product_id": PLAIN})).await;
    let (status, placed) = store
        .post(
            "/api/checkout/place",
            Some(&token),
            json!({"shipping_address": address("CA"), "gift": true, "gift_message": "Enjoy",
                   "po_number": "  PO-7781  ", "buyer_reference": "gift-ref-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let id = placed["order"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        (
            &placed["order"]["gift"],
            &placed["order"]["po_number"],
            &placed["order"]["buyer_reference"]
        ),
        (&json!(true), &json!("PO-7781"), &json!("gift-ref-1"))
    );
    // Neither: `gift` false, `po_number` null (a blank one is none).
    store.add(&token, json!({"product_id": PLAIN})).await;
    let (status, plain_order) = store
        .post(
            "/api/checkout/place",
            Some(&token),
            json!({"shipping_address": address("CA"), "po_number": "   "}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let plain_id = plain_order["order"]["id"].as_str().unwrap().to_string();

    for _ in 0..2 {
        let (_, one) = store.get(&format!("/api/orders/{id}"), Some(&token)).await;
        let (_, found) = store
            .get("/api/orders?reference=gift-ref-1", Some(&token))
            .await;
        let (_, mine) = store.get("/api/orders", Some(&token)).await;
        let (_, truth) = store.get("/api/admin/orders", Some(ADMIN)).await;
        let of = |orders: &Value, id: &str| {
            orders
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["id"] == id)
                .cloned()
                .unwrap()
        };
        for order in [
            one["order"].clone(),
            found["orders"][0].clone(),
            of(&mine["orders"], &id),
            of(&truth["orders"], &id),
        ] {
            assert_eq!(
                (&order["id"], &order["gift"], &order["po_number"]),
                (&json!(id), &json!(true), &json!("PO-7781")),
                "{order}"
            );
            assert_eq!(order["gift_message"], "Enjoy");
        }
        for order in [
            of(&mine["orders"], &plain_id),
            of(&truth["orders"], &plain_id),
        ] {
            assert_eq!(
                (&order["gift"], &order["po_number"]),
                (&json!(false), &Value::Null)
            );
        }
        store.restart().await;
    }
}

/// Buys `products` (one each) for `token`, delivered next day to Texas.
async fn buy(store: &Store, token: &str, products: &[&str]) -> Value {
    for product in products {
        let (status, body) = store.add(token, json!({"product_id": product})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, placed) = store
        .post(
            "/api/checkout/place",
            Some(token),
            json!({"shipping_address": address("TX"), "shipping_method": "next_day"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    placed["order"].clone()
}

/// Polls an order until it reaches `status` (the store clock moves it).
async fn wait_for_status(store: &Store, token: &str, id: &str, status: &str) -> Value {
    for _ in 0..200 {
        let (_, body) = store.get(&format!("/api/orders/{id}"), Some(token)).await;
        if body["order"]["status"] == status {
            return body["order"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("order {id} never became {status}");
}

/// A store day lasts 0.1 s: next-day orders ship after 25 ms and arrive 100 ms later.
const FAST_CLOCK: f64 = 864_000.0;

#[tokio::test]
async fn orders_ship_with_tracking_and_arrive_on_the_store_clock() {
    let store = Store::open_with_clock(FAST_CLOCK).await;
    let token = store.customer("clock@example.com").await;
    let order = buy(&store, &token, &[PLAIN, "B0DEMO0006"]).await;
    assert_eq!(order["status"], "placed");
    let id = order["id"].as_str().unwrap();
    let delivered = wait_for_status(&store, &token, id, "delivered").await;
    let shipments = delivered["shipments"].as_array().unwrap();
    assert!((1..=2).contains(&shipments.len()), "{shipments:?}");
    let mut shipped_skus: Vec<String> = shipments
        .iter()
        .flat_map(|s| {
            s["skus"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
        })
        .collect();
    shipped_skus.sort();
    assert_eq!(
        shipped_skus,
        vec!["B0DEMO0005".to_string(), "B0DEMO0006".to_string()],
        "every item ships once"
    );
    for s in shipments {
        let number = s["tracking_number"].as_str().unwrap();
        let well_formed = match s["carrier"].as_str().unwrap() {
            "USPS" => number.len() == 22 && number.starts_with("94"),
            "UPS" => number.len() == 18 && number.starts_with("1Z"),
            "FedEx" => number.len() == 12,
            _ => false,
        };
        assert!(well_formed, "{s}");
        assert!(s["delivered_at"].is_string());
    }
}

#[tokio::test]
async fn customers_can_cancel_until_shipment() {
    let store = Store::open().await;
    let token = store.customer("cancel@example.com").await;
    let (_, before) = store.get(&format!("/api/products/{PLAIN}"), None).await;
    let order = buy(&store, &token, &[PLAIN]).await;
    let id = order["id"].as_str().unwrap();
    let (status, body) = store
        .post(&format!("/api/orders/{id}/cancel"), Some(&token), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["order"]["status"], "cancelled");
    assert_eq!(body["order"]["cancel_reason"], "cancelled_by_customer");
    let (_, after) = store.get(&format!("/api/products/{PLAIN}"), None).await;
    assert_eq!(
        after["variants"][0]["stock"], before["variants"][0]["stock"],
        "cancelled items go back in stock"
    );
    let (status, body) = store
        .post(&format!("/api/orders/{id}/cancel"), Some(&token), json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_cancellable"))
    );

    let fast = Store::open_with_clock(FAST_CLOCK).await;
    let token = fast.customer("late@example.com").await;
    let order = buy(&fast, &token, &[PLAIN]).await;
    let id = order["id"].as_str().unwrap();
    wait_for_status(&fast, &token, id, "delivered").await;
    let (status, body) = fast
        .post(&format!("/api/orders/{id}/cancel"), Some(&token), json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["details"]["status"].as_str()),
        (StatusCode::CONFLICT, Some("delivered"))
    );
}

#[tokio::test]
async fn returns_are_approved_with_a_label_or_denied_for_final_sale() {
    let store = Store::open_with_clock(FAST_CLOCK).await;
    let token = store.customer("returns@example.com").await;

    let pending = Store::open().await;
    let pending_token = pending.customer("early@example.com").await;
    let early = buy(&pending, &pending_token, &[PLAIN]).await;
    let (status, body) = pending
        .post(
            &format!("/api/orders/{}/returns", early["id"].as_str().unwrap()),
            Some(&pending_token),
            json!({"reason": "defective"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_delivered"))
    );

    let order = buy(&store, &token, &[PLAIN]).await;
    let id = order["id"].as_str().unwrap().to_string();
    wait_for_status(&store, &token, &id, "delivered").await;
    let (status, body) = store
        .post(
            &format!("/api/orders/{id}/returns"),
            Some(&token),
            json!({"reason": "changed_my_mind"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_reason"))
    );
    let (status, body) = store
        .post(
            &format!("/api/orders/{id}/returns"),
            Some(&token),
            json!({"reason": "defective", "skus": ["NOPE"]}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_sku"))
    );
    let (status, body) = store
        .post(
            &format!("/api/orders/{id}/returns"),
            Some(&token),
            json!({"reason": "defective"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["return"]["status"], "approved");
    let return_id = body["return"]["id"].as_str().unwrap();
    let label = body["return"]["label_url"].as_str().unwrap();
    assert_eq!(
        label,
        format!("{}/api/returns/{return_id}/label", store.base),
        "the label is a PDF, at an absolute URL"
    );
    let pdf = store
        .client
        .get(label)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(pdf.status(), StatusCode::OK);
    check_pdf(&pdf.bytes().await.unwrap(), return_id);
    let page = store
        .client
        .get(format!("{}/returns/{return_id}/label", store.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains(return_id));

    let plush = buy(&store, &token, &["B0DEMO0023"]).await;
    let plush_id = plush["id"].as_str().unwrap();
    wait_for_status(&store, &token, plush_id, "delivered").await;
    let (status, body) = store
        .post(
            &format!("/api/orders/{plush_id}/returns"),
            Some(&token),
            json!({"reason": "no_longer_needed"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        body["return"]["status"], "denied",
        "final-sale items are not returnable"
    );
    assert_eq!(body["return"]["label_url"], Value::Null);

    // 30 store days after delivery (3 s here) the window closes.
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    let (status, body) = store
        .post(
            &format!("/api/orders/{id}/returns"),
            Some(&token),
            json!({"reason": "defective"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("return_window_closed"))
    );
}

#[tokio::test]
async fn test_products_have_their_fixed_outcomes() {
    let store = Store::open_with_clock(FAST_CLOCK).await;
    let (_, listed) = store.get("/api/test-products", None).await;
    let listed = listed["test_products"].as_array().unwrap().clone();
    let behaviors: Vec<&str> = listed
        .iter()
        .map(|p| p["behavior"].as_str().unwrap())
        .collect();
    for expected in [
        "out_of_stock",
        "price_rise",
        "slow_checkout",
        "intermittent_5xx",
        "payment_declined",
        "checkout_blocked",
        "address_refused",
        "retailer_cancelled",
        "never_ships",
        "needs_two_factor",
    ] {
        assert!(behaviors.contains(&expected), "{expected} is listed");
    }
    let (_, all) = store.get("/api/products", None).await;
    assert!(
        all["products"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| !p["id"].as_str().unwrap().starts_with("B0TEST"))
    );
    let id_of = |behavior: &str| {
        listed.iter().find(|p| p["behavior"] == behavior).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let place = |token: String| {
        let store = &store;
        async move {
            store
                .post(
                    "/api/checkout/place",
                    Some(&token),
                    json!({"shipping_address": address("TX")}),
                )
                .await
        }
    };

    let token = store.customer("t1@example.com").await;
    let (status, body) = store
        .add(&token, json!({"product_id": id_of("out_of_stock")}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("out_of_stock"))
    );

    let token = store.customer("t2@example.com").await;
    let rising = id_of("price_rise");
    let (_, product) = store.get(&format!("/api/products/{rising}"), None).await;
    store.add(&token, json!({"product_id": rising})).await;
    let (_, quote) = store
        .post(
            "/api/checkout/quote",
            Some(&token),
            json!({"shipping_address": address("TX")}),
        )
        .await;
    assert_eq!(
        quote["lines"][0]["unit_price"].as_i64().unwrap(),
        product["variants"][0]["price"].as_i64().unwrap() + 2000
    );

    for (behavior, status, code) in [
        (
            "payment_declined",
            StatusCode::PAYMENT_REQUIRED,
            "payment_declined",
        ),
        (
            "checkout_blocked",
            StatusCode::FORBIDDEN,
            "checkout_blocked",
        ),
        (
            "address_refused",
            StatusCode::UNPROCESSABLE_ENTITY,
            "shipping_address_refused",
        ),
    ] {
        let token = store.customer(&format!("{behavior}@example.com")).await;
        store
            .add(&token, json!({"product_id": id_of(behavior)}))
            .await;
        let (got, body) = place(token).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{behavior}"
        );
    }

    // Two-factor: refused for a password-only account, bought by the two-factor account.
    let token = store.customer("no2fa@example.com").await;
    store
        .add(&token, json!({"product_id": id_of("needs_two_factor")}))
        .await;
    let (status, body) = place(token).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("totp_required"))
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let code = errand_demo_store::totp::current_code(errand_demo_store::DEMO_2FA_TOTP_SECRET, now)
        .unwrap();
    let (_, session) = store
        .post("/api/session", None, json!({"email": errand_demo_store::DEMO_2FA_EMAIL, "password": DEMO_PASSWORD, "totp": code}))
        .await;
    let token = session["token"].as_str().unwrap().to_string();
    store
        .add(&token, json!({"product_id": id_of("needs_two_factor")}))
        .await;
    assert_eq!(place(token).await.0, StatusCode::CREATED);

    let token = store.customer("flaky@example.com").await;
    store
        .add(&token, json!({"product_id": id_of("intermittent_5xx")}))
        .await;
    assert_eq!(
        place(token.clone()).await.0,
        StatusCode::SERVICE_UNAVAILABLE,
        "the first attempt fails"
    );
    assert_eq!(
        place(token).await.0,
        StatusCode::CREATED,
        "the retry succeeds"
    );

    let token = store.customer("slow@example.com").await;
    store
        .add(&token, json!({"product_id": id_of("slow_checkout")}))
        .await;
    let started = std::time::Instant::now();
    assert_eq!(place(token).await.0, StatusCode::CREATED);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(3),
        "the slow product takes its 3 seconds"
    );

    let (_, truth) = store.get("/api/admin/orders", Some(ADMIN)).await;
    assert_eq!(
        truth["orders"].as_array().unwrap().len(),
        3,
        "declined, blocked, refused and unverified checkouts bought nothing"
    );

    let token = store.customer("cancelled@example.com").await;
    let cancelled = buy(&store, &token, &[&id_of("retailer_cancelled")]).await;
    let cancelled = wait_for_status(
        &store,
        &token,
        cancelled["id"].as_str().unwrap(),
        "cancelled",
    )
    .await;
    assert_eq!(cancelled["cancel_reason"], "retailer_cancelled");

    let token = store.customer("never@example.com").await;
    let never = buy(&store, &token, &[&id_of("never_ships")]).await;
    let normal = buy(&store, &token, &[PLAIN]).await;
    wait_for_status(&store, &token, normal["id"].as_str().unwrap(), "delivered").await;
    let (_, never) = store
        .get(
            &format!("/api/orders/{}", never["id"].as_str().unwrap()),
            Some(&token),
        )
        .await;
    assert_eq!(
        never["order"]["status"], "placed",
        "still not shipped after another order was delivered"
    );
}

#[tokio::test]
async fn injected_faults_latency_errors_and_a_dropped_connection_after_commit() {
    let store = Store::open().await;
    let token = store.customer("faults@example.com").await;
    let put_faults = |faults: Value| {
        store.call(
            reqwest::Method::PUT,
            "/api/admin/faults",
            Some(ADMIN),
            Some(faults),
        )
    };

    assert_eq!(
        put_faults(json!({"error_rate": 1.5})).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        put_faults(json!({"latency_ms": 300})).await.0,
        StatusCode::OK
    );
    let started = std::time::Instant::now();
    assert_eq!(store.get("/api/products", None).await.0, StatusCode::OK);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(300),
        "latency is added"
    );

    assert_eq!(
        put_faults(json!({"error_rate": 1.0})).await.0,
        StatusCode::OK
    );
    let (status, body) = store.get("/api/products", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("service_unavailable"))
    );
    let (status, faults) = store.get("/api/admin/faults", Some(ADMIN)).await;
    assert_eq!(
        (status, faults["error_rate"].as_f64()),
        (StatusCode::OK, Some(1.0)),
        "admin endpoints are exempt"
    );

    // The order is committed, but the buyer's connection drops before any answer.
    assert_eq!(
        put_faults(json!({"drop_after_commit": true})).await.0,
        StatusCode::OK
    );
    store.add(&token, json!({"product_id": PLAIN})).await;
    let result = store
        .client
        .post(format!("{}/api/checkout/place", store.base))
        .bearer_auth(&token)
        .json(&json!({"shipping_address": address("TX"), "buyer_reference": "dropped-1"}))
        .send()
        .await;
    assert!(result.is_err(), "no response: {result:?}");
    let (_, found) = store
        .get("/api/orders?reference=dropped-1", Some(&token))
        .await;
    assert_eq!(
        found["orders"].as_array().unwrap().len(),
        1,
        "yet the order exists, findable by its reference"
    );

    assert_eq!(
        store
            .call(
                reqwest::Method::DELETE,
                "/api/admin/faults",
                Some(ADMIN),
                None
            )
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(store.get("/api/products", None).await.0, StatusCode::OK);
}

/// A held answer to a return request: the return is recorded (and found by its
/// reference) while the buyer still waits; asking again with the reference finds it.
#[tokio::test]
async fn an_injected_fault_holds_a_return_answer_after_recording_it() {
    let store = Store::open_with_clock(FAST_CLOCK).await;
    let token = store.customer("held@example.com").await;
    let order = delivered(&store, &token, &[(PLAIN, 1)]).await;
    let returns = format!("/api/orders/{}/returns", order["id"].as_str().unwrap());
    let (status, faults) = store
        .call(
            reqwest::Method::PUT,
            "/api/admin/faults",
            Some(ADMIN),
            Some(json!({"return_answer_delay_ms": 600_000})),
        )
        .await;
    assert_eq!(
        (status, faults["return_answer_delay_ms"].as_u64()),
        (StatusCode::OK, Some(600_000))
    );

    let body = json!({"reason": "defective", "reference": "held-1"});
    let asking = tokio::spawn(
        store
            .client
            .post(format!("{}{returns}", store.base))
            .bearer_auth(&token)
            .json(&body)
            .send(),
    );
    let mut found = Value::Null;
    for _ in 0..200 {
        let (_, listed) = store
            .get("/api/returns?reference=held-1", Some(&token))
            .await;
        if let Some(first) = listed["returns"].get(0) {
            found = first.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(found["status"], "approved", "the return is recorded");
    assert!(!asking.is_finished(), "while its answer is still held");
    asking.abort();

    let (status, again) = store.post(&returns, Some(&token), body).await;
    assert_eq!(
        (status, &again["return"]["id"]),
        (StatusCode::OK, &found["id"]),
        "asking again finds it"
    );
}

#[tokio::test]
async fn two_factor_accounts_need_the_current_code() {
    use errand_demo_store::{DEMO_2FA_EMAIL, DEMO_2FA_TOTP_SECRET};
    let store = Store::open().await;
    let creds = |totp: Option<String>| json!({"email": DEMO_2FA_EMAIL, "password": DEMO_PASSWORD, "totp": totp});
    let (status, body) = store.post("/api/session", None, creds(None)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("totp_required"))
    );
    let (status, body) = store
        .post("/api/session", None, creds(Some("000000".into())))
        .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let current = errand_demo_store::totp::current_code(DEMO_2FA_TOTP_SECRET, now).unwrap();
    if current != "000000" {
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_totp"))
        );
    }
    let (status, body) = store.post("/api/session", None, creds(Some(current))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["token"].is_string());
    let (status, body) = store
        .post(
            "/api/admin/customers",
            Some(ADMIN),
            json!({"email": "x@example.com", "password": "pw", "totp_secret": "not base32!"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_totp_secret")
        )
    );
}

/// A store day lasts a second: next-day orders arrive after 1.25 s, and the return
/// window stays open for 30 s.
const DAY_PER_SECOND: f64 = 86_400.0;

/// Checks a PDF the way a reader starts: the header, the trailer, a cross-reference
/// table whose every entry points at its `N 0 obj`, and the text shown.
fn check_pdf(bytes: &[u8], return_id: &str) {
    assert!(bytes.starts_with(b"%PDF-1."), "the PDF header");
    assert!(bytes.ends_with(b"%%EOF\n"), "the PDF trailer");
    let find = |needle: &[u8]| {
        bytes
            .windows(needle.len())
            .rposition(|w| w == needle)
            .unwrap_or_else(|| panic!("{} not in the PDF", String::from_utf8_lossy(needle)))
    };
    let after = find(b"startxref\n") + b"startxref\n".len();
    let startxref: usize = std::str::from_utf8(&bytes[after..])
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let table = std::str::from_utf8(&bytes[startxref..]).unwrap();
    let mut lines = table.lines();
    assert_eq!(lines.next(), Some("xref"));
    let count: usize = lines
        .next()
        .unwrap()
        .strip_prefix("0 ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(count >= 5, "catalogue, pages, page, font, contents");
    for n in 0..count {
        // 20 bytes each: offset, generation, kind, then a space and a newline.
        let entry = lines.next().unwrap();
        assert_eq!(entry.len(), 19, "{entry:?}");
        let offset: usize = entry[..10].parse().unwrap();
        if n == 0 {
            assert_eq!(entry, "0000000000 65535 f ");
            continue;
        }
        assert!(entry.ends_with(" 00000 n "), "{entry:?}");
        assert!(
            bytes[offset..].starts_with(format!("{n} 0 obj").as_bytes()),
            "object {n} at {offset}"
        );
    }
    assert!(table.contains("/Root 1 0 R"));
    let text = String::from_utf8_lossy(bytes);
    assert!(text.contains("/BaseFont /Helvetica"));
    assert!(text.contains(&format!("(Return {return_id}) Tj")), "{text}");
    assert!(
        text.contains("Reno, NV 89501"),
        "the store's return address"
    );
}

/// Places a delivered order of `quantity` units of each product, and waits for it.
async fn delivered(store: &Store, token: &str, products: &[(&str, i64)]) -> Value {
    for (product, quantity) in products {
        let (status, body) = store
            .add(token, json!({"product_id": product, "quantity": quantity}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, placed) = store
        .post(
            "/api/checkout/place",
            Some(token),
            json!({"shipping_address": address("TX"), "shipping_method": "next_day"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let id = placed["order"]["id"].as_str().unwrap().to_string();
    wait_for_status(store, token, &id, "delivered").await
}

fn error(response: &(StatusCode, Value)) -> (StatusCode, &str) {
    (
        response.0,
        response.1["error"]["code"].as_str().unwrap_or("(none)"),
    )
}

#[tokio::test]
async fn return_requests_follow_the_store_rules() {
    let store = Store::open_with_clock(DAY_PER_SECOND).await;
    let token = store.customer("rma@example.com").await;
    let other = store.customer("rma-other@example.com").await;
    let (order, second, plush, others) = tokio::join!(
        delivered(&store, &token, &[(PLAIN, 2), ("B0DEMO0006", 1)]),
        async {
            // After the first order: the cart is the customer's, one checkout at a time.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            delivered(&store, &token, &[(PLAIN, 1)]).await
        },
        async {
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
            delivered(&store, &token, &[("B0DEMO0023", 1)]).await
        },
        delivered(&store, &other, &[(PLAIN, 1)]),
    );
    let id = order["id"].as_str().unwrap();
    let path = format!("/api/orders/{id}/returns");
    let returns = |body: Value| store.post(&path, Some(&token), body);

    // Refusals.
    assert_eq!(
        error(&returns(json!({"reason": "changed_my_mind"})).await),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_reason")
    );
    let unknown =
        returns(json!({"reason": "defective", "lines": [{"sku": "NOPE", "quantity": 1}]})).await;
    assert_eq!(
        error(&unknown),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_sku")
    );
    assert_eq!(unknown.1["error"]["details"]["sku"], "NOPE");
    let too_many =
        returns(json!({"reason": "defective", "lines": [{"sku": PLAIN, "quantity": 3}]})).await;
    assert_eq!(
        error(&too_many),
        (StatusCode::UNPROCESSABLE_ENTITY, "quantity_exceeded")
    );
    assert_eq!(
        too_many.1["error"]["details"],
        json!({"sku": PLAIN, "remaining": 2})
    );
    assert!(
        too_many.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains(PLAIN)
    );
    assert_eq!(
        error(
            &returns(json!({"reason": "defective", "lines": [{"sku": PLAIN, "quantity": 0}]}))
                .await
        ),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_quantity")
    );
    assert_eq!(
        error(&returns(json!({"reason": "defective", "lines": [{"sku": PLAIN, "quantity": 1}], "skus": [PLAIN]})).await),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_items")
    );
    assert_eq!(
        error(&returns(json!({"reason": "defective", "reference": "R".repeat(101)})).await),
        (StatusCode::UNPROCESSABLE_ENTITY, "reference_too_long")
    );
    assert_eq!(
        error(
            &store
                .post(&path, Some(&other), json!({"reason": "defective"}))
                .await
        ),
        (StatusCode::NOT_FOUND, "order_not_found"),
        "only the buyer returns an order"
    );

    // A partial return with a reference: one of the two French presses.
    let first = json!({"reason": "defective", "reference": "RMA-1", "notes": "Cracked lid",
                       "lines": [{"sku": PLAIN, "quantity": 1}]});
    let (status, body) = returns(first.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let made = body["return"].clone();
    let return_id = made["id"].as_str().unwrap();
    assert!(return_id.starts_with("RT-"));
    assert_eq!(made["order_id"], id);
    assert_eq!(made["reference"], "RMA-1");
    assert_eq!(made["status"], "approved");
    assert_eq!(made["reason"], "defective");
    assert_eq!(made["notes"], "Cracked lid");
    assert_eq!(
        made["lines"],
        json!([{"sku": PLAIN, "product_id": PLAIN, "quantity": 1, "unit_price": 2999}])
    );
    assert_eq!(made["skus"], json!([PLAIN]));
    assert!(made["created_at"].is_string() && made["decision"].is_string());
    assert_eq!(
        made["label_url"],
        format!("{}/api/returns/{return_id}/label", store.base)
    );
    for field in ["received_at", "credited_at", "refund"] {
        assert_eq!(made[field], Value::Null, "{field}");
    }
    assert_eq!(made["currency"], "USD");

    // Asking again with the reference (say, after a lost answer) finds the same return,
    // whatever the rest of the request says; nothing new is made.
    let (status, again) = returns(first.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["return"]["id"], return_id);
    let (status, again) = returns(json!({"reason": "other", "reference": "RMA-1"})).await;
    assert_eq!(
        (status, again["return"]["id"].as_str()),
        (StatusCode::OK, Some(return_id))
    );
    let (_, truth) = store.get("/api/admin/returns", Some(ADMIN)).await;
    let with_reference = |truth: &Value, reference: &str| {
        truth["returns"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["reference"] == reference)
            .count()
    };
    assert_eq!(with_reference(&truth, "RMA-1"), 1);
    // The reference is taken for this order; another customer has references of their own.
    let in_use = store
        .post(
            &format!("/api/orders/{}/returns", second["id"].as_str().unwrap()),
            Some(&token),
            first.clone(),
        )
        .await;
    assert_eq!(error(&in_use), (StatusCode::CONFLICT, "reference_in_use"));
    assert_eq!(in_use.1["error"]["details"]["order_id"], id);
    let (status, theirs) = store
        .post(
            &format!("/api/orders/{}/returns", others["id"].as_str().unwrap()),
            Some(&other),
            first.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{theirs}");

    // The second press; then none is left, whichever way it is asked for.
    let (status, body) = returns(json!({"reason": "wrong_item", "reference": "RMA-2",
                                        "lines": [{"sku": PLAIN, "quantity": 1}]}))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for request in [
        json!({"reason": "defective", "lines": [{"sku": PLAIN, "quantity": 1}]}),
        json!({"reason": "defective", "skus": [PLAIN]}),
    ] {
        let refused = returns(request).await;
        assert_eq!(
            error(&refused),
            (StatusCode::UNPROCESSABLE_ENTITY, "quantity_exceeded")
        );
        assert_eq!(refused.1["error"]["details"]["remaining"], 0);
    }
    // Neither lines nor skus: what is left of the order.
    let (status, body) = returns(json!({"reason": "no_longer_needed"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["return"]["lines"],
        json!([{"sku": "B0DEMO0006", "product_id": "B0DEMO0006", "quantity": 1, "unit_price": 3499}])
    );
    assert_eq!(
        error(&returns(json!({"reason": "no_longer_needed"})).await),
        (StatusCode::UNPROCESSABLE_ENTITY, "nothing_to_return")
    );

    // Final sale: denied, without a label; denied returns do not use up the quantity.
    let plush_path = format!("/api/orders/{}/returns", plush["id"].as_str().unwrap());
    for _ in 0..2 {
        let (status, body) = store
            .post(
                &plush_path,
                Some(&token),
                json!({"reason": "damaged", "lines": [{"sku": "B0DEMO0023", "quantity": 1}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["return"]["status"], "denied");
        assert!(
            body["return"]["decision"]
                .as_str()
                .unwrap()
                .contains("Final-sale")
        );
        assert_eq!(body["return"]["label_url"], Value::Null);
        let (status, label) = store
            .get(
                &format!(
                    "/api/returns/{}/label",
                    body["return"]["id"].as_str().unwrap()
                ),
                Some(&token),
            )
            .await;
        assert_eq!(
            (status, label["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("label_not_found"))
        );
    }

    // Finding and following returns.
    let (status, found) = store
        .get("/api/returns?reference=RMA-1", Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["returns"].as_array().unwrap().len(), 1);
    assert_eq!(found["returns"][0]["id"], return_id);
    let (_, none) = store
        .get("/api/returns?reference=RMA-9", Some(&token))
        .await;
    assert_eq!(none, json!({"returns": []}));
    let (_, theirs) = store
        .get("/api/returns?reference=RMA-1", Some(&other))
        .await;
    assert_eq!(theirs["returns"].as_array().unwrap().len(), 1);
    assert_ne!(theirs["returns"][0]["id"], return_id, "each customer's own");
    let (_, all) = store.get("/api/returns", Some(&token)).await;
    assert_eq!(all["returns"].as_array().unwrap().len(), 5);
    let (status, one) = store
        .get(&format!("/api/returns/{return_id}"), Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["return"]["lines"], made["lines"]);
    for (path, who) in [
        (format!("/api/returns/{return_id}"), &other),
        ("/api/returns/RT-0".to_string(), &token),
        (format!("/api/returns/{return_id}/label"), &other),
    ] {
        assert_eq!(
            error(&store.get(&path, Some(who)).await),
            (StatusCode::NOT_FOUND, "return_not_found"),
            "{path}"
        );
    }
    assert_eq!(
        error(&store.get("/api/returns", None).await),
        (StatusCode::UNAUTHORIZED, "sign_in_required")
    );
    let (_, order) = store.get(&format!("/api/orders/{id}"), Some(&token)).await;
    let listed = order["order"]["returns"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0]["id"], return_id);
    assert_eq!(listed[0]["lines"], made["lines"]);

    // Ground truth: every customer's returns, counted by reference.
    let (status, truth) = store.get("/api/admin/returns", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(truth["returns"].as_array().unwrap().len(), 6);
    assert_eq!(with_reference(&truth, "RMA-1"), 2, "one per customer");
    assert_eq!(with_reference(&truth, "RMA-2"), 1);
    let (status, _) = store.get("/api/admin/returns", Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn returns_are_received_then_credited_with_a_refund() {
    let store = Store::open_with_clock(FAST_CLOCK).await;
    let token = store.customer("refund@example.com").await;
    let other = store.customer("refund-other@example.com").await;
    let order = delivered(&store, &token, &[(PLAIN, 2)]).await;
    let id = order["id"].as_str().unwrap();
    let (subtotal, tax) = (
        order["subtotal"].as_i64().unwrap(),
        order["tax"].as_i64().unwrap(),
    );
    assert_eq!((subtotal, tax), (5998, 375), "Texas charges 6.25 %");

    let mut refunds = 0;
    for n in 0..2 {
        let (status, body) = store
            .post(
                &format!("/api/orders/{id}/returns"),
                Some(&token),
                json!({"reason": "defective", "reference": format!("refund-{n}"),
                       "lines": [{"sku": PLAIN, "quantity": 1}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let return_id = body["return"]["id"].as_str().unwrap().to_string();
        if n == 0 {
            let label = body["return"]["label_url"].as_str().unwrap();
            let response = store
                .client
                .get(label)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["content-type"], "application/pdf");
            let bytes = response.bytes().await.unwrap();
            check_pdf(&bytes, &return_id);
            // Kept for a look with a PDF reader.
            std::fs::write(
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("return-label.pdf"),
                &bytes,
            )
            .unwrap();
            let (status, _) = store
                .get(&format!("/api/returns/{return_id}/label"), None)
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        // approved → received (3 store days, 0.3 s) → credited (2 more, 0.2 s).
        let mut seen = vec!["approved".to_string()];
        let mut credited = Value::Null;
        for _ in 0..200 {
            let (_, body) = store
                .get(&format!("/api/returns/{return_id}"), Some(&token))
                .await;
            let status = body["return"]["status"].as_str().unwrap().to_string();
            if seen.last() != Some(&status) {
                seen.push(status.clone());
            }
            if status == "credited" {
                credited = body["return"].clone();
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(
            seen == ["approved", "received", "credited"] || seen == ["approved", "credited"],
            "{seen:?}"
        );
        assert_eq!(credited["status"], "credited", "{seen:?}");
        let (created, received, at) = (
            credited["created_at"].as_str().unwrap(),
            credited["received_at"].as_str().unwrap(),
            credited["credited_at"].as_str().unwrap(),
        );
        assert!(created < received && received < at, "{credited}");
        assert!(credited["label_url"].is_string(), "the label stays");
        // The press and its share of the tax: $1.88 (1.875 rounded up), then the rest.
        let refund = credited["refund"].as_i64().unwrap();
        let share = if n == 0 { 188 } else { 187 };
        assert_eq!(refund, 2999 + share);
        refunds += refund;
    }
    assert_eq!(
        refunds,
        subtotal + tax,
        "everything returned: goods and tax back"
    );
    let (_, order) = store.get(&format!("/api/orders/{id}"), Some(&token)).await;
    let listed = order["order"]["returns"].as_array().unwrap();
    assert!(listed.iter().all(|r| r["status"] == "credited"));
    let (status, _) = store
        .get(
            &format!("/api/returns/{}", listed[0]["id"].as_str().unwrap()),
            Some(&other),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
