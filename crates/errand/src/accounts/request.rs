//! `/managed-accounts` request bodies, parsed with every failing field reported. Unknown
//! fields are refused: a misspelt `totp_secret` silently dropped would leave an account
//! that cannot sign in.

use serde_json::Value;
use utoipa::ToSchema;

use super::store::{NewRetailerAccount, RetailerAccountUpdate};
use super::vault::Secrets;
use crate::retailers::Registry;
use crate::validation::{Errors, Loc, Object, ValidationErrors, as_bool, non_blank};

pub const MAX_RETAILER_LEN: usize = 100;
pub const MAX_PASSWORD_LEN: usize = 1024;
pub const MIN_TOTP_LEN: usize = 16;
pub const MAX_TOTP_LEN: usize = 256;

const CREATE_FIELDS: [&str; 6] = [
    "retailer",
    "email",
    "password",
    "totp_secret",
    "active",
    "retailer_config",
];
const UPDATE_FIELDS: [&str; 6] = [
    "retailer",
    "email",
    "password",
    "totp_secret",
    "active",
    "retailer_config",
];

/// `retailer_config`, which the contract allows on managed accounts: Errand keeps a
/// retailer's configuration in `errand.toml`, not per account, so only an empty one
/// (or `null`) is accepted.
fn check_no_retailer_config(obj: &Object<'_>, errors: &mut Errors) {
    match obj.optional("retailer_config") {
        None => {}
        Some(Value::Object(config)) if config.is_empty() => {}
        Some(Value::Object(_)) => errors.add(
            &obj.loc("retailer_config"),
            "retailer_config_unsupported",
            "Errand keeps no per-account retailer configuration: configure the retailer in errand.toml ([[retailers]])",
        ),
        Some(_) => errors.add(
            &obj.loc("retailer_config"),
            "dict_type",
            "Input should be a valid dictionary",
        ),
    }
}

fn object<'a>(body: &'a Value, errors: &mut Errors) -> Result<Object<'a>, ValidationErrors> {
    Object::new(body, Loc::body(), errors).ok_or_else(|| {
        ValidationErrors::single(
            &Loc::body(),
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
        )
    })
}

/// The body of `POST /managed-accounts`.
pub fn parse_create(
    body: &Value,
    retailers: &Registry,
) -> Result<NewRetailerAccount, ValidationErrors> {
    let mut errors = Errors::default();
    let obj = object(body, &mut errors)?;
    obj.refuse_unknown(&CREATE_FIELDS, &mut errors);
    check_no_retailer_config(&obj, &mut errors);
    let retailer = obj
        .required_str("retailer", &mut errors)
        .and_then(|name| check_retailer(name, retailers, &obj.loc("retailer"), &mut errors));
    let email = obj
        .required_str("email", &mut errors)
        .and_then(|email| crate::validation::email_address(email, &obj.loc("email"), &mut errors));
    let password = obj
        .required_str("password", &mut errors)
        .and_then(|password| check_password(password, &obj.loc("password"), &mut errors));
    let totp_secret = obj
        .optional_str("totp_secret", &mut errors)
        .and_then(|secret| check_totp_secret(secret, &obj.loc("totp_secret"), &mut errors));
    let active = obj
        .optional("active")
        .and_then(|v| as_bool(v, &obj.loc("active"), &mut errors))
        .unwrap_or(true);
    match (retailer, email, password) {
        (Some(retailer), Some(email), Some(password)) if errors.is_empty() => {
            Ok(NewRetailerAccount {
                retailer,
                email,
                secrets: Secrets {
                    password,
                    totp_secret,
                },
                active,
            })
        }
        _ => Err(errors.into_rejection()),
    }
}

/// The body of `PATCH /managed-accounts/{id}`: absent fields stay as they are; a `null`
/// `totp_secret` removes it, and `null` is refused for the other fields.
pub fn parse_update(body: &Value) -> Result<RetailerAccountUpdate, ValidationErrors> {
    let mut errors = Errors::default();
    let obj = object(body, &mut errors)?;
    obj.refuse_unknown(&UPDATE_FIELDS, &mut errors);
    check_no_retailer_config(&obj, &mut errors);
    let retailer = obj
        .optional_str("retailer", &mut errors)
        .map(str::to_string);
    for field in ["email", "password"] {
        if obj.is_null(field) {
            errors.add(
                &obj.loc(field),
                "string_type",
                "Input should be a valid string",
            );
        }
    }
    if obj.is_null("active") {
        errors.add(
            &obj.loc("active"),
            "bool_type",
            "Input should be a valid boolean",
        );
    }
    let email = obj
        .optional_str("email", &mut errors)
        .and_then(|email| crate::validation::email_address(email, &obj.loc("email"), &mut errors));
    let password = obj
        .optional_str("password", &mut errors)
        .and_then(|password| check_password(password, &obj.loc("password"), &mut errors));
    let totp_secret = if obj.is_null("totp_secret") {
        Some(None)
    } else {
        obj.optional_str("totp_secret", &mut errors)
            .and_then(|secret| check_totp_secret(secret, &obj.loc("totp_secret"), &mut errors))
            .map(Some)
    };
    let active = obj
        .optional("active")
        .and_then(|v| as_bool(v, &obj.loc("active"), &mut errors));
    errors.finish(|| RetailerAccountUpdate {
        retailer,
        email,
        password,
        totp_secret,
        active,
    })
}

/// The retailer a managed account signs in to: one in the configuration.
fn check_retailer(
    name: &str,
    retailers: &Registry,
    loc: &Loc,
    errors: &mut Errors,
) -> Option<String> {
    let name = non_blank(name, MAX_RETAILER_LEN, loc, errors)?;
    if retailers.get(&name).is_none() {
        errors.add(
            loc,
            "unknown_retailer",
            format!(
                "No retailer {name:?} is configured; configured retailers: {}",
                retailers.describe()
            ),
        );
        return None;
    }
    Some(name)
}

/// An address that looks like an e-mail: one `@` with text on both sides, no spaces.
/// Kept exactly as given: spaces can be part of a password.
fn check_password(text: &str, loc: &Loc, errors: &mut Errors) -> Option<String> {
    if text.is_empty() {
        errors.add(
            loc,
            "string_too_short",
            "String should have at least 1 character",
        );
        None
    } else if text.chars().count() > MAX_PASSWORD_LEN {
        errors.add(
            loc,
            "string_too_long",
            format!("String should have at most {MAX_PASSWORD_LEN} characters"),
        );
        None
    } else {
        Some(text.to_string())
    }
}

fn check_totp_secret(text: &str, loc: &Loc, errors: &mut Errors) -> Option<String> {
    match normalize_totp_secret(text) {
        Ok(secret) if secret.len() < MIN_TOTP_LEN => {
            errors.add(
                loc,
                "string_too_short",
                format!("A TOTP secret should have at least {MIN_TOTP_LEN} base32 characters"),
            );
            None
        }
        Ok(secret) if secret.len() > MAX_TOTP_LEN => {
            errors.add(
                loc,
                "string_too_long",
                format!("A TOTP secret should have at most {MAX_TOTP_LEN} base32 characters"),
            );
            None
        }
        Ok(secret) => Some(secret),
        Err(()) => {
            errors.add(
                loc,
                "value_error",
                "Input should be a base32 TOTP secret (letters A-Z and digits 2-7), as shown \
                 next to the QR code when two-factor sign-in is set up",
            );
            None
        }
    }
}

/// RFC 4648 base32, case-insensitive, spaces ignored, padding optional; normalised to
/// upper case without spaces or padding (the form authenticator apps accept).
fn normalize_totp_secret(text: &str) -> Result<String, ()> {
    let compact = text.replace(' ', "").to_ascii_uppercase();
    let data = compact.trim_end_matches('=');
    let padding = compact.len() - data.len();
    let alphabet = data
        .bytes()
        .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b));
    // Only these lengths encode whole bytes; padding, when given, completes the last
    // block of eight characters.
    let whole_bytes = matches!(data.len() % 8, 0 | 2 | 4 | 5 | 7);
    let padding_ok = padding == 0 || (compact.len().is_multiple_of(8) && padding < 8);
    if alphabet && whole_bytes && padding_ok {
        Ok(data.to_string())
    } else {
        Err(())
    }
}

/// A retailer account for the engine to sign in with.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = ManagedAccountCreate)]
pub struct ManagedAccountCreateDoc {
    /// The retailer this account belongs to.
    #[schema(min_length = 1, max_length = 100, example = "demo")]
    retailer: String,
    /// The e-mail address the account signs in with.
    #[schema(max_length = 254, example = "buyer@example.com")]
    email: String,
    /// Stored encrypted with the master key; never returned.
    #[schema(min_length = 1, max_length = 1024)]
    password: String,
    /// The base32 secret of the account's authenticator (TOTP) sign-in step, if it has
    /// one. Stored encrypted; never returned.
    #[schema(min_length = 16, example = "JBSWY3DPEHPK3PXP")]
    totp_secret: Option<String>,
    /// Inactive accounts are never used to place orders.
    #[schema(default = true)]
    active: Option<bool>,
}

/// Changes to a managed account; absent fields stay as they are.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = ManagedAccountUpdate)]
pub struct ManagedAccountUpdateDoc {
    #[schema(max_length = 254)]
    email: Option<String>,
    #[schema(min_length = 1, max_length = 1024)]
    password: Option<String>,
    /// A new base32 TOTP secret, or `null` to remove it.
    #[schema(min_length = 16)]
    totp_secret: Option<String>,
    active: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn demo_only() -> Registry {
        Registry::new(
            &[crate::retailers::RetailerSettings::demo(
                "http://127.0.0.1:9",
                1.0,
            )],
            &Default::default(),
        )
        .expect("a valid registry")
    }

    #[test]
    fn the_retailer_must_be_configured() {
        let body = json!({"retailer": "acme", "email": "a@b.c", "password": "x"});
        let errors = parse_create(&body, &demo_only()).unwrap_err();
        let text = serde_json::to_string(&errors).unwrap();
        assert!(
            text.contains("unknown_retailer") && text.contains("\\\"demo\\\""),
            "{text}"
        );
    }

    fn kinds(result: Result<impl std::fmt::Debug, ValidationErrors>) -> Vec<(String, String)> {
        let errors = result.unwrap_err();
        errors
            .detail
            .iter()
            .map(|e| {
                (
                    serde_json::to_value(&e.loc).unwrap().to_string(),
                    e.kind.to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn totp_secrets_are_base32_with_optional_padding() {
        for (input, expected) in [
            ("JBSWY3DPEHPK3PXP", "JBSWY3DPEHPK3PXP"),
            ("jbsw y3dp ehpk 3pxp", "JBSWY3DPEHPK3PXP"),
            ("JBSWY3DPEHPK3PXPAA======", "JBSWY3DPEHPK3PXPAA"),
            ("JBSWY3DPEHPK3PXPAA", "JBSWY3DPEHPK3PXPAA"),
            ("JBSWY3DPEHPK3PXPAAAAAAA=", "JBSWY3DPEHPK3PXPAAAAAAA"),
        ] {
            assert_eq!(
                normalize_totp_secret(input).as_deref(),
                Ok(expected),
                "{input}"
            );
        }
        for bad in [
            "JBSWY3DPEHPK3PX1",     // 1 is not in the alphabet
            "JBSWY3DPEHPK3PXPA",    // 17 characters encode no whole number of bytes
            "JBSWY3DPEHPK3PXPAA==", // padding that does not complete a block
            "JBSW=Y3DPEHPK3PXP",
            "JBSWY3DPEHPK3PXÉ",
        ] {
            assert!(normalize_totp_secret(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_failing_field_is_named() {
        let body = json!({"retailer": " ", "email": "nope", "password": "",
                          "totp_secret": "short", "active": "yes", "pasword": "x"});
        assert_eq!(
            kinds(parse_create(&body, &demo_only())),
            [
                (r#"["body","pasword"]"#.into(), "extra_forbidden".into()),
                (r#"["body","retailer"]"#.into(), "string_too_short".into()),
                (r#"["body","email"]"#.into(), "value_error".into()),
                (r#"["body","password"]"#.into(), "string_too_short".into()),
                (
                    r#"["body","totp_secret"]"#.into(),
                    "string_too_short".into()
                ),
                (r#"["body","active"]"#.into(), "bool_type".into()),
            ]
        );
        assert_eq!(
            kinds(parse_create(&json!({}), &demo_only())),
            [
                (r#"["body","retailer"]"#.into(), "missing".into()),
                (r#"["body","email"]"#.into(), "missing".into()),
                (r#"["body","password"]"#.into(), "missing".into()),
            ]
        );
    }

    #[test]
    fn emails_need_one_at_sign_with_text_on_both_sides() {
        let mut errors = Errors::default();
        let loc = Loc::body().at("email");
        for good in ["a@b", " buyer@example.com "] {
            assert!(
                crate::validation::email_address(good, &loc, &mut errors).is_some(),
                "{good}"
            );
        }
        for bad in ["@b", "a@", "a@b@c", "a b@c", "plain"] {
            assert!(
                crate::validation::email_address(bad, &loc, &mut errors).is_none(),
                "{bad}"
            );
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(crate::validation::email_address(&long, &loc, &mut errors).is_none());
    }

    #[test]
    fn updates_are_partial_and_null_clears_only_the_totp_secret() {
        let update = parse_update(&json!({"totp_secret": null})).unwrap();
        assert_eq!(update.totp_secret, Some(None));
        assert!(update.email.is_none() && update.password.is_none() && update.active.is_none());
        let update = parse_update(&json!({"active": false, "password": " p w "})).unwrap();
        assert_eq!(update.active, Some(false));
        assert_eq!(update.password.as_deref(), Some(" p w "));
        assert_eq!(update.totp_secret, None);
        assert_eq!(
            kinds(parse_update(
                &json!({"email": null, "active": null, "colour": "x"})
            )),
            [
                (r#"["body","colour"]"#.into(), "extra_forbidden".into()),
                (r#"["body","email"]"#.into(), "string_type".into()),
                (r#"["body","active"]"#.into(), "bool_type".into()),
            ]
        );
    }

    #[test]
    fn debug_of_a_request_shows_no_secret() {
        let new = parse_create(
            &json!({"retailer": "demo", "email": "a@b",
            "password": "hunter2", "totp_secret": "JBSWY3DPEHPK3PXP"}),
            &demo_only(),
        )
        .unwrap();
        let update =
            parse_update(&json!({"password": "hunter2", "totp_secret": "JBSWY3DPEHPK3PXP"}))
                .unwrap();
        for text in [format!("{new:?}"), format!("{update:?}")] {
            assert!(
                !text.contains("hunter2") && !text.contains("JBSW"),
                "{text}"
            );
        }
    }
}
