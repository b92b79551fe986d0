//! cairn-repo: read and write restic repositories, byte-compatible with restic.

pub mod chunker;
pub mod exclude;
pub mod id;
pub mod node;

pub use id::Id;
