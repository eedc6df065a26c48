//! The generated OpenAPI document follows the contract (Zinc's `components.schemas`,
//! kept in `tests/fixtures/zinc_orders_schemas.json`), and the docs page works offline.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::TestApp;
use crate::support::schema::{CONTRACT_SCHEMAS, fixture};

/// The name behind a `$ref` to `#/components/schemas/Name`.
fn ref_name(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

/// A schema's *type signature*: the set of its alternatives, with `anyOf`/`oneOf`
/// alternatives and `type: [a, b]` lists flattened, `$ref`s (also inside a one-element
/// `allOf`) written `ref:Name`, and arrays written `array<item signature>`. Formats
/// and annotations are ignored.
fn signature(schema: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Some(object) = schema.as_object() else {
        out.insert(format!("schema:{schema}"));
        return out;
    };
    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
        out.insert(format!("ref:{}", ref_name(reference)));
    }
    if let Some(all) = object.get("allOf").and_then(Value::as_array) {
        if let [only] = all.as_slice() {
            out.extend(signature(only));
        } else {
            let parts: Vec<String> = all.iter().map(|s| joined(&signature(s))).collect();
            out.insert(format!("allOf<{}>", parts.join(",")));
        }
    }
    for keyword in ["anyOf", "oneOf"] {
        for alternative in object
            .get(keyword)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.extend(signature(alternative));
        }
    }
    let types: Vec<&str> = match object.get("type") {
        Some(Value::String(name)) => vec![name.as_str()],
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    for name in types {
        if name == "array" {
            let items = object
                .get("items")
                .map(|items| joined(&signature(items)))
                .unwrap_or_else(|| "any".into());
            out.insert(format!("array<{items}>"));
        } else {
            out.insert(name.to_string());
        }
    }
    if out.is_empty() {
        out.insert("any".into());
    }
    out
}

fn joined(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join("|")
}

fn property_names(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn required_set(schema: &Value) -> BTreeSet<String> {
    schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

fn enum_values(schema: &Value) -> Option<Vec<Value>> {
    schema.get("enum").and_then(Value::as_array).cloned()
}

/// Optional properties Errand adds to the contract's schemas on purpose (clients that
/// do not know them are unaffected): `(schema, property)`.
const EXTENSIONS: &[(&str, &str)] = &[
    ("OrderCreate", "expiration"),
    ("OrderResponse", "expiration"),
    ("OrderResponse", "job_result"),
    ("OrderResponse", "screenshots"),
];

/// Every difference between the contract's schema `name` and the generated one.
fn schema_mismatches(name: &str, expected: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let expected_props = property_names(expected);
    let mut actual_props = property_names(actual);
    for (schema, property) in EXTENSIONS {
        if *schema == name
            && actual_props.remove(*property)
            && required_set(actual).contains(*property)
        {
            out.push(format!("{name}: the extension {property} must be optional"));
        }
    }
    if expected_props != actual_props {
        out.push(format!(
            "{name}: properties differ: missing {:?}, extra {:?}",
            expected_props.difference(&actual_props).collect::<Vec<_>>(),
            actual_props.difference(&expected_props).collect::<Vec<_>>()
        ));
    }
    let expected_required = required_set(expected);
    let actual_required = required_set(actual);
    if expected_required != actual_required {
        out.push(format!(
            "{name}: required differs: should also require {:?}, should not require {:?}",
            expected_required
                .difference(&actual_required)
                .collect::<Vec<_>>(),
            actual_required
                .difference(&expected_required)
                .collect::<Vec<_>>()
        ));
    }
    if enum_values(expected) != enum_values(actual) {
        out.push(format!(
            "{name}: enum differs: contract {:?}, generated {:?}",
            enum_values(expected),
            enum_values(actual)
        ));
    }
    // A schema without properties (an enum) is compared as a whole.
    if expected_props.is_empty() && signature(expected) != signature(actual) {
        out.push(format!(
            "{name}: type differs: contract {{{}}}, generated {{{}}}",
            joined(&signature(expected)),
            joined(&signature(actual))
        ));
    }
    for property in expected_props.intersection(&actual_props) {
        let expected = &expected["properties"][property];
        let actual = &actual["properties"][property];
        let (want, got) = (signature(expected), signature(actual));
        if want != got {
            out.push(format!(
                "{name}.{property}: type differs: contract {{{}}}, generated {{{}}}",
                joined(&want),
                joined(&got)
            ));
        }
        if enum_values(expected) != enum_values(actual) {
            out.push(format!(
                "{name}.{property}: enum differs: contract {:?}, generated {:?}",
                enum_values(expected),
                enum_values(actual)
            ));
        }
    }
    out
}

/// Absolute `http(s)://` URLs in `text` whose host is not `own_host`.
fn foreign_urls(text: &str, own_host: &str) -> Vec<String> {
    let mut found = Vec::new();
    for scheme in ["http://", "https://"] {
        let mut rest = text;
        while let Some(at) = rest.find(scheme) {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| c.is_whitespace() || "\"'`)<>,;\\".contains(c))
                .unwrap_or(tail.len());
            let url = &tail[..end];
            let host = url[scheme.len()..]
                .split(['/', ':', '?', '#'])
                .next()
                .unwrap_or_default();
            if !host.is_empty() && host != own_host {
                found.push(url.to_string());
            }
            rest = &tail[scheme.len()..];
        }
    }
    found
}

/// Values of `src=` and `href=` attributes in an HTML page.
fn html_references(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=", "href="] {
        let mut rest = html;
        while let Some(at) = rest.find(attribute) {
            rest = &rest[at + attribute.len()..];
            let value = match rest.chars().next() {
                Some(quote @ ('"' | '\'')) => rest[1..].split(quote).next().unwrap_or_default(),
                _ => rest
                    .split(|c: char| c.is_whitespace() || c == '>')
                    .next()
                    .unwrap_or_default(),
            };
            found.push(value.to_string());
        }
    }
    found
}

/// `url(...)` and `@import` targets in a stylesheet.
fn css_references(css: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = css;
    while let Some(at) = rest.find("url(") {
        rest = &rest[at + 4..];
        let value = rest
            .split(')')
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches(['"', '\'']);
        found.push(value.to_string());
    }
    let mut rest = css;
    while let Some(at) = rest.find("@import") {
        rest = &rest[at + 7..];
        let value = rest
            .trim_start()
            .split([';', ' '])
            .next()
            .unwrap_or_default()
            .trim_matches(['"', '\'']);
        found.push(value.to_string());
    }
    found
}

fn is_absolute(reference: &str) -> bool {
    reference.starts_with("http://")
        || reference.starts_with("https://")
        || reference.starts_with("//")
}

async fn check_openapi_document_matches_the_contract(app: &TestApp) {
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.unwrap();

    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(
        version.starts_with("3.1"),
        "openapi version is {version:?}, want 3.1.x"
    );

    let generated = &doc["components"]["schemas"];
    let mut mismatches = Vec::new();
    for name in CONTRACT_SCHEMAS {
        let expected = &fixture()[name];
        assert!(expected.is_object(), "fixture lacks {name}");
        match generated.get(name) {
            Some(actual) => mismatches.extend(schema_mismatches(name, expected, actual)),
            None => mismatches.push(format!("{name}: missing from components.schemas")),
        }
    }
    assert!(
        mismatches.is_empty(),
        "the generated OpenAPI schemas differ from the contract ({} difference(s)):\n  {}",
        mismatches.len(),
        mismatches.join("\n  ")
    );
}

async fn check_openapi_document_has_the_order_operations(app: &TestApp) {
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
    let mut missing = Vec::new();
    for (path, method) in [
        ("/orders", "post"),
        ("/orders", "get"),
        ("/orders/{order_id}", "get"),
        ("/orders/{order_id}/cancel", "post"),
    ] {
        if !paths[path][method].is_object() {
            missing.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    assert!(
        missing.is_empty(),
        "operations missing from the document: {missing:?}"
    );

    let create = &paths["/orders"]["post"];
    assert_eq!(
        create["operationId"], "create_order_orders_post",
        "POST /orders operationId"
    );
    let responses: BTreeMap<&String, &Value> =
        create["responses"].as_object().unwrap().iter().collect();
    for status in ["201", "422"] {
        assert!(
            responses.keys().any(|k| *k == status),
            "POST /orders lacks response {status}: {:?}",
            responses.keys()
        );
    }
    let created = &create["responses"]["201"]["content"]["application/json"]["schema"];
    assert_eq!(
        signature(created),
        BTreeSet::from(["ref:OrderResponse".to_string()]),
        "201 body: {created}"
    );
    let invalid = &create["responses"]["422"]["content"]["application/json"]["schema"];
    assert_eq!(
        signature(invalid),
        BTreeSet::from(["ref:HTTPValidationError".to_string()]),
        "422 body: {invalid}"
    );
    let body = &create["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(
        signature(body),
        BTreeSet::from(["ref:OrderCreate".to_string()]),
        "request body: {body}"
    );
}

async fn check_docs_page_works_offline(app: &TestApp) {
    let own_host = url::Url::parse(&app.base)
        .unwrap()
        .host_str()
        .unwrap()
        .to_string();
    let response = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/html"),
        "/docs/ content-type is {content_type:?}"
    );
    let html = response.text().await.unwrap();

    let mut problems = Vec::new();
    let page = url::Url::parse(&app.url("/docs/")).unwrap();
    let mut assets = Vec::new();
    for reference in html_references(&html) {
        if is_absolute(&reference) {
            let host = page
                .join(&reference)
                .ok()
                .and_then(|u| u.host_str().map(String::from));
            if host.as_deref() != Some(own_host.as_str()) {
                problems.push(format!("/docs/ loads {reference}"));
            }
        } else if !reference.is_empty()
            && !reference.starts_with('#')
            && !reference.starts_with("data:")
        {
            assets.push(reference);
        }
    }
    assert!(!assets.is_empty(), "/docs/ references no assets:\n{html}");
    for url in foreign_urls(&html, &own_host) {
        problems.push(format!("/docs/ mentions {url}"));
    }

    for reference in assets {
        let asset = page.join(&reference).unwrap();
        let response = app.client.get(asset).send().await.unwrap();
        if response.status() != StatusCode::OK {
            problems.push(format!("{reference}: status {}", response.status()));
            continue;
        }
        let text = response.text().await.unwrap_or_default();
        if reference.ends_with(".css") || reference.contains(".css?") {
            for target in css_references(&text) {
                if is_absolute(&target) {
                    problems.push(format!("{reference} loads {target}"));
                }
            }
        }
        // The Swagger UI bundles mention many absolute URLs (JSON Schema dialect ids,
        // RFC links, XML namespaces) that are identifiers, not loads. The one they load
        // by default is the online validator badge, an image from validator.swagger.io
        // that also sends it the document's URL; the initializer, Errand's own
        // configuration, must turn it off and may not name any other host.
        if reference.contains("swagger-initializer") {
            for url in foreign_urls(&text, &own_host) {
                problems.push(format!("{reference} mentions {url}"));
            }
            if !text.contains("\"validatorUrl\": \"none\"")
                && !text.contains("validatorUrl: \"none\"")
            {
                problems.push(format!(
                    "{reference} leaves validatorUrl at its default (https://validator.swagger.io)"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the docs page is not self-contained:\n  {}",
        problems.join("\n  ")
    );
}

async fn check_error_types_are_a_named_schema(app: &TestApp) {
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schemas = &doc["components"]["schemas"];
    let names: Vec<&str> = errand::orders::model::ErrorType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect();
    assert_eq!(
        enum_values(&schemas["ErrorType"]),
        Some(names.iter().map(|n| Value::from(*n)).collect()),
        "ErrorType lists every error type, as ErrorType::ALL does"
    );
    let nullable_error_type = BTreeSet::from(["ref:ErrorType".to_string(), "null".to_string()]);
    for (schema, property) in [
        ("JobResult", "error_type"),
        ("TestProduct", "outcome_error_type"),
    ] {
        let found = &schemas[schema]["properties"][property];
        assert_eq!(
            signature(found),
            nullable_error_type,
            "{schema}.{property}: {found}"
        );
    }
}

crate::on_both_databases! {
    async fn openapi_document_matches_the_contract(app: TestApp) {
        check_openapi_document_matches_the_contract(&app).await
    }

    async fn openapi_document_has_the_order_operations(app: TestApp) {
        check_openapi_document_has_the_order_operations(&app).await
    }

    async fn docs_page_works_offline(app: TestApp) {
        check_docs_page_works_offline(&app).await
    }

    async fn error_types_are_a_named_schema(app: TestApp) {
        check_error_types_are_a_named_schema(&app).await
    }
}
