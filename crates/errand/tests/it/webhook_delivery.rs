//! Webhook delivery to a real HTTP receiver: every order event arrives, signed under
//! both schemes, in order per order, through receiver failures; `410 Gone` disables.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

use crate::harness::{TestApp, order_body};

/// A request the receiver got: its headers and raw body.
#[derive(Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
    /// What the receiver answered.
    status: StatusCode,
}

/// A webhook receiver on 127.0.0.1 that answers `status` to the first `failures`
/// requests and 200 afterwards.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(failures: usize, status: StatusCode) -> Receiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let seen = received.clone();
        let count = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: String| {
                let seen = seen.clone();
                let count = count.clone();
                async move {
                    let answer = if count.fetch_add(1, Ordering::SeqCst) < failures {
                        status
                    } else {
                        StatusCode::OK
                    };
                    seen.lock().unwrap().push(Received {
                        headers,
                        body,
                        status: answer,
                    });
                    answer
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, received }
    }

    fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `count` distinct webhook ids were accepted (answered 200); returns
    /// their bodies in arrival order.
    async fn wait_for_ids(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut bodies: Vec<Value> = vec![];
            for r in self
                .all()
                .into_iter()
                .filter(|r| r.status == StatusCode::OK)
            {
                let body: Value = serde_json::from_str(&r.body).unwrap();
                if !bodies.iter().any(|b| b["id"] == body["id"]) {
                    bodies.push(body);
                }
            }
            if bodies.len() >= count {
                return bodies;
            }
            assert!(
                Instant::now() < deadline,
                "only {} webhooks arrived",
                bodies.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn set_endpoint(app: &TestApp, url: &str) -> String {
    let response: Value = app
        .client
        .put(app.url("/webhooks/endpoint"))
        .bearer_auth(&app.key)
        .json(&json!({ "url": url }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    response["secret"].as_str().expect("a secret").to_string()
}

/// Checks a request's signatures under both schemes against `secret`.
fn assert_signed(request: &Received, secret: &str) {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    };
    let body: Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(header("webhook-id"), body["id"].as_str().unwrap());
    assert_eq!(header("x-webhook-event"), body["event"].as_str().unwrap());
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
    let expected = errand::webhooks::signing::standard_signature(
        secret,
        &header("webhook-id"),
        timestamp,
        request.body.as_bytes(),
    )
    .unwrap();
    assert!(
        header("webhook-signature")
            .split(' ')
            .any(|s| s == expected),
        "Standard Webhooks signature"
    );
    assert_eq!(
        header("x-webhook-signature"),
        errand::webhooks::signing::reference_signature(secret, request.body.as_bytes())
    );
}

crate::on_both_databases! {
    async fn every_event_of_an_order_arrives_signed_and_in_sequence(app: TestApp) {
        let app = TestApp::spawn_engine(app.backend).await;
        let receiver = Receiver::start(0, StatusCode::OK).await;
        let secret = set_endpoint(&app, &receiver.url).await;
        let mut body = order_body();
        body["products"] = json!([{"url": app.product_url("B0DEMO0005")}]);
        body["max_price"] = json!(100_000);
        let order = app.created(&body).await;
        let id = order["id"].as_str().unwrap().to_string();

        // Deliveries run in parallel, so arrival order is not guaranteed: `sequence`
        // orders them.
        let mut bodies = receiver.wait_for_ids(5).await;
        bodies.sort_by_key(|b| b["sequence"].as_i64());
        let events: Vec<&str> = bodies.iter().map(|b| b["event"].as_str().unwrap()).collect();
        assert_eq!(
            events,
            ["order.started", "order.placed", "order.tracking_received", "order.shipped", "order.delivered"]
        );
        let sequences: Vec<i64> = bodies.iter().map(|b| b["sequence"].as_i64().unwrap()).collect();
        assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
        for b in &bodies {
            assert_eq!(b["order_id"], id.as_str());
            assert_eq!(b["data"]["id"], id.as_str());
            assert!(b["id"].as_str().unwrap().starts_with("evt_"));
        }
        let placed = bodies.iter().find(|b| b["event"] == "order.placed").unwrap();
        assert_eq!(placed["status"], "order_placed");
        assert!(placed["data"]["job_result"]["merchant_order_ids"][0]["merchant_order_id"].is_string());
        for request in receiver.all() {
            assert_signed(&request, &secret);
        }
        assert!(!receiver.all().iter().any(|r| r.body.contains(errand_demo_store::DEMO_PASSWORD)), "no retailer secrets");

        // A failure and a cancellation by the retailer are sent too.
        for product in ["B0TEST0005", "B0TEST0008"] {
            body["products"] = json!([{"url": app.product_url(product)}]);
            app.created(&body).await;
        }
        let bodies = receiver.wait_for_ids(10).await;
        let events: Vec<&str> = bodies.iter().map(|b| b["event"].as_str().unwrap()).collect();
        assert!(events.contains(&"order.failed"), "{events:?}");
        assert!(events.contains(&"order.cancelled_by_retailer"), "{events:?}");
    }

    async fn a_receiver_that_fails_for_a_while_still_gets_everything(app: TestApp) {
        let app = TestApp::spawn_engine(app.backend).await;
        // The first six requests get a 500.
        let receiver = Receiver::start(6, StatusCode::INTERNAL_SERVER_ERROR).await;
        let secret = set_endpoint(&app, &receiver.url).await;
        let mut body = order_body();
        body["products"] = json!([{"url": app.product_url("B0TEST0009")}]);
        body["max_price"] = json!(100_000);
        for _ in 0..3 {
            app.created(&body).await;
        }
        // Three orders, each started and placed: six webhooks, all eventually accepted.
        let bodies = receiver.wait_for_ids(6).await;
        assert_eq!(bodies.len(), 6);
        let requests = receiver.all();
        let failed = requests.iter().filter(|r| r.status != StatusCode::OK).count();
        assert_eq!(failed, 6, "the failed ones were retried until accepted");
        for request in &requests {
            assert_signed(request, &secret);
        }
        // Every id's last request came after its failures, and each body is the same.
        for b in &bodies {
            let same: Vec<&Received> = requests.iter().filter(|r| r.body.contains(b["id"].as_str().unwrap())).collect();
            assert!(same.windows(2).all(|w| w[0].body == w[1].body), "retries send the same bytes");
        }

        // The delivery log shows each webhook with its attempts.
        let log = |query: &str| {
            let request = app.client.get(app.url(&format!("/webhooks/deliveries{query}"))).bearer_auth(&app.key);
            async move { crate::harness::json_of(request.send().await.unwrap()).await }
        };
        // (The receiver answered before Errand recorded the last attempt: wait for it.)
        let deadline = Instant::now() + Duration::from_secs(30);
        let all = loop {
            let (status, all) = log("?limit=100").await;
            assert_eq!(status, 200, "{all}");
            let done = all["deliveries"].as_array().unwrap().iter().all(|d| d["status"] == "delivered");
            if done || Instant::now() > deadline {
                break all;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(all["total"], 6);
        let deliveries = all["deliveries"].as_array().unwrap();
        assert!(deliveries.iter().all(|d| d["status"] == "delivered"), "{all:#}");
        let attempts: usize = deliveries.iter().map(|d| d["attempts"].as_array().unwrap().len()).sum();
        assert_eq!(attempts, 12);
        let failed: Vec<&Value> = deliveries.iter().flat_map(|d| d["attempts"].as_array().unwrap()).filter(|a| a["http_status"] == 500).collect();
        assert_eq!(failed.len(), 6);
        let (_, placed) = log("?event=order.placed").await;
        assert_eq!(placed["total"], 3);
        let (_, none) = log("?status=failed").await;
        assert_eq!(none["total"], 0);
        let (status, bad) = log("?status=lost&limit=0").await;
        assert_eq!(status, 422);
        assert_eq!(bad["detail"].as_array().unwrap().len(), 2);

        // Redelivery sends the same webhook again.
        let id = deliveries[0]["id"].as_str().unwrap().to_string();
        let sent_before = receiver.all().iter().filter(|r| r.body.contains(&id)).count();
        let response = app.client.post(app.url(&format!("/webhooks/deliveries/{id}/redeliver"))).bearer_auth(&app.key).send().await.unwrap();
        assert_eq!(response.status(), 202);
        let deadline = Instant::now() + Duration::from_secs(30);
        while receiver.all().iter().filter(|r| r.body.contains(&id)).count() == sent_before {
            assert!(Instant::now() < deadline, "not redelivered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let missing = app.client.post(app.url("/webhooks/deliveries/evt_nope/redeliver")).bearer_auth(&app.key).send().await.unwrap();
        assert_eq!(missing.status(), 404);
    }

    async fn gone_disables_the_endpoint(app: TestApp) {
        let app = TestApp::spawn_engine(app.backend).await;
        let receiver = Receiver::start(usize::MAX, StatusCode::GONE).await;
        set_endpoint(&app, &receiver.url).await;
        let mut body = order_body();
        body["products"] = json!([{"url": app.product_url("B0TEST0009")}]);
        body["max_price"] = json!(100_000);
        let order = app.created(&body).await;
        app.wait_until_settled(order["id"].as_str().unwrap()).await;
        let vault = errand::accounts::Vault::load(&app.settings).unwrap();
        let tenant = errand::auth::Tenant { account_id: app.account_id, livemode: true, key_id: uuid::Uuid::nil() };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let endpoint = errand::webhooks::endpoint::get(app.db(), &vault, &tenant).await.unwrap().unwrap();
            if let Some(reason) = endpoint.disabled_reason {
                assert!(reason.contains("410"), "{reason}");
                break;
            }
            assert!(Instant::now() < deadline, "the endpoint was not disabled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Nothing more is sent once it is disabled.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = receiver.all().len();
        body["products"] = json!([{"url": app.product_url("B0TEST0005")}]);
        let order = app.created(&body).await;
        app.wait_until_settled(order["id"].as_str().unwrap()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(receiver.all().len(), before);
    }
}
