//! `/managed-accounts`: CRUD, secrets that never leave the server and are encrypted at
//! rest, validation, and tenancy.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Row;

use crate::support::*;

const PASSWORD: &str = "Tr0ub4dor&3-horse-battery";
const TOTP: &str = "jbsw y3dp ehpk 3pxp";
const TOTP_NORMALISED: &str = "JBSWY3DPEHPK3PXP";

fn account_body() -> Value {
    json!({"retailer": "demo", "email": "buyer@example.com", "password": PASSWORD,
           "totp_secret": TOTP})
}

/// Sends a request as `key` and returns the status and raw body text.
async fn call(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, String) {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, response.text().await.expect("body"))
}

async fn call_json(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let (status, text) = call(app, key, method, path, body).await;
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON body")
    };
    (status, value)
}

async fn create(app: &TestApp, key: &str, body: &Value) -> Value {
    let (status, created) =
        call_json(app, key, Method::POST, "/managed-accounts", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

async fn listed_ids(app: &TestApp, key: &str) -> Vec<String> {
    let (status, list) = call_json(app, key, Method::GET, "/managed-accounts", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(
        list["data"], list["credentials"],
        "the old name lists the same"
    );
    assert_eq!(list["total"], list["credentials"].as_array().unwrap().len());
    list["credentials"]
        .as_array()
        .expect("credentials array")
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

async fn stored_secrets(app: &TestApp, id: &str) -> Vec<u8> {
    errand::on_db!(app.db(), reader, |pool| {
        sqlx::query("SELECT secrets FROM retailer_accounts WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .expect("row")
            .get::<Vec<u8>, _>("secrets")
    })
}

fn vault(app: &TestApp) -> errand::accounts::Vault {
    app.vault().clone()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

crate::on_both_databases! {
    async fn create_read_update_delete(app: TestApp) {
        let key = app.key.clone();
        let first = create(&app, &key, &account_body()).await;
        let id = first["id"].as_str().unwrap();
        assert!(id.starts_with("acct_") && id.len() == 13, "{id}");
        assert_eq!(first["retailer"], "demo");
        assert_eq!(first["email"], "buyer@example.com");
        assert_eq!(first["has_totp"], true);
        assert_eq!(first["active"], true, "active by default");
        assert_eq!(first["last_used_at"], Value::Null);
        assert_eq!(first["created_at"], first["updated_at"]);
        // The contract's fields.
        assert_eq!(first["short_id"], first["id"]);
        assert_eq!(first["is_paused"], false);
        assert_eq!(first["has_forwarding"], false);
        assert_eq!(first["forwarding_email"], "");
        assert_eq!(first["locked_by_job_id"], Value::Null);

        let (status, fetched) = call_json(&app, &key, Method::GET, &format!("/managed-accounts/{id}"), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(fetched, first);

        let second = create(&app, &key, &json!({"retailer": "other", "email": "b@example.org",
                                                "password": "x", "active": false})).await;
        assert_eq!(second["has_totp"], false);
        assert_eq!(second["active"], false);
        let second_id = second["id"].as_str().unwrap();
        assert_eq!(listed_ids(&app, &key).await, [second_id, id], "newest first");

        // Partial update (PUT, as the contract's clients send it, or PATCH): only the
        // fields given change.
        let path = format!("/managed-accounts/{id}");
        let (status, updated) = call_json(&app, &key, Method::PUT, &path,
                                          Some(&json!({"email": "new@example.com", "active": false}))).await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        assert_eq!(updated["email"], "new@example.com");
        assert_eq!(updated["active"], false);
        assert_eq!(updated["retailer"], "demo");
        assert_eq!(updated["has_totp"], true);
        assert_eq!(updated["created_at"], first["created_at"]);
        assert!(updated["updated_at"].as_str() > first["updated_at"].as_str());
        let (_, fetched) = call_json(&app, &key, Method::GET, &path, None).await;
        assert_eq!(fetched, updated);
        assert_eq!(updated["is_paused"], true);
        let (status, unchanged) = call_json(&app, &key, Method::PATCH, &path, Some(&json!({}))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(unchanged, updated, "an empty update changes nothing");
        // The retailer cannot change; naming the same one is fine.
        let (status, same) = call_json(&app, &key, Method::PUT, &path, Some(&json!({"retailer": "demo", "retailer_config": null}))).await;
        assert_eq!((status, &same), (StatusCode::OK, &updated));
        let (status, error) = call_json(&app, &key, Method::PUT, &path, Some(&json!({"retailer": "other"}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert_eq!(error["detail"][0]["loc"], json!(["body", "retailer"]));
        let (status, error) = call_json(&app, &key, Method::PUT, &path, Some(&json!({"retailer_config": {"zip": "1"}}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert_eq!(error["detail"][0]["loc"], json!(["body", "retailer_config"]));

        // A new password keeps the TOTP secret; a null TOTP secret removes it and keeps
        // the password.
        let (status, _) = call_json(&app, &key, Method::PATCH, &path, Some(&json!({"password": "second password"}))).await;
        assert_eq!(status, StatusCode::OK);
        let (_, secrets) = errand::accounts::secrets(app.db(), &vault(&app), id).await.unwrap().unwrap();
        assert_eq!(secrets.password, "second password");
        assert_eq!(secrets.totp_secret.as_deref(), Some(TOTP_NORMALISED));
        let (status, cleared) = call_json(&app, &key, Method::PATCH, &path, Some(&json!({"totp_secret": null}))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cleared["has_totp"], false);
        let (_, secrets) = errand::accounts::secrets(app.db(), &vault(&app), id).await.unwrap().unwrap();
        assert_eq!(secrets.password, "second password");
        assert_eq!(secrets.totp_secret, None);
        let (_, restored) = call_json(&app, &key, Method::PATCH, &path, Some(&json!({"totp_secret": TOTP}))).await;
        assert_eq!(restored["has_totp"], true);

        // Delete hides it from the API for good; the engine can still read it.
        let (status, text) = call(&app, &key, Method::DELETE, &path, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(text.is_empty());
        for method in [Method::GET, Method::DELETE] {
            let (status, body) = call_json(&app, &key, method, &path, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(body["error"]["code"], "not_found");
        }
        let (status, _) = call_json(&app, &key, Method::PATCH, &path, Some(&json!({"active": true}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(listed_ids(&app, &key).await, [second_id]);
        let (account, secrets) = errand::accounts::secrets(app.db(), &vault(&app), id).await.unwrap().unwrap();
        assert!(account.deleted_at.is_some());
        assert!(!account.active);
        assert_eq!(secrets.password, "second password");

        let (status, _) = call_json(&app, &key, Method::GET, "/managed-accounts/acct_zzzzzzzz", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(errand::accounts::secrets(app.db(), &vault(&app), "acct_zzzzzzzz").await.unwrap().is_none());
    }

    async fn responses_never_carry_secrets(app: TestApp) {
        let key = app.key.clone();
        let (status, text) = call(&app, &key, Method::POST, "/managed-accounts", Some(&account_body())).await;
        assert_eq!(status, StatusCode::CREATED);
        let created: Value = serde_json::from_str(&text).unwrap();
        let id = created["id"].as_str().unwrap();
        let fields: std::collections::BTreeSet<&str> = created.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(fields, ["active", "cooldown_minutes", "created_at", "email", "forwarding_email", "has_forwarding", "has_totp",
                            "id", "is_paused", "last_used_at", "locked_by_job_id", "retailer", "retailer_config", "retailer_id",
                            "short_id", "updated_at"].into());

        let path = format!("/managed-accounts/{id}");
        let mut bodies = vec![text];
        bodies.push(call(&app, &key, Method::GET, &path, None).await.1);
        bodies.push(call(&app, &key, Method::GET, "/managed-accounts", None).await.1);
        bodies.push(call(&app, &key, Method::PATCH, &path, Some(&json!({"password": PASSWORD, "totp_secret": TOTP}))).await.1);
        for body in &bodies {
            for secret in [PASSWORD, TOTP, TOTP_NORMALISED, "password", "totp_secret"] {
                assert!(!body.contains(secret), "{secret:?} in {body}");
            }
        }
        // Nor do validation errors echo a rejected secret.
        let (status, text) = call(&app, &key, Method::POST, "/managed-accounts",
                                  Some(&json!({"retailer": "demo", "email": "bad", "password": PASSWORD,
                                               "totp_secret": "NOT-BASE32-SECRET-1"}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(!text.contains(PASSWORD) && !text.contains("NOT-BASE32-SECRET-1"), "{text}");
    }

    async fn secrets_are_encrypted_at_rest(app: TestApp) {
        let created = create(&app, &app.key, &account_body()).await;
        let id = created["id"].as_str().unwrap();
        let sealed = stored_secrets(&app, id).await;
        assert!(!sealed.is_empty());
        for secret in [PASSWORD, TOTP_NORMALISED, "password", "totp"] {
            assert!(!contains(&sealed, secret), "{secret:?} stored in clear");
        }
        let (account, secrets) = errand::accounts::secrets(app.db(), &vault(&app), id).await.unwrap().unwrap();
        assert_eq!(account.email, "buyer@example.com");
        assert_eq!(secrets.password, PASSWORD);
        assert_eq!(secrets.totp_secret.as_deref(), Some(TOTP_NORMALISED));

        // Bound to its row: the same ciphertext under another id does not decrypt.
        let other = create(&app, &app.key, &json!({"retailer": "demo", "email": "c@d", "password": "p"})).await;
        let other_id = other["id"].as_str().unwrap();
        errand::on_db!(app.db(), writer, |pool| {
            sqlx::query("UPDATE retailer_accounts SET secrets = $1 WHERE id = $2")
                .bind(&sealed)
                .bind(other_id)
                .execute(pool)
                .await
                .expect("update");
        });
        let error = errand::accounts::secrets(app.db(), &vault(&app), other_id).await.unwrap_err();
        assert!(matches!(error, errand::accounts::AccountError::Vault(_)), "{error}");
        // A secrets-preserving update of that row fails safely; one that replaces both
        // secrets repairs it.
        let path = format!("/managed-accounts/{other_id}");
        let (status, body) = call_json(&app, &app.key, Method::PATCH, &path, Some(&json!({"password": "new"}))).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal_error");
        let (status, _) = call_json(&app, &app.key, Method::PATCH, &path,
                                    Some(&json!({"password": "new", "totp_secret": null}))).await;
        assert_eq!(status, StatusCode::OK);
        let (_, secrets) = errand::accounts::secrets(app.db(), &vault(&app), other_id).await.unwrap().unwrap();
        assert_eq!(secrets.password, "new");
    }

    async fn concurrent_updates_of_different_secrets_both_stick(app: TestApp) {
        let created = create(&app, &app.key, &account_body()).await;
        let id = created["id"].as_str().unwrap();
        let path = format!("/managed-accounts/{id}");
        let totps = ["GEZDGNBVGY3TQOJQ", "MFRGGZDFMZTWQ2LK", "ONSWG4TFORZXI4TP", "KRUGS4ZANFZSAYLO"];
        for (round, totp) in totps.into_iter().enumerate() {
            let password = format!("password {round}");
            let password_body = json!({"password": password});
            let totp_body = json!({"totp_secret": totp});
            let (a, b) = tokio::join!(
                call(&app, &app.key, Method::PATCH, &path, Some(&password_body)),
                call(&app, &app.key, Method::PATCH, &path, Some(&totp_body)),
            );
            assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK), "{a:?} {b:?}");
            let (_, secrets) = errand::accounts::secrets(app.db(), &vault(&app), id).await.unwrap().unwrap();
            assert_eq!(secrets.password, password);
            assert_eq!(secrets.totp_secret.as_deref(), Some(totp));
        }
    }

    async fn validation_errors_name_each_field(app: TestApp) {
        let key = app.key.clone();
        let body = json!({"retailer": "  ", "email": "no-at-sign", "password": "",
                          "totp_secret": "not base32!", "active": "yes", "colour": "red"});
        let (status, errors) = call_json(&app, &key, Method::POST, "/managed-accounts", Some(&body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_list(&errors), [
            (json!(["body", "colour"]), "extra_forbidden".to_string()),
            (json!(["body", "retailer"]), "string_too_short".to_string()),
            (json!(["body", "email"]), "value_error".to_string()),
            (json!(["body", "password"]), "string_too_short".to_string()),
            (json!(["body", "totp_secret"]), "value_error".to_string()),
            (json!(["body", "active"]), "bool_type".to_string()),
        ]);

        let (status, errors) = call_json(&app, &key, Method::POST, "/managed-accounts", Some(&json!({}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let locs: Vec<Value> = error_list(&errors).into_iter().map(|(loc, _)| loc).collect();
        assert_eq!(locs, [json!(["body", "retailer"]), json!(["body", "email"]), json!(["body", "password"])]);

        let long = json!({"retailer": "demo", "email": format!("{}@example.com", "a".repeat(250)),
                          "password": "p".repeat(1025), "totp_secret": "JBSWY3DPEHPK"});
        let (_, errors) = call_json(&app, &key, Method::POST, "/managed-accounts", Some(&long)).await;
        assert_eq!(error_list(&errors), [
            (json!(["body", "email"]), "string_too_long".to_string()),
            (json!(["body", "password"]), "string_too_long".to_string()),
            (json!(["body", "totp_secret"]), "string_too_short".to_string()),
        ]);

        let (status, errors) = call_json(&app, &key, Method::POST, "/managed-accounts", Some(&json!([1]))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_list(&errors)[0].1, "model_attributes_type");

        let created = create(&app, &key, &account_body()).await;
        let path = format!("/managed-accounts/{}", created["id"].as_str().unwrap());
        let (status, errors) = call_json(&app, &key, Method::PATCH, &path,
                                         Some(&json!({"retailer": 7, "email": null, "password": 5,
                                                      "totp_secret": "JBSWY3DP", "active": null, "colour": "red"}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_list(&errors), [
            (json!(["body", "colour"]), "extra_forbidden".to_string()),
            (json!(["body", "retailer"]), "string_type".to_string()),
            (json!(["body", "email"]), "string_type".to_string()),
            (json!(["body", "active"]), "bool_type".to_string()),
            (json!(["body", "password"]), "string_type".to_string()),
            (json!(["body", "totp_secret"]), "string_too_short".to_string()),
        ]);
        // Nothing was changed by the refused update.
        let (_, fetched) = call_json(&app, &key, Method::GET, &path, None).await;
        assert_eq!(fetched, created);
    }

    async fn other_accounts_get_404_and_see_nothing(app: TestApp) {
        let created = create(&app, &app.key, &account_body()).await;
        let id = created["id"].as_str().unwrap();
        let path = format!("/managed-accounts/{id}");
        let intruder = app.new_account_key("intruder").await;

        assert!(listed_ids(&app, &intruder).await.is_empty());
        for (method, body) in [(Method::GET, None), (Method::PATCH, Some(json!({"active": false}))),
                               (Method::DELETE, None)] {
            let (status, response) = call_json(&app, &intruder, method.clone(), &path, body.as_ref()).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
            assert_eq!(response["error"]["code"], "not_found");
        }
        // The owner's account is untouched.
        let (status, fetched) = call_json(&app, &app.key, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(fetched, created);
        // The intruder's own accounts are theirs alone.
        let theirs = create(&app, &intruder, &account_body()).await;
        assert_eq!(listed_ids(&app, &intruder).await, [theirs["id"].as_str().unwrap()]);
        assert_eq!(listed_ids(&app, &app.key).await, [id]);

        // No key at all: 401 before anything else.
        let response = app.client.get(app.url("/managed-accounts")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    async fn live_and_test_keys_have_separate_accounts(app: TestApp) {
        let tenant = errand::auth::keys::find_tenant(app.db(), &errand::auth::hash_key(&app.key)).await.unwrap().unwrap();
        let test_key = app.key_for_account(tenant.account_id, false).await;
        let live_colleague = app.key_for_account(tenant.account_id, true).await;

        let live = create(&app, &app.key, &account_body()).await;
        let live_id = live["id"].as_str().unwrap();
        let test = create(&app, &test_key, &account_body()).await;
        let test_id = test["id"].as_str().unwrap();

        assert_eq!(listed_ids(&app, &app.key).await, [live_id]);
        assert_eq!(listed_ids(&app, &live_colleague).await, [live_id], "same account, same mode");
        assert_eq!(listed_ids(&app, &test_key).await, [test_id]);
        let (status, _) = call_json(&app, &test_key, Method::GET, &format!("/managed-accounts/{live_id}"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = call_json(&app, &app.key, Method::DELETE, &format!("/managed-accounts/{test_id}"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = call_json(&app, &test_key, Method::DELETE, &format!("/managed-accounts/{test_id}"), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(listed_ids(&app, &app.key).await, [live_id]);
    }

    async fn the_master_key_file_is_private_and_survives_restarts(app: TestApp) {
        let path = app.settings.data_dir.join("master.key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("master.key exists").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        }
        let created = create(&app, &app.key, &account_body()).await;
        let id = created["id"].as_str().unwrap().to_string();
        let key_before = std::fs::read(&path).unwrap();
        app.restart().await;
        assert_eq!(std::fs::read(&path).unwrap(), key_before);
        let path = format!("/managed-accounts/{id}");
        let (status, _) = call_json(&app, &app.key, Method::PATCH, &path, Some(&json!({"password": "after restart"}))).await;
        assert_eq!(status, StatusCode::OK, "secrets written before the restart still decrypt");
        let (_, secrets) = errand::accounts::secrets(app.db(), &vault(&app), &id).await.unwrap().unwrap();
        assert_eq!(secrets.totp_secret.as_deref(), Some(TOTP_NORMALISED));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_the_managed_account_operations() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = &doc["paths"];
    for (path, method) in [
        ("/managed-accounts", "get"),
        ("/managed-accounts", "post"),
        ("/managed-accounts/{short_id}", "get"),
        ("/managed-accounts/{short_id}", "put"),
        ("/managed-accounts/{short_id}", "delete"),
    ] {
        let operation = &paths[path][method];
        assert_eq!(
            operation["tags"],
            json!(["managed-accounts"]),
            "{method} {path}"
        );
        assert!(operation["security"].is_array(), "{method} {path}");
    }
    let schema = &doc["components"]["schemas"]["RetailerCredentialsResponse"];
    let properties: std::collections::BTreeSet<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        properties,
        [
            "active",
            "cooldown_minutes",
            "created_at",
            "email",
            "forwarding_email",
            "has_forwarding",
            "has_totp",
            "id",
            "is_paused",
            "last_used_at",
            "locked_by_job_id",
            "retailer",
            "retailer_config",
            "retailer_id",
            "short_id",
            "updated_at"
        ]
        .into()
    );
    assert_eq!(
        paths["/managed-accounts"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/RetailerCredentialsResponse"
    );
}

/// The engine's entry point for the first start: no HTTP request involved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_can_be_created_without_a_request() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let tenant = errand::auth::keys::find_tenant(app.db(), &errand::auth::hash_key(&app.key))
        .await
        .unwrap()
        .unwrap();
    let new = errand::accounts::NewRetailerAccount {
        retailer: "demo".into(),
        email: "demo@example.com".into(),
        secrets: errand::accounts::Secrets {
            password: "demo-password".into(),
            totp_secret: None,
        },
        active: true,
    };
    let account = errand::accounts::create(app.db(), &vault(&app), tenant.account_id, true, new)
        .await
        .unwrap();
    assert_eq!(listed_ids(&app, &app.key).await, [account.id.as_str()]);
    let (_, secrets) = errand::accounts::secrets(app.db(), &vault(&app), &account.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(secrets.password, "demo-password");
}
