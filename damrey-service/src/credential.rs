//! The one credential check of every Damrey service (DESIGN §8): bearer tokens, each
//! granting roles, compared in constant time. The proxy and the agent both call
//! [`check_request`] ([`Credentials::authorize`] on the request's header) from a middleware that runs before any handler, so a
//! request without the right credential is answered before its body is read.
//!
//! Tokens are held as [`Secret`]s, whose `Debug` never shows them, so that settings and
//! clients can derive `Debug` and be logged whole.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A bearer token or other secret. `Debug` prints `Secret(***)` and there is no
/// `Display`: the value is read only through [`Secret::expose`], where it is sent.
/// It deserializes from (and serializes to) a plain string, so settings files and
/// `DAMREY_*` variables hold it as before; serializing exists for the settings loader,
/// which lists the defaults (where no token is set).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends or compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `token` unless it is empty: an empty token setting means "not set", as shells
    /// write an unset variable (`DAMREY_TOKEN=`). The one place this rule is written.
    pub fn non_empty(token: Option<Secret>) -> Option<Secret> {
        token.filter(|token| !token.0.is_empty())
    }

    /// Applies [`Secret::non_empty`] to each of `tokens` in place.
    pub fn unset_empty<'a>(tokens: impl IntoIterator<Item = &'a mut Option<Secret>>) {
        for token in tokens {
            *token = Secret::non_empty(token.take());
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

/// What a credential may do. An endpoint names the roles it admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Configuration writes and `forget` on the proxy; calls on the agent.
    Admin,
    /// Heartbeats and config and placement reads on the proxy; peer links between agents.
    Agent,
    /// Worker processes attaching to their agent; calls on the agent.
    Worker,
    /// Stats, alarms and what the dashboard reads.
    Read,
}

impl Role {
    /// Every role, in the order they are named in errors.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Agent, Role::Worker, Role::Read];

    /// The role's name in settings and errors.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::Worker => "worker",
            Role::Read => "read",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A request the credentials do not let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No bearer token, or one that no role has (401).
    #[error("missing or wrong bearer token; send Authorization: Bearer <token>")]
    Unauthorized,
    /// A known token whose roles this endpoint does not admit (403).
    #[error("this credential ({granted}) may not do this; it needs the role {wanted}")]
    Forbidden {
        /// The roles the token has, joined by `, `.
        granted: String,
        /// The roles the endpoint admits, joined by ` or `.
        wanted: String,
    },
}

/// The tokens a service accepts and the roles each grants. Without any, every request
/// passes (the local example).
#[derive(Clone, Default)]
pub struct Credentials {
    tokens: Vec<(Vec<u8>, Role)>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the tokens themselves.
        let roles: Vec<Role> = self.tokens.iter().map(|(_, role)| *role).collect();
        f.debug_struct("Credentials")
            .field("roles", &roles)
            .finish()
    }
}

impl Credentials {
    /// No credentials: everything passes.
    pub fn open() -> Credentials {
        Credentials::default()
    }

    /// The development shortcut: one token that grants every role.
    pub fn shared(token: impl Into<String>) -> Credentials {
        Credentials::from_tokens(Some(&Secret::new(token)), [])
    }

    /// The credentials of a service's token settings: `shared` (the development
    /// shortcut) for every role, and each role's own token for that role. A token that
    /// is unset or empty ([`Secret::non_empty`]) is no credential; none at all, and
    /// everything passes.
    pub fn from_tokens<'a>(
        shared: Option<&Secret>,
        roles: impl IntoIterator<Item = (Role, Option<&'a Secret>)>,
    ) -> Credentials {
        let mut credentials = Credentials::open();
        let mut add = |token: Option<&Secret>, role: Role| {
            if let Some(token) = Secret::non_empty(token.cloned()) {
                credentials.tokens.push((token.0.into_bytes(), role));
            }
        };
        for role in Role::ALL {
            add(shared, role);
        }
        for (role, token) in roles {
            add(token, role);
        }
        credentials
    }

    /// Whether any credential is configured (else every request passes).
    pub fn is_required(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Lets the request through when its `Authorization` header value carries a token
    /// that grants one of `wanted` (any role when `wanted` is empty). Every configured
    /// token is compared, each in constant time, so the answer's timing tells nothing
    /// about which token came close. The scheme `Bearer` is case-insensitive (RFC 7235).
    ///
    /// # Errors
    /// [`AuthError::Unauthorized`] without a known token, [`AuthError::Forbidden`] with
    /// one whose roles are not wanted.
    pub fn authorize(
        &self,
        authorization: Option<&[u8]>,
        wanted: &[Role],
    ) -> Result<(), AuthError> {
        if !self.is_required() {
            return Ok(());
        }
        let given = authorization.and_then(bearer_token).unwrap_or(b"");
        let mut granted = Vec::new();
        for (token, role) in &self.tokens {
            if constant_time_eq(given, token) && !granted.contains(role) {
                granted.push(*role);
            }
        }
        if granted.is_empty() {
            return Err(AuthError::Unauthorized);
        }
        if wanted.is_empty() || granted.iter().any(|role| wanted.contains(role)) {
            return Ok(());
        }
        let names = |roles: &[Role], separator: &str| {
            roles
                .iter()
                .map(|role| role.name())
                .collect::<Vec<_>>()
                .join(separator)
        };
        Err(AuthError::Forbidden {
            granted: names(&granted, ", "),
            wanted: names(wanted, " or "),
        })
    }
}

/// The verdict on a request for a route that admits `wanted` (`None`: open to all),
/// with the [`Credentials`] its app holds (none set: open), read from the request's
/// `Authorization` header alone: both services' middlewares call this before any body.
///
/// # Errors
/// [`AuthError`] when the credential is missing, wrong, or of another role.
pub fn check_request(
    req: &actix_web::dev::ServiceRequest,
    wanted: Option<&[Role]>,
) -> Result<(), AuthError> {
    match (wanted, req.app_data::<actix_web::web::Data<Credentials>>()) {
        (Some(wanted), Some(credentials)) => credentials.authorize(
            req.headers()
                .get(actix_web::http::header::AUTHORIZATION)
                .map(|value| value.as_bytes()),
            wanted,
        ),
        _ => Ok(()),
    }
}

/// The token of a `Bearer <token>` header value; the scheme in any case (RFC 7235).
pub fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

/// Compares two byte strings in time that depends only on their lengths, so that a
/// caller cannot find a token byte by byte by timing the answers.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        difference |= usize::from(x ^ y);
    }
    difference == 0
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
        assert!(!constant_time_eq(b"s3cre", b"s3cret"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        assert_eq!(bearer_token(b"Bearer s3cret"), Some(&b"s3cret"[..]));
        assert_eq!(bearer_token(b"bearer s3cret"), Some(&b"s3cret"[..]));
        assert_eq!(bearer_token(b"BEARER s3cret"), Some(&b"s3cret"[..]));
        assert_eq!(bearer_token(b"Basic s3cret"), None);
        assert_eq!(bearer_token(b"s3cret"), None);
    }

    #[test]
    fn the_shared_token_grants_every_role_and_nothing_else_passes() {
        let credentials = Credentials::shared("s3cret");
        for role in Role::ALL {
            assert_eq!(
                credentials.authorize(Some(b"Bearer s3cret"), &[role]),
                Ok(())
            );
        }
        assert_eq!(credentials.authorize(Some(b"bearer s3cret"), &[]), Ok(()));
        for wrong in [&b"Bearer wrong"[..], b"Basic s3cret", b"s3cret", b"Bearer "] {
            assert_eq!(
                credentials.authorize(Some(wrong), &[]),
                Err(AuthError::Unauthorized)
            );
        }
        assert_eq!(
            credentials.authorize(None, &[]),
            Err(AuthError::Unauthorized)
        );
        assert_eq!(Credentials::open().authorize(None, &[Role::Admin]), Ok(()));
    }

    #[test]
    fn a_secret_never_shows_in_debug_and_an_empty_one_is_unset() {
        let secret = Secret::new("s3cret");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(Secret(***))");
        assert_eq!(secret.expose(), "s3cret");
        assert_eq!(Secret::non_empty(Some(Secret::new(""))), None);
        assert_eq!(
            Secret::non_empty(Some(secret.clone())),
            Some(secret.clone())
        );
        let (mut empty, mut set, mut unset) = (Some(Secret::new("")), Some(secret.clone()), None);
        Secret::unset_empty([&mut empty, &mut set, &mut unset]);
        assert_eq!((empty, set, unset), (None, Some(secret), None));
        let loaded: Secret = serde_json::from_str(r#""s3cret""#).unwrap();
        assert_eq!(loaded.expose(), "s3cret");
    }

    #[test]
    fn empty_tokens_are_no_credential() {
        let empty = Secret::new("");
        assert!(
            !Credentials::from_tokens(Some(&empty), [(Role::Read, Some(&empty))]).is_required()
        );
        let credentials =
            Credentials::from_tokens(Some(&empty), [(Role::Read, Some(&Secret::new("r")))]);
        assert!(credentials.is_required());
        assert_eq!(
            credentials.authorize(Some(b"Bearer "), &[]),
            Err(AuthError::Unauthorized)
        );
        assert_eq!(
            credentials.authorize(Some(b"Bearer r"), &[Role::Read]),
            Ok(())
        );
    }

    #[test]
    fn a_role_token_opens_its_role_only() {
        let (w, a, empty) = (Secret::new("w"), Secret::new("a"), Secret::new(""));
        let credentials = Credentials::from_tokens(
            None,
            [
                (Role::Worker, Some(&w)),
                (Role::Agent, Some(&a)),
                (Role::Read, Some(&empty)),
            ],
        );
        assert_eq!(
            credentials.authorize(Some(b"Bearer w"), &[Role::Worker]),
            Ok(())
        );
        assert_eq!(
            credentials.authorize(Some(b"Bearer w"), &[Role::Agent]),
            Err(AuthError::Forbidden {
                granted: "worker".to_owned(),
                wanted: "agent".to_owned()
            })
        );
        assert_eq!(
            credentials.authorize(Some(b"Bearer a"), &[Role::Admin, Role::Read]),
            Err(AuthError::Forbidden {
                granted: "agent".to_owned(),
                wanted: "admin or read".to_owned()
            })
        );
        assert_eq!(
            credentials.authorize(Some(b"Bearer "), &[]),
            Err(AuthError::Unauthorized),
            "an empty token is no credential"
        );
    }
}
