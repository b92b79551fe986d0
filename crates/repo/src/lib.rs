//! cairn-repo: read and write restic repositories, byte-compatible with restic.

pub mod backend;
pub mod chunker;
pub mod crypto;
pub mod error;
pub mod exclude;
pub mod id;
pub mod index;
pub mod node;
pub mod pack;
pub mod parallel;
// pub mod repository; (enabled once chunker::Polynomial lands)

pub use error::{Error, Kind, Result};
pub use id::Id;
