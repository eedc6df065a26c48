//! `POST /orders` and `GET /orders/{id}`: the happy path and the HTTP edges.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::schema::assert_valid;
use crate::support::*;

crate::on_both_databases! {
    async fn creates_a_pending_order_per_the_contract(app: TestApp) {
        let mut body = order_body();
        body["products"] = json!([
            {"url": "https://store.example/dp/B0TEST0001", "quantity": 3,
             "variant": [{"label": "Color", "value": "Red"}, {"label": "Size", "value": "M"}]},
            {"url": "https://store.example/dp/B0TEST0002"}
        ]);
        body["metadata"] = json!({"customer": "c_1", "nested": {"a": [1, 2]}});
        body["po_number"] = json!("PO-77");
        let account = app.add_retailer_account("buyer@example.com", None).await;
        body["retailer_credentials_id"] = json!(account);
        body["shipping_address"]["address_line2"] = json!("Apt 4");
        body["unknown_field"] = json!("ignored");

        let order = app.created(&body).await;
        assert_valid("OrderResponse", &order);
        assert_eq!(order["status"], "pending");
        assert_eq!(order["attempts"], 0);
        assert_eq!(order["max_price"], 5000);
        assert_eq!(order["po_number"], "PO-77");
        assert_eq!(order["retailer_credentials_id"], account);
        assert_eq!(order["metadata"], json!({"customer": "c_1", "nested": {"a": [1, 2]}}));
        assert_eq!(order["tracking_numbers"], json!([]));
        assert_eq!(order["returns"], json!([]));
        assert!(order.get("unknown_field").is_none());
        let items = order["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["quantity"], 3);
        assert_eq!(items[0]["variant"], body["products"][0]["variant"]);
        assert_eq!(items[1]["quantity"], 1, "quantity defaults to 1");
        assert_eq!(items[1]["variant"], Value::Null);
        assert!(items.iter().all(|i| i["status"] == "pending"));
        let address = &order["shipping_address"];
        assert_eq!(address["phone_number"], "+15125550134", "phone normalised to E.164");
        assert_eq!(address["address_line2"], "Apt 4");
        assert_eq!(address["country"], "US");

        // Read back: identical to what creation returned.
        let (status, fetched) = app.get_order(order["id"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_valid("OrderResponse", &fetched);
        assert_eq!(fetched, order);
    }

    async fn metadata_defaults_to_an_empty_object_and_country_to_us(app: TestApp) {
        let mut body = order_body();
        body["shipping_address"].as_object_mut().unwrap().remove("country");
        body["metadata"] = Value::Null;
        let order = app.created(&body).await;
        assert_eq!(order["metadata"], json!({}));
        assert_eq!(order["shipping_address"]["country"], "US");
        assert_eq!(order["po_number"], Value::Null);
    }

    async fn international_addresses_are_accepted_without_a_state(app: TestApp) {
        let mut body = order_body();
        body["shipping_address"] = json!({
            "first_name": "Kari", "last_name": "Nordmann", "address_line1": "Karl Johans gate 1",
            "city": "Oslo", "postal_code": "0154", "phone_number": "22 12 34 56", "country": "no"
        });
        let order = app.created(&body).await;
        assert_eq!(order["shipping_address"]["country"], "NO");
        assert_eq!(order["shipping_address"]["state"], Value::Null);
        assert_eq!(order["shipping_address"]["phone_number"], "+4722123456");
    }

    async fn unknown_and_malformed_order_ids(app: TestApp) {
        let (status, body) = app.get_order(&uuid::Uuid::now_v7().to_string()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");
        let (status, body) = app.get_order("not-a-uuid").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_list(&body), vec![(json!(["path", "order_id"]), "uuid_parsing".to_string())]);
    }

    async fn json_body_edges_are_422_not_500(app: TestApp) {
        let send = |content_type: Option<&'static str>, raw: &'static str| {
            let mut request = app.post("/orders").body(raw);
            if let Some(ct) = content_type {
                request = request.header("content-type", ct);
            }
            async move { json_of(request.send().await.unwrap()).await }
        };
        let (status, body) = send(Some("application/json"), "{not json").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_list(&body), vec![(json!(["body"]), "json_invalid".to_string())]);
        let (status, body) = send(Some("application/json"), "").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_list(&body)[0].1, "json_invalid");
        let (status, body) = send(Some("text/plain"), "{}").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_list(&body), vec![(json!(["body"]), "model_attributes_type".to_string())]);
        let (status, body) = send(Some("application/json"), "[1, 2]").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_list(&body), vec![(json!(["body"]), "model_attributes_type".to_string())]);

        // No content type at all is read as JSON, as the reference API does.
        let raw = serde_json::to_string(&order_body()).unwrap();
        let response = app.post("/orders").body(raw).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);

        // Oversized bodies are refused with 413 and nothing stored.
        // (Just over the limit, on a connection of its own: the server answers before reading
        // the body and closes that connection.)
        let huge = format!("{{\"po_number\":\"{}\"}}", "x".repeat(1024 * 1024 + 1024));
        let one_off = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        let response = one_off
            .post(app.url("/orders"))
            .bearer_auth(&app.key)
            .header("content-type", "application/json")
            .body(huge)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let (_, body) = json_of(response).await;
        assert_eq!(body["error"]["code"], "payload_too_large");

        let (_, list) = json_of(app.get("/orders").send().await.unwrap()).await;
        assert_eq!(list["total"], 1, "only the one valid order was stored");
    }

    async fn unknown_routes_and_methods_use_the_error_envelope(app: TestApp) {
        let (status, body) = json_of(app.get("/nowhere").send().await.unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");
        let (status, body) = json_of(app.client.delete(app.url("/orders")).bearer_auth(&app.key).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }

    async fn probes_report_liveness_and_readiness(app: TestApp) {
        let (status, body) = json_of(app.client.get(app.url("/healthz")).send().await.unwrap()).await;
        assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));
        let (status, body) = json_of(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        let expected = match app.backend { Backend::Sqlite => "sqlite", Backend::Postgres => "postgres" };
        assert_eq!(body["database"], expected);
        let response = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert!(response.headers().contains_key("x-request-id"), "every response carries a request id");
    }
}
