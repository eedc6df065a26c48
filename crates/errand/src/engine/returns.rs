//! Returns at the retailer. Asking is exactly once, as placing is: the request is
//! recorded (`submitting`) before the retailer hears of it and carries the return's id
//! as reference, and a run that finds it `submitting` asks the retailer about that
//! reference before asking again. An approved return's label is kept with the return
//! before the approval is recorded; the return is then followed until it is credited.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::Engine;
use crate::orders::artifacts::{self, ArtifactKind};
use crate::orders::model::OrderRecord;
use crate::queue::{Job, JobKind, NewJob, Outcome};
use crate::retailers::registry::Retailer;
use crate::retailers::{
    DriverError, RetailerReturn, RetailerReturnStatus, ReturnLine, ReturnRequest, Session,
};
use crate::returns::ReturnStatus;
use crate::returns::store::{self, Decision, RequestState, ReturnRecord};
use crate::storage::Timestamp;

/// After the retailer's timeout, this long more before "not found by its reference"
/// is taken to mean the request never arrived.
const SETTLE_MARGIN: Duration = Duration::from_secs(2);
/// Following a return survives long store outages.
const TRACKING_ATTEMPTS: i32 = 50;
/// Each wait between looks at an approved return is this much longer than the last.
const BACKOFF: f64 = 1.5;

/// What a return job needs: the return, its order, the retailer and a signed-in
/// session with the account that placed the order.
struct Context {
    record: ReturnRecord,
    order: OrderRecord,
    retailer: std::sync::Arc<Retailer>,
    merchant_order_id: String,
    session: Session,
}

/// Loads what a job on `return_id` needs and signs in; `Err` ends the job.
async fn context(
    engine: &Engine,
    return_id: Uuid,
) -> Result<Result<Context, Outcome>, sqlx::Error> {
    let db = engine.db();
    let Some(record) = store::load_record(db, return_id).await? else {
        return Ok(Err(Outcome::Done));
    };
    let Some(order) = crate::orders::store::load_record(db, record.ret.order_id).await? else {
        return Ok(Err(Outcome::Done));
    };
    let retailer = order
        .retailer
        .as_deref()
        .and_then(|name| engine.inner.retailers.get(name))
        .cloned();
    let placed = order
        .job_result
        .as_ref()
        .and_then(|r| r.merchant_order_ids.first())
        .cloned();
    let (Some(retailer), Some(placed)) = (retailer, placed) else {
        return Ok(Err(Outcome::Dead(
            "the order's retailer is not configured any more, or it has no merchant order id"
                .into(),
        )));
    };
    let credentials = match engine.account_credentials(&placed.account).await? {
        Ok(credentials) => credentials,
        Err(outcome) => return Ok(Err(outcome)),
    };
    let session = match retailer.driver.sign_in(&credentials).await {
        Ok(session) => session,
        Err(e) => return Ok(Err(retry(e))),
    };
    Ok(Ok(Context {
        record,
        order,
        retailer,
        merchant_order_id: placed.merchant_order_id,
        session,
    }))
}

fn retry(error: DriverError) -> Outcome {
    Outcome::Retry {
        error: error.to_string(),
        after: None,
    }
}

/// `request_return`: asks the retailer for the return, exactly once.
pub async fn request(engine: &Engine, job: &Job, return_id: Uuid) -> Result<Outcome, sqlx::Error> {
    let cx = match context(engine, return_id).await? {
        Ok(cx) => cx,
        Err(outcome) => return Ok(outcome),
    };
    let outcome = request_in_session(engine, job, &cx).await;
    cx.retailer.driver.release(&cx.session).await;
    outcome
}

async fn request_in_session(
    engine: &Engine,
    job: &Job,
    cx: &Context,
) -> Result<Outcome, sqlx::Error> {
    let ret = &cx.record.ret;
    if cx.record.request_state == RequestState::Requested || ret.status != ReturnStatus::Open {
        return Ok(Outcome::Done);
    }
    let driver = &cx.retailer.driver;
    let reference = ret.id.to_string();
    if cx.record.request_state == RequestState::Submitting {
        match driver.find_return(&cx.session, &reference).await {
            Ok(Some(found)) => {
                tracing::info!(return_id = %ret.id, merchant_return_id = %found.merchant_return_id, "the retailer has the return from an earlier request; adopting it");
                return adopt(engine, cx, found).await;
            }
            Ok(None) => {
                if let Some(settles_at) = cx.record.settles_at
                    && Timestamp::now() < settles_at
                {
                    return Ok(Outcome::Snooze(settles_at.since(Timestamp::now())));
                }
            }
            Err(e) => return Ok(retry(e)),
        }
    }

    let lines = match lines_at_retailer(cx).await {
        Ok(lines) => lines,
        Err(Ok(e)) => return Ok(retry(e)),
        Err(Err(message)) => return deny(engine, cx, message).await,
    };
    let settles_at = Timestamp::now().after(cx.retailer.settings.timeout() + SETTLE_MARGIN);
    if !store::begin_request(engine.db(), job.claim(), ret.id, settles_at).await? {
        // This run lost its claim (another run owns the request), or it was answered.
        return Ok(Outcome::Snooze(Duration::from_secs(1)));
    }
    let request = ReturnRequest {
        merchant_order_id: cx.merchant_order_id.clone(),
        reference,
        reason: ret.reason.as_str(),
        notes: ret.notes.clone(),
        lines,
    };
    tracing::info!(return_id = %ret.id, order_id = %ret.order_id, "asking the retailer for the return");
    match driver.request_return(&cx.session, &request).await {
        Ok(answer) => adopt(engine, cx, answer).await,
        Err(DriverError::Permanent { message, .. }) => deny(engine, cx, message).await,
        Err(DriverError::Ambiguous { message }) => Ok(Outcome::Retry {
            error: message,
            after: Some(settles_at.since(Timestamp::now())),
        }),
        Err(e) => Ok(retry(e)),
    }
}

/// The order's returned items as the retailer's SKUs (items are matched to the
/// retailer's lines by product, in order, as tracking does). `Err(Ok)` is worth a
/// retry; `Err(Err)` is a reason the return cannot be asked for.
async fn lines_at_retailer(cx: &Context) -> Result<Vec<ReturnLine>, Result<DriverError, String>> {
    let driver = &cx.retailer.driver;
    let at_retailer = driver
        .order(&cx.session, &cx.merchant_order_id)
        .await
        .map_err(Ok)?;
    let mut used = vec![false; at_retailer.lines.len()];
    let mut skus: Vec<(Uuid, String)> = vec![];
    for item in &cx.order.items {
        let product = url::Url::parse(&item.url)
            .ok()
            .and_then(|u| driver.product_id(&u));
        if let Some((i, line)) = at_retailer
            .lines
            .iter()
            .enumerate()
            .find(|(i, l)| !used[*i] && Some(&l.product_id) == product.as_ref())
        {
            used[i] = true;
            skus.push((item.id, line.sku.clone()));
        }
    }
    cx.record
        .ret
        .items
        .iter()
        .map(|item| {
            skus.iter()
                .find(|(id, _)| *id == item.order_item_id)
                .map(|(_, sku)| ReturnLine {
                    sku: sku.clone(),
                    quantity: item.quantity,
                })
                .ok_or_else(|| {
                    Err(format!(
                        "the retailer's order {} has no line for item {}",
                        cx.merchant_order_id, item.order_item_id
                    ))
                })
        })
        .collect()
}

/// Records what the retailer has: approved (with its label kept first, and the return
/// followed from then on), denied, or already further along.
async fn adopt(
    engine: &Engine,
    cx: &Context,
    found: RetailerReturn,
) -> Result<Outcome, sqlx::Error> {
    let ret = &cx.record.ret;
    if found.status == RetailerReturnStatus::Denied {
        let decision = Decision {
            status: ReturnStatus::Denied,
            merchant_return_id: Some(found.merchant_return_id),
            resolution_notes: found.decision,
            jobs: vec![],
        };
        record(engine, cx, decision).await?;
        return Ok(Outcome::Done);
    }
    if let Some(url) = &found.label_url
        && !ret.label_names.contains(&store::label_name(ret.id, 1))
    {
        match cx.retailer.driver.return_label(&cx.session, url).await {
            Ok(bytes) => {
                let saved = artifacts::save(
                    engine.db(),
                    &cx.record.tenant,
                    ret.order_id,
                    &store::label_name(ret.id, 1),
                    ArtifactKind::ReturnLabel,
                    &bytes,
                )
                .await;
                if let Err(e) = saved {
                    // The return stands; the label can be had from the retailer.
                    tracing::warn!(return_id = %ret.id, error = %e, "the return label was not kept");
                }
            }
            // The request is answered and found again by its reference next time.
            Err(e) => return Ok(retry(e)),
        }
    }
    let interval = cx.retailer.settings.tracking_interval_seconds;
    let follow = NewJob {
        payload: json!({"return": ret.id, "interval": interval, "since": Timestamp::now()}),
        ..NewJob::now(JobKind::TrackReturn, None, TRACKING_ATTEMPTS)
    }
    .at(Timestamp::now().after(Duration::from_secs_f64(interval)));
    let approved = Decision {
        status: ReturnStatus::Approved,
        merchant_return_id: Some(found.merchant_return_id.clone()),
        resolution_notes: found.decision.clone(),
        jobs: vec![follow],
    };
    record(engine, cx, approved).await?;
    if found.status == RetailerReturnStatus::Credited {
        credit(engine, cx).await?;
    }
    Ok(Outcome::Done)
}

/// The retailer refused to take the return: it is denied, in the retailer's words.
async fn deny(engine: &Engine, cx: &Context, message: String) -> Result<Outcome, sqlx::Error> {
    tracing::info!(return_id = %cx.record.ret.id, reason = %message, "the retailer refused the return");
    let decision = Decision {
        status: ReturnStatus::Denied,
        merchant_return_id: None,
        resolution_notes: Some(message),
        jobs: vec![],
    };
    record(engine, cx, decision).await?;
    Ok(Outcome::Done)
}

async fn credit(engine: &Engine, cx: &Context) -> Result<(), sqlx::Error> {
    let decision = Decision {
        status: ReturnStatus::Credited,
        merchant_return_id: None,
        resolution_notes: None,
        jobs: vec![],
    };
    record(engine, cx, decision).await
}

async fn record(engine: &Engine, cx: &Context, decision: Decision) -> Result<(), sqlx::Error> {
    let status = decision.status;
    let mut tx = engine.db().begin().await?;
    if store::record(&mut tx, &cx.record.ret, decision).await? {
        tx.commit().await?;
        tracing::info!(return_id = %cx.record.ret.id, status = status.as_str(), "return updated");
    }
    Ok(())
}

/// `track_return`: looks at an approved return until the retailer credits it.
pub async fn track(engine: &Engine, job: &Job, return_id: Uuid) -> Result<Outcome, sqlx::Error> {
    let cx = match context(engine, return_id).await? {
        Ok(cx) => cx,
        Err(outcome) => return Ok(outcome),
    };
    let outcome = track_in_session(engine, job, &cx).await;
    cx.retailer.driver.release(&cx.session).await;
    outcome
}

async fn track_in_session(
    engine: &Engine,
    job: &Job,
    cx: &Context,
) -> Result<Outcome, sqlx::Error> {
    let ret = &cx.record.ret;
    let Some(merchant_return_id) = ret
        .merchant_return_id
        .as_deref()
        .filter(|_| ret.status == ReturnStatus::Approved)
    else {
        return Ok(Outcome::Done);
    };
    match cx
        .retailer
        .driver
        .get_return(&cx.session, merchant_return_id)
        .await
    {
        Ok(found) if found.status == RetailerReturnStatus::Credited => {
            credit(engine, cx).await?;
            return Ok(Outcome::Done);
        }
        Ok(_) => {}
        Err(e) => return Ok(retry(e)),
    }
    let interval = job.payload["interval"]
        .as_f64()
        .unwrap_or(cx.retailer.settings.tracking_interval_seconds);
    let next = (interval * BACKOFF).min(cx.retailer.settings.tracking_max_interval_seconds);
    let since = job.payload["since"].clone();
    Ok(Outcome::Reschedule {
        at: Timestamp::now().after(Duration::from_secs_f64(interval)),
        payload: json!({"return": ret.id, "interval": next, "since": since}),
    })
}
