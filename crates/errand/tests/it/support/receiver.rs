//! A real webhook receiver on 127.0.0.1 for the delivery tests: it records every
//! request and can misbehave (answer an error, or stall past Errand's timeout) for the
//! first few.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

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
        Self::serve_with(listener, failures, misbehaviour, None).await
    }

    /// An HTTPS receiver at `https://localhost:PORT/hook`, with a certificate `ca`
    /// signed, answering 200 to every request.
    pub async fn start_tls(ca: &TestCa) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let answer = Misbehaviour::Answer(StatusCode::OK);
        Self::serve_with(listener, 0, answer, Some(ca.server.clone())).await
    }

    async fn serve_with(
        listener: tokio::net::TcpListener,
        failures: usize,
        misbehaviour: Misbehaviour,
        tls: Option<Arc<ServerConfig>>,
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
        let address = listener.local_addr().unwrap();
        let url = match tls {
            None => {
                tokio::spawn(async move { axum::serve(listener, app).await });
                format!("http://{address}/hook")
            }
            Some(tls) => {
                tokio::spawn(serve_tls(listener, app, tls));
                format!("https://localhost:{}/hook", address.port())
            }
        };
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

/// A certificate authority made for one test, and the server configuration of a
/// certificate it signed for `localhost`.
pub struct TestCa {
    /// The authority's certificate, PEM: what a client must trust.
    pub pem: String,
    server: Arc<ServerConfig>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Errand test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let server = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], private)
            .expect("a server configuration");
        TestCa {
            pem: ca.pem(),
            server: Arc::new(server),
        }
    }
}

/// Serves `app` over TLS, one HTTP/1 connection per accepted socket.
async fn serve_tls(listener: tokio::net::TcpListener, app: axum::Router, tls: Arc<ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            // A client that refuses the certificate ends the handshake: nothing to serve.
            let Ok(stream) = acceptor.accept(socket).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
