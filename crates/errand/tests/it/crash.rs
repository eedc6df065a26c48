//! Exactly-once purchase through crashes: real `errand` processes, killed with SIGKILL
//! while they place orders at a demo store that sometimes hangs up after committing.
//! Afterwards every order is final, and the store's ground truth holds exactly one
//! purchase per placed order and none for the others.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::Backend;
use crate::support::cluster::{Buying, Cluster, Options, kill, kill_and_reap};
use crate::support::receiver::{Misbehaviour, Receiver};

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
    let options = Options {
        buying: Buying::Pages,
        ..Options::default()
    };
    let cluster = Cluster::with(backend, options).await;
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
    cluster.send_webhooks_to(&key, &receiver.url).await;

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
