//! A real webhook receiver on 127.0.0.1 for the delivery tests: it records every
//! request and can misbehave (answer an error, or stall past Errand's timeout) for the
//! first few.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

/// A request the receiver got: its headers and raw body.
#[derive(Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: String,
    /// What the receiver answered (`REQUEST_TIMEOUT` for a request it stalled on).
    pub status: StatusCode,
}

impl Received {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
            .to_string()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

/// How the receiver treats the first requests.
#[derive(Clone, Copy)]
pub enum Misbehaviour {
    /// Answers this status.
    Answer(StatusCode),
    /// Holds the request this long before answering 200 (longer than Errand waits).
    Stall(Duration),
    /// Answers 200, but only after this long (a slow receiver Errand waits for).
    Slow(Duration),
}

pub struct Receiver {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// A receiver that answers `status` to the first `failures` requests and 200
    /// afterwards.
    pub async fn start(failures: usize, status: StatusCode) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, failures, Misbehaviour::Answer(status)).await
    }

    /// Serves on `listener`, misbehaving for the first `failures` requests.
    pub async fn serve(
        listener: tokio::net::TcpListener,
        failures: usize,
        misbehaviour: Misbehaviour,
    ) -> Receiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let seen = received.clone();
        let count = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: String| {
                let seen = seen.clone();
                let count = count.clone();
                async move {
                    let misbehave = count.fetch_add(1, Ordering::SeqCst) < failures;
                    let answer = match misbehaviour {
                        Misbehaviour::Answer(status) if misbehave => status,
                        Misbehaviour::Stall(_) if misbehave => StatusCode::REQUEST_TIMEOUT,
                        _ => StatusCode::OK,
                    };
                    seen.lock().unwrap().push(Received {
                        headers,
                        body,
                        status: answer,
                    });
                    match misbehaviour {
                        Misbehaviour::Stall(wait) | Misbehaviour::Slow(wait) if misbehave => {
                            tokio::time::sleep(wait).await;
                            return StatusCode::OK;
                        }
                        _ => {}
                    }
                    answer
                }
            }),
        );
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, received }
    }

    pub fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The bodies of the distinct webhooks accepted (answered 200), in arrival order.
    pub fn accepted(&self) -> Vec<Value> {
        let mut bodies: Vec<Value> = vec![];
        for r in self
            .all()
            .into_iter()
            .filter(|r| r.status == StatusCode::OK)
        {
            let body = r.json();
            if !bodies.iter().any(|b| b["id"] == body["id"]) {
                bodies.push(body);
            }
        }
        bodies
    }

    /// Waits until `count` distinct webhook ids were accepted; returns their bodies in
    /// arrival order.
    pub async fn wait_for_ids(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let bodies = self.accepted();
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

/// Whether one of the request's `webhook-signature` entries is valid under `secret`.
pub fn signed_with(request: &Received, secret: &str) -> bool {
    let timestamp: i64 = request.header("webhook-timestamp").parse().unwrap();
    let expected = errand::webhooks::signing::standard_signature(
        secret,
        &request.header("webhook-id"),
        timestamp,
        request.body.as_bytes(),
    )
    .unwrap();
    request
        .header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

/// Checks a request's signatures under both schemes against `secret`.
pub fn assert_signed(request: &Received, secret: &str) {
    let body = request.json();
    assert_eq!(request.header("webhook-id"), body["id"].as_str().unwrap());
    assert_eq!(
        request.header("x-webhook-event"),
        body["event"].as_str().unwrap()
    );
    assert!(signed_with(request, secret), "Standard Webhooks signature");
    assert_eq!(
        request.header("x-webhook-signature"),
        errand::webhooks::signing::reference_signature(secret, request.body.as_bytes())
    );
}
