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
use crate::index::{Index, IndexFile};
use crate::pack::{self, BlobType};
use base64::Engine;
use rand::RngCore;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::sync::Arc;

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
#[derive(Serialize, Deserialize, Debug)]
pub struct KeyFile {
    pub created: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub hostname: String,
    pub kdf: String,
    #[serde(rename = "N")]
    pub n: u64,
    pub r: u32,
    pub p: u32,
    pub salt: String,
    pub data: String,
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

    /// The zstd level, or None when not compressing.
    pub fn level(self) -> Option<i32> {
        match self {
            Compression::Auto => Some(3),
            Compression::Off => None,
            Compression::Max => Some(15),
        }
    }
}

fn derive_key(password: &str, salt: &[u8], n: u64, r: u32, p: u32) -> Result<Key> {
    if !n.is_power_of_two() || n < 2 {
        return Err(Error::corrupt(format!("key file: invalid scrypt N {n}")));
    }
    let log_n = n.trailing_zeros() as u8;
    let params = scrypt::Params::new(log_n, r, p, 64)
        .map_err(|e| Error::corrupt(format!("key file: invalid scrypt parameters: {e}")))?;
    let mut out = [0u8; 64];
    scrypt::scrypt(password.as_bytes(), salt, &params, &mut out)
        .map_err(|e| Error::corrupt(format!("key file: scrypt: {e}")))?;
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

/// An open repository. Cloning is cheap (the backend is shared).
#[derive(Clone)]
pub struct Repository {
    backend: Arc<dyn Backend>,
    key: Key,
    config: Config,
    key_id: String,
    compression: Compression,
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
        let mut last_err = None;
        for k in &keys {
            match open_key_file(backend.as_ref(), &k.name, password) {
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
                    });
                }
                Err(e) if e.kind() == Kind::WrongPassword => {}
                Err(e) => last_err = Some(e),
            }
        }
        if let Some(e) = last_err {
            if keys.len() == 1 {
                return Err(e);
            }
        }
        Err(Error::new(
            Kind::WrongPassword,
            format!(
                "wrong password for repository {} ({} key file(s) tried): check --password-file, --password-command or RESTIC_PASSWORD",
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

    /// The compression to use for new data: none in format v1.
    pub fn compression(&self) -> Compression {
        if self.config.version < 2 {
            Compression::Off
        } else {
            self.compression
        }
    }

    /// Loads, verifies and decrypts an unpacked file (snapshot, index), decompressing v2 data.
    pub fn load_file(&self, t: FileType, id: &Id) -> Result<Vec<u8>> {
        let name = id.to_hex();
        let raw = self.backend.read(t, &name)?;
        if Id::hash(&raw) != *id {
            return Err(Error::corrupt(format!(
                "{}/{name}: content does not match its name (the file is damaged)",
                t.dir()
            )));
        }
        let plain = self
            .key
            .open(&raw)
            .map_err(|e| e.context(format!("{}/{name}", t.dir())))?;
        self.decompress_unpacked(plain)
            .map_err(|e| e.context(format!("{}/{name}", t.dir())))
    }

    fn decompress_unpacked(&self, plain: Vec<u8>) -> Result<Vec<u8>> {
        if self.config.version < 2 {
            return Ok(plain);
        }
        match plain.first() {
            None | Some(b'[') | Some(b'{') => Ok(plain),
            Some(2) => {
                let mut out = Vec::new();
                zstd::stream::copy_decode(&plain[1..], &mut out)
                    .map_err(|e| Error::corrupt(format!("zstd: {e}")))?;
                Ok(out)
            }
            Some(v) => Err(Error::corrupt(format!("unknown encoding version {v}"))),
        }
    }

    /// Encrypts (compressing in v2) and stores an unpacked file; returns its id.
    pub fn save_file(&self, t: FileType, plain: &[u8]) -> Result<Id> {
        let sealed = match (self.config.version, self.compression.level()) {
            (2, Some(level)) => {
                let mut buf = vec![2u8];
                buf.extend_from_slice(
                    &zstd::bulk::compress(plain, level)
                        .map_err(|e| Error::io("zstd compression", e))?,
                );
                self.key.seal(&buf)
            }
            _ => self.key.seal(plain),
        };
        let id = Id::hash(&sealed);
        self.backend.write(t, &id.to_hex(), &sealed)?;
        Ok(id)
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
        Ok(self
            .backend
            .list(t)?
            .iter()
            .filter_map(|f| Id::parse(&f.name))
            .collect())
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

    /// Loads every index file into memory (in parallel).
    pub fn load_index(&self) -> Result<Index> {
        let ids = self.list_ids(FileType::Index)?;
        let files = crate::parallel::map(ids, 4, |id| {
            self.load_json::<IndexFile>(FileType::Index, &id)
        })?;
        let mut index = Index::new();
        for f in &files {
            index.add_file(f);
        }
        self.backend
            .set_tree_packs(index.tree_packs().iter().map(Id::to_hex).collect());
        Ok(index)
    }

    /// Reads one blob through the index, verified.
    pub fn load_blob(&self, index: &Index, t: BlobType, id: &Id) -> Result<Vec<u8>> {
        let loc = index.get(t, id).ok_or_else(|| {
            Error::corrupt(format!(
                "{t} blob {id} is not in the index (run `cairn check`)"
            ))
        })?;
        let stored = self.backend.read_range(
            FileType::Pack,
            &loc.pack.to_hex(),
            loc.blob.offset as u64,
            loc.blob.length as u64,
        )?;
        pack::decode_blob(&self.key, &loc.blob, &stored)
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
            let bytes = self.backend.read(FileType::Key, &f.name)?;
            let kf: KeyFile = serde_json::from_slice(&bytes)
                .map_err(|e| Error::corrupt(format!("key file {}: {e}", f.name)))?;
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
        data: b64.encode(user_key.seal(&master_json)),
    };
    let bytes = serde_json::to_vec(&kf).map_err(|e| Error::invalid(e.to_string()))?;
    let id = Id::hash(&bytes).to_hex();
    backend.write(FileType::Key, &id, &bytes)?;
    Ok(id)
}

fn open_key_file(backend: &dyn Backend, name: &str, password: &str) -> Result<Key> {
    let bytes = backend.read(FileType::Key, name)?;
    let kf: KeyFile = serde_json::from_slice(&bytes)
        .map_err(|e| Error::corrupt(format!("key file {name}: {e}")))?;
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
