//! The composition root: what one process runs, built once from its settings. `serve`,
//! `worker` and the integration tests all start Errand through [`App::build`].

use std::sync::Arc;
use std::time::Duration;

use crate::accounts::Vault;
use crate::config::Settings;
use crate::engine::Engine;
use crate::http::RunningServer;
use crate::notifications::Notifier;
use crate::queue::worker::{Handlers, WorkerOptions, WorkerPool};
use crate::retailers::Registry;
use crate::storage::Db;
use crate::webhooks::address::{Resolver, SystemResolver};
use crate::webhooks::delivery::{Deliverer, DeliveryPolicy};

/// The database, the vault and the retailers (with their shared browser), ready to
/// serve the API and run the workers.
#[derive(Clone)]
pub struct App {
    pub settings: Arc<Settings>,
    pub db: Db,
    /// Encrypts and decrypts retailer account and webhook secrets.
    pub vault: Vault,
    pub retailers: Arc<Registry>,
    /// Resolves webhook receivers' names (the system's resolver; tests stand in for
    /// DNS with their own).
    pub webhook_resolver: Arc<dyn Resolver>,
}

/// The worker pools: one for orders, and one for webhook deliveries so that they never
/// wait behind checkouts (a burst of placements, or slow browser ones).
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

impl App {
    /// Connects to the database and migrates it, loads the master key and builds the
    /// retailers' drivers.
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        let retailers = Arc::new(Registry::new(&settings.retailers, &settings.browser)?);
        let database = settings.db_options();
        let vault = Vault::load(
            &settings.vault,
            &settings.data_dir,
            database.url.starts_with("postgres"),
        )?;
        let db = Db::connect(&database).await?;
        db.migrate().await?;
        Ok(App {
            settings: Arc::new(settings),
            db,
            vault,
            retailers,
            webhook_resolver: Arc::new(SystemResolver),
        })
    }

    /// Serves the API on `settings.listen` (port 0 picks a free port).
    pub async fn serve(&self) -> anyhow::Result<RunningServer> {
        crate::http::start(self).await
    }

    /// Starts the worker pools, unless `worker_concurrency` is 0 (an API-only node).
    pub fn start_workers(&self) -> anyhow::Result<Option<Workers>> {
        let settings = &self.settings;
        if settings.queue.worker_concurrency == 0 {
            return Ok(None);
        }
        let mut orders = Handlers::new();
        Engine::new(
            self.db.clone(),
            self.retailers.clone(),
            self.vault.clone(),
            settings.queue.lease(),
        )
        .register(&mut orders);
        let mut webhooks = Handlers::new();
        Deliverer::new(
            self.db.clone(),
            self.vault.clone(),
            DeliveryPolicy::new(&settings.webhooks, settings.public_base()),
            self.webhook_resolver.clone(),
        )
        .register(&mut webhooks);
        // Customer e-mails are outbound messages too: they share the webhooks' pool.
        Notifier::new(self.db.clone(), &settings.mail, &settings.data_dir)?.register(&mut webhooks);
        let options = |concurrency| WorkerOptions {
            concurrency,
            lease: settings.queue.lease(),
            retry: settings.queue.retry_policy(),
        };
        Ok(Some(Workers {
            orders: WorkerPool::start(
                self.db.clone(),
                options(settings.queue.worker_concurrency),
                orders,
            ),
            webhooks: WorkerPool::start(
                self.db.clone(),
                options(settings.webhooks.webhook_concurrency),
                webhooks,
            ),
        }))
    }
}
