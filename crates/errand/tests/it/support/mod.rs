//! What the integration tests share: Errand started for a test (through the same
//! composition root as `errand serve`) and talked to over HTTP, fresh databases, and a
//! real webhook receiver.

pub mod cluster;
pub mod private_pg;
pub mod receiver;
pub mod schema;
pub mod smtp;
pub mod spreader;

use errand::accounts::Vault;
use errand::app::{App, Workers};
use errand::auth::keys;
use errand::config::Settings;
use errand::http::RunningServer;
use errand::retailers::RetailerSettings;
use errand::storage::Db;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where per-test PostgreSQL databases are created.
pub fn postgres_admin_url() -> String {
    std::env::var("ERRAND_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A PostgreSQL database that exists for one test and is dropped after it.
pub struct PgDatabase {
    name: String,
}

impl PgDatabase {
    /// A new empty database and its URL.
    pub async fn create() -> (PgDatabase, String) {
        let admin_url = postgres_admin_url();
        let name = format!("errand_test_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL must be reachable at {admin_url} (set ERRAND_TEST_POSTGRES_URL): {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let mut url = url::Url::parse(&admin_url).expect("valid ERRAND_TEST_POSTGRES_URL");
        url.set_path(&name);
        (PgDatabase { name }, url.to_string())
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime; the cleanup needs a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
                    .await
                    .ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .ok()
            })
        })
        .join();
    }
}

pub struct TestApp {
    pub backend: Backend,
    pub base: String,
    pub client: reqwest::Client,
    /// A live key of a fresh account.
    pub key: String,
    /// The account `key` belongs to.
    pub account_id: Uuid,
    pub settings: Settings,
    /// The demo retailer, when the engine runs.
    pub store: Option<errand_demo_store::RunningStore>,
    app: App,
    workers: Option<Workers>,
    server: Option<RunningServer>,
    _data_dir: tempfile::TempDir,
    _postgres: Option<PgDatabase>,
}

/// Product URLs on this host go to the `demo` retailer in every test app.
pub const DEMO_ALIAS_HOST: &str = "store.example";
/// A second, non-sandbox retailer (nothing listens there; only the API tests use it).
pub const OTHER_RETAILER_HOST: &str = "shop.example";

fn other_retailer() -> RetailerSettings {
    RetailerSettings {
        name: "other".into(),
        hosts: vec![OTHER_RETAILER_HOST.into()],
        sandbox: false,
        ..RetailerSettings::demo("http://127.0.0.1:1", 1.0)
    }
}

impl TestApp {
    /// The API alone: orders are accepted but no worker places them. The `demo`
    /// retailer serves `store.example` (at an address where nothing listens).
    pub async fn spawn(backend: Backend) -> TestApp {
        let mut demo = RetailerSettings::demo("http://127.0.0.1:9", 1.0);
        demo.hosts = vec![DEMO_ALIAS_HOST.into()];
        Self::spawn_with(backend, vec![demo, other_retailer()], None, |_| {}).await
    }

    /// [`TestApp::spawn`] with settings changed by `tweak`.
    pub async fn spawn_with_settings(
        backend: Backend,
        tweak: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let mut demo = RetailerSettings::demo("http://127.0.0.1:9", 1.0);
        demo.hosts = vec![DEMO_ALIAS_HOST.into()];
        Self::spawn_with(backend, vec![demo, other_retailer()], None, tweak).await
    }

    /// The API and the engine's workers, buying from a demo store started for the test
    /// (its clock runs a store day per second), with a demo-retailer account for the
    /// test's key.
    pub async fn spawn_engine(backend: Backend) -> TestApp {
        Self::spawn_engine_with(backend, |_| {}).await
    }

    /// [`TestApp::spawn_engine`] with settings changed by `tweak`.
    pub async fn spawn_engine_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let store_dir = tempfile::tempdir().expect("temp dir");
        let store = errand_demo_store::start(errand_demo_store::StoreOptions {
            listen: "127.0.0.1:0".into(),
            data_dir: store_dir.keep(),
            admin_token: None,
            time_scale: 86_400.0,
        })
        .await
        .expect("start the demo store");
        let mut demo = RetailerSettings::demo(&store.base_url(), 86_400.0);
        demo.hosts = vec![DEMO_ALIAS_HOST.into()];
        demo.timeout_seconds = 5.0;
        let app = Self::spawn_with(backend, vec![demo, other_retailer()], Some(store), tweak).await;
        app.add_retailer_account(errand_demo_store::DEMO_EMAIL, None)
            .await;
        app
    }

    async fn spawn_with(
        backend: Backend,
        retailers: Vec<RetailerSettings>,
        store: Option<errand_demo_store::RunningStore>,
        tweak: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let (postgres, database_url) = match backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres => {
                let (db, url) = PgDatabase::create().await;
                (Some(db), Some(url))
            }
        };
        let mut settings = Settings {
            listen: "127.0.0.1:0".into(),
            data_dir: data_dir.path().to_path_buf(),
            database_url,
            database_pool_size: Some(4),
            shutdown_grace_seconds: 5,
            retailers,
            placement_max_attempts: 8,
            ..Settings::default()
        };
        settings.queue.worker_concurrency = 8;
        settings.queue.job_lease_seconds = 2.0;
        settings.queue.job_retry_base_seconds = 0.05;
        settings.queue.job_retry_max_seconds = 0.5;
        // The engine's tests deliver webhooks to a receiver on 127.0.0.1, quickly.
        settings.webhooks.webhooks_allow_private_addresses = store.is_some();
        settings.webhooks.webhook_retry_schedule_seconds = vec![0.05, 0.1, 0.2, 0.4, 0.8];
        tweak(&mut settings);
        let (app, server, workers) = start(&settings, store.is_some()).await;
        let mut test_app = TestApp {
            backend,
            base: format!("http://{}", server.addr),
            client: reqwest::Client::new(),
            key: String::new(),
            account_id: Uuid::nil(),
            settings,
            store,
            app,
            workers,
            server: Some(server),
            _data_dir: data_dir,
            _postgres: postgres,
        };
        let key = keys::create_key(test_app.db(), "tests", true, None)
            .await
            .expect("create key");
        test_app.key = key.secret;
        test_app.account_id = key.account_id;
        test_app
    }

    /// A product page at the demo store.
    pub fn product_url(&self, product_id: &str) -> String {
        let store = self.store.as_ref().expect("spawn_engine starts a store");
        format!("{}/dp/{product_id}", store.base_url())
    }

    /// Adds a demo-retailer account (password `demo-password`) for the test's key;
    /// returns its id.
    pub async fn add_retailer_account(&self, email: &str, totp_secret: Option<&str>) -> String {
        let (status, body) = json_of(
            self.post("/managed-accounts")
                .json(&json!({"retailer": "demo", "email": email,
                              "password": errand_demo_store::DEMO_PASSWORD, "totp_secret": totp_secret}))
                .send()
                .await
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().expect("id").to_string()
    }

    /// Every order the demo store holds (its ground truth).
    pub async fn store_orders(&self) -> Vec<Value> {
        let store = self.store.as_ref().expect("spawn_engine starts a store");
        store_ground_truth(&self.client, store, "orders").await
    }

    /// The store's orders carrying `reference` (an Errand order id).
    pub async fn store_orders_for(&self, reference: &str) -> Vec<Value> {
        self.store_orders()
            .await
            .into_iter()
            .filter(|o| o["buyer_reference"] == reference)
            .collect()
    }

    /// Calls the demo store's admin API.
    pub async fn store_admin(&self, method: reqwest::Method, path: &str, body: Value) {
        let store = self.store.as_ref().expect("spawn_engine starts a store");
        let response = self
            .client
            .request(method, format!("{}{path}", store.base_url()))
            .bearer_auth(&store.admin_token)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }

    /// Polls the order until `done` holds for it (at most a minute); returns it.
    pub async fn wait_for_order(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (status, order) = self.get_order(id).await;
            assert_eq!(status, StatusCode::OK, "{order}");
            if done(&order) {
                return order;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "order {id} did not reach the expected state: {order:#}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Waits until the order is placed, failed or cancelled.
    pub async fn wait_until_settled(&self, id: &str) -> Value {
        self.wait_for_order(id, |o| {
            !matches!(o["status"].as_str(), Some("pending" | "in_progress"))
        })
        .await
    }

    /// Every step of the order's timeline (`progress`: Errand's own steps included),
    /// by `type`, oldest first.
    pub async fn timeline(&self, id: &str) -> Vec<String> {
        let (status, body) = json_of(
            self.get(&format!("/orders/{id}/timeline"))
                .send()
                .await
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["progress"]
            .as_array()
            .expect("progress")
            .iter()
            .map(|m| m["type"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    pub fn db(&self) -> &Db {
        &self.app.db
    }

    /// The server's vault (its master key), to seal or open secrets as it does.
    pub fn vault(&self) -> &Vault {
        &self.app.vault
    }

    /// A live key in a new account.
    pub async fn new_account_key(&self, name: &str) -> String {
        keys::create_key(self.db(), name, true, None)
            .await
            .expect("create key")
            .secret
    }

    /// Another key in an existing account.
    pub async fn key_for_account(&self, account: Uuid, livemode: bool) -> String {
        keys::create_key(self.db(), "extra", livemode, Some(account))
            .await
            .expect("create key")
            .secret
    }

    /// Stops the engine's workers (the API keeps serving): jobs wait in the queue.
    pub async fn stop_workers(&mut self) {
        if let Some(workers) = self.workers.take() {
            workers.stop(std::time::Duration::from_secs(5)).await;
        }
    }

    /// Restarts the workers with `resolver` looking up webhook receivers' names in
    /// place of DNS.
    pub async fn resolve_webhooks_with(
        &mut self,
        resolver: std::sync::Arc<dyn errand::webhooks::address::Resolver>,
    ) {
        self.stop_workers().await;
        self.app.webhook_resolver = resolver;
        self.workers = self.app.start_workers().expect("start the workers");
    }

    /// Stops the server and starts a new one (new process state, same database).
    pub async fn restart(&mut self) {
        if let Some(workers) = self.workers.take() {
            workers.stop(std::time::Duration::from_secs(5)).await;
        }
        let server = self.server.take().expect("server running");
        server.stop().await.expect("clean stop");
        self.app.db.close().await;
        let (app, server, workers) = start(&self.settings, self.store.is_some()).await;
        self.base = format!("http://{}", server.addr);
        self.app = app;
        self.server = Some(server);
        self.workers = workers;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(&self.key)
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(&self.key)
    }

    /// `POST /orders` with `body` as the current key.
    pub async fn create_order(&self, body: &Value) -> Response {
        self.create_order_as(&self.key, body).await
    }

    pub async fn create_order_as(&self, key: &str, body: &Value) -> Response {
        self.client
            .post(self.url("/orders"))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Creates an order that must succeed and returns its body.
    pub async fn created(&self, body: &Value) -> Value {
        let response = self.create_order(body).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{}",
            response.text().await.unwrap_or_default()
        );
        response.json().await.expect("json")
    }

    pub async fn get_order(&self, id: &str) -> (StatusCode, Value) {
        json_of(
            self.get(&format!("/orders/{id}"))
                .send()
                .await
                .expect("request"),
        )
        .await
    }
}

/// The demo store's ground truth: every one of its `orders` or `returns`, from its
/// admin API.
pub async fn store_ground_truth(
    client: &reqwest::Client,
    store: &errand_demo_store::RunningStore,
    what: &str,
) -> Vec<Value> {
    let body: Value = client
        .get(format!("{}/api/admin/{what}", store.base_url()))
        .bearer_auth(&store.admin_token)
        .send()
        .await
        .expect("ground truth")
        .json()
        .await
        .expect("json");
    body[what].as_array().cloned().unwrap_or_default()
}

/// Builds Errand from `settings` as `errand serve` does, serves its API and, for the
/// engine's tests, runs its workers.
async fn start(settings: &Settings, with_workers: bool) -> (App, RunningServer, Option<Workers>) {
    let app = App::build(settings.clone()).await.expect("build the app");
    let server = app.serve().await.expect("start the server");
    let workers = if with_workers {
        app.start_workers().expect("start the workers")
    } else {
        None
    };
    (app, server, workers)
}

/// A migrated database for one test, without a server (the queue's tests).
pub struct TestDb {
    pub db: Db,
    _data_dir: tempfile::TempDir,
    _postgres: Option<PgDatabase>,
}

impl TestDb {
    pub async fn create(backend: Backend) -> TestDb {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let (postgres, url) = match backend {
            Backend::Sqlite => (
                None,
                format!("sqlite://{}", data_dir.path().join("errand.db").display()),
            ),
            Backend::Postgres => {
                let (db, url) = PgDatabase::create().await;
                (Some(db), url)
            }
        };
        let options = errand::storage::DbOptions {
            url,
            pool_size: 4,
            sqlite_durability: errand::storage::SqliteDurability::Full,
        };
        let db = Db::connect(&options).await.expect("connect");
        db.migrate().await.expect("migrate");
        TestDb {
            db,
            _data_dir: data_dir,
            _postgres: postgres,
        }
    }
}

/// The status and JSON body of a response (`null` for an empty body).
pub async fn json_of(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// A valid order with one product and a US address.
pub fn order_body() -> Value {
    json!({
        "products": [{"url": "https://store.example/dp/B0TEST0001", "quantity": 2,
                      "variant": [{"label": "Color", "value": "Red"}]}],
        "shipping_address": {
            "first_name": "Ada", "last_name": "Lovelace", "address_line1": "1 Main St",
            "city": "Austin", "state": "TX", "postal_code": "78701",
            "phone_number": "512-555-0134", "country": "US"
        },
        "max_price": 5000
    })
}

/// `(loc, type)` of each error in a 422 body, in order.
pub fn error_list(body: &Value) -> Vec<(Value, String)> {
    body["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("not a 422 body: {body}"))
        .iter()
        .map(|e| {
            (
                e["loc"].clone(),
                e["type"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Defines `mod $name { fn sqlite(); fn postgres() }` running the same test body on
/// each backend, given what it needs: `app: TestApp` is the API alone (no workers),
/// `app: Engine` the API with the engine's workers and a demo store, `db: TestDb` a
/// migrated database and no server, `backend: Backend` only which database (the test
/// starts what it needs).
#[macro_export]
macro_rules! on_both_databases {
    ($(async fn $name:ident($app:ident: $kind:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                #[allow(unused_mut)]
                async fn run(mut $app: $crate::on_both_databases!(@type $kind)) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    run($crate::on_both_databases!(@spawn $kind, $crate::support::Backend::Sqlite)).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    run($crate::on_both_databases!(@spawn $kind, $crate::support::Backend::Postgres)).await
                }
            }
        )*
    };
    (@type TestApp) => { $crate::support::TestApp };
    (@type Engine) => { $crate::support::TestApp };
    (@type TestDb) => { $crate::support::TestDb };
    (@type Backend) => { $crate::support::Backend };
    (@spawn TestApp, $backend:expr) => { $crate::support::TestApp::spawn($backend).await };
    (@spawn Engine, $backend:expr) => { $crate::support::TestApp::spawn_engine($backend).await };
    (@spawn TestDb, $backend:expr) => { $crate::support::TestDb::create($backend).await };
    (@spawn Backend, $backend:expr) => { $backend };
}
