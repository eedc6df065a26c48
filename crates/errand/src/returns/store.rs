//! Returns in the database: created with the order's lock held (so two requests cannot
//! both return the same units), read per tenant, and moved along by the engine. Every
//! change that matters to the customer is an order event, written through
//! [`lifecycle`].

use std::collections::HashMap;

use serde_json::json;
use sqlx::QueryBuilder;
use uuid::Uuid;

use super::request::NewReturn;
use super::{Return, ReturnItem, ReturnReason, ReturnStatus, events};
use crate::auth::Tenant;
use crate::orders::artifacts::{self, ArtifactKind};
use crate::orders::lifecycle::{self, Change};
use crate::orders::model::{OrderItemStatus, OrderStatus};
use crate::orders::store::corrupt;
use crate::queue::{JobKind, NewJob};
use crate::storage::{Db, DbId, Timestamp, Tx};
use crate::validation::{Errors, Loc, ValidationErrors};
use crate::{on_db, on_tx};

/// Runs of a return's request job before it gives up (it backs off as placement does).
const REQUEST_ATTEMPTS: i32 = 20;

/// How far asking the retailer for a return got (`order_returns.request_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Recorded; the retailer has not been asked.
    Pending,
    /// Asked, with the return's id as reference, and not answered yet: look it up at
    /// the retailer before asking again.
    Submitting,
    /// The retailer answered (approved or denied).
    Requested,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Submitting => "submitting",
            RequestState::Requested => "requested",
        }
    }

    fn parse(text: &str) -> Option<RequestState> {
        [
            RequestState::Pending,
            RequestState::Submitting,
            RequestState::Requested,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReturnError {
    #[error("order not found")]
    OrderNotFound,
    #[error("the retailer {0:?} takes no returns through Errand")]
    Unsupported(String),
    #[error("the return breaks a rule")]
    Invalid(ValidationErrors),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(sqlx::FromRow)]
struct ReturnRow {
    id: DbId,
    order_id: DbId,
    account_id: DbId,
    livemode: bool,
    status: String,
    reason: String,
    notes: Option<String>,
    resolution_notes: Option<String>,
    merchant_return_id: Option<String>,
    request_state: String,
    settles_at: Option<Timestamp>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

const COLUMNS: &str = "id, order_id, account_id, livemode, status, reason, notes, resolution_notes, \
     merchant_return_id, request_state, settles_at, created_at, updated_at";

/// A return as the engine needs it: whose it is and how far asking the retailer got.
#[derive(Debug, Clone)]
pub struct ReturnRecord {
    pub ret: Return,
    pub tenant: Tenant,
    pub request_state: RequestState,
    /// Before this, a `submitting` request may still be under way at the retailer.
    pub settles_at: Option<Timestamp>,
}

impl ReturnRow {
    fn into_record(self, items: Vec<ReturnItem>) -> Result<ReturnRecord, sqlx::Error> {
        let status = ReturnStatus::parse(&self.status)
            .ok_or_else(|| corrupt("return status", &self.status))?;
        let reason = ReturnReason::parse(&self.reason)
            .ok_or_else(|| corrupt("return reason", &self.reason))?;
        let request_state = RequestState::parse(&self.request_state)
            .ok_or_else(|| corrupt("return request state", &self.request_state))?;
        Ok(ReturnRecord {
            ret: Return {
                id: self.id.0,
                order_id: self.order_id.0,
                status,
                reason,
                notes: self.notes,
                resolution_notes: self.resolution_notes,
                items,
                label_urls: vec![],
                merchant_return_id: self.merchant_return_id,
                created_at: self.created_at,
                updated_at: self.updated_at,
                label_names: vec![],
            },
            tenant: Tenant {
                account_id: self.account_id.0,
                livemode: self.livemode,
                key_id: Uuid::nil(),
            },
            request_state,
            settles_at: self.settles_at,
        })
    }
}

/// The name of a return's `n`th label among its order's artifacts.
pub fn label_name(return_id: Uuid, n: usize) -> String {
    format!("r{}-{n}", return_id.simple())
}

/// Records a return of the tenant's order, after checking it against the order: each
/// item is the order's, delivered, and not returned beyond what was bought (returns
/// the retailer denied do not count). The `return.requested` event and the job that
/// asks the retailer commit with it.
pub async fn create(db: &Db, tenant: &Tenant, new: &NewReturn) -> Result<Return, ReturnError> {
    let mut tx = db.begin().await?;
    let lock = tx.for_update();
    let order_id = new.order_id;
    let found: Option<String> = on_tx!(tx, |conn| {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT status FROM orders WHERE id = $1 AND account_id = $2 AND livemode = $3{lock}"
        )))
        .bind(DbId(order_id))
        .bind(DbId(tenant.account_id))
        .bind(tenant.livemode)
        .fetch_optional(&mut *conn)
        .await
    })?;
    if found.is_none() {
        return Err(ReturnError::OrderNotFound);
    }
    // The order's items `(id, quantity bought, status)`, and what other returns hold.
    type Items = Vec<(DbId, i32, String)>;
    type Held = Vec<(DbId, i64)>;
    let (items, returned): (Items, Held) = on_tx!(tx, |conn| {
        let items =
            sqlx::query_as("SELECT id, quantity, status FROM order_items WHERE order_id = $1")
                .bind(DbId(order_id))
                .fetch_all(&mut *conn)
                .await?;
        let returned = sqlx::query_as(
            "SELECT i.order_item_id, SUM(i.quantity) FROM order_return_items i
             JOIN order_returns r ON r.id = i.return_id
             WHERE r.order_id = $1 AND r.status <> $2
             GROUP BY i.order_item_id",
        )
        .bind(DbId(order_id))
        .bind(ReturnStatus::Denied.as_str())
        .fetch_all(&mut *conn)
        .await?;
        Ok::<_, sqlx::Error>((items, returned))
    })?;
    let returned: HashMap<Uuid, i64> = returned.into_iter().map(|(id, n)| (id.0, n)).collect();
    let mut errors = Errors::default();
    for (i, item) in new.items.iter().enumerate() {
        let loc = Loc::body().at("items").at(i);
        let Some((_, bought, status)) = items.iter().find(|(id, _, _)| id.0 == item.order_item_id)
        else {
            errors.add(
                &loc.at("order_item_id"),
                "order_item_not_found",
                "This order has no such item",
            );
            continue;
        };
        if status != OrderItemStatus::Delivered.as_str() {
            errors.add(
                &loc.at("order_item_id"),
                "item_not_delivered",
                format!("Only delivered items can be returned; this one is {status}"),
            );
            continue;
        }
        let left = i64::from(*bought) - returned.get(&item.order_item_id).copied().unwrap_or(0);
        if i64::from(item.quantity) > left {
            errors.add(
                &loc.at("quantity"),
                "return_quantity_exceeded",
                format!(
                    "{left} of the {bought} bought can still be returned (the rest is in other returns)"
                ),
            );
        }
    }
    if !errors.is_empty() {
        return Err(ReturnError::Invalid(errors.into_rejection()));
    }

    let now = Timestamp::now();
    let id = Uuid::now_v7();
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO order_returns (id, order_id, account_id, livemode, status, reason, notes,
                 request_state, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(DbId(id))
        .bind(DbId(order_id))
        .bind(DbId(tenant.account_id))
        .bind(tenant.livemode)
        .bind(ReturnStatus::Open.as_str())
        .bind(new.reason.as_str())
        .bind(new.notes.as_deref())
        .bind(RequestState::Pending.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let mut qb = QueryBuilder::new(
            "INSERT INTO order_return_items (return_id, order_item_id, quantity) ",
        );
        qb.push_values(&new.items, |mut b, item| {
            b.push_bind(DbId(id))
                .push_bind(DbId(item.order_item_id))
                .push_bind(item.quantity);
        });
        qb.build().execute(&mut *conn).await.map(|_| ())
    })?;
    let job = NewJob {
        payload: json!({ "return": id }),
        ..NewJob::now(JobKind::RequestReturn, None, REQUEST_ATTEMPTS)
    };
    let change = Change {
        events: vec![(
            events::REQUESTED,
            json!({"return_id": id, "reason": new.reason.as_str(), "items": new.items}),
        )],
        jobs: vec![job],
        ..Change::default()
    };
    lifecycle::apply(&mut tx, order_id, &OrderStatus::ALL, change).await?;
    tx.commit().await?;
    Ok(Return {
        id,
        order_id,
        status: ReturnStatus::Open,
        reason: new.reason,
        notes: new.notes.clone(),
        resolution_notes: None,
        items: new.items.clone(),
        label_urls: vec![],
        merchant_return_id: None,
        created_at: now,
        updated_at: now,
        label_names: vec![],
    })
}

/// Filters of `GET /returns`, already validated.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub page: crate::validation::Page,
    pub status: Option<ReturnStatus>,
    /// Part of the order id.
    pub search: Option<String>,
}

/// One page of the tenant's returns, newest first, and how many match in all.
pub async fn list(
    db: &Db,
    tenant: &Tenant,
    filter: &ListFilter,
) -> Result<(Vec<Return>, i64), sqlx::Error> {
    let (rows, total): (Vec<ReturnRow>, i64) = on_db!(db, reader, |pool| {
        let mut count = QueryBuilder::new("SELECT COUNT(*) FROM order_returns");
        push_list_conditions(&mut count, tenant, filter);
        let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
        let mut page = QueryBuilder::new(format!("SELECT {COLUMNS} FROM order_returns"));
        push_list_conditions(&mut page, tenant, filter);
        page.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(filter.page.limit)
            .push(" OFFSET ")
            .push_bind(filter.page.offset);
        let rows: Vec<ReturnRow> = page.build_query_as().fetch_all(pool).await?;
        Ok::<_, sqlx::Error>((rows, total))
    })?;
    Ok((assemble(db, tenant, rows).await?, total))
}

fn push_list_conditions<DB: sqlx::Database>(
    qb: &mut QueryBuilder<DB>,
    tenant: &Tenant,
    filter: &ListFilter,
) where
    DbId: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    String: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    qb.push(" WHERE account_id = ")
        .push_bind(DbId(tenant.account_id))
        .push(" AND livemode = ")
        .push_bind(tenant.livemode);
    if let Some(status) = filter.status {
        qb.push(" AND status = ")
            .push_bind(status.as_str().to_string());
    }
    if let Some(search) = &filter.search {
        let escaped = search
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        qb.push(" AND CAST(order_id AS TEXT) LIKE ")
            .push_bind(format!("%{escaped}%"))
            .push(" ESCAPE '\\'");
    }
}

/// The tenant's return, if it has one with this id.
pub async fn get(db: &Db, tenant: &Tenant, id: Uuid) -> Result<Option<Return>, sqlx::Error> {
    let rows: Vec<ReturnRow> = on_db!(db, reader, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM order_returns WHERE id = $1 AND account_id = $2 AND livemode = $3"
        )))
        .bind(DbId(id))
        .bind(DbId(tenant.account_id))
        .bind(tenant.livemode)
        .fetch_all(pool)
        .await
    })?;
    Ok(assemble(db, tenant, rows).await?.pop())
}

/// The returns of each listed order, oldest first: one query for a page of orders.
pub async fn by_order(
    db: &Db,
    tenant: &Tenant,
    order_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Return>>, sqlx::Error> {
    let mut by_order: HashMap<Uuid, Vec<Return>> = HashMap::new();
    if order_ids.is_empty() {
        return Ok(by_order);
    }
    let rows: Vec<ReturnRow> = on_db!(db, reader, |pool| {
        let mut qb = QueryBuilder::new(format!(
            "SELECT {COLUMNS} FROM order_returns WHERE account_id = "
        ));
        qb.push_bind(DbId(tenant.account_id))
            .push(" AND livemode = ")
            .push_bind(tenant.livemode)
            .push(" AND order_id IN ");
        qb.push_tuples(order_ids, |mut b, id| {
            b.push_bind(DbId(*id));
        });
        qb.push(" ORDER BY created_at, id");
        qb.build_query_as().fetch_all(pool).await
    })?;
    for ret in assemble(db, tenant, rows).await? {
        by_order.entry(ret.order_id).or_default().push(ret);
    }
    Ok(by_order)
}

/// Attaches items and label names to returns, with one query each.
async fn assemble(
    db: &Db,
    tenant: &Tenant,
    rows: Vec<ReturnRow>,
) -> Result<Vec<Return>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id.0).collect();
    let mut items = items_of(db, &ids).await?;
    let order_ids: Vec<Uuid> = rows.iter().map(|r| r.order_id.0).collect();
    let labels =
        artifacts::names_by_order(db, tenant, &order_ids, ArtifactKind::ReturnLabel).await?;
    rows.into_iter()
        .map(|row| {
            let prefix = format!("r{}-", row.id.0.simple());
            let label_names: Vec<String> = labels
                .get(&row.order_id.0)
                .into_iter()
                .flatten()
                .filter(|name| name.starts_with(&prefix))
                .cloned()
                .collect();
            let own_items = items.remove(&row.id.0).unwrap_or_default();
            let mut ret = row.into_record(own_items)?.ret;
            ret.label_names = label_names;
            Ok(ret)
        })
        .collect()
}

async fn items_of(db: &Db, ids: &[Uuid]) -> Result<HashMap<Uuid, Vec<ReturnItem>>, sqlx::Error> {
    let rows: Vec<(DbId, DbId, i32)> = on_db!(db, reader, |pool| {
        let mut qb = QueryBuilder::new(
            "SELECT return_id, order_item_id, quantity FROM order_return_items WHERE return_id IN ",
        );
        qb.push_tuples(ids, |mut b, id| {
            b.push_bind(DbId(*id));
        });
        qb.push(" ORDER BY return_id, order_item_id");
        qb.build_query_as().fetch_all(pool).await
    })?;
    let mut items: HashMap<Uuid, Vec<ReturnItem>> = HashMap::new();
    for (return_id, order_item_id, quantity) in rows {
        items.entry(return_id.0).or_default().push(ReturnItem {
            order_item_id: order_item_id.0,
            quantity,
        });
    }
    Ok(items)
}

/// A return with whose it is, for the engine (not scoped to a tenant).
pub async fn load_record(db: &Db, id: Uuid) -> Result<Option<ReturnRecord>, sqlx::Error> {
    let row: Option<ReturnRow> = on_db!(db, reader, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM order_returns WHERE id = $1"
        )))
        .bind(DbId(id))
        .fetch_optional(pool)
        .await
    })?;
    let Some(row) = row else { return Ok(None) };
    let items = items_of(db, &[id]).await?.remove(&id).unwrap_or_default();
    row.into_record(items).map(Some)
}

/// Marks the return as being asked of the retailer (the exactly-once record, committed
/// before the retailer hears of it), only while the job run `claim` still holds its job
/// and the retailer has not answered yet. Returns whether it did.
pub async fn begin_request(
    db: &Db,
    claim: (i64, i32),
    id: Uuid,
    settles_at: Timestamp,
) -> Result<bool, sqlx::Error> {
    on_db!(db, writer, |pool| {
        sqlx::query(
            "UPDATE order_returns SET request_state = $1, settles_at = $2, updated_at = $3
             WHERE id = $4 AND request_state <> $5
               AND EXISTS (SELECT 1 FROM jobs WHERE id = $6 AND attempt = $7 AND state = $8)",
        )
        .bind(RequestState::Submitting.as_str())
        .bind(settles_at)
        .bind(Timestamp::now())
        .bind(DbId(id))
        .bind(RequestState::Requested.as_str())
        .bind(claim.0)
        .bind(claim.1)
        .bind(crate::queue::JobState::Running.as_str())
        .execute(pool)
        .await
        .map(|r| r.rows_affected() > 0)
    })
}

/// What the retailer decided or did about a return, to record.
#[derive(Debug, Clone)]
pub struct Decision {
    pub status: ReturnStatus,
    pub merchant_return_id: Option<String>,
    pub resolution_notes: Option<String>,
    /// Work the decision causes (following the return), committed with it.
    pub jobs: Vec<NewJob>,
}

/// Records a decision (the retailer answered, approved, denied or credited) with its
/// order event, unless the return is already past it; returns whether it did.
pub async fn record(tx: &mut Tx, ret: &Return, decision: Decision) -> Result<bool, sqlx::Error> {
    let event = match decision.status {
        ReturnStatus::Approved => events::APPROVED,
        ReturnStatus::Denied => events::DENIED,
        ReturnStatus::Credited => events::CREDITED,
        ReturnStatus::Open => return Ok(false),
    };
    // open → approved | denied; approved → credited.
    let from: &[&str] = match decision.status {
        ReturnStatus::Credited => &["approved"],
        _ => &["open"],
    };
    let changed = on_tx!(tx, |conn| {
        let mut qb = QueryBuilder::new("UPDATE order_returns SET status = ");
        qb.push_bind(decision.status.as_str())
            .push(", request_state = ")
            .push_bind(RequestState::Requested.as_str())
            .push(", merchant_return_id = COALESCE(")
            .push_bind(decision.merchant_return_id.clone())
            .push(", merchant_return_id), resolution_notes = COALESCE(")
            .push_bind(decision.resolution_notes.clone())
            .push(", resolution_notes), updated_at = ")
            .push_bind(Timestamp::now())
            .push(" WHERE id = ")
            .push_bind(DbId(ret.id))
            .push(" AND status IN ");
        qb.push_tuples(from, |mut b, s| {
            b.push_bind(*s);
        });
        qb.build()
            .execute(&mut *conn)
            .await
            .map(|r| r.rows_affected() > 0)
    })?;
    if !changed {
        return Ok(false);
    }
    let change = Change {
        events: vec![(
            event,
            json!({"return_id": ret.id, "merchant_return_id": decision.merchant_return_id,
                   "resolution_notes": decision.resolution_notes}),
        )],
        jobs: decision.jobs,
        ..Change::default()
    };
    lifecycle::apply(tx, ret.order_id, &OrderStatus::ALL, change).await
}
