//! Bearer-token check for `/api/*` and `/metrics` (RFC 6750 §2.1).
//!
//! The token is compared in constant time (`subtle`), so response timing does not reveal how
//! many leading bytes of a guess were right. A missing, malformed or wrong `Authorization`
//! header is a 401 JSON error. When the config has no token every request passes: config
//! validation only allows that when the HTTP listener is on a loopback address.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::types::ApiError;

/// The configured token, if any. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BearerToken(Option<Arc<[u8]>>);

impl BearerToken {
    /// `None` disables the check. An empty token locks everything (no presented token is
    /// empty), failing closed if config validation ever let one through.
    pub fn new(token: Option<String>) -> Self {
        BearerToken(token.map(|t| Arc::from(t.into_bytes().into_boxed_slice())))
    }

    /// Whether the request headers carry the right token (always true when none is set).
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.0 else {
            return true;
        };
        let Some(presented) = headers
            .get(AUTHORIZATION)
            .and_then(|v| bearer_credentials(v.as_bytes()))
        else {
            return false;
        };
        // `ct_eq` on slices of different lengths is false; only the length can leak.
        bool::from(presented.ct_eq(expected))
    }
}

/// The credentials of `Bearer <token>`; the scheme is case-insensitive (RFC 7235 §2.1).
fn bearer_credentials(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    let scheme = value.get(..SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = value.get(SCHEME.len()..)?;
    let start = rest.iter().position(|b| *b != b' ')?;
    let token = rest.get(start..)?;
    let end = token.iter().rposition(|b| *b != b' ').map_or(0, |i| i + 1);
    token.get(..end)
}

/// Middleware: pass the request on, or answer 401.
pub async fn require_bearer(
    State(token): State<BearerToken>,
    req: Request,
    next: Next,
) -> Response {
    if token.allows(req.headers()) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn checks_token() {
        let t = BearerToken::new(Some("s3cret".to_owned()));
        assert!(t.allows(&headers("Bearer s3cret")));
        assert!(t.allows(&headers("bearer  s3cret ")));
        assert!(!t.allows(&headers("Bearer s3cre")));
        assert!(!t.allows(&headers("Bearer s3cretx")));
        assert!(!t.allows(&headers("Basic s3cret")));
        assert!(!t.allows(&headers("Bearer")));
        assert!(!t.allows(&headers("Bearer ")));
        assert!(!t.allows(&HeaderMap::new()));
    }

    #[test]
    fn no_token_means_open_empty_token_means_closed() {
        let t = BearerToken::new(None);
        assert!(t.allows(&HeaderMap::new()));
        let t = BearerToken::new(Some(String::new()));
        assert!(!t.allows(&headers("Bearer whatever")));
        assert!(!t.allows(&headers("Bearer ")));
        assert!(!t.allows(&HeaderMap::new()));
    }
}
