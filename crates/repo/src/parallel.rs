//! Small helpers to run work on several threads without an async runtime.

use crate::error::Result;
use std::sync::Mutex;

/// Applies `f` to every item on up to `threads` threads; results keep the input order.
/// Stops handing out work after the first error and returns it.
pub fn map<T: Send, R: Send>(
    items: Vec<T>,
    threads: usize,
    f: impl Fn(T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let n = items.len();
    let queue = Mutex::new(items.into_iter().enumerate());
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..n).map(|_| None).collect());
    let error = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1).min(n.max(1)) {
            s.spawn(|| loop {
                if error.lock().map(|e| e.is_some()).unwrap_or(true) {
                    return;
                }
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some((i, item)) = next else { return };
                match f(item) {
                    Ok(r) => {
                        if let Ok(mut res) = results.lock() {
                            res[i] = Some(r);
                        }
                    }
                    Err(e) => {
                        if let Ok(mut slot) = error.lock() {
                            slot.get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = error.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect())
}

/// Calls `f` on every item of `items` on up to `threads` threads, handing out batches
/// of `batch` consecutive items (per-item work like creating a file is too small to
/// hand out one by one).
pub fn for_each<T: Sync>(items: &[T], threads: usize, batch: usize, f: impl Fn(&T) + Sync) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let batch = batch.max(1);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1).min(items.len().div_ceil(batch).max(1)) {
            s.spawn(|| loop {
                let start = next.fetch_add(batch, std::sync::atomic::Ordering::Relaxed);
                if start >= items.len() {
                    return;
                }
                for item in &items[start..(start + batch).min(items.len())] {
                    f(item);
                }
            });
        }
    });
}
