//! Consistent sources: what runs before a plan's backup so that what is stored is a
//! consistent state, not a torn one.
//!
//! SQLite: a live database is copied with SQLite's online backup API (all pages in one
//! step, under one read transaction: with WAL the service keeps writing meanwhile), into
//! the plan's work directory; the backup then stores the copy at the database's own path
//! (`cairn backup --source-map DB=COPY`) and leaves its `-wal`, `-shm` and `-journal`
//! files out — the copy already contains every transaction committed before it began.
//! Copies are removed after the backup, whatever its result.

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};

/// A consistent copy of the SQLite database `db` at `dest` (a file that must not exist).
pub fn sqlite_copy(db: &Path, dest: &Path) -> Result<()> {
    anyhow::ensure!(
        db.is_file(),
        "SQLite database {} does not exist (is the service installed, its disk mounted?)",
        db.display()
    );
    // Read-only first: such a connection never checkpoints or deletes the service's WAL
    // when it closes. Some setups (no -shm yet, read-only directory) need read-write.
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .or_else(|_| {
        Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
    })
    .with_context(|| format!("cannot open SQLite database {}", db.display()))?;
    src.busy_timeout(std::time::Duration::from_secs(60))?;
    let mut dst =
        Connection::open(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    {
        let backup = rusqlite::backup::Backup::new(&src, &mut dst)
            .with_context(|| format!("cannot start the online backup of {}", db.display()))?;
        // -1: every page in one step, so the copy is one consistent read transaction. A
        // writer holding a lock at that instant makes the step busy: try again shortly,
        // for up to a minute.
        use rusqlite::backup::StepResult;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match backup
                .step(-1)
                .with_context(|| format!("online backup of {} failed", db.display()))?
            {
                StepResult::Done => break,
                StepResult::More | StepResult::Busy | StepResult::Locked => {
                    anyhow::ensure!(
                        std::time::Instant::now() < deadline,
                        "online backup of {}: the database stayed locked for a minute",
                        db.display()
                    );
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
    }
    // The copy is a standalone file: no WAL to carry along.
    dst.pragma_update(None, "journal_mode", "DELETE")
        .with_context(|| format!("finishing the copy of {}", db.display()))?;
    drop(dst);
    Ok(())
}

/// Copies every database of `dbs` into `work`; returns `(database, copy)` pairs. On an
/// error, the copies made so far are removed.
pub fn sqlite_copies(dbs: &[PathBuf], work: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let _ = std::fs::remove_dir_all(work);
    let mut out = Vec::new();
    for (i, db) in dbs.iter().enumerate() {
        let dir = work.join(format!("sqlite-{i}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let dest = dir.join(db.file_name().unwrap_or_default());
        if let Err(e) = sqlite_copy(db, &dest) {
            let _ = std::fs::remove_dir_all(work);
            return Err(e);
        }
        out.push((db.clone(), dest));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_has_every_committed_row_and_passes_integrity_check() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let c = Connection::open(&db).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch("CREATE TABLE t (n INTEGER); PRAGMA wal_autocheckpoint = 0;")
            .unwrap();
        for i in 0..1000 {
            c.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
        }
        // Committed rows live in the -wal file only (no checkpoint): a plain copy of the
        // main file would miss them.
        assert!(dir.path().join("app.db-wal").exists());
        let copy = dir.path().join("copy.db");
        sqlite_copy(&db, &copy).unwrap();
        let k = Connection::open(&copy).unwrap();
        let n: i64 = k
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1000);
        let ok: String = k
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        assert!(
            dir.path().join("app.db-wal").exists(),
            "the service's WAL is left alone"
        );
        assert!(sqlite_copy(&dir.path().join("missing.db"), &dir.path().join("x.db")).is_err());
    }
}
