//! A local cache in front of a remote backend, so a remote repository opens fast.
//!
//! Like restic's cache it keeps the files every operation reads first and that never
//! change once written: snapshots, index files and the packs that hold tree blobs. Each
//! repository gets its own directory, named by the repository id from its config, under
//! `~/.cache/cairn` (or `--cache-dir`). Repository file names are the SHA-256 of their
//! contents, so a cached file is verified against its name before it is first used in a
//! process; a damaged entry is dropped and fetched again, never trusted. Entries are
//! written atomically (temporary file + rename) and need no fsync: losing one only costs
//! a download. Listing a type removes cached files the repository no longer has (after
//! `forget` or `prune`, by cairn or by restic), so the cache never serves a deleted file.
//!
//! Whole-pack reads (`check --read-data`, restore of data) always go to the repository.
//!
//! Like restic's, the cache is private: directories are created 0700 and files 0600
//! (explicit modes, whatever the umask); a repository's cache directory left wider by an
//! older version is narrowed to 0700 when the repository is opened.

use super::{Backend, FileInfo, FileType};
use crate::error::Result;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// Creates `dir` and its missing parents, owner-only (0700).
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// A fresh temporary name per write, so two writers never share one.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The default cache directory: `$XDG_CACHE_HOME/cairn`, else `~/.cache/cairn`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("cairn"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("cairn"))
}

pub struct CachedBackend {
    inner: Arc<dyn Backend>,
    base: PathBuf,
    /// `base/<repository id>`, known once the config has been decrypted.
    dir: OnceLock<PathBuf>,
    tree_packs: RwLock<HashSet<String>>,
    /// Cached files already verified by this process.
    verified: Mutex<HashSet<(FileType, String)>>,
    /// One download at a time per pack, so parallel tree loads fetch it once.
    fetching: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl CachedBackend {
    /// Keeps a copy of a snapshot or index file just stored.
    fn written(&self, t: FileType, name: &str, data: &[u8]) {
        if matches!(t, FileType::Snapshot | FileType::Index) {
            if let Some(path) = self.path(t, name) {
                self.store(t, name, &path, data);
            }
        }
    }

    pub fn new(inner: Arc<dyn Backend>, base: PathBuf) -> CachedBackend {
        CachedBackend {
            inner,
            base,
            dir: OnceLock::new(),
            tree_packs: RwLock::new(HashSet::new()),
            verified: Mutex::new(HashSet::new()),
            fetching: Mutex::new(HashMap::new()),
        }
    }

    fn cached(t: FileType) -> bool {
        matches!(t, FileType::Snapshot | FileType::Index | FileType::Pack)
    }

    fn path(&self, t: FileType, name: &str) -> Option<PathBuf> {
        let dir = self.dir.get()?;
        if !Self::cached(t) || name.len() < 2 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(match t {
            FileType::Pack => dir.join("data").join(&name[..2]).join(name),
            _ => dir.join(t.dir()).join(name),
        })
    }

    /// The cached file, if present and its contents match its name.
    fn load(&self, t: FileType, name: &str, path: &Path) -> Option<Vec<u8>> {
        let data = fs::read(path).ok()?;
        let key = (t, name.to_string());
        if self.verified.lock().ok()?.contains(&key) {
            return Some(data);
        }
        if hex::encode(Sha256::digest(&data)) != name {
            let _ = fs::remove_file(path);
            return None;
        }
        self.verified.lock().ok()?.insert(key);
        Some(data)
    }

    /// Stores `data` under `path` if it matches its name. Failures only cost speed.
    fn store(&self, t: FileType, name: &str, path: &Path, data: &[u8]) {
        if hex::encode(Sha256::digest(data)) != name {
            return;
        }
        let Some(parent) = path.parent() else { return };
        if private_dir(parent).is_err() {
            return;
        }
        self.tag_base();
        let tmp = parent.join(format!(
            ".{name}.tmp{}-{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let ok = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(data))
            .and_then(|_| fs::rename(&tmp, path));
        if ok.is_err() {
            let _ = fs::remove_file(&tmp);
            return;
        }
        if let Ok(mut v) = self.verified.lock() {
            v.insert((t, name.to_string()));
        }
    }

    /// Marks the cache directory for backup tools (CACHEDIR.TAG, as restic does).
    fn tag_base(&self) {
        let tag = self.base.join("CACHEDIR.TAG");
        if !tag.exists() {
            let _ = fs::write(
                &tag,
                "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by cairn.\n",
            );
        }
    }

    fn is_tree_pack(&self, name: &str) -> bool {
        self.tree_packs
            .read()
            .map(|s| s.contains(name))
            .unwrap_or(false)
    }

    /// A range of a tree pack, from the cache, downloading the whole pack on a miss.
    fn tree_pack_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let Some(path) = self.path(FileType::Pack, name) else {
            return self.inner.read_range(FileType::Pack, name, offset, len);
        };
        let gate = {
            let mut f = self.fetching.lock().expect("cache lock poisoned");
            f.entry(name.to_string()).or_default().clone()
        };
        let _held = gate.lock().expect("cache lock poisoned");
        let key = (FileType::Pack, name.to_string());
        let verified = self
            .verified
            .lock()
            .map(|v| v.contains(&key))
            .unwrap_or(false);
        if verified {
            if let Some(bytes) = read_file_range(&path, offset, len) {
                return Ok(bytes);
            }
        } else if let Some(data) = self.load(FileType::Pack, name, &path) {
            if let Some(r) = slice(&data, offset, len) {
                return Ok(r);
            }
        }
        let data = self.inner.read(FileType::Pack, name)?;
        self.store(FileType::Pack, name, &path, &data);
        match slice(&data, offset, len) {
            Some(r) => Ok(r),
            // Shorter than the index says: let the repository report it precisely.
            None => self.inner.read_range(FileType::Pack, name, offset, len),
        }
    }

    /// Removes cached files of type `t` that are not in `present`.
    fn sweep(&self, t: FileType, present: &[FileInfo]) {
        let Some(dir) = self.dir.get() else { return };
        let keep: HashSet<&str> = present.iter().map(|f| f.name.as_str()).collect();
        let dirs: Vec<PathBuf> = match t {
            FileType::Pack => match fs::read_dir(dir.join("data")) {
                Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
                Err(_) => return,
            },
            _ => vec![dir.join(t.dir())],
        };
        for d in dirs {
            let Ok(rd) = fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !keep.contains(name.as_str()) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
}

/// Removes repository cache directories under `base` (named by a hex repository id) that
/// were last used more than `max_age` ago, except `keep`.
fn expire_old(base: &Path, keep: &Path, max_age: std::time::Duration) {
    let Ok(rd) = fs::read_dir(base) else { return };
    let now = std::time::SystemTime::now();
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p == keep || name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > max_age);
        if old && p.is_dir() {
            let _ = fs::remove_dir_all(&p);
        }
    }
}

fn slice(data: &[u8], offset: u64, len: u64) -> Option<Vec<u8>> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    data.get(start..end).map(<[u8]>::to_vec)
}

fn read_file_range(path: &Path, offset: u64, len: u64) -> Option<Vec<u8>> {
    let mut f = fs::File::open(path).ok()?;
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut buf = vec![0u8; usize::try_from(len).ok()?];
    f.read_exact(&mut buf).ok()?;
    Some(buf)
}

impl Backend for CachedBackend {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> Result<()> {
        self.inner.create()
    }
    fn has_config(&self) -> Result<bool> {
        self.inner.has_config()
    }
    fn list(&self, t: FileType) -> Result<Vec<FileInfo>> {
        let files = self.inner.list(t)?;
        if Self::cached(t) {
            self.sweep(t, &files);
        }
        Ok(files)
    }
    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        let path = match t {
            FileType::Snapshot | FileType::Index => self.path(t, name),
            _ => None,
        };
        let Some(path) = path else {
            return self.inner.read(t, name);
        };
        if let Some(data) = self.load(t, name, &path) {
            return Ok(data);
        }
        let data = self.inner.read(t, name)?;
        self.store(t, name, &path, &data);
        Ok(data)
    }
    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if t == FileType::Pack && self.dir.get().is_some() && self.is_tree_pack(name) {
            return self.tree_pack_range(name, offset, len);
        }
        self.inner.read_range(t, name, offset, len)
    }
    fn read_range_into(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        if t == FileType::Pack && self.dir.get().is_some() && self.is_tree_pack(name) {
            *buf = self.tree_pack_range(name, offset, len)?;
            return Ok(());
        }
        self.inner.read_range_into(t, name, offset, len, buf)
    }
    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.inner.write(t, name, data)?;
        self.written(t, name, data);
        Ok(())
    }
    fn renaming_retry(&self) -> Option<super::retry::Retry> {
        self.inner.renaming_retry()
    }
    fn write_once(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.inner.write_once(t, name, data)?;
        self.written(t, name, data);
        Ok(())
    }
    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        self.inner.remove(t, name)?;
        if let Some(path) = self.path(t, name) {
            let _ = fs::remove_file(path);
        }
        Ok(())
    }
    fn set_repository_id(&self, id: &str) {
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            let dir = self.base.join(id);
            // Mark this repository's cache as used, and forget caches of repositories
            // not opened for 30 days (restic does the same).
            if let Ok(f) = fs::File::open(&dir) {
                let _ = f.set_modified(std::time::SystemTime::now());
                // A cache made by an older cairn may be world-readable: it is ours alone.
                let _ = f.set_permissions(fs::Permissions::from_mode(0o700));
            }
            expire_old(
                &self.base,
                &dir,
                std::time::Duration::from_secs(30 * 86_400),
            );
            let _ = self.dir.set(dir);
        }
        self.inner.set_repository_id(id);
    }
    fn set_tree_packs(&self, packs: HashSet<String>) {
        if let Ok(mut s) = self.tree_packs.write() {
            *s = packs;
        }
    }
    fn connections(&self) -> usize {
        self.inner.connections()
    }
    fn is_local(&self) -> bool {
        self.inner.is_local()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalBackend;

    fn setup() -> (tempfile::TempDir, Arc<dyn Backend>, CachedBackend) {
        let tmp = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Backend> = Arc::new(LocalBackend::new(tmp.path().join("repo")));
        inner.create().unwrap();
        let c = CachedBackend::new(inner.clone(), tmp.path().join("cache"));
        c.set_repository_id("abcd");
        (tmp, inner, c)
    }

    fn named(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    #[test]
    fn serves_verified_copies_and_drops_damaged_ones() {
        let (tmp, inner, c) = setup();
        let data = b"index file".to_vec();
        let name = named(&data);
        inner.write(FileType::Index, &name, &data).unwrap();
        assert_eq!(c.read(FileType::Index, &name).unwrap(), data);
        let cached = tmp.path().join("cache/abcd/index").join(&name);
        assert_eq!(fs::read(&cached).unwrap(), data);
        // Damage the cached copy: a new process (fresh verified set) must not trust it.
        fs::write(&cached, b"garbage").unwrap();
        let c2 = CachedBackend::new(inner.clone(), tmp.path().join("cache"));
        c2.set_repository_id("abcd");
        assert_eq!(c2.read(FileType::Index, &name).unwrap(), data);
        assert_eq!(fs::read(&cached).unwrap(), data);
        assert!(tmp.path().join("cache/CACHEDIR.TAG").exists());
    }

    #[test]
    fn the_cache_is_private_to_its_owner() {
        use std::os::unix::fs::MetadataExt;
        let (tmp, inner, c) = setup();
        let data = b"index file".to_vec();
        let name = named(&data);
        inner.write(FileType::Index, &name, &data).unwrap();
        c.read(FileType::Index, &name).unwrap();
        let mode = |p: &str| fs::metadata(tmp.path().join(p)).unwrap().mode() & 0o777;
        assert_eq!(mode("cache"), 0o700);
        assert_eq!(mode("cache/abcd"), 0o700);
        assert_eq!(mode("cache/abcd/index"), 0o700);
        assert_eq!(mode(&format!("cache/abcd/index/{name}")), 0o600);
        // A repository cache left world-readable by an older version is narrowed.
        fs::set_permissions(
            tmp.path().join("cache/abcd"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        CachedBackend::new(inner, tmp.path().join("cache")).set_repository_id("abcd");
        assert_eq!(mode("cache/abcd"), 0o700);
    }

    #[test]
    fn caches_of_repositories_unused_for_30_days_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Backend> = Arc::new(LocalBackend::new(tmp.path().join("repo")));
        let base = tmp.path().join("cache");
        let old = base.join("a".repeat(64));
        let recent = base.join("b".repeat(64));
        let other = base.join("not-a-cache");
        for d in [&old, &recent, &other] {
            fs::create_dir_all(d.join("index")).unwrap();
        }
        let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(40 * 86_400);
        fs::File::open(&old)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        fs::File::open(&other)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        let c = CachedBackend::new(inner, base.clone());
        c.set_repository_id(&"c".repeat(64));
        assert!(!old.exists(), "unused for 40 days: removed");
        assert!(
            recent.exists() && other.exists(),
            "recent caches and foreign dirs stay"
        );
    }

    #[test]
    fn listing_sweeps_deleted_files() {
        let (tmp, inner, c) = setup();
        let data = b"snapshot".to_vec();
        let name = named(&data);
        c.write(FileType::Snapshot, &name, &data).unwrap();
        let cached = tmp.path().join("cache/abcd/snapshots").join(&name);
        assert!(cached.exists());
        inner.remove(FileType::Snapshot, &name).unwrap(); // e.g. restic forget
        assert!(c.list(FileType::Snapshot).unwrap().is_empty());
        assert!(!cached.exists());
    }

    #[test]
    fn tree_packs_are_fetched_once_then_read_locally() {
        let (tmp, inner, c) = setup();
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let name = named(&data);
        inner.write(FileType::Pack, &name, &data).unwrap();
        c.set_tree_packs([name.clone()].into_iter().collect());
        assert_eq!(
            c.read_range(FileType::Pack, &name, 100, 50).unwrap(),
            &data[100..150]
        );
        // Gone from the repository's view of the inner backend, still served from cache.
        let cached = tmp
            .path()
            .join("cache/abcd/data")
            .join(&name[..2])
            .join(&name);
        assert!(cached.exists());
        fs::remove_file(tmp.path().join("repo/data").join(&name[..2]).join(&name)).unwrap();
        assert_eq!(
            c.read_range(FileType::Pack, &name, 9_000, 1_000).unwrap(),
            &data[9_000..]
        );
        // A pack pruned from the repository leaves the cache at the next listing.
        c.list(FileType::Pack).unwrap();
        assert!(!cached.exists());
    }
}
