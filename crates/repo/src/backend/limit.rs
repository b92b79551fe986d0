//! Upload and download rate limits (`--limit-upload`, `--limit-download`, in KiB/s like
//! restic), shared by every connection of a backend.
//!
//! A token bucket that may go into debt: a caller takes the bytes it is about to move and
//! sleeps off any debt, so the long-run rate is exact however many threads share it, and
//! bursts are bounded by one second's worth of tokens.

use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Bucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    /// A limit of `kib_per_sec` KiB/s.
    pub fn new(kib_per_sec: u64) -> Bucket {
        // In f64: `--limit-upload 18446744073709551615` is a huge rate, not an overflow.
        let rate = kib_per_sec.max(1) as f64 * 1024.0;
        Bucket {
            rate,
            state: Mutex::new((0.0, Instant::now())),
        }
    }

    /// Accounts for `n` bytes, sleeping as long as the limit requires.
    pub fn take(&self, n: usize) {
        let wait = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let (tokens, last) = *st;
            let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate)
                .min(self.rate)
                - n as f64;
            *st = (tokens, now);
            if tokens < 0.0 {
                Duration::from_secs_f64(-tokens / self.rate)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// Both directions' limits; `None` means unlimited.
#[derive(Default)]
pub struct Limits {
    pub upload: Option<Bucket>,
    pub download: Option<Bucket>,
}

impl Limits {
    pub fn new(upload_kib: Option<u64>, download_kib: Option<u64>) -> Limits {
        Limits {
            upload: upload_kib.filter(|&k| k > 0).map(Bucket::new),
            download: download_kib.filter(|&k| k > 0).map(Bucket::new),
        }
    }

    pub fn up(&self, n: usize) {
        if let Some(b) = &self.upload {
            b.take(n);
        }
    }

    pub fn down(&self, n: usize) {
        if let Some(b) = &self.download {
            b.take(n);
        }
    }
}

/// A reader that charges every read to a bucket (upload bodies, download bodies).
pub struct Throttled<'a, R> {
    pub inner: R,
    pub bucket: Option<&'a Bucket>,
}

impl<R: Read> Read for Throttled<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Small slices keep the rate smooth instead of one 16 MiB burst per pack.
        let max = if self.bucket.is_some() {
            buf.len().min(64 * 1024)
        } else {
            buf.len()
        };
        let n = self.inner.read(&mut buf[..max])?;
        if let Some(b) = self.bucket {
            b.take(n);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_limits_are_no_limit_rather_than_an_overflow() {
        let start = Instant::now();
        for kib in [u64::MAX, u64::MAX / 1024 + 1] {
            Bucket::new(kib).take(1 << 20);
        }
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn bucket_holds_the_rate_across_threads() {
        let b = Bucket::new(1024); // 1 MiB/s
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..4 {
                        b.take(64 * 1024);
                    }
                });
            }
        });
        // 1 MiB moved, minus the one-second burst allowance the bucket starts without.
        let t = start.elapsed().as_secs_f64();
        assert!((0.9..1.6).contains(&t), "took {t}s for 1 MiB at 1 MiB/s");
    }
}
