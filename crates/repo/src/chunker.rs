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
const BUF_SIZE: usize = 1024 * 1024;

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

/// Splits a stream into restic-identical chunks.
pub struct Chunker<R: Read> {
    reader: R,
    tables: Arc<Tables>,
    pol_shift: u32,
    buf: Vec<u8>,
    bpos: usize,
    bmax: usize,
    eof: bool,
    window: [u8; WINDOW],
    wpos: usize,
    digest: u64,
    /// Bytes still to skip before fingerprinting (the start of a chunk can't be a cut).
    pre: usize,
    /// Bytes in the current chunk so far.
    count: usize,
}

impl<R: Read> Chunker<R> {
    pub fn new(reader: R, pol: Polynomial) -> Self {
        Self::with_buffer(reader, pol, Vec::new())
    }

    /// Like `new`, reusing `buf` (from `into_buffer`) as the read buffer: a backup of many
    /// small files then neither allocates nor zeroes a megabyte per file.
    pub fn with_buffer(reader: R, pol: Polynomial, mut buf: Vec<u8>) -> Self {
        buf.resize(BUF_SIZE, 0);
        let mut c = Chunker {
            reader,
            tables: tables(pol),
            pol_shift: (pol.degree() - 8).max(0) as u32,
            buf,
            bpos: 0,
            bmax: 0,
            eof: false,
            window: [0; WINDOW],
            wpos: 0,
            digest: 0,
            pre: 0,
            count: 0,
        };
        c.reset();
        c
    }

    fn reset(&mut self) {
        self.window = [0; WINDOW];
        self.wpos = 0;
        self.digest = 0;
        self.count = 0;
        // restic slides in a single 1 byte after every reset.
        self.slide(1);
        self.pre = MIN_SIZE - WINDOW;
    }

    #[inline(always)]
    fn slide(&mut self, b: u8) {
        let out = self.window[self.wpos];
        self.window[self.wpos] = b;
        self.digest ^= self.tables.out[out as usize];
        self.wpos = (self.wpos + 1) % WINDOW;
        let index = (self.digest >> self.pol_shift) as usize;
        self.digest = ((self.digest << 8) | b as u64) ^ self.tables.modt[index & 0xff];
    }

    /// Fills the buffer as far as the reader allows (like Go's io.ReadFull).
    fn fill(&mut self) -> std::io::Result<()> {
        let mut n = 0;
        while n < self.buf.len() {
            match self.reader.read(&mut self.buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.bpos = 0;
        self.bmax = n;
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }

    /// Gives back the read buffer for the next `with_buffer`.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// Reads the next chunk into `buf` (cleared first). Ok(false) at the end of input.
    pub fn next_chunk(&mut self, out: &mut Vec<u8>) -> std::io::Result<bool> {
        out.clear();
        loop {
            if self.bpos >= self.bmax {
                if self.eof {
                    return Ok(!out.is_empty());
                }
                self.fill()?;
                if self.eof {
                    return Ok(!out.is_empty());
                }
            }
            let avail = &self.buf[self.bpos..self.bmax];
            // Skip the part of a chunk that cannot hold a cut point.
            if self.pre > 0 {
                let skip = self.pre.min(avail.len());
                out.extend_from_slice(&avail[..skip]);
                self.pre -= skip;
                self.count += skip;
                self.bpos += skip;
                continue;
            }
            let tables = &*self.tables;
            let shift = self.pol_shift;
            let mut digest = self.digest;
            let mut wpos = self.wpos;
            let mut add = self.count;
            let mut cut = None;
            let window = &mut self.window;
            for (i, &b) in avail.iter().enumerate() {
                let old = window[wpos & (WINDOW - 1)];
                window[wpos & (WINDOW - 1)] = b;
                digest ^= tables.out[old as usize];
                wpos = (wpos + 1) & (WINDOW - 1);
                let index = (digest >> shift) as usize;
                digest = ((digest << 8) | b as u64) ^ tables.modt[index & 0xff];
                add += 1;
                if ((digest & SPLIT_MASK) == 0 || add >= MAX_SIZE) && add >= MIN_SIZE {
                    cut = Some(i + 1);
                    break;
                }
            }
            match cut {
                Some(n) => {
                    out.extend_from_slice(&avail[..n]);
                    self.bpos += n;
                    self.reset();
                    return Ok(true);
                }
                None => {
                    out.extend_from_slice(avail);
                    self.bpos = self.bmax;
                    self.digest = digest;
                    self.wpos = wpos;
                    self.count = add;
                }
            }
        }
    }
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
