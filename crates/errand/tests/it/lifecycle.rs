//! Cancellation, the order-event log, and durability across restarts.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// Moves an order to `status` behind the API's back (as the engine will).
pub async fn force_status(app: &TestApp, id: &str, status: &str) {
    let id = errand::storage::DbId(id.parse().unwrap());
    errand::on_db!(app.db(), writer, |pool| {
        sqlx::query("UPDATE orders SET status = $1 WHERE id = $2")
            .bind(status)
            .bind(id)
            .execute(pool)
            .await
            .map(|_| ())
    })
    .unwrap();
}

/// Stores `job_result` on an order behind the API's back (as another version may have).
async fn force_job_result(app: &TestApp, id: &str, job_result: Value) {
    let id = errand::storage::DbId(id.parse().unwrap());
    errand::on_db!(app.db(), writer, |pool| {
        sqlx::query("UPDATE orders SET job_result = $1 WHERE id = $2")
            .bind(sqlx::types::Json(&job_result))
            .bind(id)
            .execute(pool)
            .await
            .map(|_| ())
    })
    .unwrap();
}

async fn cancel(app: &TestApp, id: &str) -> (StatusCode, Value) {
    json_of(
        app.post(&format!("/orders/{id}/cancel"))
            .send()
            .await
            .unwrap(),
    )
    .await
}

crate::on_both_databases! {
    async fn a_pending_order_can_be_cancelled_once(app: TestApp) {
        let mut body = order_body();
        body["products"] = json!([{"url": "https://store.example/dp/A"}, {"url": "https://store.example/dp/B"}]);
        let order = app.created(&body).await;
        let id = order["id"].as_str().unwrap();

        let (status, body) = cancel(&app, id).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(body, Value::Null, "204 has no body");

        let (_, cancelled) = app.get_order(id).await;
        crate::support::schema::assert_valid("OrderResponse", &cancelled);
        assert_eq!(cancelled["status"], "cancelled");
        assert!(cancelled["updated_at"].as_str() > order["updated_at"].as_str());
        for item in cancelled["items"].as_array().unwrap() {
            assert_eq!(item["status"], "cancelled");
            assert!(item["cancellation_reason"].is_string());
        }

        let (status, body) = cancel(&app, id).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"]["code"], "order_not_cancellable");
        assert_eq!(body["error"]["details"]["status"], "cancelled");

        // Each status change is an event, numbered per order, in the same transaction.
        let events = errand::orders::store::events(app.db(), id.parse().unwrap()).await.unwrap();
        assert_eq!(
            events,
            vec![(1, "order.created".to_string(), "pending".to_string()), (2, "order.cancelled".to_string(), "cancelled".to_string())]
        );
    }

    async fn only_pending_orders_can_be_cancelled(app: TestApp) {
        for status in ["in_progress", "order_placed", "order_failed", "cancelled_by_retailer"] {
            let order = app.created(&order_body()).await;
            let id = order["id"].as_str().unwrap();
            force_status(&app, id, status).await;
            let (code, body) = cancel(&app, id).await;
            assert_eq!(code, StatusCode::CONFLICT, "{status}");
            assert_eq!(body["error"]["code"], "order_not_cancellable");
            let (_, after) = app.get_order(id).await;
            assert_eq!(after["status"], status, "a refused cancel changes nothing");
            let events = errand::orders::store::events(app.db(), id.parse().unwrap()).await.unwrap();
            assert_eq!(events.len(), 1, "no event for a refused cancel");
        }
        let (code, body) = cancel(&app, &uuid::Uuid::now_v7().to_string()).await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");
        let (code, body) = cancel(&app, "123").await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_list(&body), vec![(json!(["path", "order_id"]), "uuid_parsing".to_string())]);
    }

    async fn a_stored_error_type_this_version_does_not_know_reads_as_null(app: TestApp) {
        let stored = |error_type: &str| json!({
            "success": false,
            "error_type": error_type,
            "error": "The retailer said no",
            "price_components": null,
            "merchant_order_ids": [],
            "estimated_delivery": null,
        });
        let known = app.created(&order_body()).await;
        let known = known["id"].as_str().unwrap();
        force_status(&app, known, "order_failed").await;
        force_job_result(&app, known, stored("out_of_stock")).await;
        let newer = app.created(&order_body()).await;
        let newer = newer["id"].as_str().unwrap();
        force_status(&app, newer, "order_failed").await;
        force_job_result(&app, newer, stored("an_error_type_from_a_newer_version")).await;

        let (status, order) = app.get_order(known).await;
        assert_eq!(status, StatusCode::OK, "{order:#}");
        assert_eq!(order["job_result"]["error_type"], "out_of_stock");
        let (status, order) = app.get_order(newer).await;
        assert_eq!(status, StatusCode::OK, "{order:#}");
        crate::support::schema::assert_valid("OrderResponse", &order);
        assert_eq!(order["job_result"]["error_type"], Value::Null);
        assert_eq!(order["job_result"]["error"], "The retailer said no");

        let (status, list) = json_of(app.get("/orders").send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{list:#}");
        assert_eq!(list["orders"].as_array().map(Vec::len), Some(2), "{list:#}");
    }

    async fn orders_keys_and_idempotency_survive_a_restart(app: TestApp) {
        let mut body = order_body();
        body["idempotency_key"] = json!("persist-me");
        let order = app.created(&body).await;
        let cancelled = app.created(&order_body()).await;
        let (status, _) = cancel(&app, cancelled["id"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::NO_CONTENT);

        app.restart().await;

        let (status, fetched) = app.get_order(order["id"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK, "the key still works and the order is there");
        assert_eq!(fetched, order);
        let (_, fetched) = app.get_order(cancelled["id"].as_str().unwrap()).await;
        assert_eq!(fetched["status"], "cancelled");
        let replay = app.create_order(&body).await;
        assert_eq!(replay.headers()["idempotent-replayed"], "true");
        let replay: Value = replay.json().await.unwrap();
        assert_eq!(replay["id"], order["id"]);
        let (_, list) = json_of(app.get("/orders").send().await.unwrap()).await;
        assert_eq!(list["total"], 2);
    }

    async fn orders_acknowledged_during_a_graceful_shutdown_are_all_kept(app: TestApp) {
        // 40 creations in flight while the server shuts down: those answered 201 must all be
        // stored, and nothing may be stored without an answer.
        let requests: Vec<_> = (0..40)
            .map(|i| {
                let mut body = order_body();
                body["po_number"] = json!(format!("SHUTDOWN-{i}"));
                let request = app.post("/orders").json(&body);
                tokio::spawn(async move {
                    let response = request.send().await.ok()?;
                    if response.status() != StatusCode::CREATED {
                        return None;
                    }
                    let order: Value = response.json().await.ok()?;
                    order["id"].as_str().map(str::to_string)
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        app.restart().await;
        let mut acknowledged = Vec::new();
        for request in requests {
            if let Some(id) = request.await.unwrap() {
                acknowledged.push(id);
            }
        }
        for id in &acknowledged {
            let (status, _) = app.get_order(id).await;
            assert_eq!(status, StatusCode::OK, "acknowledged order {id} was lost");
        }
        let (_, list) = json_of(app.get("/orders?limit=100").send().await.unwrap()).await;
        assert_eq!(list["total"].as_u64(), Some(acknowledged.len() as u64), "stored orders = acknowledged orders");
    }
}
