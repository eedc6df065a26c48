//! Placing an order at its retailer, exactly once and never above its price cap.
//!
//! The sequence: hold a retailer account; sign in; if an earlier attempt's outcome is
//! unknown, ask the retailer about our reference first and adopt what it finds; build
//! the cart and read the quote; refuse a total above `max_price`; commit a placement
//! attempt; only then ask the retailer to place, with our reference and the quoted
//! total.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::fulfillment::{self, Plan};
use super::store::{self, AccountChoice, Acquired, Attempt, AttemptState, HeldAccount, NewAttempt};
use super::{Engine, expiry_message, fail};
use crate::auth::Tenant;
use crate::orders::artifacts::{self, ArtifactKind};
use crate::orders::lifecycle::{self, Change, ItemChange};
use crate::orders::model::{
    ErrorType, JobResult, MerchantOrder, OrderItemStatus, OrderRecord, OrderStatus, events,
};
use crate::queue::{Job, JobKind, NewJob, Outcome};
use crate::retailers::registry::Retailer;
use crate::retailers::{Artifact, DriverError, RetailerOrder, Session};
use crate::storage::Timestamp;

/// How soon an order waiting for a busy retailer account looks again.
const ACCOUNT_WAIT: Duration = Duration::from_millis(250);
/// How long after a placing request's timeout the retailer is assumed to be done with it.
const SETTLE_MARGIN: Duration = Duration::from_secs(2);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Tracking jobs survive long store outages.
const TRACKING_ATTEMPTS: i32 = 50;

pub async fn run(engine: &Engine, job: &Job, order_id: Uuid) -> Result<Outcome, sqlx::Error> {
    let db = engine.db();
    let Some(order) = crate::orders::store::load_record(db, order_id).await? else {
        return Ok(Outcome::Done);
    };
    if !matches!(order.status, OrderStatus::Pending | OrderStatus::InProgress) {
        return Ok(Outcome::Done);
    }
    let Some(retailer) = order
        .retailer
        .as_deref()
        .and_then(|name| engine.inner.retailers.get(name))
        .cloned()
    else {
        let message = format!(
            "The order's retailer {:?} is not configured any more",
            order.retailer.as_deref().unwrap_or("")
        );
        return fail(engine, &order, ErrorType::UnknownRetailer, &message, None).await;
    };
    let unresolved = store::unresolved_attempt(db, order_id).await?;
    if unresolved.is_none() && is_expired(&order) {
        return fail(
            engine,
            &order,
            ErrorType::Expired,
            &expiry_message(&order),
            None,
        )
        .await;
    }

    let choice = match (&unresolved, &order.retailer_credentials_id) {
        (Some(attempt), _) => AccountChoice::Resume(&attempt.retailer_account_id),
        (None, Some(id)) => AccountChoice::Named(id),
        (None, None) => AccountChoice::Any,
    };
    let named = matches!(choice, AccountChoice::Named(_));
    // Recorded with the account hold: the order is in progress, one more attempt.
    let mut start = Change {
        status: Some(OrderStatus::InProgress),
        count_attempt: true,
        items: order
            .items
            .iter()
            .filter(|i| i.status == OrderItemStatus::Pending)
            .map(|i| ItemChange::new(i.id, OrderItemStatus::Processing))
            .collect(),
        ..Change::default()
    };
    if order.status == OrderStatus::Pending {
        start
            .events
            .push((events::STARTED, json!({"retailer": retailer.settings.name})));
    }
    let lease_until = Timestamp::now().after(engine.inner.lease + retailer.settings.timeout() * 4);
    let account = match store::acquire_account(
        db,
        &order,
        &retailer.settings.name,
        choice,
        lease_until,
        start,
    )
    .await?
    {
        Acquired::Held(account) => account,
        Acquired::Gone => return Ok(Outcome::Done),
        Acquired::Busy => {
            let mut tx = db.begin().await?;
            lifecycle::note_once(
                &mut tx,
                order_id,
                events::WAITING_FOR_ACCOUNT,
                json!({"message": "Every retailer account for this order is checking out another order; it will start when one is free"}),
            )
            .await?;
            tx.commit().await?;
            return Ok(Outcome::Snooze(ACCOUNT_WAIT));
        }
        Acquired::Missing if named => {
            let message = format!(
                "The retailer account {} is deleted or inactive",
                order.retailer_credentials_id.as_deref().unwrap_or("")
            );
            return fail(
                engine,
                &order,
                ErrorType::RetailerAccountUnavailable,
                &message,
                None,
            )
            .await;
        }
        Acquired::Missing => {
            let message = format!(
                "There is no active {:?} account to buy with: add one with POST /managed-accounts",
                retailer.settings.name
            );
            return fail(engine, &order, ErrorType::NoRetailerAccount, &message, None).await;
        }
    };

    let hold = engine.inner.lease + retailer.settings.timeout() * 4;
    let checking_out = checkout(engine, job, &order, &retailer, &account, unresolved);
    let outcome = match keeping_hold(db, &account.id, job, order_id, hold, checking_out).await {
        Ok(outcome) => outcome,
        Err(HoldLost(why)) => {
            // Another order may be using the account's cart by now: this run stopped
            // touching it, and the order waits for an account again.
            tracing::warn!(%order_id, "the checkout stopped: {why}");
            Ok(Outcome::Snooze(ACCOUNT_WAIT))
        }
    };
    // Released whatever happened (placing released it already): a crash instead leaves
    // it to its lease.
    let mut tx = db.begin().await?;
    store::release_account(&mut tx, &account.id, order_id).await?;
    tx.commit().await?;
    outcome
}

/// Why a checkout was stopped before it ended.
struct HoldLost(String);

/// Runs `checkout` while extending the account's hold, so that a checkout slower than
/// the hold's lease (a browser on a busy machine) never shares its account: the store
/// keeps one cart and one checkout per account. If this process dies, the hold runs out
/// `hold` after the last extension; if the hold is lost while the process lives (the
/// database was away for longer than the hold, or the process was paused and its job
/// went to another run), `checkout` is dropped at once, since another run may be using
/// the account by then. The extensions run in a task of their own: waiting for a
/// database connection here must never wait on the checkout, which may hold one.
async fn keeping_hold<T>(
    db: &crate::storage::Db,
    account: &str,
    job: &Job,
    order_id: Uuid,
    hold: Duration,
    checkout: impl std::future::Future<Output = T>,
) -> Result<T, HoldLost> {
    let (lost_tx, lost) = tokio::sync::oneshot::channel();
    let extender = {
        let (db, account, claim) = (db.clone(), account.to_string(), job.claim());
        tokio::spawn(async move {
            let mut held_until = Timestamp::now().after(hold);
            let why = loop {
                tokio::time::sleep((hold / 4).max(Duration::from_millis(50))).await;
                let until = Timestamp::now().after(hold);
                match store::extend_account_hold(&db, &account, order_id, claim, until).await {
                    // Still this order's: nobody used the account meanwhile, even if
                    // the hold had run out.
                    Ok(true) => held_until = until,
                    Ok(false) => {
                        break "another order, or another run of this one, holds the account now"
                            .to_string();
                    }
                    Err(e) if Timestamp::now() >= held_until => {
                        break format!(
                            "the account's hold ran out while it could not be extended ({e})"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(%order_id, error = %e, "cannot extend the account's hold");
                    }
                }
            };
            let _ = lost_tx.send(HoldLost(why));
        })
    };
    // Stopped however the checkout ends, even if it is dropped.
    let _stop = AbortOnDrop(extender);
    tokio::select! {
        outcome = checkout => Ok(outcome),
        Ok(lost) = lost => Err(lost),
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn is_expired(order: &OrderRecord) -> bool {
    order.expires_at.is_some_and(|at| at <= Timestamp::now())
}

async fn checkout(
    engine: &Engine,
    job: &Job,
    order: &OrderRecord,
    retailer: &Retailer,
    account: &HeldAccount,
    unresolved: Option<Attempt>,
) -> Result<Outcome, sqlx::Error> {
    let credentials = match engine.credentials(account) {
        Ok(c) => c,
        Err(message) => {
            return fail(
                engine,
                order,
                ErrorType::RetailerAccountUnavailable,
                &message,
                None,
            )
            .await;
        }
    };
    let driver = &retailer.driver;
    let session = match driver.sign_in(&credentials).await {
        Ok(session) => session,
        Err(e) => return failed_call(engine, job, order, e, unresolved.is_some()).await,
    };
    let mut signed_in = SignedIn {
        driver: driver.clone(),
        session: Some(session.clone()),
    };
    let outcome =
        checkout_in_session(engine, job, order, retailer, account, &session, unresolved).await;
    signed_in.session = None;
    let kept = driver.release(&session).await;
    keep_artifacts(engine, order, kept).await;
    outcome
}

/// A session the checkout has not released yet: released in the background if the
/// checkout is dropped (its account's hold was lost).
struct SignedIn {
    driver: std::sync::Arc<dyn crate::retailers::Driver>,
    session: Option<Session>,
}

impl Drop for SignedIn {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let driver = self.driver.clone();
            tokio::spawn(async move {
                driver.release(&session).await;
            });
        }
    }
}

/// Stores what the checkout kept (screenshots, a failed page's HTML) with the order.
/// Losing one is not worth failing the order over: it is logged.
async fn keep_artifacts(engine: &Engine, order: &OrderRecord, artifacts: Vec<Artifact>) {
    let tenant = Tenant {
        account_id: order.account_id,
        livemode: order.livemode,
        key_id: Uuid::nil(),
    };
    for artifact in artifacts {
        let kind = if artifact.content_type == "image/png" {
            ArtifactKind::Screenshot
        } else {
            ArtifactKind::Page
        };
        let saved = artifacts::save(
            engine.db(),
            &tenant,
            order.id,
            &artifact.name,
            kind,
            &artifact.bytes,
        )
        .await;
        if let Err(e) = saved {
            tracing::warn!(order_id = %order.id, name = %artifact.name, error = %e, "a screenshot of the checkout was not kept");
        }
    }
}

/// Checks out in a signed-in session: settles an earlier attempt first, quotes (giving
/// up what the order allows when the retailer refuses part of it), checks the price
/// cap, records the attempt, places.
async fn checkout_in_session(
    engine: &Engine,
    job: &Job,
    order: &OrderRecord,
    retailer: &Retailer,
    account: &HeldAccount,
    session: &Session,
    unresolved: Option<Attempt>,
) -> Result<Outcome, sqlx::Error> {
    let db = engine.db();
    let driver = &retailer.driver;
    if let Some(attempt) = unresolved {
        match resume(engine, job, order, retailer, account, session, &attempt).await? {
            Some(outcome) => return Ok(outcome),
            None if is_expired(order) => {
                return fail(
                    engine,
                    order,
                    ErrorType::Expired,
                    &expiry_message(order),
                    None,
                )
                .await;
            }
            None => {}
        }
    }

    let mut plan = Plan::new(order);
    let quote = loop {
        let quoted = driver.quote(session, &plan.request).await;
        // Kept before any outcome is recorded, so that an order's screenshots are there
        // when its change is seen.
        keep_artifacts(engine, order, driver.take_artifacts(session).await).await;
        match quoted.map_err(|e| plan.relax(e)) {
            Ok(quote) => break quote,
            Err(Ok(())) => {
                let given_up = plan.concessions.last().map(|c| c.code);
                tracing::info!(order_id = %order.id, ?given_up, "the retailer refused part of the order; quoting what the order allows instead");
            }
            Err(Err(e)) => return failed_call(engine, job, order, e, false).await,
        }
    };
    let request = &plan.request;
    let price = quote.price;
    if price.total > order.max_price {
        let message = format!(
            "The retailer's total is {} {} (subtotal {}, shipping {}, tax {}, discount {}), above the order's max_price of {}",
            price.total,
            price.currency,
            price.subtotal,
            price.shipping,
            price.tax,
            price.discount,
            order.max_price
        );
        return fail(
            engine,
            order,
            ErrorType::MaxPriceExceeded,
            &message,
            Some(price),
        )
        .await;
    }

    // The exactly-once record: committed before the retailer hears of the purchase.
    // The driver sends nothing that can buy after `send_by` (a process paused past it
    // may have lost the order to another run); what it sent by then is over at the
    // retailer by `settles_at`, so a lookup that finds nothing proves nothing before.
    let placing_time = driver
        .placing_time()
        .unwrap_or_else(|| retailer.settings.timeout());
    let send_by = Timestamp::now().after(placing_time);
    let settles_at = send_by.after(placing_time + SETTLE_MARGIN);
    let new_attempt = NewAttempt {
        order_id: order.id,
        retailer_account_id: &account.id,
        reference: &request.reference,
        expected_total: price.total,
        settles_at,
        concessions: &plan.concessions,
    };
    let Some(attempt) = store::begin_attempt(db, job, new_attempt).await? else {
        // This run lost its claim on the job (its lease ran out while it was stalled),
        // or another run has an attempt under way: that run owns the purchase.
        // (If it still holds the claim, it looks again shortly; if not, what it records
        // is ignored.)
        tracing::warn!(order_id = %order.id, "another run of this order's job owns its placement; this one stops before placing");
        return Ok(Outcome::Snooze(Duration::from_secs(1)));
    };
    tracing::info!(order_id = %order.id, attempt = attempt.attempt, total = price.total, "placing the order at the retailer");
    let placing = driver.place(session, request, price.total, send_by).await;
    keep_artifacts(engine, order, driver.take_artifacts(session).await).await;
    match placing {
        Ok(placed_order) => placed(engine, order, retailer, account, &attempt, placed_order).await,
        Err(DriverError::Ambiguous { message }) => {
            // Unknown whether it was bought: the next run asks the retailer first.
            tracing::warn!(order_id = %order.id, error = %message, "no answer to the purchase; the retailer will be asked about it before anything else");
            retry_or_give_up(
                engine,
                job,
                order,
                message,
                Some(settles_at.since(Timestamp::now())),
                true,
            )
            .await
        }
        Err(e @ DriverError::Unverifiable { .. }) => {
            // The attempt stays unresolved (the truth is unknown); the order fails with
            // the evidence kept.
            failed_call(engine, job, order, e, true).await
        }
        Err(e @ DriverError::Transient { .. }) => {
            // The store answered, so the request is over; still ask it before retrying.
            let mut tx = db.begin().await?;
            store::settle_attempt(
                &mut tx,
                order.id,
                attempt.attempt,
                AttemptState::Submitting,
                None,
                Some(Timestamp::now()),
            )
            .await?;
            tx.commit().await?;
            failed_call(engine, job, order, e, true).await
        }
        Err(e) => {
            let mut tx = db.begin().await?;
            store::settle_attempt(
                &mut tx,
                order.id,
                attempt.attempt,
                AttemptState::NotPlaced,
                None,
                None,
            )
            .await?;
            tx.commit().await?;
            failed_call(engine, job, order, e, false).await
        }
    }
}

/// Settles an attempt whose outcome was unknown. `Some(outcome)` ends this run (the
/// order was found and adopted, or it is too early to tell); `None` means it was not
/// placed and checking out may go on.
async fn resume(
    engine: &Engine,
    job: &Job,
    order: &OrderRecord,
    retailer: &Retailer,
    account: &HeldAccount,
    session: &Session,
    attempt: &Attempt,
) -> Result<Option<Outcome>, sqlx::Error> {
    match retailer
        .driver
        .find_by_reference(session, &attempt.reference)
        .await
    {
        Ok(Some(found)) => {
            tracing::info!(order_id = %order.id, merchant_order_id = %found.merchant_order_id, "the retailer has the order from an earlier attempt; adopting it");
            metrics::counter!("errand_placements_adopted_total").increment(1);
            placed(engine, order, retailer, account, attempt, found)
                .await
                .map(Some)
        }
        Ok(None) if Timestamp::now() < attempt.settles_at => {
            // The purchase may still be under way at the retailer: "not found" proves
            // nothing yet.
            tracing::info!(order_id = %order.id, attempt = attempt.attempt, "the retailer has no order from the earlier attempt yet; asking again once that attempt's time is up");
            Ok(Some(Outcome::Snooze(
                attempt.settles_at.since(Timestamp::now()),
            )))
        }
        Ok(None) => {
            tracing::info!(order_id = %order.id, attempt = attempt.attempt, "the earlier attempt did not reach the retailer; checking out again");
            let mut tx = engine.db().begin().await?;
            store::settle_attempt(
                &mut tx,
                order.id,
                attempt.attempt,
                AttemptState::NotPlaced,
                None,
                None,
            )
            .await?;
            tx.commit().await?;
            Ok(None)
        }
        Err(e) => failed_call(engine, job, order, e, true).await.map(Some),
    }
}

/// Records the purchase: the order is placed, its items ordered (or skipped, as the
/// attempt's concessions say), tracking scheduled, the attempt settled and the account
/// released, in one transaction.
async fn placed(
    engine: &Engine,
    order: &OrderRecord,
    retailer: &Retailer,
    account: &HeldAccount,
    attempt: &Attempt,
    placed_order: RetailerOrder,
) -> Result<Outcome, sqlx::Error> {
    let interval = retailer.settings.tracking_interval_seconds;
    let track = NewJob {
        payload: json!({"interval": interval, "since": Timestamp::now()}),
        ..NewJob::now(JobKind::TrackOrder, Some(order.id), TRACKING_ATTEMPTS)
    }
    .at(Timestamp::now().after(Duration::from_secs_f64(interval)));
    let merchant_order_id = placed_order.merchant_order_id.clone();
    let mut change = Change {
        status: Some(OrderStatus::OrderPlaced),
        job_result: Some(JobResult {
            success: true,
            error_type: None,
            error: None,
            price_components: Some(placed_order.price.clone()),
            merchant_order_ids: vec![MerchantOrder {
                merchant_order_id: merchant_order_id.clone(),
                merchant: retailer.settings.name.clone(),
                account: account.id.clone(),
                placed_at: placed_order.placed_at,
            }],
            estimated_delivery: placed_order.estimated_delivery,
        }),
        placed_with: Some(account.id.clone()),
        items: fulfillment::placed_items(order, attempt.concessions()),
        concessions: Some(attempt.concessions().to_vec()),
        events: vec![(
            events::PLACED,
            json!({"merchant_order_id": merchant_order_id, "total": placed_order.price.total,
                   "concessions": attempt.concessions().len()}),
        )],
        jobs: vec![track],
        ..Change::default()
    };
    change
        .jobs
        .extend(crate::notifications::jobs_for(order, &change.events));
    let from = [OrderStatus::Pending, OrderStatus::InProgress];
    let mut tx = engine.db().begin().await?;
    if lifecycle::apply(&mut tx, order.id, &from, change).await? {
        store::settle_attempt(
            &mut tx,
            order.id,
            attempt.attempt,
            AttemptState::Placed,
            Some(&merchant_order_id),
            None,
        )
        .await?;
        store::release_account(&mut tx, &account.id, order.id).await?;
        tx.commit().await?;
        metrics::counter!("errand_placements_total", "outcome" => "placed", "error_type" => "")
            .increment(1);
        tracing::info!(order_id = %order.id, merchant_order_id = %merchant_order_id, "order placed");
    }
    Ok(Outcome::Done)
}

/// A retailer call failed: permanent refusals fail the order; anything else is retried.
async fn failed_call(
    engine: &Engine,
    job: &Job,
    order: &OrderRecord,
    error: DriverError,
    unresolved: bool,
) -> Result<Outcome, sqlx::Error> {
    match error {
        // An earlier purchase may have gone through and can no longer be checked (say,
        // the account's password changed): say so rather than blame the refusal.
        // A refused line the order did not allow to give up is a refusal like any other.
        DriverError::Permanent {
            error_type,
            message,
        }
        | DriverError::LineRefused {
            error_type,
            message,
            ..
        } if unresolved && error_type != ErrorType::DuplicatePurchase => {
            let message = format!(
                "Whether the order (reference {}) was placed could not be checked at the retailer ({error_type}: {message}): check the retailer account before ordering again",
                order.id
            );
            fail(
                engine,
                order,
                ErrorType::PlacementUnconfirmed,
                &message,
                None,
            )
            .await
        }
        DriverError::Permanent {
            error_type,
            message,
        }
        | DriverError::LineRefused {
            error_type,
            message,
            ..
        } => fail(engine, order, error_type, &message, None).await,
        DriverError::PriceChanged => {
            retry_or_give_up(
                engine,
                job,
                order,
                "the price changed between the quote and placing".into(),
                Some(Duration::ZERO),
                unresolved,
            )
            .await
        }
        DriverError::Transient {
            message,
            retry_after,
        } => {
            let after = retry_after.map(|d| d.min(MAX_RETRY_AFTER));
            retry_or_give_up(engine, job, order, message, after, unresolved).await
        }
        DriverError::Ambiguous { message } => {
            retry_or_give_up(engine, job, order, message, None, unresolved).await
        }
        DriverError::Unverifiable { message } => {
            fail(
                engine,
                order,
                ErrorType::OrderProbablyPlaced,
                &message,
                None,
            )
            .await
        }
    }
}

/// Retries, unless this was the last attempt: then the order fails rather than
/// staying in progress for ever.
async fn retry_or_give_up(
    engine: &Engine,
    job: &Job,
    order: &OrderRecord,
    error: String,
    after: Option<Duration>,
    unresolved: bool,
) -> Result<Outcome, sqlx::Error> {
    if !job.is_last_attempt() {
        return Ok(Outcome::Retry { error, after });
    }
    if unresolved {
        let message = format!(
            "The retailer never confirmed whether the order (reference {}) was placed: check the retailer account before ordering again. Last error: {error}",
            order.id
        );
        fail(
            engine,
            order,
            ErrorType::PlacementUnconfirmed,
            &message,
            None,
        )
        .await
    } else {
        let message = format!("The retailer could not be reached: {error}");
        fail(
            engine,
            order,
            ErrorType::RetailerUnavailable,
            &message,
            None,
        )
        .await
    }
}
