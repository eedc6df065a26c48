//! The contract's schemas (Zinc's `components.schemas`, copied into
//! `tests/fixtures/zinc_orders_schemas.json`) and a small JSON-Schema validator over
//! them, so that tests can check real response bodies against the contract.
//!
//! The validator knows the keywords those schemas use: `$ref` (to
//! `#/components/schemas/X`), `type` (a name or a list of names), `anyOf`, `oneOf`,
//! `allOf`, `enum`, `required`, `properties`, `additionalProperties`, `items`,
//! `minimum`/`maximum`, `minLength`/`maxLength` and the `uuid` and `date-time` string
//! formats. Annotations (`title`, `description`, `default`, `examples`) are ignored.

use std::sync::OnceLock;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const REF_PREFIX: &str = "#/components/schemas/";

/// The contract's schemas that the generated document must reproduce.
pub const CONTRACT_SCHEMAS: [&str; 15] = [
    "OrderCreate",
    "OrderResponse",
    "OrderProduct",
    "ProductVariant",
    "Address",
    "OrderStatus",
    "OrderItemStatus",
    "OrderItemResponse",
    "TrackingNumberResponse",
    "ReturnRequestSummary",
    "ReturnRequestStatus",
    "ReturnRequestReason",
    "ReturnRequestItem",
    "HTTPValidationError",
    "ValidationError",
];

/// The fixture's `schemas` object: schema name → JSON Schema.
pub fn fixture() -> &'static Value {
    static SCHEMAS: OnceLock<Value> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut doc: Value =
            serde_json::from_str(include_str!("../../fixtures/zinc_orders_schemas.json"))
                .expect("tests/fixtures/zinc_orders_schemas.json is JSON");
        let schemas = doc["schemas"].take();
        assert!(schemas.is_object(), "the fixture has no `schemas` object");
        schemas
    })
}

/// The contract's schema called `name`; panics when the contract has none.
pub fn contract_schema(name: &str) -> &'static Value {
    fixture()
        .get(name)
        .unwrap_or_else(|| panic!("the contract has no schema named {name:?}"))
}

/// Panics, listing the JSON path and value of every violation, unless `value` conforms
/// to the contract's schema `schema_name`.
#[track_caller]
pub fn assert_valid(schema_name: &str, value: &Value) {
    let found = violations(schema_name, value);
    if !found.is_empty() {
        panic!(
            "document does not conform to contract schema {schema_name} ({} violation(s)):\n  {}\ndocument: {}",
            found.len(),
            found.join("\n  "),
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    }
}

/// Every violation of the contract's schema `schema_name` by `value`, each as
/// `"<json path>: <problem>; value: <value>"`. Empty when the value conforms.
pub fn violations(schema_name: &str, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(contract_schema(schema_name), value, "$", &mut out);
    out
}

fn report(out: &mut Vec<String>, path: &str, problem: impl std::fmt::Display, value: &Value) {
    out.push(format!("{path}: {problem}; value: {value}"));
}

fn resolve(reference: &str) -> &'static Value {
    let name = reference
        .strip_prefix(REF_PREFIX)
        .unwrap_or_else(|| panic!("unsupported $ref {reference:?} (only {REF_PREFIX}X)"));
    contract_schema(name)
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "string" => value.is_string(),
        "integer" => {
            value.is_i64()
                || value.is_u64()
                || value
                    .as_f64()
                    .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
        }
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        other => panic!("unsupported type {other:?} in the contract"),
    }
}

fn check(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        match schema {
            Value::Bool(true) => {}
            Value::Bool(false) => report(out, path, "no value is allowed here", value),
            other => panic!("not a schema at {path}: {other}"),
        }
        return;
    };

    if let Some(reference) = schema.get("$ref") {
        let reference = reference.as_str().expect("$ref is a string");
        check(resolve(reference), value, path, out);
    }

    if let Some(types) = schema.get("type") {
        let names: Vec<&str> = match types {
            Value::String(name) => vec![name.as_str()],
            Value::Array(names) => names
                .iter()
                .map(|n| n.as_str().expect("type names are strings"))
                .collect(),
            other => panic!("bad `type` at {path}: {other}"),
        };
        if !names.iter().any(|name| type_matches(name, value)) {
            report(
                out,
                path,
                format!("expected type {}", names.join(" or ")),
                value,
            );
            // The remaining keywords only make sense for the right type.
            return;
        }
    }

    for (keyword, all) in [("anyOf", false), ("oneOf", false), ("allOf", true)] {
        let Some(alternatives) = schema.get(keyword) else {
            continue;
        };
        let alternatives = alternatives
            .as_array()
            .unwrap_or_else(|| panic!("`{keyword}` is not a list at {path}"));
        let results: Vec<Vec<String>> = alternatives
            .iter()
            .map(|alternative| {
                let mut sub = Vec::new();
                check(alternative, value, path, &mut sub);
                sub
            })
            .collect();
        let passing = results.iter().filter(|sub| sub.is_empty()).count();
        let ok = match (keyword, all) {
            (_, true) => passing == results.len(),
            ("oneOf", _) => passing == 1,
            _ => passing >= 1,
        };
        if !ok {
            let details: Vec<String> = results.into_iter().flatten().collect();
            report(
                out,
                path,
                format!(
                    "{keyword}: {passing} of {} alternatives match ({})",
                    alternatives.len(),
                    details.join(" | ")
                ),
                value,
            );
        }
    }

    if let Some(allowed) = schema.get("enum") {
        let allowed = allowed.as_array().expect("`enum` is a list");
        if !allowed.contains(value) {
            report(
                out,
                path,
                format!("not one of {}", Value::Array(allowed.clone())),
                value,
            );
        }
    }

    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && length < min
        {
            report(out, path, format!("shorter than minLength {min}"), value);
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && length > max
        {
            report(out, path, format!("longer than maxLength {max}"), value);
        }
        let format = schema.get("format").and_then(Value::as_str);
        if format == Some("uuid") && uuid::Uuid::parse_str(text).is_err() {
            report(out, path, "not a uuid", value);
        }
        if format == Some("date-time") && OffsetDateTime::parse(text, &Rfc3339).is_err() {
            report(out, path, "not an RFC 3339 date-time", value);
        }
    }

    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            report(out, path, format!("less than minimum {min}"), value);
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            report(out, path, format!("greater than maximum {max}"), value);
        }
    }

    if let Some(object) = value.as_object() {
        if let Some(required) = schema.get("required") {
            for name in required.as_array().expect("`required` is a list") {
                let name = name.as_str().expect("required names are strings");
                if !object.contains_key(name) {
                    report(
                        out,
                        &format!("{path}.{name}"),
                        "required property is missing",
                        &Value::Null,
                    );
                }
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (name, field) in object {
            let field_path = format!("{path}.{name}");
            match properties.and_then(|p| p.get(name)) {
                Some(field_schema) => check(field_schema, field, &field_path, out),
                None => match schema.get("additionalProperties") {
                    None | Some(Value::Bool(true)) => {}
                    Some(Value::Bool(false)) => {
                        report(out, &field_path, "property not allowed", field)
                    }
                    Some(extra) => check(extra, field, &field_path, out),
                },
            }
        }
    }

    if let (Some(items), Some(elements)) = (schema.get("items"), value.as_array()) {
        for (i, element) in elements.iter().enumerate() {
            check(items, element, &format!("{path}[{i}]"), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn good_order() -> Value {
        json!({
            "id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            "status": "pending",
            "max_price": 5000,
            "attempts": 0,
            "items": [{
                "id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c",
                "url": "https://store.example/dp/B0TEST0001",
                "quantity": 2,
                "variant": [{"label": "Color", "value": "Red"}],
                "status": "pending",
                "cancellation_reason": null,
                "created_at": "2026-04-27T12:00:00Z",
                "updated_at": "2026-04-27T12:00:00.123456+02:00"
            }],
            "shipping_address": {"first_name": "Ada", "country": "US"},
            "metadata": {"team": "ops", "n": 3},
            "po_number": null,
            "retailer_credentials_id": null,
            "tracking_numbers": [{
                "id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5d",
                "carrier": "UPS",
                "tracking_number": "1Z999",
                "created_at": "2026-04-28T08:30:00Z"
            }],
            "created_by": "er_live_abc",
            "user_id": null,
            "returns": [],
            "created_at": "2026-04-27T12:00:00Z",
            "updated_at": "2026-04-27T12:00:00Z"
        })
    }

    /// The sorted JSON paths of `value`'s violations of `schema`.
    fn paths_of(schema: &str, value: &Value) -> Vec<String> {
        let mut paths: Vec<String> = violations(schema, value)
            .into_iter()
            .map(|v| v.split(':').next().unwrap_or_default().to_string())
            .collect();
        paths.sort();
        paths
    }

    #[test]
    fn fixture_holds_every_contract_schema() {
        for name in super::CONTRACT_SCHEMAS {
            assert!(fixture().get(name).is_some(), "fixture lacks {name}");
        }
    }

    #[test]
    fn validator_accepts_a_good_order_response() {
        assert_valid("OrderResponse", &good_order());
        assert_valid(
            "HTTPValidationError",
            &json!({"detail": [{"loc": ["body", "products", 0, "quantity"], "msg": "Field required", "type": "missing"}]}),
        );
        assert_valid(
            "OrderCreate",
            &json!({
                "products": [{"url": "https://store.example/x"}],
                "shipping_address": {"first_name": "A", "last_name": "B", "address_line1": "1 Main",
                                     "city": "C", "postal_code": "78701", "phone_number": "+15125550134"},
                "max_price": 100,
                "metadata": null
            }),
        );
    }

    #[test]
    fn validator_rejects_a_missing_required_field() {
        let mut order = good_order();
        order.as_object_mut().unwrap().remove("attempts");
        order["items"][0].as_object_mut().unwrap().remove("url");
        assert_eq!(
            paths_of("OrderResponse", &order),
            ["$.attempts", "$.items[0].url"]
        );
    }

    #[test]
    fn validator_rejects_a_wrong_enum_value() {
        let mut order = good_order();
        order["status"] = json!("shipped");
        order["items"][0]["status"] = json!("lost");
        assert_eq!(
            paths_of("OrderResponse", &order),
            ["$.items[0].status", "$.status"]
        );
    }

    #[test]
    fn validator_rejects_a_wrong_type_in_a_nested_item() {
        let mut order = good_order();
        order["items"][0]["quantity"] = json!("2");
        order["items"][0]["variant"][0]["label"] = json!(7);
        order["tracking_numbers"][0]["carrier"] = Value::Null;
        order["user_id"] = json!(1.5);
        assert_eq!(
            paths_of("OrderResponse", &order),
            [
                "$.items[0].quantity",
                "$.items[0].variant",
                "$.tracking_numbers[0].carrier",
                "$.user_id"
            ]
        );
        let found = violations("OrderResponse", &order);
        let variant = found
            .iter()
            .find(|v| v.starts_with("$.items[0].variant:"))
            .unwrap();
        assert!(
            variant.contains("$.items[0].variant[0].label: expected type string; value: 7"),
            "{variant}"
        );
    }

    #[test]
    fn validator_rejects_bad_formats_and_bounds() {
        let mut order = good_order();
        order["id"] = json!("not-a-uuid");
        order["created_at"] = json!("2026-04-27 12:00:00");
        assert_eq!(paths_of("OrderResponse", &order), ["$.created_at", "$.id"]);

        let product =
            json!({"url": "u", "quantity": 101, "variant": [{"label": "", "value": "x"}]});
        assert_eq!(
            paths_of("OrderProduct", &product),
            ["$.quantity", "$.variant"]
        );
        let key = json!({"products": [], "shipping_address": {}, "max_price": 1,
                         "idempotency_key": "x".repeat(37)});
        assert!(paths_of("OrderCreate", &key).contains(&"$.idempotency_key".to_string()));
    }

    #[test]
    fn assert_valid_panics_with_path_and_value() {
        let mut order = good_order();
        order["items"][0]["id"] = json!("nope");
        let panic = std::panic::catch_unwind(|| assert_valid("OrderResponse", &order))
            .expect_err("must panic");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            message.contains("$.items[0].id: not a uuid; value: \"nope\""),
            "{message}"
        );
    }
}
