//! What the browser saw while buying: artifacts saved with an order (as the browser
//! driver saves them), listed in the order's `screenshots` and served to its owner only.

use errand::auth::Tenant;
use errand::orders::artifacts::{self, ArtifactError, ArtifactKind, MAX_ARTIFACT_BYTES};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::schema::assert_valid;
use crate::support::*;

/// A PNG signature followed by bytes that tell screenshots apart.
fn png(tag: &str) -> Vec<u8> {
    [
        b"\x89PNG\r\n\x1a\n".as_slice(),
        tag.as_bytes(),
        &[0, 255, 13, 10],
    ]
    .concat()
}

fn tenant_of(app: &TestApp) -> Tenant {
    Tenant {
        account_id: app.account_id,
        livemode: true,
        key_id: Uuid::nil(),
    }
}

/// A new order of the test's key and its id.
async fn new_order(app: &TestApp) -> Uuid {
    let order = app.created(&order_body()).await;
    order["id"].as_str().unwrap().parse().unwrap()
}

async fn save(app: &TestApp, order: Uuid, name: &str, kind: ArtifactKind, bytes: &[u8]) {
    artifacts::save(app.db(), &tenant_of(app), order, name, kind, bytes)
        .await
        .unwrap_or_else(|e| panic!("save {name}: {e}"));
}

async fn fetch(app: &TestApp, key: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .expect("request")
}

fn header(response: &reqwest::Response, name: reqwest::header::HeaderName) -> &str {
    response
        .headers()
        .get(&name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

crate::on_both_databases! {
    async fn the_order_lists_its_screenshots_in_order_and_each_serves_its_png(app: TestApp) {
        let id = new_order(&app).await;
        let other = new_order(&app).await;
        let (_, fresh) = app.get_order(&id.to_string()).await;
        assert_eq!(fresh["screenshots"], json!([]), "none yet");

        let names = ["product-1", "product-2", "cart", "review", "failure"];
        for name in names {
            save(&app, id, name, ArtifactKind::Screenshot, &png(name)).await;
        }
        save(&app, id, "failure", ArtifactKind::Page, b"<html><script>alert(1)</script></html>").await;

        let (status, order) = app.get_order(&id.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{order}");
        assert_valid("OrderResponse", &order);
        let expected: Vec<String> = names
            .iter()
            .map(|n| format!("{}/orders/{id}/screenshots/{n}", app.base))
            .collect();
        assert_eq!(order["screenshots"], json!(expected), "screenshots only, in the order taken");

        for (name, url) in names.iter().zip(&expected) {
            let response = app.client.get(url).bearer_auth(&app.key).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{url}");
            assert_eq!(header(&response, CONTENT_TYPE), "image/png");
            assert_eq!(header(&response, "x-content-type-options".parse().unwrap()), "nosniff");
            assert_eq!(response.bytes().await.unwrap().as_ref(), png(name).as_slice());
        }

        // The listing reads every listed order's screenshots.
        let (status, list) = json_of(app.get("/orders").send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let listed = |want: Uuid| -> Value {
            list["orders"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["id"] == want.to_string())
                .unwrap()["screenshots"]
                .clone()
        };
        assert_eq!(listed(id), json!(expected));
        assert_eq!(listed(other), json!([]));
    }

    async fn a_failure_page_is_served_sandboxed_as_an_attachment(app: TestApp) {
        let id = new_order(&app).await;
        let html = "<html><body>Caf\u{e9} <script>steal()</script></body></html>";
        save(&app, id, "failure", ArtifactKind::Page, html.as_bytes()).await;
        let response = fetch(&app, &app.key, &format!("/orders/{id}/pages/failure")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, CONTENT_TYPE), "text/html; charset=utf-8");
        assert_eq!(header(&response, CONTENT_SECURITY_POLICY), "sandbox");
        assert_eq!(
            header(&response, CONTENT_DISPOSITION),
            format!("attachment; filename=\"{id}-failure.html\"")
        );
        assert_eq!(response.text().await.unwrap(), html);
        // A page is not a screenshot.
        let response = fetch(&app, &app.key, &format!("/orders/{id}/screenshots/failure")).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }

    async fn another_tenant_gets_not_found_for_both(app: TestApp) {
        let id = new_order(&app).await;
        save(&app, id, "cart", ArtifactKind::Screenshot, &png("cart")).await;
        save(&app, id, "failure", ArtifactKind::Page, b"<p>x</p>").await;
        let stranger = app.new_account_key("stranger").await;
        // The same account's test key is another tenant too.
        let test_key = app.key_for_account(app.account_id, false).await;
        for key in [&stranger, &test_key] {
            for path in [
                format!("/orders/{id}/screenshots/cart"),
                format!("/orders/{id}/pages/failure"),
                format!("/orders/{id}/screenshots/nothing"),
            ] {
                let (status, body) = json_of(fetch(&app, key, &path).await).await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
                assert_eq!(body["error"]["message"], "Order not found", "{path}");
            }
        }
        // Nor can an artifact be saved to another tenant's order.
        let intruder = Tenant { account_id: Uuid::now_v7(), livemode: true, key_id: Uuid::nil() };
        let error = artifacts::save(app.db(), &intruder, id, "cart", ArtifactKind::Screenshot, &png("evil"))
            .await
            .unwrap_err();
        assert!(matches!(error, ArtifactError::OrderNotFound), "{error}");
        let response = fetch(&app, &app.key, &format!("/orders/{id}/screenshots/cart")).await;
        assert_eq!(response.bytes().await.unwrap().as_ref(), png("cart").as_slice());
    }

    async fn unknown_names_and_bad_input_are_precise(app: TestApp) {
        let id = new_order(&app).await;
        save(&app, id, "cart", ArtifactKind::Screenshot, &png("cart")).await;
        save(&app, id, "review", ArtifactKind::Screenshot, &png("review")).await;

        let (status, body) = json_of(fetch(&app, &app.key, &format!("/orders/{id}/screenshots/confirmation")).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["code"], "not_found");
        assert_eq!(
            body["error"]["message"],
            format!("Order {id} has no screenshot named \"confirmation\"")
        );
        assert_eq!(body["error"]["details"]["available"], json!(["cart", "review"]));

        let (status, body) = json_of(fetch(&app, &app.key, &format!("/orders/{id}/pages/failure")).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["message"], format!("Order {id} has no page named \"failure\""));

        let (status, body) = json_of(fetch(&app, &app.key, &format!("/orders/{}/screenshots/cart", Uuid::now_v7())).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["message"], "Order not found");

        let (status, body) = json_of(fetch(&app, &app.key, &format!("/orders/{id}/screenshots/Cart.png")).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error_list(&body), [(json!(["path", "name"]), "string_pattern_mismatch".to_string())]);

        let (status, body) = json_of(fetch(&app, &app.key, "/orders/not-a-uuid/pages/a%20b").await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(
            error_list(&body),
            [
                (json!(["path", "order_id"]), "uuid_parsing".to_string()),
                (json!(["path", "name"]), "string_pattern_mismatch".to_string()),
            ]
        );

        let response = app.client.get(app.url(&format!("/orders/{id}/screenshots/cart"))).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    async fn a_retaken_screenshot_replaces_the_first(app: TestApp) {
        let id = new_order(&app).await;
        save(&app, id, "cart", ArtifactKind::Screenshot, &png("first cart")).await;
        save(&app, id, "review", ArtifactKind::Screenshot, &png("review")).await;
        save(&app, id, "cart", ArtifactKind::Screenshot, &png("second cart")).await;

        let listed = artifacts::list(app.db(), &tenant_of(&app), id).await.unwrap();
        let names: Vec<&str> = listed.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["review", "cart"], "one cart, listed where it was retaken");
        assert_eq!(listed[1].size, png("second cart").len() as i64);

        let (_, order) = app.get_order(&id.to_string()).await;
        let base = format!("{}/orders/{id}/screenshots", app.base);
        assert_eq!(order["screenshots"], json!([format!("{base}/review"), format!("{base}/cart")]));
        let response = fetch(&app, &app.key, &format!("/orders/{id}/screenshots/cart")).await;
        assert_eq!(response.bytes().await.unwrap().as_ref(), png("second cart").as_slice());
    }

    async fn oversized_empty_and_non_png_artifacts_are_refused(app: TestApp) {
        let id = new_order(&app).await;
        let tenant = tenant_of(&app);
        let mut big = png("big");
        big.resize(MAX_ARTIFACT_BYTES + 1, 0);
        let error = artifacts::save(app.db(), &tenant, id, "cart", ArtifactKind::Screenshot, &big)
            .await
            .unwrap_err();
        assert!(matches!(error, ArtifactError::TooLarge { .. }), "{error}");
        assert_eq!(
            error.to_string(),
            format!("the screenshot \"cart\" is {} bytes; an artifact may be at most 5242880 bytes", MAX_ARTIFACT_BYTES + 1)
        );
        // Exactly at the limit is kept.
        big.truncate(MAX_ARTIFACT_BYTES);
        save(&app, id, "review", ArtifactKind::Screenshot, &big).await;

        let error = artifacts::save(app.db(), &tenant, id, "cart", ArtifactKind::Screenshot, b"<svg/>")
            .await
            .unwrap_err();
        assert!(matches!(error, ArtifactError::NotPng(_)), "{error}");
        let error = artifacts::save(app.db(), &tenant, id, "failure", ArtifactKind::Page, b"")
            .await
            .unwrap_err();
        assert!(matches!(error, ArtifactError::Empty { .. }), "{error}");
        let error = artifacts::save(app.db(), &tenant, id, "../cart", ArtifactKind::Page, b"x")
            .await
            .unwrap_err();
        assert!(matches!(error, ArtifactError::InvalidName(_)), "{error}");

        let listed = artifacts::list(app.db(), &tenant, id).await.unwrap();
        assert_eq!(listed.len(), 1, "only the artifact within the limit: {listed:?}");
        let response = fetch(&app, &app.key, &format!("/orders/{id}/screenshots/review")).await;
        assert_eq!(response.bytes().await.unwrap().len(), MAX_ARTIFACT_BYTES);
    }

    async fn urls_follow_the_host_and_forwarded_scheme(app: TestApp) {
        let id = new_order(&app).await;
        save(&app, id, "confirmation", ArtifactKind::Screenshot, &png("done")).await;
        let (status, order) = json_of(
            app.get(&format!("/orders/{id}"))
                .header("host", "errand.example.com")
                .header("x-forwarded-proto", "https")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{order}");
        assert_eq!(
            order["screenshots"],
            json!([format!("https://errand.example.com/orders/{id}/screenshots/confirmation")])
        );
    }
}
