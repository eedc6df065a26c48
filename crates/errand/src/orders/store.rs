//! Order storage: reads (one row model per table), and the batched insert used by the
//! group-commit writer. Every change of an order's state goes through
//! [`lifecycle`](super::lifecycle).

use std::collections::HashMap;

use serde_json::{Map, Value};
use sqlx::types::Json;
use sqlx::{Database, QueryBuilder};
use uuid::Uuid;

use super::address::Address;
use super::artifacts::{self, ArtifactKind};
use super::lifecycle::{self, ROWS_PER_INSERT};
use super::model::{
    ErrorType, Expiration, JobResult, Order, OrderItem, OrderItemStatus, OrderRecord, OrderStatus,
    TrackingNumber, Variant,
};
use super::options::{Concession, NotificationStatus, OrderFulfillment, OrderOptions};
use crate::auth::Tenant;
use crate::notifications::SentEmails;
use crate::queue::NewJob;
use crate::storage::{Db, DbId, Timestamp};
use crate::{on_db, on_tx};

#[derive(sqlx::FromRow)]
struct OrderRow {
    id: DbId,
    account_id: DbId,
    livemode: bool,
    status: String,
    max_price: i64,
    attempts: i32,
    shipping_address: Json<Address>,
    metadata: Json<Map<String, Value>>,
    po_number: Option<String>,
    retailer_credentials_id: Option<String>,
    created_by: Option<String>,
    job_result: Option<Json<JobResult>>,
    expiration: Option<Json<Expiration>>,
    retailer: Option<String>,
    placed_with: Option<String>,
    expires_at: Option<Timestamp>,
    options: Option<Json<OrderOptions>>,
    concessions: Option<Json<Vec<Concession>>>,
    customer_emails: Option<Json<SentEmails>>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

#[derive(sqlx::FromRow)]
struct TrackingRow {
    id: DbId,
    order_id: DbId,
    carrier: String,
    tracking_number: String,
    created_at: Timestamp,
}

#[derive(sqlx::FromRow)]
struct ItemRow {
    id: DbId,
    order_id: DbId,
    url: String,
    quantity: i32,
    variant: Option<Json<Vec<Variant>>>,
    status: String,
    cancellation_reason: Option<String>,
    error_type: Option<String>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

const ORDER_COLUMNS: &str = "id, account_id, livemode, status, max_price, attempts, shipping_address, \
     metadata, po_number, retailer_credentials_id, created_by, job_result, expiration, retailer, \
     placed_with, expires_at, options, concessions, customer_emails, created_at, updated_at";
const TRACKING_COLUMNS: &str = "id, order_id, carrier, tracking_number, created_at";
const ITEM_COLUMNS: &str = "id, order_id, url, quantity, variant, status, cancellation_reason, error_type, created_at, updated_at";

/// The error for a value the database holds that no longer parses.
pub(crate) fn corrupt(what: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unknown {what} {value:?} in database").into())
}

impl ItemRow {
    fn into_item(self) -> Result<OrderItem, sqlx::Error> {
        Ok(OrderItem {
            id: self.id.0,
            url: self.url,
            quantity: self.quantity,
            variant: self.variant.map(|v| v.0),
            status: OrderItemStatus::parse(&self.status)
                .ok_or_else(|| corrupt("item status", &self.status))?,
            cancellation_reason: self.cancellation_reason,
            error_type: self.error_type.as_deref().and_then(ErrorType::parse),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl OrderRow {
    fn status(&self) -> Result<OrderStatus, sqlx::Error> {
        OrderStatus::parse(&self.status).ok_or_else(|| corrupt("order status", &self.status))
    }

    fn into_record(self, items: Vec<OrderItem>) -> Result<OrderRecord, sqlx::Error> {
        Ok(OrderRecord {
            id: self.id.0,
            account_id: self.account_id.0,
            livemode: self.livemode,
            status: self.status()?,
            max_price: self.max_price,
            retailer: self.retailer,
            retailer_credentials_id: self.retailer_credentials_id,
            placed_with: self.placed_with,
            shipping_address: self.shipping_address.0,
            expires_at: self.expires_at,
            expiration: self.expiration.map(|e| e.0),
            job_result: self.job_result.map(|j| j.0),
            items,
            po_number: self.po_number,
            options: self.options.map(|o| o.0).unwrap_or_default(),
        })
    }

    fn into_order(
        self,
        items: Vec<OrderItem>,
        tracking_numbers: Vec<TrackingNumber>,
    ) -> Result<Order, sqlx::Error> {
        let status = self.status()?;
        let options = self.options.map(|o| o.0).unwrap_or_default();
        let job_result = self.job_result.map(|j| j.0);
        let merchant_order_ids = job_result
            .iter()
            .flat_map(|j| &j.merchant_order_ids)
            .map(|m| m.merchant_order_id.clone())
            .collect();
        Ok(Order {
            id: self.id.0,
            status,
            max_price: self.max_price,
            attempts: self.attempts,
            items,
            shipping_address: self.shipping_address.0,
            metadata: self.metadata.0,
            po_number: self.po_number,
            handling_days_max: options.handling_days_max,
            is_gift: options.is_gift,
            gift_message: options.gift_message,
            retailer_credentials_id: self.retailer_credentials_id,
            tracking_numbers,
            created_by: self.created_by,
            user_id: None,
            returns: vec![],
            job_result,
            merchant_order_ids,
            customer_notifications: options.notify_email.map(|email| {
                let emails = self.customer_emails.map(|e| e.0).unwrap_or_default();
                NotificationStatus {
                    email,
                    delivered: emails.delivered,
                    sent: emails.sent,
                }
            }),
            fulfillment: OrderFulfillment::new(
                options.fulfillment,
                self.concessions.map(|c| c.0).unwrap_or_default(),
            ),
            expiration: self.expiration.map(|e| e.0),
            created_at: self.created_at,
            updated_at: self.updated_at,
            screenshots: vec![],
            screenshot_names: vec![],
        })
    }
}

/// Attaches items (in position order) and tracking numbers to their orders, keeping the
/// orders' order.
fn assemble(
    rows: Vec<OrderRow>,
    items: Vec<ItemRow>,
    tracking: Vec<TrackingRow>,
) -> Result<Vec<Order>, sqlx::Error> {
    let mut by_order: HashMap<Uuid, Vec<OrderItem>> = HashMap::new();
    for item in items {
        by_order
            .entry(item.order_id.0)
            .or_default()
            .push(item.into_item()?);
    }
    let mut tracking_by_order: HashMap<Uuid, Vec<TrackingNumber>> = HashMap::new();
    for t in tracking {
        tracking_by_order
            .entry(t.order_id.0)
            .or_default()
            .push(TrackingNumber {
                id: t.id.0,
                carrier: t.carrier,
                tracking_number: t.tracking_number,
                created_at: t.created_at,
            });
    }
    rows.into_iter()
        .map(|row| {
            let items = by_order.remove(&row.id.0).unwrap_or_default();
            let tracking = tracking_by_order.remove(&row.id.0).unwrap_or_default();
            row.into_order(items, tracking)
        })
        .collect()
}

pub async fn get(db: &Db, tenant: &Tenant, id: Uuid) -> Result<Option<Order>, sqlx::Error> {
    let mut orders = on_db!(db, reader, |pool| {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 AND account_id = $2 AND livemode = $3"
        );
        let rows: Vec<OrderRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(DbId(id))
            .bind(DbId(tenant.account_id))
            .bind(tenant.livemode)
            .fetch_all(pool)
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let sql =
            format!("SELECT {ITEM_COLUMNS} FROM order_items WHERE order_id = $1 ORDER BY position");
        let items: Vec<ItemRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(DbId(id))
            .fetch_all(pool)
            .await?;
        // Tracking numbers exist only once an order is placed.
        let placed = rows[0].job_result.as_ref().is_some_and(|r| r.success);
        let tracking: Vec<TrackingRow> = if placed {
            let sql = format!(
                "SELECT {TRACKING_COLUMNS} FROM tracking_numbers WHERE order_id = $1 ORDER BY created_at, tracking_number"
            );
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(DbId(id))
                .fetch_all(pool)
                .await?
        } else {
            vec![]
        };
        assemble(rows, items, tracking)?
    });
    let Some(mut order) = orders.pop() else {
        return Ok(None);
    };
    attach_screenshots(db, tenant, std::slice::from_mut(&mut order)).await?;
    Ok(Some(order))
}

/// An order with its items, whoever owns it (for the engine, which acts for the
/// system).
pub async fn load_record(db: &Db, id: Uuid) -> Result<Option<OrderRecord>, sqlx::Error> {
    on_db!(db, reader, |pool| {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
        let row: Option<OrderRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(DbId(id))
            .fetch_optional(pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let sql =
            format!("SELECT {ITEM_COLUMNS} FROM order_items WHERE order_id = $1 ORDER BY position");
        let items: Vec<ItemRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(DbId(id))
            .fetch_all(pool)
            .await?;
        let items = items
            .into_iter()
            .map(ItemRow::into_item)
            .collect::<Result<Vec<_>, _>>()?;
        row.into_record(items).map(Some)
    })
}

/// The tracking numbers already recorded for an order.
pub async fn tracking_numbers(db: &Db, order_id: Uuid) -> Result<Vec<String>, sqlx::Error> {
    on_db!(db, reader, |pool| {
        sqlx::query_scalar("SELECT tracking_number FROM tracking_numbers WHERE order_id = $1")
            .bind(DbId(order_id))
            .fetch_all(pool)
            .await
    })
}

/// Sets the orders' `screenshot_names` and `returns`, with one query each for all of
/// them.
async fn attach_screenshots(
    db: &Db,
    tenant: &Tenant,
    orders: &mut [Order],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = orders.iter().map(|o| o.id).collect();
    let mut names = artifacts::names_by_order(db, tenant, &ids, ArtifactKind::Screenshot).await?;
    let mut returns = crate::returns::store::by_order(db, tenant, &ids).await?;
    for order in orders {
        order.screenshot_names = names.remove(&order.id).unwrap_or_default();
        order.returns = returns
            .remove(&order.id)
            .unwrap_or_default()
            .iter()
            .map(|r| r.summary())
            .collect();
    }
    Ok(())
}

/// Filters of `GET /orders`, already validated.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub page: crate::validation::Page,
    pub status: Option<OrderStatus>,
    pub created_after: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
    pub search: Option<String>,
}

/// Appends the WHERE clause shared by the page and the count.
fn push_list_conditions<DB: Database>(
    qb: &mut QueryBuilder<DB>,
    tenant: &Tenant,
    filter: &ListFilter,
) where
    DbId: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Timestamp: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    String: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    qb.push(" WHERE account_id = ")
        .push_bind(DbId(tenant.account_id));
    qb.push(" AND livemode = ").push_bind(tenant.livemode);
    if let Some(status) = filter.status {
        qb.push(" AND status = ")
            .push_bind(status.as_str().to_string());
    }
    if let Some(after) = filter.created_after {
        qb.push(" AND created_at >= ").push_bind(after);
    }
    if let Some(before) = filter.created_before {
        qb.push(" AND created_at < ").push_bind(before);
    }
    if let Some(search) = &filter.search {
        let escaped = search
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let pattern = format!("%{escaped}%");
        qb.push(" AND (CAST(id AS TEXT) LIKE ")
            .push_bind(pattern.clone());
        qb.push(" ESCAPE '\\' OR lower(po_number) LIKE ")
            .push_bind(pattern);
        qb.push(" ESCAPE '\\')");
    }
}

/// One page of the tenant's orders, newest first, and how many match in all.
pub async fn list(
    db: &Db,
    tenant: &Tenant,
    filter: &ListFilter,
) -> Result<(Vec<Order>, i64), sqlx::Error> {
    let (mut orders, total) = list_page(db, tenant, filter).await?;
    attach_screenshots(db, tenant, &mut orders).await?;
    Ok((orders, total))
}

async fn list_page(
    db: &Db,
    tenant: &Tenant,
    filter: &ListFilter,
) -> Result<(Vec<Order>, i64), sqlx::Error> {
    on_db!(db, reader, |pool| {
        let mut count = QueryBuilder::new("SELECT COUNT(*) FROM orders");
        push_list_conditions(&mut count, tenant, filter);
        let total: i64 = count.build_query_scalar().fetch_one(pool).await?;

        let mut page = QueryBuilder::new(format!("SELECT {ORDER_COLUMNS} FROM orders"));
        push_list_conditions(&mut page, tenant, filter);
        page.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(filter.page.limit);
        page.push(" OFFSET ").push_bind(filter.page.offset);
        let rows: Vec<OrderRow> = page.build_query_as().fetch_all(pool).await?;
        if rows.is_empty() {
            return Ok((vec![], total));
        }
        let mut items = QueryBuilder::new(format!(
            "SELECT {ITEM_COLUMNS} FROM order_items WHERE order_id IN "
        ));
        items.push_tuples(rows.iter().map(|r| r.id), |mut b, id| {
            b.push_bind(id);
        });
        items.push(" ORDER BY order_id, position");
        let items: Vec<ItemRow> = items.build_query_as().fetch_all(pool).await?;
        let mut tracking = QueryBuilder::new(format!(
            "SELECT {TRACKING_COLUMNS} FROM tracking_numbers WHERE order_id IN "
        ));
        tracking.push_tuples(rows.iter().map(|r| r.id), |mut b, id| {
            b.push_bind(id);
        });
        tracking.push(" ORDER BY created_at, tracking_number");
        let tracking: Vec<TrackingRow> = tracking.build_query_as().fetch_all(pool).await?;
        Ok((assemble(rows, items, tracking)?, total))
    })
}

/// An order ready to insert: built in memory (ids, timestamps) so the response needs no
/// read-back.
#[derive(Debug, Clone)]
pub struct PendingInsert {
    pub tenant: Tenant,
    pub order: Order,
    /// The configured retailer that sells every product of the order.
    pub retailer: String,
    pub idempotency: Option<IdempotencyClaim>,
    /// Work the new order causes (placing it, expiring it), committed with it.
    pub jobs: Vec<NewJob>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub key: String,
    pub fingerprint: Vec<u8>,
}

/// What an existing idempotency record says.
#[derive(Debug, Clone)]
pub struct ExistingClaim {
    pub fingerprint: Vec<u8>,
    pub order_id: Uuid,
}

/// Inserts orders (through the lifecycle: items, `order.created` events and jobs
/// included) inside one transaction, first claiming their idempotency keys. Returns,
/// for each input in order, `None` when it was inserted or the claim that already held
/// its key (nothing inserted for it).
///
/// Keys repeated within `batch` must have been removed by the caller.
pub async fn insert_batch(
    db: &Db,
    batch: &[PendingInsert],
) -> Result<Vec<Option<ExistingClaim>>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let mut outcome: Vec<Option<ExistingClaim>> = vec![None; batch.len()];

    let keyed: Vec<(usize, &PendingInsert, &IdempotencyClaim)> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.idempotency.as_ref().map(|c| (i, p, c)))
        .collect();
    for chunk in keyed.chunks(ROWS_PER_INSERT) {
        on_tx!(tx, |conn| {
            let mut qb = QueryBuilder::new(
                "INSERT INTO idempotency_keys (account_id, livemode, key, request_hash, order_id, created_at) ",
            );
            qb.push_values(chunk, |mut b, (_, p, claim)| {
                b.push_bind(DbId(p.tenant.account_id))
                    .push_bind(p.tenant.livemode)
                    .push_bind(claim.key.clone())
                    .push_bind(claim.fingerprint.clone())
                    .push_bind(DbId(p.order.id))
                    .push_bind(p.order.created_at);
            });
            qb.push(" ON CONFLICT DO NOTHING RETURNING order_id");
            let claimed: Vec<DbId> = qb.build_query_scalar().fetch_all(&mut *conn).await?;
            let claimed: std::collections::HashSet<Uuid> =
                claimed.into_iter().map(|id| id.0).collect();
            for (i, p, claim) in chunk {
                if claimed.contains(&p.order.id) {
                    continue;
                }
                let row: (Vec<u8>, DbId) = sqlx::query_as(
                    "SELECT request_hash, order_id FROM idempotency_keys
                     WHERE account_id = $1 AND livemode = $2 AND key = $3",
                )
                .bind(DbId(p.tenant.account_id))
                .bind(p.tenant.livemode)
                .bind(&claim.key)
                .fetch_one(&mut *conn)
                .await?;
                outcome[*i] = Some(ExistingClaim {
                    fingerprint: row.0,
                    order_id: row.1.0,
                });
            }
            Ok::<(), sqlx::Error>(())
        })?;
    }

    let new: Vec<&PendingInsert> = batch
        .iter()
        .zip(&outcome)
        .filter(|(_, o)| o.is_none())
        .map(|(p, _)| p)
        .collect();
    lifecycle::create(&mut tx, &new).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// The instant an expiration names.
pub fn expires_at(expiration: &Expiration) -> Option<Timestamp> {
    time::OffsetDateTime::from_unix_timestamp(expiration.timestamp)
        .ok()
        .map(Timestamp::from_datetime)
}

/// Deletes idempotency records older than `before`; returns how many.
pub async fn prune_idempotency_keys(db: &Db, before: Timestamp) -> Result<u64, sqlx::Error> {
    on_db!(db, writer, |pool| {
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })
}

/// The events recorded for an order, oldest first: `(sequence, event, status)`.
pub async fn events(db: &Db, order_id: Uuid) -> Result<Vec<(i64, String, String)>, sqlx::Error> {
    on_db!(db, reader, |pool| {
        sqlx::query_as("SELECT sequence, event, status FROM order_events WHERE order_id = $1 ORDER BY sequence")
            .bind(DbId(order_id))
            .fetch_all(pool)
            .await
    })
}
