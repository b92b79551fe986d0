//! A blob's location and its bit-packed form: the widths of the four fields, chosen per
//! table, and reading and writing packed values in a byte vector.

/// Where a blob is, unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Location {
    pub(super) pack: u32,
    pub(super) offset: u32,
    pub(super) length: u32,
    pub(super) uncompressed_length: u32,
}

/// The widest packed field: a value of 2^30 or more is always escaped, so a packed
/// location is at most 120 bits and one unaligned 16-byte load reads any of them.
pub(super) const MAX_WIDTH: u8 = 30;
/// A field is made narrower as long as at most one entry in this many is escaped for it:
/// one bit less over all entries saves n/8 bytes, an escape costs 20 (n/25.6 at most).
const OUTLIER_SHARE: usize = 512;

/// Bit widths of a table's packed location fields: pack number, offset, length,
/// uncompressed length. A pack field of all ones marks an escaped entry, whose location is
/// in the table's escape list instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Widths(pub(super) [u8; 4]);

fn bits(v: u64) -> usize {
    (64 - v.leading_zeros()) as usize
}

fn mask(width: usize) -> u128 {
    (1u128 << width) - 1
}

impl Widths {
    /// Widths for these locations: each field as narrow as it can be with at most one in
    /// [`OUTLIER_SHARE`] of the values escaped for it (none in a table of fewer entries).
    pub(super) fn choose(locs: impl Iterator<Item = Location>) -> Widths {
        let mut hist = [[0usize; 65]; 4];
        let mut n = 0usize;
        for l in locs {
            n += 1;
            // The pack field also needs room for the all-ones escape mark.
            hist[0][bits(u64::from(l.pack) + 1)] += 1;
            hist[1][bits(u64::from(l.offset))] += 1;
            hist[2][bits(u64::from(l.length))] += 1;
            hist[3][bits(u64::from(l.uncompressed_length))] += 1;
        }
        let allowed = n / OUTLIER_SHARE;
        let mut widths = [MAX_WIDTH; 4];
        for (field, w) in widths.iter_mut().enumerate() {
            let mut over = 0usize;
            for cand in (0..MAX_WIDTH).rev() {
                over += hist[field][usize::from(cand) + 1];
                if over > allowed {
                    break;
                }
                *w = cand;
            }
        }
        widths[0] = widths[0].max(1);
        Widths(widths)
    }

    /// Whether every field is at most [`MAX_WIDTH`] (as [`Widths::choose`] makes them).
    pub(super) fn valid(self) -> bool {
        self.0.iter().all(|w| *w <= MAX_WIDTH)
    }

    pub(super) fn stride(self) -> usize {
        self.0.iter().map(|w| usize::from(*w)).sum()
    }

    pub(super) fn mark(self) -> u128 {
        mask(usize::from(self.0[0]))
    }

    /// Bytes of `n` packed locations (without the padding).
    pub(super) fn bytes_for(self, n: usize) -> usize {
        (n * self.stride()).div_ceil(8)
    }

    /// The packed form of `loc`, or None if it must be escaped.
    pub(super) fn pack(self, loc: &Location) -> Option<u128> {
        let fields = [loc.pack, loc.offset, loc.length, loc.uncompressed_length];
        let mut packed = 0u128;
        let mut shift = 0usize;
        for (i, (v, w)) in fields.iter().zip(self.0).enumerate() {
            let (v, w) = (u128::from(*v), usize::from(w));
            if (i == 0 && v >= self.mark()) || v > mask(w) {
                return None;
            }
            packed |= v << shift;
            shift += w;
        }
        Some(packed)
    }

    /// The location packed in `packed`, or None if it is the escape mark.
    pub(super) fn unpack(self, packed: u128) -> Option<Location> {
        let mut fields = [0u32; 4];
        let mut shift = 0usize;
        for (f, w) in fields.iter_mut().zip(self.0) {
            let w = usize::from(w);
            // Each field is at most 30 bits wide: the cast keeps every bit.
            *f = ((packed >> shift) & mask(w)) as u32;
            shift += w;
        }
        if u128::from(fields[0]) == self.mark() {
            return None;
        }
        Some(Location {
            pack: fields[0],
            offset: fields[1],
            length: fields[2],
            uncompressed_length: fields[3],
        })
    }
}

/// The `stride`-bit value at position `pos` of `bytes` (packed little-endian, with 16
/// bytes after the last value: one unaligned 16-byte load reads any of them).
pub(super) fn get_bits(bytes: &[u8], pos: usize, stride: usize) -> Option<u128> {
    let bit = pos * stride;
    let at = bit / 8;
    let word: [u8; 16] = bytes.get(at..at + 16)?.try_into().ok()?;
    Some(bits_in(word, bit % 8, stride))
}

/// The `stride`-bit value starting `shift` (under 8) bits into the 16 bytes of `window`.
pub(super) fn bits_in(window: [u8; 16], shift: usize, stride: usize) -> u128 {
    (u128::from_le_bytes(window) >> shift) & mask(stride)
}

/// Writes `value` (at most `stride` bits) at position `pos` of `bytes`, whose bits there
/// are still zero.
pub(super) fn put_bits(bytes: &mut [u8], pos: usize, stride: usize, value: u128) {
    let bit = pos * stride;
    let at = bit / 8;
    let mut word = [0u8; 16];
    word.copy_from_slice(&bytes[at..at + 16]);
    let word = u128::from_le_bytes(word) | value << (bit % 8);
    bytes[at..at + 16].copy_from_slice(&word.to_le_bytes());
}

#[cfg(test)]
impl Location {
    pub(super) fn of(pack: u32, offset: u32, length: u32, uncompressed_length: u32) -> Location {
        Location {
            pack,
            offset,
            length,
            uncompressed_length,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Location as L;

    #[test]
    fn widths_fit_the_values_and_escape_only_rare_outliers() {
        // 4,096 ordinary locations and 5 outliers: the widths fit the ordinary ones.
        let mut locs: Vec<Location> = (0..4096u32)
            .map(|i| L::of(i % 100, i * 1000, 300 + i % 200, 700 + i % 300))
            .collect();
        locs.extend([
            L::of(5, 1 << 29, 10, 10),
            L::of(u32::MAX - 1, 1, 1, 1),
            L::of(1, 1, u32::MAX, 1),
            L::of(1, 1, 1, 1 << 31),
            L::of(1, 1, 1 << 20, 1 << 21),
        ]);
        let w = Widths::choose(locs.iter().copied());
        // 100 pack numbers and the mark: 7 bits; offsets < 4.1M: 22; lengths < 500: 9;
        // uncompressed < 1000: 10.
        assert_eq!(w, Widths([7, 22, 9, 10]));
        for l in &locs[..4096] {
            assert_eq!(w.unpack(w.pack(l).unwrap()), Some(*l));
        }
        for l in &locs[4096..] {
            assert_eq!(w.pack(l), None, "{l:?} escapes");
        }
        // Small tables escape nothing that fits MAX_WIDTH.
        let w = Widths::choose(locs[4090..].iter().copied());
        assert_eq!(
            w.pack(&locs[4100]).map(|p| w.unpack(p)),
            Some(Some(locs[4100]))
        );
        assert_eq!(w.pack(&locs[4097]), None);
        // A pack number just below the mark fits, the mark itself does not.
        let w = Widths([3, 1, 1, 1]);
        assert!(w.pack(&L::of(6, 0, 0, 0)).is_some());
        assert!(w.pack(&L::of(7, 0, 0, 0)).is_none());
        assert_eq!(Widths::choose(std::iter::empty()), Widths([1, 0, 0, 0]));
    }

    #[test]
    fn packed_values_round_trip_at_every_bit_offset() {
        for stride in [1usize, 7, 57, 64, 65, 120] {
            let n = 40;
            let mut bytes = vec![0u8; (n * stride).div_ceil(8) + 16];
            let value = |i: usize| {
                (0x0123_4567_89ab_cdef_fedc_ba98_7654_3210u128 >> (i % 8)) & mask(stride)
            };
            for i in 0..n {
                put_bits(&mut bytes, i, stride, value(i));
            }
            for i in 0..n {
                assert_eq!(get_bits(&bytes, i, stride), Some(value(i)), "{stride} {i}");
            }
            assert_eq!(
                get_bits(&bytes, n + 1, stride).is_some(),
                (n + 1) * stride / 8 + 16 <= bytes.len()
            );
        }
    }
}
