//! Time-based one-time passwords (RFC 6238: HMAC-SHA1, 30-second steps, 6 digits), for
//! accounts with two-factor sign-in.

use hmac::{Hmac, Mac};
use sha1::Sha1;

const STEP_SECONDS: i64 = 30;

/// Decodes RFC 4648 base32 (case-insensitive, padding and spaces ignored).
pub fn decode_base32(text: &str) -> Option<Vec<u8>> {
    let mut bits: u64 = 0;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.chars().filter(|c| *c != '=' && !c.is_whitespace()) {
        let value = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u64 - 'A' as u64,
            c @ '2'..='7' => c as u64 - '2' as u64 + 26,
            _ => return None,
        };
        bits = (bits << 5) | value;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The code for the step containing `unix_seconds`, with `digits` digits.
fn code_at(key: &[u8], unix_seconds: i64, digits: u32) -> String {
    let counter = (unix_seconds.div_euclid(STEP_SECONDS) as u64).to_be_bytes();
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(&counter);
    let hash = mac.finalize().into_bytes();
    let offset = usize::from(hash[19] & 0x0f);
    let binary = u32::from_be_bytes([
        hash[offset] & 0x7f,
        hash[offset + 1],
        hash[offset + 2],
        hash[offset + 3],
    ]);
    format!(
        "{:0width$}",
        binary % 10u32.pow(digits),
        width = digits as usize
    )
}

/// The current 6-digit code for a base32 secret.
pub fn current_code(secret: &str, unix_seconds: i64) -> Option<String> {
    Some(code_at(&decode_base32(secret)?, unix_seconds, 6))
}

/// Whether `code` is right for now, the step before or the step after (clock drift).
pub fn verify(secret: &str, code: &str, unix_seconds: i64) -> bool {
    let Some(key) = decode_base32(secret) else {
        return false;
    };
    let code = code.trim();
    [-1, 0, 1]
        .iter()
        .any(|step| code_at(&key, unix_seconds + step * STEP_SECONDS, 6) == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, appendix B (SHA-1): the key is the ASCII "12345678901234567890".
    #[test]
    fn rfc_6238_vectors() {
        let key = b"12345678901234567890";
        assert_eq!(
            decode_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap(),
            key
        );
        for (time, expected) in [
            (59, "94287082"),
            (1111111109, "07081804"),
            (1234567890, "89005924"),
            (20000000000, "65353130"),
        ] {
            assert_eq!(code_at(key, time, 8), expected, "T = {time}");
        }
        assert_eq!(
            current_code("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 59).unwrap(),
            "287082"
        );
    }

    #[test]
    fn verification_tolerates_one_step_of_drift() {
        let secret = "JBSWY3DPEHPK3PXP";
        let now = 1_800_000_000;
        let code = current_code(secret, now).unwrap();
        assert!(verify(secret, &code, now));
        assert!(verify(secret, &code, now + 30));
        assert!(!verify(secret, &code, now + 90));
        assert!(!verify(secret, "000000x", now));
        assert!(decode_base32("not base32!").is_none());
    }
}
