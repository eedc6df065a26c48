//! Starts Errand for a test and talks to it over HTTP.

use errand::auth::keys;
use errand::config::Settings;
use errand::http::RunningServer;
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
struct PgDatabase {
    name: String,
}

impl PgDatabase {
    async fn create() -> (PgDatabase, String) {
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
    pub settings: Settings,
    server: Option<RunningServer>,
    _data_dir: tempfile::TempDir,
    _postgres: Option<PgDatabase>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let (postgres, database_url) = match backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres => {
                let (db, url) = PgDatabase::create().await;
                (Some(db), Some(url))
            }
        };
        let settings = Settings {
            listen: "127.0.0.1:0".into(),
            data_dir: data_dir.path().to_path_buf(),
            database_url,
            database_pool_size: Some(4),
            shutdown_grace_seconds: 5,
            ..Settings::default()
        };
        let server = start(&settings).await;
        let mut app = TestApp {
            backend,
            base: format!("http://{}", server.addr),
            client: reqwest::Client::new(),
            key: String::new(),
            settings,
            server: Some(server),
            _data_dir: data_dir,
            _postgres: postgres,
        };
        app.key = app.new_account_key("tests").await;
        app
    }

    pub fn db(&self) -> &Db {
        &self.server.as_ref().expect("server running").db
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

    /// Stops the server and starts a new one (new process state, same database).
    pub async fn restart(&mut self) {
        let server = self.server.take().expect("server running");
        let db = server.db.clone();
        server.stop().await.expect("clean stop");
        db.close().await;
        let server = start(&self.settings).await;
        self.base = format!("http://{}", server.addr);
        self.server = Some(server);
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

async fn start(settings: &Settings) -> RunningServer {
    let db = Db::connect(&settings.db_options()).await.expect("connect");
    db.migrate().await.expect("migrate");
    errand::http::start(settings.clone(), db)
        .await
        .expect("start server")
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
/// each backend.
#[macro_export]
macro_rules! on_both_databases {
    ($(async fn $name:ident($app:ident: TestApp) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                #[allow(unused_mut)]
                async fn run(mut $app: $crate::harness::TestApp) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    run($crate::harness::TestApp::spawn($crate::harness::Backend::Sqlite).await).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    run($crate::harness::TestApp::spawn($crate::harness::Backend::Postgres).await).await
                }
            }
        )*
    };
}
