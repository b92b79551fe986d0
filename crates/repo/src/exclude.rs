//! restic-compatible include/exclude patterns.
