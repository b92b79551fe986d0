//! Pack files: encrypted blobs back to back, then the encrypted header, then the header's
//! length as a little-endian u32.
//!
//! Header entries (plaintext): type byte (0 data, 1 tree, 2 compressed data, 3 compressed
//! tree), encrypted length u32 LE, for compressed types the plaintext length u32 LE, then the
//! blob's 32-byte id. The pack's name is the SHA-256 of the whole file.

use crate::crypto::{Key, OVERHEAD};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::sha256::Sha256;
use serde::{Deserialize, Serialize};

/// What a blob holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum BlobType {
    Data,
    Tree,
}

impl std::fmt::Display for BlobType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
        })
    }
}

/// One blob's place in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedBlob {
    pub blob_type: BlobType,
    pub id: Id,
    pub offset: u32,
    /// Length of the stored (encrypted, maybe compressed) blob.
    pub length: u32,
    /// Plaintext length when compressed, 0 when stored uncompressed.
    pub uncompressed_length: u32,
}

impl PackedBlob {
    /// Whether this entry can describe a blob in a pack of `pack_size` bytes (None: size
    /// unknown, only the lengths are checked). Run before anything is allocated for it: an
    /// index or header claiming a 4 GiB blob in a small pack is corruption, not a request.
    pub fn check_fits(&self, pack_size: Option<u64>) -> Result<()> {
        let what = || format!("{} blob {}", self.blob_type, self.id);
        if self.length > MAX_BLOB_SIZE || self.uncompressed_length > MAX_BLOB_SIZE {
            return Err(Error::corrupt(format!(
                "{}: claims {} bytes ({} uncompressed), more than any blob may have ({MAX_BLOB_SIZE}); the index or pack header is damaged",
                what(),
                self.length,
                self.uncompressed_length
            )));
        }
        if (self.length as usize) < OVERHEAD {
            return Err(Error::corrupt(format!(
                "{}: claims {} bytes, too short for an encrypted blob; the index or pack header is damaged",
                what(),
                self.length
            )));
        }
        if let Some(size) = pack_size {
            // Every pack ends with an encrypted header and its 4-byte length.
            let end = self.offset as u64 + self.length as u64;
            if end + 4 + OVERHEAD as u64 > size {
                return Err(Error::corrupt(format!(
                    "{}: claims bytes {}..{end} of a pack of {size} bytes; the index is damaged (run `cairn repair index`)",
                    what(),
                    self.offset
                )));
            }
        }
        Ok(())
    }

    /// Length of the plaintext the blob decodes to.
    pub fn data_length(&self) -> u32 {
        if self.uncompressed_length != 0 {
            self.uncompressed_length
        } else {
            self.length.saturating_sub(OVERHEAD as u32)
        }
    }
}

/// The most bytes one blob may take, stored or decoded. restic's chunker cuts data blobs at
/// 8 MiB at most and a tree blob this large would list millions of entries: a larger length
/// in an index or pack header is damage, and is refused before any buffer is sized by it.
pub const MAX_BLOB_SIZE: u32 = 1 << 30;

const ENTRY_LEN: usize = 1 + 4 + 32;
const COMPRESSED_ENTRY_LEN: usize = 1 + 4 + 4 + 32;

/// Where a pack starts in its builder's buffer: a multiple of this in memory, what
/// O_DIRECT wants of a buffer, so a local backend writes the pack from where it was built
/// instead of copying it through an aligned bounce buffer.
pub const PACK_ALIGN: usize = 4096;

/// Accumulates encrypted blobs into one pack in memory.
#[derive(Default)]
pub struct PackBuilder {
    /// Padding up to `start` (to align the pack), then the pack.
    bytes: Vec<u8>,
    start: usize,
    blobs: Vec<PackedBlob>,
    /// The pack id's SHA-256 over `bytes[start..hashed]`, for a builder whose owner hashes
    /// as it goes ([`PackBuilder::id_beside`]); `finish` hashes the rest.
    hasher: Sha256,
    hashed: usize,
}

/// What [`PackBuilder::compress_seal_and_add`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum InPlace {
    /// Stored compressed, this many bytes.
    Stored(usize),
    /// Nothing: the output was not smaller than the input (store it as it is).
    NotSmaller,
    /// Nothing: the buffer has no room for zstd's bound behind the pack.
    NoRoom,
}

/// A finished pack, still in its builder's buffer (after `start` padding bytes).
pub struct FinishedPack {
    buf: Vec<u8>,
    start: usize,
    pub id: Id,
    pub blobs: Vec<PackedBlob>,
}

impl FinishedPack {
    /// The pack file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// The buffer, for the next pack.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// Seals the header again with a fresh nonce: the same blobs in a pack of a new name,
    /// for an upload retried under a new name (see [`crate::backend::write_renewing`]).
    pub fn reseal(&mut self, key: &Key) {
        let len = self.buf.len();
        let mut n = [0u8; 4];
        n.copy_from_slice(&self.buf[len - 4..]);
        let header_start = len - 4 - u32::from_le_bytes(n) as usize;
        self.buf.truncate(header_start);
        key.seal_into(&header_plaintext(&self.blobs), &mut self.buf);
        let header_len = (self.buf.len() - header_start) as u32;
        self.buf.extend_from_slice(&header_len.to_le_bytes());
        self.id = Id::hash(self.bytes());
    }
}

impl PackBuilder {
    pub fn new() -> PackBuilder {
        PackBuilder::default()
    }

    /// An empty builder writing into `buf` (its contents are dropped, its capacity kept):
    /// a writer recycles the buffers of stored packs, since fresh memory costs a page fault
    /// per 4 KiB, as much CPU as encrypting the data.
    pub fn with_buffer(mut buf: Vec<u8>) -> PackBuilder {
        buf.clear();
        PackBuilder {
            bytes: buf,
            ..PackBuilder::default()
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    /// Makes room for the first blob's pack (`reserve` bytes) and aligns the pack's
    /// start. If a later blob reallocates the buffer, the pack is merely unaligned.
    fn begin(&mut self, reserve: usize) {
        self.bytes.clear();
        let want = reserve.saturating_add(PACK_ALIGN);
        if self.bytes.capacity() < want {
            self.bytes.reserve(want);
        }
        let pad = self.bytes.as_ptr().align_offset(PACK_ALIGN);
        self.start = if pad < PACK_ALIGN { pad } else { 0 };
        self.bytes.resize(self.start, 0);
        self.hasher = Sha256::new();
        self.hashed = self.start;
    }

    /// Bytes the buffer holds room for (0 for a new builder without one).
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    pub fn count(&self) -> usize {
        self.blobs.len()
    }

    /// Appends an already encrypted blob.
    pub fn add(&mut self, blob_type: BlobType, id: Id, encrypted: &[u8], uncompressed_length: u32) {
        if self.blobs.is_empty() {
            self.begin(encrypted.len());
        }
        self.blobs.push(PackedBlob {
            blob_type,
            id,
            offset: self.len() as u32,
            length: encrypted.len() as u32,
            uncompressed_length,
        });
        self.bytes.extend_from_slice(encrypted);
    }

    /// Reserves room for `bytes` more bytes.
    pub fn reserve(&mut self, bytes: usize) {
        self.bytes.reserve(bytes);
    }

    /// Encrypts `payload` straight into the pack (no intermediate copy) and records it.
    /// The first blob reserves room for a whole pack (`reserve` bytes, unless the buffer
    /// already has them) so the buffer never reallocates.
    pub fn seal_and_add(
        &mut self,
        key: &Key,
        blob_type: BlobType,
        id: Id,
        payload: &[u8],
        uncompressed_length: u32,
        reserve: usize,
    ) -> usize {
        if self.blobs.is_empty() {
            self.begin(reserve);
        }
        let at = self.bytes.len();
        key.seal_into(payload, &mut self.bytes);
        self.record(blob_type, id, at, uncompressed_length)
    }

    /// Lists the blob sealed at `at` (to the end of the buffer); returns its length.
    fn record(
        &mut self,
        blob_type: BlobType,
        id: Id,
        at: usize,
        uncompressed_length: u32,
    ) -> usize {
        let length = self.bytes.len() - at;
        self.blobs.push(PackedBlob {
            blob_type,
            id,
            offset: (at - self.start) as u32,
            length: length as u32,
            uncompressed_length,
        });
        length
    }

    /// Compresses `data` with `ctx` straight into the pack behind its last blob and seals
    /// it there: no buffer for the compressed bytes (a worker's would stay resident at
    /// the size of its largest compressed chunk) and no copy of them.
    pub fn compress_seal_and_add(
        &mut self,
        key: &Key,
        ctx: &mut zstd::bulk::Compressor<'static>,
        blob_type: BlobType,
        id: Id,
        data: &[u8],
        reserve: usize,
    ) -> InPlace {
        if self.blobs.is_empty() {
            self.begin(reserve);
        }
        let at = self.bytes.len();
        let body = at + crate::crypto::IV_LEN;
        // With room for zstd's bound the output always fits, so a failure below is not
        // about room: the blob is then stored as it is, as for any failed compression.
        if self.bytes.capacity().saturating_sub(body) < zstd::zstd_safe::compress_bound(data.len())
        {
            return InPlace::NoRoom;
        }
        self.bytes.resize(body, 0);
        let mut out = std::io::Cursor::new(&mut self.bytes);
        out.set_position(body as u64);
        match ctx.compress_to_buffer(data, &mut out) {
            Ok(n) if n < data.len() && self.bytes.len() == body + n => {}
            _ => {
                self.bytes.truncate(at);
                return InPlace::NotSmaller;
            }
        }
        key.seal_in_place(&mut self.bytes, at);
        InPlace::Stored(self.record(blob_type, id, at, data.len() as u32))
    }

    /// The id of `data`, hashed together with the pack bytes added since the last call
    /// (two messages interleaved, see [`crate::sha256`]): a blob's id is needed before it
    /// is packed, the pack's once it is full.
    pub fn id_beside(&mut self, data: &[u8]) -> Id {
        if self.blobs.is_empty() {
            return Id::hash(data);
        }
        let from = std::mem::replace(&mut self.hashed, self.bytes.len());
        crate::sha256::id_beside(data, &mut self.hasher, &self.bytes[from..])
    }

    /// Writes the header; returns the pack (its bytes, its id and its blobs).
    pub fn finish(mut self, key: &Key) -> FinishedPack {
        let header = header_plaintext(&self.blobs);
        let before = self.bytes.len();
        key.seal_into(&header, &mut self.bytes);
        let header_len = (self.bytes.len() - before) as u32;
        self.bytes.extend_from_slice(&header_len.to_le_bytes());
        self.hasher
            .update(&self.bytes[self.hashed.max(self.start)..]);
        let id = Id(self.hasher.finish());
        FinishedPack {
            buf: self.bytes,
            start: self.start,
            id,
            blobs: self.blobs,
        }
    }
}

/// A pack header's plaintext: one entry per blob, in pack order.
fn header_plaintext(blobs: &[PackedBlob]) -> Vec<u8> {
    let mut header = Vec::with_capacity(blobs.len() * COMPRESSED_ENTRY_LEN);
    for b in blobs {
        let compressed = b.uncompressed_length != 0;
        let t: u8 = match (b.blob_type, compressed) {
            (BlobType::Data, false) => 0,
            (BlobType::Tree, false) => 1,
            (BlobType::Data, true) => 2,
            (BlobType::Tree, true) => 3,
        };
        header.push(t);
        header.extend_from_slice(&b.length.to_le_bytes());
        if compressed {
            header.extend_from_slice(&b.uncompressed_length.to_le_bytes());
        }
        header.extend_from_slice(&b.id.0);
    }
    header
}

/// How many bytes at the end of a pack to read first: enough for the header of most packs.
pub const HEADER_PROBE: u64 = 16 * 1024;

/// The encrypted header's length, from a pack's last 4 bytes. Checks it fits in `pack_size`.
pub fn header_length(tail: &[u8], pack_size: u64) -> Result<u32> {
    if tail.len() < 4 || pack_size < 4 + OVERHEAD as u64 {
        return Err(Error::corrupt("pack file too short for a header"));
    }
    let mut n = [0u8; 4];
    n.copy_from_slice(&tail[tail.len() - 4..]);
    let len = u32::from_le_bytes(n);
    if len as u64 + 4 > pack_size || (len as usize) < OVERHEAD {
        return Err(Error::corrupt(format!(
            "pack header length {len} does not fit a pack of {pack_size} bytes"
        )));
    }
    Ok(len)
}

/// Decrypts and parses a pack header (the encrypted header bytes, without the length).
pub fn parse_header(key: &Key, encrypted_header: &[u8], pack_size: u64) -> Result<Vec<PackedBlob>> {
    let plain = key
        .open(encrypted_header)
        .map_err(|e| e.context("pack header"))?;
    let header_start = pack_size - 4 - encrypted_header.len() as u64;
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut offset = 0u64;
    while pos < plain.len() {
        let t = plain[pos];
        let (blob_type, compressed) = match t {
            0 => (BlobType::Data, false),
            1 => (BlobType::Tree, false),
            2 => (BlobType::Data, true),
            3 => (BlobType::Tree, true),
            _ => {
                return Err(Error::corrupt(format!(
                    "pack header: unknown blob type {t}"
                )))
            }
        };
        let need = if compressed {
            COMPRESSED_ENTRY_LEN
        } else {
            ENTRY_LEN
        };
        if pos + need > plain.len() {
            return Err(Error::corrupt("pack header: truncated entry"));
        }
        let u32_at =
            |p: usize| u32::from_le_bytes([plain[p], plain[p + 1], plain[p + 2], plain[p + 3]]);
        let length = u32_at(pos + 1);
        let (uncompressed_length, id_at) = if compressed {
            (u32_at(pos + 5), pos + 9)
        } else {
            (0, pos + 5)
        };
        let mut id = [0u8; 32];
        id.copy_from_slice(&plain[id_at..id_at + 32]);
        if offset + length as u64 > header_start {
            return Err(Error::corrupt("pack header: blob extends into the header"));
        }
        let blob = PackedBlob {
            blob_type,
            id: Id(id),
            offset: offset as u32,
            length,
            uncompressed_length,
        };
        blob.check_fits(Some(pack_size))
            .map_err(|e| e.context("pack header"))?;
        out.push(blob);
        offset += length as u64;
        pos += need;
    }
    Ok(out)
}

/// Decrypts (and decompresses) one stored blob and verifies its id.
pub fn decode_blob(key: &Key, blob: &PackedBlob, stored: &[u8]) -> Result<Vec<u8>> {
    decode_blob_owned(key, blob, stored.to_vec())
}

/// Like `decode_blob` for bytes the caller owns (just read): decrypted where they are,
/// without a copy (a no-change backup reads every parent tree through here).
pub fn decode_blob_owned(key: &Key, blob: &PackedBlob, mut stored: Vec<u8>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let plain = decode_blob_in_place(key, blob, &mut stored, &mut out)?.len();
    if blob.uncompressed_length != 0 {
        Ok(out)
    } else {
        stored.drain(..crate::crypto::IV_LEN);
        stored.truncate(plain);
        Ok(stored)
    }
}

thread_local! {
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Like `decode_blob` without allocating: decrypts `stored` in place and decompresses into
/// `out` when needed; returns the verified plaintext (a part of `stored` or of `out`).
pub fn decode_blob_in_place<'a>(
    key: &Key,
    blob: &PackedBlob,
    stored: &'a mut [u8],
    out: &'a mut Vec<u8>,
) -> Result<&'a [u8]> {
    blob.check_fits(None)?;
    let plain = key.open_in_place(stored)?;
    let data: &[u8] = if blob.uncompressed_length != 0 {
        let want = blob.uncompressed_length as usize;
        // The frame says how long it decodes to (restic and cairn both write that): a
        // different claim in the index is damage, found before sizing a buffer by it.
        if let Ok(Some(declared)) = zstd::zstd_safe::get_frame_content_size(&plain[..]) {
            if declared != want as u64 {
                return Err(Error::corrupt(format!(
                    "blob {}: the index says it decompresses to {want} bytes, its data says {declared}",
                    blob.id
                )));
            }
        }
        out.clear();
        out.try_reserve(want).map_err(|_| {
            Error::corrupt(format!(
                "blob {}: cannot allocate {want} bytes to decompress it",
                blob.id
            ))
        })?;
        let n = DECOMPRESSOR.with(|cell| -> Result<usize> {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| {
                    Error::corrupt(format!("zstd: cannot start a decompressor: {e}"))
                })?);
            }
            let d = slot
                .as_mut()
                .ok_or_else(|| Error::corrupt("zstd: no decompressor"))?;
            d.decompress_to_buffer(&plain[..], out)
                .map_err(|e| Error::corrupt(format!("blob {}: zstd: {e}", blob.id)))
        })?;
        if n != want {
            return Err(Error::corrupt(format!(
                "blob {}: decompressed to {n} bytes, expected {want}",
                blob.id
            )));
        }
        &out[..n]
    } else {
        plain
    };
    if Id::hash(data) != blob.id {
        return Err(Error::corrupt(format!(
            "blob {}: content does not match its id",
            blob.id
        )));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_header_round_trips_with_compressed_and_plain_blobs() {
        let key = Key::random();
        let mut b = PackBuilder::new();
        let d1 = b"first blob".to_vec();
        let e1 = key.seal(&d1);
        b.add(BlobType::Data, Id::hash(&d1), &e1, 0);
        let d2 = vec![7u8; 5000];
        let c2 = zstd::bulk::compress(&d2, 3).unwrap();
        let e2 = key.seal(&c2);
        b.add(BlobType::Tree, Id::hash(&d2), &e2, d2.len() as u32);
        let pack = b.finish(&key);
        let (bytes, id, blobs) = (pack.bytes(), pack.id, &pack.blobs);
        assert_eq!(id, Id::hash(bytes));
        let hl = header_length(bytes, bytes.len() as u64).unwrap() as usize;
        let hdr = &bytes[bytes.len() - 4 - hl..bytes.len() - 4];
        let parsed = parse_header(&key, hdr, bytes.len() as u64).unwrap();
        assert_eq!(&parsed, blobs);
        for (p, want) in parsed.iter().zip([&d1, &d2]) {
            let stored = &bytes[p.offset as usize..(p.offset + p.length) as usize];
            assert_eq!(&decode_blob(&key, p, stored).unwrap(), want);
        }
    }

    /// A pack starts aligned in its buffer, a recycled buffer too, and its blobs' offsets
    /// count from the pack's first byte.
    #[test]
    fn a_pack_starts_aligned_and_its_offsets_count_from_its_start() {
        let key = Key::random();
        let mut buf = Vec::new();
        for round in 0..3 {
            let mut b = PackBuilder::with_buffer(std::mem::take(&mut buf));
            let plain: Vec<Vec<u8>> = (0..5u8)
                .map(|i| vec![i ^ round; 1000 + i as usize])
                .collect();
            for p in &plain {
                b.seal_and_add(&key, BlobType::Data, Id::hash(p), p, 0, 64 * 1024);
            }
            let pack = b.finish(&key);
            let bytes = pack.bytes();
            assert_eq!(bytes.as_ptr() as usize % PACK_ALIGN, 0, "round {round}");
            assert_eq!(pack.id, Id::hash(bytes));
            let hl = header_length(bytes, bytes.len() as u64).unwrap() as usize;
            let hdr = &bytes[bytes.len() - 4 - hl..bytes.len() - 4];
            let parsed = parse_header(&key, hdr, bytes.len() as u64).unwrap();
            assert_eq!(parsed, pack.blobs);
            for (p, want) in parsed.iter().zip(&plain) {
                let stored = &bytes[p.offset as usize..(p.offset + p.length) as usize];
                assert_eq!(&decode_blob(&key, p, stored).unwrap(), want);
            }
            buf = pack.into_buffer();
        }
    }

    /// Compressing in place: a compressible blob is stored compressed in the pack, an
    /// incompressible one and one without room for zstd's bound leave the pack as it was,
    /// and the pack (its id hashed partly as it went) reads back.
    #[test]
    fn compressing_in_place_stores_compressible_blobs_and_leaves_others_alone() {
        let key = Key::random();
        let mut ctx = zstd::bulk::Compressor::new(1).unwrap();
        let text: Vec<u8> = (0..300_000u32)
            .flat_map(|i| format!("line {}\n", i % 1000).into_bytes())
            .take(300_000)
            .collect();
        let mut x = 0x9e37_79b9u32;
        let noise: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let mut b = PackBuilder::new();
        let add = |b: &mut PackBuilder, ctx: &mut zstd::bulk::Compressor<'static>, d: &[u8]| {
            b.compress_seal_and_add(&key, ctx, BlobType::Data, Id::hash(d), d, 400_000)
        };
        assert_eq!(add(&mut b, &mut ctx, &noise), InPlace::NotSmaller);
        assert!(b.is_empty());
        assert!(matches!(add(&mut b, &mut ctx, &text), InPlace::Stored(n) if n < text.len() / 4));
        let id = b.id_beside(&noise);
        assert_eq!(id, Id::hash(&noise));
        // The buffer was sized for 400,000 bytes: no room for the bound of 1.2 MB.
        let big = text.repeat(4);
        assert_eq!(add(&mut b, &mut ctx, &big), InPlace::NoRoom);
        assert_eq!(b.count(), 1);
        b.seal_and_add(&key, BlobType::Data, id, &noise, 0, 0);
        let pack = b.finish(&key);
        let bytes = pack.bytes();
        assert_eq!(pack.id, Id::hash(bytes));
        let hl = header_length(bytes, bytes.len() as u64).unwrap() as usize;
        let hdr = &bytes[bytes.len() - 4 - hl..bytes.len() - 4];
        let parsed = parse_header(&key, hdr, bytes.len() as u64).unwrap();
        assert_eq!(parsed, pack.blobs);
        assert_eq!(parsed[0].uncompressed_length as usize, text.len());
        for (p, want) in parsed.iter().zip([&text, &noise]) {
            let stored = &bytes[p.offset as usize..(p.offset + p.length) as usize];
            assert_eq!(&decode_blob(&key, p, stored).unwrap(), want);
        }
    }

    #[test]
    fn a_decompressed_length_claim_is_checked_before_a_buffer_is_sized_by_it() {
        let key = Key::random();
        let plain = vec![1u8; 3000];
        let stored = key.seal(&zstd::bulk::compress(&plain, 3).unwrap());
        let mut blob = PackedBlob {
            blob_type: BlobType::Data,
            id: Id::hash(&plain),
            offset: 0,
            length: stored.len() as u32,
            uncompressed_length: 3000,
        };
        assert_eq!(decode_blob(&key, &blob, &stored).unwrap(), plain);
        for claim in [u32::MAX, MAX_BLOB_SIZE, 3001] {
            blob.uncompressed_length = claim;
            let (mut copy, mut out) = (stored.clone(), Vec::new());
            let e = decode_blob_in_place(&key, &blob, &mut copy, &mut out).unwrap_err();
            assert_eq!(e.kind(), crate::Kind::Corrupt, "{claim}: {e}");
            assert!(
                out.capacity() < 1 << 20,
                "{claim}: {} bytes reserved for a 3000-byte blob",
                out.capacity()
            );
        }
    }
}
