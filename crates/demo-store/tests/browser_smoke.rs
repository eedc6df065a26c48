//! A person's purchase in a real headless Chromium (Debian's `chromium`, driven by
//! playwright-core from `tests/browser`): sign in, empty a cart holding a line from an
//! earlier attempt, pick a variant, check out, place the order; then the order ships and
//! arrives on the store clock, one of the two shirts is returned through the return form,
//! and a test product's declined card shows in `#error`. Screenshots of the product,
//! review, confirmation, delivered, return and declined pages are saved under the
//! target directory.
//!
//! Needs `chromium` and `npm ci` in `tests/browser`; `scripts/test` provides both.

use std::path::{Path, PathBuf};
use std::time::Duration;

use errand_demo_store::{DEMO_EMAIL, DEMO_PASSWORD, StoreOptions, start};
use serde_json::Value;

fn chromium() -> PathBuf {
    let path =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    assert!(
        path.exists(),
        "Chromium not found at {}: install it (apt-get install chromium) or run scripts/test",
        path.display()
    );
    path
}

#[tokio::test]
async fn a_person_buys_in_headless_chromium_and_the_order_arrives() {
    let chromium = chromium();
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in {} or scripts/test",
        browser_dir.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let store = start(StoreOptions {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().into(),
        admin_token: Some("admin".into()),
        time_scale: 864_000.0,
    })
    .await
    .unwrap();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-store-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    let run = tokio::process::Command::new("node")
        .arg(browser_dir.join("smoke.mjs"))
        .arg(store.base_url())
        .arg(&shots)
        .arg(DEMO_EMAIL)
        .arg(DEMO_PASSWORD)
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser walk finishes")
        .unwrap();
    assert!(
        output.status.success(),
        "browser walk failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value =
        serde_json::from_slice(output.stdout.trim_ascii()).expect("the walk prints its result");
    assert_eq!(result["leftover"], "1", "a line was left in the cart");
    assert_eq!(result["emptied"], "Your cart is empty");
    assert_eq!(
        (&result["priceXL"], &result["priceM"]),
        (&Value::from("$24.99"), &Value::from("$19.99")),
        "the chosen size's price"
    );
    assert_eq!(result["availability"], "In stock");
    assert_eq!(result["declined"]["code"], "payment_declined");
    assert_eq!(result["declined"]["message"], "Your card was declined");
    let order_id = result["orderId"].as_str().unwrap().to_string();
    assert_eq!(
        result["status"], "delivered",
        "the shopper saw the order arrive"
    );
    assert!(
        !result["tracking"].as_array().unwrap().is_empty(),
        "with its tracking numbers"
    );

    let returned = &result["returned"];
    let return_id = returned["id"].as_str().unwrap();
    assert!(return_id.starts_with("RT-"), "{returned}");
    assert_eq!(returned["status"], "approved");
    assert_eq!(returned["quantity"], "1", "one of the two shirts");
    assert_eq!(
        returned["label"],
        format!("/returns/{return_id}/label.pdf").as_str()
    );
    assert_eq!(returned["found"], return_id, "found by its reference");

    for name in [
        "product",
        "review",
        "confirmation",
        "delivered",
        "return",
        "declined",
    ] {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{name}.png is a real screenshot"
        );
    }

    // What the store really sold, then the order ships and arrives.
    let client = reqwest::Client::new();
    let mut status = String::new();
    for _ in 0..100 {
        let truth: Value = client
            .get(format!("{}/api/admin/orders", store.base_url()))
            .bearer_auth("admin")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let order = &truth["orders"][0];
        assert_eq!(
            truth["orders"].as_array().unwrap().len(),
            1,
            "exactly one order: the declined card bought nothing"
        );
        assert_eq!(order["id"], order_id.as_str());
        assert_eq!(order["buyer_reference"], "browser-smoke-1");
        assert_eq!(
            order["lines"].as_array().unwrap().len(),
            1,
            "the leftover line was not bought"
        );
        assert_eq!(order["lines"][0]["quantity"], 2);
        assert!(
            order["lines"][0]["sku"].as_str().unwrap().ends_with("-M"),
            "size M was bought"
        );
        let shown = format!(
            "${}.{:02}",
            order["total"].as_i64().unwrap() / 100,
            order["total"].as_i64().unwrap() % 100
        );
        assert_eq!(
            result["total"].as_str(),
            Some(shown.as_str()),
            "the review page showed what was charged"
        );
        status = order["status"].as_str().unwrap().to_string();
        if status == "delivered" {
            assert!(!order["shipments"].as_array().unwrap().is_empty());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "delivered");
    store.stop().await.unwrap();
}
