//! Real `errand` processes for the crash tests: a demo store, a database and a
//! configuration they share, processes started (and SIGKILLed) as a test needs, their
//! logs, and the store's ground truth.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use errand::config::Settings;
use errand::retailers::RetailerSettings;
use errand::storage::Db;
use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::{Backend, PgDatabase, order_body, store_ground_truth};

/// A store, a database and the configuration every `errand` process of a test shares.
pub struct Cluster {
    dir: tempfile::TempDir,
    config: PathBuf,
    /// Where the cluster's database is (`None`: SQLite in the data directory).
    database_url: Option<String>,
    pub api: String,
    pub store: errand_demo_store::RunningStore,
    pub client: reqwest::Client,
    /// Every line the cluster's `errand`s logged, to explain a failure.
    log: Arc<Mutex<Vec<String>>>,
    /// The tasks reading the `errand`s' logs; each ends when its process is gone.
    readers: Mutex<Vec<JoinHandle<()>>>,
    _postgres: Option<PgDatabase>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// How the cluster's Errand buys from the demo store.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Buying {
    /// Its JSON API (the `demo-http` driver).
    Api,
    /// Its web pages, in headless Chromium (the `browser` driver and the demo recipe).
    Pages,
    /// Both: the store is two retailers, `demo` through its API at `127.0.0.1` and
    /// `demo-pages` through its pages at `localhost` (see [`Cluster::pages_url`]).
    Both,
}

/// What a cluster is made of.
#[derive(Clone)]
pub struct Options {
    pub buying: Buying,
    /// The demo store's clock (store seconds per real second); Errand follows orders
    /// and returns at the pace it sets.
    pub time_scale: f64,
    /// A PostgreSQL database to use instead of a new one on the suite's server (a
    /// [`super::private_pg::PrivatePostgres`] a test stops and starts).
    pub database_url: Option<String>,
}

impl Default for Options {
    /// Buying through the API, on a store clock in real time: nothing ships while a
    /// test runs.
    fn default() -> Options {
        Options {
            buying: Buying::Api,
            time_scale: 1.0,
            database_url: None,
        }
    }
}

impl Cluster {
    pub async fn new(backend: Backend) -> Cluster {
        Cluster::with(backend, Options::default()).await
    }

    pub async fn with(backend: Backend, options: Options) -> Cluster {
        let Options {
            buying,
            time_scale,
            database_url,
        } = options;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = errand_demo_store::start(errand_demo_store::StoreOptions {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().join("store"),
            admin_token: None,
            time_scale,
        })
        .await
        .expect("start the demo store");
        let (postgres, database_url) = match backend {
            _ if database_url.is_some() => (None, database_url),
            Backend::Sqlite => (None, None),
            Backend::Postgres => {
                let (db, url) = PgDatabase::create().await;
                (Some(db), Some(url))
            }
        };
        let port = free_port();
        let database = database_url
            .as_ref()
            .map(|url| format!("database_url = {url:?}\n"))
            .unwrap_or_default();
        let driver = match buying {
            Buying::Api | Buying::Both => "driver = \"demo-http\"".to_string(),
            Buying::Pages => "driver = \"browser\"\nrecipe = \"builtin:demo\"".to_string(),
        };
        let browser = match buying {
            Buying::Api => String::new(),
            Buying::Pages | Buying::Both => format!(
                "chromium_path = {:?}\nbrowser_concurrency = 4\nbrowser_step_timeout_seconds = 10.0\n",
                crate::browser::chromium_path()
            ),
        };
        let demo = RetailerSettings::demo(&store.base_url(), time_scale);
        let tracking = format!(
            "tracking_interval_seconds = {:?}\ntracking_max_interval_seconds = {:?}",
            demo.tracking_interval_seconds, demo.tracking_max_interval_seconds
        );
        let pages = match buying {
            Buying::Both => format!(
                r#"
[[retailers]]
name = "demo-pages"
driver = "browser"
recipe = "builtin:demo"
base_url = "{}"
sandbox = true
timeout_seconds = 1.0
{tracking}
"#,
                pages_url(&store)
            ),
            _ => String::new(),
        };
        let config = dir.path().join("errand.toml");
        std::fs::write(
            &config,
            format!(
                r#"listen = "127.0.0.1:{port}"
data_dir = {data:?}
{database}demo_store = false
worker_concurrency = 16
job_lease_seconds = 1.0
job_retry_base_seconds = 0.05
job_retry_max_seconds = 0.5
placement_max_attempts = 60
shutdown_grace_seconds = 2
webhooks_allow_private_addresses = true
webhook_retry_schedule_seconds = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
{browser}
[[retailers]]
name = "demo"
{driver}
base_url = "{store}"
sandbox = true
timeout_seconds = 1.0
{tracking}
{pages}"#,
                data = dir.path().join("data"),
                store = demo.base_url,
            ),
        )
        .expect("write config");
        Cluster {
            api: format!("http://127.0.0.1:{port}"),
            dir,
            config,
            database_url,
            store,
            // A request that hangs fails the test instead of hanging the suite.
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            log: Default::default(),
            readers: Default::default(),
            _postgres: postgres,
        }
    }

    fn errand(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_errand"));
        cmd.args(args)
            .env("ERRAND_CONFIG", &self.config)
            .env_remove("ERRAND_DATABASE_URL")
            .env("RUST_LOG", "info,sqlx=warn")
            .env("ERRAND_LOG_FORMAT", "text")
            // Chromium's profiles go here too, and its processes inherit it: that is
            // how `browsers` finds them.
            .env("TMPDIR", self.dir.path())
            .current_dir(self.dir.path())
            .kill_on_drop(true);
        cmd
    }

    /// The live processes started by this cluster's `errand`s other than the `errand`s
    /// themselves: Chromium and its helpers.
    pub fn browsers(&self) -> Vec<(u32, String)> {
        let marker = format!("TMPDIR={}", self.dir.path().display());
        let mut found = vec![];
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let read = |f: &str| std::fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default();
            let environ = read("environ");
            if !environ.split(|b| *b == 0).any(|v| v == marker.as_bytes()) {
                continue;
            }
            let stat = String::from_utf8_lossy(&read("stat")).into_owned();
            let command = String::from_utf8_lossy(&read("comm")).trim().to_string();
            if stat.contains(") Z ") || command == "errand" {
                continue;
            }
            found.push((pid, command));
        }
        found
    }

    /// Waits (up to ten seconds) until none of the cluster's Chromium processes is left.
    pub async fn assert_no_browser_survives(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.browsers();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Chromium outlived errand: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts a process and returns it with a count of the orders it placed (read
    /// from its log).
    pub fn spawn(&self, args: &[&str]) -> (Child, tokio::sync::watch::Receiver<usize>) {
        self.spawn_with(args, &[])
    }

    /// [`Cluster::spawn`] with settings of its own (`ERRAND_*` variables).
    pub fn spawn_with(
        &self,
        args: &[&str],
        env: &[(&str, String)],
    ) -> (Child, tokio::sync::watch::Receiver<usize>) {
        let mut child = self
            .errand(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn errand");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = tokio::sync::watch::channel(0usize);
        let log = self.log.clone();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut placed = 0;
            while let Ok(Some(line)) = lines.next_line().await {
                log.lock().unwrap().push(line.clone());
                if line.contains("order placed") && !line.contains("placing") {
                    placed += 1;
                    let _ = tx.send(placed);
                }
            }
        });
        self.readers.lock().unwrap().push(reader);
        (child, rx)
    }

    /// Every line logged, read to the end: call it when no `errand` of the cluster runs
    /// any more (it waits, at most twenty seconds, for their logs to close).
    pub async fn complete_log(&self) -> Vec<String> {
        let readers = std::mem::take(&mut *self.readers.lock().unwrap());
        for reader in readers {
            tokio::time::timeout(Duration::from_secs(20), reader)
                .await
                .expect("the log of an exited errand closes")
                .expect("read the log");
        }
        self.log.lock().unwrap().clone()
    }

    /// Every line logged so far (the running `errand`s go on logging).
    pub fn complete_log_so_far(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The last lines logged, to explain a failure.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(lines)..].join("\n")
    }

    /// The lines logged so far that mention `id`, to explain a failure.
    pub fn log_about(&self, id: &str) -> String {
        let log = self.log.lock().unwrap();
        let said: Vec<&str> = log
            .iter()
            .filter(|l| l.contains(id))
            .map(String::as_str)
            .collect();
        said.join("\n")
    }

    /// The cluster's database, opened as `errand` opens it (only while no `errand`
    /// runs, to look at what a killed one left).
    pub async fn database(&self) -> Db {
        let settings = Settings {
            data_dir: self.dir.path().join("data"),
            database_url: self.database_url.clone(),
            ..Settings::default()
        };
        Db::connect(&settings.db_options())
            .await
            .expect("open the database")
    }

    pub async fn serve(&self) -> Child {
        let (child, _) = self.spawn(&["serve"]);
        self.wait_until_up().await;
        child
    }

    pub async fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = self.client.get(format!("{}/readyz", self.api)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("errand did not come up");
    }

    pub async fn create_key(&self) -> String {
        let output = self
            .errand(&["keys", "create", "--name", "crash"])
            .output()
            .await
            .expect("keys create");
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    pub async fn store_admin(&self, method: reqwest::Method, path: &str, body: Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.store.base_url()))
            .bearer_auth(&self.store.admin_token)
            .json(&body)
            .send()
            .await
            .expect("store admin");
        assert!(response.status().is_success(), "{path}");
    }

    /// Makes the store hang up after committing each purchase (or stop doing so).
    pub async fn drop_answers_after_commit(&self, on: bool) {
        if on {
            let faults = json!({"drop_after_commit": true});
            self.store_admin(reqwest::Method::PUT, "/api/admin/faults", faults)
                .await;
        } else {
            self.store_admin(reqwest::Method::DELETE, "/api/admin/faults", json!({}))
                .await;
        }
    }

    /// `n` store customers, each a managed account of the key's tenant.
    pub async fn add_accounts(&self, key: &str, n: usize) {
        self.add_accounts_for(key, "demo", n).await;
    }

    /// `n` store customers, each a managed account of the key's tenant at `retailer`.
    pub async fn add_accounts_for(&self, key: &str, retailer: &str, n: usize) {
        for i in 0..n {
            let email = format!("{retailer}-buyer{i}@errand.test");
            let password = format!("password-{i}");
            self.store_admin(
                reqwest::Method::POST,
                "/api/admin/customers",
                json!({"email": email, "password": password}),
            )
            .await;
            let response = self
                .client
                .post(format!("{}/managed-accounts", self.api))
                .bearer_auth(key)
                .json(&json!({"retailer": retailer, "email": email, "password": password}))
                .send()
                .await
                .expect("create account");
            assert_eq!(response.status(), 201);
        }
    }

    /// Submits orders (one per product in `products`) and returns their ids.
    pub async fn submit(&self, key: &str, products: &[&str]) -> Vec<String> {
        let requests = products.iter().map(|product| {
            let mut body = order_body();
            body["products"] = json!([{"url": format!("{}/dp/{product}", self.store.base_url())}]);
            body["max_price"] = json!(1_000_000);
            let client = self.client.clone();
            let url = format!("{}/orders", self.api);
            let key = key.to_string();
            async move {
                let response = client
                    .post(url)
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .expect("create order");
                assert_eq!(response.status(), 201);
                let order: Value = response.json().await.expect("json");
                order["id"].as_str().expect("id").to_string()
            }
        });
        join_all(requests).await
    }

    /// Every order of the key's account, by id.
    pub async fn orders(&self, key: &str) -> HashMap<String, Value> {
        let mut all = HashMap::new();
        let mut offset = 0;
        loop {
            let page: Value = self
                .client
                .get(format!("{}/orders?limit=100&offset={offset}", self.api))
                .bearer_auth(key)
                .send()
                .await
                .expect("list")
                .json()
                .await
                .expect("json");
            let orders = page["orders"].as_array().cloned().unwrap_or_default();
            if orders.is_empty() {
                return all;
            }
            offset += orders.len();
            for o in orders {
                all.insert(o["id"].as_str().unwrap().to_string(), o);
            }
        }
    }

    /// Points the key's account's webhooks at `url`.
    pub async fn send_webhooks_to(&self, key: &str, url: &str) {
        let response = self
            .client
            .put(format!("{}/webhooks/endpoint", self.api))
            .bearer_auth(key)
            .json(&json!({"url": url}))
            .send()
            .await
            .expect("set the endpoint");
        assert_eq!(response.status(), 200);
    }

    /// Every webhook delivery in the account's log.
    pub async fn deliveries(&self, key: &str) -> Vec<Value> {
        let mut all = vec![];
        loop {
            let page: Value = self
                .client
                .get(format!(
                    "{}/webhooks/deliveries?limit=100&offset={}",
                    self.api,
                    all.len()
                ))
                .bearer_auth(key)
                .send()
                .await
                .expect("delivery log")
                .json()
                .await
                .expect("json");
            let deliveries = page["deliveries"].as_array().cloned().unwrap_or_default();
            if deliveries.is_empty() {
                return all;
            }
            all.extend(deliveries);
        }
    }

    /// Waits until the account has `count` orders, none pending or in progress (at most
    /// three minutes).
    pub async fn wait_until_all_final(&self, key: &str, count: usize) -> HashMap<String, Value> {
        self.wait_for_orders(key, count, "finished", is_final).await
    }

    /// Waits until the account has `count` orders and `done` holds for each (at most
    /// three minutes); `what` says what `done` means, to explain a failure.
    pub async fn wait_for_orders(
        &self,
        key: &str,
        count: usize,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> HashMap<String, Value> {
        self.wait_for_orders_within(key, Some(count), Duration::from_secs(180), what, done)
            .await
    }

    /// Waits, at most `patience`, until the account has `count` orders (any number if
    /// `None`) and `done` holds for each. If it never does, the whole log is kept in a
    /// file to explain why.
    pub async fn wait_for_orders_within(
        &self,
        key: &str,
        count: Option<usize>,
        patience: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> HashMap<String, Value> {
        let deadline = Instant::now() + patience;
        loop {
            let orders = self.orders(key).await;
            let open = orders.values().filter(|o| !done(o)).count();
            if count.is_none_or(|c| orders.len() == c) && open == 0 {
                return orders;
            }
            if Instant::now() > deadline {
                let path = self.dir.path().with_extension("log");
                std::fs::write(&path, self.complete_log_so_far().join("\n")).expect("keep the log");
                panic!(
                    "{open} orders never {what} (the whole log: {}); the last lines logged:\n{}",
                    path.display(),
                    self.log_tail(80)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Checks the ground truth: one purchase per placed order, none for any other and
    /// none for no order. A failure shows what Errand logged about the order.
    pub fn assert_exactly_once(
        &self,
        orders: &HashMap<String, Value>,
        purchases: &HashMap<String, usize>,
    ) {
        for (id, order) in orders {
            let bought = purchases.get(id).copied().unwrap_or(0);
            let expected = match order["status"].as_str() {
                Some("order_placed") => 1,
                Some("order_failed") => 0,
                other => panic!("order {id} ended {other:?}"),
            };
            if bought != expected {
                panic!(
                    "order {id} was bought {bought} times: {order:#}\nits log:\n{}",
                    self.log_about(id)
                );
            }
        }
        let unknown: Vec<&String> = purchases
            .keys()
            .filter(|r| !orders.contains_key(*r))
            .collect();
        assert!(unknown.is_empty(), "purchases for no order: {unknown:?}");
    }

    /// Buyer reference → how many orders the store holds with it.
    pub async fn purchases_by_reference(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for order in store_ground_truth(&self.client, &self.store, "orders").await {
            let reference = order["buyer_reference"].as_str().unwrap_or("").to_string();
            *counts.entry(reference).or_insert(0) += 1;
        }
        counts
    }
}

pub fn kill(child: &mut Child) {
    // SIGKILL: no shutdown code runs.
    child.start_kill().expect("kill errand");
}

/// SIGKILL, then wait for the process to be gone (bounded, so a lost exit fails the test
/// instead of hanging it).
pub async fn kill_and_reap(child: &mut Child) {
    kill(child);
    tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("errand exits within 20 s of SIGKILL")
        .expect("wait for errand");
}

/// Whether an order is final: neither pending nor in progress.
pub fn is_final(order: &Value) -> bool {
    !matches!(order["status"].as_str(), Some("pending" | "in_progress"))
}

/// Where the `demo-pages` retailer of [`Buying::Both`] sees the store: the same store
/// under another host name, so that a product URL names which way it is bought.
pub fn pages_url(store: &errand_demo_store::RunningStore) -> String {
    store.base_url().replacen("127.0.0.1", "localhost", 1)
}
