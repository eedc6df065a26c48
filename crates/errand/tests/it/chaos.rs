//! Many nodes on one PostgreSQL, through chaos: three `errand serve` behind a load
//! spreader and two `errand worker`, on a PostgreSQL of the test's own. Clients post
//! orders (bought through the demo store's API and through its pages in Chromium) while
//! processes are SIGKILLed and restarted, or SIGSTOPped for longer than their leases,
//! and PostgreSQL itself is stopped for a while and started again.
//!
//! Afterwards: every acknowledged order exists and is final, the store holds exactly one
//! purchase per placed order and none for the others, every order's final event reached
//! the webhook receiver, no job is stuck, the API answered 503 (never 500) while the
//! database was away, and every process placed orders again soon after it came back,
//! without being restarted.
//!
//! `ERRAND_CHAOS_SECONDS` sets how long the chaos lasts (45 s by default; the figures in
//! docs/scale-out.md come from a 300-second run).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::Child;
use tokio::sync::watch;

use crate::support::cluster::{
    Buying, Cluster, Options, free_port, is_final, kill_and_reap, pages_url,
};
use crate::support::private_pg::PrivatePostgres;
use crate::support::receiver::Receiver;
use crate::support::spreader::Spreader;
use crate::support::{Backend, order_body};

/// A small, seeded generator: a failing run can be repeated with its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

/// One `errand` process of the cluster, restarted under the same name when killed.
struct Node {
    name: String,
    args: &'static [&'static str],
    /// The API port of a `serve` node.
    port: Option<u16>,
    child: Child,
    /// Orders this process placed (from its log).
    placed: watch::Receiver<usize>,
}

impl Node {
    fn start(
        cluster: &Cluster,
        name: &str,
        args: &'static [&'static str],
        port: Option<u16>,
    ) -> Node {
        let env: Vec<(&str, String)> = port
            .map(|p| ("ERRAND_LISTEN", format!("127.0.0.1:{p}")))
            .into_iter()
            .collect();
        let (child, placed) = cluster.spawn_with(args, &env);
        Node {
            name: name.to_string(),
            args,
            port,
            child,
            placed,
        }
    }

    fn restart(&mut self, cluster: &Cluster) {
        *self = Node::start(cluster, &self.name.clone(), self.args, self.port);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id().expect("a running process") as libc::pid_t;
        // SAFETY: kill(2) on a child this test started and has not reaped.
        assert_eq!(
            unsafe { libc::kill(pid, signal) },
            0,
            "signal {}",
            self.name
        );
    }
}

/// What the clients saw.
#[derive(Default)]
struct Seen {
    /// Order id by idempotency key, for every order acknowledged (201).
    acknowledged: Mutex<HashMap<String, String>>,
    /// Requests retried after a timeout, a dropped connection or a 503.
    retries: AtomicUsize,
    unavailable: AtomicUsize,
    /// Any 5xx other than 503, with its body: each one fails the test.
    server_errors: Mutex<Vec<String>>,
}

/// Posts orders until `stop`, each retried with its idempotency key until acknowledged.
async fn client(
    api: String,
    key: String,
    products: Vec<String>,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
    pause: Duration,
    name: usize,
) {
    // A paused node answers nothing: give up on a request well before the test would.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(8))
        .build()
        .expect("an HTTP client");
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let product = &products[n % products.len()];
        let idempotency_key = format!("chaos-{name}-{n}");
        n += 1;
        let mut body = order_body();
        body["products"] = json!([{"url": product}]);
        body["max_price"] = json!(1_000_000);
        body["idempotency_key"] = json!(idempotency_key);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(
                Instant::now() < deadline,
                "order {idempotency_key} was never acknowledged"
            );
            let sent = http
                .post(format!("{api}/orders"))
                .bearer_auth(&key)
                .json(&body)
                .send()
                .await;
            // How long to wait before trying the same order again.
            let wait = match sent {
                Err(_) => Duration::from_millis(200),
                Ok(response) => {
                    let status = response.status();
                    match (status, response.json::<Value>().await) {
                        (_, Err(_)) => Duration::ZERO,
                        (StatusCode::CREATED, Ok(answer)) => {
                            let id = answer["id"].as_str().expect("an order id").to_string();
                            seen.acknowledged
                                .lock()
                                .unwrap()
                                .insert(idempotency_key.clone(), id);
                            break;
                        }
                        (StatusCode::SERVICE_UNAVAILABLE, Ok(answer)) => {
                            assert_eq!(answer["error"]["code"], "service_unavailable", "{answer}");
                            seen.unavailable.fetch_add(1, Ordering::Relaxed);
                            Duration::from_millis(500)
                        }
                        (s, Ok(answer)) if s.is_server_error() => {
                            seen.server_errors
                                .lock()
                                .unwrap()
                                .push(format!("{s}: {answer}"));
                            Duration::from_millis(200)
                        }
                        // The same key still being answered by a node that stalled.
                        (StatusCode::CONFLICT, Ok(answer))
                            if answer["error"]["code"] != "idempotency_conflict" =>
                        {
                            Duration::from_millis(200)
                        }
                        (other, Ok(answer)) => panic!("order {idempotency_key}: {other} {answer}"),
                    }
                }
            };
            seen.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
        tokio::time::sleep(pause).await;
    }
}

/// `GET /orders` at one node while the database is away: a 503 saying so.
async fn assert_unavailable(port: u16, key: String) {
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/orders?limit=1"))
        .bearer_auth(key)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("an answer while the database is away");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "service_unavailable", "{body}");
}

#[derive(Default, Debug)]
struct Chaos {
    kills: usize,
    pauses: usize,
    long_pauses: usize,
    database_restarts: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_nodes_on_one_postgres_through_kills_pauses_and_a_database_restart() {
    let seconds: u64 = std::env::var("ERRAND_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(45);
    let seed = std::env::var("ERRAND_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64 * 7919 + 1);
    println!("chaos for {seconds} s, seed {seed} (ERRAND_CHAOS_SEED repeats it)");
    let mut rng = Rng(seed);

    let postgres = PrivatePostgres::start();
    let options = Options {
        buying: Buying::Both,
        database_url: Some(postgres.url()),
        ..Options::default()
    };
    let mut cluster = Cluster::with(Backend::Postgres, options).await;
    // The first node migrates the database; the others find it ready.
    let first = Node::start(&cluster, "serve-1", &["serve"], Some(free_port()));
    cluster.api = format!("http://127.0.0.1:{}", first.port.unwrap());
    cluster.wait_until_up().await;
    let key = cluster.create_key().await;
    cluster.add_accounts_for(&key, "demo", 16).await;
    cluster.add_accounts_for(&key, "demo-pages", 6).await;
    let receiver = Receiver::start(0, StatusCode::OK).await;
    cluster.send_webhooks_to(&key, &receiver.url).await;

    let mut nodes = vec![first];
    for i in 2..=3 {
        nodes.push(Node::start(
            &cluster,
            &format!("serve-{i}"),
            &["serve"],
            Some(free_port()),
        ));
    }
    for i in 1..=2 {
        nodes.push(Node::start(
            &cluster,
            &format!("worker-{i}"),
            &["worker"],
            None,
        ));
    }
    let serve_ports: Vec<u16> = nodes.iter().filter_map(|n| n.port).collect();
    let spreader = Spreader::start(
        serve_ports
            .iter()
            .map(|p| ([127, 0, 0, 1], *p).into())
            .collect(),
    )
    .await;
    for port in &serve_ports {
        cluster.api = format!("http://127.0.0.1:{port}");
        cluster.wait_until_up().await;
    }
    cluster.api = spreader.url.clone();

    // Clients: through the API mostly (with some orders the store declines), and a
    // slower stream through the store's pages.
    let api_store = cluster.store.base_url();
    let pages_store = pages_url(&cluster.store);
    let product = |base: &str, id: &str| format!("{}/dp/{id}", base.trim_end_matches('/'));
    let mut api_products = vec![product(&api_store, "B0TEST0009"); 9];
    api_products.push(product(&api_store, "B0TEST0005"));
    let page_products = vec![product(&pages_store, "B0TEST0009")];
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = vec![];
    for i in 0..4 {
        clients.push(tokio::spawn(client(
            spreader.url.clone(),
            key.clone(),
            api_products.clone(),
            seen.clone(),
            stop.clone(),
            Duration::from_millis(60),
            i,
        )));
    }
    clients.push(tokio::spawn(client(
        spreader.url.clone(),
        key.clone(),
        page_products,
        seen.clone(),
        stop.clone(),
        Duration::from_millis(2500),
        99,
    )));

    // The chaos: a kill or a pause every 1.5-4 s, and the database away once, halfway.
    let mut chaos = Chaos::default();
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let outage_at = started + Duration::from_secs(seconds / 2);
    let mut paused: Vec<(usize, Instant)> = vec![];
    while Instant::now() < end {
        tokio::time::sleep(rng.millis(1500, 4000)).await;
        let now = Instant::now();
        // Wake the paused whose time is up.
        paused.retain(|(i, until)| {
            if *until <= now {
                nodes[*i].signal(libc::SIGCONT);
                false
            } else {
                true
            }
        });
        if chaos.database_restarts == 0 && now >= outage_at {
            // Every process lives through the outage, awake.
            for (i, _) in paused.drain(..) {
                nodes[i].signal(libc::SIGCONT);
            }
            println!(
                "{:>5.1}s: stopping PostgreSQL",
                started.elapsed().as_secs_f64()
            );
            postgres.stop_immediately();
            let probes: Vec<_> = nodes
                .iter()
                .filter_map(|n| n.port)
                .map(|port| tokio::spawn(assert_unavailable(port, key.clone())))
                .collect();
            tokio::time::sleep(Duration::from_secs(6)).await;
            for probe in probes {
                probe
                    .await
                    .expect("a node answered 503 while the database was away");
            }
            postgres.start_again();
            chaos.database_restarts += 1;
            println!(
                "{:>5.1}s: PostgreSQL is back",
                started.elapsed().as_secs_f64()
            );
            // A calm while, in which every process must place orders again by itself.
            let before: Vec<usize> = nodes.iter().map(|n| *n.placed.borrow()).collect();
            tokio::time::sleep(Duration::from_secs(15)).await;
            for (node, before) in nodes.iter().zip(before) {
                let after = *node.placed.borrow();
                assert!(
                    after > before,
                    "{} placed nothing in the 15 s after the database came back",
                    node.name
                );
            }
            continue;
        }
        let i = rng.below(nodes.len() as u64) as usize;
        if paused.iter().any(|(p, _)| *p == i) {
            continue;
        }
        if rng.below(2) == 0 {
            println!(
                "{:>5.1}s: SIGKILL {}",
                started.elapsed().as_secs_f64(),
                nodes[i].name
            );
            kill_and_reap(&mut nodes[i].child).await;
            tokio::time::sleep(rng.millis(200, 1500)).await;
            nodes[i].restart(&cluster);
            chaos.kills += 1;
        } else {
            // Longer than the job lease (1 s); sometimes longer than an account's hold
            // (the lease plus four retailer timeouts: 5 s).
            let pause = rng.millis(1500, 7000);
            println!(
                "{:>5.1}s: SIGSTOP {} for {:.1} s",
                started.elapsed().as_secs_f64(),
                nodes[i].name,
                pause.as_secs_f64()
            );
            nodes[i].signal(libc::SIGSTOP);
            paused.push((i, Instant::now() + pause));
            chaos.pauses += 1;
            if pause > Duration::from_secs(5) {
                chaos.long_pauses += 1;
            }
        }
    }
    for (i, _) in paused.drain(..) {
        nodes[i].signal(libc::SIGCONT);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("a client");
    }
    let acknowledged = seen.acknowledged.lock().unwrap().clone();
    println!(
        "{} orders acknowledged, {} retried requests, {} answered 503; {chaos:?}",
        acknowledged.len(),
        seen.retries.load(Ordering::Relaxed),
        seen.unavailable.load(Ordering::Relaxed)
    );
    let server_errors = seen.server_errors.lock().unwrap().clone();
    if !server_errors.is_empty() {
        let logged: Vec<String> = cluster
            .complete_log_so_far()
            .into_iter()
            .filter(|l| l.contains("request failed"))
            .collect();
        panic!(
            "server errors: {server_errors:?}\nlogged:\n{}",
            logged.join("\n")
        );
    }

    // Every acknowledged order exists and becomes final.
    let settle = Duration::from_secs(180.max(seconds));
    let orders = cluster
        .wait_for_orders_within(&key, None, settle, "finished", is_final)
        .await;
    let ids: HashSet<&String> = acknowledged.values().collect();
    for id in &ids {
        assert!(orders.contains_key(*id), "acknowledged order {id} is lost");
    }
    let purchases = cluster.purchases_by_reference().await;
    cluster.assert_exactly_once(&orders, &purchases);
    let placed = orders
        .values()
        .filter(|o| o["status"] == "order_placed")
        .count();
    for (id, order) in orders.iter().filter(|(_, o)| o["status"] == "order_failed") {
        let result = &order["job_result"];
        assert_eq!(
            result["error_type"],
            "payment_declined",
            "order {id} failed: {result}\nits log:\n{}",
            cluster.log_about(id)
        );
    }
    let through_pages = orders
        .values()
        .filter(|o| o["job_result"]["merchant_order_ids"][0]["merchant"] == "demo-pages")
        .count();
    assert!(
        through_pages > 0,
        "some orders were bought through the pages"
    );

    // Every order's final event reached the receiver, and every delivery in the log.
    let deliveries = cluster.deliveries(&key).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let bodies = receiver.accepted();
        let accepted: HashSet<String> = bodies
            .iter()
            .map(|b| b["id"].as_str().unwrap_or("").to_string())
            .collect();
        let events: HashSet<(String, String)> = bodies
            .iter()
            .map(|b| {
                let order = b["order_id"].as_str().unwrap_or("").to_string();
                (order, b["event"].as_str().unwrap_or("").to_string())
            })
            .collect();
        let undelivered = deliveries
            .iter()
            .filter(|d| !accepted.contains(d["id"].as_str().unwrap_or("")))
            .count();
        let missing_final = orders
            .iter()
            .filter(|(id, o)| {
                let event = match o["status"].as_str() {
                    Some("order_placed") => "order.placed",
                    _ => "order.failed",
                };
                !events.contains(&(id.to_string(), event.to_string()))
            })
            .count();
        if undelivered == 0 && missing_final == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{undelivered} deliveries never arrived; {missing_final} orders' final events are missing"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every node answers.
    for port in &serve_ports {
        cluster.api = format!("http://127.0.0.1:{port}");
        cluster.wait_until_up().await;
    }
    assert_no_stuck_job(&postgres.url()).await;
    let log = cluster.complete_log_so_far();
    let count = |needle: &str| log.iter().filter(|l| l.contains(needle)).count();
    println!(
        "fenced: {} checkouts stopped when their account's hold was lost, {} runs found their \
         claim or account gone before placing, {} stopped past the moment to send; {} \
         purchases adopted after an interruption",
        count("the checkout stopped: "),
        count("owns its placement; this one stops before placing"),
        count("the moment to send the purchase passed"),
        count("adopting it")
    );
    println!(
        "{} orders final: {placed} placed ({through_pages} through the pages), {} declined; \
         0 duplicates, 0 lost; {} deliveries",
        orders.len(),
        orders.len() - placed,
        deliveries.len()
    );
    for mut node in nodes {
        kill_and_reap(&mut node.child).await;
    }
    cluster.assert_no_browser_survives().await;
}

/// No job is running under a lease that ran out, waiting past its time, or dead.
async fn assert_no_stuck_job(url: &str) {
    let pool = sqlx::PgPool::connect(url).await.expect("connect");
    // Time for the upkeep of the live processes to rescue and run what is due.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stuck: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT id, kind, state FROM jobs
             WHERE state = 'dead'
                OR (state = 'running' AND lease_until < now() - interval '5 seconds')
                OR (state = 'available' AND run_at < now() - interval '10 seconds')",
        )
        .fetch_all(&pool)
        .await
        .expect("jobs");
        if stuck.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "stuck jobs: {stuck:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
