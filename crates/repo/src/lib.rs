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
pub mod repository;

pub use error::{Error, Kind, Result};
pub use id::Id;
pub mod backup;
pub mod check;
pub mod gotime;
pub mod lock;
pub mod restore;
pub mod snapshot;
pub mod writer;
