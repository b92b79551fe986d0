//! Retries with exponential backoff and jitter, for remote backends.
//!
//! Only transient failures are retried: `Kind::Network` (unreachable, reset, timed out,
//! HTTP 408/429/5xx). Everything else (not found, refused credentials, corrupt data) is
//! returned at once. The whole operation is bounded by `max_time`, so a dead server gives
//! an error in bounded time instead of a hang.

use crate::error::{Error, Kind, Result};
use rand::Rng;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Retry {
    /// Total time an operation may spend retrying before it fails.
    pub max_time: Duration,
    /// Wait after the first failure; doubled after each further one.
    pub first_wait: Duration,
    /// Upper bound of a single wait.
    pub max_wait: Duration,
}

impl Default for Retry {
    /// Five minutes of retries: a rebooting NAS or a flapping link survives, a dead server
    /// fails the run well before the next night's.
    fn default() -> Retry {
        Retry {
            max_time: Duration::from_secs(300),
            first_wait: Duration::from_millis(500),
            max_wait: Duration::from_secs(30),
        }
    }
}

impl Retry {
    /// Runs `op` until it succeeds, fails permanently, or the time budget is spent.
    /// `what` names the operation in warnings and in the final error.
    pub fn run<T>(
        &self,
        what: &dyn Fn() -> String,
        mut op: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        let start = Instant::now();
        let mut wait = self.first_wait;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match op() {
                Ok(v) => return Ok(v),
                Err(e) if e.kind() == Kind::Network => {
                    let sleep = jitter(wait);
                    if start.elapsed() + sleep > self.max_time {
                        return Err(Error::new(
                            Kind::Network,
                            format!(
                                "{e} (gave up after {attempts} attempts in {}s; check that the server is up and reachable, then run the command again)",
                                start.elapsed().as_secs()
                            ),
                        ));
                    }
                    eprintln!(
                        "warning: {e}; retrying {} in {:.1}s",
                        what(),
                        sleep.as_secs_f64()
                    );
                    std::thread::sleep(sleep);
                    wait = (wait * 2).min(self.max_wait);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A wait between 50% and 150% of `d`, so many clients do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn quick(max_ms: u64) -> Retry {
        Retry {
            max_time: Duration::from_millis(max_ms),
            first_wait: Duration::from_millis(5),
            max_wait: Duration::from_millis(20),
        }
    }

    #[test]
    fn transient_errors_are_retried_until_success() {
        let n = Cell::new(0);
        let v = quick(5_000)
            .run(&|| "op".into(), || {
                n.set(n.get() + 1);
                if n.get() < 4 {
                    Err(Error::new(Kind::Network, "reset"))
                } else {
                    Ok(7)
                }
            })
            .unwrap();
        assert_eq!((v, n.get()), (7, 4));
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        let n = Cell::new(0);
        let e = quick(5_000)
            .run(&|| "op".into(), || -> Result<()> {
                n.set(n.get() + 1);
                Err(Error::new(Kind::Auth, "denied"))
            })
            .unwrap_err();
        assert_eq!((e.kind(), n.get()), (Kind::Auth, 1));
    }

    #[test]
    fn retrying_is_bounded_in_time() {
        let start = Instant::now();
        let e = quick(200)
            .run(&|| "upload x".into(), || -> Result<()> {
                Err(Error::new(Kind::Network, "refused"))
            })
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_millis(400));
        assert_eq!(e.kind(), Kind::Network);
        assert!(e.to_string().starts_with("refused (gave up after"), "{e}");
    }
}
