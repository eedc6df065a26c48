//! The store's SQLite database (WAL): one writer connection, so checkouts never meet
//! SQLite's busy handler, and reader connections beside it.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{FromRow, Row};

use crate::catalogue::Catalogue;
use crate::pricing::{Line, ShippingMethod, Totals};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Clone, Debug)]
pub struct Db {
    writer: SqlitePool,
    reader: SqlitePool,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Customer {
    pub id: i64,
    pub email: String,
    pub card_last4: String,
    pub gift_balance_cents: i64,
    /// Signs in with a one-time code as well as the password.
    pub two_factor: bool,
}

/// The outcome of a sign-in attempt.
#[derive(Debug)]
pub enum SignIn {
    Ok {
        token: String,
        customer: Customer,
    },
    BadCredentials,
    /// The password is right; the account also needs its one-time code.
    TotpRequired,
    BadTotp,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct CartLine {
    pub product_id: String,
    pub sku: String,
    pub offer_id: String,
    pub quantity: i64,
}

/// An order as the store keeps it (and as its order history shows it).
#[derive(Debug, Clone, Serialize)]
pub struct StoredOrder {
    pub id: String,
    pub customer_email: String,
    pub buyer_reference: Option<String>,
    pub status: String,
    pub shipping_method: String,
    pub shipping_address: serde_json::Value,
    pub gift_message: Option<String>,
    /// The gift option was chosen: a gift receipt, no prices on the packing slip.
    pub gift: bool,
    /// The buyer's purchase-order number.
    pub po_number: Option<String>,
    pub promo_code: Option<String>,
    pub subtotal: i64,
    pub shipping: i64,
    pub tax: i64,
    pub discount: i64,
    pub total: i64,
    pub placed_at: String,
    pub estimated_delivery: String,
    pub cancel_reason: Option<String>,
    pub lines: Vec<Line>,
    pub shipments: Vec<Shipment>,
    pub returns: Vec<ReturnRecord>,
}

/// What a placed order needs besides its lines and totals.
#[derive(Debug, Clone)]
pub struct NewOrder<'a> {
    pub customer_id: i64,
    pub customer_email: &'a str,
    pub buyer_reference: Option<&'a str>,
    pub shipping_method: ShippingMethod,
    pub shipping_address: &'a serde_json::Value,
    pub gift_message: Option<&'a str>,
    pub gift: bool,
    pub po_number: Option<&'a str>,
    pub promo_code: Option<&'a str>,
    /// When the store clock ships and delivers it (real instants).
    pub ship_at: time::OffsetDateTime,
    pub deliver_at: time::OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shipment {
    pub id: String,
    pub carrier: String,
    pub tracking_number: String,
    pub skus: Vec<String>,
    pub shipped_at: String,
    pub delivered_at: Option<String>,
}

/// One returned line: units of one order line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReturnLine {
    pub sku: String,
    pub product_id: String,
    pub quantity: i64,
    pub unit_price: i64,
}

/// A return as the store keeps it and shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReturnRecord {
    pub id: String,
    pub order_id: String,
    pub customer_email: String,
    /// The buyer's reference, unique among the customer's returns.
    pub reference: Option<String>,
    /// `approved`, then `received` and `credited` on the store clock; or `denied`, which
    /// is final.
    pub status: String,
    pub reason: String,
    pub notes: Option<String>,
    pub lines: Vec<ReturnLine>,
    /// The returned SKUs, each once (the shape before returns had quantities).
    pub skus: Vec<String>,
    pub created_at: String,
    pub decision: Option<String>,
    /// The prepaid label (a PDF) of a return that is not denied: a path here, made
    /// absolute on the store's address by the API.
    pub label_url: Option<String>,
    pub received_at: Option<String>,
    pub credited_at: Option<String>,
    /// What was credited back, in cents, once `credited`.
    pub refund: Option<i64>,
    pub currency: &'static str,
}

/// Which returns to list; every field left `None` matches all.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReturnFilter<'a> {
    pub customer_id: Option<i64>,
    pub order_id: Option<&'a str>,
    pub reference: Option<&'a str>,
    pub id: Option<&'a str>,
}

/// Which units a return request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReturnItems {
    /// Every unit of the order not returned yet.
    Everything,
    /// These SKUs, each with every unit not returned yet.
    Skus(Vec<String>),
    /// So many units of each SKU.
    Quantities(Vec<(String, i64)>),
}

/// A customer's request to return items of an order.
#[derive(Debug, Clone)]
pub struct NewReturn<'a> {
    pub customer_id: i64,
    pub order_id: &'a str,
    pub reason: &'a str,
    /// The buyer's reference: asking again with it finds the return made the first time.
    pub reference: Option<&'a str>,
    pub notes: Option<&'a str>,
    pub items: ReturnItems,
}

#[derive(Debug)]
pub enum ReturnOutcome {
    Created(ReturnRecord),
    /// The customer already made a return of this order with this reference.
    Existing(ReturnRecord),
}

/// What of a delivered order can still be returned.
#[derive(Debug, Clone)]
pub struct Returnable {
    pub order_id: String,
    pub lines: Vec<ReturnableLine>,
}

/// An order line, with how many of its units are in returns not denied.
#[derive(Debug, Clone)]
pub struct ReturnableLine {
    pub position: i64,
    pub sku: String,
    pub product_id: String,
    pub title: String,
    pub quantity: i64,
    pub returned: i64,
    pub unit_price: i64,
}

/// The units of one SKU of an order (over its lines, which may be from several sellers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnableSku {
    pub sku: String,
    pub product_id: String,
    pub title: String,
    pub bought: i64,
    pub remaining: i64,
}

impl Returnable {
    /// The order's SKUs, each once, in the order's order.
    pub fn skus(&self) -> Vec<ReturnableSku> {
        let mut skus: Vec<ReturnableSku> = Vec::new();
        for line in &self.lines {
            let left = (line.quantity - line.returned).max(0);
            match skus.iter_mut().find(|s| s.sku == line.sku) {
                Some(s) => {
                    s.bought += line.quantity;
                    s.remaining += left;
                }
                None => skus.push(ReturnableSku {
                    sku: line.sku.clone(),
                    product_id: line.product_id.clone(),
                    title: line.title.clone(),
                    bought: line.quantity,
                    remaining: left,
                }),
            }
        }
        skus
    }

    /// The units asked for, per SKU, checked against what is left.
    pub fn choose(&self, items: &ReturnItems) -> Result<Vec<(String, i64)>, ReturnError> {
        let skus = self.skus();
        let find = |sku: &str| {
            skus.iter()
                .find(|s| s.sku == sku)
                .ok_or_else(|| ReturnError::UnknownSku(sku.to_string()))
        };
        let mut chosen: Vec<(String, i64)> = Vec::new();
        match items {
            ReturnItems::Everything => {
                chosen = skus
                    .iter()
                    .filter(|s| s.remaining > 0)
                    .map(|s| (s.sku.clone(), s.remaining))
                    .collect();
                if chosen.is_empty() {
                    return Err(ReturnError::NothingToReturn);
                }
            }
            ReturnItems::Skus(list) => {
                for sku in list {
                    let s = find(sku)?;
                    if chosen.iter().any(|(c, _)| c == sku) {
                        continue;
                    }
                    if s.remaining == 0 {
                        return Err(ReturnError::QuantityExceeded {
                            sku: sku.clone(),
                            remaining: 0,
                        });
                    }
                    chosen.push((sku.clone(), s.remaining));
                }
            }
            ReturnItems::Quantities(list) => {
                for (sku, quantity) in list {
                    let s = find(sku)?;
                    if *quantity < 1 {
                        return Err(ReturnError::InvalidQuantity(sku.clone()));
                    }
                    match chosen.iter_mut().find(|(c, _)| c == sku) {
                        Some((_, q)) => *q += quantity,
                        None => chosen.push((sku.clone(), *quantity)),
                    }
                    let asked = chosen.iter().find(|(c, _)| c == sku).map_or(0, |c| c.1);
                    if asked > s.remaining {
                        return Err(ReturnError::QuantityExceeded {
                            sku: sku.clone(),
                            remaining: s.remaining,
                        });
                    }
                }
            }
        }
        Ok(chosen)
    }

    /// The order lines the chosen units come from (the first lines of a SKU first) and
    /// how many of each.
    fn allocate(&self, chosen: &[(String, i64)]) -> Vec<(&ReturnableLine, i64)> {
        let mut taken = Vec::new();
        for (sku, quantity) in chosen {
            let mut left = *quantity;
            for line in self.lines.iter().filter(|l| &l.sku == sku) {
                let take = left.min((line.quantity - line.returned).max(0));
                if take > 0 {
                    taken.push((line, take));
                    left -= take;
                }
            }
        }
        taken
    }
}

#[derive(Debug)]
pub enum CancelOutcome {
    Cancelled,
    NotFound,
    NotCancellable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ReturnError {
    #[error("no such order")]
    NotFound,
    #[error("only delivered orders can be returned (this one is {0})")]
    NotDelivered(String),
    #[error("the 30-day return window has closed")]
    WindowClosed,
    #[error("{0} is not part of this order")]
    UnknownSku(String),
    #[error("return at least 1 of {0}")]
    InvalidQuantity(String),
    #[error("only {remaining} of {sku} can still be returned")]
    QuantityExceeded { sku: String, remaining: i64 },
    #[error("everything in this order has been returned already")]
    NothingToReturn,
    #[error("this reference is already used for a return of order {0}")]
    ReferenceInUse(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("not enough stock of {0}")]
    OutOfStock(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

/// Fixed-width UTC RFC 3339 (`2026-11-24T21:54:26.123456Z`), so that the text order of
/// stored instants is their time order.
pub fn rfc3339(at: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

fn parse_rfc3339(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

fn password_hash(salt: &str, password: &str) -> String {
    hex::encode(Sha256::digest(format!("{salt}:{password}").as_bytes()))
}

/// A merchant order id in the familiar `112-1234567-1234567` form.
fn merchant_order_id() -> String {
    let mut rng = rand::rng();
    let digits = |n: usize, rng: &mut rand::rngs::ThreadRng| -> String {
        (0..n)
            .map(|_| char::from(b'0' + rand::Rng::random_range(rng, 0..10u8)))
            .collect()
    };
    format!("112-{}-{}", digits(7, &mut rng), digits(7, &mut rng))
}

impl Db {
    pub async fn open(path: &Path) -> anyhow::Result<Db> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        // NORMAL in WAL mode survives process crashes; only power loss may drop the last
        // commits, which is fine for a demo store and keeps checkout fast.
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().create_if_missing(true))
            .await
            .with_context(|| format!("cannot open the store database {}", path.display()))?;
        MIGRATIONS
            .run(&writer)
            .await
            .context("migrating the store database")?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        let db = Db { writer, reader };
        db.stock_catalogue().await?;
        Ok(db)
    }

    /// Gives every variant its initial stock, once (a restart keeps what was sold).
    async fn stock_catalogue(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.writer.begin().await?;
        for product in &Catalogue::get().products {
            for variant in &product.variants {
                sqlx::query("INSERT OR IGNORE INTO stock (sku, quantity) VALUES ($1, $2)")
                    .bind(&variant.sku)
                    .bind(variant.stock)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await
    }

    pub async fn create_customer(
        &self,
        email: &str,
        password: &str,
        card_last4: &str,
        gift_balance_cents: i64,
        totp_secret: Option<&str>,
    ) -> Result<i64, sqlx::Error> {
        let salt = Alphanumeric.sample_string(&mut rand::rng(), 16);
        let row = sqlx::query(
            "INSERT INTO customers (email, password_salt, password_hash, card_last4, gift_balance_cents, created_at, totp_secret)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(email.trim())
        .bind(&salt)
        .bind(password_hash(&salt, password))
        .bind(card_last4)
        .bind(gift_balance_cents)
        .bind(now_rfc3339())
        .bind(totp_secret)
        .fetch_one(&self.writer)
        .await?;
        row.try_get("id")
    }

    pub async fn customer_exists(&self, email: &str) -> Result<bool, sqlx::Error> {
        let row = sqlx::query("SELECT 1 FROM customers WHERE email = $1")
            .bind(email.trim())
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.is_some())
    }

    /// Checks the credentials (and the one-time code of two-factor accounts); a new
    /// session token when they are right.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        totp: Option<&str>,
    ) -> Result<SignIn, sqlx::Error> {
        let row = sqlx::query(
            "SELECT id, email, password_salt, password_hash, card_last4, gift_balance_cents, totp_secret,
                    totp_secret IS NOT NULL AS two_factor
             FROM customers WHERE email = $1",
        )
        .bind(email.trim())
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else {
            return Ok(SignIn::BadCredentials);
        };
        let salt: String = row.try_get("password_salt")?;
        let hash: String = row.try_get("password_hash")?;
        if password_hash(&salt, password) != hash {
            return Ok(SignIn::BadCredentials);
        }
        let secret: Option<String> = row.try_get("totp_secret")?;
        if let Some(secret) = &secret {
            match totp {
                None => return Ok(SignIn::TotpRequired),
                Some(code)
                    if !crate::totp::verify(
                        secret,
                        code,
                        time::OffsetDateTime::now_utc().unix_timestamp(),
                    ) =>
                {
                    return Ok(SignIn::BadTotp);
                }
                Some(_) => {}
            }
        }
        let customer = Customer::from_row(&row)?;
        let token = Alphanumeric.sample_string(&mut rand::rng(), 40);
        sqlx::query("INSERT INTO sessions (token, customer_id, created_at) VALUES ($1, $2, $3)")
            .bind(&token)
            .bind(customer.id)
            .bind(now_rfc3339())
            .execute(&self.writer)
            .await?;
        Ok(SignIn::Ok { token, customer })
    }

    pub async fn customer_for_token(&self, token: &str) -> Result<Option<Customer>, sqlx::Error> {
        sqlx::query_as(
            "SELECT c.id, c.email, c.card_last4, c.gift_balance_cents, c.totp_secret IS NOT NULL AS two_factor
             FROM sessions s JOIN customers c ON c.id = s.customer_id WHERE s.token = $1",
        )
        .bind(token)
        .fetch_optional(&self.reader)
        .await
    }

    pub async fn stock(&self, sku: &str) -> Result<i64, sqlx::Error> {
        let quantity: Option<i64> = sqlx::query_scalar("SELECT quantity FROM stock WHERE sku = $1")
            .bind(sku)
            .fetch_optional(&self.reader)
            .await?;
        Ok(quantity.unwrap_or(0))
    }

    /// Sets a SKU's stock; false when there is no such SKU.
    pub async fn set_stock(&self, sku: &str, quantity: i64) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query("UPDATE stock SET quantity = $1 WHERE sku = $2")
            .bind(quantity)
            .bind(sku)
            .execute(&self.writer)
            .await?;
        Ok(updated.rows_affected() == 1)
    }

    pub async fn cart(&self, customer_id: i64) -> Result<Vec<CartLine>, sqlx::Error> {
        sqlx::query_as("SELECT product_id, sku, offer_id, quantity FROM cart_lines WHERE customer_id = $1 ORDER BY added_at, sku")
            .bind(customer_id)
            .fetch_all(&self.reader)
            .await
    }

    /// Adds units to the cart (merging with a line of the same variant and offer);
    /// returns the line's new quantity.
    pub async fn cart_add(&self, customer_id: i64, line: &CartLine) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "INSERT INTO cart_lines (customer_id, product_id, sku, offer_id, quantity, added_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (customer_id, sku, offer_id) DO UPDATE SET quantity = quantity + excluded.quantity
             RETURNING quantity",
        )
        .bind(customer_id)
        .bind(&line.product_id)
        .bind(&line.sku)
        .bind(&line.offer_id)
        .bind(line.quantity)
        .bind(now_rfc3339())
        .fetch_one(&self.writer)
        .await
    }

    /// Sets a line's quantity; false when the cart has no such line.
    pub async fn cart_set_quantity(
        &self,
        customer_id: i64,
        sku: &str,
        offer_id: &str,
        quantity: i64,
    ) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE cart_lines SET quantity = $1 WHERE customer_id = $2 AND sku = $3 AND offer_id = $4",
        )
        .bind(quantity)
        .bind(customer_id)
        .bind(sku)
        .bind(offer_id)
        .execute(&self.writer)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Removes one line; false when the cart has no such line.
    pub async fn cart_remove(
        &self,
        customer_id: i64,
        sku: &str,
        offer_id: &str,
    ) -> Result<bool, sqlx::Error> {
        let removed = sqlx::query(
            "DELETE FROM cart_lines WHERE customer_id = $1 AND sku = $2 AND offer_id = $3",
        )
        .bind(customer_id)
        .bind(sku)
        .bind(offer_id)
        .execute(&self.writer)
        .await?;
        Ok(removed.rows_affected() == 1)
    }

    pub async fn cart_clear(&self, customer_id: i64) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM cart_lines WHERE customer_id = $1")
            .bind(customer_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Places an order in one transaction: takes the stock (all or nothing), records the
    /// order and its lines, and empties the cart. Returns the order as stored.
    pub async fn place(
        &self,
        order: &NewOrder<'_>,
        lines: &[Line],
        totals: &Totals,
    ) -> Result<StoredOrder, PlaceError> {
        let id = merchant_order_id();
        let placed = time::OffsetDateTime::now_utc();
        let placed_at = rfc3339(placed);
        let estimated_delivery = rfc3339(order.deliver_at);
        let method = order.shipping_method.as_str().to_string();
        let mut tx = self.writer.begin().await?;
        for line in lines {
            let taken = sqlx::query(
                "UPDATE stock SET quantity = quantity - $1 WHERE sku = $2 AND quantity >= $1",
            )
            .bind(line.quantity)
            .bind(&line.sku)
            .execute(&mut *tx)
            .await?;
            if taken.rows_affected() != 1 {
                return Err(PlaceError::OutOfStock(line.sku.clone()));
            }
        }
        sqlx::query(
            "INSERT INTO orders (id, customer_id, buyer_reference, status, shipping_method, shipping_address, gift_message,
                                 promo_code, subtotal, shipping, tax, discount, total, placed_at, estimated_delivery,
                                 ship_at, deliver_at, gift, po_number)
             VALUES ($1, $2, $3, 'placed', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        )
        .bind(&id)
        .bind(order.customer_id)
        .bind(order.buyer_reference)
        .bind(&method)
        .bind(Json(order.shipping_address))
        .bind(order.gift_message)
        .bind(order.promo_code)
        .bind(totals.subtotal)
        .bind(totals.shipping)
        .bind(totals.tax)
        .bind(totals.discount)
        .bind(totals.total)
        .bind(&placed_at)
        .bind(&estimated_delivery)
        .bind(rfc3339(order.ship_at))
        .bind(&estimated_delivery)
        .bind(order.gift)
        .bind(order.po_number)
        .execute(&mut *tx)
        .await?;
        for (position, line) in lines.iter().enumerate() {
            sqlx::query(
                "INSERT INTO order_lines (order_id, position, product_id, sku, offer_id, title, quantity, unit_price, line_total)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&id)
            .bind(position as i64)
            .bind(&line.product_id)
            .bind(&line.sku)
            .bind(&line.offer_id)
            .bind(&line.title)
            .bind(line.quantity)
            .bind(line.unit_price)
            .bind(line.line_total)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM cart_lines WHERE customer_id = $1")
            .bind(order.customer_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(StoredOrder {
            id,
            customer_email: order.customer_email.to_string(),
            buyer_reference: order.buyer_reference.map(str::to_string),
            status: "placed".into(),
            shipping_method: method,
            shipping_address: order.shipping_address.clone(),
            gift_message: order.gift_message.map(str::to_string),
            gift: order.gift,
            po_number: order.po_number.map(str::to_string),
            promo_code: order.promo_code.map(str::to_string),
            subtotal: totals.subtotal,
            shipping: totals.shipping,
            tax: totals.tax,
            discount: totals.discount,
            total: totals.total,
            placed_at,
            estimated_delivery,
            cancel_reason: None,
            lines: lines.to_vec(),
            shipments: vec![],
            returns: vec![],
        })
    }

    /// Orders, newest first: all of them (`customer` None, for the ground-truth view) or
    /// one customer's, optionally only those with a buyer reference or a merchant order id.
    pub async fn orders(
        &self,
        customer: Option<i64>,
        reference: Option<&str>,
        order_id: Option<&str>,
    ) -> Result<Vec<StoredOrder>, sqlx::Error> {
        // Only the filters given, so SQLite can use the primary key and the
        // (customer, reference) index.
        let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT o.*, c.email FROM orders o JOIN customers c ON c.id = o.customer_id WHERE 1 = 1",
        );
        if let Some(customer) = customer {
            query.push(" AND o.customer_id = ").push_bind(customer);
        }
        if let Some(reference) = reference {
            query
                .push(" AND o.buyer_reference = ")
                .push_bind(reference.to_string());
        }
        if let Some(order_id) = order_id {
            query.push(" AND o.id = ").push_bind(order_id.to_string());
        }
        query.push(" ORDER BY o.placed_at DESC, o.id");
        let rows = query.build().fetch_all(&self.reader).await?;
        let mut orders = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.try_get("id")?;
            let lines = sqlx::query(
                "SELECT product_id, sku, offer_id, title, quantity, unit_price, line_total FROM order_lines WHERE order_id = $1 ORDER BY position",
            )
            .bind(&id)
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(|l| {
                Ok(Line {
                    product_id: l.try_get("product_id")?,
                    sku: l.try_get("sku")?,
                    offer_id: l.try_get("offer_id")?,
                    title: l.try_get("title")?,
                    quantity: l.try_get("quantity")?,
                    unit_price: l.try_get("unit_price")?,
                    line_total: l.try_get("line_total")?,
                    handling_days: 0,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            let shipments = self.shipments(&id).await?;
            let returns = self
                .returns(ReturnFilter {
                    order_id: Some(&id),
                    ..Default::default()
                })
                .await?;
            let address: Json<serde_json::Value> = r.try_get("shipping_address")?;
            orders.push(StoredOrder {
                id,
                customer_email: r.try_get("email")?,
                buyer_reference: r.try_get("buyer_reference")?,
                status: r.try_get("status")?,
                shipping_method: r.try_get("shipping_method")?,
                shipping_address: address.0,
                gift_message: r.try_get("gift_message")?,
                gift: r.try_get("gift")?,
                po_number: r.try_get("po_number")?,
                promo_code: r.try_get("promo_code")?,
                subtotal: r.try_get("subtotal")?,
                shipping: r.try_get("shipping")?,
                tax: r.try_get("tax")?,
                discount: r.try_get("discount")?,
                total: r.try_get("total")?,
                placed_at: r.try_get("placed_at")?,
                estimated_delivery: r.try_get("estimated_delivery")?,
                cancel_reason: r.try_get("cancel_reason")?,
                lines,
                shipments,
                returns,
            });
        }
        Ok(orders)
    }

    /// One of the customer's orders, by merchant order id.
    pub async fn customer_order(
        &self,
        customer_id: i64,
        order_id: &str,
    ) -> Result<Option<StoredOrder>, sqlx::Error> {
        Ok(self
            .orders(Some(customer_id), None, Some(order_id))
            .await?
            .pop())
    }

    /// Forgets every order, cart and session and restocks the catalogue (tests only).
    pub async fn reset(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.writer.begin().await?;
        for table in [
            "return_lines",
            "returns",
            "shipments",
            "order_lines",
            "orders",
            "cart_lines",
            "sessions",
            "stock",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.stock_catalogue().await
    }

    async fn shipments(&self, order_id: &str) -> Result<Vec<Shipment>, sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM shipments WHERE order_id = $1 ORDER BY id")
            .bind(order_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                let skus: Json<Vec<String>> = r.try_get("skus")?;
                Ok(Shipment {
                    id: r.try_get("id")?,
                    carrier: r.try_get("carrier")?,
                    tracking_number: r.try_get("tracking_number")?,
                    skus: skus.0,
                    shipped_at: r.try_get("shipped_at")?,
                    delivered_at: r.try_get("delivered_at")?,
                })
            })
            .collect()
    }

    /// Returns, oldest first, filtered by customer, order, reference or id.
    pub async fn returns(
        &self,
        filter: ReturnFilter<'_>,
    ) -> Result<Vec<ReturnRecord>, sqlx::Error> {
        let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT r.*, c.email FROM returns r JOIN orders o ON o.id = r.order_id
             JOIN customers c ON c.id = o.customer_id WHERE 1 = 1",
        );
        if let Some(customer) = filter.customer_id {
            query.push(" AND o.customer_id = ").push_bind(customer);
        }
        if let Some(order_id) = filter.order_id {
            query
                .push(" AND r.order_id = ")
                .push_bind(order_id.to_string());
        }
        if let Some(reference) = filter.reference {
            query
                .push(" AND r.reference = ")
                .push_bind(reference.to_string());
        }
        if let Some(id) = filter.id {
            query.push(" AND r.id = ").push_bind(id.to_string());
        }
        query.push(" ORDER BY r.created_at, r.id");
        let rows = query.build().fetch_all(&self.reader).await?;
        let mut returns = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            let lines: Vec<(String, String, i64, i64)> = sqlx::query_as(
                "SELECT sku, product_id, quantity, unit_price FROM return_lines WHERE return_id = $1 ORDER BY order_line",
            )
            .bind(&id)
            .fetch_all(&self.reader)
            .await?;
            returns.push(return_from_row(row, lines)?);
        }
        Ok(returns)
    }

    /// One return, by id.
    pub async fn return_record(&self, id: &str) -> Result<Option<ReturnRecord>, sqlx::Error> {
        Ok(self
            .returns(ReturnFilter {
                id: Some(id),
                ..Default::default()
            })
            .await?
            .pop())
    }

    /// One of the customer's returns, by id.
    pub async fn customer_return(
        &self,
        customer_id: i64,
        id: &str,
    ) -> Result<Option<ReturnRecord>, sqlx::Error> {
        Ok(self
            .returns(ReturnFilter {
                customer_id: Some(customer_id),
                id: Some(id),
                ..Default::default()
            })
            .await?
            .pop())
    }

    /// Ships the orders whose time has come and delivers those that have arrived; marks
    /// the returns whose parcel is back received, and credits those whose refund is due.
    pub async fn advance(
        &self,
        now: time::OffsetDateTime,
        clock: crate::fulfilment::Clock,
    ) -> Result<(), sqlx::Error> {
        use rand::SeedableRng;
        let now = rfc3339(now);
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM orders WHERE status = 'placed' AND ship_at <= $1 LIMIT 500",
        )
        .bind(&now)
        .fetch_all(&self.reader)
        .await?;
        let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
        let mut tx = self.writer.begin().await?;
        for id in due {
            let product_ids: Vec<String> =
                sqlx::query_scalar("SELECT product_id FROM order_lines WHERE order_id = $1")
                    .bind(&id)
                    .fetch_all(&mut *tx)
                    .await?;
            let catalogue = crate::catalogue::Catalogue::get();
            let store_cancels = product_ids.iter().any(|p| {
                catalogue.product(p).and_then(|p| p.test_behavior)
                    == Some(crate::catalogue::TestBehavior::RetailerCancelled)
            });
            if store_cancels {
                self.cancel_in(&mut tx, &id, "retailer_cancelled").await?;
                continue;
            }
            // Guarded by status: an order cancelled meanwhile does not ship.
            let shipped = sqlx::query(
                "UPDATE orders SET status = 'shipped' WHERE id = $1 AND status = 'placed'",
            )
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            if shipped.rows_affected() == 0 {
                continue;
            }
            let skus: Vec<String> = sqlx::query_scalar(
                "SELECT sku FROM order_lines WHERE order_id = $1 ORDER BY position",
            )
            .bind(&id)
            .fetch_all(&mut *tx)
            .await?;
            // Orders of several lines sometimes leave in two boxes.
            let parts: Vec<Vec<String>> =
                if skus.len() >= 2 && rand::Rng::random_bool(&mut rng, 0.5) {
                    let (a, b) = skus.split_at(skus.len() / 2);
                    vec![a.to_vec(), b.to_vec()]
                } else {
                    vec![skus]
                };
            for (n, part) in parts.into_iter().enumerate() {
                let (carrier, tracking) = crate::fulfilment::tracking_number(&mut rng);
                sqlx::query(
                    "INSERT INTO shipments (id, order_id, carrier, tracking_number, skus, shipped_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(format!("{id}-S{}", n + 1))
                .bind(&id)
                .bind(carrier)
                .bind(tracking)
                .bind(Json(part))
                .bind(&now)
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query(
            "UPDATE shipments SET delivered_at = $1 WHERE delivered_at IS NULL AND order_id IN
               (SELECT id FROM orders WHERE status = 'shipped' AND deliver_at <= $1)",
        )
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE orders SET status = 'delivered' WHERE status = 'shipped' AND deliver_at <= $1",
        )
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        self.advance_returns(&mut tx, &now, clock).await?;
        tx.commit().await
    }

    /// Within `tx`: approved returns are received at their `receive_at`, and received
    /// ones credited at their `credit_at`, with the refund.
    async fn advance_returns(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        now: &str,
        clock: crate::fulfilment::Clock,
    ) -> Result<(), sqlx::Error> {
        // Returns approved before the store kept their schedule: from their approval.
        let unscheduled: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, created_at FROM returns WHERE status = 'approved' AND receive_at IS NULL LIMIT 500",
        )
        .fetch_all(&mut **tx)
        .await?;
        for (id, created_at) in unscheduled {
            let approved = parse_rfc3339(&created_at).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let (receive_at, credit_at) = return_schedule(clock, approved);
            sqlx::query("UPDATE returns SET receive_at = $1, credit_at = $2 WHERE id = $3")
                .bind(rfc3339(receive_at))
                .bind(rfc3339(credit_at))
                .bind(&id)
                .execute(&mut **tx)
                .await?;
        }
        sqlx::query(
            "UPDATE returns SET status = 'received', received_at = receive_at
             WHERE status = 'approved' AND receive_at <= $1",
        )
        .bind(now)
        .execute(&mut **tx)
        .await?;
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM returns WHERE status = 'received' AND credit_at <= $1 LIMIT 500",
        )
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
        for id in due {
            // The goods of this return and of the order's earlier returns (not denied).
            let (goods, earlier, subtotal, tax): (i64, i64, i64, i64) = sqlx::query_as(
                "SELECT
                   (SELECT COALESCE(SUM(quantity * unit_price), 0) FROM return_lines WHERE return_id = r.id),
                   (SELECT COALESCE(SUM(el.quantity * el.unit_price), 0)
                      FROM return_lines el JOIN returns e ON e.id = el.return_id
                     WHERE e.order_id = r.order_id AND e.status <> 'denied'
                       AND (e.created_at < r.created_at OR (e.created_at = r.created_at AND e.id < r.id))),
                   o.subtotal, o.tax
                 FROM returns r JOIN orders o ON o.id = r.order_id WHERE r.id = $1",
            )
            .bind(&id)
            .fetch_one(&mut **tx)
            .await?;
            sqlx::query(
                "UPDATE returns SET status = 'credited', credited_at = credit_at, refund = $1
                 WHERE id = $2 AND status = 'received'",
            )
            .bind(crate::pricing::refund(goods, earlier, subtotal, tax))
            .bind(&id)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Cancels a customer's order that has not shipped yet.
    pub async fn cancel(
        &self,
        customer_id: i64,
        order_id: &str,
        reason: &str,
    ) -> Result<CancelOutcome, sqlx::Error> {
        let mut tx = self.writer.begin().await?;
        let owner: Option<(String, i64)> =
            sqlx::query_as("SELECT status, customer_id FROM orders WHERE id = $1")
                .bind(order_id)
                .fetch_optional(&mut *tx)
                .await?;
        match owner {
            Some((_, owner)) if owner != customer_id => return Ok(CancelOutcome::NotFound),
            None => return Ok(CancelOutcome::NotFound),
            Some(_) => {}
        }
        let outcome = self.cancel_in(&mut tx, order_id, reason).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Within `tx`: cancels the order if it has not shipped and puts its items back in
    /// stock.
    async fn cancel_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        order_id: &str,
        reason: &str,
    ) -> Result<CancelOutcome, sqlx::Error> {
        let cancelled = sqlx::query(
            "UPDATE orders SET status = 'cancelled', cancelled_at = $1, cancel_reason = $2 WHERE id = $3 AND status = 'placed'",
        )
        .bind(now_rfc3339())
        .bind(reason)
        .bind(order_id)
        .execute(&mut **tx)
        .await?;
        if cancelled.rows_affected() == 0 {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
                    .bind(order_id)
                    .fetch_optional(&mut **tx)
                    .await?;
            return Ok(status.map_or(CancelOutcome::NotFound, CancelOutcome::NotCancellable));
        }
        sqlx::query(
            "UPDATE stock SET quantity = quantity + (SELECT SUM(l.quantity) FROM order_lines l WHERE l.order_id = $1 AND l.sku = stock.sku)
             WHERE sku IN (SELECT sku FROM order_lines WHERE order_id = $1)",
        )
        .bind(order_id)
        .execute(&mut **tx)
        .await?;
        Ok(CancelOutcome::Cancelled)
    }

    /// What of a customer's order can still be returned: refused unless the order is
    /// delivered and its return window open.
    pub async fn returnable(
        &self,
        customer_id: i64,
        order_id: &str,
        clock: crate::fulfilment::Clock,
    ) -> Result<Returnable, ReturnError> {
        let mut conn = self.reader.acquire().await?;
        returnable_in(&mut conn, customer_id, order_id, clock).await
    }

    /// Records a return request in one transaction. A reference the customer used before
    /// for this order gives that return back (and creates nothing); for another order it
    /// is refused. Otherwise the units asked for (at most what is left of each SKU) are
    /// returned: approved with a label, or denied when any item is final sale.
    pub async fn request_return(
        &self,
        new: &NewReturn<'_>,
        clock: crate::fulfilment::Clock,
    ) -> Result<ReturnOutcome, ReturnError> {
        let mut tx = self.writer.begin().await?;
        let owned: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM orders WHERE id = $1 AND customer_id = $2")
                .bind(new.order_id)
                .bind(new.customer_id)
                .fetch_optional(&mut *tx)
                .await?;
        if owned.is_none() {
            return Err(ReturnError::NotFound);
        }
        if let Some(reference) = new.reference {
            let existing: Option<(String, String)> = sqlx::query_as(
                "SELECT id, order_id FROM returns WHERE customer_id = $1 AND reference = $2",
            )
            .bind(new.customer_id)
            .bind(reference)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((id, order_id)) = existing {
                drop(tx);
                if order_id != new.order_id {
                    return Err(ReturnError::ReferenceInUse(order_id));
                }
                return self
                    .return_record(&id)
                    .await?
                    .map(ReturnOutcome::Existing)
                    .ok_or(ReturnError::NotFound);
            }
        }
        let returnable = returnable_in(&mut tx, new.customer_id, new.order_id, clock).await?;
        let chosen = returnable.choose(&new.items)?;
        let lines = returnable.allocate(&chosen);
        let catalogue = crate::catalogue::Catalogue::get();
        let final_sale = lines.iter().any(|(l, _)| {
            catalogue
                .product(&l.product_id)
                .is_some_and(|p| p.final_sale)
        });
        let id = format!(
            "RT-{}",
            rand::Rng::random_range(&mut rand::rng(), 1_000_000_000u64..10_000_000_000)
        );
        let approved = time::OffsetDateTime::now_utc();
        let (status, decision, schedule) = if final_sale {
            ("denied", "Final-sale items cannot be returned", None)
        } else {
            (
                "approved",
                "Approved: print the label and drop the parcel at any carrier location",
                Some(return_schedule(clock, approved)),
            )
        };
        let skus: Vec<&str> = chosen.iter().map(|(sku, _)| sku.as_str()).collect();
        sqlx::query(
            "INSERT INTO returns (id, order_id, customer_id, reference, status, reason, notes, skus, created_at, decision,
                                  receive_at, credit_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&id)
        .bind(new.order_id)
        .bind(new.customer_id)
        .bind(new.reference)
        .bind(status)
        .bind(new.reason)
        .bind(new.notes)
        .bind(Json(&skus))
        .bind(rfc3339(approved))
        .bind(decision)
        .bind(schedule.map(|(receive, _)| rfc3339(receive)))
        .bind(schedule.map(|(_, credit)| rfc3339(credit)))
        .execute(&mut *tx)
        .await?;
        for (line, quantity) in &lines {
            sqlx::query(
                "INSERT INTO return_lines (return_id, order_line, sku, product_id, quantity, unit_price)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&id)
            .bind(line.position)
            .bind(&line.sku)
            .bind(&line.product_id)
            .bind(quantity)
            .bind(line.unit_price)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.return_record(&id)
            .await?
            .map(ReturnOutcome::Created)
            .ok_or(ReturnError::NotFound)
    }

    /// What the shopper has entered in the HTML checkout so far.
    pub async fn checkout_draft(
        &self,
        customer_id: i64,
    ) -> Result<Option<serde_json::Value>, sqlx::Error> {
        let draft: Option<Json<serde_json::Value>> =
            sqlx::query_scalar("SELECT checkout FROM checkout_drafts WHERE customer_id = $1")
                .bind(customer_id)
                .fetch_optional(&self.reader)
                .await?;
        Ok(draft.map(|d| d.0))
    }

    pub async fn save_checkout_draft(
        &self,
        customer_id: i64,
        draft: &serde_json::Value,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO checkout_drafts (customer_id, checkout) VALUES ($1, $2)
             ON CONFLICT (customer_id) DO UPDATE SET checkout = excluded.checkout",
        )
        .bind(customer_id)
        .bind(Json(draft))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// When a return approved at `approved` is received, and when it is credited.
fn return_schedule(
    clock: crate::fulfilment::Clock,
    approved: time::OffsetDateTime,
) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let receive = clock.after(approved, crate::fulfilment::RETURN_TRANSIT_DAYS);
    (
        receive,
        clock.after(receive, crate::fulfilment::REFUND_DAYS),
    )
}

/// Within `conn`: the customer's order as returnable, if it is delivered and within its
/// return window.
async fn returnable_in(
    conn: &mut sqlx::SqliteConnection,
    customer_id: i64,
    order_id: &str,
    clock: crate::fulfilment::Clock,
) -> Result<Returnable, ReturnError> {
    let row =
        sqlx::query("SELECT status, deliver_at FROM orders WHERE id = $1 AND customer_id = $2")
            .bind(order_id)
            .bind(customer_id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(ReturnError::NotFound)?;
    let status: String = row.try_get("status")?;
    if status != "delivered" {
        return Err(ReturnError::NotDelivered(status));
    }
    let delivered: String = row.try_get("deliver_at")?;
    let window_ends = parse_rfc3339(&delivered)
        .map(|d| clock.after(d, crate::fulfilment::RETURN_WINDOW_DAYS))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    if time::OffsetDateTime::now_utc() > window_ends {
        return Err(ReturnError::WindowClosed);
    }
    let rows = sqlx::query(
        "SELECT l.position, l.sku, l.product_id, l.title, l.quantity, l.unit_price,
                COALESCE((SELECT SUM(rl.quantity) FROM return_lines rl JOIN returns r ON r.id = rl.return_id
                           WHERE r.order_id = l.order_id AND rl.order_line = l.position AND r.status <> 'denied'), 0)
                  AS returned
         FROM order_lines l WHERE l.order_id = $1 ORDER BY l.position",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await?;
    let lines = rows
        .iter()
        .map(|r| {
            Ok(ReturnableLine {
                position: r.try_get("position")?,
                sku: r.try_get("sku")?,
                product_id: r.try_get("product_id")?,
                title: r.try_get("title")?,
                quantity: r.try_get("quantity")?,
                returned: r.try_get("returned")?,
                unit_price: r.try_get("unit_price")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Returnable {
        order_id: order_id.to_string(),
        lines,
    })
}

fn return_from_row(
    r: &sqlx::sqlite::SqliteRow,
    lines: Vec<(String, String, i64, i64)>,
) -> Result<ReturnRecord, sqlx::Error> {
    let id: String = r.try_get("id")?;
    let status: String = r.try_get("status")?;
    let lines: Vec<ReturnLine> = lines
        .into_iter()
        .map(|(sku, product_id, quantity, unit_price)| ReturnLine {
            sku,
            product_id,
            quantity,
            unit_price,
        })
        .collect();
    let mut skus: Vec<String> = Vec::new();
    for line in &lines {
        if !skus.contains(&line.sku) {
            skus.push(line.sku.clone());
        }
    }
    Ok(ReturnRecord {
        label_url: (status != "denied").then(|| format!("/api/returns/{id}/label")),
        order_id: r.try_get("order_id")?,
        customer_email: r.try_get("email")?,
        reference: r.try_get("reference")?,
        reason: r.try_get("reason")?,
        notes: r.try_get("notes")?,
        lines,
        skus,
        created_at: r.try_get("created_at")?,
        decision: r.try_get("decision")?,
        received_at: r.try_get("received_at")?,
        credited_at: r.try_get("credited_at")?,
        refund: r.try_get("refund")?,
        currency: crate::pricing::CURRENCY,
        id,
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(position: i64, sku: &str, quantity: i64, returned: i64) -> ReturnableLine {
        ReturnableLine {
            position,
            sku: sku.into(),
            product_id: sku.into(),
            title: sku.into(),
            quantity,
            returned,
            unit_price: 100 + position,
        }
    }

    #[test]
    fn choosing_what_to_return() {
        // Two units of A from two sellers (one already returned), three of B.
        let order = Returnable {
            order_id: "112".into(),
            lines: vec![line(0, "A", 1, 1), line(1, "B", 3, 0), line(2, "A", 1, 0)],
        };
        let skus = order.skus();
        assert_eq!(
            skus.iter()
                .map(|s| (s.sku.as_str(), s.bought, s.remaining))
                .collect::<Vec<_>>(),
            vec![("A", 2, 1), ("B", 3, 3)]
        );
        let everything = order.choose(&ReturnItems::Everything).unwrap();
        assert_eq!(everything, vec![("A".into(), 1), ("B".into(), 3)]);
        // A's remaining unit comes from the second seller's line.
        let lines = order.allocate(&everything);
        assert_eq!(
            lines
                .iter()
                .map(|(l, q)| (l.position, *q))
                .collect::<Vec<_>>(),
            vec![(2, 1), (1, 3)]
        );
        assert_eq!(
            order
                .choose(&ReturnItems::Skus(vec!["B".into(), "B".into()]))
                .unwrap(),
            vec![("B".into(), 3)]
        );
        assert!(matches!(
            order.choose(&ReturnItems::Quantities(vec![("B".into(), 2), ("B".into(), 2)])),
            Err(ReturnError::QuantityExceeded { ref sku, remaining: 3 }) if sku == "B"
        ));
        assert!(matches!(
            order.choose(&ReturnItems::Quantities(vec![("B".into(), 0)])),
            Err(ReturnError::InvalidQuantity(_))
        ));
        assert!(matches!(
            order.choose(&ReturnItems::Skus(vec!["C".into()])),
            Err(ReturnError::UnknownSku(ref sku)) if sku == "C"
        ));
        let returned = Returnable {
            order_id: "112".into(),
            lines: vec![line(0, "A", 1, 1)],
        };
        assert!(matches!(
            returned.choose(&ReturnItems::Everything),
            Err(ReturnError::NothingToReturn)
        ));
        assert!(matches!(
            returned.choose(&ReturnItems::Skus(vec!["A".into()])),
            Err(ReturnError::QuantityExceeded { remaining: 0, .. })
        ));
    }
}
