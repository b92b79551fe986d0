//! Encryption as restic does it: AES-256-CTR with a random 16-byte IV, then Poly1305-AES
//! over the ciphertext. Stored layout: `IV || ciphertext || MAC`.
//!
//! Owns the master key type and the seal/open operations; knows nothing of files.

use crate::error::{Error, Result};
use aes::cipher::{BlockEncrypt, KeyInit, KeyIvInit, StreamCipher};
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

pub const IV_LEN: usize = 16;
pub const MAC_LEN: usize = 16;
/// Bytes an encrypted object has beyond its plaintext.
pub const OVERHEAD: usize = IV_LEN + MAC_LEN;

/// The 16-byte mask restic (and Poly1305) applies to `r`.
const R_MASK: [u8; 16] = [
    0xff, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f,
];

/// A repository master key (or a key derived from a password): AES-256 key plus
/// Poly1305-AES key (`k` for AES-128 of the nonce, `r` for the polynomial).
#[derive(Clone)]
pub struct Key {
    encrypt: [u8; 32],
    mac_k: [u8; 16],
    mac_r: [u8; 16],
}

impl Key {
    pub fn random() -> Key {
        let mut rng = rand::thread_rng();
        let mut k = Key {
            encrypt: [0; 32],
            mac_k: [0; 16],
            mac_r: [0; 16],
        };
        rng.fill_bytes(&mut k.encrypt);
        rng.fill_bytes(&mut k.mac_k);
        rng.fill_bytes(&mut k.mac_r);
        k
    }

    /// Builds a key from 64 bytes of KDF output: 32 encryption, 16 `k`, 16 `r`.
    pub fn from_kdf_output(bytes: &[u8; 64]) -> Key {
        let mut k = Key {
            encrypt: [0; 32],
            mac_k: [0; 16],
            mac_r: [0; 16],
        };
        k.encrypt.copy_from_slice(&bytes[..32]);
        k.mac_k.copy_from_slice(&bytes[32..48]);
        k.mac_r.copy_from_slice(&bytes[48..64]);
        k
    }

    fn poly_key(&self, iv: &[u8]) -> poly1305::Key {
        let mut out = [0u8; 32];
        for (o, (r, m)) in out[..16].iter_mut().zip(self.mac_r.iter().zip(R_MASK)) {
            *o = r & m;
        }
        let cipher = aes::Aes128::new(&self.mac_k.into());
        let mut block = aes::Block::clone_from_slice(iv);
        cipher.encrypt_block(&mut block);
        out[16..].copy_from_slice(&block);
        out.into()
    }

    fn mac(&self, iv: &[u8], ciphertext: &[u8]) -> [u8; 16] {
        use poly1305::universal_hash::KeyInit as _;
        poly1305::Poly1305::new(&self.poly_key(iv))
            .compute_unpadded(ciphertext)
            .into()
    }

    /// Encrypts `plaintext` with a fresh random IV, appending `IV || ciphertext || MAC` to `out`.
    pub fn seal_into(&self, plaintext: &[u8], out: &mut Vec<u8>) {
        let mut iv = [0u8; IV_LEN];
        rand::thread_rng().fill_bytes(&mut iv);
        let start = out.len();
        out.reserve(plaintext.len() + OVERHEAD);
        out.extend_from_slice(&iv);
        out.extend_from_slice(plaintext);
        let ct = &mut out[start + IV_LEN..];
        Aes256Ctr::new(&self.encrypt.into(), &iv.into()).apply_keystream(ct);
        let tag = self.mac(&iv, ct);
        out.extend_from_slice(&tag);
    }

    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        self.seal_into(plaintext, &mut out);
        out
    }

    /// Verifies the MAC and decrypts. A wrong key and damaged bytes both fail here.
    pub fn open(&self, data: &[u8]) -> Result<Vec<u8>> {
        let mut buf = data.to_vec();
        let len = self.open_in_place(&mut buf)?.len();
        buf.drain(..IV_LEN);
        buf.truncate(len);
        Ok(buf)
    }

    /// Like `open`, decrypting in place; returns the plaintext part of `data`.
    pub fn open_in_place<'a>(&self, data: &'a mut [u8]) -> Result<&'a mut [u8]> {
        if data.len() < OVERHEAD {
            return Err(Error::corrupt(format!(
                "encrypted object too short ({} bytes)",
                data.len()
            )));
        }
        let (iv, rest) = data.split_at(IV_LEN);
        let (ct, tag) = rest.split_at(rest.len() - MAC_LEN);
        let expected = self.mac(iv, ct);
        // Constant-time comparison: fold the differences.
        let diff = expected
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(Error::corrupt(
                "ciphertext verification failed (MAC mismatch)",
            ));
        }
        let mut iv_arr = [0u8; IV_LEN];
        iv_arr.copy_from_slice(iv);
        let end = data.len() - MAC_LEN;
        let plain = &mut data[IV_LEN..end];
        Aes256Ctr::new(&self.encrypt.into(), &iv_arr.into()).apply_keystream(plain);
        Ok(plain)
    }
}

/// The master key as restic stores it (JSON inside a key file's encrypted `data`).
#[derive(Serialize, Deserialize)]
pub struct KeyJson {
    pub mac: MacJson,
    pub encrypt: String,
}

#[derive(Serialize, Deserialize)]
pub struct MacJson {
    pub k: String,
    pub r: String,
}

impl Key {
    pub fn to_json(&self) -> KeyJson {
        let b64 = base64::engine::general_purpose::STANDARD;
        KeyJson {
            mac: MacJson {
                k: b64.encode(self.mac_k),
                r: b64.encode(self.mac_r),
            },
            encrypt: b64.encode(self.encrypt),
        }
    }

    pub fn from_json(j: &KeyJson) -> Result<Key> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let dec = |s: &str, n: usize| -> Result<Vec<u8>> {
            let v = b64
                .decode(s)
                .map_err(|e| Error::corrupt(format!("master key: bad base64: {e}")))?;
            if v.len() != n {
                return Err(Error::corrupt("master key: wrong key length"));
            }
            Ok(v)
        };
        let mut k = Key {
            encrypt: [0; 32],
            mac_k: [0; 16],
            mac_r: [0; 16],
        };
        k.encrypt.copy_from_slice(&dec(&j.encrypt, 32)?);
        k.mac_k.copy_from_slice(&dec(&j.mac.k, 16)?);
        k.mac_r.copy_from_slice(&dec(&j.mac.r, 16)?);
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_detects_a_flipped_bit() {
        let key = Key::random();
        let sealed = key.seal(b"hello restic");
        assert_eq!(sealed.len(), 12 + OVERHEAD);
        assert_eq!(key.open(&sealed).unwrap(), b"hello restic");
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert_eq!(
            key.open(&bad).unwrap_err().kind(),
            crate::error::Kind::Corrupt
        );
        assert!(Key::random().open(&sealed).is_err());
    }
}
