//! The typed operations both front ends call: the CLI commands print their results, the
//! web handlers serve them as JSON or pages. Nothing here prints or parses arguments.

pub mod archive;
pub mod browse;
pub mod config;
pub mod jobs;
pub mod repos;
pub mod restore;
pub mod rewrite;
pub mod status;
