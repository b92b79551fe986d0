//! Rate limiting of failed logins, per client address and per user name.

use super::*;

/// Distinct addresses and names whose failures are remembered at once.
pub(super) const MAX_LIMITER_KEYS: usize = 100_000;
/// Longest user name (bytes) whose failures are remembered: a longer one names no user
/// and is refused as a bad login without being stored (a flood of huge names would
/// otherwise fill the limiter with them).
pub(super) const MAX_LIMITED_NAME: usize = 256;

/// Failed logins per key (`ip …`, `user …`): the instants within the window.
#[derive(Default)]
pub(super) struct Limiter {
    failures: HashMap<String, VecDeque<Instant>>,
}

impl Limiter {
    /// Admits a login attempt of `user` from `ip_key` unless either is blocked, counting
    /// it as a failure of both until the password proves right (counted before checking,
    /// so parallel guesses cannot slip past the limit). Returns the user's key. A name
    /// longer than [`MAX_LIMITED_NAME`] counts against the address only and is refused.
    pub(super) fn admit(
        &mut self,
        ip_key: &str,
        user: &str,
        now: Instant,
    ) -> Result<String, LoginError> {
        let user_key = (user.len() <= MAX_LIMITED_NAME).then(|| format!("user {user}"));
        let wait = [Some(ip_key), user_key.as_deref()]
            .into_iter()
            .flatten()
            .filter_map(|k| self.blocked(k, now))
            .max();
        if let Some(wait) = wait {
            return Err(LoginError::Limited(wait));
        }
        self.record(ip_key, now);
        let Some(user_key) = user_key else {
            return Err(LoginError::Wrong);
        };
        self.record(&user_key, now);
        Ok(user_key)
    }

    fn prune(&mut self, key: &str, now: Instant) {
        if let Some(q) = self.failures.get_mut(key) {
            while q
                .front()
                .is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW)
            {
                q.pop_front();
            }
            if q.is_empty() {
                self.failures.remove(key);
            }
        }
    }

    /// How long until `key` may try again, if it is blocked now.
    fn blocked(&mut self, key: &str, now: Instant) -> Option<Duration> {
        self.prune(key, now);
        let q = self.failures.get(key)?;
        if q.len() < MAX_FAILURES {
            return None;
        }
        let oldest = q.front()?;
        Some(FAILURE_WINDOW.saturating_sub(now.duration_since(*oldest)))
    }

    fn record(&mut self, key: &str, now: Instant) {
        if self.failures.len() >= MAX_LIMITER_KEYS && !self.failures.contains_key(key) {
            self.failures.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.duration_since(*t) < FAILURE_WINDOW)
            });
            if self.failures.len() >= MAX_LIMITER_KEYS {
                // Flooded by distinct keys: forget the oldest half rather than grow.
                let mut ages: Vec<Instant> = self
                    .failures
                    .values()
                    .filter_map(|q| q.back().copied())
                    .collect();
                ages.sort();
                let cut = ages[ages.len() / 2];
                self.failures
                    .retain(|_, q| q.back().is_some_and(|t| *t > cut));
            }
        }
        let q = self.failures.entry(key.to_string()).or_default();
        q.push_back(now);
        while q.len() > MAX_FAILURES {
            q.pop_front();
        }
    }

    /// Takes back the most recent attempt recorded for `key`.
    fn forgive_last(&mut self, key: &str) {
        if let Some(q) = self.failures.get_mut(key) {
            q.pop_back();
            if q.is_empty() {
                self.failures.remove(key);
            }
        }
    }

    fn reset(&mut self, key: &str) {
        self.failures.remove(key);
    }
}

/// Why a login failed.
pub(super) enum LoginError {
    Wrong,
    Limited(Duration),
    Internal,
}

/// Checks a login attempt under the rate limits; starts a session on success.
pub(super) async fn login(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    user: &str,
    password: &str,
) -> Result<(String, Caller), LoginError> {
    let ip_key = format!("ip {}", client_ip(&state.auth, headers, peer));
    let user_key = lock(&state.auth.limiter).admit(&ip_key, user, Instant::now())?;
    let st = state.clone();
    let (u, p) = (user.to_string(), password.to_string());
    let role = tokio::task::spawn_blocking(move || st.auth.check_password(&u, &p))
        .await
        .map_err(|_| LoginError::Internal)?;
    let Some(role) = role else {
        return Err(LoginError::Wrong);
    };
    {
        let mut limiter = lock(&state.auth.limiter);
        limiter.reset(&user_key);
        limiter.forgive_last(&ip_key);
    }
    Ok(state.auth.start_session(user, role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_blocks_after_the_limit_and_resets() {
        let mut l = Limiter::default();
        let t = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(l.blocked("user a", t).is_none());
            l.record("user a", t);
        }
        let wait = l.blocked("user a", t).expect("blocked");
        assert!(wait <= FAILURE_WINDOW && wait > FAILURE_WINDOW - Duration::from_secs(1));
        assert!(l.blocked("user a", t + FAILURE_WINDOW).is_none());
        l.record("user b", t);
        l.reset("user b");
        assert!(!l.failures.contains_key("user b"));
    }

    #[test]
    fn an_overlong_user_name_is_refused_without_being_stored() {
        let mut l = Limiter::default();
        let t = Instant::now();
        let long = "x".repeat(MAX_LIMITED_NAME + 1);
        assert!(matches!(l.admit("ip 1", &long, t), Err(LoginError::Wrong)));
        assert_eq!(l.failures.len(), 1, "only the address is counted");
        assert_eq!(l.failures["ip 1"].len(), 1);
        // A name at the cap is still limited by name.
        let at_cap = "y".repeat(MAX_LIMITED_NAME);
        let key = l.admit("ip 2", &at_cap, t).ok().expect("admitted");
        assert_eq!(key, format!("user {at_cap}"));
        assert!(l.failures.contains_key(&key));
        // Overlong names still use up the address's allowance.
        for _ in 1..MAX_FAILURES {
            let _ = l.admit("ip 1", &long, t);
        }
        assert!(matches!(
            l.admit("ip 1", "u", t),
            Err(LoginError::Limited(_))
        ));
    }
}
