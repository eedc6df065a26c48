//! The order engine: the jobs that turn a `pending` order into a purchase at the
//! retailer (exactly once, never above its price cap) and then follow it to delivery.

mod placement;
pub mod store;
mod tracking;

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::json;
use tracing::Instrument;
use uuid::Uuid;

use crate::accounts::Vault;
use crate::config::Settings;
use crate::orders::model::{JobResult, OrderItemStatus, OrderStatus, events};
use crate::queue::worker::{Handler, WorkerOptions, WorkerPool};
use crate::queue::{Job, Outcome, RetryPolicy};
use crate::retailers::{Credentials, Registry};
use crate::storage::Db;
use crate::webhooks::DELIVER_WEBHOOK;
use crate::webhooks::delivery::{Deliverer, DeliveryPolicy};
use store::{Change, EngineOrder};

/// Job kinds.
pub const PLACE_ORDER: &str = "place_order";
pub const TRACK_ORDER: &str = "track_order";
pub const EXPIRE_ORDER: &str = "expire_order";
/// Does nothing: for measuring the queue itself.
pub const NOOP: &str = "noop";
/// The kinds the order pool runs; webhook deliveries have a pool of their own.
const ORDER_JOBS: [&str; 4] = [PLACE_ORDER, TRACK_ORDER, EXPIRE_ORDER, NOOP];

/// The engine's worker pools: one for orders, and one for webhook deliveries so that
/// they never wait behind checkouts (a burst of placements, or slow browser ones).
pub struct Workers {
    pub orders: WorkerPool,
    pub webhooks: WorkerPool,
}

impl Workers {
    /// Stops both pools, each waiting up to `grace` for the jobs it runs.
    pub async fn stop(self, grace: Duration) {
        futures_util::join!(self.orders.stop(grace), self.webhooks.stop(grace));
    }
}

/// What the engine needs, shared by every job it runs.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    retailers: Arc<Registry>,
    vault: Vault,
    lease: Duration,
    webhooks: Deliverer,
}

impl Engine {
    pub fn new(
        db: Db,
        retailers: Arc<Registry>,
        vault: Vault,
        settings: &Settings,
    ) -> anyhow::Result<Engine> {
        let webhooks = Deliverer::new(
            db.clone(),
            vault.clone(),
            DeliveryPolicy::from_settings(settings),
        )?;
        Ok(Engine {
            inner: Arc::new(Inner {
                db,
                retailers,
                vault,
                lease: settings.job_lease(),
                webhooks,
            }),
        })
    }

    /// Starts `settings.worker_concurrency` workers for orders and
    /// `settings.webhook_concurrency` for webhook deliveries.
    pub fn start_workers(&self, settings: &Settings) -> Workers {
        let options = |concurrency: usize, kinds: &[&str]| WorkerOptions {
            concurrency,
            lease: settings.job_lease(),
            retry: RetryPolicy {
                base: Duration::from_secs_f64(settings.job_retry_base_seconds),
                max: Duration::from_secs_f64(settings.job_retry_max_seconds),
            },
            kinds: Some(kinds.iter().map(|k| k.to_string()).collect()),
        };
        let db = &self.inner.db;
        Workers {
            orders: WorkerPool::start(
                db.clone(),
                options(settings.worker_concurrency, &ORDER_JOBS),
                self.handler(),
            ),
            webhooks: WorkerPool::start(
                db.clone(),
                options(settings.webhook_concurrency, &[DELIVER_WEBHOOK]),
                self.handler(),
            ),
        }
    }

    pub fn handler(&self) -> Handler {
        let engine = self.clone();
        Arc::new(move |job: Job| {
            let engine = engine.clone();
            async move { engine.run(job).await }.boxed()
        })
    }

    async fn run(&self, job: Job) -> Outcome {
        let Some(order_id) = job.order_id() else {
            return match job.kind.as_str() {
                NOOP => Outcome::Done,
                DELIVER_WEBHOOK => {
                    self.inner
                        .webhooks
                        .run(&job)
                        .await
                        .unwrap_or_else(|e| Outcome::Retry {
                            error: format!("database error: {e}"),
                            after: None,
                        })
                }
                other => Outcome::Dead(format!("unknown job kind {other:?}")),
            };
        };
        // Every log line of the job carries the order's id.
        let span = tracing::info_span!("job", kind = %job.kind, order_id = %order_id, attempt = job.attempt);
        let result = async {
            match job.kind.as_str() {
                PLACE_ORDER => placement::run(self, &job, order_id).await,
                TRACK_ORDER => tracking::run(self, &job, order_id).await,
                EXPIRE_ORDER => expire(self, order_id).await,
                NOOP => Ok(Outcome::Done),
                other => Ok(Outcome::Dead(format!("unknown job kind {other:?}"))),
            }
        }
        .instrument(span)
        .await;
        result.unwrap_or_else(|e| Outcome::Retry {
            error: format!("database error: {e}"),
            after: None,
        })
    }

    fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Decrypts an account's sign-in data.
    fn credentials(&self, account: &store::HeldAccount) -> Result<Credentials, String> {
        let secrets = self
            .inner
            .vault
            .open::<crate::accounts::Secrets>(&account.id, &account.secrets)
            .map_err(|e| format!("cannot decrypt retailer account {}: {e}", account.id))?;
        Ok(Credentials {
            email: account.email.clone(),
            password: secrets.password,
            totp_secret: secrets.totp_secret,
        })
    }
}

/// Fails an order that is not yet placed, with a machine-readable `error_type`, a
/// message and (when the refusal came from a quote) the price.
async fn fail(
    engine: &Engine,
    order: &EngineOrder,
    error_type: &str,
    message: &str,
    price: Option<crate::retailers::PriceComponents>,
) -> Result<Outcome, sqlx::Error> {
    tracing::info!(order_id = %order.id, error_type, message, "order failed");
    metrics::counter!("errand_placements_total", "outcome" => "failed", "error_type" => error_type.to_string())
        .increment(1);
    let change = Change {
        status: Some(OrderStatus::OrderFailed),
        job_result: Some(JobResult {
            success: false,
            error_type: Some(error_type.to_string()),
            error: Some(message.to_string()),
            price_components: price,
            ..JobResult::default()
        }),
        items: order
            .items
            .iter()
            .map(|i| (i.id, OrderItemStatus::Failed, None))
            .collect(),
        events: vec![(
            events::FAILED,
            json!({"error_type": error_type, "message": message}),
        )],
        ..Change::default()
    };
    store::apply(
        engine.db(),
        order.id,
        &[OrderStatus::Pending, OrderStatus::InProgress],
        change,
    )
    .await?;
    Ok(Outcome::Done)
}

/// An order still unplaced at its expiration fails with `expired`.
async fn expire(engine: &Engine, order_id: Uuid) -> Result<Outcome, sqlx::Error> {
    let Some(order) = store::load(engine.db(), order_id).await? else {
        return Ok(Outcome::Done);
    };
    // An order in progress may be placing right now: its placement job checks the
    // expiration itself before it commits to buying.
    if order.status == OrderStatus::Pending {
        fail(engine, &order, "expired", &expiry_message(&order), None).await?;
    }
    Ok(Outcome::Done)
}

fn expiry_message(order: &EngineOrder) -> String {
    order
        .expiration
        .as_ref()
        .and_then(|e| e.description.clone())
        .unwrap_or_else(|| "The order expired before it could be placed".to_string())
}
