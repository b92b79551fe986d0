//! Checks of a restored tree: a restored file against the live file it came from (byte
//! for byte when the live file did not change since the snapshot), SQLite's own
//! integrity check on a restored database, and removing a restored tree.
//!
//! Also what a restore test's mode checks of the restored tree: sample mode's files
//! against the live ones ([`compare_sample`]), full mode's completeness
//! ([`full_present`]).
//!
//! Nothing here writes to a live file or a live database: live files are opened for
//! reading only, restored databases are opened read-only.

use super::listing::{Kind, Node};
use super::proof::{names, Proof};
use super::{stopping, Failure};
use crate::history::Category;
use crate::run::Log;
use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// How a restored file compares with the live file at its recorded path.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Live {
    /// The live file did not change since the snapshot, and every byte is the same: this
    /// many bytes compared.
    Identical(u64),
    /// The live file changed since the snapshot (size, mtime or type), is gone, or could
    /// not be read: only the restored size was checked against the snapshot's.
    Changed,
    /// The live file did not change since the snapshot, yet its bytes differ from the
    /// restored ones, from this offset on.
    Differs(u64),
}

/// (size, mtime, mtime ns, ctime, ctime ns) of a regular file; the ctime notices a
/// write that kept the mtime while the bytes were being compared.
fn live_state(live: &Path) -> Option<(u64, i64, i64, i64, i64)> {
    let m = std::fs::symlink_metadata(live).ok()?;
    m.is_file().then(|| {
        (
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        )
    })
}

/// Compares the restored `restored` with the live file `live` that `node` recorded.
/// The restored file must have the snapshot's size (else an error naming it); a live
/// file with the snapshot's size and mtime is compared byte for byte, streamed.
pub(super) fn against_live(restored: &Path, live: &Path, node: &Node) -> Result<Live> {
    let m = std::fs::symlink_metadata(restored)
        .with_context(|| format!("{} was not restored", node.path))?;
    anyhow::ensure!(
        m.is_file() && m.len() == node.size,
        "{} came back with {} bytes, the snapshot recorded {}",
        node.path,
        m.len(),
        node.size
    );
    let Some(before) = live_state(live) else {
        return Ok(Live::Changed);
    };
    let unchanged = before.0 == node.size
        && node
            .mtime
            .is_some_and(|(s, ns)| (s, i64::from(ns)) == (before.1, before.2));
    if !unchanged {
        return Ok(Live::Changed);
    }
    let mut live_file = match std::fs::File::open(live) {
        Ok(f) => f,
        Err(_) => return Ok(Live::Changed),
    };
    let mut restored_file = std::fs::File::open(restored)
        .with_context(|| format!("cannot read the restored copy of {}", node.path))?;
    let differs = match first_difference(&mut restored_file, &mut live_file) {
        Ok(d) => d,
        // Which side failed: the restored copy must read; the live file may be going.
        Err(Side::Live) => return Ok(Live::Changed),
        Err(Side::Restored(e)) => {
            return Err(e).with_context(|| format!("reading the restored copy of {}", node.path))
        }
    };
    // Written to meanwhile (a service keeps it open): not a verdict on the backup.
    if live_state(live) != Some(before) {
        return Ok(Live::Changed);
    }
    Ok(match differs {
        None => Live::Identical(node.size),
        Some(at) => Live::Differs(at),
    })
}

/// Which file an I/O error came from (the live file's own error is not reported: a
/// live file that cannot be read counts as changed).
enum Side {
    Restored(std::io::Error),
    Live,
}

/// Reads `buf.len()` bytes, fewer only at the end of the file.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The offset of the first byte where `a` and `b` differ (a shorter one differs where it
/// ends), or `None` when they are the same; 64 KiB of each in memory at a time.
fn first_difference(a: &mut impl Read, b: &mut impl Read) -> Result<Option<u64>, Side> {
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    loop {
        let na = fill(a, &mut ba).map_err(Side::Restored)?;
        let nb = fill(b, &mut bb).map_err(|_| Side::Live)?;
        if let Some(i) = ba[..na.min(nb)]
            .iter()
            .zip(&bb[..na.min(nb)])
            .position(|(x, y)| x != y)
        {
            return Ok(Some(offset + i as u64));
        }
        if na != nb {
            return Ok(Some(offset + na.min(nb) as u64));
        }
        if na == 0 {
            return Ok(None);
        }
        offset += na as u64;
    }
}

/// SQLite's `PRAGMA integrity_check` on the restored database `db`, opened read-only:
/// `Ok` when it answers "ok", else an error with what it found (first lines).
pub(super) fn sqlite_intact(db: &Path) -> Result<()> {
    let c = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the restored SQLite database {}", db.display()))?;
    let mut stmt = c
        .prepare("PRAGMA integrity_check")
        .with_context(|| format!("{} is not a readable SQLite database", db.display()))?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .with_context(|| format!("integrity check of {} failed to run", db.display()))?;
    anyhow::ensure!(
        rows.len() == 1 && rows[0] == "ok",
        "SQLite's integrity check of {} found: {}",
        db.display(),
        rows.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
    );
    Ok(())
}

/// Removes the restored tree `dir` (nothing when it does not exist). Restored
/// directories keep their recorded modes (0500, 0000...): when the first attempt fails,
/// every directory is made writable by its owner and it is tried again.
pub(super) fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Ok(()) => return Ok(()),
        Err(_) => {}
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&d) else {
            continue;
        };
        if !m.is_dir() {
            continue;
        }
        let _ = std::fs::set_permissions(
            &d,
            std::fs::Permissions::from_mode((m.mode() & 0o7777) | 0o700),
        );
        if let Ok(rd) = std::fs::read_dir(&d) {
            stack.extend(rd.flatten().map(|e| e.path()));
        }
    }
    std::fs::remove_dir_all(dir)
}

/// Sample mode: each sampled file against its live version.
pub(super) fn compare_sample(
    stop: &AtomicBool,
    sample: &[&Node],
    at: &dyn Fn(&Node) -> PathBuf,
    proof: &mut Proof,
    log: &mut Log,
) -> Result<(), Failure> {
    let mut bad = Vec::new();
    for n in sample {
        stopping(stop)?;
        match against_live(&at(n), Path::new(&n.path), n) {
            Ok(Live::Identical(bytes)) => {
                proof.identical += 1;
                proof.compared_bytes += bytes;
            }
            Ok(Live::Changed) => proof.changed_since += 1,
            Ok(Live::Differs(offset)) => {
                log.line(format!(
                    "restore test: {} differs from the live file from byte {offset} on, though the live file kept the snapshot's size and mtime",
                    n.path
                ));
                bad.push(n.path.clone());
            }
            Err(e) => {
                log.line(format!("restore test: {e:#}"));
                bad.push(n.path.clone());
            }
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    Err((
        Category::CorruptData,
        format!(
            "restore test: {} file(s) did not come back as they were backed up: {} (the restored bytes differ from the unchanged live file, or the size from the snapshot's)",
            bad.len(),
            names(&bad)
        ),
    ))
}

/// Full mode: every file, directory and symlink the snapshot lists is in the restored
/// tree, files with their recorded size.
pub(super) fn full_present(nodes: &[Node], at: &dyn Fn(&Node) -> PathBuf) -> Result<(), Failure> {
    let mut bad = Vec::new();
    for n in nodes {
        let m = std::fs::symlink_metadata(at(n));
        let fine = match (n.kind, &m) {
            (_, Err(_)) => n.kind == Kind::Other,
            (Kind::File, Ok(m)) => m.is_file() && m.size() == n.size,
            (Kind::Dir, Ok(m)) => m.is_dir(),
            (Kind::Symlink, Ok(m)) => m.file_type().is_symlink(),
            (Kind::Other, Ok(_)) => true,
        };
        if !fine {
            bad.push(n.path.clone());
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    Err((
        Category::CorruptData,
        format!(
            "restore test: {} item(s) of the snapshot are missing from the restored tree or have the wrong size: {}",
            bad.len(),
            names(&bad)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(path: &Path) -> Node {
        let m = std::fs::metadata(path).unwrap();
        Node {
            path: path.display().to_string(),
            kind: Kind::File,
            size: m.len(),
            mtime: Some((m.mtime(), m.mtime_nsec() as u32)),
        }
    }

    #[test]
    fn an_unchanged_live_file_is_compared_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (live, restored) = (dir.path().join("live"), dir.path().join("restored"));
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&live, &data).unwrap();
        std::fs::write(&restored, &data).unwrap();
        let n = node(&live);
        assert_eq!(
            against_live(&restored, &live, &n).unwrap(),
            Live::Identical(200_000)
        );
        // Same size, same mtime, one byte different past the first 64 KiB block.
        let mut bad = data.clone();
        bad[150_001] ^= 1;
        std::fs::write(&live, &bad).unwrap();
        let f = std::fs::File::options().write(true).open(&live).unwrap();
        let mtime = std::time::UNIX_EPOCH
            + std::time::Duration::new(n.mtime.unwrap().0 as u64, n.mtime.unwrap().1);
        f.set_modified(mtime).unwrap();
        assert_eq!(
            against_live(&restored, &live, &n).unwrap(),
            Live::Differs(150_001)
        );
        // A newer mtime: changed since the snapshot, not compared.
        f.set_modified(mtime + std::time::Duration::from_secs(1))
            .unwrap();
        assert_eq!(against_live(&restored, &live, &n).unwrap(), Live::Changed);
        std::fs::remove_file(&live).unwrap();
        assert_eq!(against_live(&restored, &live, &n).unwrap(), Live::Changed);
        // A restored file of the wrong size is an error naming it.
        std::fs::write(&restored, b"short").unwrap();
        let e = against_live(&restored, &live, &n).unwrap_err().to_string();
        assert!(e.contains("came back with 5 bytes"), "{e}");
    }

    #[test]
    fn integrity_check_passes_a_database_and_fails_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let c = Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE t (n); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(c);
        sqlite_intact(&db).unwrap();
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![7u8; 8192]).unwrap();
        assert!(sqlite_intact(&junk).is_err());
        assert!(sqlite_intact(&dir.path().join("missing.db")).is_err());
    }

    #[test]
    fn a_tree_with_read_only_directories_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t");
        std::fs::create_dir_all(t.join("a/b")).unwrap();
        std::fs::write(t.join("a/b/f"), b"x").unwrap();
        std::fs::set_permissions(t.join("a"), std::fs::Permissions::from_mode(0o500)).unwrap();
        remove_tree(&t).unwrap();
        assert!(!t.exists());
        remove_tree(&t).unwrap();
    }
}
