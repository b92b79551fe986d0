//! scrypt (RFC 7914) as restic derives a key file's key, computed in bounded memory.
//!
//! ROMix needs N blocks of 128·r bytes (restic's N=2^15, r=8: 32 MiB per lane, and restic
//! runs its p=5 lanes one after the other: its `snapshots` peaks at ≈53 MiB). We keep only
//! every `stride`-th block of the table and recompute the others from the nearest kept one
//! when the second loop asks for them (scrypt's time-memory trade-off: the same bytes out,
//! 1/stride of the memory, on average (stride-1)/2 extra BlockMix per lookup). The lanes
//! are independent: they run on several threads, and a thread mixes a group of them side
//! by side so that their dependent Salsa20/8 chains overlap in the core; [`plan`] picks
//! threads, group and stride that fit a memory budget with the least wall time (restic's
//! p=5 on 2 cores in 64 MiB: 216-225 → 177 ms, groups of three at stride 3).

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
use block::{first_word, from_words, salsa20_8_many, to_words, xor_block, Block};

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

    /// Salsa20/8 of `K` independent blocks, each step applied to all of them before the
    /// next: one block's Salsa20/8 is a chain of dependent vector operations (add, two
    /// shifts, or, xor) whose latency leaves most of the core's ports idle; `K` chains side
    /// by side fill them.
    #[inline(always)]
    pub(super) fn salsa20_8_many<const K: usize>(b: &mut [Block; K]) {
        let mut x = *b;
        for _ in 0..4 {
            for x in &mut x {
                rotl_xor!(x[1], add_i32_m128i(x[0], x[3]), 7, 25);
            }
            for x in &mut x {
                rotl_xor!(x[2], add_i32_m128i(x[1], x[0]), 9, 23);
            }
            for x in &mut x {
                rotl_xor!(x[3], add_i32_m128i(x[2], x[1]), 13, 19);
            }
            for x in &mut x {
                rotl_xor!(x[0], add_i32_m128i(x[3], x[2]), 18, 14);
                x[1] = shuffle::<0x93>(x[1]);
                x[2] = shuffle::<0x4E>(x[2]);
                x[3] = shuffle::<0x39>(x[3]);
            }
            for x in &mut x {
                rotl_xor!(x[3], add_i32_m128i(x[0], x[1]), 7, 25);
            }
            for x in &mut x {
                rotl_xor!(x[2], add_i32_m128i(x[3], x[0]), 9, 23);
            }
            for x in &mut x {
                rotl_xor!(x[1], add_i32_m128i(x[2], x[3]), 13, 19);
            }
            for x in &mut x {
                rotl_xor!(x[0], add_i32_m128i(x[1], x[2]), 18, 14);
                x[1] = shuffle::<0x39>(x[1]);
                x[2] = shuffle::<0x4E>(x[2]);
                x[3] = shuffle::<0x93>(x[3]);
            }
        }
        for (b, x) in b.iter_mut().zip(x) {
            for (b, x) in b.iter_mut().zip(x) {
                *b = add_i32_m128i(*b, x);
            }
        }
    }
}

/// Salsa20/8 on 16 words, for targets without SSE2.
#[cfg(not(target_arch = "x86_64"))]
mod block {
    pub(super) type Block = [u32; 16];
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
    pub(super) fn salsa20_8_many<const K: usize>(b: &mut [Block; K]) {
        for b in b {
            salsa20_8(b);
        }
    }

    #[inline(always)]
    fn salsa20_8(b: &mut Block) {
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

/// BlockMix of `K` lanes side by side (lane `k` is `input[k * len..][..len]`, `len` = 2r
/// blocks): each lane's even blocks go to the first half of its output, odd ones to the
/// second.
fn block_mix<const K: usize>(input: &[Block], output: &mut [Block], len: usize) {
    let half = len / 2;
    let mut x: [Block; K] = std::array::from_fn(|k| input[k * len + len - 1]);
    for i in 0..len {
        for (k, x) in x.iter_mut().enumerate() {
            xor_block(x, &input[k * len + i]);
        }
        salsa20_8_many(&mut x);
        for (k, x) in x.iter().enumerate() {
            output[k * len + i / 2 + (i % 2) * half] = *x;
        }
    }
}

fn xor_into(x: &mut [Block], v: &[Block]) {
    for (a, b) in x.iter_mut().zip(v) {
        xor_block(a, b);
    }
}

/// ROMix of `K` lanes (`2r` blocks each) at once with `n` rounds, keeping every
/// `stride`-th of each lane's `n` blocks in `v` (emptied first; kept block `i` of lane `k`
/// at `(i * K + k) * 2r`). `v` is filled by pushing, not zeroed ahead: zeroing a 32 MiB
/// table only to overwrite it cost a pass over memory before the first BlockMix. The
/// lanes step together so that their independent Salsa20/8 chains overlap (see
/// [`salsa20_8_many`]).
fn ro_mix<const K: usize>(lanes: &mut [&mut [Block]], v: &mut Vec<Block>, n: usize, stride: usize) {
    let len = lanes[0].len();
    let mut x: Vec<Block> = lanes.iter().flat_map(|l| l.iter().copied()).collect();
    let mut y = x.clone();
    v.clear();
    for i in 0..n {
        if i.is_multiple_of(stride) {
            v.extend_from_slice(&x);
        }
        block_mix::<K>(&x, &mut y, len);
        std::mem::swap(&mut x, &mut y);
    }
    let (mut t, mut u) = (x.clone(), x.clone());
    for _ in 0..n {
        // Integerify: the first word of each lane's last block; then the kept block at or
        // before it, and how many BlockMix from there recompute it.
        let mut steps = [0usize; K];
        for (k, steps) in steps.iter_mut().enumerate() {
            let j = (first_word(&x[k * len + len - 1]) as usize) & (n - 1);
            let kept = &v[(j / stride * K + k) * len..][..len];
            *steps = j % stride;
            if *steps == 0 {
                xor_into(&mut x[k * len..][..len], kept);
            } else {
                t[k * len..][..len].copy_from_slice(kept);
            }
        }
        // The lanes that must recompute step together too (the others' steps are wasted
        // but run in the same instructions).
        let most = steps.iter().copied().max().unwrap_or(0);
        for step in 1..=most {
            block_mix::<K>(&t, &mut u, len);
            std::mem::swap(&mut t, &mut u);
            for (k, _) in steps.iter().enumerate().filter(|(_, s)| **s == step) {
                xor_into(&mut x[k * len..][..len], &t[k * len..][..len]);
            }
        }
        block_mix::<K>(&x, &mut y, len);
        std::mem::swap(&mut x, &mut y);
    }
    for (k, lane) in lanes.iter_mut().enumerate() {
        lane.copy_from_slice(&x[k * len..][..len]);
    }
}

/// The most lanes one thread mixes side by side.
const MAX_GROUP: usize = 4;

/// ROMix of a group of 1 to [`MAX_GROUP`] lanes.
fn ro_mix_group(lanes: &mut [&mut [Block]], v: &mut Vec<Block>, n: usize, stride: usize) {
    match lanes.len() {
        0 => {}
        1 => ro_mix::<1>(lanes, v, n, stride),
        2 => ro_mix::<2>(lanes, v, n, stride),
        3 => ro_mix::<3>(lanes, v, n, stride),
        _ => {
            let (head, tail) = lanes.split_at_mut(MAX_GROUP);
            ro_mix::<MAX_GROUP>(head, v, n, stride);
            ro_mix_group(tail, v, n, stride);
        }
    }
}

/// Time of one group of `k` lanes side by side relative to one lane alone at the same
/// stride, in hundredths (measured on a 2-vCPU Xeon VM: 1.37-1.53 for two, 1.90-2.13 for
/// three, 2.48-2.80 for four; `cargo test --release -p cairn-repo kdf_group_speed --
/// --ignored --nocapture`).
fn group_cost(k: usize) -> u128 {
    match k {
        0 => 0,
        1 => 100,
        2 => 145,
        3 => 195,
        _ => 65 * k as u128,
    }
}

/// Time of one lane in hundredths of a BlockMix per round: `n` BlockMix to fill the table,
/// `n` to read it, on average `(stride - 1) / 2` more per read to recompute a block not
/// kept, and the first touch of the table's pages (≈0.57 BlockMix a block kept, fitted to
/// the same measurements: a lane at stride 2 takes only 1.09 times stride 1, not 1.25).
fn lane_cost(stride: usize) -> u128 {
    let s = stride as u128;
    200 + 50 * (s - 1) + 57 / s
}

/// How the `p` lanes run: on `threads` threads, in groups of up to `group` lanes side by
/// side, each table keeping every `stride`-th block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub threads: usize,
    pub group: usize,
    pub stride: usize,
}

/// The plan for `p` lanes of `lane_memory` bytes each within `budget` bytes (all tables of
/// all threads at once): the least estimated wall time, then the fewest threads.
pub(crate) fn plan(n: usize, lane_memory: u64, p: usize, threads: usize, budget: u64) -> Plan {
    let mut best = (
        u128::MAX,
        Plan {
            threads: 1,
            group: 1,
            stride: n.max(1),
        },
    );
    for t in 1..=threads.clamp(1, p.max(1)) {
        for group in 1..=MAX_GROUP.min(p.div_ceil(t)).max(1) {
            let stride = (lane_memory.saturating_mul((t * group) as u64))
                .div_ceil(budget.max(1))
                .clamp(1, n.max(1) as u64) as usize;
            let per_lane = n as u128 * lane_cost(stride);
            // Groups of `group` lanes (the last one smaller) go to whichever thread is free
            // first.
            let mut busy = vec![0u128; t];
            let mut left = p;
            while left > 0 {
                let k = left.min(group);
                left -= k;
                if let Some(first_free) = busy.iter_mut().min() {
                    *first_free += per_lane * group_cost(k);
                }
            }
            let wall = busy.into_iter().max().unwrap_or(0);
            if wall < best.0 {
                best = (
                    wall,
                    Plan {
                        threads: t,
                        group,
                        stride,
                    },
                );
            }
        }
    }
    best.1
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
    let lane_memory = (n as u64).saturating_mul(128 * r as u64);
    scrypt_planned(
        password,
        salt,
        n,
        r,
        p,
        plan(n, lane_memory, p, threads, budget),
        out,
    )
}

/// [`scrypt`] with N = `n` (checked) and the lanes run as `plan` says.
fn scrypt_planned(
    password: &[u8],
    salt: &[u8],
    n: usize,
    r: usize,
    p: usize,
    plan: Plan,
    out: &mut [u8],
) -> Result<()> {
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
    mix_lanes(&mut blocks, n, r, plan)?;
    for (c, blk) in b.chunks_exact_mut(64).zip(&blocks) {
        for (c, w) in c.chunks_exact_mut(4).zip(to_words(blk)) {
            c.copy_from_slice(&w.to_le_bytes());
        }
    }
    pbkdf2_sha256_once(password, &b, out);
    Ok(())
}

/// ROMix of every lane of `blocks` (`2r` blocks each) as `plan` says.
fn mix_lanes(blocks: &mut [Block], n: usize, r: usize, plan: Plan) -> Result<()> {
    let Plan {
        threads,
        group,
        stride,
    } = plan;
    let p = blocks.len() / (2 * r);
    let slots = n.div_ceil(stride) * 2 * r;
    let mut lanes: Vec<&mut [Block]> = blocks.chunks_mut(2 * r).collect();
    let mut groups: Vec<&mut [&mut [Block]]> = lanes.chunks_mut(group).collect();
    let queue = std::sync::Mutex::new(groups.iter_mut());
    let mixed = std::sync::atomic::AtomicUsize::new(0);
    let run = || {
        // A thread that cannot get its memory leaves its lanes to the others.
        let mut v: Vec<Block> = Vec::new();
        if v.try_reserve_exact(slots * group).is_err() {
            return;
        }
        while let Some(lanes) = queue.lock().ok().and_then(|mut q| q.next()) {
            ro_mix_group(lanes, &mut v, n, stride);
            mixed.fetch_add(lanes.len(), std::sync::atomic::Ordering::Relaxed);
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
            (slots * group * 64) >> 20
        )));
    }
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
    fn every_plan_gives_the_scrypt_crates_bytes() {
        for (log_n, r, p) in [(4, 1, 5), (6, 8, 5), (5, 3, 2), (7, 2, 7)] {
            let want = reference(log_n, r, p);
            for threads in [1, 2, 3] {
                for group in 1..=MAX_GROUP + 1 {
                    for stride in [1, 2, 3, 5] {
                        let plan = Plan {
                            threads,
                            group,
                            stride,
                        };
                        let mut got = [0u8; 64];
                        let (n, r, p) = (1 << log_n, r as usize, p as usize);
                        scrypt_planned(b"pw", &[9u8; 64], n, r, p, plan, &mut got).unwrap();
                        assert_eq!(got, want, "N=2^{log_n} r={r} p={p} {plan:?}");
                    }
                }
            }
        }
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
        for budget in [MEMORY_BUDGET, FAST_BUDGET, 1 << 30] {
            for (p, threads) in [(5, 2), (1, 2), (7, 2), (5, 1), (3, 8)] {
                let Plan {
                    threads: t,
                    group,
                    stride,
                } = plan(1 << 15, lane, p, threads, budget);
                assert!(t <= threads && (1..=MAX_GROUP).contains(&group));
                assert!(
                    (t * group) as u64 * lane / stride as u64 <= budget,
                    "p={p} budget={budget}: {t} threads, groups of {group}, stride {stride}"
                );
            }
        }
        // One lane, all the memory it wants: alone, whole table.
        assert_eq!(
            plan(1 << 15, lane, 1, 2, 1 << 30),
            Plan {
                threads: 1,
                group: 1,
                stride: 1
            }
        );
        // restic's p=5 on 2 cores in 64 MiB: three lanes side by side on one thread, two on
        // the other, every third block kept (measured 191 ms against 216-225 for one lane
        // at a time with whole tables: kdf_group_speed).
        assert_eq!(
            plan(1 << 15, lane, 5, 2, FAST_BUDGET),
            Plan {
                threads: 2,
                group: 3,
                stride: 3
            }
        );
        // Nothing fits: one block kept, never a division by zero.
        assert_eq!(plan(4, lane, 2, 2, 0).stride, 4);
    }

    /// Not a test: how long groups of 1..=4 lanes side by side take against one lane, to
    /// set [`group_cost`]. `cargo test --release -p cairn-repo kdf_group_speed -- --ignored
    /// --nocapture`.
    #[test]
    #[ignore]
    fn kdf_group_speed() {
        let (n, len) = (1usize << 15, 16usize);
        for stride in [1, 2, 3, 4] {
            let mut one = 0.0;
            for k in 1..=MAX_GROUP {
                let mut blocks: Vec<Block> =
                    (0..k * len).map(|i| from_words(&[i as u32; 16])).collect();
                let mut v = Vec::with_capacity(k * n.div_ceil(stride) * len);
                let mut lanes: Vec<&mut [Block]> = blocks.chunks_mut(len).collect();
                let start = std::time::Instant::now();
                ro_mix_group(&mut lanes, &mut v, n, stride);
                let s = start.elapsed().as_secs_f64();
                if k == 1 {
                    one = s;
                }
                eprintln!(
                    "stride {stride}: {k} lanes side by side {:.1} ms, {:.2}x one lane",
                    s * 1e3,
                    s / one
                );
            }
        }
        // restic's p=5 on 2 threads, as a key derivation runs (fresh tables each time).
        for (group, stride) in [
            (1, 1),
            (2, 2),
            (3, 3),
            (3, 2),
            (2, 1),
            (3, 1),
            (1, 4),
            (2, 8),
            (3, 12),
        ] {
            let mut best = f64::MAX;
            for _ in 0..3 {
                let mut blocks: Vec<Block> =
                    (0..5 * len).map(|i| from_words(&[i as u32; 16])).collect();
                let start = std::time::Instant::now();
                let plan = Plan {
                    threads: 2,
                    group,
                    stride,
                };
                mix_lanes(&mut blocks, n, 8, plan).unwrap();
                best = best.min(start.elapsed().as_secs_f64());
            }
            eprintln!(
                "p=5 on 2 threads, groups of {group}, stride {stride} ({} MiB): {:.1} ms",
                2 * group * 32 / stride,
                best * 1e3
            );
        }
    }
}
