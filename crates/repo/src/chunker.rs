//! Content-defined chunking, identical to restic's chunker (github.com/restic/chunker):
//! a Rabin fingerprint over a 64-byte window with the repository's polynomial; a chunk
//! ends where the low 20 bits of the fingerprint are zero (1 MiB average), never before
//! 512 KiB and always at 8 MiB. Same input and polynomial give the same chunks as restic,
//! so cairn and restic deduplicate each other's data.
//!
//! Owns the polynomial arithmetic (irreducibility for `init`) and the chunk iterator.
//! Knows nothing of hashing or storage.

use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::sync::{Arc, Mutex, OnceLock};

pub const MIN_SIZE: usize = 512 * 1024;
pub const MAX_SIZE: usize = 8 * 1024 * 1024;
const WINDOW: usize = 64;
const SPLIT_MASK: u64 = (1 << 20) - 1;

/// A polynomial over GF(2), bit i is the coefficient of x^i. restic uses an irreducible
/// one of degree 53, stored hex-encoded in the repository config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Polynomial(pub u64);

fn deg128(x: u128) -> i32 {
    127 - x.leading_zeros() as i32
}

fn mod128(mut x: u128, m: u64) -> u64 {
    let dm = 63 - m.leading_zeros() as i32;
    while deg128(x) >= dm {
        x ^= (m as u128) << (deg128(x) - dm);
    }
    x as u64
}

fn clmul(a: u64, b: u64) -> u128 {
    let mut r = 0u128;
    for i in 0..64 {
        if (b >> i) & 1 == 1 {
            r ^= (a as u128) << i;
        }
    }
    r
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        return a;
    }
    gcd(b, mod128(a as u128, b))
}

impl Polynomial {
    /// The degree (-1 for the zero polynomial).
    pub fn degree(&self) -> i32 {
        63 - self.0.leading_zeros() as i32
    }

    /// x^(2^p) + x mod self.
    fn qp(&self, p: u32) -> u64 {
        let mut res: u64 = 2;
        for _ in 0..p {
            res = mod128(clmul(res, res), self.0);
        }
        mod128((res ^ 2) as u128, self.0)
    }

    /// Ben-Or's irreducibility test, as restic applies it.
    pub fn is_irreducible(&self) -> bool {
        if self.0 < 2 {
            return false;
        }
        for i in 1..=(self.degree() / 2) as u32 {
            if gcd(self.0, self.qp(i)) != 1 {
                return false;
            }
        }
        true
    }

    /// A random irreducible polynomial of degree 53 (what `init` stores).
    pub fn random() -> Polynomial {
        use rand::RngCore;
        let mut rng = rand::thread_rng();
        loop {
            let mut f = rng.next_u64() & ((1 << 54) - 1);
            f |= (1 << 53) | 1;
            let p = Polynomial(f);
            if p.is_irreducible() {
                return p;
            }
        }
    }
}

/// Precomputed tables for one polynomial: removing the byte leaving the window (`out`)
/// and reducing after shifting in a byte (`modt`).
struct Tables {
    out: [u64; 256],
    modt: [u64; 256],
}

fn tables(pol: Polynomial) -> Arc<Tables> {
    static CACHE: OnceLock<Mutex<HashMap<u64, Arc<Tables>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(t) = cache.lock().ok().and_then(|c| c.get(&pol.0).cloned()) {
        return t;
    }
    let p = pol.0;
    let append = |h: u64, b: u8| mod128(((h as u128) << 8) | b as u128, p);
    let mut t = Tables {
        out: [0; 256],
        modt: [0; 256],
    };
    let k = pol.degree();
    for b in 0..256usize {
        let mut h = append(0, b as u8);
        for _ in 0..WINDOW - 1 {
            h = append(h, 0);
        }
        t.out[b] = h;
        t.modt[b] = mod128((b as u128) << k, p) | ((b as u64) << k);
    }
    let t = Arc::new(t);
    if let Ok(mut c) = cache.lock() {
        c.insert(p, t.clone());
    }
    t
}

/// Bytes asked of the reader at a time.
const READ_SIZE: usize = 256 * 1024;
/// The read buffer: a whole chunk of the largest size plus one read past its end. A
/// chunk is handed out as a slice of this buffer, never copied; the unread rest moves to
/// the front when the next chunk might not fit behind it (at most one read's worth).
const BUF_SIZE: usize = MAX_SIZE + READ_SIZE;
/// What a read buffer keeps resident from one file to the next. A chunk of up to 8 MiB
/// faults in as much of the buffer, and those pages would stay resident for the rest of a
/// backup in each file worker (peak RSS); past this the buffer is freed when the file is
/// done. Chunks over 2 MiB are rare (107 of 11.5k in the bench's mixed data, 96
/// MiB of them past 2 MiB: ≈25k page faults, ~20 ms, to fault in again), while the
/// workers of its first backup held 5-6 MiB each.
const KEEP_RESIDENT: usize = 2 * 1024 * 1024;

/// Splits a stream into restic-identical chunks.
///
/// The fingerprint at a position depends only on the 64 bytes ending there (restic's
/// reset byte leaves the window before the first position that can cut, `MIN_SIZE` bytes
/// into a chunk), so the search for a cut needs no state between reads, and it runs four
/// independent lanes over neighbouring stretches at once: the rolling hash is a chain of
/// dependent table lookups, and four chains keep the core busy where one leaves it waiting.
pub struct Chunker<R: Read> {
    reader: R,
    tables: Arc<Tables>,
    pol_shift: u32,
    buf: Vec<u8>,
    /// Where the current chunk starts in `buf`.
    start: usize,
    /// The end of the bytes read into `buf`.
    end: usize,
    /// The furthest `end` has been: the buffer's pages up to there are resident.
    high: usize,
    eof: bool,
}

impl<R: Read> Chunker<R> {
    pub fn new(reader: R, pol: Polynomial) -> Self {
        Self::with_buffer(reader, pol, Vec::new())
    }

    /// Like `new`, reusing `buf` (from `into_buffer`) as the read buffer: a backup of many
    /// small files then neither allocates nor faults in a new buffer per file.
    pub fn with_buffer(reader: R, pol: Polynomial, mut buf: Vec<u8>) -> Self {
        if buf.len() != BUF_SIZE {
            // Zeroed by the allocator (fresh pages), touched only as far as data is read.
            buf = vec![0u8; BUF_SIZE];
        }
        Chunker {
            reader,
            tables: tables(pol),
            pol_shift: (pol.degree() - 8).max(0) as u32,
            buf,
            start: 0,
            end: 0,
            high: 0,
            eof: false,
        }
    }

    /// Gives back the read buffer for the next `with_buffer`, or an empty one (the next
    /// chunker then starts in fresh, untouched memory) when more than [`KEEP_RESIDENT`]
    /// of it was touched. Freeing the whole buffer costs the next file faulting its first
    /// 2 MiB in again, ≈0.3 ms per file that had a chunk over 2 MiB; giving back only the
    /// tail would take `madvise`, unsafe code the workspace denies.
    pub fn into_buffer(self) -> Vec<u8> {
        if self.high > KEEP_RESIDENT {
            return Vec::new();
        }
        self.buf
    }

    /// Reads once more into the buffer after `end`; sets `eof` when the reader is done.
    fn fill(&mut self) -> std::io::Result<()> {
        let to = (self.end + READ_SIZE).min(self.buf.len());
        loop {
            match self.reader.read(&mut self.buf[self.end..to]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(k) => {
                    self.end += k;
                    self.high = self.high.max(self.end);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next chunk, borrowed from the chunker's buffer; None at the end of input.
    pub fn next_slice(&mut self) -> std::io::Result<Option<&[u8]>> {
        if self.buf.len() - self.start < MAX_SIZE {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let start = self.start;
        // The first position that can end a chunk, and the last plus one (at MAX_SIZE the
        // chunk ends whatever the fingerprint says).
        let first = start + MIN_SIZE - 1;
        let limit = start + MAX_SIZE - 1;
        let mut scanned = first;
        loop {
            let to = self.end.min(limit);
            if to > scanned {
                if let Some(p) = find_cut(&self.tables, self.pol_shift, &self.buf, scanned, to) {
                    return Ok(Some(self.take(p + 1)));
                }
                scanned = to;
            }
            if self.end > limit {
                return Ok(Some(self.take(limit + 1)));
            }
            if self.eof {
                if self.end > start {
                    return Ok(Some(self.take(self.end)));
                }
                return Ok(None);
            }
            self.fill()?;
        }
    }

    /// Ends the current chunk before `cut` and returns it.
    fn take(&mut self, cut: usize) -> &[u8] {
        let start = std::mem::replace(&mut self.start, cut);
        &self.buf[start..cut]
    }

    /// Reads the next chunk into `out` (cleared first). Ok(false) at the end of input.
    pub fn next_chunk(&mut self, out: &mut Vec<u8>) -> std::io::Result<bool> {
        out.clear();
        match self.next_slice()? {
            Some(chunk) => {
                out.extend_from_slice(chunk);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Bytes per lane in one round of the four-lane search.
const LANE: usize = 16 * 1024;

/// The first position `p` in `from..to` where the fingerprint of `data[p - 63..=p]` says
/// cut (needs `from >= WINDOW`).
fn find_cut(t: &Tables, shift: u32, data: &[u8], from: usize, to: usize) -> Option<usize> {
    let mut p = from;
    while to - p >= 4 * LANE {
        if let Some(c) = find_cut4(t, shift, data, p) {
            return Some(c);
        }
        p += 4 * LANE;
    }
    find_cut1(t, shift, data, p, to)
}

/// The fingerprint of the `WINDOW` bytes before `p` (as if the window had been empty).
#[inline(always)]
fn warm(t: &Tables, shift: u32, data: &[u8], p: usize) -> u64 {
    let mut d = 0u64;
    for &b in &data[p - WINDOW..p] {
        d = append(t, shift, d, b);
    }
    d
}

/// Shifts byte `b` into fingerprint `d`, reducing modulo the polynomial.
#[inline(always)]
fn append(t: &Tables, shift: u32, d: u64, b: u8) -> u64 {
    ((d << 8) | b as u64) ^ t.modt[(d >> shift) as usize & 0xff]
}

fn find_cut1(t: &Tables, shift: u32, data: &[u8], from: usize, to: usize) -> Option<usize> {
    if from >= to {
        return None;
    }
    let mut d = warm(t, shift, data, from);
    let old = &data[from - WINDOW..to - WINDOW];
    let new = &data[from..to];
    for (i, (&o, &b)) in old.iter().zip(new).enumerate() {
        d = append(t, shift, d ^ t.out[o as usize], b);
        if d & SPLIT_MASK == 0 {
            return Some(from + i);
        }
    }
    None
}

/// `find_cut1` over `from..from + 4 * LANE`, as four interleaved lanes.
fn find_cut4(t: &Tables, shift: u32, data: &[u8], from: usize) -> Option<usize> {
    let starts = [from, from + LANE, from + 2 * LANE, from + 3 * LANE];
    // Fixed-size views: the loop below then has no bounds checks.
    let lane = |k: usize| -> Option<(&[u8; LANE], &[u8; LANE])> {
        let s = starts[k];
        Some((
            data.get(s - WINDOW..s - WINDOW + LANE)?.try_into().ok()?,
            data.get(s..s + LANE)?.try_into().ok()?,
        ))
    };
    let Some(((o0, n0), (o1, n1), (o2, n2), (o3, n3))) =
        (|| Some((lane(0)?, lane(1)?, lane(2)?, lane(3)?)))()
    else {
        return find_cut1(t, shift, data, from, from + 4 * LANE);
    };
    let (mut d0, mut d1, mut d2, mut d3) = (
        warm(t, shift, data, starts[0]),
        warm(t, shift, data, starts[1]),
        warm(t, shift, data, starts[2]),
        warm(t, shift, data, starts[3]),
    );
    let mut hit = None;
    for i in 0..LANE {
        d0 = append(t, shift, d0 ^ t.out[o0[i] as usize], n0[i]);
        d1 = append(t, shift, d1 ^ t.out[o1[i] as usize], n1[i]);
        d2 = append(t, shift, d2 ^ t.out[o2[i] as usize], n2[i]);
        d3 = append(t, shift, d3 ^ t.out[o3[i] as usize], n3[i]);
        if (d0 & SPLIT_MASK == 0)
            | (d1 & SPLIT_MASK == 0)
            | (d2 & SPLIT_MASK == 0)
            | (d3 & SPLIT_MASK == 0)
        {
            hit = Some(i);
            break;
        }
    }
    let i = hit?;
    // The first lane that cuts at step i; a lane before it may still cut later in its own
    // stretch, which comes earlier in the data.
    let k = [d0, d1, d2, d3].iter().position(|x| x & SPLIT_MASK == 0)?;
    for &s in &starts[..k] {
        if let Some(p) = find_cut1(t, shift, data, s + i + 1, s + LANE) {
            return Some(p);
        }
    }
    Some(starts[k] + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    fn chunks(data: &[u8], pol: Polynomial) -> Vec<Vec<u8>> {
        let mut c = Chunker::new(data, pol);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while c.next_chunk(&mut buf).unwrap() {
            out.push(buf.clone());
        }
        out
    }

    /// restic's test polynomial (chunker_test.go).
    const TEST_POL: Polynomial = Polynomial(0x3DA3358B4DC173);

    /// The chunker as restic writes it: one rolling window slid byte by byte from a reset
    /// (a single 1 byte), the first `MIN_SIZE - WINDOW` bytes of a chunk skipped.
    fn reference_chunks(data: &[u8], pol: Polynomial) -> Vec<Vec<u8>> {
        let t = tables(pol);
        let shift = (pol.degree() - 8) as u32;
        let mut out = Vec::new();
        let mut start = 0;
        while start < data.len() {
            let (mut window, mut wpos, mut digest) = ([0u8; WINDOW], 0usize, 0u64);
            let mut slide = |b: u8, window: &mut [u8; WINDOW], wpos: &mut usize| {
                let old = window[*wpos];
                window[*wpos] = b;
                *wpos = (*wpos + 1) % WINDOW;
                digest ^= t.out[old as usize];
                digest = append(&t, shift, digest, b);
                digest
            };
            slide(1, &mut window, &mut wpos);
            let mut end = data.len();
            let mut p = start + MIN_SIZE - WINDOW;
            while p < data.len() {
                let d = slide(data[p], &mut window, &mut wpos);
                let len = p + 1 - start;
                if len >= MIN_SIZE && (d & SPLIT_MASK == 0 || len >= MAX_SIZE) {
                    end = p + 1;
                    break;
                }
                p += 1;
            }
            out.push(data[start..end].to_vec());
            start = end;
        }
        out
    }

    /// Random bytes with long stretches of zeros and of repeated text, where cut points
    /// are rare or come at once, so chunks of every size (min, max, between) appear.
    fn varied(seed: u64, n: usize) -> Vec<u8> {
        let mut data = xorshift(seed, n);
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut p = 0;
        while p < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % (3 << 20)) as usize + if x % 5 == 1 { 6 << 20 } else { 0 };
            let end = (p + len).min(n);
            match x % 5 {
                0 => data[p..end].fill(0),
                1 => {
                    for (i, b) in data[p..end].iter_mut().enumerate() {
                        *b = b"the same line again\n"[i % 20];
                    }
                }
                _ => {}
            }
            p = end + (x % (4 << 20)) as usize;
        }
        data
    }

    #[test]
    fn four_lane_search_cuts_where_the_byte_by_byte_chunker_cuts() {
        for (seed, n) in [
            (1, 40 << 20),
            (2, 9 << 20),
            (3, MIN_SIZE + 10),
            (4, 0),
            (5, 100),
        ] {
            for pol in [TEST_POL, Polynomial::random()] {
                let data = varied(seed, n);
                let want = reference_chunks(&data, pol);
                assert_eq!(chunks(&data, pol), want, "seed {seed}");
                let mut c = Chunker::new(Trickle(&data), pol);
                let mut got = Vec::new();
                while let Some(chunk) = c.next_slice().unwrap() {
                    got.push(chunk.to_vec());
                }
                assert_eq!(got, want, "seed {seed}, short reads");
            }
        }
        // A long periodic stretch never cuts (a chunk of the largest size), zeros cut at
        // once (the smallest).
        let mut data = varied(1, 20 << 20);
        data.extend((0..10 << 20).map(|i| b"the same line again\n"[i % 20]));
        let cs = chunks(&data, TEST_POL);
        assert_eq!(cs, reference_chunks(&data, TEST_POL));
        let sizes: Vec<usize> = cs.iter().map(|c| c.len()).collect();
        assert!(
            sizes.contains(&MIN_SIZE) && sizes.contains(&MAX_SIZE),
            "{sizes:?}"
        );
        assert!(sizes.iter().any(|&s| s > MIN_SIZE && s < MAX_SIZE));
    }

    #[test]
    fn a_reused_buffer_gives_the_same_chunks() {
        let (a, b) = (varied(6, 20 << 20), varied(7, 3 << 20));
        let mut c = Chunker::new(&a[..], TEST_POL);
        while c.next_slice().unwrap().is_some() {}
        let mut c = Chunker::with_buffer(&b[..], TEST_POL, c.into_buffer());
        let mut got = Vec::new();
        while let Some(chunk) = c.next_slice().unwrap() {
            got.push(chunk.to_vec());
        }
        assert_eq!(got, reference_chunks(&b, TEST_POL));
    }

    /// A file whose chunks stayed within [`KEEP_RESIDENT`] hands its buffer on; one with a
    /// larger chunk frees it, so the next file's chunker starts in untouched memory and
    /// still cuts the same chunks.
    #[test]
    fn a_buffer_touched_past_what_stays_resident_is_freed() {
        let small = xorshift(8, 1 << 20);
        let mut c = Chunker::new(&small[..], TEST_POL);
        while c.next_slice().unwrap().is_some() {}
        let kept = c.into_buffer();
        assert_eq!(kept.len(), BUF_SIZE, "a 1 MiB file keeps its buffer");
        let noise = xorshift(10, 12 << 20);
        let largest = reference_chunks(&noise, TEST_POL)
            .iter()
            .map(|c| c.len())
            .max();
        assert!(largest > Some(KEEP_RESIDENT), "{largest:?}");
        let mut c = Chunker::with_buffer(&noise[..], TEST_POL, kept);
        while c.next_slice().unwrap().is_some() {}
        let freed = c.into_buffer();
        assert!(freed.is_empty(), "a chunk over 2 MiB frees the buffer");
        let b = varied(9, 3 << 20);
        let mut c = Chunker::with_buffer(&b[..], TEST_POL, freed);
        let mut got = Vec::new();
        while let Some(chunk) = c.next_slice().unwrap() {
            got.push(chunk.to_vec());
        }
        assert_eq!(got, reference_chunks(&b, TEST_POL));
    }

    #[test]
    fn known_polynomials_are_recognised() {
        assert!(TEST_POL.is_irreducible());
        assert_eq!(TEST_POL.degree(), 53);
        // x^2+1 = (x+1)^2 is reducible; x^2+x+1 is irreducible.
        assert!(!Polynomial(0b101).is_irreducible());
        assert!(Polynomial(0b111).is_irreducible());
        let r = Polynomial::random();
        assert_eq!(r.degree(), 53);
        assert!(r.is_irreducible());
    }

    #[test]
    fn chunks_reassemble_and_respect_size_bounds() {
        let data = xorshift(7, 40 << 20);
        let cs = chunks(&data, TEST_POL);
        assert!(cs.len() > 10);
        assert_eq!(cs.concat(), data);
        for c in &cs[..cs.len() - 1] {
            assert!(c.len() >= MIN_SIZE && c.len() <= MAX_SIZE, "{}", c.len());
        }
        // Zeros give a zero fingerprint once the reset byte leaves the window: like restic,
        // they cut at the minimum size.
        let zeros = vec![0u8; 20 << 20];
        let zs = chunks(&zeros, TEST_POL);
        assert!(zs.iter().all(|c| c.len() == MIN_SIZE));
        assert!(chunks(&[], TEST_POL).is_empty());
    }

    #[test]
    fn boundaries_are_content_defined() {
        let data = xorshift(9, 30 << 20);
        let a = chunks(&data, TEST_POL);
        let mut shifted = b"some bytes inserted at the start".to_vec();
        shifted.extend_from_slice(&data);
        let b = chunks(&shifted, TEST_POL);
        let ids: std::collections::HashSet<_> = a.iter().collect();
        let shared = b.iter().filter(|c| ids.contains(c)).count();
        assert!(
            shared + 2 >= a.len(),
            "{shared} of {} chunks survive",
            a.len()
        );
    }

    /// A reader that returns at most 1000 bytes per call.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(1000);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn short_reads_give_the_same_chunks() {
        let data = xorshift(11, 12 << 20);
        let mut c = Chunker::new(Trickle(&data), TEST_POL);
        let mut got = Vec::new();
        let mut buf = Vec::new();
        while c.next_chunk(&mut buf).unwrap() {
            got.push(buf.clone());
        }
        assert_eq!(got, chunks(&data, TEST_POL));
    }

    #[test]
    #[ignore]
    fn throughput() {
        let data = xorshift(3, 256 << 20);
        let t = std::time::Instant::now();
        let n = chunks(&data, TEST_POL).len();
        let s = t.elapsed().as_secs_f64();
        println!("{n} chunks, {:.0} MB/s", data.len() as f64 / s / 1e6);
    }
}
