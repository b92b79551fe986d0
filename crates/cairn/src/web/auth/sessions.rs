//! Sessions: the in-memory table of logged-in browsers, their cookies and idle timeout.

use super::*;

pub(super) struct Session {
    user: String,
    role: Role,
    csrf: String,
    last_seen: Instant,
}

impl Auth {
    /// Starts a session; returns its id and the caller.
    pub fn start_session(&self, user: &str, role: Role) -> (String, Caller) {
        let id = random_token();
        let csrf = random_token();
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= MAX_SESSIONS {
            let timeout = self.session_timeout;
            sessions.retain(|_, s| now.duration_since(s.last_seen) < timeout);
        }
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                user: user.to_string(),
                role,
                csrf: csrf.clone(),
                last_seen: now,
            },
        );
        (
            id,
            Caller {
                user: user.to_string(),
                role,
                csrf,
            },
        )
    }

    /// The caller of session `id`, if it exists and has not been idle too long (the idle
    /// clock restarts).
    pub(super) fn session(&self, id: &str) -> Option<Caller> {
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        let s = sessions.get_mut(id)?;
        if now.duration_since(s.last_seen) >= self.session_timeout {
            sessions.remove(id);
            return None;
        }
        s.last_seen = now;
        Some(Caller {
            user: s.user.clone(),
            role: s.role,
            csrf: s.csrf.clone(),
        })
    }

    /// Ends session `id` (no-op when there is none).
    pub fn end_session(&self, id: &str) {
        lock(&self.sessions).remove(id);
    }

    /// The `Set-Cookie` value of session `id`.
    pub(super) fn cookie(&self, id: &str) -> String {
        format!(
            "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/{}",
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub(super) fn cookie_removal(&self) -> String {
        format!(
            "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
            if self.secure { "; Secure" } else { "" }
        )
    }
}

/// The session id of the request's cookie, if any.
pub(super) fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == SESSION_COOKIE && !v.is_empty()).then(|| v.to_string())
        })
}
