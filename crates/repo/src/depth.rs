//! How deep a snapshot's trees may nest for the code that rebuilds them.
//!
//! A hostile or damaged repository can hold a snapshot nested arbitrarily deep. Read-only
//! walks (`browse::walk`, `diff`, `check`, `prune`, restore, `dump`) are iterative and
//! take any depth. The bottom-up rebuilders (`copy`, `rewrite`, `repair snapshots`) are
//! clearer as recursions: a directory's new id needs its children's new ids first. They
//! stay recursive, bounded two ways: a depth cap ([`MAX_TREE_DEPTH`], far beyond any real
//! file system: a path that deep is at least 128 KiB long) that ends the walk with a
//! clean error, and [`with_deep_stack`], which runs the recursion on a thread whose stack
//! is big enough for that cap. The stack is reserved address space: only the pages a walk
//! actually touches cost memory, so a shallow snapshot costs what it did on the caller's
//! stack.

use crate::error::{Error, Kind, Result};

/// The deepest directory nesting (levels below a snapshot's root) the rebuilders accept.
pub const MAX_TREE_DEPTH: usize = 65_536;

/// Stack reserved per level: a rebuilder's frame is well under 1 KiB with the workspace's
/// dev and release profiles; the rest is margin for unoptimised builds.
const STACK_PER_LEVEL: usize = 8 * 1024;

/// The error for a tree at `depth` levels below the root, if that is past the cap.
pub fn check(depth: usize) -> Result<()> {
    if depth > MAX_TREE_DEPTH {
        return Err(Error::corrupt(format!(
            "tree nested deeper than {MAX_TREE_DEPTH} levels: damaged or hostile snapshot"
        )));
    }
    Ok(())
}

/// Runs `f` (a recursion over trees that calls [`check`] per level) on a thread with a
/// stack big enough for [`MAX_TREE_DEPTH`] levels, and waits for it.
pub fn with_deep_stack<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("cairn-tree-walk".into())
            .stack_size(MAX_TREE_DEPTH * STACK_PER_LEVEL)
            .spawn_scoped(scope, f)
            .map_err(|e| {
                Error::new(
                    Kind::Io,
                    format!("cannot start a thread to walk the snapshot's trees: {e} (raise the process's virtual memory limit)"),
                )
            })?;
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nest(depth: usize) -> Result<usize> {
        check(depth)?;
        // A frame with some weight, like a rebuilder's.
        let local = [depth as u8; 256];
        let below = nest(depth + 1)?;
        Ok(below + usize::from(std::hint::black_box(local)[0] == 0))
    }

    #[test]
    fn recursion_past_the_cap_is_a_clean_error_not_a_stack_overflow() {
        let err = with_deep_stack(|| nest(0)).unwrap_err();
        assert_eq!(err.kind(), Kind::Corrupt);
        assert!(
            err.to_string().contains("deeper than 65536 levels"),
            "{err}"
        );
    }
}
