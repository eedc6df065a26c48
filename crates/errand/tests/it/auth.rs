//! API keys and tenancy.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

async fn status_with(app: &TestApp, auth: Option<&str>) -> (StatusCode, Value) {
    let mut request = app.client.get(app.url("/orders"));
    if let Some(value) = auth {
        request = request.header("authorization", value);
    }
    json_of(request.send().await.unwrap()).await
}

crate::on_both_databases! {
    async fn missing_or_bad_keys_are_401(app: TestApp) {
        for auth in [None, Some("Bearer"), Some("Bearer er_live_doesnotexist"), Some("Basic abc"), Some("er_live_x"),
                     Some("Bearer zn_live_123")] {
            let (status, body) = status_with(&app, auth).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
            assert_eq!(body["error"]["code"], "unauthorized");
        }
        let (status, _) = status_with(&app, Some(&format!("bearer {}", app.key))).await;
        assert_eq!(status, StatusCode::OK, "the scheme is case-insensitive");
        // Authentication comes before validation: no key, bad body → 401.
        let response = app.client.post(app.url("/orders")).json(&serde_json::json!({})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    async fn a_revoked_key_stops_working_at_once(app: TestApp) {
        let key = app.new_account_key("to-revoke").await;
        assert_eq!(app.create_order_as(&key, &order_body()).await.status(), StatusCode::CREATED);
        let keys = errand::auth::keys::list_keys(app.db()).await.unwrap();
        let info = keys.iter().find(|k| key.starts_with(&k.prefix) && k.name == "to-revoke").unwrap();
        errand::auth::keys::revoke_key(app.db(), &info.id.to_string()).await.unwrap();
        let (status, body) = status_with(&app, Some(&format!("Bearer {key}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["code"], "unauthorized");
        assert_eq!(app.create_order_as(&key, &order_body()).await.status(), StatusCode::UNAUTHORIZED);
        // Other keys are unaffected.
        assert_eq!(status_with(&app, Some(&format!("Bearer {}", app.key))).await.0, StatusCode::OK);
    }

    async fn accounts_never_see_each_others_orders(app: TestApp) {
        let mine = app.created(&order_body()).await;
        let id = mine["id"].as_str().unwrap();
        let intruder = app.new_account_key("intruder").await;

        let response = app.client.get(app.url(&format!("/orders/{id}"))).bearer_auth(&intruder).send().await.unwrap();
        let (status, body) = json_of(response).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");

        let response = app.client.post(app.url(&format!("/orders/{id}/cancel"))).bearer_auth(&intruder).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);

        let search = &id[..8];
        let response = app.client.get(app.url(&format!("/orders?search={search}"))).bearer_auth(&intruder).send().await.unwrap();
        let (_, list) = json_of(response).await;
        assert_eq!(list["total"], 0);
        assert_eq!(list["orders"], serde_json::json!([]));

        // The owner still sees it, still pending: the intruder's cancel changed nothing.
        let (status, order) = app.get_order(id).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(order["status"], "pending");

        // A second key of the same account sees the account's orders.
        let tenant = errand::auth::keys::find_tenant(app.db(), &errand::auth::hash_key(&app.key)).await.unwrap().unwrap();
        let colleague = app.key_for_account(tenant.account_id, true).await;
        let response = app.client.get(app.url(&format!("/orders/{id}"))).bearer_auth(&colleague).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        // A test key of the same account does not see live orders.
        let test_key = app.key_for_account(tenant.account_id, false).await;
        let response = app.client.get(app.url(&format!("/orders/{id}"))).bearer_auth(&test_key).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}
