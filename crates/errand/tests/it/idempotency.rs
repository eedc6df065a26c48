//! Idempotency keys, with Stripe's semantics, scoped per account and mode.

use std::collections::HashSet;

use futures_like::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

mod futures_like {
    /// Runs the futures concurrently on the runtime and collects their outputs in order.
    pub async fn join_all<F>(futures: Vec<F>) -> Vec<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(h.await.expect("task"));
        }
        out
    }
}

fn keyed(key: &str) -> Value {
    let mut body = order_body();
    body["idempotency_key"] = json!(key);
    body
}

async fn total_orders(app: &TestApp, key: &str) -> i64 {
    let response = app
        .client
        .get(app.url("/orders"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let (_, list) = json_of(response).await;
    list["total"].as_i64().unwrap()
}

crate::on_both_databases! {
    async fn same_key_and_body_replays_the_original_order(app: TestApp) {
        let first = app.create_order(&keyed("order-1")).await;
        assert_eq!(first.status(), StatusCode::CREATED);
        assert!(first.headers().get("idempotent-replayed").is_none());
        let first: Value = first.json().await.unwrap();

        // Same request, keys in another order and extra ignored fields: still the same.
        let mut again = keyed("order-1");
        again["ignored"] = json!(true);
        let raw = serde_json::to_string_pretty(&again).unwrap();
        let replay = app.post("/orders").header("content-type", "application/json").body(raw).send().await.unwrap();
        assert_eq!(replay.status(), StatusCode::CREATED);
        assert_eq!(replay.headers()["idempotent-replayed"], "true");
        let replay: Value = replay.json().await.unwrap();
        assert_eq!(replay["id"], first["id"]);
        assert_eq!(replay, first);
        assert_eq!(total_orders(&app, &app.key).await, 1);
    }

    async fn same_key_with_another_body_is_a_conflict(app: TestApp) {
        app.created(&keyed("order-2")).await;
        let mut other = keyed("order-2");
        other["max_price"] = json!(9999);
        let (status, body) = json_of(app.create_order(&other).await).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"]["code"], "idempotency_conflict");
        assert_eq!(body["error"]["details"]["idempotency_key"], "order-2");
        assert_eq!(total_orders(&app, &app.key).await, 1);
    }

    async fn keys_are_scoped_per_account_and_mode(app: TestApp) {
        let mine = app.created(&keyed("shared-key")).await;
        let other_account = app.new_account_key("other").await;
        let response = app.create_order_as(&other_account, &keyed("shared-key")).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        assert!(response.headers().get("idempotent-replayed").is_none());
        let theirs: Value = response.json().await.unwrap();
        assert_ne!(theirs["id"], mine["id"]);

        // A test key of the same account has its own key space (and its own orders).
        let tenant = errand::auth::keys::find_tenant(app.db(), &errand::auth::hash_key(&app.key)).await.unwrap().unwrap();
        let test_key = app.key_for_account(tenant.account_id, false).await;
        let response = app.create_order_as(&test_key, &keyed("shared-key")).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        assert!(response.headers().get("idempotent-replayed").is_none());
        assert_eq!(total_orders(&app, &app.key).await, 1);
        assert_eq!(total_orders(&app, &test_key).await, 1);
    }

    async fn twenty_concurrent_identical_requests_create_one_order(app: TestApp) {
        let requests: Vec<_> = (0..20)
            .map(|_| {
                let request = app.post("/orders").json(&keyed("burst-key"));
                async move {
                    let response = request.send().await.unwrap();
                    let replayed = response.headers().contains_key("idempotent-replayed");
                    let status = response.status();
                    let body: Value = response.json().await.unwrap();
                    (status, replayed, body["id"].as_str().unwrap_or_default().to_string())
                }
            })
            .collect();
        let results = join_all(requests).await;
        assert!(results.iter().all(|(status, _, _)| *status == StatusCode::CREATED), "{results:?}");
        let ids: HashSet<&String> = results.iter().map(|(_, _, id)| id).collect();
        assert_eq!(ids.len(), 1, "all 20 responses name the same order: {ids:?}");
        assert_eq!(results.iter().filter(|(_, replayed, _)| !replayed).count(), 1, "exactly one original");
        assert_eq!(total_orders(&app, &app.key).await, 1);

        let id: uuid::Uuid = ids.into_iter().next().unwrap().parse().unwrap();
        let events = errand::orders::store::events(app.db(), id).await.unwrap();
        assert_eq!(events.len(), 1, "one order.created event: {events:?}");
    }

    async fn concurrent_requests_with_different_bodies_yield_one_order_and_conflicts(app: TestApp) {
        let requests: Vec<_> = (0..10)
            .map(|i| {
                let mut body = keyed("race-key");
                body["max_price"] = json!(1000 + (i % 2));
                let request = app.post("/orders").json(&body);
                async move {
                    let response = request.send().await.unwrap();
                    let status = response.status();
                    let body: Value = response.json().await.unwrap();
                    (status, body)
                }
            })
            .collect();
        let results = join_all(requests).await;
        let created: Vec<&Value> = results.iter().filter(|(s, _)| *s == StatusCode::CREATED).map(|(_, b)| b).collect();
        let conflicts = results.iter().filter(|(s, b)| *s == StatusCode::CONFLICT && b["error"]["code"] == "idempotency_conflict").count();
        assert_eq!(created.len() + conflicts, 10, "{results:?}");
        assert_eq!(created.len(), 5, "the five requests matching the winner replay it");
        let ids: HashSet<&Value> = created.iter().map(|b| &b["id"]).collect();
        assert_eq!(ids.len(), 1);
        assert_eq!(total_orders(&app, &app.key).await, 1);
    }
}
