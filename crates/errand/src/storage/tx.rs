//! One transaction type over both backends, so that work done inside a transaction is
//! written as plain functions taking `&mut Tx` and composes: a state change, its events,
//! its webhooks and its jobs commit together or not at all.
//!
//! Committing is where side effects happen: [`Tx::commit`] wakes this process's job
//! workers when the transaction made jobs available, so no caller has to remember to.

use std::sync::Arc;

use sqlx::{Postgres, Sqlite, Transaction};
use tokio::sync::Notify;

use super::Db;

/// An open transaction on the writer connection of SQLite or on PostgreSQL.
/// Dropped without [`Tx::commit`], it rolls back.
pub struct Tx {
    pub(crate) conn: TxConn,
    /// SQLite's in-process wake-up for job workers (PostgreSQL's go by `NOTIFY`, sent
    /// inside the transaction and delivered at commit).
    wake: Option<Arc<Notify>>,
    wake_on_commit: bool,
}

/// The backend's own transaction; reached through [`on_tx!`](crate::on_tx).
pub enum TxConn {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// Runs `$body` with `$conn` bound to the transaction's connection
/// (`&mut SqliteConnection` or `&mut PgConnection`): the body is expanded once per
/// backend, so each is type-checked against its own driver, and one SQL text serves
/// both.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match &mut $tx.conn {
            $crate::storage::TxConn::Sqlite(transaction) => {
                let $conn: &mut sqlx::SqliteConnection = &mut *transaction;
                $body
            }
            $crate::storage::TxConn::Postgres(transaction) => {
                let $conn: &mut sqlx::PgConnection = &mut *transaction;
                $body
            }
        }
    };
}

impl Db {
    /// Begins a transaction on the writer.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(sqlite) => Tx {
                conn: TxConn::Sqlite(sqlite.writer.begin().await?),
                wake: Some(sqlite.jobs_ready.clone()),
                wake_on_commit: false,
            },
            Db::Postgres(pool) => Tx {
                conn: TxConn::Postgres(pool.begin().await?),
                wake: None,
                wake_on_commit: false,
            },
        })
    }
}

impl Tx {
    /// Commits, then wakes this process's workers if the transaction made jobs
    /// available.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.conn {
            TxConn::Sqlite(transaction) => transaction.commit().await?,
            TxConn::Postgres(transaction) => transaction.commit().await?,
        }
        if self.wake_on_commit
            && let Some(wake) = &self.wake
        {
            wake.notify_waiters();
        }
        Ok(())
    }

    /// Marks that committing makes jobs available to run now or later (the queue calls
    /// it; the workers then look at what is due).
    pub(crate) fn wake_workers_on_commit(&mut self) {
        self.wake_on_commit = true;
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.conn, TxConn::Postgres(_))
    }

    /// `FOR UPDATE` on PostgreSQL, to lock a row read before it is written; SQLite's
    /// single writer needs none.
    pub fn for_update(&self) -> &'static str {
        if self.is_postgres() {
            " FOR UPDATE"
        } else {
            ""
        }
    }

    /// `FOR UPDATE SKIP LOCKED` on PostgreSQL, so that concurrent claimers take
    /// different rows; SQLite's single writer needs none.
    pub fn skip_locked(&self) -> &'static str {
        if self.is_postgres() {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        }
    }
}
