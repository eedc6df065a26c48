//! Which retailer an order goes to, decided at `POST /orders`.

use serde_json::json;

use crate::support::{error_list, json_of, order_body};

crate::on_both_databases! {
    async fn a_url_no_retailer_serves_is_refused_with_the_configured_ones_listed(app: TestApp) {
        let mut body = order_body();
        body["products"] = json!([{"url": "https://unknown.example/dp/B0DEMO0001"}]);
        let (status, error) = json_of(app.create_order(&body).await).await;
        assert_eq!(status, 422);
        assert_eq!(error_list(&error), vec![(json!(["body", "products", 0, "url"]), "unknown_retailer".to_string())]);
        let message = error["detail"][0]["msg"].as_str().unwrap();
        assert!(message.contains("\"demo\"") && message.contains("\"other\""), "{message}");

        body["products"] = json!([{"url": "https://store.example/search?q=lamp"}]);
        let (status, error) = json_of(app.create_order(&body).await).await;
        assert_eq!(status, 422);
        assert_eq!(error["detail"][0]["type"], "not_a_product_url");
    }

    async fn one_order_buys_from_one_retailer(app: TestApp) {
        let mut body = order_body();
        body["products"] = json!([
            {"url": "https://store.example/dp/B0DEMO0001"},
            {"url": "https://shop.example/dp/X1"}
        ]);
        let (status, error) = json_of(app.create_order(&body).await).await;
        assert_eq!(status, 422);
        assert_eq!(error_list(&error), vec![(json!(["body", "products", 1, "url"]), "mismatching_retailer".to_string())]);
        let (_, list) = json_of(app.get("/orders").send().await.unwrap()).await;
        assert_eq!(list["total"], 0, "nothing was stored");
    }

    async fn test_keys_only_order_from_the_sandbox(app: TestApp) {
        let test_key = app.key_for_account(app.account_id, false).await;
        let mut body = order_body();
        body["products"] = json!([{"url": "https://shop.example/dp/X1"}]);
        let (status, error) = json_of(app.create_order_as(&test_key, &body).await).await;
        assert_eq!(status, 422);
        assert_eq!(error["detail"][0]["type"], "sandbox_retailer_only");
        assert!(error["detail"][0]["msg"].as_str().unwrap().contains("live key"));

        // The same order is fine with a live key, and the demo retailer with a test key.
        assert_eq!(app.create_order(&body).await.status(), 201);
        let (status, _) = json_of(app.create_order_as(&test_key, &order_body()).await).await;
        assert_eq!(status, 201);
    }
}
