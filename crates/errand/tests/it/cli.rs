//! The `errand` binary: first run, key management, configuration errors, shutdown.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// `errand` run in `dir` with its data in `dir/data` (set through the environment).
fn errand(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_errand"));
    cmd.env("ERRAND_DATA_DIR", dir.join("data"))
        .env_remove("ERRAND_DATABASE_URL")
        .env_remove("ERRAND_LISTEN")
        .env("ERRAND_DEMO_STORE_LISTEN", "127.0.0.1:0")
        .env("ERRAND_DEMO_STORE_TIME_SCALE", "86400")
        .env("RUST_LOG", "warn")
        .current_dir(dir)
        .kill_on_drop(true);
    cmd
}

async fn run(data_dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = errand(data_dir)
        .args(args)
        .output()
        .await
        .expect("run errand");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, live, _) = run(dir.path(), &["keys", "create", "--name", "alice"]).await;
    assert!(ok);
    let live = live.trim().to_string();
    assert!(live.starts_with("er_live_") && live.len() == 40, "{live}");
    assert!(
        dir.path().join("data/errand.db").exists(),
        "ERRAND_DATA_DIR is honoured"
    );
    let (ok, test, _) = run(dir.path(), &["keys", "create", "--name", "ci", "--test"]).await;
    assert!(ok);
    assert!(test.trim().starts_with("er_test_"));

    let (ok, listed, _) = run(dir.path(), &["keys", "list", "--json"]).await;
    assert!(ok);
    assert!(
        !listed.contains(&live) && !listed.contains(test.trim()),
        "secrets are never listed"
    );
    let keys: Vec<Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["livemode"], true);
    assert_eq!(keys[1]["livemode"], false);
    assert!(live.starts_with(keys[0]["prefix"].as_str().unwrap()));

    let (ok, out, _) = run(
        dir.path(),
        &["keys", "revoke", keys[0]["prefix"].as_str().unwrap()],
    )
    .await;
    assert!(ok, "{out}");
    let (_, listed, _) = run(dir.path(), &["keys", "list", "--json"]).await;
    let keys: Vec<Value> = serde_json::from_str(&listed).unwrap();
    assert!(keys[0]["revoked_at"].is_string());
    assert!(keys[1]["revoked_at"].is_null());

    let (ok, _, err) = run(dir.path(), &["keys", "revoke", "er_live_nope"]).await;
    assert!(!ok);
    assert!(err.contains("no API key matches"), "{err}");
    let (ok, table, _) = run(dir.path(), &["keys", "list"]).await;
    assert!(ok && table.contains("revoked") && table.contains("active"));
}

#[tokio::test]
async fn invalid_configuration_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let output = errand(dir.path())
        .arg("serve")
        .env("ERRAND_LISTEN", "nowhere")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("listen") && err.contains("nowhere"), "{err}");

    std::fs::write(
        dir.path().join("errand.toml"),
        "lissten = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let output = errand(dir.path()).arg("migrate").output().await.unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("lissten"), "unknown settings are named: {err}");
}

/// The README's first command: `errand serve` on a fresh data directory prints a key and
/// a curl command, and that command creates an order.
#[tokio::test]
async fn first_run_prints_a_key_and_a_working_curl_command() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = errand(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            printed.push_str(&line);
            printed.push('\n');
            if line.trim_end().ends_with("}'") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("serve printed its first-run help");
    let key = printed
        .split_whitespace()
        .find(|w| w.starts_with("er_live_"))
        .expect("a key is printed")
        .to_string();
    let curl = &printed[printed.find("curl ").expect("a curl command is printed")..];
    assert!(curl.contains(&key));
    // The demo store runs alongside, and the example orders one of its products.
    let store = printed
        .lines()
        .find_map(|l| l.strip_prefix("Demo store: "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the demo store's address is printed")
        .to_string();
    assert!(curl.contains(&format!("{store}/dp/")), "{curl}");
    let product = reqwest::get(format!(
        "{store}/api/products/{}",
        errand_demo_store::FIRST_RUN_PRODUCT
    ))
    .await
    .unwrap();
    assert_eq!(product.status(), 200);
    let page = reqwest::get(format!(
        "{store}/dp/{}",
        errand_demo_store::FIRST_RUN_PRODUCT
    ))
    .await
    .unwrap();
    assert_eq!(page.status(), 200, "the product URL is a product page");

    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("{} -w '\\n%{{http_code}}'", curl.trim()))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (body, code) = stdout.trim().rsplit_once('\n').expect("body and status");
    assert_eq!(code, "201", "{stdout}");
    let order: Value = serde_json::from_str(body).unwrap();
    crate::support::schema::assert_valid("OrderResponse", &order);
    assert_eq!(order["status"], "pending");

    // The engine buys it from the demo store with the account created on first start,
    // then follows it to delivery (this test's store clock runs a day per second).
    let base = printed
        .lines()
        .find_map(|l| l.split("is listening on ").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .expect("the API's address is printed")
        .to_string();
    let client = reqwest::Client::new();
    let order_url = format!("{base}/orders/{}", order["id"].as_str().unwrap());
    let mut seen = vec![];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let order = loop {
        let order: Value = client
            .get(&order_url)
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let status = order["status"].as_str().unwrap().to_string();
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        let delivered = order["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "delivered");
        if delivered {
            break order;
        }
        assert!(std::time::Instant::now() < deadline, "{order:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(seen.last().unwrap(), "order_placed", "{seen:?}");
    assert!(!seen.contains(&"order_failed".to_string()), "{seen:?}");
    crate::support::schema::assert_valid("OrderResponse", &order);
    let result = &order["job_result"];
    assert!(
        result["merchant_order_ids"][0]["merchant_order_id"].is_string(),
        "{result}"
    );
    assert!(result["price_components"]["total"].as_i64().unwrap() > 0);
    assert!(!order["tracking_numbers"].as_array().unwrap().is_empty());

    // SIGTERM: a clean, graceful exit.
    let pid = server.id().unwrap().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");

    // The second start finds the key and creates none (and runs without the store).
    let mut again = errand(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--no-demo-store"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(again.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.contains("listening"), "{first}");
    // Everything it prints at start comes within a moment; then stop it and read the rest.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = again.kill().await;
    let mut rest = String::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await
    {
        rest.push_str(&line);
        rest.push('\n');
    }
    assert!(rest.contains("API docs"), "{rest}");
    assert!(!rest.contains("er_live_"), "no second key: {rest}");
    assert!(
        !rest.contains("Demo store:"),
        "--no-demo-store runs without the store: {rest}"
    );
}

#[tokio::test]
async fn dead_jobs_are_listed_and_revived() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(dir.path(), &["migrate"]).await;
    assert!(ok, "{err}");
    // A job that failed for good, as the engine would leave it.
    let options = errand::config::Settings {
        data_dir: dir.path().join("data"),
        ..errand::config::Settings::default()
    }
    .db_options();
    let db = errand::storage::Db::connect(&options).await.unwrap();
    let job = errand::queue::NewJob::now(
        errand::queue::JobKind::PlaceOrder,
        Some(uuid::Uuid::now_v7()),
        1,
    );
    let mut tx = db.begin().await.unwrap();
    errand::queue::enqueue(&mut tx, &[job]).await.unwrap();
    tx.commit().await.unwrap();
    let kinds = [errand::queue::JobKind::PlaceOrder];
    let claimed = errand::queue::claim(&db, "w", &[], 1, Duration::from_secs(30), &kinds)
        .await
        .unwrap();
    let policy = errand::queue::RetryPolicy {
        base: Duration::from_millis(1),
        max: Duration::from_millis(1),
    };
    let failed = errand::queue::Outcome::Dead("the retailer is gone".into());
    errand::queue::settle(&db, "w", &claimed[0], &failed, &policy)
        .await
        .unwrap();
    db.close().await;

    let (ok, listed, _) = run(dir.path(), &["jobs", "list", "--state", "dead", "--json"]).await;
    assert!(ok);
    let jobs: Vec<Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["last_error"], "the retailer is gone");
    let id = jobs[0]["id"].to_string();
    let (ok, table, _) = run(dir.path(), &["jobs", "list"]).await;
    assert!(
        ok && table.contains("place_order") && table.contains("dead"),
        "{table}"
    );

    let (ok, out, err) = run(dir.path(), &["jobs", "retry", &id]).await;
    assert!(ok, "{err}");
    assert!(out.contains("will run again"));
    let (_, listed, _) = run(
        dir.path(),
        &["jobs", "list", "--state", "available", "--json"],
    )
    .await;
    let jobs: Vec<Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["attempt"], 0);
    let (ok, _, err) = run(dir.path(), &["jobs", "retry", &id]).await;
    assert!(!ok && err.contains("no dead job"), "{err}");
}
