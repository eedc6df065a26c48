//! The order engine: the jobs that turn a `pending` order into a purchase at the
//! retailer (exactly once, never above its price cap) and then follow it to delivery.

mod fulfillment;
mod placement;
mod returns;
pub mod store;
mod tracking;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tracing::Instrument;
use uuid::Uuid;

use crate::accounts::{AccountError, Vault};
use crate::orders::lifecycle::{self, Change, ItemChange};
use crate::orders::model::{
    ErrorType, JobResult, OrderItemStatus, OrderRecord, OrderStatus, PriceComponents, events,
};
use crate::queue::worker::{Handlers, handler};
use crate::queue::{Job, JobKind, Outcome};
use crate::retailers::{Credentials, Registry};
use crate::storage::Db;

/// What the engine needs, shared by every job it runs.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    retailers: Arc<Registry>,
    vault: Vault,
    /// How long a job's claim lasts without a heartbeat (account holds outlast it).
    lease: Duration,
}

impl Engine {
    pub fn new(db: Db, retailers: Arc<Registry>, vault: Vault, lease: Duration) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                db,
                retailers,
                vault,
                lease,
            }),
        }
    }

    /// Lets a worker pool run the engine's jobs: placing, tracking and expiring orders,
    /// and asking for and following returns.
    pub fn register(&self, handlers: &mut Handlers) {
        for kind in [
            JobKind::PlaceOrder,
            JobKind::TrackOrder,
            JobKind::ExpireOrder,
            JobKind::RequestReturn,
            JobKind::TrackReturn,
        ] {
            let engine = self.clone();
            handlers.register(
                kind,
                handler(move |job| {
                    let engine = engine.clone();
                    async move { engine.run(job).await }
                }),
            );
        }
    }

    async fn run(&self, job: Job) -> Result<Outcome, sqlx::Error> {
        if matches!(job.kind, JobKind::RequestReturn | JobKind::TrackReturn) {
            let Some(return_id) = job.payload["return"]
                .as_str()
                .and_then(|id| Uuid::parse_str(id).ok())
            else {
                return Ok(Outcome::Dead(format!(
                    "a {} job without a return",
                    job.kind
                )));
            };
            let span = tracing::info_span!("job", kind = %job.kind, return_id = %return_id, attempt = job.attempt);
            return async {
                if job.kind == JobKind::RequestReturn {
                    returns::request(self, &job, return_id).await
                } else {
                    returns::track(self, &job, return_id).await
                }
            }
            .instrument(span)
            .await;
        }
        let Some(order_id) = job.order_id() else {
            return Ok(Outcome::Dead(format!(
                "a {} job without an order",
                job.kind
            )));
        };
        // Every log line of the job carries the order's id.
        let span = tracing::info_span!("job", kind = %job.kind, order_id = %order_id, attempt = job.attempt);
        async {
            match job.kind {
                JobKind::PlaceOrder => placement::run(self, &job, order_id).await,
                JobKind::TrackOrder => tracking::run(self, &job, order_id).await,
                JobKind::ExpireOrder => expire(self, order_id).await,
                other => Ok(Outcome::Dead(format!(
                    "the engine does not run {other} jobs"
                ))),
            }
        }
        .instrument(span)
        .await
    }

    fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The sign-in data of the managed account that placed an order, for following it
    /// (tracking, returns); `Err` is the job's end when the account is gone or broken.
    async fn account_credentials(
        &self,
        account: &str,
    ) -> Result<Result<Credentials, Outcome>, sqlx::Error> {
        Ok(
            match crate::accounts::secrets(self.db(), &self.inner.vault, account).await {
                Ok(Some((account, secrets))) => Ok(Credentials {
                    email: account.email,
                    password: secrets.password,
                    totp_secret: secrets.totp_secret,
                }),
                Ok(None) => Err(Outcome::Dead(format!(
                    "the retailer account {account} is gone"
                ))),
                Err(AccountError::Database(e)) => return Err(e),
                Err(e) => Err(Outcome::Dead(e.to_string())),
            },
        )
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
    order: &OrderRecord,
    error_type: ErrorType,
    message: &str,
    price: Option<PriceComponents>,
) -> Result<Outcome, sqlx::Error> {
    tracing::info!(order_id = %order.id, error_type = error_type.as_str(), message, "order failed");
    metrics::counter!("errand_placements_total", "outcome" => "failed", "error_type" => error_type.as_str())
        .increment(1);
    let change = Change {
        status: Some(OrderStatus::OrderFailed),
        job_result: Some(JobResult {
            success: false,
            error_type: Some(error_type),
            error: Some(message.to_string()),
            price_components: price,
            ..JobResult::default()
        }),
        items: order
            .items
            .iter()
            .map(|i| ItemChange::new(i.id, OrderItemStatus::Failed))
            .collect(),
        events: vec![(
            events::FAILED,
            json!({"error_type": error_type.as_str(), "message": message}),
        )],
        ..Change::default()
    };
    change_order(
        engine.db(),
        order.id,
        &[OrderStatus::Pending, OrderStatus::InProgress],
        change,
    )
    .await?;
    Ok(Outcome::Done)
}

/// Applies an order change in a transaction of its own; returns whether it applied.
async fn change_order(
    db: &Db,
    order_id: Uuid,
    from: &[OrderStatus],
    change: Change,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let applied = lifecycle::apply(&mut tx, order_id, from, change).await?;
    if applied {
        tx.commit().await?;
    }
    Ok(applied)
}

/// An order still unplaced at its expiration fails with `expired`.
async fn expire(engine: &Engine, order_id: Uuid) -> Result<Outcome, sqlx::Error> {
    let Some(order) = crate::orders::store::load_record(engine.db(), order_id).await? else {
        return Ok(Outcome::Done);
    };
    // An order in progress may be placing right now: its placement job checks the
    // expiration itself before it commits to buying.
    if order.status == OrderStatus::Pending {
        fail(
            engine,
            &order,
            ErrorType::Expired,
            &expiry_message(&order),
            None,
        )
        .await?;
    }
    Ok(Outcome::Done)
}

fn expiry_message(order: &OrderRecord) -> String {
    order
        .expiration
        .as_ref()
        .and_then(|e| e.description.clone())
        .unwrap_or_else(|| "The order expired before it could be placed".to_string())
}
