//! SHA-256 of blob and pack ids, two messages at a time.
//!
//! A backup hashes every byte twice: the plaintext of each chunk (its blob id) and the
//! stored pack (its file name), 29% of a first backup's CPU in `perf`. With the SHA
//! extensions one message runs at the latency of the `sha256rnds2` chain (1.2 GB/s on the
//! bench machine, the same for sha2, ring and OpenSSL); two independent messages
//! interleaved in one loop fill the gaps and run at 1.87 GB/s together. So a file worker
//! hashes its next chunk together with the pack bytes it appended last ([`update2`]).
//!
//! One message alone always goes to sha2's compression function, 16 blocks per call (as
//! fast as the SHA extensions allow for one chain: 1.41 GB/s on an AMD EPYC Zen 2, see the
//! ignored `sha256_speed`); only the two-message loop is ours. Without the SHA extensions
//! (or off x86-64) two messages are also hashed one after the other by sha2.

use crate::id::Id;
use sha2::digest::generic_array::GenericArray;

const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// A running SHA-256.
#[derive(Clone)]
pub struct Sha256 {
    state: [u32; 8],
    /// Bytes of an incomplete block.
    buf: [u8; 64],
    buf_len: usize,
    /// Bytes hashed so far.
    len: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Sha256::new()
    }
}

impl Sha256 {
    pub fn new() -> Sha256 {
        Sha256 {
            state: H0,
            buf: [0; 64],
            buf_len: 0,
            len: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        let rest = self.fill(data);
        let whole = rest.len() / 64 * 64;
        compress1(&mut self.state, &rest[..whole]);
        self.keep(&rest[whole..]);
    }

    pub fn finish(mut self) -> [u8; 32] {
        let bits = self.len.wrapping_mul(8);
        let mut pad = [0u8; 72];
        pad[0] = 0x80;
        let zeros = (119 - (self.len % 64) as usize) % 64;
        pad[1 + zeros..9 + zeros].copy_from_slice(&bits.to_be_bytes());
        self.update(&pad[..9 + zeros]);
        debug_assert_eq!(self.buf_len, 0);
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// Completes the buffered block from the front of `data` (compressing it when full);
    /// returns what is left of `data`.
    fn fill<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        self.len = self.len.wrapping_add(data.len() as u64);
        if self.buf_len == 0 {
            return data;
        }
        let n = (64 - self.buf_len).min(data.len());
        self.buf[self.buf_len..self.buf_len + n].copy_from_slice(&data[..n]);
        self.buf_len += n;
        if self.buf_len == 64 {
            let block = self.buf;
            compress1(&mut self.state, &block);
            self.buf_len = 0;
        }
        &data[n..]
    }

    /// Buffers the tail of a message (less than a block, with nothing buffered).
    fn keep(&mut self, tail: &[u8]) {
        debug_assert!(tail.is_empty() || self.buf_len == 0);
        self.buf[..tail.len()].copy_from_slice(tail);
        self.buf_len += tail.len();
    }
}

/// The SHA-256 of `data`.
pub fn digest(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(data);
    h.finish()
}

/// Adds `da` to `a` and `db` to `b`, the common length of both in one interleaved loop.
pub fn update2(a: &mut Sha256, da: &[u8], b: &mut Sha256, db: &[u8]) {
    let (ra, rb) = (a.fill(da), b.fill(db));
    let (wa, wb) = (ra.len() / 64 * 64, rb.len() / 64 * 64);
    let both = wa.min(wb);
    compress2(&mut a.state, &ra[..both], &mut b.state, &rb[..both]);
    compress1(&mut a.state, &ra[both..wa]);
    compress1(&mut b.state, &rb[both..wb]);
    a.keep(&ra[wa..]);
    b.keep(&rb[wb..]);
}

/// The id of `data`, computed while `other` takes `more` (see the module's comment).
pub fn id_beside(data: &[u8], other: &mut Sha256, more: &[u8]) -> Id {
    let mut h = Sha256::new();
    update2(&mut h, data, other, more);
    Id(h.finish())
}

/// Compresses whole 64-byte blocks: sha2's compression function (with the SHA extensions
/// when the CPU has them), fed 16 blocks per call. One message alone runs faster there
/// than through our interleaved loop with N = 1 (AMD EPYC Zen 2: 1.6 against 1.3 GB/s;
/// Intel Xeon: equal), and a call per block would cost 10% (`sha256_speed`).
fn compress1(state: &mut [u32; 8], blocks: &[u8]) {
    const BATCH: usize = 16;
    let mut batch = [GenericArray::<u8, sha2::digest::consts::U64>::default(); BATCH];
    for group in blocks.chunks(64 * BATCH) {
        let n = group.len() / 64;
        for (dst, src) in batch.iter_mut().zip(group.chunks_exact(64)) {
            dst.copy_from_slice(src);
        }
        sha2::compress256(state, &batch[..n]);
    }
}

/// Compresses the same number of whole blocks into two states.
fn compress2(sa: &mut [u32; 8], a: &[u8], sb: &mut [u32; 8], b: &[u8]) {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if ni::available() && !a.is_empty() {
        ni::compress2(sa, a, sb, b);
        return;
    }
    compress1(sa, a);
    compress1(sb, b);
}

/// The SHA extensions (Intel since Ice Lake and Goldmont, AMD since Zen), Intel's
/// published instruction sequence, N messages interleaved.
#[cfg(target_arch = "x86_64")]
mod ni {
    use std::arch::x86_64::*;

    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse2")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1")
    }

    pub(super) fn compress2(sa: &mut [u32; 8], a: &[u8], sb: &mut [u32; 8], b: &[u8]) {
        let mut states = [*sa, *sb];
        run::<2>(&mut states, [a, b]);
        [*sa, *sb] = states;
    }

    /// Dispatches to the SHA-extension code, which only [`available`] may allow.
    fn run<const N: usize>(states: &mut [[u32; 8]; N], blocks: [&[u8]; N]) {
        assert!(available(), "the SHA extensions are required here");
        // SAFETY: the only requirement of a `#[target_feature]` function is that the CPU
        // has those features, checked at run time just above. This and `mallopt` in the
        // binary are the workspace's only unsafe code (see Cargo.toml).
        #[allow(unsafe_code)]
        unsafe {
            compress_n::<N>(states, blocks)
        }
    }

    /// Loads 16 bytes (safe code: LLVM turns this into one unaligned load).
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn load(b: &[u8]) -> __m128i {
        let v = u128::from_le_bytes(b[..16].try_into().unwrap_or([0; 16]));
        _mm_set_epi64x((v >> 64) as i64, v as i64)
    }

    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn store(w: __m128i, out: &mut [u32]) {
        out[0] = _mm_cvtsi128_si32(w) as u32;
        out[1] = _mm_extract_epi32::<1>(w) as u32;
        out[2] = _mm_extract_epi32::<2>(w) as u32;
        out[3] = _mm_extract_epi32::<3>(w) as u32;
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn compress_n<const N: usize>(states: &mut [[u32; 8]; N], blocks: [&[u8]; N]) {
        let mask = _mm_set_epi64x(0x0c0d0e0f08090a0b, 0x0405060700010203);
        let mut s0 = [_mm_setzero_si128(); N];
        let mut s1 = [_mm_setzero_si128(); N];
        for l in 0..N {
            let st = &states[l];
            let abcd = _mm_set_epi32(st[3] as i32, st[2] as i32, st[1] as i32, st[0] as i32);
            let efgh = _mm_set_epi32(st[7] as i32, st[6] as i32, st[5] as i32, st[4] as i32);
            let cdab = _mm_shuffle_epi32::<0xB1>(abcd);
            let hgfe = _mm_shuffle_epi32::<0x1B>(efgh);
            s0[l] = _mm_alignr_epi8::<8>(cdab, hgfe); // ABEF
            s1[l] = _mm_blend_epi16::<0xF0>(hgfe, cdab); // CDGH
        }
        let count = blocks.iter().map(|b| b.len() / 64).min().unwrap_or(0);
        for n in 0..count {
            let (save0, save1) = (s0, s1);
            let mut w = [[_mm_setzero_si128(); 4]; N];
            for i in 0..16 {
                for l in 0..N {
                    let wi = if i < 4 {
                        let at = n * 64 + i * 16;
                        _mm_shuffle_epi8(load(&blocks[l][at..at + 16]), mask)
                    } else {
                        let t = _mm_alignr_epi8::<4>(w[l][(i - 1) % 4], w[l][(i - 2) % 4]);
                        let m = _mm_sha256msg1_epu32(w[l][(i - 4) % 4], w[l][(i - 3) % 4]);
                        _mm_sha256msg2_epu32(_mm_add_epi32(m, t), w[l][(i - 1) % 4])
                    };
                    w[l][i % 4] = wi;
                    let k = &K[i * 4..i * 4 + 4];
                    let k = _mm_set_epi32(k[3] as i32, k[2] as i32, k[1] as i32, k[0] as i32);
                    let m = _mm_add_epi32(wi, k);
                    s1[l] = _mm_sha256rnds2_epu32(s1[l], s0[l], m);
                    let m = _mm_shuffle_epi32::<0x0E>(m);
                    s0[l] = _mm_sha256rnds2_epu32(s0[l], s1[l], m);
                }
            }
            for l in 0..N {
                s0[l] = _mm_add_epi32(s0[l], save0[l]);
                s1[l] = _mm_add_epi32(s1[l], save1[l]);
            }
        }
        for l in 0..N {
            let feba = _mm_shuffle_epi32::<0x1B>(s0[l]);
            let dchg = _mm_shuffle_epi32::<0xB1>(s1[l]);
            store(_mm_blend_epi16::<0xF0>(feba, dchg), &mut states[l][..4]); // DCBA
            store(_mm_alignr_epi8::<8>(dchg, feba), &mut states[l][4..]); // HGFE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::Digest;

    fn reference(data: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(data).into()
    }

    fn bytes(n: usize, seed: u32) -> Vec<u8> {
        (0..n as u32)
            .map(|i| (i.wrapping_add(seed).wrapping_mul(2654435761) >> 13) as u8)
            .collect()
    }

    #[test]
    fn known_answers_and_every_length_around_the_padding() {
        assert_eq!(
            hex::encode(digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        for n in 0..300 {
            let d = bytes(n, 7);
            assert_eq!(digest(&d), reference(&d), "length {n}");
        }
    }

    /// Both the SHA-extension loop and sha2's compression function, when this CPU has the
    /// extensions (the dispatch picks one; this compares them directly).
    #[test]
    fn interleaved_blocks_equal_one_at_a_time() {
        let (a, b) = (bytes(64 * 37, 1), bytes(64 * 37, 2));
        let (mut sa, mut sb) = (H0, H0);
        compress2(&mut sa, &a, &mut sb, &b);
        let (mut ra, mut rb) = (H0, H0);
        for (s, d) in [(&mut ra, &a), (&mut rb, &b)] {
            for block in d.chunks_exact(64) {
                sha2::compress256(s, std::slice::from_ref(GenericArray::from_slice(block)));
            }
        }
        assert_eq!((sa, sb), (ra, rb));
    }

    /// Throughput of one message and of two interleaved on this CPU (not a check: run
    /// `cargo test --release -p cairn-repo sha256_speed -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn sha256_speed() {
        let (a, b) = (bytes(64 << 20, 1), bytes(64 << 20, 2));
        for _ in 0..2 {
            let t = std::time::Instant::now();
            let (mut sa, mut sb) = (H0, H0);
            compress1(&mut sa, &a);
            let one = t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            compress2(&mut sa, &a, &mut sb, &b);
            let two = t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            let _ = reference(&a);
            let lib = t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            for block in a.chunks_exact(64) {
                sha2::compress256(
                    &mut sa,
                    std::slice::from_ref(GenericArray::from_slice(block)),
                );
            }
            let per_block = t.elapsed().as_secs_f64();
            let gb = a.len() as f64 / 1e9;
            println!(
                "one {:.2} GB/s, two interleaved {:.2} GB/s (both), sha2 {:.2} GB/s, sha2 by block {:.2} GB/s",
                gb / one,
                2.0 * gb / two,
                gb / lib,
                gb / per_block
            );
        }
    }

    proptest! {
        /// Two messages fed in pieces of any sizes, some pairs interleaved and some alone,
        /// give the same digests as sha2 over the whole messages.
        #[test]
        fn pieces_in_any_split_match_sha2(
            la in 0usize..5000,
            lb in 0usize..5000,
            cuts in proptest::collection::vec((0usize..700, 0usize..700, any::<bool>()), 0..12),
        ) {
            let (a, b) = (bytes(la, 3), bytes(lb, 4));
            let (mut ha, mut hb) = (Sha256::new(), Sha256::new());
            let (mut pa, mut pb) = (0, 0);
            for (ca, cb, together) in cuts {
                let (ea, eb) = ((pa + ca).min(la), (pb + cb).min(lb));
                if together {
                    update2(&mut ha, &a[pa..ea], &mut hb, &b[pb..eb]);
                } else {
                    ha.update(&a[pa..ea]);
                    hb.update(&b[pb..eb]);
                }
                (pa, pb) = (ea, eb);
            }
            update2(&mut ha, &a[pa..], &mut hb, &b[pb..]);
            prop_assert_eq!(ha.finish(), reference(&a));
            prop_assert_eq!(hb.finish(), reference(&b));
        }
    }
}
