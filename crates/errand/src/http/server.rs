//! The connection layer under the router: how connections are accepted, how many may be
//! open at once, and when silent, slow or idle ones are closed.
//!
//! Each connection is served by hyper's HTTP/1 server, watched by its own task:
//!
//! - a request's head (request line and headers) must arrive within
//!   `http_header_timeout_seconds` of its first byte, or of the connection's opening;
//! - a connection with no traffic for `http_keep_alive_idle_seconds` between requests
//!   (or whose client stops reading its response) is closed;
//! - a request's body must arrive within `http_body_timeout_seconds` of its head, or the
//!   request gets a 408 and the connection is closed;
//! - a body its handler left unread (a 401, 404, 413 …) is read and discarded, up to
//!   [`DRAIN_LIMIT`], before the response goes out, so that the connection stays usable.
//!   A larger or slower one is answered with `Connection: close`, and the connection
//!   reads and discards what is still arriving for a moment before it closes, so that
//!   the client gets to read the response rather than a reset;
//! - at most `http_max_connections` are open at once: further ones wait in the listen
//!   queue until one closes, so that the process never runs out of file descriptors.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use super::ApiError;
use crate::config::Settings;

/// An unread request body up to this size is read and discarded so that the connection
/// can serve the next request; a larger one closes the connection.
pub const DRAIN_LIMIT: usize = 64 * 1024;
/// How long a closing connection keeps reading what its client still sends (the rest of
/// a refused body) so that the client reads the response rather than a reset.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_LIMIT: usize = 1024 * 1024;
/// `http_max_connections` when the open-file limit is unknown or unlimited, and the most
/// it is by default.
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The fewest connections the default allows, however low the open-file limit.
const MIN_MAX_CONNECTIONS: usize = 32;
/// How long the accept loop waits after an error such as "too many open files".
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// At most one warning about accept errors, or a full connection table, per this long.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// The HTTP server's network limits (flattened into the configuration's keys).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// How long a client has to send a request's head (request line and headers), from
    /// its first byte or, on a new connection, from the connection's opening.
    pub http_header_timeout_seconds: f64,
    /// How long a connection may go without traffic between requests (or with a response
    /// its client does not read) before it is closed.
    pub http_keep_alive_idle_seconds: f64,
    /// How long a client has to send a request's body, from the end of its head.
    pub http_body_timeout_seconds: f64,
    /// Connections open at once; further ones wait until one closes. Unset: the
    /// process's open-file limit less a reserve for the database and outgoing
    /// connections, at most 10 000.
    pub http_max_connections: Option<usize>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            http_header_timeout_seconds: 10.0,
            http_keep_alive_idle_seconds: 60.0,
            http_body_timeout_seconds: 30.0,
            http_max_connections: None,
        }
    }
}

impl HttpSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        for (key, value, max) in [
            (
                "http_header_timeout_seconds",
                self.http_header_timeout_seconds,
                3600.0,
            ),
            (
                "http_keep_alive_idle_seconds",
                self.http_keep_alive_idle_seconds,
                86_400.0,
            ),
            (
                "http_body_timeout_seconds",
                self.http_body_timeout_seconds,
                3600.0,
            ),
        ] {
            if !(0.1..=max).contains(&value) {
                anyhow::bail!("invalid configuration: {key} must be between 0.1 and {max}");
            }
        }
        if self
            .http_max_connections
            .is_some_and(|n| !(1..=1_000_000).contains(&n))
        {
            anyhow::bail!(
                "invalid configuration: http_max_connections must be between 1 and 1000000"
            );
        }
        Ok(())
    }
}

/// The limits one server runs with, resolved from the settings and the process's
/// open-file limit.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    header: Duration,
    idle: Duration,
    body: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn new(settings: &Settings) -> Limits {
        let http = &settings.http;
        let fd_limit = open_file_limit();
        let reserve = reserved_descriptors(settings);
        let allowed = fd_limit.map(|limit| {
            usize::try_from(limit)
                .unwrap_or(usize::MAX)
                .saturating_sub(reserve)
                .max(MIN_MAX_CONNECTIONS)
        });
        let max_connections = match (http.http_max_connections, allowed) {
            (Some(wanted), Some(allowed)) if wanted > allowed => {
                tracing::warn!(
                    http_max_connections = wanted,
                    open_file_limit = fd_limit,
                    using = allowed,
                    "http_max_connections is more than the open-file limit allows, with {reserve} \
                     descriptors kept for the database and outgoing connections; raise the limit \
                     (ulimit -n, or LimitNOFILE= under systemd) to allow more"
                );
                allowed
            }
            (Some(wanted), _) => wanted,
            (None, Some(allowed)) => allowed.min(DEFAULT_MAX_CONNECTIONS),
            (None, None) => DEFAULT_MAX_CONNECTIONS,
        };
        Limits {
            header: Duration::from_secs_f64(http.http_header_timeout_seconds),
            idle: Duration::from_secs_f64(http.http_keep_alive_idle_seconds),
            body: Duration::from_secs_f64(http.http_body_timeout_seconds),
            max_connections,
        }
    }
}

/// The process's soft limit on open files, or `None` when it is unlimited or unknown.
pub fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// File descriptors kept out of the connection limit: the process's own files and
/// listeners, the database pool (a SQLite connection holds several files) and the
/// outgoing connections of workers and webhook deliveries (with the embedded demo
/// store's side of them).
fn reserved_descriptors(settings: &Settings) -> usize {
    let pool = settings.db_options().pool_size as usize + 1;
    256 + 4 * (pool + settings.queue.worker_concurrency + settings.webhooks.webhook_concurrency)
}

/// Accepts connections on `listener` and serves `router` on them until `stop` fires (or
/// its sender is dropped); then stops accepting, lets requests in flight finish (idle
/// connections are closed at once) and returns when every connection has closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut stop: oneshot::Receiver<()>,
) -> io::Result<()> {
    let limits = Arc::new(limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closing_rx) = watch::channel(false);
    let mut full_warning = Throttle::default();
    let mut error_warning = Throttle::default();
    metrics::gauge!("errand_http_connection_limit").set(limits.max_connections as f64);
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                full_warning.warn(|suppressed| {
                    tracing::warn!(
                        limit = limits.max_connections,
                        suppressed,
                        "every connection slot is taken (http_max_connections): new connections wait until one closes"
                    )
                });
                tokio::select! {
                    biased;
                    _ = &mut stop => break,
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                }
            }
        };
        let stream = tokio::select! {
            biased;
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    drop(slot);
                    if !is_connection_error(&error) {
                        error_warning.warn(|suppressed| {
                            tracing::error!(error = %error, suppressed, "cannot accept connections; retrying shortly")
                        });
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    continue;
                }
            }
        };
        tokio::spawn(connection(
            stream,
            slot,
            router.clone(),
            limits.clone(),
            closing_rx.clone(),
        ));
    }
    drop(listener);
    let _ = closing.send(true);
    // Every connection holds a slot until it has closed.
    let _ = slots.acquire_many(limits.max_connections as u32).await;
    Ok(())
}

/// Errors about one connection that went away before it was accepted: nothing to wait
/// for.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Lets a warning through at most once per [`WARNING_INTERVAL`], counting those held back.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    fn warn(&mut self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + WARNING_INTERVAL) {
            self.suppressed += 1;
            return;
        }
        log(self.suppressed);
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// Why a connection was closed by the server.
#[derive(Debug, Clone, Copy)]
enum Timeout {
    Header,
    Idle,
}

impl Timeout {
    fn label(self) -> &'static str {
        match self {
            Timeout::Header => "header",
            Timeout::Idle => "idle",
        }
    }
}

/// Serves one connection until it ends, times out or the server stops.
async fn connection(
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    router: Router,
    limits: Arc<Limits>,
    mut closing: watch::Receiver<bool>,
) {
    let _open = OpenConnection::new();
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(WatchedIo {
        stream,
        activity: activity.clone(),
        linger: None,
    });
    let service = ConnectionService {
        router,
        activity: activity.clone(),
        body_timeout: limits.body,
    };
    // The watchdog below keeps the time; hyper's own header timeout would also cut
    // idle keep-alive connections short.
    let mut conn = pin!(
        http1::Builder::new()
            .keep_alive(true)
            .header_read_timeout(None)
            .serve_connection(io, service)
    );
    let mut stopping = pin!(closing.wait_for(|closing| *closing));
    let mut shutting_down = false;
    let mut armed = activity.deadline(&limits).map_or(0, |(at, _)| at);
    let mut sleep = pin!(tokio::time::sleep_until(activity.instant(armed)));
    let idle_ms = millis(limits.idle);
    let end = poll_fn(|cx| {
        if let Poll::Ready(result) = conn.as_mut().poll(cx) {
            return Poll::Ready(End::Finished(result));
        }
        if !shutting_down && stopping.as_mut().poll(cx).is_ready() {
            shutting_down = true;
            if !activity.has_served() {
                // Nothing to finish; hyper would wait for a first request.
                return Poll::Ready(End::Stopped);
            }
            // Closes it now if idle, else after the response in flight.
            conn.as_mut().graceful_shutdown();
            if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                return Poll::Ready(End::Finished(result));
            }
        }
        loop {
            let due = activity.deadline(&limits);
            if let Some((at, _)) = due
                && at < armed
            {
                armed = at;
                sleep.as_mut().reset(activity.instant(armed));
            }
            ready!(sleep.as_mut().poll(cx));
            armed = match due {
                Some((at, timeout)) if at <= armed => return Poll::Ready(End::TimedOut(timeout)),
                Some((at, _)) => at,
                // A request is being handled: look again later.
                None => activity.now() + idle_ms,
            };
            sleep.as_mut().reset(activity.instant(armed));
        }
    })
    .await;
    match end {
        End::Finished(Ok(())) | End::Stopped => {}
        End::Finished(Err(error)) => {
            tracing::debug!(error = %error, "connection ended with an error")
        }
        End::TimedOut(timeout) => {
            metrics::counter!("errand_http_timeouts_total", "timeout" => timeout.label())
                .increment(1);
            tracing::debug!(
                timeout = timeout.label(),
                "connection closed after a timeout"
            );
        }
    }
}

enum End {
    Finished(Result<(), hyper::Error>),
    TimedOut(Timeout),
    Stopped,
}

/// Counts open connections in `errand_http_connections`.
struct OpenConnection;

impl OpenConnection {
    fn new() -> OpenConnection {
        metrics::gauge!("errand_http_connections").increment(1.0);
        OpenConnection
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("errand_http_connections").decrement(1.0);
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Between requests: waiting for (the rest of) a request's head.
const IDLE: u8 = 0;
/// From a request's head to its handler's response.
const HANDLING: u8 = 1;
/// Writing a response.
const RESPONDING: u8 = 2;

/// What a connection is doing and when it last moved bytes, shared by its socket, its
/// requests and its watchdog. Times are milliseconds since the connection opened.
struct Activity {
    opened: Instant,
    phase: AtomicU8,
    last_io: AtomicU64,
    /// One more than when the first byte of the awaited request head arrived; 0 while
    /// none has.
    head_started: AtomicU64,
    served: AtomicBool,
    /// Keep reading after the last response, until the client stops sending.
    linger: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            phase: AtomicU8::new(IDLE),
            last_io: AtomicU64::new(0),
            // A new connection has its header timeout running from the start.
            head_started: AtomicU64::new(1),
            served: AtomicBool::new(false),
            linger: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        millis(self.opened.elapsed())
    }

    fn instant(&self, at: u64) -> Instant {
        self.opened + Duration::from_millis(at)
    }

    fn has_served(&self) -> bool {
        self.served.load(Relaxed)
    }

    fn read(&self) {
        let now = self.now();
        self.last_io.store(now, Relaxed);
        if self.phase.load(Relaxed) == IDLE && self.head_started.load(Relaxed) == 0 {
            self.head_started.store(now + 1, Relaxed);
        }
    }

    fn wrote(&self) {
        self.last_io.store(self.now(), Relaxed);
    }

    fn request_started(&self) {
        self.phase.store(HANDLING, Relaxed);
        self.head_started.store(0, Relaxed);
        self.served.store(true, Relaxed);
    }

    fn responding(&self) {
        self.phase.store(RESPONDING, Relaxed);
    }

    fn response_done(&self) {
        self.last_io.store(self.now(), Relaxed);
        self.phase.store(IDLE, Relaxed);
    }

    /// When the connection is to be closed, and why; `None` while a handler runs.
    fn deadline(&self, limits: &Limits) -> Option<(u64, Timeout)> {
        let idle = (
            self.last_io
                .load(Relaxed)
                .saturating_add(millis(limits.idle)),
            Timeout::Idle,
        );
        match self.phase.load(Relaxed) {
            HANDLING => None,
            IDLE => match self.head_started.load(Relaxed) {
                0 => Some(idle),
                started => {
                    let header = (
                        (started - 1).saturating_add(millis(limits.header)),
                        Timeout::Header,
                    );
                    Some(if header.0 <= idle.0 { header } else { idle })
                }
            },
            _ => Some(idle),
        }
    }
}

/// The socket, noting each read and write in the connection's [`Activity`].
struct WatchedIo {
    stream: TcpStream,
    activity: Arc<Activity>,
    linger: Option<Linger>,
}

struct Linger {
    shut: bool,
    read: usize,
    until: Pin<Box<Sleep>>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.read();
        }
        result
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    /// Shuts the socket's sending side; on a connection closed with a request body
    /// still arriving, then reads and discards it for a moment: closing a socket with
    /// unread data resets the connection, and the client could lose the response.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.activity.linger.load(Relaxed) {
            return Pin::new(&mut this.stream).poll_shutdown(cx);
        }
        let linger = this.linger.get_or_insert_with(|| Linger {
            shut: false,
            read: 0,
            until: Box::pin(tokio::time::sleep(LINGER_TIME)),
        });
        if !linger.shut {
            ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
            linger.shut = true;
        }
        let mut scratch = [0u8; 4096];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() && linger.read < LINGER_LIMIT => {
                    linger.read += buf.filled().len();
                }
                // The client is done (or gone), or has sent enough.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    ready!(linger.until.as_mut().poll(cx));
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

/// Runs the router for each request of a connection: times its body, disposes of what
/// the handler left of it, and tells the connection's [`Activity`] where it stands.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    activity: Arc<Activity>,
    body_timeout: Duration,
}

type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, request: Request<Incoming>) -> ServiceFuture {
        self.activity.request_started();
        let deadline = Instant::now() + self.body_timeout;
        let expects_continue = request
            .headers()
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let (parts, incoming) = request.into_parts();
        let (body, watched) = if incoming.is_end_stream() {
            (Body::new(incoming), None)
        } else {
            let state = Arc::new(BodyState::default());
            let body = TimedBody {
                inner: Some(incoming),
                state: state.clone(),
                deadline,
                sleep: None,
            };
            (Body::new(body), Some(state))
        };
        let router = self.router.clone();
        let activity = self.activity.clone();
        Box::pin(async move {
            let request = Request::from_parts(parts, body);
            let Ok(mut response) = router.oneshot(request).await;
            if let Some(state) = watched {
                settle_body(&state, &mut response, expects_continue, deadline, &activity).await;
            }
            activity.responding();
            Ok(response.map(|body| ResponseBody { body, activity }))
        })
    }
}

/// After the handler: a body that timed out makes the response a 408; one left unread
/// is drained, or the response closes the connection.
async fn settle_body(
    state: &BodyState,
    response: &mut Response<Body>,
    expects_continue: bool,
    deadline: Instant,
    activity: &Activity,
) {
    if state.timed_out.load(Relaxed) {
        metrics::counter!("errand_http_timeouts_total", "timeout" => "body").increment(1);
        let request_id = response.headers().get("x-request-id").cloned();
        *response = ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "The request body did not arrive in time",
        )
        .into_response();
        if let Some(id) = request_id {
            response.headers_mut().insert("x-request-id", id);
        }
        close_after(response, activity);
        return;
    }
    let rest = state
        .rest
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    let Some(rest) = rest else {
        return;
    };
    // A client waiting for `100 Continue` before it sends the body would be told to go
    // ahead only for the body to be thrown away.
    if (expects_continue && !state.polled.load(Relaxed)) || !drain(rest, deadline).await {
        close_after(response, activity);
    }
}

fn close_after(response: &mut Response<Body>, activity: &Activity) {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    activity.linger.store(true, Relaxed);
}

/// Reads and discards `body` if it is at most [`DRAIN_LIMIT`] and arrives by `deadline`.
async fn drain(mut body: Incoming, deadline: Instant) -> bool {
    if body.size_hint().lower() > DRAIN_LIMIT as u64 {
        return false;
    }
    let read_all = async {
        let mut read = 0;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            read += frame.data_ref().map_or(0, Bytes::len);
            if read > DRAIN_LIMIT {
                return false;
            }
        }
        true
    };
    tokio::time::timeout_at(deadline, read_all)
        .await
        .unwrap_or(false)
}

/// What the service learns of a request body once the handler is done with it.
#[derive(Default)]
struct BodyState {
    /// The unread rest, put here when the handler drops the body before its end.
    rest: Mutex<Option<Incoming>>,
    polled: AtomicBool,
    timed_out: AtomicBool,
}

/// A request body that fails once its deadline has passed while waiting for the client.
struct TimedBody {
    inner: Option<Incoming>,
    state: Arc<BodyState>,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        this.state.polled.store(true, Relaxed);
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(error))) => {
                this.inner = None;
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                this.inner = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                ready!(sleep.as_mut().poll(cx));
                this.inner = None;
                this.state.timed_out.store(true, Relaxed);
                Poll::Ready(Some(Err(BodyTimedOut.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && !inner.is_end_stream()
        {
            *self
                .state
                .rest
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(inner);
        }
    }
}

/// A response body that tells the connection when the response is done.
struct ResponseBody {
    body: Body,
    activity: Arc<Activity>,
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.activity.response_done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        HttpSettings::default().validate().unwrap();
        for settings in [
            HttpSettings {
                http_header_timeout_seconds: 0.0,
                ..HttpSettings::default()
            },
            HttpSettings {
                http_body_timeout_seconds: f64::NAN,
                ..HttpSettings::default()
            },
            HttpSettings {
                http_max_connections: Some(0),
                ..HttpSettings::default()
            },
        ] {
            let error = settings.validate().unwrap_err().to_string();
            assert!(error.contains("http_"), "{error}");
        }
    }

    #[test]
    fn the_default_connection_limit_leaves_descriptors_for_the_rest() {
        let settings = Settings::default();
        let limits = Limits::new(&settings);
        assert!(limits.max_connections <= DEFAULT_MAX_CONNECTIONS);
        if let Some(fd_limit) = open_file_limit() {
            let reserve = reserved_descriptors(&settings);
            assert!(
                limits.max_connections as u64 + reserve as u64 <= fd_limit
                    || limits.max_connections == MIN_MAX_CONNECTIONS
            );
        }
        let wanted = Settings {
            http: HttpSettings {
                http_max_connections: Some(50),
                ..HttpSettings::default()
            },
            ..Settings::default()
        };
        assert_eq!(Limits::new(&wanted).max_connections, 50);
    }

    #[test]
    fn a_new_connection_must_send_its_head_in_time_and_an_idle_one_is_closed() {
        let limits = Limits {
            header: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            body: Duration::from_secs(30),
            max_connections: 1,
        };
        let activity = Activity::new();
        assert!(matches!(
            activity.deadline(&limits),
            Some((10_000, Timeout::Header))
        ));
        activity.request_started();
        assert!(activity.deadline(&limits).is_none(), "a handler is running");
        activity.responding();
        assert!(matches!(
            activity.deadline(&limits),
            Some((60_000, Timeout::Idle))
        ));
        activity.response_done();
        let (at, timeout) = activity.deadline(&limits).unwrap();
        assert!(matches!(timeout, Timeout::Idle) && at >= 60_000);
        activity.read();
        let (at, timeout) = activity.deadline(&limits).unwrap();
        assert!(
            matches!(timeout, Timeout::Header) && at < 60_000,
            "the next head's first byte starts its header timeout"
        );
    }
}
