//! Field errors in FastAPI's shape, and helpers that read untyped JSON while collecting
//! every failing field (serde stops at the first error; clients deserve the full list).
//!
//! `type` codes follow pydantic's where one exists (`missing`, `string_type`,
//! `int_parsing`, …) so that clients written for the reference API recognise them.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// One element of an error location: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum LocPart {
    Key(String),
    Index(usize),
}

impl From<&str> for LocPart {
    fn from(key: &str) -> Self {
        LocPart::Key(key.to_string())
    }
}
impl From<usize> for LocPart {
    fn from(index: usize) -> Self {
        LocPart::Index(index)
    }
}

/// Where a value sits in the request, e.g. `["body", "products", 0, "quantity"]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Loc(Vec<LocPart>);

impl Loc {
    pub fn body() -> Loc {
        Loc(vec!["body".into()])
    }
    pub fn query(name: &str) -> Loc {
        Loc(vec!["query".into(), name.into()])
    }
    pub fn path(name: &str) -> Loc {
        Loc(vec!["path".into(), name.into()])
    }
    pub fn at(&self, part: impl Into<LocPart>) -> Loc {
        let mut parts = self.0.clone();
        parts.push(part.into());
        Loc(parts)
    }
}

/// One failing field, as in FastAPI's `{"detail": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = ValidationError)]
pub struct FieldError {
    #[schema(value_type = Vec<LocItem>, inline)]
    pub loc: Vec<LocPart>,
    pub msg: String,
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
}

// Documentation-only: [`LocPart`]'s schema, inlined into `ValidationError.loc`.
/// An element of an error location: an object key (string) or an array index (integer).
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
#[schema(as = LocItem)]
pub enum LocItem {
    Key(String),
    Index(i64),
}

/// The 422 body.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = HTTPValidationError)]
pub struct ValidationErrors {
    #[schema(required = false)]
    pub detail: Vec<FieldError>,
}

/// Collects errors while a parser walks a document.
#[derive(Debug, Default)]
pub struct Errors(Vec<FieldError>);

impl Errors {
    pub fn add(&mut self, loc: &Loc, kind: &'static str, msg: impl Into<String>) {
        self.0.push(FieldError {
            loc: loc.0.clone(),
            msg: msg.into(),
            kind,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing failed, else every error collected.
    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, ValidationErrors> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(ValidationErrors { detail: self.0 })
        }
    }

    /// The collected errors as a 422 body, for a parser that failed. Every parser records
    /// an error before giving up; should one not, the body still says the input is bad.
    pub fn into_rejection(self) -> ValidationErrors {
        if self.0.is_empty() {
            return ValidationErrors::single(&Loc::body(), "value_error", "Input is invalid");
        }
        ValidationErrors { detail: self.0 }
    }

    pub fn into_result(self) -> Result<(), ValidationErrors> {
        self.finish(|| ())
    }
}

impl ValidationErrors {
    pub fn single(loc: &Loc, kind: &'static str, msg: impl Into<String>) -> Self {
        let mut errors = Errors::default();
        errors.add(loc, kind, msg);
        ValidationErrors { detail: errors.0 }
    }
}

/// Reads a JSON object's fields, recording type errors against their locations.
/// `null` counts as absent for optional fields, as in the reference API.
pub struct Object<'a> {
    map: &'a Map<String, Value>,
    loc: Loc,
}

impl<'a> Object<'a> {
    /// `None` (with a `model_type` error) when `value` is not an object.
    pub fn new(value: &'a Value, loc: Loc, errors: &mut Errors) -> Option<Object<'a>> {
        match value {
            Value::Object(map) => Some(Object { map, loc }),
            _ => {
                errors.add(
                    &loc,
                    "model_type",
                    "Input should be a valid dictionary or object to extract fields from",
                );
                None
            }
        }
    }

    pub fn loc(&self, field: &str) -> Loc {
        self.loc.at(field)
    }

    /// The field's value, or a `missing` error when it is absent or null.
    pub fn required(&self, field: &str, errors: &mut Errors) -> Option<&'a Value> {
        match self.map.get(field) {
            None | Some(Value::Null) => {
                errors.add(&self.loc(field), "missing", "Field required");
                None
            }
            Some(value) => Some(value),
        }
    }

    pub fn optional(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    /// Whether the field is given as an explicit `null` (which some updates read as
    /// "clear it").
    pub fn is_null(&self, field: &str) -> bool {
        self.map.get(field).is_some_and(Value::is_null)
    }

    /// Records an `extra_forbidden` error for each field not in `known`, as pydantic
    /// does for models that forbid extra fields.
    pub fn refuse_unknown(&self, known: &[&str], errors: &mut Errors) {
        for field in self.map.keys().filter(|f| !known.contains(&f.as_str())) {
            errors.add(
                &self.loc(field),
                "extra_forbidden",
                "Extra inputs are not permitted",
            );
        }
    }

    pub fn required_str(&self, field: &str, errors: &mut Errors) -> Option<&'a str> {
        let value = self.required(field, errors)?;
        as_str(value, &self.loc(field), errors)
    }

    pub fn optional_str(&self, field: &str, errors: &mut Errors) -> Option<&'a str> {
        as_str(self.optional(field)?, &self.loc(field), errors)
    }
}

/// A UUID given as text, noting a `uuid_parsing` error at `loc` when it is not one.
pub fn parse_uuid(text: &str, loc: &Loc, errors: &mut Errors) -> Option<Uuid> {
    Uuid::parse_str(text.trim())
        .map_err(|e| {
            errors.add(
                loc,
                "uuid_parsing",
                format!("Input should be a valid UUID, {e}"),
            )
        })
        .ok()
}

/// The UUID in the path parameter `name`, or its 422.
pub fn path_uuid(name: &str, raw: &str) -> Result<Uuid, ValidationErrors> {
    let mut errors = Errors::default();
    match parse_uuid(raw, &Loc::path(name), &mut errors) {
        Some(id) => Ok(id),
        None => Err(errors.into_rejection()),
    }
}

pub fn as_str<'a>(value: &'a Value, loc: &Loc, errors: &mut Errors) -> Option<&'a str> {
    match value {
        Value::String(text) => {
            if text.contains('\0') {
                errors.add(
                    loc,
                    "string_invalid_character",
                    "String must not contain NUL characters",
                );
                return None;
            }
            Some(text)
        }
        _ => {
            errors.add(loc, "string_type", "Input should be a valid string");
            None
        }
    }
}

/// A trimmed string of `1..=max_len` characters.
pub fn non_blank(text: &str, max_len: usize, loc: &Loc, errors: &mut Errors) -> Option<String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        errors.add(
            loc,
            "string_too_short",
            "String should have at least 1 character",
        );
        None
    } else if trimmed.chars().count() > max_len {
        errors.add(
            loc,
            "string_too_long",
            format!("String should have at most {max_len} characters"),
        );
        None
    } else {
        Some(trimmed.to_string())
    }
}

/// An integer, accepting what pydantic's lax mode accepts: JSON integers, floats without
/// a fractional part and numeric strings; booleans are refused.
pub fn as_int(value: &Value, loc: &Loc, errors: &mut Errors) -> Option<i64> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(i)
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite()) {
                if f.fract() != 0.0 {
                    errors.add(
                        loc,
                        "int_from_float",
                        "Input should be a valid integer, got a number with a fractional part",
                    );
                    None
                } else if f.abs() < 9.0e18 {
                    Some(f as i64)
                } else {
                    errors.add(
                        loc,
                        "int_parsing",
                        "Input should be a valid integer, the number is too large",
                    );
                    None
                }
            } else {
                errors.add(
                    loc,
                    "int_parsing",
                    "Input should be a valid integer, the number is too large",
                );
                None
            }
        }
        Value::String(text) => match text.trim().parse::<i64>() {
            Ok(i) => Some(i),
            Err(_) => {
                errors.add(
                    loc,
                    "int_parsing",
                    "Input should be a valid integer, unable to parse string as an integer",
                );
                None
            }
        },
        _ => {
            errors.add(loc, "int_type", "Input should be a valid integer");
            None
        }
    }
}

/// An integer within `min..=max`.
pub fn int_in_range(
    value: &Value,
    min: i64,
    max: i64,
    loc: &Loc,
    errors: &mut Errors,
) -> Option<i64> {
    let n = as_int(value, loc, errors)?;
    if n < min {
        errors.add(
            loc,
            "greater_than_equal",
            format!("Input should be greater than or equal to {min}"),
        );
        None
    } else if n > max {
        errors.add(
            loc,
            "less_than_equal",
            format!("Input should be less than or equal to {max}"),
        );
        None
    } else {
        Some(n)
    }
}

/// A JSON boolean (strict: `"true"` or `1` are refused).
pub fn as_bool(value: &Value, loc: &Loc, errors: &mut Errors) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        _ => {
            errors.add(loc, "bool_type", "Input should be a valid boolean");
            None
        }
    }
}

pub fn as_array<'a>(value: &'a Value, loc: &Loc, errors: &mut Errors) -> Option<&'a Vec<Value>> {
    match value {
        Value::Array(items) => Some(items),
        _ => {
            errors.add(loc, "list_type", "Input should be a valid list");
            None
        }
    }
}

/// The longest e-mail address SMTP carries.
pub const MAX_EMAIL_LEN: usize = 254;

/// A well-formed e-mail address (trimmed), at most 254 characters.
pub fn email_address(text: &str, loc: &Loc, errors: &mut Errors) -> Option<String> {
    let email = text.trim();
    if email.chars().count() > MAX_EMAIL_LEN {
        errors.add(
            loc,
            "string_too_long",
            format!("String should have at most {MAX_EMAIL_LEN} characters"),
        );
        return None;
    }
    let well_formed = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@')
    }) && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !well_formed {
        errors.add(
            loc,
            "value_error",
            "Input should be an e-mail address like name@example.com",
        );
        return None;
    }
    Some(email.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lax_integers() {
        let mut errors = Errors::default();
        let loc = Loc::body().at("n");
        assert_eq!(as_int(&json!(5), &loc, &mut errors), Some(5));
        assert_eq!(as_int(&json!(5.0), &loc, &mut errors), Some(5));
        assert_eq!(as_int(&json!("7"), &loc, &mut errors), Some(7));
        assert!(errors.is_empty());
        assert_eq!(as_int(&json!(5.5), &loc, &mut errors), None);
        assert_eq!(as_int(&json!(true), &loc, &mut errors), None);
        assert_eq!(as_int(&json!("x"), &loc, &mut errors), None);
        assert_eq!(as_int(&json!(1e300), &loc, &mut errors), None);
        let kinds: Vec<_> = errors.0.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            ["int_from_float", "int_type", "int_parsing", "int_parsing"]
        );
    }

    #[test]
    fn locations_serialise_as_strings_and_integers() {
        let loc = Loc::body().at("products").at(0).at("quantity");
        let err = ValidationErrors::single(&loc, "missing", "Field required");
        assert_eq!(
            serde_json::to_value(err).unwrap(),
            json!({"detail":[{"loc":["body","products",0,"quantity"],"msg":"Field required","type":"missing"}]})
        );
    }
}

/// Page size of list routes when `limit` is not given, and its largest value.
pub const DEFAULT_PAGE_SIZE: i64 = 20;
pub const MAX_PAGE_SIZE: i64 = 100;

/// The `limit` and `offset` query parameters every list route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            limit: DEFAULT_PAGE_SIZE,
            offset: 0,
        }
    }
}

impl Page {
    /// Takes the query parameter if it is `limit` or `offset` (noting a bad value in
    /// `errors`); false for any other name.
    pub fn take(&mut self, name: &str, text: &Value, loc: &Loc, errors: &mut Errors) -> bool {
        self.take_up_to(MAX_PAGE_SIZE, name, text, loc, errors)
    }

    /// [`Page::take`] with a page size of at most `max_limit`.
    pub fn take_up_to(
        &mut self,
        max_limit: i64,
        name: &str,
        text: &Value,
        loc: &Loc,
        errors: &mut Errors,
    ) -> bool {
        match name {
            "limit" => {
                if let Some(n) = int_in_range(text, 1, max_limit, loc, errors) {
                    self.limit = n;
                }
            }
            "offset" => {
                if let Some(n) = int_in_range(text, 0, i64::MAX, loc, errors) {
                    self.offset = n;
                }
            }
            _ => return false,
        }
        true
    }
}
