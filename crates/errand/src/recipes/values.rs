//! Parsers for what a recipe reads off a page: money, whole numbers, dates and text.
//!
//! They are strict on purpose: a price the parser is unsure of is an error, never a
//! guess, because the engine compares it with the order's price cap. Money is always
//! integer minor units (cents); no floating point anywhere.

use serde::Deserialize;
use time::{Date, Month};

/// How a `read` step turns the text it finds into a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParseKind {
    /// The text, trimmed, runs of white space made one space.
    Text,
    /// A price in the recipe's currency, e.g. `$1,234.56`, into minor units.
    Money,
    /// The one whole number in the text, e.g. `Qty: 3`.
    Integer,
    /// A calendar date, e.g. `2026-11-24`, `Nov 24, 2026` or `24 November 2026`.
    Date,
}

impl ParseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ParseKind::Text => "text",
            ParseKind::Money => "money",
            ParseKind::Integer => "integer",
            ParseKind::Date => "date",
        }
    }
}

/// A value read off a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    /// Minor units of the recipe's currency.
    Money(i64),
    Integer(i64),
    Date(Date),
}

/// Why a text is not the value a recipe expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {text:?} as {kind}: {reason}")]
pub struct ValueError {
    pub kind: &'static str,
    pub text: String,
    pub reason: String,
}

fn fail(kind: ParseKind, text: &str, reason: impl Into<String>) -> ValueError {
    ValueError {
        kind: kind.as_str(),
        text: text.to_string(),
        reason: reason.into(),
    }
}

/// Parses `text` as `kind`; money is in `currency`.
pub fn parse(kind: ParseKind, text: &str, currency: Currency) -> Result<Value, ValueError> {
    Ok(match kind {
        ParseKind::Text => Value::Text(normalise_text(text)),
        ParseKind::Money => Value::Money(parse_money(text, currency)?),
        ParseKind::Integer => Value::Integer(parse_integer(text)?),
        ParseKind::Date => Value::Date(parse_date(text)?),
    })
}

/// Trims and makes every run of white space (non-breaking spaces included) one space.
pub fn normalise_text(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A currency a recipe prices in: its ISO 4217 code and how many decimals its minor
/// unit has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    code: [u8; 3],
    pub decimals: u32,
}

/// Currencies whose minor unit is the major unit (no decimals).
const ZERO_DECIMALS: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];
/// Currencies with three decimals: their prices cannot be told from thousands (`1.234`),
/// so recipes do not accept them.
const THREE_DECIMALS: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];

impl Currency {
    /// A currency from its ISO 4217 code (three capital letters).
    pub fn new(code: &str) -> Result<Currency, String> {
        let bytes: [u8; 3] = code
            .as_bytes()
            .try_into()
            .ok()
            .filter(|b: &[u8; 3]| b.iter().all(u8::is_ascii_uppercase))
            .ok_or_else(|| {
                format!("currency must be an ISO 4217 code such as \"USD\", not {code:?}")
            })?;
        if THREE_DECIMALS.contains(&code) {
            return Err(format!(
                "currency {code} has three decimals, which recipes cannot read unambiguously"
            ));
        }
        Ok(Currency {
            code: bytes,
            decimals: if ZERO_DECIMALS.contains(&code) { 0 } else { 2 },
        })
    }

    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).expect("checked ASCII")
    }
}

/// The currencies a symbol written next to a price can mean; an ISO code means itself.
fn currencies_written_as(mark: &str) -> Option<&'static [&'static str]> {
    Some(match mark {
        "$" => &[
            "USD", "CAD", "AUD", "NZD", "SGD", "HKD", "MXN", "ARS", "CLP", "COP", "TWD",
        ],
        "US$" => &["USD"],
        "C$" | "CA$" => &["CAD"],
        "A$" | "AU$" => &["AUD"],
        "NZ$" => &["NZD"],
        "S$" => &["SGD"],
        "HK$" => &["HKD"],
        "€" => &["EUR"],
        "£" => &["GBP"],
        "¥" | "円" => &["JPY", "CNY"],
        "₹" => &["INR"],
        "₩" => &["KRW"],
        "kr" | "kr." => &["SEK", "NOK", "DKK", "ISK"],
        "zł" => &["PLN"],
        "Kč" => &["CZK"],
        "R$" => &["BRL"],
        "Fr." => &["CHF"],
        _ => return None,
    })
}

/// Separators a number may be written with: decimal point or comma, and thousands
/// groups split by either of those, an apostrophe or a (non-breaking) space.
fn is_separator(c: char) -> bool {
    matches!(
        c,
        '.' | ',' | '\'' | ' ' | '\u{a0}' | '\u{202f}' | '\u{2009}'
    )
}

fn is_minus(c: char) -> bool {
    c == '-' || c == '\u{2212}'
}

/// Splits a text into what comes before its first number, the number (digits and
/// separators, each separator followed by a digit), and what comes after.
fn split_number(text: &str) -> Option<(&str, &str, &str)> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let mut end = start;
    let mut chars = text[start..].char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next_is_digit = chars.peek().is_some_and(|(_, n)| n.is_ascii_digit());
        if c.is_ascii_digit() {
            end = start + i + c.len_utf8();
        } else if !(is_separator(c) && next_is_digit) {
            break;
        }
    }
    Some((&text[..start], &text[start..end], &text[end..]))
}

/// Reads a price into minor units of `currency`: `$1,234.56`, `1.234,56 €`, `USD 12`,
/// `£0.99`, `-$5.00`, `CHF 1'234.50`. The currency symbol or code is optional but must
/// fit `currency`; anything else beside the number (such as `Free` or `From`) is an
/// error, and so is a number whose decimals or thousands groups are ambiguous.
pub fn parse_money(text: &str, currency: Currency) -> Result<i64, ValueError> {
    let kind = ParseKind::Money;
    let err = |reason: String| fail(kind, text, reason);
    let Some((before, number, after)) = split_number(text) else {
        return Err(err("there is no amount in it".into()));
    };
    if after.chars().any(|c| c.is_ascii_digit()) {
        return Err(err("it holds more than one number".into()));
    }
    let mut before = before.trim();
    let mut negative = false;
    if let Some(rest) = before.strip_suffix(is_minus) {
        negative = true;
        before = rest;
    }
    if let Some(rest) = before.strip_prefix(is_minus) {
        if negative {
            return Err(err("it has two minus signs".into()));
        }
        negative = true;
        before = rest;
    }
    let mut marked = false;
    for (side, part) in [("before", before), ("after", after)] {
        for token in part.split_whitespace() {
            let is_code = token.len() == 3 && token.chars().all(|c| c.is_ascii_uppercase());
            let codes = currencies_written_as(token);
            if !is_code && codes.is_none() {
                return Err(err(format!("unexpected {token:?} {side} the amount")));
            }
            if token != currency.code() && !codes.is_some_and(|c| c.contains(&currency.code())) {
                return Err(err(format!(
                    "{token:?} is not a way to write {}, the recipe's currency",
                    currency.code()
                )));
            }
            if marked {
                return Err(err("it names the currency twice".into()));
            }
            marked = true;
        }
    }
    let (units, cents) = split_decimals(number, currency.decimals).map_err(err)?;
    let minor = units
        .checked_mul(10_i64.pow(currency.decimals))
        .and_then(|u| u.checked_add(cents))
        .ok_or_else(|| err("the amount is too large".into()))?;
    Ok(if negative { -minor } else { minor })
}

/// Splits a number into whole units and minor units. The last `.` or `,` is the
/// decimal separator unless it is followed by exactly three digits and is the only
/// kind of separator (then `1.234` and `1,234` are thousands, as stores write them).
fn split_decimals(number: &str, decimals: u32) -> Result<(i64, i64), String> {
    let last = number
        .char_indices()
        .rev()
        .find(|(_, c)| !c.is_ascii_digit());
    let (whole, fraction) = match last {
        Some((at, sep)) if sep == '.' || sep == ',' => {
            let fraction = &number[at + 1..];
            let whole = &number[..at];
            let only_kind = !whole.contains(|c: char| !c.is_ascii_digit() && c != sep);
            let repeated = whole.contains(sep);
            if repeated || (fraction.len() == 3 && only_kind) {
                (number, "")
            } else {
                (whole, fraction)
            }
        }
        _ => (number, ""),
    };
    let units = parse_grouped(whole)?;
    let wanted = decimals as usize;
    let (kept, extra) = fraction.split_at(fraction.len().min(wanted));
    if extra.chars().any(|c| c != '0') {
        return Err(format!(
            "it has {} decimals; the currency has {decimals}",
            fraction.len()
        ));
    }
    let cents = if kept.is_empty() {
        0
    } else {
        let padded = format!("{kept:0<wanted$}");
        padded
            .parse::<i64>()
            .map_err(|_| "the decimals are not a number".to_string())?
    };
    Ok((units, cents))
}

/// Parses digits with optional thousands separators: one kind of separator, first group
/// of one to three digits, every later group of exactly three.
fn parse_grouped(whole: &str) -> Result<i64, String> {
    let mut separators = whole.chars().filter(|c| !c.is_ascii_digit());
    if let Some(first) = separators.next() {
        if separators.any(|c| c != first) {
            return Err(format!("{whole:?} mixes thousands separators"));
        }
        let mut groups = whole.split(first);
        let head = groups.next().unwrap_or("");
        if head.is_empty() || head.len() > 3 || groups.any(|g| g.len() != 3) {
            return Err(format!("{whole:?} is not grouped in thousands"));
        }
    }
    let digits: String = whole.chars().filter(char::is_ascii_digit).collect();
    digits
        .parse::<i64>()
        .map_err(|_| "the amount is too large".to_string())
}

/// Reads the one whole number in a text, e.g. `3` from `Qty: 3` or `1234` from
/// `1,234 in stock`. No number, or more than one, is an error.
pub fn parse_integer(text: &str) -> Result<i64, ValueError> {
    let kind = ParseKind::Integer;
    let Some((before, number, after)) = split_number(text) else {
        return Err(fail(kind, text, "there is no number in it"));
    };
    if after.chars().any(|c| c.is_ascii_digit()) {
        return Err(fail(kind, text, "it holds more than one number"));
    }
    if number.contains(['.', ',']) && split_decimals(number, 0).is_err() {
        return Err(fail(kind, text, "it is not a whole number"));
    }
    let value = parse_grouped(number).map_err(|reason| fail(kind, text, reason))?;
    Ok(if before.ends_with(is_minus) {
        -value
    } else {
        value
    })
}

const MONTHS: [(&str, Month); 12] = [
    ("january", Month::January),
    ("february", Month::February),
    ("march", Month::March),
    ("april", Month::April),
    ("may", Month::May),
    ("june", Month::June),
    ("july", Month::July),
    ("august", Month::August),
    ("september", Month::September),
    ("october", Month::October),
    ("november", Month::November),
    ("december", Month::December),
];

/// An English month name, full or abbreviated to at least three letters (`Sept` too).
fn month(word: &str) -> Option<Month> {
    let word = word.to_ascii_lowercase();
    if word.len() < 3 {
        return None;
    }
    MONTHS
        .iter()
        .find(|(name, _)| name.starts_with(&word))
        .map(|(_, m)| *m)
}

/// Reads a calendar date: ISO (`2026-11-24`, also the date of an RFC 3339 timestamp),
/// or an English month name with a day and a four-digit year in either order
/// (`Nov 24, 2026`, `24 November 2026`, `Tuesday, November 24th 2026`). Other words
/// around it (`Arrives`, weekdays) are ignored. All-numeric dates such as `11/24/2026`
/// are refused: day and month cannot be told apart.
pub fn parse_date(text: &str) -> Result<Date, ValueError> {
    let kind = ParseKind::Date;
    if let Some(date) = find_iso_date(text) {
        return date.map_err(|reason| fail(kind, text, reason));
    }
    let mut months = Vec::new();
    let mut numbers = Vec::new();
    for token in text.split(|c: char| !c.is_alphanumeric()) {
        let digits: String = token.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() {
            let suffix = &token[digits.len()..];
            if !["", "st", "nd", "rd", "th"].contains(&suffix.to_ascii_lowercase().as_str()) {
                return Err(fail(kind, text, format!("unexpected {token:?}")));
            }
            numbers.push(digits);
        } else if let Some(m) = month(token) {
            months.push(m);
        }
    }
    let [month] = months[..] else {
        return Err(fail(
            kind,
            text,
            if months.is_empty() {
                "write the month as a name (Nov 24, 2026) or use 2026-11-24"
            } else {
                "it names more than one month"
            },
        ));
    };
    let (year, day) = match &numbers[..] {
        [a, b] if a.len() == 4 && b.len() <= 2 => (a, b),
        [a, b] if b.len() == 4 && a.len() <= 2 => (b, a),
        _ => {
            return Err(fail(kind, text, "expected one day and one four-digit year"));
        }
    };
    let (year, day) = (year.parse().unwrap_or(0), day.parse().unwrap_or(0));
    Date::from_calendar_date(year, month, day).map_err(|_| fail(kind, text, "no such day"))
}

/// The first `YYYY-MM-DD` in a text, if there is one.
fn find_iso_date(text: &str) -> Option<Result<Date, String>> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(9)).find_map(|i| {
        let window = &bytes[i..i + 10];
        let shape = window.iter().enumerate().all(|(j, b)| {
            if j == 4 || j == 7 {
                *b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
        let starts_clean = i == 0 || !bytes[i - 1].is_ascii_digit();
        let ends_clean = bytes.get(i + 10).is_none_or(|b| !b.is_ascii_digit());
        if !(shape && starts_clean && ends_clean) {
            return None;
        }
        let window = &text[i..i + 10];
        let year: i32 = window[0..4].parse().ok()?;
        let month: u8 = window[5..7].parse().ok()?;
        let day: u8 = window[8..10].parse().ok()?;
        Some(
            Month::try_from(month)
                .ok()
                .and_then(|m| Date::from_calendar_date(year, m, day).ok())
                .ok_or_else(|| "no such day".to_string()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn usd() -> Currency {
        Currency::new("USD").unwrap()
    }

    fn money(text: &str, code: &str) -> Result<i64, String> {
        parse_money(text, Currency::new(code).unwrap()).map_err(|e| e.reason)
    }

    #[test]
    fn money_in_the_usual_shapes() {
        for (text, code, cents) in [
            ("$1,234.56", "USD", 123_456),
            ("$0.99", "USD", 99),
            ("$12", "USD", 1200),
            ("$12.5", "USD", 1250),
            ("  $ 19.99 ", "USD", 1999),
            ("USD 12", "USD", 1200),
            ("12.00 USD", "USD", 1200),
            ("US$5.00", "USD", 500),
            ("$1,234,567.89", "USD", 123_456_789),
            ("$1,234", "USD", 123_400),
            ("1.234,56 €", "EUR", 123_456),
            ("€1.234,56", "EUR", 123_456),
            ("1 234,56\u{a0}€", "EUR", 123_456),
            ("1\u{202f}234,56 €", "EUR", 123_456),
            ("EUR 1.234", "EUR", 123_400),
            ("12,5 €", "EUR", 1250),
            ("£0.99", "GBP", 99),
            ("CHF 1'234.50", "CHF", 123_450),
            ("¥1,234", "JPY", 1234),
            ("¥1234", "JPY", 1234),
            ("1.234 ¥", "JPY", 1234),
            ("C$10.00", "CAD", 1000),
            ("$10.00", "CAD", 1000),
            ("kr 99,00", "SEK", 9900),
            ("0", "USD", 0),
        ] {
            assert_eq!(money(text, code), Ok(cents), "{text:?} in {code}");
        }
    }

    #[test]
    fn negative_amounts_keep_their_sign() {
        assert_eq!(money("-$5.00", "USD"), Ok(-500));
        assert_eq!(money("$-5.00", "USD"), Ok(-500));
        assert_eq!(money("\u{2212}€5,10", "EUR"), Ok(-510));
        assert_eq!(money("-$0.00", "USD"), Ok(0));
        assert!(money("--$5", "USD").is_err());
    }

    #[test]
    fn money_that_is_not_a_price_is_refused() {
        for (text, code, reason) in [
            ("Free", "USD", "there is no amount in it"),
            ("", "USD", "there is no amount in it"),
            ("FREE $0.00", "USD", "unexpected \"FREE\" before the amount"),
            ("From $5.00", "USD", "unexpected \"From\" before the amount"),
            ("$5.00 - $9.00", "USD", "it holds more than one number"),
            ("$5.00 each", "USD", "unexpected \"each\" after the amount"),
            ("€5.00", "USD", "\"€\" is not a way to write USD"),
            ("EUR 5", "USD", "\"EUR\" is not a way to write USD"),
            ("$5.00", "EUR", "\"$\" is not a way to write EUR"),
            ("$1.234,567", "USD", "it has 3 decimals; the currency has 2"),
            ("$1,2345.00", "USD", "not grouped in thousands"),
            ("$12,34,567.00", "USD", "not grouped in thousands"),
            ("$1.999", "JPY", "\"$\" is not a way to write JPY"),
            ("¥1234.5", "JPY", "it has 1 decimals; the currency has 0"),
            ("$99999999999999999999", "USD", "the amount is too large"),
            ("$92233720368547758.08", "USD", "the amount is too large"),
        ] {
            let got = money(text, code).expect_err(text);
            assert!(got.contains(reason), "{text:?}: {got:?} lacks {reason:?}");
        }
    }

    #[test]
    fn thousands_and_decimals_are_told_apart() {
        // One separator followed by three digits is a thousands separator.
        assert_eq!(money("$1.234", "USD"), Ok(123_400));
        assert_eq!(money("1,234 €", "EUR"), Ok(123_400));
        // Two different separators: the last one is the decimal separator.
        assert_eq!(
            money("$1,234.567", "USD").unwrap_err(),
            "it has 3 decimals; the currency has 2"
        );
        assert_eq!(money("1.234.567 €", "EUR"), Ok(123_456_700));
        assert_eq!(money("1,5 €", "EUR"), Ok(150));
        assert_eq!(money("$1.50", "USD"), Ok(150));
        // Zero decimals beyond the currency's are harmless.
        assert_eq!(money("¥1,234.00", "JPY"), Ok(1234));
    }

    #[test]
    fn currencies() {
        assert_eq!(Currency::new("USD").unwrap().decimals, 2);
        assert_eq!(Currency::new("JPY").unwrap().decimals, 0);
        assert_eq!(Currency::new("EUR").unwrap().code(), "EUR");
        assert!(Currency::new("usd").is_err());
        assert!(Currency::new("US").is_err());
        assert!(Currency::new("KWD").unwrap_err().contains("three decimals"));
    }

    #[test]
    fn integers() {
        assert_eq!(parse_integer("Qty: 3"), Ok(3));
        assert_eq!(parse_integer("3"), Ok(3));
        assert_eq!(parse_integer(" 12 items "), Ok(12));
        assert_eq!(parse_integer("1,234 in stock"), Ok(1234));
        assert_eq!(parse_integer("-2"), Ok(-2));
        for text in ["none", "", "3 of 5", "1.5", "Qty: 1,23"] {
            assert!(parse_integer(text).is_err(), "{text:?}");
        }
        assert_eq!(
            parse_integer("3 of 5").unwrap_err().to_string(),
            "cannot read \"3 of 5\" as integer: it holds more than one number"
        );
    }

    #[test]
    fn dates() {
        for (text, expected) in [
            ("2026-11-24", date!(2026 - 11 - 24)),
            (
                "Estimated delivery: 2026-11-24T15:04:05Z",
                date!(2026 - 11 - 24),
            ),
            ("Nov 24, 2026", date!(2026 - 11 - 24)),
            ("24 November 2026", date!(2026 - 11 - 24)),
            ("November 24th, 2026", date!(2026 - 11 - 24)),
            ("Arrives Tuesday, Nov. 24 2026", date!(2026 - 11 - 24)),
            ("Sept 1, 2026", date!(2026 - 09 - 01)),
            ("1 may 2026", date!(2026 - 05 - 01)),
            ("29 Feb 2028", date!(2028 - 02 - 29)),
        ] {
            assert_eq!(parse_date(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn dates_that_are_unclear_are_refused() {
        for (text, reason) in [
            ("11/24/2026", "write the month as a name"),
            ("Tomorrow", "write the month as a name"),
            ("Nov 24", "expected one day and one four-digit year"),
            (
                "Nov 24-26, 2026",
                "expected one day and one four-digit year",
            ),
            ("Nov or Dec 2026", "more than one month"),
            ("29 Feb 2027", "no such day"),
            ("2026-02-30", "no such day"),
            ("2026-13-01", "no such day"),
            ("Nov 24x, 2026", "unexpected \"24x\""),
        ] {
            let got = parse_date(text).expect_err(text).reason;
            assert!(got.contains(reason), "{text:?}: {got:?} lacks {reason:?}");
        }
    }

    #[test]
    fn parse_dispatches_on_kind() {
        assert_eq!(
            parse(ParseKind::Text, "  Blue \n  Mug ", usd()),
            Ok(Value::Text("Blue Mug".into()))
        );
        assert_eq!(
            parse(ParseKind::Money, "$3.50", usd()),
            Ok(Value::Money(350))
        );
        assert_eq!(
            parse(ParseKind::Integer, "x 2", usd()),
            Ok(Value::Integer(2))
        );
        assert_eq!(
            parse(ParseKind::Date, "2026-01-02", usd()),
            Ok(Value::Date(date!(2026 - 01 - 02)))
        );
        assert_eq!(
            parse(ParseKind::Money, "Free", usd())
                .unwrap_err()
                .to_string(),
            "cannot read \"Free\" as money: there is no amount in it"
        );
    }
}
