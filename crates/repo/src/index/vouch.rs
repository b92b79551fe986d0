//! Vouchers: which index files held every data blob of a snapshot when this machine wrote
//! it, kept in the repository's local cache beside the index snapshot.
//!
//! A backup reuses the content of unchanged files from its parent snapshot, and restic
//! (and cairn) first check that each such blob is still in the index, so that a blob lost
//! from the repository is read from the file again ("self-healing"). Asking that of every
//! unchanged file needs the whole data index in memory: 360 MB at 10M files, for a run
//! that may store nothing. A voucher answers it without the index: the backup that wrote
//! snapshot P knew every data blob P refers to was in one of the index files listed when
//! it started, or in those it wrote itself (it checked, deduplicated against, vouched for
//! or stored each one). Index files never change (they are named by their content), and
//! every entry of a listed index file is kept unless it is refused as damage. So if all
//! those index files are still listed and no entry of the index is refused, every blob of
//! P is still indexed, exactly as the full check would have found. Prune and `repair
//! index` remove index files; then the voucher no longer holds and the backup loads the
//! whole index and checks every file, as before. With a voucher, the backup leaves the
//! data index on disk (see `index::snapshot::deferred`).
//!
//! A voucher is authenticated with HMAC-SHA256 under the key of the index snapshot
//! (derived from the master key, bound to the repository id and the snapshot id); any
//! problem reads as "no voucher". Written atomically, 0600 in a 0700 directory; the
//! newest `KEEP` are kept.

use crate::id::Id;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

const MAGIC: &[u8; 8] = b"cairnvc1";
const TAG_LEN: usize = 32;
/// Vouchers kept per repository: a parent is usually the newest snapshot of its host and
/// paths, and a machine backs up a handful of path sets.
const KEEP: usize = 32;
/// Index files one voucher may name (32 bytes each): far beyond a real repository (10M
/// blobs fit in a few thousand index files); bounds what a read allocates.
const MAX_FILES: u64 = 1 << 24;

fn mac(key: &[u8; 32], repo_id: &str, snapshot: &Id) -> HmacSha256 {
    // HMAC takes keys of any length: this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(MAGIC);
    m.update(&(repo_id.len() as u64).to_le_bytes());
    m.update(repo_id.as_bytes());
    m.update(&snapshot.0);
    m
}

/// Records that every data blob of `snapshot` is in one of `files` (index file ids).
pub fn write(
    dir: &Path,
    key: &[u8; 32],
    repo_id: &str,
    snapshot: &Id,
    files: &[Id],
) -> std::io::Result<()> {
    crate::backend::cache::private_dir(dir)?;
    let mut files = files.to_vec();
    files.sort_unstable();
    files.dedup();
    let mut body = Vec::with_capacity(8 + 8 + files.len() * 32);
    body.extend_from_slice(MAGIC);
    body.extend_from_slice(&(files.len() as u64).to_le_bytes());
    for f in &files {
        body.extend_from_slice(&f.0);
    }
    let mut m = mac(key, repo_id, snapshot);
    m.update(&body);
    body.extend_from_slice(&m.finalize().into_bytes());
    let path = dir.join(snapshot.to_hex());
    let tmp = dir.join(format!(
        ".voucher.tmp{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&body)?;
        fs::rename(&tmp, &path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    forget_old(dir);
    Ok(())
}

/// The index files that vouch for `snapshot`'s data blobs, if this machine recorded them.
pub fn read(dir: &Path, key: &[u8; 32], repo_id: &str, snapshot: &Id) -> Option<Vec<Id>> {
    let mut f = fs::File::open(dir.join(snapshot.to_hex())).ok()?;
    let len = f.metadata().ok()?.len();
    if !(16 + TAG_LEN as u64..=16 + MAX_FILES * 32 + TAG_LEN as u64).contains(&len) {
        return None;
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).ok()?);
    Read::by_ref(&mut f)
        .take(len)
        .read_to_end(&mut bytes)
        .ok()?;
    let (body, tag) = bytes.split_at_checked(bytes.len().checked_sub(TAG_LEN)?)?;
    let mut m = mac(key, repo_id, snapshot);
    m.update(body);
    m.verify_slice(tag).ok()?;
    let (magic, rest) = body.split_at_checked(8)?;
    let (n, ids) = rest.split_at_checked(8)?;
    let n = u64::from_le_bytes(n.try_into().ok()?);
    if magic != MAGIC || n.checked_mul(32)? != ids.len() as u64 {
        return None;
    }
    Some(
        ids.chunks_exact(32)
            .map(|c| Id(c.try_into().unwrap_or([0; 32])))
            .collect(),
    )
}

/// Removes all but the `KEEP` newest vouchers (best effort: only the cache).
fn forget_old(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut found: Vec<(std::time::SystemTime, std::path::PathBuf)> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| Id::parse(n).is_some())
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if found.len() <= KEEP {
        return;
    }
    found.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
    for (_, p) in found.into_iter().skip(KEEP) {
        let _ = fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    #[test]
    fn a_voucher_reads_back_only_for_its_key_repository_and_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("vouchers");
        let key = [7u8; 32];
        write(&d, &key, "repo", &id(1), &[id(9), id(3), id(9)]).unwrap();
        assert_eq!(read(&d, &key, "repo", &id(1)), Some(vec![id(3), id(9)]));
        assert_eq!(read(&d, &[8u8; 32], "repo", &id(1)), None);
        assert_eq!(read(&d, &key, "other", &id(1)), None);
        assert_eq!(read(&d, &key, "repo", &id(2)), None);
        // Another snapshot's voucher copied over this one's name is not this one's.
        write(&d, &key, "repo", &id(2), &[id(4)]).unwrap();
        fs::copy(d.join(id(2).to_hex()), d.join(id(1).to_hex())).unwrap();
        assert_eq!(read(&d, &key, "repo", &id(1)), None);
        // A flipped byte or a truncated file is no voucher.
        let p = d.join(id(2).to_hex());
        let mut b = fs::read(&p).unwrap();
        b[17] ^= 1;
        fs::write(&p, &b).unwrap();
        assert_eq!(read(&d, &key, "repo", &id(2)), None);
        fs::write(&p, &b[..20]).unwrap();
        assert_eq!(read(&d, &key, "repo", &id(2)), None);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(d.join(id(1).to_hex()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn only_the_newest_vouchers_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let key = [1u8; 32];
        for n in 0..(KEEP as u8 + 5) {
            write(dir.path(), &key, "r", &id(n), &[id(200)]).unwrap();
            let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(n as u64);
            fs::File::options()
                .write(true)
                .open(dir.path().join(id(n).to_hex()))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        let left = fs::read_dir(dir.path()).unwrap().count();
        assert!(left <= KEEP + 1, "{left} vouchers left");
        assert!(read(dir.path(), &key, "r", &id(KEEP as u8 + 4)).is_some());
        assert!(read(dir.path(), &key, "r", &id(0)).is_none());
    }
}
