//! The browser the browser driver runs in: real headless Chromium (Debian's
//! `chromium`; `scripts/test` installs it), one process, a context per checkout.

use std::path::PathBuf;
use std::time::Duration;

use errand::retailers::browser::chromium::Chromium;

pub fn chromium_path() -> PathBuf {
    let path =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    assert!(
        path.exists(),
        "Chromium not found at {}: install it (apt-get install chromium) or run scripts/test",
        path.display()
    );
    path
}

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

async fn eval(page: &chromiumoxide::Page, js: &str) -> String {
    page.evaluate(js)
        .await
        .expect("evaluate")
        .into_value::<String>()
        .expect("a string")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_get_isolated_contexts_and_the_browser_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = errand_demo_store::start(errand_demo_store::StoreOptions {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().into(),
        admin_token: None,
        time_scale: 1.0,
    })
    .await
    .unwrap();
    let chromium = Chromium::new(&chromium_path(), 2);
    assert_eq!(chromium.pid().await, None, "started only when first needed");

    let a = chromium.checkout().await.expect("a context");
    let b = chromium.checkout().await.expect("another context");
    let pid = chromium.pid().await.expect("running");
    for checkout in [&a, &b] {
        checkout.page.goto(store.base_url()).await.unwrap();
    }
    eval(&a.page, "document.cookie = 'shopper=a'; document.cookie").await;
    assert_eq!(eval(&a.page, "document.cookie").await, "shopper=a");
    assert_eq!(
        eval(&b.page, "document.cookie").await,
        "",
        "contexts share no cookies"
    );

    // Two slots: a third checkout waits until one is closed.
    let third = tokio::spawn({
        let chromium = chromium.clone();
        async move { chromium.checkout().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "the third checkout waits for a slot");
    a.close().await;
    let third = third
        .await
        .unwrap()
        .expect("the third checkout got the freed slot");
    third.close().await;
    b.close().await;

    chromium.shutdown().await;
    assert!(!process_exists(pid), "Chromium {pid} exited");
    assert_eq!(chromium.pid().await, None);
}
