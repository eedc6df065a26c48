//! Every validation rule of `POST /orders`: exact `loc` and `type`, every failing field
//! listed, and nothing stored for a refused request.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

type Mutation = fn(&mut Value);
/// What a refused case changes, how, and the `(loc, type)` list expected back.
type RefusedCase = (&'static str, Mutation, Vec<(Value, &'static str)>);

fn remove(v: &mut Value, path: &[&str]) {
    let (last, parents) = path.split_last().unwrap();
    let mut target = v;
    for p in parents {
        target = &mut target[*p];
    }
    target.as_object_mut().unwrap().remove(*last);
}

fn refused_cases() -> Vec<RefusedCase> {
    let p0 = |field: &str| json!(["body", "products", 0, field]);
    let addr = |field: &str| json!(["body", "shipping_address", field]);
    vec![
        (
            "products missing",
            |b| remove(b, &["products"]),
            vec![(json!(["body", "products"]), "missing")],
        ),
        (
            "products null",
            |b| b["products"] = Value::Null,
            vec![(json!(["body", "products"]), "missing")],
        ),
        (
            "products empty",
            |b| b["products"] = json!([]),
            vec![(json!(["body", "products"]), "too_short")],
        ),
        (
            "products not a list",
            |b| b["products"] = json!("x"),
            vec![(json!(["body", "products"]), "list_type")],
        ),
        (
            "too many products",
            |b| b["products"] = json!(vec![json!({"url": "https://store.example/dp/A"}); 51]),
            vec![(json!(["body", "products"]), "too_long")],
        ),
        (
            "product not an object",
            |b| b["products"] = json!([5]),
            vec![(json!(["body", "products", 0]), "model_type")],
        ),
        (
            "url missing",
            |b| {
                b["products"][0].as_object_mut().unwrap().remove("url");
            },
            vec![(p0("url"), "missing")],
        ),
        (
            "url not a string",
            |b| b["products"][0]["url"] = json!(42),
            vec![(p0("url"), "string_type")],
        ),
        (
            "url not a url",
            |b| b["products"][0]["url"] = json!("not a url"),
            vec![(p0("url"), "url_parsing")],
        ),
        (
            "url relative",
            |b| b["products"][0]["url"] = json!("/dp/B0X"),
            vec![(p0("url"), "url_parsing")],
        ),
        (
            "url ftp",
            |b| b["products"][0]["url"] = json!("ftp://store.example/dp/1"),
            vec![(p0("url"), "url_scheme")],
        ),
        (
            "url too long",
            |b| {
                b["products"][0]["url"] =
                    json!(format!("https://store.example/{}", "a".repeat(2100)))
            },
            vec![(p0("url"), "string_too_long")],
        ),
        (
            "quantity 0",
            |b| b["products"][0]["quantity"] = json!(0),
            vec![(p0("quantity"), "greater_than_equal")],
        ),
        (
            "quantity 101",
            |b| b["products"][0]["quantity"] = json!(101),
            vec![(p0("quantity"), "less_than_equal")],
        ),
        (
            "quantity text",
            |b| b["products"][0]["quantity"] = json!("two"),
            vec![(p0("quantity"), "int_parsing")],
        ),
        (
            "quantity fraction",
            |b| b["products"][0]["quantity"] = json!(1.5),
            vec![(p0("quantity"), "int_from_float")],
        ),
        (
            "quantity bool",
            |b| b["products"][0]["quantity"] = json!(true),
            vec![(p0("quantity"), "int_type")],
        ),
        (
            "variant not a list",
            |b| b["products"][0]["variant"] = json!("Red"),
            vec![(p0("variant"), "list_type")],
        ),
        (
            "variant label empty",
            |b| b["products"][0]["variant"] = json!([{"label": "", "value": "Red"}]),
            vec![(
                json!(["body", "products", 0, "variant", 0, "label"]),
                "string_too_short",
            )],
        ),
        (
            "variant value blank",
            |b| b["products"][0]["variant"] = json!([{"label": "Size", "value": "  "}]),
            vec![(
                json!(["body", "products", 0, "variant", 0, "value"]),
                "string_too_short",
            )],
        ),
        (
            "variant value missing",
            |b| b["products"][0]["variant"] = json!([{"label": "Size"}]),
            vec![(
                json!(["body", "products", 0, "variant", 0, "value"]),
                "missing",
            )],
        ),
        (
            "variant item not an object",
            |b| b["products"][0]["variant"] = json!(["Red"]),
            vec![(json!(["body", "products", 0, "variant", 0]), "model_type")],
        ),
        (
            "max_price missing",
            |b| remove(b, &["max_price"]),
            vec![(json!(["body", "max_price"]), "missing")],
        ),
        (
            "max_price zero",
            |b| b["max_price"] = json!(0),
            vec![(json!(["body", "max_price"]), "greater_than")],
        ),
        (
            "max_price negative",
            |b| b["max_price"] = json!(-100),
            vec![(json!(["body", "max_price"]), "greater_than")],
        ),
        (
            "max_price fraction",
            |b| b["max_price"] = json!(10.5),
            vec![(json!(["body", "max_price"]), "int_from_float")],
        ),
        (
            "max_price text",
            |b| b["max_price"] = json!("ten"),
            vec![(json!(["body", "max_price"]), "int_parsing")],
        ),
        (
            "max_price huge",
            |b| b["max_price"] = json!(100_000_000_001_i64),
            vec![(json!(["body", "max_price"]), "less_than_equal")],
        ),
        (
            "max_price beyond i64",
            |b| b["max_price"] = json!(1e30),
            vec![(json!(["body", "max_price"]), "int_parsing")],
        ),
        (
            "idempotency_key 37 chars",
            |b| b["idempotency_key"] = json!("k".repeat(37)),
            vec![(json!(["body", "idempotency_key"]), "string_too_long")],
        ),
        (
            "idempotency_key empty",
            |b| b["idempotency_key"] = json!(""),
            vec![(json!(["body", "idempotency_key"]), "string_too_short")],
        ),
        (
            "idempotency_key number",
            |b| b["idempotency_key"] = json!(7),
            vec![(json!(["body", "idempotency_key"]), "string_type")],
        ),
        (
            "metadata number",
            |b| b["metadata"] = json!(3),
            vec![(json!(["body", "metadata"]), "dict_type")],
        ),
        (
            "metadata list",
            |b| b["metadata"] = json!([1]),
            vec![(json!(["body", "metadata"]), "dict_type")],
        ),
        (
            "metadata too large",
            |b| b["metadata"] = json!({"blob": "x".repeat(17 * 1024)}),
            vec![(json!(["body", "metadata"]), "too_long")],
        ),
        (
            "metadata with NUL",
            |b| b["metadata"] = json!({"a": "x\u{0}y"}),
            vec![(json!(["body", "metadata"]), "string_invalid_character")],
        ),
        (
            "po_number number",
            |b| b["po_number"] = json!(12),
            vec![(json!(["body", "po_number"]), "string_type")],
        ),
        (
            "po_number too long",
            |b| b["po_number"] = json!("p".repeat(101)),
            vec![(json!(["body", "po_number"]), "string_too_long")],
        ),
        (
            "retailer_credentials_id number",
            |b| b["retailer_credentials_id"] = json!(1),
            vec![(json!(["body", "retailer_credentials_id"]), "string_type")],
        ),
        (
            "address missing",
            |b| remove(b, &["shipping_address"]),
            vec![(json!(["body", "shipping_address"]), "missing")],
        ),
        (
            "address not an object",
            |b| b["shipping_address"] = json!("1 Main St"),
            vec![(json!(["body", "shipping_address"]), "model_type")],
        ),
        (
            "first_name missing",
            |b| remove(b, &["shipping_address", "first_name"]),
            vec![(addr("first_name"), "missing")],
        ),
        (
            "last_name blank",
            |b| b["shipping_address"]["last_name"] = json!("   "),
            vec![(addr("last_name"), "string_too_short")],
        ),
        (
            "address_line1 missing",
            |b| remove(b, &["shipping_address", "address_line1"]),
            vec![(addr("address_line1"), "missing")],
        ),
        (
            "city empty",
            |b| b["shipping_address"]["city"] = json!(""),
            vec![(addr("city"), "string_too_short")],
        ),
        (
            "city with NUL",
            |b| b["shipping_address"]["city"] = json!("Aus\u{0}tin"),
            vec![(addr("city"), "string_invalid_character")],
        ),
        (
            "postal_code missing",
            |b| remove(b, &["shipping_address", "postal_code"]),
            vec![(addr("postal_code"), "missing")],
        ),
        (
            "phone_number missing",
            |b| remove(b, &["shipping_address", "phone_number"]),
            vec![(addr("phone_number"), "missing")],
        ),
        (
            "country not a code",
            |b| b["shipping_address"]["country"] = json!("USA"),
            vec![(addr("country"), "invalid_country")],
        ),
        (
            "country unassigned",
            |b| b["shipping_address"]["country"] = json!("ZZ"),
            vec![(addr("country"), "invalid_country")],
        ),
        (
            "US state missing",
            |b| remove(b, &["shipping_address", "state"]),
            vec![(addr("state"), "missing")],
        ),
        (
            "US state unknown",
            |b| b["shipping_address"]["state"] = json!("XX"),
            vec![(addr("state"), "invalid_state")],
        ),
        (
            "US state spelled out",
            |b| b["shipping_address"]["state"] = json!("Texas"),
            vec![(addr("state"), "invalid_state")],
        ),
        (
            "US zip short",
            |b| b["shipping_address"]["postal_code"] = json!("7870"),
            vec![(addr("postal_code"), "invalid_postal_code")],
        ),
        (
            "US zip+4 malformed",
            |b| b["shipping_address"]["postal_code"] = json!("78701-12"),
            vec![(addr("postal_code"), "invalid_postal_code")],
        ),
        (
            "US zip letters",
            |b| b["shipping_address"]["postal_code"] = json!("SW1A 2AA"),
            vec![(addr("postal_code"), "invalid_postal_code")],
        ),
        (
            "US phone too short",
            |b| b["shipping_address"]["phone_number"] = json!("555-0134"),
            vec![(addr("phone_number"), "invalid_phone_number")],
        ),
        (
            "US phone garbage",
            |b| b["shipping_address"]["phone_number"] = json!("call me"),
            vec![(addr("phone_number"), "invalid_phone_number")],
        ),
        (
            "foreign phone invalid",
            |b| {
                b["shipping_address"]["country"] = json!("GB");
                b["shipping_address"]["postal_code"] = json!("SW1A 2AA");
                b["shipping_address"]["phone_number"] = json!("12");
            },
            vec![(addr("phone_number"), "invalid_phone_number")],
        ),
        (
            "every failing field is listed",
            |b| {
                b["products"][0]["quantity"] = json!(0);
                b["max_price"] = json!(-1);
                b["shipping_address"]["state"] = json!("ZZ");
                remove(b, &["shipping_address", "city"]);
                b["idempotency_key"] = json!("k".repeat(40));
            },
            vec![
                (
                    json!(["body", "products", 0, "quantity"]),
                    "greater_than_equal",
                ),
                (json!(["body", "shipping_address", "city"]), "missing"),
                (
                    json!(["body", "shipping_address", "state"]),
                    "invalid_state",
                ),
                (json!(["body", "max_price"]), "greater_than"),
                (json!(["body", "idempotency_key"]), "string_too_long"),
            ],
        ),
        (
            "a card payment (Errand pays with the retailer account)",
            |b| b["payment"] = json!({"mode": "card", "payment_method": "pm_1"}),
            vec![(
                json!(["body", "payment", "mode"]),
                "payment_mode_unsupported",
            )],
        ),
        (
            "a Connect payment",
            |b| b["payment"] = json!({"mode": "connect", "customer": "cus_1"}),
            vec![(
                json!(["body", "payment", "mode"]),
                "payment_mode_unsupported",
            )],
        ),
        (
            "an unknown payment mode",
            |b| b["payment"] = json!({"mode": "cash"}),
            vec![(json!(["body", "payment", "mode"]), "enum")],
        ),
        (
            "payment not an object",
            |b| b["payment"] = json!("wallet"),
            vec![(json!(["body", "payment"]), "model_type")],
        ),
        (
            "payment with an unknown field",
            |b| b["payment"] = json!({"mode": "wallet", "coupon": "X"}),
            vec![(json!(["body", "payment", "coupon"]), "extra_forbidden")],
        ),
    ]
}

/// Boundary values that must be accepted.
fn accepted_cases() -> Vec<(&'static str, Mutation)> {
    vec![
        ("quantity 1", |b| b["products"][0]["quantity"] = json!(1)),
        ("quantity 100", |b| {
            b["products"][0]["quantity"] = json!(100)
        }),
        ("quantity as numeric string", |b| {
            b["products"][0]["quantity"] = json!("3")
        }),
        ("max_price 1 cent", |b| b["max_price"] = json!(1)),
        ("max_price integral float", |b| {
            b["max_price"] = json!(2500.0)
        }),
        ("50 products", |b| {
            b["products"] = json!(vec![json!({"url": "https://store.example/dp/A"}); 50])
        }),
        ("idempotency_key 36 chars", |b| {
            b["idempotency_key"] = json!("k".repeat(36))
        }),
        ("zip+4", |b| {
            b["shipping_address"]["postal_code"] = json!("78701-1234")
        }),
        ("lower-case state", |b| {
            b["shipping_address"]["state"] = json!("tx")
        }),
        ("territory", |b| {
            b["shipping_address"]["state"] = json!("PR");
            b["shipping_address"]["postal_code"] = json!("00901");
            b["shipping_address"]["phone_number"] = json!("+1 787 555 0134");
        }),
        ("military state", |b| {
            b["shipping_address"]["state"] = json!("AE")
        }),
        ("phone in E.164", |b| {
            b["shipping_address"]["phone_number"] = json!("+15125550134")
        }),
        (
            "the wallet payment mode (the retailer account's own)",
            |b| b["payment"] = json!({"mode": "wallet"}),
        ),
        ("a payment without a mode", |b| b["payment"] = json!({})),
        ("null optionals", |b| {
            b["po_number"] = Value::Null;
            b["idempotency_key"] = Value::Null;
            b["products"][0]["variant"] = Value::Null;
            b["shipping_address"]["address_line2"] = Value::Null;
        }),
    ]
}

crate::on_both_databases! {
    async fn each_rule_gives_its_exact_loc_and_type(app: TestApp) {
        let mut failures = Vec::new();
        for (name, mutate, expected) in refused_cases() {
            let mut body = order_body();
            mutate(&mut body);
            let (status, response) = json_of(app.create_order(&body).await).await;
            let expected: Vec<(Value, String)> = expected.into_iter().map(|(l, t)| (l, t.to_string())).collect();
            if status != StatusCode::UNPROCESSABLE_ENTITY {
                failures.push(format!("{name}: status {status}, body {response}"));
                continue;
            }
            let got = error_list(&response);
            if got != expected {
                failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
            }
            for error in response["detail"].as_array().unwrap() {
                if error["msg"].as_str().is_none_or(str::is_empty) {
                    failures.push(format!("{name}: error without a message: {error}"));
                }
            }
        }
        for (name, mutate) in accepted_cases() {
            let mut body = order_body();
            mutate(&mut body);
            let (status, response) = json_of(app.create_order(&body).await).await;
            if status != StatusCode::CREATED {
                failures.push(format!("{name}: should be accepted, got {status} {response}"));
            }
        }
        assert!(failures.is_empty(), "{} validation cases failed:\n{}", failures.len(), failures.join("\n"));

        // Nothing was half-written: exactly the accepted orders exist.
        let (_, list) = json_of(app.get("/orders?limit=100").send().await.unwrap()).await;
        assert_eq!(list["total"], accepted_cases().len());
    }
}

crate::on_both_databases! {
    async fn a_nul_in_any_path_or_query_parameter_is_a_422_naming_it(app: TestApp) {
        let order = app.created(&order_body()).await;
        let id = order["id"].as_str().unwrap();
        let cases = [
            (reqwest::Method::GET, "/orders/%00".to_string(), json!(["path", "order_id"])),
            (reqwest::Method::POST, "/orders/a%00b/cancel".into(), json!(["path", "order_id"])),
            (reqwest::Method::GET, format!("/orders/{id}/screenshots/%00"), json!(["path", "name"])),
            (reqwest::Method::GET, format!("/orders/{id}/pages/x%00"), json!(["path", "name"])),
            (reqwest::Method::GET, "/managed-accounts/%00".into(), json!(["path", "short_id"])),
            (reqwest::Method::PATCH, "/managed-accounts/acct_x%00y".into(), json!(["path", "short_id"])),
            (reqwest::Method::PUT, "/managed-accounts/acct_x%00y".into(), json!(["path", "short_id"])),
            (reqwest::Method::DELETE, "/managed-accounts/acct_x%00y".into(), json!(["path", "short_id"])),
            (reqwest::Method::GET, "/returns/%00".into(), json!(["path", "return_id"])),
            (reqwest::Method::GET, "/returns/r%00/labels/x".into(), json!(["path", "return_id"])),
            (reqwest::Method::POST, "/webhooks/deliveries/evt_%00/redeliver".into(), json!(["path", "id"])),
            (reqwest::Method::GET, "/orders?search=a%00".into(), json!(["query", "search"])),
            (reqwest::Method::GET, "/orders?x%00=1".into(), json!(["query", "x\u{0}"])),
            (reqwest::Method::GET, "/managed-accounts?search=%00".into(), json!(["query", "search"])),
            (reqwest::Method::GET, "/returns?search=%00".into(), json!(["query", "search"])),
            (reqwest::Method::GET, "/webhooks/deliveries?event=order.%00".into(), json!(["query", "event"])),
        ];
        let mut failures = vec![];
        for (method, path, loc) in cases {
            let response = app.client.request(method.clone(), app.url(&path)).bearer_auth(&app.key)
                .json(&json!({})).send().await.unwrap();
            let (status, body) = json_of(response).await;
            let named = body["detail"].as_array().is_some_and(|d| {
                d.iter().any(|e| e["loc"] == loc && e["type"] == "string_invalid_character")
            });
            if status != StatusCode::UNPROCESSABLE_ENTITY || !named {
                failures.push(format!("{method} {path}: {status} {body}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
