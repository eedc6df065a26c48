//! The address clients reach Errand at, for the absolute URLs in responses.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::header::HOST;
use axum::http::request::Parts;

use super::AppState;

/// `scheme://host[:port][/prefix]`, without a trailing slash: `public_url` when it is
/// configured, else the request's `Host` (or HTTP/2 authority) with the scheme from
/// `X-Forwarded-Proto` (`http` without it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicBase(pub String);

impl FromRequestParts<AppState> for PublicBase {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        if let Some(base) = &state.public_base {
            return Ok(PublicBase(base.clone()));
        }
        Ok(PublicBase(from_request(parts, &state.settings.listen)))
    }
}

fn from_request(parts: &Parts, listen: &str) -> String {
    let forwarded = parts
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_ascii_lowercase());
    let scheme = match forwarded.as_deref() {
        Some("https") => "https",
        _ => "http",
    };
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            parts
                .headers
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .filter(|h| valid_host(h))
        // Without a usable Host (HTTP/1.0), the address the server listens on.
        .unwrap_or_else(|| listen.to_string());
    format!("{scheme}://{host}")
}

/// A host with an optional port, and nothing that could change the URL around it.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        && url::Url::parse(&format!("http://{host}/")).is_ok_and(|u| u.path() == "/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::builder().uri("/orders/x");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_base_comes_from_host_and_forwarded_proto() {
        let listen = "127.0.0.1:8080";
        assert_eq!(
            from_request(&parts(&[("host", "errand.example.com")]), listen),
            "http://errand.example.com"
        );
        assert_eq!(
            from_request(
                &parts(&[
                    ("host", "errand.example.com:8443"),
                    ("x-forwarded-proto", "HTTPS, http")
                ]),
                listen
            ),
            "https://errand.example.com:8443"
        );
        assert_eq!(
            from_request(
                &parts(&[("host", "[::1]:8080"), ("x-forwarded-proto", "gopher")]),
                listen
            ),
            "http://[::1]:8080"
        );
        for bad in ["", "evil.example/path", "a@b", "a b", "h:notaport"] {
            assert_eq!(
                from_request(&parts(&[("host", bad)]), listen),
                "http://127.0.0.1:8080",
                "{bad:?}"
            );
        }
        assert_eq!(from_request(&parts(&[]), listen), "http://127.0.0.1:8080");
    }
}
