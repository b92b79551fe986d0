//! `--exclude-if-present`, `--exclude-caches` and `--exclude-larger-than`.

use super::PatternError;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A problem with a tag file that restic reports as a warning; the directory
/// is then not excluded.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TagFileWarning {
    /// The tag file.
    pub path: PathBuf,
    /// restic's warning text.
    pub message: String,
}

/// `--exclude-if-present NAME[:HEADER]`: a directory is excluded if it
/// contains file NAME (whose content starts with HEADER, if given).
///
/// Note restic's exact semantics (see [`ExcludeIfPresent::excludes_path`]):
/// it excludes the *contents* of such a directory except the tag file itself;
/// the directory and its tag file are still backed up.
#[derive(Clone, Debug)]
pub struct ExcludeIfPresent {
    pub filename: String,
    /// `None` if no header was given (an empty header counts as none).
    pub header: Option<Vec<u8>>,
}

impl ExcludeIfPresent {
    /// The spec `--exclude-caches` adds (Cache Directory Tagging Standard).
    pub const CACHEDIR_TAG: &'static str =
        "CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55";

    /// Splits `NAME[:HEADER]` at the first `:`. Never fails; an empty NAME
    /// excludes nothing (use [`ExcludeIfPresent::try_parse`] to reject it
    /// like restic).
    pub fn parse(s: &str) -> ExcludeIfPresent {
        let (name, header) = match s.split_once(':') {
            Some((n, h)) => (n, h),
            None => (s, ""),
        };
        ExcludeIfPresent {
            filename: name.to_string(),
            header: (!header.is_empty()).then(|| header.as_bytes().to_vec()),
        }
    }

    /// Like [`ExcludeIfPresent::parse`], with restic's errors for an empty
    /// spec or an empty NAME.
    pub fn try_parse(s: &str) -> Result<ExcludeIfPresent, PatternError> {
        let reason = if s.is_empty() {
            "name for exclusion tagfile is empty"
        } else if s.starts_with(':') {
            "no name for exclusion tagfile provided"
        } else {
            return Ok(Self::parse(s));
        };
        Err(PatternError::ExcludeIfPresent {
            spec: s.to_string(),
            reason,
        })
    }

    /// `--exclude-caches`.
    pub fn cachedir_tag() -> ExcludeIfPresent {
        Self::parse(Self::CACHEDIR_TAG)
    }

    /// Whether `dir` contains the tag file (with the right header), silently
    /// treating problems as "no".
    pub fn excludes_dir(&self, dir: &Path) -> bool {
        self.check_dir(dir).unwrap_or(false)
    }

    /// restic's `isDirExcludedByFile`: `Ok(true)` if `dir` holds the tag file
    /// (any kind of entry, found with lstat) and, if a header is set, the file
    /// starts with it. `Err` is a warning restic would print (the directory is
    /// then not excluded).
    pub fn check_dir(&self, dir: &Path) -> Result<bool, TagFileWarning> {
        if self.filename.is_empty() {
            return Ok(false);
        }
        let tf = dir.join(&self.filename);
        let warn = |message: String| TagFileWarning {
            path: tf.clone(),
            message,
        };
        match std::fs::symlink_metadata(&tf) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(warn(format!("could not access exclusion tagfile: {e}"))),
        }
        let Some(header) = self.header.as_deref().filter(|h| !h.is_empty()) else {
            return Ok(true);
        };
        let mut f = std::fs::File::open(&tf)
            .map_err(|e| warn(format!("could not open exclusion tagfile: {e}")))?;
        let mut buf = vec![0u8; header.len()];
        let mut got = 0;
        while got < buf.len() {
            match f.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(warn(format!(
                        "could not read signature from exclusion tagfile {:?}: {e}",
                        tf.display().to_string()
                    )))
                }
            }
        }
        if got == 0 {
            return Err(warn(format!(
                "invalid (too short) signature in exclusion tagfile {:?}",
                tf.display().to_string()
            )));
        }
        if got < buf.len() {
            return Err(warn(format!(
                "could not read signature from exclusion tagfile {:?}: unexpected EOF",
                tf.display().to_string()
            )));
        }
        if buf != header {
            return Err(warn(format!(
                "invalid signature in exclusion tagfile {:?}",
                tf.display().to_string()
            )));
        }
        Ok(true)
    }

    /// restic's `isExcludedByFile` for a backup item: true if the item's
    /// parent directory is tagged ([`ExcludeIfPresent::excludes_dir`]) and
    /// the item is not the tag file itself. A walker that uses this keeps the
    /// tagged directory and its tag file, and drops everything else in it.
    pub fn excludes_path(&self, path: &Path) -> bool {
        if self.filename.is_empty() {
            return false;
        }
        if path.file_name() == Some(std::ffi::OsStr::new(&self.filename)) {
            return false;
        }
        let dir = path.parent().unwrap_or(path);
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        self.excludes_dir(dir)
    }
}

/// restic's `parseSizeStr` for `--exclude-larger-than` (and similar
/// options): a decimal number with an optional unit suffix `b`, `k`, `m`,
/// `g`, `t` (either case, powers of 1024). Unlike restic, negative values and
/// overflowing values are rejected instead of wrapping.
pub fn parse_size(s: &str) -> Result<u64, PatternError> {
    let err = |reason: &str| PatternError::InvalidSize {
        value: s.to_string(),
        reason: reason.to_string(),
    };
    let Some(&last) = s.as_bytes().last() else {
        return Err(err("expected size, got empty string"));
    };
    let unit: u64 = match last {
        b'b' | b'B' => 1,
        b'k' | b'K' => 1 << 10,
        b'm' | b'M' => 1 << 20,
        b'g' | b'G' => 1 << 30,
        b't' | b'T' => 1 << 40,
        _ => 0,
    };
    let num = if unit == 0 { s } else { &s[..s.len() - 1] };
    let value: i64 = num
        .parse()
        .map_err(|e: std::num::ParseIntError| err(&e.to_string()))?;
    let value = u64::try_from(value).map_err(|_| err("size must not be negative"))?;
    value
        .checked_mul(unit.max(1))
        .ok_or_else(|| err("size is too large"))
}

/// restic's `rejectBySize`: whether a non-directory of `size` bytes is
/// excluded by `--exclude-larger-than max` (directories never are).
pub fn exceeds_size(size: u64, is_dir: bool, max: u64) -> bool {
    !is_dir && size > max
}
