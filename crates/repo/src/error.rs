//! Errors of the engine.
//!
//! Policy: every error says what happened and, where the user can act, what to do.
//! Each error has a [`Kind`] that the CLI maps to an exit code (and later the web UI to an
//! HTTP status). Nothing that comes from disk, network or the user may panic: a malformed
//! file is `Kind::Corrupt` naming the file; a failed system call is `Kind::Io` (or
//! `Kind::DiskFull` for ENOSPC/EDQUOT) naming the path or object it was about.

use std::fmt;

/// The category of an error, stable across versions: it decides exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A file or object the operation needs does not exist (repository, snapshot, path).
    NotFound,
    /// No key file of the repository opens with the given password.
    WrongPassword,
    /// Stored bytes do not verify (MAC, hash, or format).
    Corrupt,
    /// The target storage is full.
    DiskFull,
    /// Any other input/output failure.
    Io,
    /// The user asked for something invalid (bad pattern, bad snapshot id, bad option).
    Invalid,
    /// The repository uses a feature this version does not support.
    Unsupported,
    /// A lock held by someone else stops the operation.
    Locked,
    /// A remote server could not be reached or kept failing (after retries).
    Network,
    /// A remote server refused our credentials or permissions.
    Auth,
}

/// An engine error: a kind and a message written for a person.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    message: String,
    source: Option<std::io::Error>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn corrupt(message: impl Into<String>) -> Error {
        Error::new(Kind::Corrupt, message)
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(Kind::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(Kind::NotFound, message)
    }

    /// Wraps an I/O error with what we were doing (`what` names the path or object).
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Error {
        let kind = match err.raw_os_error() {
            Some(code) if code == nix::libc::ENOSPC || code == nix::libc::EDQUOT => Kind::DiskFull,
            _ if err.kind() == std::io::ErrorKind::NotFound => Kind::NotFound,
            _ => Kind::Io,
        };
        let hint = if kind == Kind::DiskFull {
            " (the disk is full: free space on the repository's storage, then run the command again; nothing written so far is referenced)"
        } else {
            ""
        };
        Error {
            kind,
            message: format!("{what}: {err}{hint}"),
            source: Some(err),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Prefixes the message with context, keeping the kind.
    pub fn context(mut self, what: impl fmt::Display) -> Error {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
