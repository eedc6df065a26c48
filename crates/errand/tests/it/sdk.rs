//! Zinc's official Node SDK against Errand: `tests/sdk/sdk.mjs` calls every SDK method
//! Errand serves and checks each result against the type the SDK declares for it. An
//! order is placed and delivered first (returns need one); then the workers stop, so
//! the script's own orders stay `pending` and cancelling them is deterministic.
//! Methods whose shapes are known to differ still are listed in the script's
//! `KNOWN_MISMATCHES`; anything else that differs fails this test.
//!
//! Needs `node` and `npm ci` in `tests/sdk`; `scripts/test` provides the latter.

use std::path::Path;
use std::time::Duration;

crate::on_both_databases! {
    async fn zincs_node_sdk_gets_the_shapes_it_declares(app: Engine) {
        let mut body = crate::support::order_body();
        body["products"] = serde_json::json!([{"url": app.product_url("B0DEMO0005"), "quantity": 2}]);
        body["max_price"] = serde_json::json!(1_000_000);
        let placed = app.created(&body).await;
        let delivered = app
            .wait_for_order(placed["id"].as_str().unwrap(), |o| o["items"][0]["status"] == "delivered")
            .await;
        app.stop_workers().await;
        let sdk_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk");
        assert!(
            sdk_dir.join("node_modules/zinc").exists(),
            "Zinc's SDK (npm zinc) is not installed: run `npm ci` in {} or scripts/test",
            sdk_dir.display()
        );
        let run = tokio::process::Command::new("node")
            .arg(sdk_dir.join("sdk.mjs"))
            .current_dir(&sdk_dir)
            .env("ERRAND_BASE_URL", &app.base)
            .env("ERRAND_API_KEY", &app.key)
            .env("ERRAND_PRODUCT_URL", app.product_url("B0DEMO0005"))
            .env("ERRAND_DELIVERED_ORDER_ID", delivered["id"].as_str().unwrap())
            .env("ERRAND_DELIVERED_ITEM_ID", delivered["items"][0]["id"].as_str().unwrap())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .expect("sdk.mjs finishes within two minutes")
            .expect("node runs (is it installed?)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "sdk.mjs failed ({}):\n{stdout}\n{stderr}",
            output.status
        );
        // The per-method results, shown with `--nocapture`.
        println!("{stdout}");
        let last = stdout.lines().last().unwrap_or_default();
        assert!(
            last.contains(" passed, 0 failed"),
            "sdk.mjs ends with its tally, not {last:?}:\n{stdout}\n{stderr}"
        );
    }
}
