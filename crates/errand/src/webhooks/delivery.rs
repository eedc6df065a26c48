//! Delivering one webhook: build its body once (retries send the same bytes), sign it,
//! POST it, record the attempt, and retry on the configured schedule.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use super::WebhookSettings;
use super::address::Resolver;
use super::endpoint::{self, Endpoint};
use super::signing::{reference_signature, standard_signature};
use crate::accounts::Vault;
use crate::auth::Tenant;
use crate::queue::worker::{Handlers, handler};
use crate::queue::{Job, JobKind, Outcome};
use crate::storage::{Db, DbId, Timestamp};
use crate::{on_db, on_tx};

/// Jobs never run out before the schedule does; the schedule decides when to stop.
pub const MAX_JOB_ATTEMPTS: i32 = 100;
/// How much of a receiver's answer the delivery log keeps.
const RESPONSE_EXCERPT: usize = 1024;
/// Pinned clients kept for reuse (see [`Deliverer::client_for`]).
const PINNED_CLIENTS: usize = 256;

/// A receiver's host and the addresses a client is pinned to.
type PinKey = (String, Vec<SocketAddr>);

/// Where a delivery stands, stored as text in `webhook_deliveries.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not yet accepted by the receiver; attempts go on.
    Pending,
    Delivered,
    /// Every attempt of the schedule failed, or the receiver said it is gone.
    Failed,
    /// The endpoint was removed or disabled before it could be delivered.
    Cancelled,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 4] = [
        DeliveryState::Pending,
        DeliveryState::Delivered,
        DeliveryState::Failed,
        DeliveryState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryState> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl TryFrom<String> for DeliveryState {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        DeliveryState::parse(&text).ok_or_else(|| format!("unknown delivery state {text:?}"))
    }
}

/// How deliveries are attempted, from the configuration.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    /// Waits before each retry; the delivery fails after the last.
    pub schedule: Vec<Duration>,
    /// How long a receiver has to answer.
    pub timeout: Duration,
    /// An endpoint whose attempts have all failed for this long is disabled.
    pub disable_after: Duration,
    pub allow_private: bool,
    /// `public_url`: payloads list the order's screenshot URLs under it (without it a
    /// delivery has no address to give them).
    pub public_base: Option<String>,
}

impl DeliveryPolicy {
    pub fn new(settings: &WebhookSettings, public_base: Option<String>) -> DeliveryPolicy {
        DeliveryPolicy {
            schedule: settings.retry_schedule(),
            timeout: Duration::from_secs_f64(settings.webhook_timeout_seconds),
            disable_after: Duration::from_secs_f64(settings.webhook_disable_after_failing_seconds),
            allow_private: settings.webhooks_allow_private_addresses,
            public_base,
        }
    }
}

#[derive(Clone)]
pub struct Deliverer {
    db: Db,
    vault: Vault,
    /// Resolves receivers' names, once per attempt.
    resolver: Arc<dyn Resolver>,
    /// Clients of recent attempts, each pinned to the addresses of its key.
    clients: Arc<Mutex<HashMap<PinKey, reqwest::Client>>>,
    policy: DeliveryPolicy,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: String,
    account_id: DbId,
    livemode: bool,
    order_id: DbId,
    sequence: i64,
    event: String,
    status: String,
    payload: Option<String>,
    #[sqlx(try_from = "String")]
    state: DeliveryState,
    created_at: Timestamp,
}

/// What one attempt got.
struct Attempt {
    http_status: Option<u16>,
    error: Option<String>,
    response: Option<String>,
    retry_after: Option<Duration>,
    duration: Duration,
}

impl Deliverer {
    pub fn new(
        db: Db,
        vault: Vault,
        policy: DeliveryPolicy,
        resolver: Arc<dyn Resolver>,
    ) -> Deliverer {
        Deliverer {
            db,
            vault,
            resolver,
            clients: Arc::default(),
            policy,
        }
    }

    /// Lets a worker pool deliver webhooks.
    pub fn register(&self, handlers: &mut Handlers) {
        let deliverer = self.clone();
        handlers.register(
            JobKind::DeliverWebhook,
            handler(move |job| {
                let deliverer = deliverer.clone();
                async move { deliverer.run(&job).await }
            }),
        );
    }

    async fn run(&self, job: &Job) -> Result<Outcome, sqlx::Error> {
        let Some(id) = job.payload["delivery"].as_str() else {
            return Ok(Outcome::Dead("a webhook job without a delivery id".into()));
        };
        let Some(delivery) = self.load(id).await? else {
            return Ok(Outcome::Done);
        };
        if delivery.state != DeliveryState::Pending {
            return Ok(Outcome::Done);
        }
        let tenant = Tenant {
            account_id: delivery.account_id.0,
            livemode: delivery.livemode,
            key_id: Uuid::nil(),
        };
        let endpoint = match endpoint::get(&self.db, &self.vault, &tenant).await {
            Ok(Some(e)) if e.url.is_some() && e.disabled_reason.is_none() => e,
            Ok(_) => {
                self.finish(&delivery.id, DeliveryState::Cancelled).await?;
                return Ok(Outcome::Done);
            }
            Err(e) => {
                return Ok(Outcome::Retry {
                    error: e.to_string(),
                    after: None,
                });
            }
        };
        let body = match &delivery.payload {
            Some(body) => body.clone(),
            None => match self.build_body(&tenant, &delivery).await? {
                Some(body) => body,
                None => {
                    self.finish(&delivery.id, DeliveryState::Cancelled).await?;
                    return Ok(Outcome::Done);
                }
            },
        };
        let attempt = self.send(&endpoint, &delivery, &body).await;
        let delivered = attempt.http_status.is_some_and(|s| (200..300).contains(&s));
        let failing_since = self
            .record(&tenant, &delivery.id, &attempt, delivered)
            .await?;
        metrics::counter!("errand_webhook_attempts_total", "outcome" => outcome_label(&attempt))
            .increment(1);
        metrics::histogram!("errand_webhook_attempt_seconds")
            .record(attempt.duration.as_secs_f64());
        if let Some(since) = failing_since
            && Timestamp::now().since(since) >= self.policy.disable_after
        {
            let reason = format!(
                "every delivery to {} has failed since {since}",
                attempt_url(&endpoint)
            );
            self.disable_endpoint(&tenant, "failing", &reason).await?;
            self.finish(&delivery.id, DeliveryState::Failed).await?;
            return Ok(Outcome::Done);
        }

        match attempt.http_status {
            _ if delivered => Ok(Outcome::Done),
            Some(410) => {
                let reason = format!(
                    "the receiver answered 410 Gone at {}",
                    attempt_url(&endpoint)
                );
                self.disable_endpoint(&tenant, "gone", &reason).await?;
                self.finish(&delivery.id, DeliveryState::Failed).await?;
                Ok(Outcome::Done)
            }
            _ => {
                let error = attempt.error.clone().unwrap_or_else(|| {
                    format!("the receiver answered {}", attempt.http_status.unwrap_or(0))
                });
                let Some(wait) = self.policy.schedule.get(job.attempt.max(1) as usize - 1) else {
                    tracing::warn!(order_id = %delivery.order_id.0, delivery = %delivery.id, error = %error, "webhook delivery failed after every retry");
                    self.finish(&delivery.id, DeliveryState::Failed).await?;
                    return Ok(Outcome::Done);
                };
                let jittered = wait.mul_f64(rand::random_range(0.8..=1.2));
                let longest = self
                    .policy
                    .schedule
                    .iter()
                    .max()
                    .copied()
                    .unwrap_or_default();
                let after = attempt
                    .retry_after
                    .map(|r| r.clamp(jittered, longest.max(jittered)))
                    .unwrap_or(jittered);
                Ok(Outcome::Retry {
                    error,
                    after: Some(after),
                })
            }
        }
    }

    async fn disable_endpoint(
        &self,
        tenant: &Tenant,
        why: &'static str,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        tracing::warn!(account_id = %tenant.account_id, livemode = tenant.livemode, reason = %reason, "webhook endpoint disabled");
        metrics::counter!("errand_webhook_endpoints_disabled_total", "reason" => why).increment(1);
        endpoint::disable(&self.db, tenant, reason).await
    }

    async fn load(&self, id: &str) -> Result<Option<DeliveryRow>, sqlx::Error> {
        on_db!(&self.db, reader, |pool| {
            sqlx::query_as(
                "SELECT id, account_id, livemode, order_id, sequence, event, status, payload, state, created_at
                 FROM webhook_deliveries WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await
        })
    }

    /// The body, fixed at the first attempt: the event with the order as it is then.
    async fn build_body(
        &self,
        tenant: &Tenant,
        delivery: &DeliveryRow,
    ) -> Result<Option<String>, sqlx::Error> {
        let Some(mut order) =
            crate::orders::store::get(&self.db, tenant, delivery.order_id.0).await?
        else {
            return Ok(None);
        };
        if let Some(base) = &self.policy.public_base {
            order.link_screenshots(base);
        }
        let body = json!({
            "id": delivery.id,
            "event": delivery.event,
            "order_id": delivery.order_id.0,
            "status": delivery.status,
            "timestamp": delivery.created_at,
            "sequence": delivery.sequence,
            "data": order,
        })
        .to_string();
        let fixed = on_db!(&self.db, writer, |pool| {
            sqlx::query(
                "UPDATE webhook_deliveries SET payload = $1 WHERE id = $2 AND payload IS NULL",
            )
            .bind(&body)
            .bind(&delivery.id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected() == 1)
        })?;
        if fixed {
            return Ok(Some(body));
        }
        // Another run fixed it first: send what is stored.
        Ok(self.load(&delivery.id).await?.and_then(|d| d.payload))
    }

    async fn send(&self, endpoint: &Endpoint, delivery: &DeliveryRow, body: &str) -> Attempt {
        let started = Instant::now();
        let failed = |error: String| Attempt {
            http_status: None,
            error: Some(error),
            response: None,
            retry_after: None,
            duration: started.elapsed(),
        };
        let url = attempt_url(endpoint);
        let target = match endpoint::parse_url(&url) {
            Ok(target) => target,
            Err(e) => return failed(e.to_string()),
        };
        // Resolved and checked at every attempt (DNS can change after registration),
        // once: the request connects to exactly the addresses checked here.
        let addresses =
            match endpoint::resolve(&target, &*self.resolver, self.policy.allow_private).await {
                Ok(addresses) => addresses,
                Err(e) => return failed(e.to_string()),
            };
        let client = match self.client_for(&target, &addresses) {
            Ok(client) => client,
            Err(e) => return failed(format!("the request failed: {e}")),
        };
        let timestamp = Timestamp::now().datetime().unix_timestamp();
        let mut signatures = vec![];
        for secret in std::iter::once(&endpoint.secret).chain(endpoint.previous_secret.as_ref()) {
            if let Some(signature) =
                standard_signature(secret, &delivery.id, timestamp, body.as_bytes())
            {
                signatures.push(signature);
            }
        }
        let response = client
            .post(target)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures.join(" "))
            .header("x-webhook-event", &delivery.event)
            .header(
                "x-webhook-signature",
                reference_signature(&endpoint.secret, body.as_bytes()),
            )
            .body(body.to_string())
            .send()
            .await;
        match response {
            Err(e) => failed(describe_failure(&e, self.policy.timeout, &addresses)),
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let text = response.text().await.unwrap_or_default();
                let excerpt: String = text.chars().take(RESPONSE_EXCERPT).collect();
                Attempt {
                    http_status: Some(status),
                    error: None,
                    response: Some(excerpt),
                    retry_after,
                    duration: started.elapsed(),
                }
            }
        }
    }

    /// A client that connects only to `addresses` for `url`'s host: the one an
    /// earlier attempt built for the same host and addresses (with its open
    /// connections, all to those addresses), or a new one.
    fn client_for(
        &self,
        url: &url::Url,
        addresses: &[SocketAddr],
    ) -> reqwest::Result<reqwest::Client> {
        let key = (
            url.host_str().unwrap_or_default().to_string(),
            addresses.to_vec(),
        );
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = pinned_client(url, addresses, self.policy.timeout)?;
        if clients.len() >= PINNED_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Records an attempt in one transaction: the attempt, the delivery (delivered
    /// when it was), and the endpoint's run of failures, which any success ends.
    /// Returns when that run began (`None` after a success).
    async fn record(
        &self,
        tenant: &Tenant,
        id: &str,
        result: &Attempt,
        delivered: bool,
    ) -> Result<Option<Timestamp>, sqlx::Error> {
        let now = Timestamp::now();
        let new_state = if delivered {
            DeliveryState::Delivered
        } else {
            DeliveryState::Pending
        };
        let mut tx = self.db.begin().await?;
        let failing_since: Option<Option<Timestamp>> = on_tx!(tx, |conn| {
            sqlx::query(
                "INSERT INTO webhook_attempts (delivery_id, attempt, attempted_at, http_status, duration_ms, error, response)
                 VALUES ($1, (SELECT COALESCE(MAX(attempt), 0) + 1 FROM webhook_attempts WHERE delivery_id = $1),
                         $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(now)
            .bind(result.http_status.map(i32::from))
            .bind(result.duration.as_millis() as i64)
            .bind(result.error.as_deref())
            .bind(result.response.as_deref())
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, state = $1, updated_at = $2
                 WHERE id = $3",
            )
            .bind(new_state.as_str())
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await?;
            sqlx::query_scalar(
                "UPDATE webhook_endpoints
                 SET failing_since = CASE WHEN $1 THEN NULL ELSE COALESCE(failing_since, $2) END
                 WHERE account_id = $3 AND livemode = $4
                 RETURNING failing_since",
            )
            .bind(delivered)
            .bind(now)
            .bind(DbId(tenant.account_id))
            .bind(tenant.livemode)
            .fetch_optional(&mut *conn)
            .await
        })?;
        tx.commit().await?;
        Ok(failing_since.flatten())
    }

    async fn finish(&self, id: &str, final_state: DeliveryState) -> Result<(), sqlx::Error> {
        on_db!(&self.db, writer, |pool| {
            sqlx::query("UPDATE webhook_deliveries SET state = $1, updated_at = $2 WHERE id = $3")
                .bind(final_state.as_str())
                .bind(Timestamp::now())
                .bind(id)
                .execute(pool)
                .await
                .map(|_| ())
        })
    }
}

/// Deliveries not yet delivered, failed or cancelled, across all tenants (a metric).
pub async fn backlog(db: &Db) -> Result<i64, sqlx::Error> {
    on_db!(db, reader, |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE state = $1")
            .bind(DeliveryState::Pending.as_str())
            .fetch_one(pool)
            .await
    })
}

fn attempt_url(endpoint: &Endpoint) -> String {
    endpoint.url.clone().unwrap_or_default()
}

/// A client that connects only to `addresses`, the checked result of one lookup of
/// `url`'s host. It never looks a name up itself, follows no redirect (which could
/// lead to an address never checked) and uses no proxy (which would look the name up
/// again); the `Host` header still names the host.
fn pinned_client(
    url: &url::Url,
    addresses: &[SocketAddr],
    timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(NoLookups);
    if let Some(url::Host::Domain(name)) = url.host() {
        builder = builder.resolve_to_addrs(name, addresses);
    }
    builder.build()
}

/// The resolver of a [`pinned_client`]: its only name is pinned, so any other lookup
/// is a mistake and fails.
struct NoLookups;

impl reqwest::dns::Resolve for NoLookups {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let error = format!("{} is not the pinned host", name.as_str());
        Box::pin(std::future::ready(Err(error.into())))
    }
}

/// Where an attempt connected to, for its error: `93.184.215.14:443`.
fn addresses_text(addresses: &[SocketAddr]) -> String {
    addresses
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// An attempt that got no answer, in words an operator can act on (reqwest's own
/// message hides the cause in its source chain).
fn describe_failure(error: &reqwest::Error, timeout: Duration, addresses: &[SocketAddr]) -> String {
    let at = addresses_text(addresses);
    if error.is_timeout() {
        return format!(
            "the receiver at {at} did not answer within {} s",
            timeout.as_secs_f64()
        );
    }
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    if error.is_connect() {
        format!("cannot connect to the receiver at {at}: {cause}")
    } else {
        format!("the request failed: {cause}")
    }
}

fn outcome_label(attempt: &Attempt) -> &'static str {
    match attempt.http_status {
        Some(s) if (200..300).contains(&s) => "delivered",
        Some(410) => "gone",
        Some(_) => "rejected",
        None => "unreachable",
    }
}
