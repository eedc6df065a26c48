//! The database: SQLite (embedded default, one node) or PostgreSQL (many nodes).
//!
//! Both backends run the same query text (`$1` placeholders work on both); where a
//! function needs a pool it uses [`on_db!`], and inside a transaction ([`Tx`]) it uses
//! [`on_tx!`](crate::on_tx): each expands the body once per backend so each is
//! type-checked against its own driver.

pub mod files;
mod tx;
mod types;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use tx::{Tx, TxConn};
pub use types::{DbId, Timestamp};

/// How durable SQLite commits are. `full` survives power loss; `normal` can lose the last
/// commits on power loss (never on a process crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteDurability {
    Full,
    Normal,
}

#[derive(Debug, Clone)]
pub struct DbOptions {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub url: String,
    /// Connections to PostgreSQL, or reader connections to SQLite.
    pub pool_size: u32,
    pub sqlite_durability: SqliteDurability,
}

/// SQLite allows one writer at a time; giving writes a single connection of their own
/// queues them in the process instead of in SQLite's busy handler (which sleeps), and
/// lets readers proceed in parallel under WAL.
#[derive(Clone, Debug)]
pub struct SqliteDb {
    pub writer: SqlitePool,
    pub reader: SqlitePool,
    /// Wakes this process's job workers after a commit that made jobs available
    /// (SQLite has no `LISTEN/NOTIFY`, and its workers all live in this process); see
    /// [`Tx::commit`].
    pub jobs_ready: std::sync::Arc<tokio::sync::Notify>,
}

#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqliteDb),
    Postgres(PgPool),
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Runs `$body` with `$pool` bound to the pool for the given access (`reader` or
/// `writer`) of whichever backend `$db` is.
#[macro_export]
macro_rules! on_db {
    ($db:expr, reader, |$pool:ident| $body:expr) => {
        match $db {
            $crate::storage::Db::Sqlite(sqlite) => {
                let $pool = &sqlite.reader;
                $body
            }
            $crate::storage::Db::Postgres(postgres) => {
                let $pool = postgres;
                $body
            }
        }
    };
    ($db:expr, writer, |$pool:ident| $body:expr) => {
        match $db {
            $crate::storage::Db::Sqlite(sqlite) => {
                let $pool = &sqlite.writer;
                $body
            }
            $crate::storage::Db::Postgres(postgres) => {
                let $pool = postgres;
                $body
            }
        }
    };
}

impl Db {
    /// Opens the database named by the URL, creating an SQLite file (and its directory)
    /// if it does not exist yet. Does not migrate.
    pub async fn connect(options: &DbOptions) -> anyhow::Result<Db> {
        let url = options.url.as_str();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let connect = PgConnectOptions::from_str(url)
                .context("ERRAND_DATABASE_URL is not a valid PostgreSQL URL")?
                .application_name("errand")
                .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
            let pool = PgPoolOptions::new()
                .max_connections(options.pool_size.max(2))
                // Long enough to ride out a burst; short enough that a client hears 503
                // soon while the server is away.
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(connect)
                .await
                .with_context(|| format!("cannot connect to PostgreSQL at {}", redact_url(url)))?;
            Ok(Db::Postgres(pool))
        } else if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            Self::open_sqlite(Path::new(path), options).await
        } else {
            anyhow::bail!(
                "database URL must start with sqlite:// or postgres:// (got {})",
                redact_url(url)
            )
        }
    }

    async fn open_sqlite(path: &Path, options: &DbOptions) -> anyhow::Result<Db> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            files::private_dir(dir)?;
        }
        // Made before SQLite opens it, so that it (and the -wal and -shm files SQLite
        // gives the same mode) is the owner's alone.
        files::private_file(path)?;
        let synchronous = match options.sqlite_durability {
            SqliteDurability::Full => SqliteSynchronous::Full,
            SqliteDurability::Normal => SqliteSynchronous::Normal,
        };
        let base = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // Reads from the OS page cache without a syscall per page. The mapped pages
            // count as the process's resident memory (file-backed, the kernel's to
            // reclaim): 64 MiB holds the hot indexes and keeps a small host's figures
            // unsurprising however large the database grows.
            .pragma("mmap_size", "67108864")
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.clone().create_if_missing(true))
            .await
            .with_context(|| format!("cannot open the SQLite database {}", path.display()))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.pool_size.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base)
            .await
            .with_context(|| format!("cannot open the SQLite database {}", path.display()))?;
        Ok(Db::Sqlite(SqliteDb {
            writer,
            reader,
            jobs_ready: Default::default(),
        }))
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(s) => SQLITE_MIGRATIONS.run(&s.writer).await,
            Db::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await,
        }
        .context("applying database migrations failed")
    }

    /// A round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        on_db!(self, reader, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|_| ()))
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(s) => {
                s.reader.close().await;
                s.writer.close().await;
            }
            Db::Postgres(p) => p.close().await,
        }
    }
}

/// Whether `error` says the database cannot be reached now (stopped, restarting, out
/// of connections) rather than that a statement is wrong: the same work may be tried
/// again once it is back.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // Class 08: connection exception; 57P01-57P03: shut down or starting up;
        // 53300: too many connections.
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }),
        _ => false,
    }
}

/// The URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("****"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_sqlite_database_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        let path = dir.join("errand.db");
        let db = super::Db::connect(&super::DbOptions {
            url: format!("sqlite://{}", path.display()),
            pool_size: 2,
            sqlite_durability: super::SqliteDurability::Full,
        })
        .await
        .unwrap();
        db.migrate().await.unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for name in ["errand.db", "errand.db-wal", "errand.db-shm"] {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
        db.close().await;
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:****@h:5432/db"
        );
        assert_eq!(super::redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
