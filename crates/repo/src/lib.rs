//! cairn-repo: read and write restic repositories, byte-compatible with restic.
//!
//! Layers, bottom up: `crypto`, `id` -> `backend` (where files live) -> `repository`
//! (keys, config, encrypted files), `pack`, `index`, `writer` -> `node`/`snapshot`,
//! `chunker`, `exclude` -> operations: `backup`, `restore`, `check`, `lock`, `prune`.

pub mod backend;
pub mod backup;
pub mod browse;
pub mod check;
pub mod chunker;
pub mod copy;
pub mod crypto;
pub mod depth;
pub mod dump;
pub mod error;
pub mod exclude;
pub mod forget;
pub mod goquote;
pub mod gotime;
pub mod id;
pub mod index;
pub mod kdf;
pub mod lock;
pub mod node;
pub mod pack;
pub mod parallel;
pub mod prune;
pub mod repair;
pub mod repository;
pub mod restore;
pub mod rewrite;
pub mod sha256;
pub mod snapshot;
pub mod writer;

pub use error::{Error, Kind, Result};
pub use id::Id;
