//! Key files, through `Repository::open` over an in-memory backend.
//!
//! First input byte even: the rest is a key file's JSON as stored (unauthenticated).
//! Odd: the rest is `master-key JSON [0x00 config JSON]`, the plaintext *after*
//! decryption: the harness seals it into a valid key file (password "fuzz", scrypt N=2)
//! and, when the master key parses, seals the config with it too.
//!
//! Raw key files asking for an scrypt cost above 2^16 are skipped: deriving them is slow
//! by design, and bounding N, r and p is tested by the scrypt limits' own unit tests.
use base64::Engine;
use cairn_repo::backend::{Backend, FileInfo, FileType};
use cairn_repo::crypto::{Key, KeyJson};
use cairn_repo::repository::Repository;
use cairn_repo::{Error, Result};
use std::sync::Arc;

struct Mem {
    key: Vec<u8>,
    config: Vec<u8>,
}

impl Backend for Mem {
    fn location(&self) -> String {
        "mem".into()
    }
    fn create(&self) -> Result<()> {
        Ok(())
    }
    fn has_config(&self) -> Result<bool> {
        Ok(true)
    }
    fn list(&self, t: FileType) -> Result<Vec<FileInfo>> {
        Ok(match t {
            FileType::Key => vec![FileInfo {
                name: "k".repeat(64),
                size: self.key.len() as u64,
            }],
            _ => Vec::new(),
        })
    }
    fn read(&self, t: FileType, _name: &str) -> Result<Vec<u8>> {
        match t {
            FileType::Key => Ok(self.key.clone()),
            FileType::Config => Ok(self.config.clone()),
            _ => Err(Error::not_found("no such file")),
        }
    }
    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let all = self.read(t, name)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(all.len());
        let end = start
            .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
            .min(all.len());
        Ok(all[start..end].to_vec())
    }
    fn write(&self, _t: FileType, _name: &str, _data: &[u8]) -> Result<()> {
        Ok(())
    }
    fn remove(&self, _t: FileType, _name: &str) -> Result<()> {
        Ok(())
    }
}

const SALT: [u8; 16] = [3; 16];

fn user_key() -> Key {
    let params = scrypt::Params::new(1, 1, 1, 64).expect("valid scrypt parameters");
    let mut out = [0u8; 64];
    scrypt::scrypt(b"fuzz", &SALT, &params, &mut out).expect("scrypt output length");
    Key::from_kdf_output(&out)
}

fn cheap(key_file: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(key_file) else {
        return true; // does not parse: the parser under test rejects it before scrypt
    };
    let n = v.get("N").and_then(|x| x.as_u64()).unwrap_or(0);
    let r = v.get("r").and_then(|x| x.as_u64()).unwrap_or(0);
    let p = v.get("p").and_then(|x| x.as_u64()).unwrap_or(0);
    n.saturating_mul(r).saturating_mul(p) <= 1 << 16
}

fn main() {
    let user = user_key();
    let b64 = base64::engine::general_purpose::STANDARD;
    afl::fuzz!(|data: &[u8]| {
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        let mem = if mode % 2 == 0 {
            if !cheap(rest) {
                return;
            }
            Mem {
                key: rest.to_vec(),
                config: Vec::new(),
            }
        } else {
            let (master, config) = match rest.iter().position(|&b| b == 0) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &[][..]),
            };
            let key_file = serde_json::json!({
                "created": "2024-01-02T03:04:05.123456789+01:00",
                "username": "u",
                "hostname": "h",
                "kdf": "scrypt",
                "N": 2,
                "r": 1,
                "p": 1,
                "salt": b64.encode(SALT),
                "data": b64.encode(user.seal(master)),
            });
            let config = match serde_json::from_slice::<KeyJson>(master)
                .ok()
                .and_then(|j| Key::from_json(&j).ok())
            {
                Some(k) => k.seal(config),
                None => config.to_vec(),
            };
            Mem {
                key: serde_json::to_vec(&key_file).expect("json"),
                config,
            }
        };
        let _ = Repository::open(Arc::new(mem), "fuzz");
    });
}
