//! The order engine against a real demo store: placement, the price cap, every test
//! product's outcome, variants, retailer accounts, retries, expiry and tracking.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, json_of, order_body};

/// An order for `products` (`(product id, quantity, variant)`) at the test's store.
fn order_for(app: &TestApp, products: &[(&str, i64, Value)], max_price: i64) -> Value {
    let mut body = order_body();
    body["products"] = products
        .iter()
        .map(|(id, quantity, variant)| {
            let mut p = json!({"url": app.product_url(id), "quantity": quantity});
            if !variant.is_null() {
                p["variant"] = variant.clone();
            }
            p
        })
        .collect();
    body["max_price"] = json!(max_price);
    body
}

async fn place(app: &TestApp, products: &[(&str, i64, Value)], max_price: i64) -> Value {
    let created = app.created(&order_for(app, products, max_price)).await;
    let id = created["id"].as_str().expect("id").to_string();
    app.wait_until_settled(&id).await
}

fn error_type(order: &Value) -> &str {
    order["job_result"]["error_type"].as_str().unwrap_or("")
}

crate::on_both_databases! {
    async fn an_order_is_placed_once_with_the_retailers_price(app: Engine) {
        let order = place(&app, &[("B0DEMO0005", 2, Value::Null)], 20_000).await;
        assert_eq!(order["status"], "order_placed", "{order:#}");
        assert_eq!(order["attempts"], 1);
        assert!(order["items"].as_array().unwrap().iter().all(|i| i["status"] == "ordered"));

        let id = order["id"].as_str().unwrap();
        let at_store = app.store_orders_for(id).await;
        assert_eq!(at_store.len(), 1, "exactly one purchase: {at_store:?}");
        let bought = &at_store[0];
        let result = &order["job_result"];
        assert_eq!(result["success"], true);
        assert_eq!(result["merchant_order_ids"][0]["merchant_order_id"], bought["id"]);
        assert_eq!(result["merchant_order_ids"][0]["merchant"], "demo");
        let price = &result["price_components"];
        for part in ["subtotal", "shipping", "tax", "discount", "total"] {
            assert_eq!(price[part], bought[part], "{part}");
        }
        assert_eq!(price["subtotal"], 2 * 2999);
        assert_eq!(price["currency"], "USD");
        assert!(result["estimated_delivery"].is_string());
        assert_eq!(bought["lines"][0]["quantity"], 2);
        assert_eq!(bought["shipping_address"]["postal_code"], "78701");

        let timeline = app.timeline(id).await;
        assert_eq!(timeline[..3], ["order_created", "placement_started", "order_placed"]);
        // The contract's view: the current status, and only customer-facing milestones.
        let (_, body) = crate::support::json_of(app.get(&format!("/orders/{id}/timeline")).send().await.unwrap()).await;
        assert_eq!(body["current_status"], order["status"]);
        let kinds: Vec<&str> = body["milestones"].as_array().unwrap().iter().map(|m| m["type"].as_str().unwrap()).collect();
        assert_eq!(kinds[..2], ["order_created", "order_placed"], "{body:#}");
        assert!(body["milestones"].as_array().unwrap().iter().all(|m| m["milestone"] == m["type"]));

        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        for name in [
            "errand_placements_total{outcome=\"placed\"",
            "errand_job_wait_seconds_bucket{kind=\"place_order\"",
            "errand_job_run_seconds_bucket{kind=\"place_order\"",
            "errand_retailer_call_seconds_bucket",
            "errand_jobs{kind=\"track_order\",state=",
        ] {
            assert!(metrics.contains(name), "{name} in {metrics}");
        }
    }

    async fn the_price_cap_is_checked_before_anything_is_bought(app: Engine) {
        // $29.99 + $5.99 shipping + 8.25 % Texas tax is above $35.00.
        let order = place(&app, &[("B0DEMO0005", 1, Value::Null)], 3500).await;
        assert_eq!(order["status"], "order_failed");
        assert_eq!(error_type(&order), "max_price_exceeded");
        let price = &order["job_result"]["price_components"];
        assert!(price["total"].as_i64().unwrap() > 3500, "{price}");
        assert_eq!(price["subtotal"], 2999);
        assert!(order["items"].as_array().unwrap().iter().all(|i| i["status"] == "failed"));
        assert!(app.store_orders_for(order["id"].as_str().unwrap()).await.is_empty());

        // The checkout price of B0TEST0002 rises by $20 over the listed $39.99.
        let order = place(&app, &[("B0TEST0002", 1, Value::Null)], 4500).await;
        assert_eq!(error_type(&order), "max_price_exceeded", "{order:#}");
        assert!(order["job_result"]["price_components"]["subtotal"].as_i64().unwrap() >= 5999);
        assert!(app.store_orders_for(order["id"].as_str().unwrap()).await.is_empty());
        assert!(app.store_orders().await.is_empty(), "nothing was bought");
    }

    async fn each_test_product_ends_as_documented(app: Engine) {
        let cases = [
            ("B0TEST0001", "order_failed", "out_of_stock"),
            ("B0TEST0003", "order_placed", ""),
            ("B0TEST0004", "order_placed", ""),
            ("B0TEST0005", "order_failed", "payment_declined"),
            ("B0TEST0006", "order_failed", "checkout_blocked"),
            ("B0TEST0007", "order_failed", "shipping_address_refused"),
            ("B0TEST0009", "order_placed", ""),
            ("B0TEST0010", "order_failed", "login_failed"),
        ];
        let mut ids = vec![];
        for (product, _, _) in cases {
            let created = app.created(&order_for(&app, &[(product, 1, Value::Null)], 1_000_000)).await;
            ids.push(created["id"].as_str().unwrap().to_string());
        }
        for ((product, status, error), id) in cases.iter().zip(&ids) {
            let order = app.wait_until_settled(id).await;
            assert_eq!(order["status"], *status, "{product}: {order:#}");
            assert_eq!(error_type(&order), *error, "{product}");
            let bought = app.store_orders_for(id).await.len();
            assert_eq!(bought, usize::from(*status == "order_placed"), "{product}");
            if *status == "order_failed" {
                let message = order["job_result"]["error"].as_str().unwrap_or("");
                assert!(!message.is_empty(), "{product} has a message");
            }
        }
        // The flaky product's first attempt failed with a 503 and was retried.
        let flaky = app.wait_until_settled(&ids[2]).await;
        assert_eq!(flaky["attempts"], 2, "{flaky:#}");

        // The listing documents the same outcomes.
        let (_, listing) = json_of(app.get("/orders/test-products").send().await.unwrap()).await;
        let products = listing["test_products"].as_array().unwrap();
        assert_eq!(products.len(), 10);
        let declined = products.iter().find(|p| p["product_id"] == "B0TEST0005").unwrap();
        assert_eq!(declined["outcome_error_type"], "payment_declined");
        assert_eq!(declined["url"], app.product_url("B0TEST0005"));
    }

    async fn two_factor_accounts_sign_in_with_a_one_time_code(app: Engine) {
        let account = app
            .add_retailer_account(errand_demo_store::DEMO_2FA_EMAIL, Some(errand_demo_store::DEMO_2FA_TOTP_SECRET))
            .await;
        let mut body = order_for(&app, &[("B0TEST0010", 1, Value::Null)], 1_000_000);
        body["retailer_credentials_id"] = json!(account);
        let created = app.created(&body).await;
        let order = app.wait_until_settled(created["id"].as_str().unwrap()).await;
        assert_eq!(order["status"], "order_placed", "{order:#}");
        assert_eq!(order["job_result"]["merchant_order_ids"][0]["account"], account);
        assert_eq!(order["retailer_credentials_id"], account);
    }

    async fn variants_are_chosen_at_the_retailer(app: Engine) {
        let shirt = json!([{"label": "Color", "value": "Forest Green"}, {"label": "Size", "value": "M"}]);
        let order = place(&app, &[("B0DEMO0010", 1, shirt)], 1_000_000).await;
        assert_eq!(order["status"], "order_placed", "{order:#}");
        let bought = app.store_orders_for(order["id"].as_str().unwrap()).await;
        let sku = bought[0]["lines"][0]["sku"].as_str().unwrap().to_string();
        assert!(sku.contains("M"), "{sku}");

        let order = place(&app, &[("B0DEMO0010", 1, json!([{"label": "Size", "value": "M"}]))], 1_000_000).await;
        assert_eq!(error_type(&order), "insufficient_variants", "{order:#}");
        let order = place(&app, &[("B0DEMO0010", 1, json!([{"label": "Color", "value": "Plaid"}, {"label": "Size", "value": "M"}]))], 1_000_000).await;
        assert_eq!(error_type(&order), "invalid_variant", "{order:#}");
        assert_eq!(app.store_orders().await.len(), 1);
    }

    async fn orders_wait_for_a_busy_account_instead_of_failing(app: Engine) {
        // The slow product holds the only account for 3 seconds while it is placed.
        let slow = app.created(&order_for(&app, &[("B0TEST0003", 1, Value::Null)], 1_000_000)).await;
        let slow_id = slow["id"].as_str().unwrap().to_string();
        app.wait_for_order(&slow_id, |o| o["status"] == "in_progress").await;
        let next = app.created(&order_for(&app, &[("B0DEMO0005", 1, Value::Null)], 1_000_000)).await;
        let next_id = next["id"].as_str().unwrap().to_string();
        let next = app.wait_until_settled(&next_id).await;
        let slow = app.wait_until_settled(&slow_id).await;
        assert_eq!(slow["status"], "order_placed");
        assert_eq!(next["status"], "order_placed", "{next:#}");
        let timeline = app.timeline(&next_id).await;
        assert!(timeline.contains(&"waiting_for_account".to_string()), "{timeline:?}");
        // One checkout at a time: the waiting order was placed after the slow one.
        let placed_at = |o: &Value| o["job_result"]["merchant_order_ids"][0]["placed_at"].as_str().unwrap().to_string();
        assert!(placed_at(&next) > placed_at(&slow));
    }

    async fn orders_name_their_account_or_get_any_active_one(app: Engine) {
        let mut body = order_for(&app, &[("B0DEMO0005", 1, Value::Null)], 1_000_000);
        body["retailer_credentials_id"] = json!("acct_nosuch00");
        let (status, error) = json_of(app.create_order(&body).await).await;
        assert_eq!(status, 422);
        assert_eq!(error["detail"][0]["loc"], json!(["body", "retailer_credentials_id"]));
        assert_eq!(error["detail"][0]["type"], "unknown_retailer_credentials");

        // With no active account the order fails with a message saying what to do.
        let (_, accounts) = json_of(app.get("/managed-accounts").send().await.unwrap()).await;
        for account in accounts["data"].as_array().unwrap() {
            let response = app
                .client
                .patch(app.url(&format!("/managed-accounts/{}", account["id"].as_str().unwrap())))
                .bearer_auth(&app.key)
                .json(&json!({"active": false}))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
        }
        let order = place(&app, &[("B0DEMO0005", 1, Value::Null)], 1_000_000).await;
        assert_eq!(error_type(&order), "no_retailer_account", "{order:#}");
        assert!(order["job_result"]["error"].as_str().unwrap().contains("/managed-accounts"));
    }

    async fn transient_store_failures_are_retried_without_duplicates(app: Engine) {
        app.store_admin(Method::PUT, "/api/admin/faults", json!({"error_rate": 0.3})).await;
        let mut ids = vec![];
        for _ in 0..6 {
            let created = app.created(&order_for(&app, &[("B0TEST0009", 1, Value::Null)], 1_000_000)).await;
            ids.push(created["id"].as_str().unwrap().to_string());
        }
        for id in &ids {
            let order = app.wait_until_settled(id).await;
            assert_eq!(order["status"], "order_placed", "{order:#}");
            assert_eq!(app.store_orders_for(id).await.len(), 1);
        }
    }

    async fn a_dropped_answer_is_resolved_by_asking_the_retailer(app: Engine) {
        // The store commits the purchase and then hangs up without answering.
        app.store_admin(Method::PUT, "/api/admin/faults", json!({"drop_after_commit": true})).await;
        let created = app.created(&order_for(&app, &[("B0TEST0009", 1, Value::Null)], 1_000_000)).await;
        let id = created["id"].as_str().unwrap().to_string();
        let order = app.wait_until_settled(&id).await;
        assert_eq!(order["status"], "order_placed", "{order:#}");
        assert_eq!(app.store_orders_for(&id).await.len(), 1, "adopted, not bought again");
    }

    async fn an_expired_order_fails_with_its_description(app: Engine) {
        let mut body = order_for(&app, &[("B0DEMO0005", 1, Value::Null)], 1_000_000);
        let past = time::OffsetDateTime::now_utc().unix_timestamp() - 5;
        body["expiration"] = json!({"timestamp": past, "description": "Sorry, the event is booked."});
        let created = app.created(&body).await;
        assert_eq!(created["expiration"]["timestamp"], past);
        let order = app.wait_until_settled(created["id"].as_str().unwrap()).await;
        assert_eq!(order["status"], "order_failed");
        assert_eq!(error_type(&order), "expired");
        assert_eq!(order["job_result"]["error"], "Sorry, the event is booked.");
        assert!(app.store_orders().await.is_empty());
    }

    async fn a_placed_order_is_tracked_to_delivery(app: Engine) {
        let created = app.created(&order_for(&app, &[("B0DEMO0005", 1, Value::Null), ("B0DEMO0008", 1, Value::Null)], 1_000_000)).await;
        let id = created["id"].as_str().unwrap().to_string();
        let order = app
            .wait_for_order(&id, |o| {
                o["items"].as_array().is_some_and(|items| items.iter().all(|i| i["status"] == "delivered"))
            })
            .await;
        assert_eq!(order["status"], "order_placed");
        let tracking = order["tracking_numbers"].as_array().unwrap();
        assert!(!tracking.is_empty());
        let at_store = &app.store_orders_for(&id).await[0];
        let store_numbers: Vec<&Value> = at_store["shipments"].as_array().unwrap().iter().map(|s| &s["tracking_number"]).collect();
        for t in tracking {
            assert!(store_numbers.contains(&&t["tracking_number"]), "{t}");
            assert!(t["carrier"].is_string() && t["id"].is_string() && t["created_at"].is_string());
        }
        let timeline = app.timeline(&id).await;
        for milestone in ["order_placed", "tracking_acquired", "shipped", "delivered"] {
            assert!(timeline.contains(&milestone.to_string()), "{milestone}: {timeline:?}");
        }
    }

    async fn a_store_cancellation_becomes_cancelled_by_retailer(app: Engine) {
        let created = app.created(&order_for(&app, &[("B0TEST0008", 1, Value::Null)], 1_000_000)).await;
        let id = created["id"].as_str().unwrap().to_string();
        let order = app.wait_for_order(&id, |o| o["status"] == "cancelled_by_retailer").await;
        assert!(order["items"].as_array().unwrap().iter().all(|i| i["status"] == "cancelled"));
        let timeline = app.timeline(&id).await;
        assert_eq!(timeline.last().unwrap(), "cancelled");
    }
}

/// The driver reads products from the store as a shopper would see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_driver_reads_products() {
    let app = TestApp::spawn_engine(crate::support::Backend::Sqlite).await;
    let registry =
        errand::retailers::Registry::new(&app.settings.retailers, &Default::default()).unwrap();
    let url = url::Url::parse(&app.product_url("B0DEMO0010")).unwrap();
    let retailer = registry.for_url(url.as_str()).unwrap();
    let product = retailer.driver.product(&url).await.unwrap();
    assert_eq!(product.product_id, "B0DEMO0010");
    assert!(product.title.contains("T-Shirt"), "{}", product.title);
    assert_eq!(product.currency, "USD");
    assert_eq!(product.variants.len(), 10);
    let medium = product
        .variants
        .iter()
        .find(|v| {
            v.options
                .iter()
                .any(|o| o.label == "Size" && o.value == "M")
        })
        .expect("a medium");
    assert_eq!(medium.price, 1999);
    assert!(medium.in_stock);

    let missing = url::Url::parse(&app.product_url("B0NOPE0000")).unwrap();
    let error = retailer.driver.product(&missing).await.unwrap_err();
    assert!(matches!(
        error,
        errand::retailers::DriverError::Permanent {
            error_type: errand::orders::model::ErrorType::ProductNotFound,
            ..
        }
    ));
}

/// The fence a placing run passes just before it may buy: the purchase is recorded only
/// while the run holds its job under a live lease and its retailer account under a live
/// hold, so a run that was paused past either (another run may own the order now)
/// places nothing when it wakes.
mod fence {
    use std::time::Duration;

    use errand::engine::store::{self, AccountChoice, Acquired, NewAttempt};
    use errand::orders::lifecycle::Change;
    use errand::queue::{self, JobKind};
    use errand::storage::Timestamp;
    use uuid::Uuid;

    use crate::support::order_body;

    const LEASE: Duration = Duration::from_secs(30);

    fn attempt<'a>(order_id: Uuid, account: &'a str) -> NewAttempt<'a> {
        NewAttempt {
            order_id,
            retailer_account_id: account,
            reference: "fence",
            expected_total: 100,
            settles_at: Timestamp::now(),
            concessions: &[],
        }
    }

    crate::on_both_databases! {
        async fn a_run_past_its_account_hold_or_job_lease_does_not_place(app: TestApp) {
            let db = app.db();
            app.add_retailer_account("fenced@errand.test", None).await;
            let created = app.created(&order_body()).await;
            let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
            let order = errand::orders::store::load_record(db, id).await.unwrap().unwrap();
            let job = queue::claim(db, "w", &[], 1, LEASE, &[JobKind::PlaceOrder]).await.unwrap().remove(0);
            let hold = |until| store::acquire_account(db, &order, "demo", AccountChoice::Any, until, Change::default());

            // The account's hold ran out while the run was stalled.
            let Acquired::Held(account) = hold(Timestamp::now().after(Duration::from_millis(50))).await.unwrap() else {
                panic!("the account is free");
            };
            tokio::time::sleep(Duration::from_millis(100)).await;
            let late = store::begin_attempt(db, &job, attempt(id, &account.id)).await.unwrap();
            assert!(late.is_none(), "no purchase recorded past the account's hold");

            // Another order took the account meanwhile: still nothing.
            let other = app.created(&order_body()).await;
            let other_id: Uuid = other["id"].as_str().unwrap().parse().unwrap();
            let other_order = errand::orders::store::load_record(db, other_id).await.unwrap().unwrap();
            let taken = store::acquire_account(db, &other_order, "demo", AccountChoice::Any,
                Timestamp::now().after(LEASE), Change::default()).await.unwrap();
            assert!(matches!(taken, Acquired::Held(_)), "the other order holds the account");
            assert!(store::begin_attempt(db, &job, attempt(id, &account.id)).await.unwrap().is_none());
            let mut tx = db.begin().await.unwrap();
            store::release_account(&mut tx, &account.id, other_order.id).await.unwrap();
            tx.commit().await.unwrap();

            // Held again, under a live hold and a live job lease: recorded.
            assert!(matches!(hold(Timestamp::now().after(LEASE)).await.unwrap(), Acquired::Held(_)));
            let recorded = store::begin_attempt(db, &job, attempt(id, &account.id)).await.unwrap();
            assert!(recorded.is_some());
            let mut tx = db.begin().await.unwrap();
            store::settle_attempt(&mut tx, id, 1, store::AttemptState::NotPlaced, None, None).await.unwrap();
            tx.commit().await.unwrap();

            // The job's lease ran out (its worker stopped heartbeating): nothing.
            queue::heartbeat(db, "w", Duration::from_millis(10)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(store::begin_attempt(db, &job, attempt(id, &account.id)).await.unwrap().is_none());
        }
    }
}
