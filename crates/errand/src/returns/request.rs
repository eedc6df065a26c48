//! `POST /returns` bodies, parsed into a [`NewReturn`] with every failing field
//! reported. The rules that need the order (its items, what is delivered, what is
//! already being returned) are checked by [`super::store::create`].

use serde_json::Value;
use uuid::Uuid;

use super::{ReturnItem, ReturnReason};
use crate::validation::{
    Errors, Loc, Object, ValidationErrors, as_array, int_in_range, non_blank, parse_uuid,
};

/// Most items one return may list (an order holds at most 50 products).
const MAX_ITEMS: usize = 50;
const MAX_NOTES_LEN: usize = 1000;
const FIELDS: [&str; 4] = ["order_id", "items", "reason", "notes"];

/// A validated return request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReturn {
    pub order_id: Uuid,
    pub items: Vec<ReturnItem>,
    pub reason: ReturnReason,
    pub notes: Option<String>,
}

pub fn parse(body: &Value) -> Result<NewReturn, ValidationErrors> {
    let mut errors = Errors::default();
    let Some(obj) = Object::new(body, Loc::body(), &mut errors) else {
        return Err(errors.into_rejection());
    };
    obj.refuse_unknown(&FIELDS, &mut errors);
    let order_id = obj
        .required_str("order_id", &mut errors)
        .and_then(|text| parse_uuid(text, &obj.loc("order_id"), &mut errors));
    let items = obj
        .required("items", &mut errors)
        .and_then(|v| parse_items(v, obj.loc("items"), &mut errors));
    let reason = obj.required_str("reason", &mut errors).and_then(|text| {
        let parsed = ReturnReason::parse(text.trim());
        if parsed.is_none() {
            errors.add(
                &obj.loc("reason"),
                "enum",
                format!(
                    "Input should be {}",
                    ReturnReason::ALL
                        .map(|r| format!("'{}'", r.as_str()))
                        .join(", ")
                ),
            );
        }
        parsed
    });
    let notes = obj
        .optional_str("notes", &mut errors)
        .and_then(|text| non_blank(text, MAX_NOTES_LEN, &obj.loc("notes"), &mut errors));
    match (order_id, items, reason) {
        (Some(order_id), Some(items), Some(reason)) if errors.is_empty() => Ok(NewReturn {
            order_id,
            items,
            reason,
            notes,
        }),
        _ => Err(errors.into_rejection()),
    }
}

fn parse_items(value: &Value, loc: Loc, errors: &mut Errors) -> Option<Vec<ReturnItem>> {
    let list = as_array(value, &loc, errors)?;
    if list.is_empty() || list.len() > MAX_ITEMS {
        errors.add(
            &loc,
            if list.is_empty() {
                "too_short"
            } else {
                "too_long"
            },
            format!(
                "List should have 1 to {MAX_ITEMS} items after validation, not {}",
                list.len()
            ),
        );
        return None;
    }
    let mut items = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let Some(obj) = Object::new(item, loc.at(i), errors) else {
            continue;
        };
        obj.refuse_unknown(&["order_item_id", "quantity"], errors);
        let id = obj
            .required_str("order_item_id", errors)
            .and_then(|text| parse_uuid(text, &obj.loc("order_item_id"), errors));
        let quantity = obj
            .required("quantity", errors)
            .and_then(|v| int_in_range(v, 1, 100, &obj.loc("quantity"), errors));
        if let (Some(order_item_id), Some(quantity)) = (id, quantity) {
            if items
                .iter()
                .any(|r: &ReturnItem| r.order_item_id == order_item_id)
            {
                errors.add(
                    &obj.loc("order_item_id"),
                    "duplicate_item",
                    "Each order item may be listed once; give its whole quantity there",
                );
            }
            items.push(ReturnItem {
                order_item_id,
                quantity: quantity as i32,
            });
        }
    }
    Some(items)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn kinds(body: Value) -> Vec<(Value, &'static str)> {
        parse(&body)
            .unwrap_err()
            .detail
            .into_iter()
            .map(|e| (serde_json::to_value(&e.loc).unwrap(), e.kind))
            .collect()
    }

    #[test]
    fn a_valid_request_parses() {
        let item = Uuid::now_v7();
        let order = Uuid::now_v7();
        let parsed = parse(&json!({"order_id": order.to_string(), "reason": "damaged",
            "items": [{"order_item_id": item.to_string(), "quantity": 2}], "notes": " box torn "}))
        .unwrap();
        assert_eq!(parsed.order_id, order);
        assert_eq!(parsed.reason, ReturnReason::Damaged);
        assert_eq!(
            parsed.items,
            [ReturnItem {
                order_item_id: item,
                quantity: 2
            }]
        );
        assert_eq!(parsed.notes.as_deref(), Some("box torn"));
    }

    #[test]
    fn every_failing_field_is_named() {
        let item = Uuid::now_v7().to_string();
        assert_eq!(
            kinds(json!({"order_id": "x", "reason": "bored", "colour": 1,
                "items": [{"order_item_id": item, "quantity": 0}, {"order_item_id": item, "quantity": 1},
                          {"quantity": 1}]})),
            [
                (json!(["body", "colour"]), "extra_forbidden"),
                (json!(["body", "order_id"]), "uuid_parsing"),
                (
                    json!(["body", "items", 0, "quantity"]),
                    "greater_than_equal"
                ),
                (json!(["body", "items", 2, "order_item_id"]), "missing"),
                (json!(["body", "reason"]), "enum"),
            ]
        );
        assert_eq!(
            kinds(
                json!({"order_id": Uuid::now_v7().to_string(), "reason": "other",
                "items": [{"order_item_id": item, "quantity": 1}, {"order_item_id": item, "quantity": 1}]})
            ),
            [(
                json!(["body", "items", 1, "order_item_id"]),
                "duplicate_item"
            )]
        );
        assert_eq!(
            kinds(json!({"order_id": Uuid::now_v7().to_string(), "reason": "other", "items": []})),
            [(json!(["body", "items"]), "too_short")]
        );
    }
}
