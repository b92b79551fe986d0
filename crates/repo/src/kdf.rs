//! scrypt (RFC 7914) as restic derives a key file's key, computed in bounded memory.
//!
//! ROMix needs N blocks of 128·r bytes (restic's N=2^15, r=8: 32 MiB per lane, and restic
//! runs its p=5 lanes one after the other: its `snapshots` peaks at ≈53 MiB). We keep only
//! every `stride`-th block of the table and recompute the others from the nearest kept one
//! when the second loop asks for them (scrypt's time-memory trade-off: the same bytes out,
//! 1/stride of the memory, on average (stride-1)/2 extra BlockMix per lookup). The lanes
//! are independent and may run on several threads; [`plan`] picks threads and stride that
//! fit a memory budget with the least wall time.

use crate::error::{Error, Result};

/// The most memory the tables of one scrypt run may use at once, all threads together,
/// unless [`set_memory_budget`] said otherwise. With our process's ≈11 MiB base this keeps
/// light commands (`snapshots`, `forget`, restoring one file) near half of restic's peak;
/// restic's key files then take 1.75 times the work per lane (a quarter of each table kept,
/// two lanes at once on 2 cores).
pub const MEMORY_BUDGET: u64 = 16 << 20;

/// The budget for commands whose own work holds more than scrypt's tables anyway (backup,
/// check, prune): two whole 32 MiB tables at once, restic's lanes in 3/5 of its time.
pub const FAST_BUDGET: u64 = 64 << 20;

static BUDGET: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(MEMORY_BUDGET);

/// Sets the memory budget of the key derivations that follow in this process.
pub fn set_memory_budget(bytes: u64) {
    BUDGET.store(bytes, std::sync::atomic::Ordering::Relaxed);
}

/// The budget set for this process ([`MEMORY_BUDGET`] unless changed).
pub fn memory_budget() -> u64 {
    BUDGET.load(std::sync::atomic::Ordering::Relaxed)
}

// One 64-byte block in the layout of this target's `block` module, and its operations.
use block::{first_word, from_words, salsa20_8, to_words, xor_block, zero, Block};

/// Salsa20/8 on SSE2 vectors (every x86_64 has SSE2; `safe_arch` wraps its intrinsics as
/// safe functions). A block is four vectors holding its 16 words on diagonals, as in Colin
/// Percival's SSE scrypt (position q = 4·vector + lane holds word 5q mod 16), so that each
/// step of four quarter-rounds is one vector operation. Measured (perf: BlockMix and ROMix
/// are ≈90% of `cairn snapshots`): 0.29 → 0.26 s wall, 0.48 → 0.43 CPU-s per derivation
/// of N=2^15, r=8, p=5. Not more: one Salsa20/8 is a chain of dependent steps, which the
/// scalar code's four independent quarter-rounds already overlapped.
#[cfg(target_arch = "x86_64")]
mod block {
    use safe_arch::{
        add_i32_m128i, bitor_m128i, bitxor_m128i, m128i, shl_imm_u32_m128i, shr_imm_u32_m128i,
        shuffle_ai_f32_all_m128i as shuffle,
    };

    pub(super) type Block = [m128i; 4];

    pub(super) fn zero() -> Block {
        [m128i::default(); 4]
    }

    /// Position q of the diagonal layout holds word 5q mod 16.
    const fn word_at(q: usize) -> usize {
        5 * q % 16
    }

    pub(super) fn from_words(w: &[u32; 16]) -> Block {
        let lane = |k: usize| {
            let at = |i: usize| w[word_at(4 * k + i)];
            m128i::from([at(0), at(1), at(2), at(3)])
        };
        [lane(0), lane(1), lane(2), lane(3)]
    }

    pub(super) fn to_words(b: &Block) -> [u32; 16] {
        let mut w = [0u32; 16];
        for (k, v) in b.iter().enumerate() {
            let lanes: [u32; 4] = (*v).into();
            for (i, x) in lanes.into_iter().enumerate() {
                w[word_at(4 * k + i)] = x;
            }
        }
        w
    }

    /// Word 0 (scrypt's Integerify): position 0 of the layout.
    #[inline(always)]
    pub(super) fn first_word(b: &Block) -> u32 {
        <[u32; 4]>::from(b[0])[0]
    }

    #[inline(always)]
    pub(super) fn xor_block(a: &mut Block, b: &Block) {
        for (x, y) in a.iter_mut().zip(b) {
            *x = bitxor_m128i(*x, *y);
        }
    }

    macro_rules! rotl_xor {
        ($dst:expr, $t:expr, $n:literal, $m:literal) => {{
            let t = $t;
            $dst = bitxor_m128i(
                $dst,
                bitor_m128i(shl_imm_u32_m128i::<$n>(t), shr_imm_u32_m128i::<$m>(t)),
            )
        }};
    }

    #[inline(always)]
    pub(super) fn salsa20_8(b: &mut Block) {
        let [mut x0, mut x1, mut x2, mut x3] = *b;
        for _ in 0..4 {
            // Columns.
            rotl_xor!(x1, add_i32_m128i(x0, x3), 7, 25);
            rotl_xor!(x2, add_i32_m128i(x1, x0), 9, 23);
            rotl_xor!(x3, add_i32_m128i(x2, x1), 13, 19);
            rotl_xor!(x0, add_i32_m128i(x3, x2), 18, 14);
            x1 = shuffle::<0x93>(x1);
            x2 = shuffle::<0x4E>(x2);
            x3 = shuffle::<0x39>(x3);
            // Rows.
            rotl_xor!(x3, add_i32_m128i(x0, x1), 7, 25);
            rotl_xor!(x2, add_i32_m128i(x3, x0), 9, 23);
            rotl_xor!(x1, add_i32_m128i(x2, x3), 13, 19);
            rotl_xor!(x0, add_i32_m128i(x1, x2), 18, 14);
            x1 = shuffle::<0x39>(x1);
            x2 = shuffle::<0x4E>(x2);
            x3 = shuffle::<0x93>(x3);
        }
        b[0] = add_i32_m128i(b[0], x0);
        b[1] = add_i32_m128i(b[1], x1);
        b[2] = add_i32_m128i(b[2], x2);
        b[3] = add_i32_m128i(b[3], x3);
    }
}

/// Salsa20/8 on 16 words, for targets without SSE2.
#[cfg(not(target_arch = "x86_64"))]
mod block {
    pub(super) type Block = [u32; 16];
    pub(super) fn zero() -> Block {
        [0; 16]
    }

    pub(super) fn from_words(w: &[u32; 16]) -> Block {
        *w
    }

    pub(super) fn to_words(b: &Block) -> [u32; 16] {
        *b
    }

    #[inline(always)]
    pub(super) fn first_word(b: &Block) -> u32 {
        b[0]
    }

    #[inline(always)]
    pub(super) fn xor_block(a: &mut Block, b: &Block) {
        for (x, y) in a.iter_mut().zip(b) {
            *x ^= y;
        }
    }

    #[inline(always)]
    pub(super) fn salsa20_8(b: &mut Block) {
        let mut x = *b;
        macro_rules! qr {
            ($a:expr, $b:expr, $c:expr, $d:expr) => {
                x[$b] ^= x[$a].wrapping_add(x[$d]).rotate_left(7);
                x[$c] ^= x[$b].wrapping_add(x[$a]).rotate_left(9);
                x[$d] ^= x[$c].wrapping_add(x[$b]).rotate_left(13);
                x[$a] ^= x[$d].wrapping_add(x[$c]).rotate_left(18);
            };
        }
        for _ in 0..4 {
            qr!(0, 4, 8, 12);
            qr!(5, 9, 13, 1);
            qr!(10, 14, 2, 6);
            qr!(15, 3, 7, 11);
            qr!(0, 1, 2, 3);
            qr!(5, 6, 7, 4);
            qr!(10, 11, 8, 9);
            qr!(15, 12, 13, 14);
        }
        for (o, v) in b.iter_mut().zip(x) {
            *o = o.wrapping_add(v);
        }
    }
}

/// BlockMix over `2r` blocks: `input` to `output` (even blocks to the first half, odd
/// ones to the second).
fn block_mix(input: &[Block], output: &mut [Block]) {
    let half = input.len() / 2;
    let Some(mut x) = input.last().copied() else {
        return;
    };
    for (i, b) in input.iter().enumerate() {
        xor_block(&mut x, b);
        salsa20_8(&mut x);
        output[i / 2 + (i % 2) * half] = x;
    }
}

fn xor_into(x: &mut [Block], v: &[Block]) {
    for (a, b) in x.iter_mut().zip(v) {
        xor_block(a, b);
    }
}

/// ROMix of one lane (`2r` blocks) with `n` rounds, keeping every `stride`-th of its `n`
/// blocks in `v` (`n.div_ceil(stride) * 2r` blocks).
fn ro_mix(lane: &mut [Block], v: &mut [Block], n: usize, stride: usize) {
    let len = lane.len();
    let mut x = lane.to_vec();
    let mut y = x.clone();
    for i in 0..n {
        if i.is_multiple_of(stride) {
            let at = i / stride * len;
            v[at..at + len].copy_from_slice(&x);
        }
        block_mix(&x, &mut y);
        std::mem::swap(&mut x, &mut y);
    }
    let (mut t, mut u) = (x.clone(), x.clone());
    for _ in 0..n {
        // Integerify: the first word of the last block.
        let j = (first_word(&x[len - 1]) as usize) & (n - 1);
        let at = j / stride * len;
        let kept = &v[at..at + len];
        if j.is_multiple_of(stride) {
            xor_into(&mut x, kept);
        } else {
            t.copy_from_slice(kept);
            for _ in 0..j % stride {
                block_mix(&t, &mut u);
                std::mem::swap(&mut t, &mut u);
            }
            xor_into(&mut x, &t);
        }
        block_mix(&x, &mut y);
        std::mem::swap(&mut x, &mut y);
    }
    lane.copy_from_slice(&x);
}

/// Threads and stride for `p` lanes of `lane_memory` bytes each within `budget` bytes:
/// the least wall time (in BlockMix calls of the slowest thread), then the fewest threads.
pub(crate) fn plan(
    n: usize,
    lane_memory: u64,
    p: usize,
    threads: usize,
    budget: u64,
) -> (usize, usize) {
    let mut best = (u128::MAX, 1, n.max(1));
    for t in 1..=threads.clamp(1, p.max(1)) {
        let stride = (lane_memory.saturating_mul(t as u64))
            .div_ceil(budget.max(1))
            .clamp(1, n.max(1) as u64) as usize;
        // Per lane: n to fill, n lookups of (stride - 1) / 2 extra BlockMix on average.
        let per_lane = 2 * n as u128 * 2 + n as u128 * (stride as u128 - 1);
        let wall = p.div_ceil(t) as u128 * per_lane;
        if wall < best.0 {
            best = (wall, t, stride);
        }
    }
    (best.1, best.2)
}

/// PBKDF2-HMAC-SHA256 with one iteration (all scrypt needs): block `i` of the output is
/// HMAC(password, salt || i as u32 BE).
fn pbkdf2_sha256_once(password: &[u8], salt: &[u8], out: &mut [u8]) {
    use hmac::{Hmac, Mac};
    let Ok(base) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(password) else {
        return; // HMAC takes a key of any length: not reached.
    };
    for (i, chunk) in out.chunks_mut(32).enumerate() {
        let mut m = base.clone();
        m.update(salt);
        m.update(&(i as u32 + 1).to_be_bytes());
        let t = m.finalize().into_bytes();
        chunk.copy_from_slice(&t[..chunk.len()]);
    }
}

/// scrypt with N = 2^`log_n`: the same bytes as the `scrypt` crate. The `p` lanes run on
/// up to `threads` threads, all tables together within `budget` bytes (see [`plan`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn scrypt(
    password: &[u8],
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
    threads: usize,
    budget: u64,
    out: &mut [u8],
) -> Result<()> {
    let n = 1usize
        .checked_shl(u32::from(log_n))
        .filter(|&n| log_n < 31 && n > 1)
        .ok_or_else(|| Error::corrupt("scrypt: N out of range"))?;
    let (r, p) = (r as usize, p as usize);
    if r == 0 || p == 0 || out.is_empty() {
        return Err(Error::corrupt(
            "scrypt: r, p and the output must not be empty",
        ));
    }
    let lane_bytes = 128 * r;
    let mut b = vec![0u8; p * lane_bytes];
    pbkdf2_sha256_once(password, salt, &mut b);
    let mut blocks: Vec<Block> = b
        .chunks_exact(64)
        .map(|c| {
            let mut words = [0u32; 16];
            for (w, c) in words.iter_mut().zip(c.chunks_exact(4)) {
                *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
            from_words(&words)
        })
        .collect();
    let lane_memory = (n as u64).saturating_mul(lane_bytes as u64);
    let (threads, stride) = plan(n, lane_memory, p, threads, budget);
    let slots = n.div_ceil(stride) * 2 * r;
    let lanes: Vec<&mut [Block]> = blocks.chunks_mut(2 * r).collect();
    let queue = std::sync::Mutex::new(lanes.into_iter());
    let mixed = std::sync::atomic::AtomicUsize::new(0);
    let run = || {
        // A thread that cannot get its memory leaves its lanes to the others.
        let mut v: Vec<Block> = Vec::new();
        if v.try_reserve_exact(slots).is_err() {
            return;
        }
        v.resize(slots, zero());
        while let Some(lane) = queue.lock().ok().and_then(|mut q| q.next()) {
            ro_mix(lane, &mut v, n, stride);
            mixed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    };
    if threads <= 1 {
        run();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(run);
            }
        });
    }
    if mixed.into_inner() != p {
        return Err(Error::corrupt(format!(
            "scrypt: cannot allocate {} MiB",
            (slots * 64) >> 20
        )));
    }
    for (c, blk) in b.chunks_exact_mut(64).zip(&blocks) {
        for (c, w) in c.chunks_exact_mut(4).zip(to_words(blk)) {
            c.copy_from_slice(&w.to_le_bytes());
        }
    }
    pbkdf2_sha256_once(password, &b, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(log_n: u8, r: u32, p: u32) -> [u8; 64] {
        let params = ::scrypt::Params::new(log_n, r, p, 64).unwrap();
        let mut want = [0u8; 64];
        ::scrypt::scrypt(b"pw", &[9u8; 64], &params, &mut want).unwrap();
        want
    }

    #[test]
    fn every_stride_and_thread_count_gives_the_scrypt_crates_bytes() {
        for (log_n, r, p) in [(1, 1, 1), (4, 1, 5), (6, 8, 5), (5, 3, 2), (7, 2, 3)] {
            let want = reference(log_n, r, p);
            let n = 1u64 << log_n;
            let lane = n * 128 * u64::from(r);
            // Budgets from the whole table on every thread down to one block kept.
            for budget in [u64::MAX, lane * 4, lane, lane / 2, lane / 3, lane / 7, 1] {
                for threads in [1, 2, 3] {
                    let mut got = [0u8; 64];
                    scrypt(b"pw", &[9u8; 64], log_n, r, p, threads, budget, &mut got).unwrap();
                    assert_eq!(
                        got, want,
                        "N=2^{log_n} r={r} p={p} budget={budget} threads={threads}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_plan_stays_within_the_budget() {
        // restic's key files: N=2^15, r=8 (32 MiB a lane), p=5, on 2 cores.
        let lane = 32 << 20;
        let (t, stride) = plan(1 << 15, lane, 5, 2, MEMORY_BUDGET);
        assert!(
            t as u64 * lane / stride as u64 <= MEMORY_BUDGET,
            "{t} {stride}"
        );
        assert_eq!(plan(1 << 15, lane, 5, 2, 64 << 20), (2, 1));
        assert_eq!(plan(1 << 15, lane, 5, 1, 64 << 20), (1, 1));
        assert_eq!(plan(1 << 15, lane, 1, 8, 16 << 20), (1, 2));
        // Nothing fits: one block kept, never a division by zero.
        assert_eq!(plan(4, lane, 2, 2, 0).1, 4);
    }
}
