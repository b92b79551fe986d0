//! A repository opened with a password: its config, master key and typed file access.
//!
//! Owns key files (scrypt KDF), the config file, and encrypted "unpacked" files (snapshots,
//! indexes, keys' data), including format v2's compressed encoding of them. Does not own
//! pack writing (see `writer`) or any operation on snapshots' contents.

use crate::backend::{Backend, FileType};
use crate::chunker::Polynomial;
use crate::crypto::{Key, KeyJson};
use crate::error::{Error, Kind, Result};
use crate::id::Id;
use crate::index::Index;
use crate::pack::{self, BlobType};
use base64::Engine;
use rand::RngCore;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::sync::Arc;

mod index_load;

/// The repository config (stored encrypted, never compressed, at `config`).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Config {
    pub version: u32,
    pub id: String,
    pub chunker_polynomial: String,
}

impl Config {
    pub fn polynomial(&self) -> Result<Polynomial> {
        u64::from_str_radix(&self.chunker_polynomial, 16)
            .map(Polynomial)
            .map_err(|_| {
                Error::corrupt(format!(
                    "config: bad chunker polynomial {:?}",
                    self.chunker_polynomial
                ))
            })
    }
}

/// A key file (JSON, not encrypted itself; `data` holds the encrypted master key).
/// `created`, `username` and `hostname` are informational: rustic leaves them out or null.
#[derive(Serialize, Deserialize, Debug)]
pub struct KeyFile {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub created: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub username: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub hostname: String,
    pub kdf: String,
    #[serde(rename = "N")]
    pub n: u64,
    pub r: u32,
    pub p: u32,
    pub salt: String,
    pub data: String,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// The largest file of each type read from a repository, stored and (format v2) decoded.
/// Anything larger is damage or an attack, reported before it is read into memory. restic
/// writes index files of at most a few MiB, snapshots, keys and locks of a few hundred bytes.
fn max_file_size(t: FileType) -> u64 {
    match t {
        FileType::Index => 1 << 30,
        FileType::Snapshot => 64 << 20,
        FileType::Key | FileType::Lock | FileType::Config => 1 << 20,
        FileType::Pack => u64::MAX,
    }
}

/// scrypt parameters restic uses for new keys (N=2^15, r=8, p=5).
pub const KDF_N_LOG2: u8 = 15;
pub const KDF_R: u32 = 8;
pub const KDF_P: u32 = 5;

/// How blobs and unpacked files are compressed (format v2 only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Auto,
    Off,
    Max,
}

impl Compression {
    pub fn parse(s: &str) -> Result<Compression> {
        match s {
            "auto" => Ok(Compression::Auto),
            "off" => Ok(Compression::Off),
            "max" => Ok(Compression::Max),
            _ => Err(Error::invalid(format!(
                "unknown compression mode {s:?}: use auto, off or max"
            ))),
        }
    }

    /// The zstd level, or None when not compressing. `auto` is level 1 (zstd's "fast"
    /// strategy): on mixed data it compresses half again as fast as level 3 (the most CPU
    /// a first backup spends) for a repository about 1% larger, close to restic's `auto`.
    pub fn level(self) -> Option<i32> {
        match self {
            Compression::Auto => Some(1),
            Compression::Off => None,
            Compression::Max => Some(15),
        }
    }
}

fn derive_key(password: &str, salt: &[u8], n: u64, r: u32, p: u32) -> Result<Key> {
    crate::crypto::check_kdf_params(n, r, p, salt.len())?;
    let log_n = n.trailing_zeros() as u8;
    let mut out = [0u8; 64];
    // The p lanes of scrypt are independent: one per core (restic's p=5 on 2 cores: 3/5
    // of the wall time).
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    crate::crypto::scrypt_kdf(password.as_bytes(), salt, log_n, r, p, threads, &mut out)
        .map_err(|e| e.context("key file"))?;
    Ok(Key::from_kdf_output(&out))
}

fn now_rfc3339() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, false)
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

fn username() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default()
}

/// File sizes by type and name, as last listed.
type SizeCache = std::collections::HashMap<FileType, std::collections::HashMap<String, u64>>;

/// An open repository. Cloning is cheap (the backend is shared).
#[derive(Clone)]
pub struct Repository {
    backend: Arc<dyn Backend>,
    key: Key,
    config: Config,
    key_id: String,
    compression: Compression,
    /// Target size of the pack files new data goes into (`--pack-size`).
    pack_size: usize,
    /// File sizes from the latest listing of each type, to bound reads before they happen.
    sizes: Arc<std::sync::Mutex<SizeCache>>,
    /// The local cache directory (of all repositories) where `load_index` keeps its
    /// snapshot of the index; None: no snapshot.
    cache_base: Option<std::path::PathBuf>,
}

impl Repository {
    /// Creates a new repository (format `version` 1 or 2) protected by `password`.
    pub fn init(
        backend: Arc<dyn Backend>,
        password: &str,
        version: u32,
        polynomial: Option<Polynomial>,
    ) -> Result<Repository> {
        if !(1..=2).contains(&version) {
            return Err(Error::invalid(format!(
                "repository format version {version} is not supported: use 1 or 2"
            )));
        }
        backend.create()?;
        let master = Key::random();
        let mut id = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut id);
        let pol = polynomial.unwrap_or_else(Polynomial::random);
        let config = Config {
            version,
            id: hex::encode(id),
            chunker_polynomial: format!("{:x}", pol.0),
        };
        let key_id = write_key_file(backend.as_ref(), &master, password)?;
        let repo = Repository {
            backend,
            key: master,
            config,
            key_id,
            compression: Compression::Auto,
            pack_size: crate::writer::DEFAULT_PACK_SIZE,
            sizes: Arc::default(),
            cache_base: None,
        };
        repo.backend.set_repository_id(&repo.config.id);
        let cfg = serde_json::to_vec(&repo.config).map_err(|e| Error::invalid(e.to_string()))?;
        repo.backend
            .write(FileType::Config, "", &repo.key.seal(&cfg))?;
        Ok(repo)
    }

    /// Opens a repository, trying every key file with `password`.
    pub fn open(backend: Arc<dyn Backend>, password: &str) -> Result<Repository> {
        if !backend.has_config()? {
            return Err(Error::not_found(format!(
                "{}: there is no repository here (no config file); create one with `cairn init` or check the repository path",
                backend.location()
            )));
        }
        let mut keys = backend.list(FileType::Key)?;
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        let mut wrong = 0;
        let mut damaged = Vec::new();
        for k in &keys {
            match open_key_file(backend.as_ref(), &k.name, k.size, password) {
                Ok(master) => {
                    let raw = backend.read(FileType::Config, "")?;
                    let plain = master.open(&raw).map_err(|e| e.context("config file"))?;
                    let config: Config = serde_json::from_slice(&plain)
                        .map_err(|e| Error::corrupt(format!("config file: {e}")))?;
                    if !(1..=2).contains(&config.version) {
                        return Err(Error::new(
                            Kind::Unsupported,
                            format!(
                                "repository format version {} is not supported by this cairn (1 and 2 are)",
                                config.version
                            ),
                        ));
                    }
                    config.polynomial()?;
                    backend.set_repository_id(&config.id);
                    return Ok(Repository {
                        backend,
                        key: master,
                        config,
                        key_id: k.name.clone(),
                        compression: Compression::Auto,
                        pack_size: crate::writer::DEFAULT_PACK_SIZE,
                        sizes: Arc::default(),
                        cache_base: None,
                    });
                }
                Err(e) if e.kind() == Kind::WrongPassword => wrong += 1,
                Err(e) => damaged.push(e),
            }
        }
        // Only a key that decrypts to nothing is a wrong password; a key file that cannot
        // be read or parsed says so, even beside wrong-password ones. The message names no
        // flag: where the password came from (a flag, a variable, a config key) is known to
        // the application, which adds what to check.
        if wrong == 0 {
            if let Some(e) = damaged.into_iter().next() {
                return Err(e);
            }
        } else if !damaged.is_empty() {
            let notes: Vec<String> = damaged.iter().map(|e| e.to_string()).collect();
            return Err(Error::new(
                Kind::WrongPassword,
                format!(
                    "wrong password for repository {} ({wrong} key file(s) tried; also: {})",
                    backend.location(),
                    notes.join("; ")
                ),
            ));
        }
        Err(Error::new(
            Kind::WrongPassword,
            format!(
                "wrong password for repository {} ({} key file(s) tried)",
                backend.location(),
                keys.len()
            ),
        ))
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn key(&self) -> &Key {
        &self.key
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn polynomial(&self) -> Polynomial {
        self.config.polynomial().unwrap_or(Polynomial(0))
    }

    pub fn set_compression(&mut self, c: Compression) {
        self.compression = c;
    }

    /// Sets the target size of new pack files, in bytes (restic's `--pack-size`, which
    /// takes MiB): a pack is finished before the next blob would take it past this size (a
    /// larger blob gets a pack of its own).
    pub fn set_pack_size(&mut self, bytes: usize) {
        self.pack_size = bytes;
    }

    pub fn pack_size(&self) -> usize {
        self.pack_size
    }

    /// The compression to use for new data: none in format v1.
    pub fn compression(&self) -> Compression {
        if self.config.version < 2 {
            Compression::Off
        } else {
            self.compression
        }
    }

    /// A file's size from the latest listing of its type, listing again when it is not
    /// there (written since, or never listed). None when the backend does not list it.
    fn listed_size(&self, t: FileType, name: &str) -> Result<Option<u64>> {
        let cached = self
            .sizes
            .lock()
            .ok()
            .and_then(|m| m.get(&t).and_then(|s| s.get(name).copied()));
        if cached.is_some() {
            return Ok(cached);
        }
        self.list_ids(t)?;
        Ok(self
            .sizes
            .lock()
            .ok()
            .and_then(|m| m.get(&t).and_then(|s| s.get(name).copied())))
    }

    /// Loads, verifies and decrypts an unpacked file (snapshot, index), decompressing v2 data.
    /// A file larger than any of its type is reported as damaged without being read.
    pub fn load_file(&self, t: FileType, id: &Id) -> Result<Vec<u8>> {
        let name = id.to_hex();
        if let Some(size) = self.listed_size(t, &name)? {
            check_file_size(t, &name, size)?;
        }
        let raw = self.backend.read(t, &name)?;
        check_file_size(t, &name, raw.len() as u64)?;
        if Id::hash(&raw) != *id {
            return Err(Error::corrupt(format!(
                "{}/{name}: content does not match its name (the file is damaged)",
                t.dir()
            )));
        }
        let plain = self
            .key
            .open_owned(raw)
            .map_err(|e| e.context(format!("{}/{name}", t.dir())))?;
        self.decompress_unpacked(plain, max_file_size(t))
            .map_err(|e| e.context(format!("{}/{name}", t.dir())))
    }

    fn decompress_unpacked(&self, plain: Vec<u8>, max: u64) -> Result<Vec<u8>> {
        if self.config.version < 2 {
            return Ok(plain);
        }
        match plain.first() {
            None | Some(b'[') | Some(b'{') => Ok(plain),
            Some(2) => {
                use std::io::Read;
                let mut out = Vec::new();
                zstd::stream::read::Decoder::new(&plain[1..])
                    .map_err(|e| Error::corrupt(format!("zstd: {e}")))?
                    .take(max.saturating_add(1))
                    .read_to_end(&mut out)
                    .map_err(|e| Error::corrupt(format!("zstd: {e}")))?;
                if out.len() as u64 > max {
                    return Err(Error::corrupt(format!(
                        "decompresses to more than {max} bytes, more than any such file has (the file is damaged)"
                    )));
                }
                Ok(out)
            }
            Some(v) => Err(Error::corrupt(format!("unknown encoding version {v}"))),
        }
    }

    /// Encrypts (compressing in v2) and stores an unpacked file; returns its id.
    /// A failed upload is retried under a new name (see [`crate::backend::write_renewing`]).
    pub fn save_file(&self, t: FileType, plain: &[u8]) -> Result<Id> {
        let encoded = match (self.config.version, self.compression.level()) {
            (2, Some(level)) => {
                let mut buf = vec![2u8];
                buf.extend_from_slice(
                    &zstd::bulk::compress(plain, level)
                        .map_err(|e| Error::io("zstd compression", e))?,
                );
                std::borrow::Cow::Owned(buf)
            }
            _ => std::borrow::Cow::Borrowed(plain),
        };
        let mut file = SealedFile::new(&self.key, &encoded);
        crate::backend::write_renewing(self.backend.as_ref(), t, &mut file)?;
        Ok(file.id)
    }

    pub fn load_json<T: DeserializeOwned>(&self, t: FileType, id: &Id) -> Result<T> {
        let bytes = self.load_file(t, id)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(format!("{}/{id}: invalid JSON: {e}", t.dir())))
    }

    pub fn save_json<T: Serialize>(&self, t: FileType, value: &T) -> Result<Id> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::invalid(e.to_string()))?;
        self.save_file(t, &bytes)
    }

    /// Ids of all files of a type (names that are not ids are ignored).
    pub fn list_ids(&self, t: FileType) -> Result<Vec<Id>> {
        let files = self.backend.list(t)?;
        if let Ok(mut sizes) = self.sizes.lock() {
            sizes.insert(t, files.iter().map(|f| (f.name.clone(), f.size)).collect());
        }
        Ok(files.iter().filter_map(|f| Id::parse(&f.name)).collect())
    }

    /// Resolves an id prefix (at least 1 hex digit) among files of a type.
    pub fn find_id(&self, t: FileType, prefix: &str) -> Result<Id> {
        if let Some(id) = Id::parse(prefix) {
            return Ok(id);
        }
        let matches: Vec<Id> = self
            .list_ids(t)?
            .into_iter()
            .filter(|id| id.to_hex().starts_with(prefix))
            .collect();
        match matches.len() {
            0 => Err(Error::not_found(format!(
                "no {} matches id {prefix:?}",
                t.dir().trim_end_matches('s')
            ))),
            1 => Ok(matches[0]),
            n => Err(Error::invalid(format!(
                "id prefix {prefix:?} is ambiguous ({n} matches): give more digits"
            ))),
        }
    }

    /// The size of every pack, as listed.
    pub fn pack_sizes(&self) -> Result<std::collections::HashMap<Id, u64>> {
        Ok(self
            .backend
            .list(FileType::Pack)?
            .into_iter()
            .filter_map(|f| Id::parse(&f.name).map(|id| (id, f.size)))
            .collect())
    }

    /// Lets `load_index` keep an authenticated snapshot of the index under
    /// `base/<repository id>/` (the same directory a remote repository's cache uses), so
    /// the next process loads it with one read. None (the default) disables it.
    pub fn set_cache_dir(&mut self, base: Option<std::path::PathBuf>) {
        self.cache_base = base;
    }

    /// Where the index snapshot of this repository lives, if anywhere.
    fn index_snapshot_path(&self) -> Option<std::path::PathBuf> {
        Some(self.local_cache_dir()?.join("index.snapshot"))
    }

    /// This repository's directory in the local cache, if there is a cache.
    pub(crate) fn local_cache_dir(&self) -> Option<std::path::PathBuf> {
        let id = &self.config.id;
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(self.cache_base.as_ref()?.join(id))
    }

    /// Reads one blob through the index, verified.
    pub fn load_blob(&self, index: &Index, t: BlobType, id: &Id) -> Result<Vec<u8>> {
        let loc = index.get(t, id).ok_or_else(|| match index.damage(t, id) {
            Some(problem) => Error::corrupt(problem.to_string()),
            None => Error::corrupt(format!(
                "{t} blob {id} is not in the index (run `cairn check`)"
            )),
        })?;
        loc.blob.check_fits(index.pack_size(&loc.pack))?;
        let stored = self.backend.read_range(
            FileType::Pack,
            &loc.pack.to_hex(),
            loc.blob.offset as u64,
            loc.blob.length as u64,
        )?;
        pack::decode_blob_owned(&self.key, &loc.blob, stored)
            .map_err(|e| e.context(format!("pack {}", loc.pack)))
    }

    /// Reads and parses the header of a pack of known size.
    pub fn read_pack_header(&self, pack: &Id, size: u64) -> Result<Vec<pack::PackedBlob>> {
        let name = pack.to_hex();
        let probe = size.min(pack::HEADER_PROBE);
        let tail = self
            .backend
            .read_range(FileType::Pack, &name, size - probe, probe)?;
        let hl = pack::header_length(&tail, size)? as u64;
        let header = if hl + 4 <= probe {
            tail[(probe - 4 - hl) as usize..(probe - 4) as usize].to_vec()
        } else {
            self.backend
                .read_range(FileType::Pack, &name, size - 4 - hl, hl)?
        };
        pack::parse_header(&self.key, &header, size)
    }

    /// Every key file: its id (file name) and contents.
    pub fn list_keys(&self) -> Result<Vec<(String, KeyFile)>> {
        let mut out = Vec::new();
        for f in self.backend.list(FileType::Key)? {
            let kf = read_key_file(self.backend.as_ref(), &f.name, f.size)?;
            out.push((f.name, kf));
        }
        out.sort_by(|a, b| a.1.created.cmp(&b.1.created).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Adds a key file for `password` to this repository; returns its id.
    pub fn add_key(&self, password: &str) -> Result<String> {
        write_key_file(self.backend.as_ref(), &self.key, password)
    }
}

fn write_key_file(backend: &dyn Backend, master: &Key, password: &str) -> Result<String> {
    let mut salt = [0u8; 64];
    rand::thread_rng().fill_bytes(&mut salt);
    let n = 1u64 << KDF_N_LOG2;
    let user_key = derive_key(password, &salt, n, KDF_R, KDF_P)?;
    let master_json =
        serde_json::to_vec(&master.to_json()).map_err(|e| Error::invalid(e.to_string()))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let kf = KeyFile {
        created: now_rfc3339(),
        username: username(),
        hostname: hostname(),
        kdf: "scrypt".into(),
        n,
        r: KDF_R,
        p: KDF_P,
        salt: b64.encode(salt),
        data: String::new(),
    };
    let mut file = NewKeyFile {
        kf,
        user_key,
        master_json,
        bytes: Vec::new(),
    };
    crate::backend::Renewable::renew(&mut file);
    // A lost key file is a lost repository: retried under a new name like any other file.
    crate::backend::write_renewing(backend, FileType::Key, &mut file)?;
    Ok(crate::backend::Renewable::name(&file))
}

/// A key file being written: the master key sealed under the password's key (a new nonce
/// gives a new name).
struct NewKeyFile {
    kf: KeyFile,
    user_key: Key,
    master_json: Vec<u8>,
    bytes: Vec<u8>,
}

impl crate::backend::Renewable for NewKeyFile {
    fn name(&self) -> String {
        Id::hash(&self.bytes).to_hex()
    }
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    fn renew(&mut self) {
        let b64 = base64::engine::general_purpose::STANDARD;
        self.kf.data = b64.encode(self.user_key.seal(&self.master_json));
        // A struct of strings and numbers always serializes.
        self.bytes = serde_json::to_vec(&self.kf).unwrap_or_default();
    }
}

/// An unpacked file's encoded bytes, encrypted: a new nonce gives a new name.
struct SealedFile<'a> {
    key: &'a Key,
    plain: &'a [u8],
    sealed: Vec<u8>,
    id: Id,
}

impl<'a> SealedFile<'a> {
    fn new(key: &'a Key, plain: &'a [u8]) -> SealedFile<'a> {
        let sealed = key.seal(plain);
        let id = Id::hash(&sealed);
        SealedFile {
            key,
            plain,
            sealed,
            id,
        }
    }
}

impl crate::backend::Renewable for SealedFile<'_> {
    fn name(&self) -> String {
        self.id.to_hex()
    }
    fn bytes(&self) -> &[u8] {
        &self.sealed
    }
    fn renew(&mut self) {
        *self = SealedFile::new(self.key, self.plain);
    }
}

fn check_file_size(t: FileType, name: &str, size: u64) -> Result<()> {
    let max = max_file_size(t);
    if size > max {
        return Err(Error::corrupt(format!(
            "{}/{name} is {size} bytes, more than any such file has ({max}): the file is damaged; remove it or restore it from a copy",
            t.dir()
        )));
    }
    Ok(())
}

/// Reads and parses a key file of the listed `size`.
fn read_key_file(backend: &dyn Backend, name: &str, size: u64) -> Result<KeyFile> {
    check_file_size(FileType::Key, name, size)?;
    let bytes = backend.read(FileType::Key, name)?;
    check_file_size(FileType::Key, name, bytes.len() as u64)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::corrupt(format!(
            "key file {name} is not a valid key file (malformed JSON: {e}); remove it with `cairn key remove` if other keys open the repository"
        ))
    })
}

fn open_key_file(backend: &dyn Backend, name: &str, size: u64, password: &str) -> Result<Key> {
    let kf = read_key_file(backend, name, size)?;
    if kf.kdf != "scrypt" {
        return Err(Error::new(
            Kind::Unsupported,
            format!("key file {name}: unsupported KDF {:?}", kf.kdf),
        ));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt = b64
        .decode(&kf.salt)
        .map_err(|e| Error::corrupt(format!("key file {name}: salt: {e}")))?;
    let data = b64
        .decode(&kf.data)
        .map_err(|e| Error::corrupt(format!("key file {name}: data: {e}")))?;
    let user_key = derive_key(password, &salt, kf.n, kf.r, kf.p)?;
    let plain = user_key
        .open(&data)
        .map_err(|_| Error::new(Kind::WrongPassword, "wrong password"))?;
    let kj: KeyJson = serde_json::from_slice(&plain)
        .map_err(|e| Error::corrupt(format!("key file {name}: master key: {e}")))?;
    Key::from_json(&kj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalBackend;

    fn fresh(version: u32) -> (tempfile::TempDir, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let be = Arc::new(LocalBackend::new(dir.path().join("r")));
        let repo = Repository::init(be, "pw", version, None).unwrap();
        (dir, repo)
    }

    #[test]
    fn init_then_open_with_the_right_password_only() {
        let (dir, repo) = fresh(2);
        let be = Arc::new(LocalBackend::new(dir.path().join("r")));
        let again = Repository::open(be.clone(), "pw").unwrap();
        assert_eq!(again.config().id, repo.config().id);
        assert!(again.polynomial().is_irreducible());
        let err = Repository::open(be, "nope").err().unwrap();
        assert_eq!(err.kind(), Kind::WrongPassword);
        let missing = Arc::new(LocalBackend::new(dir.path().join("none")));
        assert_eq!(
            Repository::open(missing, "pw").err().unwrap().kind(),
            Kind::NotFound
        );
    }

    #[test]
    fn unpacked_files_round_trip_in_both_format_versions() {
        for v in [1, 2] {
            let (_dir, repo) = fresh(v);
            let data = br#"{"hello":"world","n":[1,2,3]}"#.repeat(100);
            let id = repo.save_file(FileType::Snapshot, &data).unwrap();
            assert_eq!(repo.load_file(FileType::Snapshot, &id).unwrap(), data);
            assert_eq!(
                repo.find_id(FileType::Snapshot, &id.to_hex()[..6]).unwrap(),
                id
            );
            assert_eq!(
                repo.find_id(FileType::Snapshot, "ffffffff")
                    .err()
                    .unwrap()
                    .kind(),
                Kind::NotFound
            );
        }
    }

    #[test]
    fn a_damaged_unpacked_file_is_reported_as_corrupt() {
        let (dir, repo) = fresh(2);
        let id = repo.save_file(FileType::Index, b"{}").unwrap();
        let path = dir.path().join("r/index").join(id.to_hex());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(
            repo.load_file(FileType::Index, &id).err().unwrap().kind(),
            Kind::Corrupt
        );
    }
}
