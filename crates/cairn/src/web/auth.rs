//! Who is calling: sessions (cookie), bearer tokens, a trusted proxy's user header; the
//! access check every route passes ([`guard`]); login, logout, rate limiting of failed
//! logins, password hashing (`cairn web hash-password`).
//!
//! Rules this module keeps:
//! - Password hashes are argon2id PHC strings read from each user's `password-hash-file`
//!   at every login (a changed file needs no restart), verified on a blocking thread.
//!   An unknown user is verified against a dummy hash, so both failures look and take
//!   the same.
//! - Sessions live in memory only: a 256-bit random id in an HttpOnly, SameSite=Strict
//!   cookie (Secure under TLS), an idle timeout, at most [`MAX_SESSIONS`].
//! - Every state-changing request (not GET/HEAD/OPTIONS) of a session or proxy-header
//!   caller carries the caller's CSRF token (`X-CSRF-Token` header, or a `csrf` field of
//!   a url-encoded form); bearer-token callers need none (a browser never sends one).
//! - Nothing secret is logged; comparisons of secrets take constant time.

use super::layout;
use super::routes::{Access, Route};
use super::AppState;
use crate::config::{Role, Web, WebUser};
use anyhow::{Context, Result};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

mod guard;
mod limits;
mod login;
mod proxy;
mod sessions;
mod tokens;

pub use guard::*;
use limits::*;
pub use login::*;
use proxy::*;
use sessions::*;
use tokens::*;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "cairn_session";
/// Sessions kept at once; the least recently used goes when a login needs room.
pub const MAX_SESSIONS: usize = 10_000;
/// Failed logins allowed per client address and per user name within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: usize = 5;
/// The window of [`MAX_FAILURES`].
pub const FAILURE_WINDOW: Duration = Duration::from_secs(5 * 60);
/// The largest url-encoded form body the access check reads to find the CSRF field.
pub const MAX_FORM_BYTES: usize = 64 << 10;

/// The caller of a request that passed the access check (in the request's extensions;
/// on public routes only when the request came with a valid session, token or header).
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: String,
    pub role: Role,
    /// The CSRF token state-changing requests must carry (empty for bearer tokens).
    pub csrf: String,
}

impl Caller {
    /// The page header's view of this caller.
    pub fn viewer(&self) -> layout::Viewer<'_> {
        layout::Viewer {
            user: &self.user,
            admin: self.role == Role::Admin,
            csrf: &self.csrf,
        }
    }
}

/// Users, sessions, tokens, login attempts.
pub struct Auth {
    users: BTreeMap<String, WebUser>,
    session_timeout: Duration,
    /// Cookies get `Secure` (the server speaks TLS).
    secure: bool,
    trusted_proxies: Vec<IpAddr>,
    proxy_header: HeaderName,
    tokens_file: Option<PathBuf>,
    tokens: Mutex<Tokens>,
    sessions: Mutex<HashMap<String, Session>>,
    /// The CSRF token of each user authenticated by a proxy's header.
    proxy_csrf: Mutex<HashMap<String, String>>,
    limiter: Mutex<Limiter>,
    /// A hash of a random password, verified for unknown users (same time as a real one).
    dummy_hash: String,
}

/// A fresh 256-bit random value, hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    pub fn new(web: &Web) -> Result<Auth> {
        let proxy_header =
            HeaderName::from_bytes(web.proxy_user_header.as_bytes()).with_context(|| {
                format!(
                    "settings.web.proxy-user-header {:?} is not an HTTP header name",
                    web.proxy_user_header
                )
            })?;
        Ok(Auth {
            users: web.users.clone(),
            session_timeout: web.session_timeout,
            secure: web.tls.is_some(),
            trusted_proxies: web.trusted_proxies.clone(),
            proxy_header,
            tokens_file: web.tokens_file.clone(),
            tokens: Mutex::new(Tokens::default()),
            sessions: Mutex::new(HashMap::new()),
            proxy_csrf: Mutex::new(HashMap::new()),
            limiter: Mutex::new(Limiter::default()),
            dummy_hash: hash_password(random_token().as_bytes())?,
        })
    }
}

/// A poisoned lock only means a thread panicked while holding it; the maps stay usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_its_password_only() {
        let h = hash_password(b"hunter2").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password(&h, b"hunter2").unwrap());
        assert!(!verify_password(&h, b"hunter3").unwrap());
        assert!(verify_password("not a hash", b"x").is_err());
    }

    #[test]
    fn next_is_only_a_local_path() {
        assert_eq!(local_next(Some("/snapshots?x=1")), "/snapshots?x=1");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "evil",
            "",
        ] {
            assert_eq!(local_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_next(None), "/");
    }

    #[test]
    fn form_fields_decode() {
        let body = b"a=1&csrf=ab%2Fc+d&next=%2Fx";
        assert_eq!(form_field(body, "csrf").as_deref(), Some("ab/c d"));
        assert_eq!(form_field(body, "next").as_deref(), Some("/x"));
        assert_eq!(form_field(body, "nope"), None);
        assert_eq!(form_field(b"x=%zz%4", "x").as_deref(), Some("%zz%4"));
    }

    fn auth(session_timeout: Duration) -> Auth {
        Auth::new(&Web {
            listen: "127.0.0.1:0".into(),
            users: BTreeMap::new(),
            tls: None,
            trusted_proxies: Vec::new(),
            proxy_user_header: "Remote-User".into(),
            tokens_file: None,
            session_timeout,
            peers: Vec::new(),
        })
        .unwrap()
    }

    #[test]
    fn sessions_end_when_idle_and_the_least_recent_goes_when_full() {
        let a = auth(Duration::from_millis(300));
        let (id, caller) = a.start_session("u", Role::Viewer);
        assert_eq!(id.len(), 64);
        assert_eq!(caller.csrf.len(), 64);
        assert_ne!(id, caller.csrf);
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(150));
            assert!(a.session(&id).is_some(), "use keeps a session alive");
        }
        std::thread::sleep(Duration::from_millis(350));
        assert!(a.session(&id).is_none(), "idle too long");
        assert!(a.session("not a session").is_none());

        let a = auth(Duration::from_secs(3600));
        let (first, _) = a.start_session("first", Role::Admin);
        let (second, _) = a.start_session("second", Role::Admin);
        assert!(a.session(&first).is_some(), "first is now the more recent");
        for _ in 2..MAX_SESSIONS {
            a.start_session("x", Role::Viewer);
        }
        assert_eq!(lock(&a.sessions).len(), MAX_SESSIONS);
        let (last, _) = a.start_session("last", Role::Viewer);
        assert_eq!(lock(&a.sessions).len(), MAX_SESSIONS);
        assert!(a.session(&last).is_some());
        assert!(a.session(&first).is_some());
        assert!(a.session(&second).is_none(), "the least recently used went");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; cairn_session=xyz; c=d"),
        );
        assert_eq!(session_id(&h).as_deref(), Some("xyz"));
    }
}
