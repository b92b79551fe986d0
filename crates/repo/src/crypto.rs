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
/// Bytes `seal_into` copies, encrypts and MACs at a time (a multiple of 16, well inside L1).
const SEAL_PIECE: usize = 8 * 1024;

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
        use poly1305::universal_hash::{KeyInit as _, UniversalHash as _};
        let mut mac = poly1305::Poly1305::new(&self.poly_key(iv));
        // The whole 16-byte blocks through `update_padded` (no padding needed), which
        // hands the AVX2 backend four blocks at a time; `compute_unpadded` alone feeds it
        // one block per call, 5x slower. Then the partial last block, padded the unpadded
        // way. Same tag.
        let (full, tail) = ciphertext.split_at(ciphertext.len() & !15);
        mac.update_padded(full);
        mac.compute_unpadded(tail).into()
    }

    /// Encrypts `plaintext` with a fresh random IV, appending `IV || ciphertext || MAC` to `out`.
    pub fn seal_into(&self, plaintext: &[u8], out: &mut Vec<u8>) {
        out.reserve(plaintext.len() + OVERHEAD);
        let at = out.len();
        out.extend_from_slice(&[0; IV_LEN]);
        self.seal_at(out, at, Some(plaintext));
    }

    /// Seals in place the plaintext in `buf[at + IV_LEN..]`, behind `IV_LEN` bytes the
    /// caller left at `at` for the IV: `buf` ends as `seal_into` would have left it.
    pub fn seal_in_place(&self, buf: &mut Vec<u8>, at: usize) {
        self.seal_at(buf, at, None);
    }

    /// Fills the IV at `buf[at..]`, then encrypts and MACs the plaintext behind it: copied
    /// from `src` piece by piece, or already there (`None`); appends the tag.
    fn seal_at(&self, buf: &mut Vec<u8>, at: usize, src: Option<&[u8]>) {
        let mut iv = [0u8; IV_LEN];
        rand::thread_rng().fill_bytes(&mut iv);
        use poly1305::universal_hash::{KeyInit as _, UniversalHash as _};
        buf[at..at + IV_LEN].copy_from_slice(&iv);
        let mut cipher = Aes256Ctr::new(&self.encrypt.into(), &iv.into());
        let mut mac = poly1305::Poly1305::new(&self.poly_key(&iv));
        let start = at + IV_LEN;
        let total = src.map_or(buf.len() - start, <[u8]>::len);
        // One pass over the data in pieces that stay in the L1 cache: (copy a piece into
        // place,) encrypt it there, MAC the ciphertext while it is still hot (three passes
        // over a whole blob went to memory twice more). The pieces are whole 16-byte blocks
        // but the last, so the keystream and the MAC see the same bytes as in one call.
        let mut done = 0;
        loop {
            let n = SEAL_PIECE.min(total - done);
            if let Some(src) = src {
                buf.extend_from_slice(&src[done..done + n]);
            }
            let ct = &mut buf[start + done..start + done + n];
            cipher.apply_keystream(ct);
            done += n;
            if done < total {
                mac.update_padded(ct);
            } else {
                let (full, tail) = ct.split_at(ct.len() & !15);
                mac.update_padded(full);
                let tag: [u8; 16] = mac.compute_unpadded(tail).into();
                buf.extend_from_slice(&tag);
                return;
            }
        }
    }

    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        self.seal_into(plaintext, &mut out);
        out
    }

    /// Verifies the MAC and decrypts. A wrong key and damaged bytes both fail here.
    pub fn open(&self, data: &[u8]) -> Result<Vec<u8>> {
        self.open_owned(data.to_vec())
    }

    /// Like `open` for bytes the caller owns: decrypted where they are, without a copy
    /// (index files run to tens of megabytes).
    pub fn open_owned(&self, mut buf: Vec<u8>) -> Result<Vec<u8>> {
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

/// The salt length restic's KDF requires (it refuses any other).
pub const KDF_SALT_LEN: usize = 64;
/// The most memory scrypt may use for a key file (128 * N * r bytes). restic allows up
/// to 2 GiB but its own key files use at most 60 MiB (it calibrates within that), rustic's
/// 128 MiB; a key file is not authenticated, so anyone who can write one must not make us
/// allocate gigabytes.
pub const KDF_MAX_MEMORY: u64 = 512 << 20;
/// The most work scrypt may do for a key file (N * r * p): 50 times restic's default
/// (N=2^15, r=8, p=5), a few seconds rather than hours.
pub const KDF_MAX_WORK: u64 = 1 << 26;

/// Checks scrypt parameters read from a (not authenticated) key file: restic's rules
/// (simple-scrypt's `Params.Check` and its salt length), then our memory and work caps.
pub fn check_kdf_params(n: u64, r: u32, p: u32, salt_len: usize) -> Result<()> {
    const MAX_INT: u64 = (1 << 31) - 1;
    let (r64, p64) = (u64::from(r), u64::from(p));
    let bad = |why: &str| {
        Err(Error::corrupt(format!(
            "key file: scrypt parameters N={n}, r={r}, p={p} (salt of {salt_len} bytes) refused: {why}; restic would refuse them too or they would need more than {} MiB or minutes of work: the key file is damaged or not restic's",
            KDF_MAX_MEMORY >> 20
        )))
    };
    if n <= 1 || n > MAX_INT || !n.is_power_of_two() {
        return bad("N must be a power of two from 2 to 2^30");
    }
    if r == 0 || p == 0 {
        return bad("r and p must be at least 1");
    }
    if r64 * p64 >= 1 << 30
        || r64 > MAX_INT / 128 / p64
        || r64 > MAX_INT / 256
        || n > MAX_INT / 128 / r64
    {
        return bad("beyond scrypt's limits");
    }
    if salt_len != KDF_SALT_LEN {
        return bad("the salt must be 64 bytes");
    }
    if 128 * n * r64 > KDF_MAX_MEMORY {
        return bad("too much memory");
    }
    if n * r64 * p64 > KDF_MAX_WORK {
        return bad("too much work");
    }
    Ok(())
}

/// scrypt (RFC 7914) with N = 2^`log_n`, as restic derives a key file's key: the same
/// bytes as the `scrypt` crate, with the `p` independent lanes spread over up to `threads`
/// threads and all their tables within [`crate::kdf::memory_budget`] (blocks beyond it are
/// recomputed: see [`crate::kdf`]). The parameters must have passed [`check_kdf_params`].
pub fn scrypt_kdf(
    password: &[u8],
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
    threads: usize,
    out: &mut [u8],
) -> Result<()> {
    crate::kdf::scrypt(
        password,
        salt,
        log_n,
        r,
        p,
        threads,
        crate::kdf::memory_budget(),
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdf_parameters_are_bounded_like_restic_and_in_memory() {
        // restic's defaults and rustic's.
        check_kdf_params(1 << 15, 8, 5, 64).unwrap();
        check_kdf_params(1 << 17, 8, 1, 64).unwrap();
        for (n, r, p, salt) in [
            (0, 8, 1, 64),
            (1, 8, 1, 64),
            (3 << 10, 8, 1, 64),
            (1 << 31, 1, 1, 64),
            (u64::MAX, 8, 1, 64),
            (1 << 15, 0, 1, 64),
            (1 << 15, 8, 0, 64),
            (1 << 15, 8, 1, 16),
            (1 << 20, 8, 1, 64),      // 1 GiB: restic accepts it, we do not
            (1 << 24, 1 << 7, 1, 64), // 256 GiB
            (2, 1 << 24, 1, 64),
            (1 << 15, 8, 1 << 20, 64), // hours of work
            (1 << 15, u32::MAX, u32::MAX, 64),
        ] {
            let e = check_kdf_params(n, r, p, salt).unwrap_err();
            assert_eq!(e.kind(), crate::error::Kind::Corrupt, "{n} {r} {p}");
            assert!(e.to_string().contains("refused"), "{e}");
        }
    }

    #[test]
    fn scrypt_kdf_matches_the_scrypt_crate_and_rfc_7914() {
        // RFC 7914, section 12, second vector.
        let mut out = [0u8; 64];
        scrypt_kdf(b"password", b"NaCl", 10, 8, 16, 3, &mut out).unwrap();
        assert_eq!(
            hex::encode(out),
            "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162\
             2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
        );
        for (log_n, r, p, threads) in [(1, 1, 1, 1), (4, 1, 5, 2), (6, 8, 5, 2), (5, 3, 2, 8)] {
            let params = scrypt::Params::new(log_n, r, p, 64).unwrap();
            let mut want = [0u8; 64];
            scrypt::scrypt(b"pw", &[9u8; 64], &params, &mut want).unwrap();
            let mut got = [0u8; 64];
            scrypt_kdf(b"pw", &[9u8; 64], log_n, r, p, threads, &mut got).unwrap();
            assert_eq!(got, want, "N=2^{log_n} r={r} p={p}");
        }
    }

    #[test]
    fn the_mac_is_poly1305_of_the_whole_ciphertext_at_every_length() {
        use poly1305::universal_hash::KeyInit as _;
        let key = Key::random();
        let iv = [7u8; IV_LEN];
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        for len in (0..200).chain([1023, 1024, 1025, 4096 + 15, 5000]) {
            let ct = &data[..len];
            let reference: [u8; 16] = poly1305::Poly1305::new(&key.poly_key(&iv))
                .compute_unpadded(ct)
                .into();
            assert_eq!(key.mac(&iv, ct), reference, "length {len}");
        }
    }

    /// `seal_into` and `seal_in_place` work in pieces: every length around the piece size
    /// opens with the whole-buffer MAC and keystream of `open`, after what the buffer held.
    #[test]
    fn sealing_in_pieces_matches_the_whole_buffer_mac_and_keystream() {
        let key = Key::random();
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 253) as u8).collect();
        for len in [
            0,
            1,
            15,
            16,
            17,
            SEAL_PIECE - 1,
            SEAL_PIECE,
            SEAL_PIECE + 1,
            2 * SEAL_PIECE + 15,
            70_000,
        ] {
            let mut out = vec![9u8; 3];
            key.seal_into(&data[..len], &mut out);
            assert_eq!(&out[..3], &[9, 9, 9]);
            assert_eq!(out.len(), 3 + len + OVERHEAD);
            assert_eq!(key.open(&out[3..]).unwrap(), &data[..len], "length {len}");
            // In place: the plaintext already behind room for the IV.
            let mut buf = vec![9u8; 3 + IV_LEN];
            buf.extend_from_slice(&data[..len]);
            key.seal_in_place(&mut buf, 3);
            assert_eq!(&buf[..3], &[9, 9, 9]);
            assert_eq!(buf.len(), 3 + len + OVERHEAD);
            assert_eq!(
                key.open(&buf[3..]).unwrap(),
                &data[..len],
                "in place, length {len}"
            );
        }
    }

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
