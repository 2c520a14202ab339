//! Bearer-token auth: with a token configured, every path but `/healthz`, `/readyz`,
//! `/metrics` (DESIGN §8: scrapers and probes carry no token) and the dashboard page `/`
//! (which carries no data) requires it.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};

use crate::error::ApiError;

/// Paths open without a token: probes and scrapers carry none (DESIGN §8), and `/` is
/// the dashboard page, which holds no data and sends the token itself on its API calls.
pub const OPEN_PATHS: &[&str] = &["/", "/healthz", "/readyz", "/metrics"];

/// The configured token, if any; held as app data.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// The token callers must send; `None` turns auth off.
    pub token: Option<String>,
}

impl Auth {
    /// Whether the `Authorization` header value grants access.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let Some(given) = authorization.and_then(bearer_token) else {
            return false;
        };
        constant_time_eq(given, token.as_bytes())
    }
}

/// The token of a `Bearer <token>` header value (the scheme in any case).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

/// Compares two byte strings in time that depends only on their lengths, so that a
/// caller cannot find the token byte by byte by timing the answers.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        difference |= usize::from(x ^ y);
    }
    difference == 0
}

/// Middleware: answers 401 unless the request may pass.
///
/// # Errors
/// Whatever the inner service fails with.
pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let allowed = OPEN_PATHS.contains(&req.path())
        || req.app_data::<web::Data<Auth>>().is_none_or(|auth| {
            auth.allows(
                req.headers()
                    .get(header::AUTHORIZATION)
                    .map(|v| v.as_bytes()),
            )
        });
    if allowed {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let response = ApiError::Unauthorized.error_response();
    Ok(req.into_response(response).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_compare_equal_and_others_do_not() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret-"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn only_the_right_bearer_token_is_allowed() {
        let auth = Auth {
            token: Some("s3cret".to_owned()),
        };
        assert!(auth.allows(Some(b"Bearer s3cret")));
        assert!(auth.allows(Some(b"bearer s3cret")));
        assert!(!auth.allows(Some(b"Bearer wrong")));
        assert!(!auth.allows(Some(b"Basic s3cret")));
        assert!(!auth.allows(Some(b"s3cret")));
        assert!(!auth.allows(None));
        assert!(Auth::default().allows(None));
    }
}
