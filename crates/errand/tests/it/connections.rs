//! The server's network limits, seen from raw sockets: silent, half-sent, slow and idle
//! clients are disconnected; a refused request's unread body does not cost its
//! connection a response; and idle connections, however many, do not keep a new client
//! out or run the process out of file descriptors.

use std::io;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::time::{Instant, timeout, timeout_at};

use crate::support::{Backend, TestApp, order_body};

/// One HTTP/1.1 connection, spoken by hand.
struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The server says it closes the connection after this response.
    fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

impl RawConn {
    async fn open(addr: &str) -> RawConn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        // Each write goes out on its own, as a slow client's would.
        stream.set_nodelay(true).unwrap();
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    async fn response(&mut self) -> io::Result<RawResponse> {
        read_response(&mut self.stream, &mut self.buf).await
    }

    /// Waits up to `limit` for the server to close the connection; what it sent before
    /// closing, or `None` if it is still open.
    async fn closed_within(&mut self, limit: Duration) -> Option<Vec<u8>> {
        let mut sent = std::mem::take(&mut self.buf);
        let closed = timeout(limit, async {
            let mut chunk = [0u8; 4096];
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => sent.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        closed.ok().map(|()| sent)
    }
}

/// Reads one response (`buf` holds what was read past the previous one).
async fn read_response(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> io::Result<RawResponse> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "closed before a response; got {:?}",
                    String::from_utf8_lossy(buf)
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().expect("a length"));
    buf.drain(..head_end + 4);
    while buf.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed in the middle of a response body",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf.drain(..length).collect();
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

fn addr_of(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: errand\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_half_sent_and_idle_connections_are_closed() {
    let app = TestApp::spawn_with_settings(Backend::Sqlite, |s| {
        s.http.http_header_timeout_seconds = 0.5;
        s.http.http_keep_alive_idle_seconds = 1.0;
    })
    .await;
    let addr = addr_of(&app);
    let mut half = RawConn::open(&addr).await;
    half.send(b"GET /healthz HTTP/1.1\r\nHost: errand\r\nAcc")
        .await;
    let mut silent = RawConn::open(&addr).await;
    let mut idle = RawConn::open(&addr).await;
    idle.send(HEALTHZ).await;
    let response = idle.response().await.unwrap();
    assert_eq!(response.status, 200);
    assert!(!response.closes());
    // A connection that has served a request and then starts another, but never
    // finishes its head.
    let mut stalled = RawConn::open(&addr).await;
    stalled.send(HEALTHZ).await;
    assert_eq!(stalled.response().await.unwrap().status, 200);
    stalled.send(b"GET /healthz HTTP/1.1\r\n").await;

    for (name, conn) in [
        ("half a head", &mut half),
        ("a silent connection", &mut silent),
        ("an idle keep-alive connection", &mut idle),
        ("a second head never finished", &mut stalled),
    ] {
        let sent = conn
            .closed_within(Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("{name} is still open"));
        assert!(sent.is_empty(), "{name} gets no response: {sent:?}");
    }
    // The server serves on.
    let mut fresh = RawConn::open(&addr).await;
    fresh.send(HEALTHZ).await;
    assert_eq!(fresh.response().await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_gets_a_408_and_the_connection_is_closed() {
    let app = TestApp::spawn_with_settings(Backend::Sqlite, |s| {
        s.http.http_body_timeout_seconds = 0.5;
    })
    .await;
    let addr = addr_of(&app);
    let mut conn = RawConn::open(&addr).await;
    let head = format!(
        "POST /orders HTTP/1.1\r\nHost: errand\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"items\": ",
        app.key
    );
    conn.send(head.as_bytes()).await;
    let response = timeout(Duration::from_secs(30), conn.response())
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(response.status, 408);
    assert_eq!(response.json()["error"]["code"], "request_timeout");
    assert!(response.closes(), "{response:?}");
    assert!(
        conn.closed_within(Duration::from_secs(30)).await.is_some(),
        "the connection is closed after the 408"
    );
    // A body that arrives in time is unaffected.
    let created = app
        .post("/orders")
        .json(&order_body())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
}

/// A request whose body is sent in pieces, as a client on a real network does: the
/// server has refused it before the body has all arrived.
fn refused_request(path: &str, body_len: usize) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: errand\r\nContent-Type: application/json\r\n\
         Content-Length: {body_len}\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_with_unread_bodies_keep_their_connection() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let addr = addr_of(&app);
    let body = vec![b'x'; 4096];
    let mut conn = RawConn::open(&addr).await;
    let mut closed = 0;
    for i in 0..2400 {
        // No key: 401; an unknown path: 404. Neither reads the body.
        let (path, expected) = if i % 4 == 3 {
            ("/nowhere", 404)
        } else {
            ("/orders", 401)
        };
        let exchange = async {
            conn.stream
                .write_all(&refused_request(path, body.len()))
                .await?;
            for piece in body.chunks(1024) {
                conn.stream.write_all(piece).await?;
                tokio::task::yield_now().await;
            }
            conn.response().await
        };
        let response = exchange
            .await
            .unwrap_or_else(|e| panic!("request {i} got no response: {e}"));
        assert_eq!(response.status, expected, "request {i}");
        if response.closes() {
            closed += 1;
            conn = RawConn::open(&addr).await;
        }
    }
    assert_eq!(
        closed, 0,
        "a small unread body is read and discarded, and the connection kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_unread_body_is_answered_before_the_connection_closes() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let addr = addr_of(&app);
    for i in 0..20 {
        // Too large to be drained, and sent in full before the client reads: the
        // server must go on reading it after its answer, or the client's sending fails
        // on a reset connection before it gets to read the answer.
        let body = vec![b'x'; 900 * 1024];
        let mut conn = RawConn::open(&addr).await;
        let exchange = async {
            conn.stream
                .write_all(&refused_request("/orders", body.len()))
                .await?;
            conn.stream.write_all(&body).await?;
            conn.response().await
        };
        let response = timeout(Duration::from_secs(30), exchange)
            .await
            .expect("an answer")
            .unwrap_or_else(|e| panic!("request {i} got no response: {e}"));
        assert_eq!(response.status, 401);
        assert!(response.closes(), "{response:?}");
        assert!(
            conn.closed_within(Duration::from_secs(30)).await.is_some(),
            "the connection is closed after the answer"
        );
    }
    // A client that waits for `100 Continue` is told no at once and sends nothing.
    let mut conn = RawConn::open(&addr).await;
    conn.send(b"POST /orders HTTP/1.1\r\nHost: errand\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
        .await;
    let response = timeout(Duration::from_secs(30), conn.response())
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(response.status, 401);
    assert!(response.closes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_connection_limit_new_clients_wait_and_existing_ones_are_served() {
    let app = TestApp::spawn_with_settings(Backend::Sqlite, |s| {
        s.http.http_max_connections = Some(4);
        s.http.http_keep_alive_idle_seconds = 3.0;
    })
    .await;
    let addr = addr_of(&app);
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut conn = RawConn::open(&addr).await;
        conn.send(HEALTHZ).await;
        assert_eq!(conn.response().await.unwrap().status, 200);
        held.push(conn);
    }
    // The fifth connects (the kernel queues it) but waits for a free slot.
    let mut fifth = RawConn::open(&addr).await;
    fifth.send(HEALTHZ).await;
    assert!(
        timeout(Duration::from_millis(300), fifth.response())
            .await
            .is_err(),
        "every slot is taken"
    );
    // Clients already connected are served meanwhile.
    held[0].send(HEALTHZ).await;
    assert_eq!(held[0].response().await.unwrap().status, 200);
    // Idle connections are closed after their timeout, and the fifth gets its turn.
    let response = timeout(Duration::from_secs(60), fifth.response())
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert_eq!(response.status, 200);
}

/// The soft limit on open files of this process, raised to at least `wanted` (up to the
/// hard limit).
fn raise_open_file_limit(wanted: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only the struct they are given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    limit.rlim_cur
}

/// `value` of the metric line `name value` in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| line.strip_prefix(name))
        .find_map(|rest| rest.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// The scenario of the review: one client holds thousands of idle connections. With the
/// connection limit below the process's open-file limit (here set to 12 288), a new
/// client is still served, and the idle connections are closed after their timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_do_not_keep_a_new_client_out() {
    const IDLE: usize = 10_000;
    const SERVER_FILE_LIMIT: u64 = 12_288;
    let ours = raise_open_file_limit(IDLE as u64 + 2_000);
    assert!(
        ours >= IDLE as u64 + 1_000,
        "this test holds {IDLE} sockets: the open-file limit ({ours}) must allow them"
    );
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_errand"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--no-demo-store"])
        .env("ERRAND_DATA_DIR", dir.path().join("data"))
        .env_remove("ERRAND_DATABASE_URL")
        .env_remove("ERRAND_LISTEN")
        // More than the open-file limit allows: the server takes what fits.
        .env("ERRAND_HTTP_MAX_CONNECTIONS", "1000000")
        .env("ERRAND_HTTP_KEEP_ALIVE_IDLE_SECONDS", "30")
        .env("RUST_LOG", "warn")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true);
    // SAFETY: only setrlimit, which is async-signal-safe, runs in the child.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: SERVER_FILE_LIMIT,
                rlim_max: SERVER_FILE_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
    let mut server = command.spawn().unwrap();
    let stdout = server.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout);
    let addr = timeout(Duration::from_secs(60), async {
        use tokio::io::AsyncBufReadExt;
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                lines.read_line(&mut line).await.unwrap() > 0,
                "serve exited"
            );
            if let Some(rest) = line.split("is listening on http://").nth(1) {
                return rest.split_whitespace().next().unwrap().to_string();
            }
        }
    })
    .await
    .expect("serve starts");

    // The idle connections: each makes a request, then holds its connection open.
    let started = Instant::now();
    let mut openers = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let addr = addr.clone();
        openers.spawn(async move {
            let mut conns = Vec::new();
            for _ in 0..IDLE / 50 {
                let mut conn = RawConn::open(&addr).await;
                conn.send(HEALTHZ).await;
                assert_eq!(conn.response().await.unwrap().status, 200);
                conns.push(conn);
            }
            conns
        });
    }
    let mut idle = Vec::new();
    while let Some(conns) = openers.join_next().await {
        idle.extend(conns.unwrap());
    }
    assert_eq!(idle.len(), IDLE);
    let setup = started.elapsed();

    // A new client is served while they are held.
    let client = reqwest::Client::new();
    let text = timeout(Duration::from_secs(30), async {
        client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
    .await
    .expect("a new client is served");
    let open = metric(&text, "errand_http_connections").expect("the gauge of connections");
    let limit = metric(&text, "errand_http_connection_limit").expect("the limit");
    assert!(
        open > IDLE as f64,
        "the idle connections are still open ({open}; they took {setup:?} to open)"
    );
    assert!(
        limit > IDLE as f64 && limit < SERVER_FILE_LIMIT as f64,
        "the limit ({limit}) is below the open-file limit, with room kept for the rest"
    );

    // Then the server closes them, having sent nothing more.
    let deadline = Instant::now() + Duration::from_secs(120);
    for (i, conn) in idle.iter_mut().enumerate() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let sent = conn
            .closed_within(remaining)
            .await
            .unwrap_or_else(|| panic!("idle connection {i} is still open"));
        assert!(sent.is_empty());
    }
    drop(idle);
    let text = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let closed = metric(&text, "errand_http_timeouts_total{timeout=\"idle\"}").unwrap_or(0.0);
    assert!(closed >= IDLE as f64, "{text}");

    let pid = server.id().unwrap().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    let status = timeout_at(Instant::now() + Duration::from_secs(30), server.wait())
        .await
        .expect("serve stops")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(
        !log.contains("cannot accept connections"),
        "the server never ran out of descriptors: {log}"
    );
    assert!(
        log.contains("http_max_connections is more than the open-file limit allows"),
        "{log}"
    );
}
