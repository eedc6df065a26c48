//! Webhook delivery to a real HTTP receiver: every order event arrives, signed under
//! both schemes, in order per order, through receiver failures; `410 Gone` disables.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use errand::webhooks::address::Resolver;
use serde_json::{Value, json};

use crate::support::receiver::{Misbehaviour, Received, Receiver, assert_signed, signed_with};
use crate::support::{TestApp, order_body};

/// A public address (nothing in these tests listens there).
const REBINDING_PUBLIC: &str = "93.184.215.14";

/// Answers the first lookup with a public address and every later one with 127.0.0.1:
/// a name whose DNS changes between a check and a connection. Counts its lookups.
#[derive(Default)]
struct Rebinding {
    lookups: AtomicUsize,
}

#[async_trait::async_trait]
impl Resolver for Rebinding {
    async fn lookup(&self, _host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        let ip: IpAddr = match self.lookups.fetch_add(1, Ordering::SeqCst) {
            0 => REBINDING_PUBLIC.parse().unwrap(),
            _ => Ipv4Addr::LOCALHOST.into(),
        };
        Ok(vec![SocketAddr::new(ip, port)])
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

/// An order of one demo product, with room in `max_price`.
fn order_of(app: &TestApp, product: &str) -> Value {
    let mut body = order_body();
    body["products"] = json!([{"url": app.product_url(product)}]);
    body["max_price"] = json!(100_000);
    body
}

/// The delivery log's first page (up to 100 deliveries).
async fn delivery_log(app: &TestApp) -> Vec<Value> {
    let (status, log) = crate::support::json_of(
        app.get("/webhooks/deliveries?limit=100")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{log}");
    log["deliveries"].as_array().unwrap().clone()
}

/// Waits until the delivery log satisfies `done`; returns it.
async fn wait_for_log(app: &TestApp, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = delivery_log(app).await;
        if done(&log) {
            return log;
        }
        assert!(Instant::now() < deadline, "{what}: {log:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every attempt's error in the log.
fn attempt_errors(log: &[Value]) -> Vec<String> {
    log.iter()
        .flat_map(|d| d["attempts"].as_array().unwrap())
        .filter_map(|a| a["error"].as_str().map(str::to_string))
        .collect()
}

crate::on_both_databases! {
    async fn every_event_of_an_order_arrives_signed_and_in_sequence(app: Engine) {
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

    async fn a_receiver_that_fails_for_a_while_still_gets_everything(app: Engine) {
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
            async move { crate::support::json_of(request.send().await.unwrap()).await }
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

    async fn gone_disables_the_endpoint(app: Engine) {
        let receiver = Receiver::start(usize::MAX, StatusCode::GONE).await;
        set_endpoint(&app, &receiver.url).await;
        let mut body = order_body();
        body["products"] = json!([{"url": app.product_url("B0TEST0009")}]);
        body["max_price"] = json!(100_000);
        let order = app.created(&body).await;
        app.wait_until_settled(order["id"].as_str().unwrap()).await;
        let vault = app.vault();
        let tenant = errand::auth::Tenant { account_id: app.account_id, livemode: true, key_id: uuid::Uuid::nil() };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let endpoint = errand::webhooks::endpoint::get(app.db(), vault, &tenant).await.unwrap().unwrap();
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

    async fn an_unreachable_then_stalling_receiver_still_gets_everything(backend: Backend) {
        let app = TestApp::spawn_engine_with(backend, |s| {
            s.webhooks.webhook_timeout_seconds = 0.3;
            s.webhooks.webhook_retry_schedule_seconds = vec![0.2; 60];
        })
        .await;
        // Nothing listens at the endpoint's address at first: connections are refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let secret = set_endpoint(&app, &format!("http://127.0.0.1:{port}/hook")).await;
        for _ in 0..2 {
            app.created(&order_of(&app, "B0TEST0009")).await;
        }
        wait_for_log(&app, "attempts were refused", |log| {
            log.len() == 4
                && attempt_errors(log).iter().filter(|e| e.starts_with("cannot connect to the receiver")).count() >= 4
        })
        .await;

        // The receiver comes up, but holds its first three requests past Errand's timeout.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let receiver = Receiver::serve(listener, 3, Misbehaviour::Stall(Duration::from_secs(2))).await;
        let bodies = receiver.wait_for_ids(4).await;
        assert_eq!(bodies.len(), 4);
        let mut events: Vec<&str> = bodies.iter().map(|b| b["event"].as_str().unwrap()).collect();
        events.sort();
        assert_eq!(events, ["order.placed", "order.placed", "order.started", "order.started"]);
        for request in receiver.all() {
            assert_signed(&request, &secret);
        }
        let log = wait_for_log(&app, "every delivery is recorded as delivered", |log| {
            log.iter().all(|d| d["status"] == "delivered")
        })
        .await;
        let errors = attempt_errors(&log);
        let timeout = format!("the receiver at 127.0.0.1:{port} did not answer within 0.3 s");
        let timeouts = errors.iter().filter(|e| **e == timeout).count();
        assert_eq!(timeouts, 3, "{errors:#?}");
    }

    async fn during_a_rotation_both_secrets_sign(app: Engine) {
        let receiver = Receiver::start(0, StatusCode::OK).await;
        let old = set_endpoint(&app, &receiver.url).await;
        let (status, rotated) = crate::support::json_of(
            app.post("/webhooks/endpoint/rotate-secret").send().await.unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{rotated}");
        let new = rotated["secret"].as_str().unwrap().to_string();
        assert_ne!(new, old);
        app.created(&order_of(&app, "B0TEST0009")).await;
        receiver.wait_for_ids(2).await;
        for request in receiver.all() {
            assert_eq!(request.header("webhook-signature").split(' ').count(), 2);
            assert!(signed_with(&request, &old), "the previous secret still signs");
            assert!(signed_with(&request, &new), "the new secret signs");
            // The reference scheme has room for one signature: the new secret's.
            assert_signed(&request, &new);
        }
    }

    async fn a_private_address_is_refused_at_delivery_time(backend: Backend) {
        let app = TestApp::spawn_engine_with(backend, |s| s.webhooks.webhooks_allow_private_addresses = false).await;
        let receiver = Receiver::start(0, StatusCode::OK).await;
        // `localhost` resolves to a loopback address: registration refuses it...
        let url = receiver.url.replace("127.0.0.1", "localhost");
        let response = app.client.put(app.url("/webhooks/endpoint")).bearer_auth(&app.key).json(&json!({"url": url})).send().await.unwrap();
        assert_eq!(response.status(), 422);
        // ...and so does every delivery, should a registered name come to resolve to
        // one later (stored here directly, as a DNS change would leave it).
        let vault = app.vault();
        let tenant = errand::auth::Tenant { account_id: app.account_id, livemode: true, key_id: uuid::Uuid::nil() };
        errand::webhooks::endpoint::set_url(app.db(), vault, &tenant, &url).await.unwrap();
        let order = app.created(&order_of(&app, "B0TEST0009")).await;
        app.wait_until_settled(order["id"].as_str().unwrap()).await;
        let log = wait_for_log(&app, "the deliveries fail", |log| {
            log.len() == 2 && log.iter().all(|d| d["status"] == "failed")
        })
        .await;
        let errors = attempt_errors(&log);
        assert!(!errors.is_empty());
        assert!(errors.iter().all(|e| e.starts_with("localhost resolves to 127.0.0.1, which is not a public address (127.0.0.0/8: loopback)")), "{errors:#?}");
        assert!(receiver.all().is_empty(), "nothing reached the private address");
    }

    async fn a_name_that_rebinds_to_loopback_after_its_check_is_not_called(backend: Backend) {
        let mut app = TestApp::spawn_engine_with(backend, |s| {
            s.webhooks.webhooks_allow_private_addresses = false;
            s.webhooks.webhook_timeout_seconds = 1.0;
            // Two attempts per delivery.
            s.webhooks.webhook_retry_schedule_seconds = vec![0.05];
        })
        .await;
        let resolver = Arc::new(Rebinding::default());
        app.resolve_webhooks_with(resolver.clone()).await;
        let receiver = Receiver::start(0, StatusCode::OK).await;
        let port = receiver.url.rsplit(':').next().unwrap().trim_end_matches("/hook").to_string();
        // The system resolver answers loopback for `localhost` too: were the name looked
        // up again to connect, by Errand or its HTTP client, the receiver would be called.
        let url = receiver.url.replace("127.0.0.1", "localhost");
        let tenant = errand::auth::Tenant { account_id: app.account_id, livemode: true, key_id: uuid::Uuid::nil() };
        errand::webhooks::endpoint::set_url(app.db(), app.vault(), &tenant, &url).await.unwrap();
        let order = app.created(&order_of(&app, "B0TEST0009")).await;
        app.wait_until_settled(order["id"].as_str().unwrap()).await;
        let log = wait_for_log(&app, "both deliveries end", |log| {
            log.len() == 2 && log.iter().all(|d| d["status"] != "pending")
        })
        .await;
        assert!(receiver.all().is_empty(), "the receiver on 127.0.0.1 was called: {log:#?}");
        assert!(log.iter().all(|d| d["status"] == "failed"), "{log:#?}");
        let errors = attempt_errors(&log);
        assert_eq!(errors.len(), 4, "two attempts of each of two deliveries: {errors:#?}");
        assert_eq!(resolver.lookups.load(Ordering::SeqCst), 4, "one lookup per attempt");
        // The attempt whose lookup answered the public address went there, and only there.
        let pinned = format!("at {REBINDING_PUBLIC}:{port}");
        let to_public: Vec<&String> = errors.iter().filter(|e| e.contains(&pinned)).collect();
        assert_eq!(to_public.len(), 1, "{errors:#?}");
        assert!(
            to_public[0].starts_with("cannot connect to the receiver at ") || to_public[0].starts_with("the receiver at "),
            "{errors:#?}"
        );
        // The others looked up loopback, and were refused before any connection.
        let refused = errors.iter().filter(|e| e.starts_with("localhost resolves to 127.0.0.1, which is not a public address")).count();
        assert_eq!(refused, 3, "{errors:#?}");
    }

    async fn a_customer_cancellation_is_sent(app: Engine) {
        let receiver = Receiver::start(0, StatusCode::OK).await;
        let secret = set_endpoint(&app, &receiver.url).await;
        // The slow product holds the only account, so the next order stays pending.
        let slow = app.created(&order_of(&app, "B0TEST0003")).await;
        let slow_id = slow["id"].as_str().unwrap().to_string();
        app.wait_for_order(&slow_id, |o| o["status"] == "in_progress").await;
        let waiting = app.created(&order_of(&app, "B0DEMO0005")).await;
        let id = waiting["id"].as_str().unwrap().to_string();
        let response = app.post(&format!("/orders/{id}/cancel")).send().await.unwrap();
        assert_eq!(response.status(), 204);
        let deadline = Instant::now() + Duration::from_secs(60);
        let cancelled = loop {
            let found = receiver.accepted().into_iter().find(|b| b["order_id"] == id.as_str());
            if let Some(body) = found {
                break body;
            }
            assert!(Instant::now() < deadline, "no webhook for the cancelled order");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(cancelled["event"], "order.cancelled");
        assert_eq!(cancelled["status"], "cancelled");
        assert_eq!(cancelled["data"]["status"], "cancelled");
        for request in receiver.all() {
            assert_signed(&request, &secret);
        }
        // The slow order goes on; the cancelled one is never started.
        app.wait_until_settled(&slow_id).await;
        receiver.wait_for_ids(3).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, order) = app.get_order(&id).await;
        assert_eq!(order["status"], "cancelled");
        let for_cancelled: Vec<Value> = receiver.accepted().into_iter().filter(|b| b["order_id"] == id.as_str()).collect();
        assert_eq!(for_cancelled.len(), 1, "{for_cancelled:#?}");
    }

    async fn an_endpoint_failing_for_too_long_is_disabled(backend: Backend) {
        let app = TestApp::spawn_engine_with(backend, |s| {
            s.webhooks.webhook_disable_after_failing_seconds = 1.0;
            s.webhooks.webhook_retry_schedule_seconds = vec![0.2; 50];
        })
        .await;
        let receiver = Receiver::start(usize::MAX, StatusCode::SERVICE_UNAVAILABLE).await;
        set_endpoint(&app, &receiver.url).await;
        app.created(&order_of(&app, "B0TEST0009")).await;
        let (_, endpoint) = loop {
            let (status, endpoint) = crate::support::json_of(app.get("/webhooks/endpoint").send().await.unwrap()).await;
            if endpoint["disabled_reason"].is_string() {
                break (status, endpoint);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let reason = endpoint["disabled_reason"].as_str().unwrap();
        assert!(reason.contains("has failed since"), "{reason}");
        let log = wait_for_log(&app, "the deliveries end", |log| {
            log.len() == 2 && log.iter().all(|d| d["status"] != "pending")
        })
        .await;
        assert!(log.iter().any(|d| d["status"] == "failed"), "{log:#?}");
        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("errand_webhook_endpoints_disabled 1\n"), "{metrics}");
        assert!(metrics.contains("errand_webhook_backlog 0\n"), "{metrics}");
        assert!(metrics.contains("errand_webhook_endpoints_disabled_total{reason=\"failing\"}"), "{metrics}");
        // Setting the URL again re-enables it.
        set_endpoint(&app, &receiver.url).await;
        let (_, endpoint) = crate::support::json_of(app.get("/webhooks/endpoint").send().await.unwrap()).await;
        assert!(endpoint["disabled_reason"].is_null(), "{endpoint}");
    }
}

/// The example receiver in `examples/` (see docs/webhooks.md) verifies
/// real deliveries and refuses a forged one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_receiver_verifies_real_deliveries() {
    use tokio::io::AsyncBufReadExt;
    let app = TestApp::spawn_engine(crate::support::Backend::Sqlite).await;
    // The first registration creates the secret the receiver needs to start.
    let secret = set_endpoint(&app, "http://127.0.0.1:9/").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/webhook_receiver.py"
    );
    let mut receiver = tokio::process::Command::new("python3")
        .args([script, "--port", &port.to_string(), "--secret", &secret])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs the example receiver");
    let mut lines = tokio::io::BufReader::new(receiver.stdout.take().unwrap()).lines();
    let next_line = async |lines: &mut tokio::io::Lines<_>| {
        tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("a line in time")
            .unwrap()
            .expect("a line")
    };
    let first: String = next_line(&mut lines).await;
    assert!(first.starts_with("listening"), "{first}");

    let url = format!("http://127.0.0.1:{port}/");
    assert_eq!(set_endpoint(&app, &url).await, secret, "the secret is kept");
    let order = app.created(&order_of(&app, "B0TEST0009")).await;
    let id = order["id"].as_str().unwrap();
    let mut verified = vec![];
    while verified.len() < 2 {
        let line: String = next_line(&mut lines).await;
        assert!(line.starts_with("verified"), "{line}");
        assert!(
            line.contains(id) && line.ends_with("x-webhook-signature ok"),
            "{line}"
        );
        verified.push(line);
    }
    verified.sort();
    assert!(
        verified[0].starts_with("verified order.placed"),
        "{verified:?}"
    );
    assert!(
        verified[1].starts_with("verified order.started"),
        "{verified:?}"
    );

    let forged = app
        .client
        .post(&url)
        .header("webhook-id", "evt_forged")
        .header(
            "webhook-timestamp",
            errand::storage::Timestamp::now()
                .datetime()
                .unix_timestamp()
                .to_string(),
        )
        .header("webhook-signature", "v1,AAAA")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    let line: String = next_line(&mut lines).await;
    assert!(line.starts_with("rejected"), "{line}");
}

/// HTTPS receivers: Errand verifies the receiver's certificate against the operating
/// system's authorities, or those in `SSL_CERT_FILE` (how an operator trusts a private
/// authority). A certificate from an authority it does not trust is refused and nothing
/// reaches the receiver; trusted, the same deliveries arrive. Real `errand` processes,
/// since the setting is the process's environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_reach_https_receivers_whose_certificate_is_trusted() {
    use crate::support::Backend;
    use crate::support::cluster::{Cluster, kill_and_reap};
    use crate::support::receiver::TestCa;

    let cluster = Cluster::new(Backend::Sqlite).await;
    let key = cluster.create_key().await;
    let ca = TestCa::new();
    let authorities = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(authorities.path(), &ca.pem).unwrap();
    let receiver = Receiver::start_tls(&ca).await;
    assert!(
        receiver.url.starts_with("https://localhost:"),
        "{}",
        receiver.url
    );

    // The system's authorities do not know the test's.
    let mut serve = cluster.serve().await;
    cluster.add_accounts(&key, 1).await;
    cluster.send_webhooks_to(&key, &receiver.url).await;
    let first = cluster.submit(&key, &["B0TEST0009"]).await.remove(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let deliveries = cluster.deliveries(&key).await;
        let refusal = deliveries
            .iter()
            .flat_map(|d| d["attempts"].as_array().cloned().unwrap_or_default())
            .find_map(|a| a["error"].as_str().map(str::to_string));
        if let Some(refusal) = refusal {
            break refusal;
        }
        assert!(
            Instant::now() < deadline,
            "no delivery was attempted: {deliveries:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("refused: {refused}");
    assert!(refused.contains("certificate"), "{refused}");
    assert!(receiver.all().is_empty(), "nothing reached the receiver");
    kill_and_reap(&mut serve).await;

    // Trusted through SSL_CERT_FILE: the same deliveries arrive, and new ones.
    let trust = [("SSL_CERT_FILE", authorities.path().display().to_string())];
    let (mut serve, _) = cluster.spawn_with(&["serve"], &trust);
    cluster.wait_until_up().await;
    for delivery in cluster.deliveries(&key).await {
        let response = cluster
            .client
            .post(format!(
                "{}/webhooks/deliveries/{}/redeliver",
                cluster.api,
                delivery["id"].as_str().unwrap()
            ))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let second = cluster.submit(&key, &["B0TEST0009"]).await.remove(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let placed: Vec<String> = receiver
            .accepted()
            .iter()
            .filter(|b| b["event"] == "order.placed")
            .map(|b| b["order_id"].as_str().unwrap().to_string())
            .collect();
        if placed.contains(&first) && placed.contains(&second) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "order.placed arrived for {placed:?} only"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kill_and_reap(&mut serve).await;
}
