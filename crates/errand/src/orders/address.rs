//! Shipping addresses: parsed from the request into a normalised [`Address`].
//!
//! Every country: required fields non-blank, `country` an ISO 3166-1 alpha-2 code
//! (default `US`), the phone number valid for that country and stored in E.164.
//! United States: `state` a USPS state/territory/military code and `postal_code` a ZIP
//! or ZIP+4.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::validation::{Errors, Loc, Object, non_blank};

/// Shipping address model.
///
/// Supports international addresses. The `state` field is optional for countries that
/// don't use states/provinces. The `country` field uses ISO 3166-1 alpha-2 country codes
/// (e.g., "US", "CA", "GB", "DE").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Address {
    #[schema(min_length = 1, max_length = 200)]
    pub first_name: String,
    #[schema(min_length = 1, max_length = 200)]
    pub last_name: String,
    #[schema(min_length = 1, max_length = 200)]
    pub address_line1: String,
    #[schema(max_length = 200)]
    pub address_line2: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    pub city: String,
    /// Required for US addresses: a USPS state, territory or military code.
    #[schema(max_length = 200)]
    pub state: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    pub postal_code: String,
    /// A valid number for `country`; returned in E.164, e.g. `+14155550100`.
    #[schema(min_length = 1, max_length = 200)]
    pub phone_number: String,
    #[schema(default = "US", required = false, pattern = "^[A-Za-z]{2}$")]
    pub country: String,
}

const MAX_FIELD_LEN: usize = 200;

impl Address {
    pub fn parse(value: &Value, loc: Loc, errors: &mut Errors) -> Option<Address> {
        let obj = Object::new(value, loc, errors)?;
        let mut required = |field: &str| {
            let text = obj.required_str(field, errors)?;
            non_blank(text, MAX_FIELD_LEN, &obj.loc(field), errors)
        };
        let first_name = required("first_name");
        let last_name = required("last_name");
        let address_line1 = required("address_line1");
        let city = required("city");
        let postal_code = required("postal_code");
        let phone = required("phone_number");
        let mut optional = |field: &str| {
            let text = obj.optional_str(field, errors)?;
            let trimmed = text.trim();
            if trimmed.is_empty() {
                return None;
            }
            non_blank(trimmed, MAX_FIELD_LEN, &obj.loc(field), errors)
        };
        let address_line2 = optional("address_line2");
        let state = optional("state");
        let country = match obj.optional_str("country", errors) {
            None => Some("US".to_string()),
            Some(text) => {
                let code = text.trim().to_ascii_uppercase();
                if is_iso_country(&code) {
                    Some(code)
                } else {
                    errors.add(
                        &obj.loc("country"),
                        "invalid_country",
                        "Country should be an ISO 3166-1 alpha-2 code such as 'US', 'CA' or 'GB'",
                    );
                    None
                }
            }
        };

        let mut state = state;
        if country.as_deref() == Some("US") {
            match state.as_deref().map(str::to_ascii_uppercase) {
                None => errors.add(
                    &obj.loc("state"),
                    "missing",
                    "Field required for US addresses",
                ),
                Some(code) if USPS_STATE_CODES.contains(&code.as_str()) => state = Some(code),
                Some(_) => errors.add(
                    &obj.loc("state"),
                    "invalid_state",
                    "State should be a two-letter USPS state or territory code such as 'CA'",
                ),
            }
            if let Some(zip) = &postal_code
                && !is_us_zip(zip)
            {
                errors.add(
                    &obj.loc("postal_code"),
                    "invalid_postal_code",
                    "Postal code should be a US ZIP code: 5 digits or ZIP+4 (12345-6789)",
                );
            }
        }
        let phone_number = match (&phone, &country) {
            (Some(raw), Some(country)) => {
                let normalised = normalise_phone(raw, country);
                if normalised.is_none() {
                    errors.add(
                        &obj.loc("phone_number"),
                        "invalid_phone_number",
                        format!("Phone number is not a valid number for country {country}"),
                    );
                }
                normalised
            }
            _ => None,
        };

        Some(Address {
            first_name: first_name?,
            last_name: last_name?,
            address_line1: address_line1?,
            address_line2,
            city: city?,
            state,
            postal_code: postal_code?,
            phone_number: phone_number?,
            country: country?,
        })
    }
}

fn is_us_zip(zip: &str) -> bool {
    let b = zip.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    match b.len() {
        5 => digits(b),
        10 => digits(&b[..5]) && b[5] == b'-' && digits(&b[6..]),
        _ => false,
    }
}

/// The number in E.164 when it is valid for `country` (or carries its own `+` prefix
/// and is valid for the country it names).
fn normalise_phone(raw: &str, country: &str) -> Option<String> {
    let region = country.parse::<phonenumber::country::Id>().ok();
    let number = phonenumber::parse(region, raw).ok()?;
    if !phonenumber::is_valid(&number) {
        return None;
    }
    Some(number.format().mode(phonenumber::Mode::E164).to_string())
}

/// USPS codes: the states, DC, the territories and freely associated states, and the
/// military "states" (AA, AE, AP).
const USPS_STATE_CODES: &[&str] = &[
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
    "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM",
    "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA",
    "WV", "WI", "WY", "AS", "GU", "MP", "PR", "VI", "FM", "MH", "PW", "AA", "AE", "AP",
];

/// The 249 officially assigned ISO 3166-1 alpha-2 codes.
const ISO_COUNTRY_CODES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

fn is_iso_country(code: &str) -> bool {
    code.len() == 2 && ISO_COUNTRY_CODES.split(' ').any(|c| c == code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> (Option<Address>, Vec<(String, &'static str)>) {
        let mut errors = Errors::default();
        let address = Address::parse(&value, Loc::body().at("shipping_address"), &mut errors);
        let list = match errors.into_result() {
            Ok(()) => vec![],
            Err(e) => e
                .detail
                .into_iter()
                .map(|f| (serde_json::to_string(&f.loc).unwrap(), f.kind))
                .collect(),
        };
        (address, list)
    }

    fn us() -> Value {
        json!({"first_name":" Ada ","last_name":"Lovelace","address_line1":"1 Main St",
               "city":"Austin","state":"tx","postal_code":"78701","phone_number":"(512) 555-0134"})
    }

    #[test]
    fn the_country_list_is_complete() {
        assert_eq!(ISO_COUNTRY_CODES.split(' ').count(), 249);
    }

    #[test]
    fn us_address_is_normalised() {
        let (address, errors) = parse(us());
        assert!(errors.is_empty(), "{errors:?}");
        let a = address.unwrap();
        assert_eq!(a.first_name, "Ada");
        assert_eq!(a.state.as_deref(), Some("TX"));
        assert_eq!(a.country, "US");
        assert_eq!(a.phone_number, "+15125550134");
    }

    #[test]
    fn zip_codes() {
        assert!(is_us_zip("12345"));
        assert!(is_us_zip("12345-6789"));
        assert!(!is_us_zip("1234"));
        assert!(!is_us_zip("123456789"));
        assert!(!is_us_zip("12345 6789"));
    }

    #[test]
    fn foreign_address_needs_no_state() {
        let (address, errors) = parse(
            json!({"first_name":"A","last_name":"B","address_line1":"10 Downing St",
            "city":"London","postal_code":"SW1A 2AA","phone_number":"020 7946 0958","country":"gb"}),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(address.unwrap().phone_number, "+442079460958");
    }

    #[test]
    fn bad_us_fields_are_each_reported() {
        let mut v = us();
        v["state"] = json!("XX");
        v["postal_code"] = json!("7870");
        v["phone_number"] = json!("123");
        let (_, errors) = parse(v);
        let kinds: Vec<_> = errors.iter().map(|e| e.1).collect();
        assert_eq!(
            kinds,
            [
                "invalid_state",
                "invalid_postal_code",
                "invalid_phone_number"
            ]
        );
    }
}
