//! E-mails to an order's end customer (`customer_notifications.email`): one when the
//! order is placed, one when it ships and one when it is delivered. Each is a durable
//! job committed with the change it announces, sent over SMTP (`smtp_url`) or, with
//! none configured, written as an `.eml` file to `mail_dir`. What was sent is kept on
//! the order (`customer_notifications.sent`, `delivered`).
//!
//! An e-mail is sent at least once: a process killed between the SMTP server's
//! acceptance and the record of it sends it again.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::types::Json;
use uuid::Uuid;

use crate::config::SecretText;
use crate::orders::model::{OrderRecord, events};
use crate::queue::worker::{Handlers, handler};
use crate::queue::{Job, JobKind, NewJob, Outcome};
use crate::storage::{Db, DbId};
use crate::{on_db, on_tx};

/// Tries of one e-mail before it counts as failed.
const ATTEMPTS: i32 = 8;

/// Where customer e-mails go (flattened into the configuration's keys).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MailSettings {
    /// `smtp://[user:password@]host[:port]` (plain, or STARTTLS-less relays such as a
    /// local Postfix): where customer e-mails are sent. Unset, they are written as
    /// `.eml` files to `mail_dir`.
    pub smtp_url: Option<SecretText>,
    /// The sender of customer e-mails, e.g. `Shop <orders@shop.example>`.
    pub mail_from: Option<String>,
    /// Where e-mails are written when no `smtp_url` is set (default `<data_dir>/mail`).
    pub mail_dir: Option<PathBuf>,
}

impl MailSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.smtp_url {
            smtp_transport(url.expose())
                .map_err(|e| anyhow::anyhow!("invalid configuration: smtp_url: {e}"))?;
        }
        if let Some(from) = &self.mail_from {
            from.parse::<Mailbox>().map_err(|e| {
                anyhow::anyhow!(
                    "invalid configuration: mail_from {from:?} is not an e-mail address ({e})"
                )
            })?;
        }
        Ok(())
    }
}

/// An SMTP connection from `smtp://[user:password@]host[:port]` (port 25 by default).
/// Errand speaks plain SMTP: relay through a local mail server (Postfix, an SMTP
/// sidecar) to reach a provider that requires TLS.
fn smtp_transport(text: &str) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let url = url::Url::parse(text).map_err(|e| {
        anyhow::anyhow!("not a URL like smtp://user:password@mail.example:25 ({e})")
    })?;
    if url.scheme() != "smtp" {
        anyhow::bail!(
            "scheme {:?} is not supported: use smtp:// to a relay on a trusted network",
            url.scheme()
        );
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow::anyhow!("the URL has no host"))?;
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(url.port().unwrap_or(25))
        .timeout(Some(Duration::from_secs(30)));
    if !url.username().is_empty() {
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        builder = builder.credentials(Credentials::new(
            decode(url.username()),
            decode(url.password().unwrap_or_default()),
        ));
    }
    Ok(builder.build())
}

/// Which e-mail: named as in `customer_notifications.sent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Placed,
    Shipped,
    Delivered,
}

impl Notice {
    const ALL: [Notice; 3] = [Notice::Placed, Notice::Shipped, Notice::Delivered];

    pub fn as_str(self) -> &'static str {
        match self {
            Notice::Placed => "order_placed",
            Notice::Shipped => "order_shipped",
            Notice::Delivered => "order_delivered",
        }
    }

    fn parse(text: &str) -> Option<Notice> {
        Notice::ALL.into_iter().find(|n| n.as_str() == text)
    }

    /// The e-mail an order event calls for, if any.
    fn for_event(event: &str) -> Option<Notice> {
        match event {
            events::PLACED => Some(Notice::Placed),
            events::SHIPPED => Some(Notice::Shipped),
            events::DELIVERED => Some(Notice::Delivered),
            _ => None,
        }
    }

    fn subject(self) -> &'static str {
        match self {
            Notice::Placed => "Your order is placed",
            Notice::Shipped => "Your order has shipped",
            Notice::Delivered => "Your order was delivered",
        }
    }
}

/// The e-mail jobs a change with these events causes, for an order that asked for them.
pub fn jobs_for(order: &OrderRecord, events: &[(&'static str, Value)]) -> Vec<NewJob> {
    if order.options.notify_email.is_none() {
        return vec![];
    }
    events
        .iter()
        .filter_map(|(event, _)| Notice::for_event(event))
        .map(|notice| NewJob {
            payload: json!({"notice": notice.as_str()}),
            ..NewJob::now(JobKind::NotifyCustomer, Some(order.id), ATTEMPTS)
        })
        .collect()
}

/// What was sent to the customer, kept on the order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentEmails {
    pub sent: Vec<String>,
    /// `Some(true)` once one was accepted, `Some(false)` when the last one failed.
    pub delivered: Option<bool>,
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Directory(AsyncFileTransport<Tokio1Executor>),
}

/// Sends the customer e-mails of [`JobKind::NotifyCustomer`] jobs.
#[derive(Clone)]
pub struct Notifier {
    db: Db,
    transport: std::sync::Arc<Transport>,
    from: Mailbox,
}

impl Notifier {
    pub fn new(
        db: Db,
        settings: &MailSettings,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<Notifier> {
        let transport = match &settings.smtp_url {
            Some(url) => Transport::Smtp(smtp_transport(url.expose())?),
            None => {
                let dir = settings
                    .mail_dir
                    .clone()
                    .unwrap_or_else(|| data_dir.join("mail"));
                crate::storage::files::private_dir(&dir)?;
                Transport::Directory(AsyncFileTransport::<Tokio1Executor>::new(dir))
            }
        };
        let from = settings
            .mail_from
            .as_deref()
            .unwrap_or("Errand <errand@localhost>")
            .parse()?;
        Ok(Notifier {
            db,
            transport: std::sync::Arc::new(transport),
            from,
        })
    }

    pub fn register(&self, handlers: &mut Handlers) {
        let notifier = self.clone();
        handlers.register(
            JobKind::NotifyCustomer,
            handler(move |job| {
                let notifier = notifier.clone();
                async move { notifier.run(job).await }
            }),
        );
    }

    async fn run(&self, job: Job) -> Result<Outcome, sqlx::Error> {
        let notice = job.payload["notice"].as_str().and_then(Notice::parse);
        let (Some(order_id), Some(notice)) = (job.order_id.map(|id| id.0), notice) else {
            return Ok(Outcome::Dead(format!(
                "not a customer e-mail job: {}",
                job.payload.0
            )));
        };
        let Some(order) = crate::orders::store::load_record(&self.db, order_id).await? else {
            return Ok(Outcome::Done);
        };
        let Some(to) = order.options.notify_email.clone() else {
            return Ok(Outcome::Done);
        };
        if sent_emails(&self.db, order_id)
            .await?
            .sent
            .iter()
            .any(|s| s == notice.as_str())
        {
            return Ok(Outcome::Done);
        }
        let message = match self.message(&order, notice, &to) {
            Ok(message) => message,
            Err(e) => {
                record(&self.db, order_id, None, false).await?;
                return Ok(Outcome::Dead(format!(
                    "the e-mail to {to} cannot be built: {e}"
                )));
            }
        };
        let sent = match &*self.transport {
            Transport::Smtp(smtp) => smtp.send(message).await.map(|_| ()).map_err(|e| {
                let permanent = e.is_permanent();
                (e.to_string(), permanent)
            }),
            Transport::Directory(dir) => dir
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| (e.to_string(), false)),
        };
        match sent {
            Ok(()) => {
                record(&self.db, order_id, Some(notice), true).await?;
                tracing::info!(%order_id, notice = notice.as_str(), "customer e-mail sent");
                Ok(Outcome::Done)
            }
            Err((error, permanent)) if permanent || job.is_last_attempt() => {
                record(&self.db, order_id, None, false).await?;
                tracing::warn!(%order_id, notice = notice.as_str(), %error, "customer e-mail failed");
                Ok(Outcome::Dead(error))
            }
            Err((error, _)) => Ok(Outcome::Retry { error, after: None }),
        }
    }

    fn message(&self, order: &OrderRecord, notice: Notice, to: &str) -> anyhow::Result<Message> {
        let name = format!(
            "{} {}",
            order.shipping_address.first_name, order.shipping_address.last_name
        );
        let items: Vec<String> = order
            .items
            .iter()
            .filter(|i| i.status != crate::orders::model::OrderItemStatus::Skipped)
            .map(|i| format!("  - {} × {}", i.quantity, i.url))
            .collect();
        let merchant_order = order
            .job_result
            .iter()
            .flat_map(|j| &j.merchant_order_ids)
            .map(|m| m.merchant_order_id.as_str())
            .next()
            .unwrap_or("");
        let what = match notice {
            Notice::Placed => "has been placed with the retailer",
            Notice::Shipped => "is on its way",
            Notice::Delivered => "has been delivered",
        };
        let body = format!(
            "Hello {name},\n\nYour order {what}.\n\nOrder: {id}\nRetailer order number: {merchant_order}\nItems:\n{items}\n",
            name = name.trim(),
            id = order.id,
            items = items.join("\n"),
        );
        Ok(Message::builder()
            .from(self.from.clone())
            .to(to.parse()?)
            .subject(notice.subject())
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(body)?)
    }
}

async fn sent_emails(db: &Db, order_id: Uuid) -> Result<SentEmails, sqlx::Error> {
    let stored: Option<Option<Json<SentEmails>>> = on_db!(db, reader, |pool| {
        sqlx::query_scalar("SELECT customer_emails FROM orders WHERE id = $1")
            .bind(DbId(order_id))
            .fetch_optional(pool)
            .await
    })?;
    Ok(stored.flatten().map(|j| j.0).unwrap_or_default())
}

/// Records an e-mail sent (or that the last one failed) on the order.
async fn record(
    db: &Db,
    order_id: Uuid,
    sent: Option<Notice>,
    delivered: bool,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    let lock = tx.for_update();
    let stored: Option<Option<Json<SentEmails>>> = on_tx!(tx, |conn| {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT customer_emails FROM orders WHERE id = $1{lock}"
        )))
        .bind(DbId(order_id))
        .fetch_optional(&mut *conn)
        .await
    })?;
    let mut emails = stored.flatten().map(|j| j.0).unwrap_or_default();
    if let Some(notice) = sent
        && !emails.sent.iter().any(|s| s == notice.as_str())
    {
        emails.sent.push(notice.as_str().to_string());
    }
    // Once one reached the recipient, that stays known.
    emails.delivered = Some(delivered || emails.delivered == Some(true));
    on_tx!(tx, |conn| {
        sqlx::query("UPDATE orders SET customer_emails = $1 WHERE id = $2")
            .bind(Json(&emails))
            .bind(DbId(order_id))
            .execute(&mut *conn)
            .await
            .map(|_| ())
    })?;
    tx.commit().await
}
