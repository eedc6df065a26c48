//! Exactly-once purchase through crashes: real `errand` processes, killed with SIGKILL
//! while they place orders at a demo store that sometimes hangs up after committing.
//! Afterwards every order is final, and the store's ground truth holds exactly one
//! purchase per placed order and none for the others.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::receiver::{Misbehaviour, Receiver};
use crate::support::{Backend, PgDatabase, order_body};

/// A store, a database and the configuration every `errand` process of a test shares.
struct Cluster {
    dir: tempfile::TempDir,
    config: PathBuf,
    api: String,
    store: errand_demo_store::RunningStore,
    client: reqwest::Client,
    /// Every line the cluster's `errand`s logged, to explain a failure.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _postgres: Option<PgDatabase>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// How the cluster's Errand buys from the demo store.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Buying {
    /// Its JSON API (the `demo-http` driver).
    Api,
    /// Its web pages, in headless Chromium (the `browser` driver and the demo recipe).
    Pages,
}

impl Cluster {
    async fn new(backend: Backend) -> Cluster {
        Cluster::buying(backend, Buying::Api).await
    }

    async fn buying(backend: Backend, buying: Buying) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = errand_demo_store::start(errand_demo_store::StoreOptions {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().join("store"),
            admin_token: None,
            // Real time: nothing ships while the test runs.
            time_scale: 1.0,
        })
        .await
        .expect("start the demo store");
        let (postgres, database_url) = match backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres => {
                let (db, url) = PgDatabase::create().await;
                (Some(db), Some(url))
            }
        };
        let port = free_port();
        let database = database_url
            .map(|url| format!("database_url = {url:?}\n"))
            .unwrap_or_default();
        let driver = match buying {
            Buying::Api => "driver = \"demo-http\"".to_string(),
            Buying::Pages => "driver = \"browser\"\nrecipe = \"builtin:demo\"".to_string(),
        };
        let browser = match buying {
            Buying::Api => String::new(),
            Buying::Pages => format!(
                "chromium_path = {:?}\nbrowser_concurrency = 4\nbrowser_step_timeout_seconds = 10.0\n",
                crate::browser::chromium_path()
            ),
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
tracking_interval_seconds = 3600.0
"#,
                data = dir.path().join("data"),
                store = store.base_url(),
            ),
        )
        .expect("write config");
        Cluster {
            api: format!("http://127.0.0.1:{port}"),
            dir,
            config,
            store,
            // A request that hangs fails the test instead of hanging the suite.
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            log: Default::default(),
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
    fn browsers(&self) -> Vec<(u32, String)> {
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
    async fn assert_no_browser_survives(&self) {
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
    fn spawn(&self, args: &[&str]) -> (Child, tokio::sync::watch::Receiver<usize>) {
        let mut child = self
            .errand(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn errand");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = tokio::sync::watch::channel(0usize);
        let log = self.log.clone();
        tokio::spawn(async move {
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
        (child, rx)
    }

    async fn serve(&self) -> Child {
        let (child, _) = self.spawn(&["serve"]);
        self.wait_until_up().await;
        child
    }

    async fn wait_until_up(&self) {
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

    async fn create_key(&self) -> String {
        let output = self
            .errand(&["keys", "create", "--name", "crash"])
            .output()
            .await
            .expect("keys create");
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    async fn store_admin(&self, method: reqwest::Method, path: &str, body: Value) {
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
    async fn drop_answers_after_commit(&self, on: bool) {
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
    async fn add_accounts(&self, key: &str, n: usize) {
        for i in 0..n {
            let email = format!("buyer{i}@errand.test");
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
                .json(&json!({"retailer": "demo", "email": email, "password": password}))
                .send()
                .await
                .expect("create account");
            assert_eq!(response.status(), 201);
        }
    }

    /// Submits orders (one per product in `products`) and returns their ids.
    async fn submit(&self, key: &str, products: &[&str]) -> Vec<String> {
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
    async fn orders(&self, key: &str) -> HashMap<String, Value> {
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

    /// Every webhook delivery in the account's log.
    async fn deliveries(&self, key: &str) -> Vec<Value> {
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

    /// Waits until no order is pending or in progress (at most three minutes).
    async fn wait_until_all_final(&self, key: &str, count: usize) -> HashMap<String, Value> {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let orders = self.orders(key).await;
            let open = orders
                .values()
                .filter(|o| matches!(o["status"].as_str(), Some("pending" | "in_progress")))
                .count();
            if orders.len() == count && open == 0 {
                return orders;
            }
            if Instant::now() > deadline {
                let log = self.log.lock().unwrap();
                let tail = &log[log.len().saturating_sub(80)..];
                panic!(
                    "{open} orders never finished; the last lines logged:\n{}",
                    tail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Buyer reference → how many orders the store holds with it.
    async fn purchases_by_reference(&self) -> HashMap<String, usize> {
        let body: Value = self
            .client
            .get(format!("{}/api/admin/orders", self.store.base_url()))
            .bearer_auth(&self.store.admin_token)
            .send()
            .await
            .expect("ground truth")
            .json()
            .await
            .expect("json");
        let mut counts = HashMap::new();
        for order in body["orders"].as_array().unwrap() {
            let reference = order["buyer_reference"].as_str().unwrap_or("").to_string();
            *counts.entry(reference).or_insert(0) += 1;
        }
        counts
    }
}

fn kill(child: &mut Child) {
    // SIGKILL: no shutdown code runs.
    child.start_kill().expect("kill errand");
}

/// SIGKILL, then wait for the process to be gone (bounded, so a lost exit fails the test
/// instead of hanging it).
async fn kill_and_reap(child: &mut Child) {
    kill(child);
    tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("errand exits within 20 s of SIGKILL")
        .expect("wait for errand");
}

impl Cluster {
    /// After a run of buyable orders and declined ones through faults and crashes: the
    /// ground truth holds one purchase per placed order and none for the others,
    /// `placed` orders were placed, the others declined, and some needed another
    /// attempt (a purchase whose answer was lost had to be found again at the store).
    async fn assert_settled_exactly_once(&self, orders: &HashMap<String, Value>, placed: usize) {
        let purchases = self.purchases_by_reference().await;
        self.assert_exactly_once(orders, &purchases);
        let bought = orders
            .values()
            .filter(|o| o["status"] == "order_placed")
            .count();
        assert_eq!(bought, placed, "every order the store accepts is placed");
        for o in orders.values().filter(|o| o["status"] == "order_failed") {
            assert_eq!(o["job_result"]["error_type"], "payment_declined", "{o:#}");
        }
        let resumed = orders
            .values()
            .filter(|o| o["attempts"].as_i64().unwrap_or(0) > 1)
            .count();
        println!(
            "{resumed} of {} orders needed more than one attempt",
            orders.len()
        );
        assert!(
            resumed > 0,
            "the faults and crashes interrupted some placements"
        );
    }

    /// Checks the ground truth: one purchase per placed order, none for any other. A
    /// failure shows what Errand logged about the order.
    fn assert_exactly_once(
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
                let log = self.log.lock().unwrap();
                let said: Vec<&String> = log.iter().filter(|l| l.contains(id.as_str())).collect();
                panic!(
                    "order {id} was bought {bought} times: {order:#}\nits log:\n{}",
                    said.iter()
                        .map(|l| l.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
        }
        assert_no_unknown_purchases(orders, purchases);
    }
}

fn assert_no_unknown_purchases(
    orders: &HashMap<String, Value>,
    purchases: &HashMap<String, usize>,
) {
    let unknown: Vec<&String> = purchases
        .keys()
        .filter(|r| !orders.contains_key(*r))
        .collect();
    assert!(unknown.is_empty(), "purchases for no order: {unknown:?}");
}

async fn crash_test(backend: Backend) {
    let cluster = Cluster::new(backend).await;
    let key = cluster.create_key().await;
    let mut serve = cluster.serve().await;
    cluster.add_accounts(&key, 16).await;

    // The store hangs up after committing purchases in the first half of the run.
    cluster.drop_answers_after_commit(true).await;
    // 200 orders that will be bought, and 20 the store declines.
    let mut products = vec!["B0TEST0009"; 200];
    products.extend(["B0TEST0005"; 20]);
    let ids = cluster.submit(&key, &products).await;
    assert_eq!(ids.len(), 220);

    // Kill the process mid-flight four times.
    for round in 0..4 {
        tokio::time::sleep(Duration::from_millis(400 + 300 * round)).await;
        kill_and_reap(&mut serve).await;
        if round == 1 {
            cluster.drop_answers_after_commit(false).await;
        }
        serve = cluster.serve().await;
    }
    let orders = cluster.wait_until_all_final(&key, 220).await;
    cluster.assert_settled_exactly_once(&orders, 200).await;
    kill(&mut serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_through_sigkill_on_sqlite() {
    crash_test(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_through_sigkill_on_postgres() {
    crash_test(Backend::Postgres).await;
}

/// Exactly-once through crashes when buying through the store's pages: Errand is
/// killed while its Chromium is in the middle of checkouts (some of them past the final
/// click, with the store's answer dropped), and Chromium dies with it.
async fn browser_checkouts_through_sigkill(backend: Backend) {
    let cluster = Cluster::buying(backend, Buying::Pages).await;
    let key = cluster.create_key().await;
    let mut serve = cluster.serve().await;
    cluster.add_accounts(&key, 6).await;
    cluster.drop_answers_after_commit(true).await;
    let mut products = vec!["B0TEST0009"; 24];
    products.extend(["B0TEST0005"; 4]);
    let ids = cluster.submit(&key, &products).await;

    for round in 0..3 {
        // Long enough for the browser to start and checkouts to get under way.
        tokio::time::sleep(Duration::from_millis(2500 + 900 * round)).await;
        let browsers = cluster.browsers();
        assert!(
            !browsers.is_empty() || round > 0,
            "Chromium runs while orders are placed"
        );
        kill_and_reap(&mut serve).await;
        cluster.assert_no_browser_survives().await;
        if round == 1 {
            cluster.drop_answers_after_commit(false).await;
        }
        serve = cluster.serve().await;
    }
    let orders = cluster.wait_until_all_final(&key, ids.len()).await;
    cluster.assert_settled_exactly_once(&orders, 24).await;
    kill_and_reap(&mut serve).await;
    cluster.assert_no_browser_survives().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_exactly_once_through_sigkill_on_sqlite() {
    browser_checkouts_through_sigkill(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_exactly_once_through_sigkill_on_postgres() {
    browser_checkouts_through_sigkill(Backend::Postgres).await;
}

/// Webhooks through crashes: Errand is killed while it delivers a burst of order
/// events; every event in the delivery log still reaches the receiver at least once.
async fn webhooks_through_sigkill(backend: Backend) {
    let cluster = Cluster::new(backend).await;
    let key = cluster.create_key().await;
    let mut serve = cluster.serve().await;
    cluster.add_accounts(&key, 16).await;
    // A receiver slow enough that deliveries are in flight when Errand is killed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = Receiver::serve(
        listener,
        usize::MAX,
        Misbehaviour::Slow(Duration::from_millis(40)),
    )
    .await;
    let response = cluster
        .client
        .put(format!("{}/webhooks/endpoint", cluster.api))
        .bearer_auth(&key)
        .json(&json!({"url": receiver.url}))
        .send()
        .await
        .expect("set the endpoint");
    assert_eq!(response.status(), 200);

    let ids = cluster.submit(&key, &vec!["B0TEST0009"; 150]).await;
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(300 + 200 * round)).await;
        kill_and_reap(&mut serve).await;
        serve = cluster.serve().await;
    }
    let orders = cluster.wait_until_all_final(&key, ids.len()).await;
    assert!(orders.values().all(|o| o["status"] == "order_placed"));

    // Each order was started and placed: two events, and so two deliveries, each.
    let deliveries = cluster.deliveries(&key).await;
    assert_eq!(deliveries.len(), 2 * ids.len());
    let deadline = Instant::now() + Duration::from_secs(120);
    let accepted = loop {
        let accepted: HashMap<String, Value> = receiver
            .accepted()
            .into_iter()
            .map(|b| (b["id"].as_str().unwrap().to_string(), b))
            .collect();
        let missing = deliveries
            .iter()
            .filter(|d| !accepted.contains_key(d["id"].as_str().unwrap()))
            .count();
        if missing == 0 {
            break accepted;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} webhooks never arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for id in &ids {
        let mut events: Vec<&str> = accepted
            .values()
            .filter(|b| b["order_id"] == id.as_str())
            .map(|b| b["event"].as_str().unwrap())
            .collect();
        events.sort();
        assert_eq!(events, ["order.placed", "order.started"], "order {id}");
    }
    let received = receiver
        .all()
        .iter()
        .filter(|r| r.status == reqwest::StatusCode::OK)
        .count();
    println!(
        "{} webhooks, {} received, {} duplicates after 3 SIGKILLs",
        accepted.len(),
        received,
        received - accepted.len()
    );
    kill(&mut serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_through_sigkill_on_sqlite() {
    webhooks_through_sigkill(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_through_sigkill_on_postgres() {
    webhooks_through_sigkill(Backend::Postgres).await;
}

/// Two `errand worker` processes and one `errand serve` share a PostgreSQL queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_one_postgres_queue() {
    let cluster = Cluster::new(Backend::Postgres).await;
    let key = cluster.create_key().await;
    let (mut serve, serve_placed) = cluster.spawn(&["serve"]);
    cluster.wait_until_up().await;
    let (mut worker_a, a_placed) = cluster.spawn(&["worker"]);
    let (mut worker_b, b_placed) = cluster.spawn(&["worker"]);
    cluster.add_accounts(&key, 24).await;

    let ids = cluster.submit(&key, &vec!["B0TEST0009"; 500]).await;
    let orders = cluster.wait_until_all_final(&key, ids.len()).await;
    let purchases = cluster.purchases_by_reference().await;
    cluster.assert_exactly_once(&orders, &purchases);
    for order in orders.values() {
        assert_eq!(order["status"], "order_placed");
        assert_eq!(
            order["attempts"], 1,
            "no order was handled twice: {order:#}"
        );
    }
    // Give the log readers a moment to catch up with the last lines.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counts = [
        *serve_placed.borrow(),
        *a_placed.borrow(),
        *b_placed.borrow(),
    ];
    assert_eq!(counts.iter().sum::<usize>(), 500, "{counts:?}");
    assert!(
        counts.iter().all(|c| *c > 0),
        "every process took a share: {counts:?}"
    );
    for child in [&mut serve, &mut worker_a, &mut worker_b] {
        kill(child);
    }
}
