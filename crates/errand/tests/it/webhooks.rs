//! `/webhooks/endpoint`: registration, the signing secret, rotation and URL safety.

use errand::auth::Tenant;
use serde_json::{Value, json};

use crate::support::{TestApp, json_of};

async fn call(
    app: &TestApp,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let (status, body) = json_of(request.send().await.unwrap()).await;
    (status.as_u16(), body)
}

const PUBLIC_URL: &str = "http://93.184.215.14/hooks/errand";

crate::on_both_databases! {
    async fn an_endpoint_gets_a_secret_that_survives_url_changes(app: TestApp) {
        let key = app.key.clone();
        let (status, empty) = call(&app, &key, reqwest::Method::GET, "/webhooks/endpoint", None).await;
        assert_eq!(status, 200);
        assert_eq!(empty, json!({"webhook_url": null, "webhook_secret": null, "url": null, "secret": null, "disabled_reason": null}));

        let (status, set) = call(&app, &key, reqwest::Method::PUT, "/webhooks/endpoint", Some(json!({"url": PUBLIC_URL}))).await;
        assert_eq!(status, 200, "{set}");
        assert_eq!(set["webhook_url"], PUBLIC_URL);
        assert_eq!(set["url"], PUBLIC_URL);
        let secret = set["webhook_secret"].as_str().unwrap().to_string();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(set["secret"], set["webhook_secret"]);
        let (_, read) = call(&app, &key, reqwest::Method::GET, "/webhooks/endpoint", None).await;
        assert_eq!(read, set);

        // Stored sealed, never in clear.
        let stored: Vec<u8> = match app.db() {
            errand::storage::Db::Sqlite(s) => sqlx::query_scalar("SELECT secret FROM webhook_endpoints").fetch_one(&s.reader).await.unwrap(),
            errand::storage::Db::Postgres(p) => sqlx::query_scalar("SELECT secret FROM webhook_endpoints").fetch_one(p).await.unwrap(),
        };
        assert!(!stored.windows(secret.len()).any(|w| w == secret.as_bytes()));

        let other_url = "http://93.184.215.14/other";
        let (_, moved) = call(&app, &key, reqwest::Method::PUT, "/webhooks/endpoint", Some(json!({"url": other_url}))).await;
        assert_eq!(moved["url"], other_url);
        assert_eq!(moved["secret"], secret.as_str(), "the secret is kept");

        let (status, _) = call(&app, &key, reqwest::Method::DELETE, "/webhooks/endpoint", None).await;
        assert_eq!(status, 204);
        let (_, stopped) = call(&app, &key, reqwest::Method::GET, "/webhooks/endpoint", None).await;
        assert_eq!(stopped, json!({"webhook_url": null, "webhook_secret": secret, "url": null, "secret": secret, "disabled_reason": null}));

        // Another account sees nothing of it.
        let stranger = app.new_account_key("stranger").await;
        let (_, theirs) = call(&app, &stranger, reqwest::Method::GET, "/webhooks/endpoint", None).await;
        assert_eq!(theirs, json!({"webhook_url": null, "webhook_secret": null, "url": null, "secret": null, "disabled_reason": null}));
        let (status, _) = call(&app, &stranger, reqwest::Method::POST, "/webhooks/endpoint/rotate-secret", None).await;
        assert_eq!(status, 404);
    }

    async fn rotation_keeps_the_old_secret_signing_for_a_day(app: TestApp) {
        let key = app.key.clone();
        let (_, set) = call(&app, &key, reqwest::Method::PUT, "/webhooks/endpoint", Some(json!({"url": PUBLIC_URL}))).await;
        let (status, rotated) = call(&app, &key, reqwest::Method::POST, "/webhooks/endpoint/rotate-secret", None).await;
        assert_eq!(status, 200);
        assert_ne!(rotated["secret"], set["secret"]);
        assert_eq!(rotated["url"], PUBLIC_URL);
        let vault = app.vault();
        let tenant = Tenant { account_id: app.account_id, livemode: true, key_id: uuid::Uuid::nil() };
        let endpoint = errand::webhooks::endpoint::get(app.db(), vault, &tenant).await.unwrap().unwrap();
        assert_eq!(endpoint.secret, rotated["secret"].as_str().unwrap());
        assert_eq!(endpoint.previous_secret.as_deref(), set["secret"].as_str());
    }

    async fn private_and_malformed_urls_are_refused(app: TestApp) {
        let key = app.key.clone();
        for (url, kind) in [
            ("http://127.0.0.1:9000/hook", "url_not_public"),
            ("http://169.254.169.254/latest", "url_not_public"),
            ("http://[::1]/hook", "url_not_public"),
            ("http://[::ffff:127.0.0.1]/hook", "url_not_public"),
            ("http://[::127.0.0.1]/hook", "url_not_public"),
            ("http://[64:ff9b::a9fe:a9fe]/hook", "url_not_public"),
            ("http://[64:ff9b:1::5db8:d822]/hook", "url_not_public"),
            ("http://[2002:7f00:1::]/hook", "url_not_public"),
            ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook", "url_not_public"),
            ("http://[fec0::1]/hook", "url_not_public"),
            ("http://198.18.0.1/hook", "url_not_public"),
            ("http://192.0.0.8/hook", "url_not_public"),
            ("http://240.0.0.1/hook", "url_not_public"),
            ("http://255.255.255.255/hook", "url_not_public"),
            ("ftp://93.184.215.14/hook", "url_parsing"),
            ("hooks", "url_parsing"),
        ] {
            let (status, error) = call(&app, &key, reqwest::Method::PUT, "/webhooks/endpoint", Some(json!({"url": url}))).await;
            assert_eq!(status, 422, "{url}");
            assert_eq!(error["detail"][0]["loc"], json!(["body", "url"]));
            assert_eq!(error["detail"][0]["type"], kind, "{url}");
            if kind == "url_not_public" {
                let msg = error["detail"][0]["msg"].as_str().unwrap();
                assert!(msg.contains(" is not a public address ("), "{url}: {msg}");
            }
        }
        let (_, error) = call(&app, &key, reqwest::Method::PUT, "/webhooks/endpoint", Some(json!({"url": "http://[64:ff9b::a9fe:a9fe]/latest"}))).await;
        assert_eq!(
            error["detail"][0]["msg"],
            "64:ff9b::a9fe:a9fe is not a public address (64:ff9b::/96: IPv4/IPv6 translation, carrying 169.254.169.254 in 169.254.0.0/16: link-local); webhooks go only to public addresses (set webhooks_allow_private_addresses to allow it)"
        );
        let (status, error) = call(&app, &key, reqwest::Method::PUT, "/webhooks/endpoint", Some(json!({}))).await;
        assert_eq!(status, 422);
        assert_eq!(error["detail"][0]["type"], "missing");
        let (_, nothing) = call(&app, &key, reqwest::Method::GET, "/webhooks/endpoint", None).await;
        assert_eq!(nothing, json!({"webhook_url": null, "webhook_secret": null, "url": null, "secret": null, "disabled_reason": null}), "nothing was stored");
    }
}
