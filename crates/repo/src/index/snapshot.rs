//! A persistent binary snapshot of a loaded index, kept in the repository's local cache
//! directory so that the next process loads the index with one read instead of parsing
//! every index file again (restic re-parses them all each time).
//!
//! The snapshot records which index files it covers; [`Repository::load_index`] uses it
//! only if every one of them is still in the repository (an index file removed by prune or
//! `repair index` makes it stale), parses the index files it does not cover, and checks the
//! pack sizes it was built with against the current listing (a pack whose size changed or
//! vanished could change which entries are refused as damage: then the index is rebuilt).
//!
//! The file is authenticated with HMAC-SHA256 under a key derived from the repository's
//! master key and bound to the repository id: a corrupt disk, an older format or another
//! local user's file cannot make us trust a wrong location; any mismatch means "rebuild".
//! Reads are bounded by the file's size before any allocation, and nothing is trusted
//! before the tag at the end has been checked. Written atomically (temporary file +
//! rename), 0600 in a 0700 directory.
//!
//! Layout (little-endian): magic, repository id, covered index ids, pack ids, pack sizes,
//! pack order, refused entries, then per blob type the bucket starts, the field widths, the
//! 30-byte id suffixes, the bit-packed locations and the escape records, exactly as the
//! compact table holds them; last the 32-byte tag over all bytes before it.
//!
//! [`Repository::load_index`]: crate::repository::Repository::load_index

use super::location::{Location, Widths};
use super::table::{Table, ESCAPE_LEN, PAD, PREFIX};
use super::Index;
use crate::id::Id;
use crate::pack::BlobType;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

/// Version 2: bit-packed locations (version 1 held 12-byte entries; such a file is simply
/// not recognised and rebuilt).
const MAGIC: &[u8; 8] = b"cairnix2";
const TAG_LEN: usize = 32;
/// Bytes read per step of a large table while another core authenticates the step before.
const CHUNK_BYTES: usize = 1 << 20;

/// The key that authenticates snapshots of one repository: derived from its master key
/// (never stored), so only a holder of the password can write one we accept.
pub fn mac_key(master: &crate::crypto::Key) -> [u8; 32] {
    let j = master.to_json();
    let mut h = Sha256::new();
    h.update(b"cairn index snapshot key v1\0");
    h.update(j.encrypt.as_bytes());
    h.update(b"\0");
    h.update(j.mac.k.as_bytes());
    h.update(b"\0");
    h.update(j.mac.r.as_bytes());
    h.finalize().into()
}

fn new_mac(key: &[u8; 32]) -> HmacSha256 {
    // HMAC takes keys of any length: this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// A writer that authenticates everything written through it.
struct MacWriter<W: Write> {
    inner: W,
    mac: HmacSha256,
}

impl<W: Write> MacWriter<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.mac.update(b);
        self.inner.write_all(b)
    }
    fn u64(&mut self, v: u64) -> std::io::Result<()> {
        self.put(&v.to_le_bytes())
    }
}

/// Writes the snapshot of `index` (whose side maps must be empty: see
/// [`Index::compact`]) covering the index files `covered`. Errors only cost speed.
pub fn write(
    path: &Path,
    key: &[u8; 32],
    repo_id: &str,
    covered: &[Id],
    index: &Index,
) -> std::io::Result<()> {
    if !index.is_compact() {
        return Err(std::io::Error::other("index not compact"));
    }
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent directory"))?;
    crate::backend::cache::private_dir(dir)?;
    let tmp = dir.join(format!(
        ".index-snapshot.tmp{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut w = MacWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            mac: new_mac(key),
        };
        write_body(&mut w, repo_id, covered, index)?;
        let tag = w.mac.finalize().into_bytes();
        w.inner.write_all(&tag)?;
        w.inner.into_inner().map_err(|e| e.into_error())?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_body<W: Write>(
    w: &mut MacWriter<W>,
    repo_id: &str,
    covered: &[Id],
    index: &Index,
) -> std::io::Result<()> {
    w.put(MAGIC)?;
    w.u64(repo_id.len() as u64)?;
    w.put(repo_id.as_bytes())?;
    w.u64(covered.len() as u64)?;
    for id in covered {
        w.put(&id.0)?;
    }
    w.u64(index.packs.len() as u64)?;
    for id in &index.packs {
        w.put(&id.0)?;
    }
    for s in &index.sizes {
        w.u64(*s)?;
    }
    for n in &index.pack_order {
        w.put(&n.to_le_bytes())?;
    }
    let mut damaged: Vec<(&(BlobType, Id), &String)> = index.damaged.iter().collect();
    damaged.sort();
    w.u64(damaged.len() as u64)?;
    for ((t, id), why) in damaged {
        w.put(&[type_byte(*t)])?;
        w.put(&id.0)?;
        w.u64(why.len() as u64)?;
        w.put(why.as_bytes())?;
    }
    for table in [&index.data, &index.trees] {
        w.put(&[table.prefix as u8])?;
        w.u64(table.starts.len() as u64)?;
        for s in &table.starts {
            w.put(&s.to_le_bytes())?;
        }
        w.put(&table.widths.0)?;
        w.u64(table.ids.len() as u64)?;
        // In steps: one write of hundreds of MB cost the kernel 2.5 s more than steps of
        // 1 MiB (10M blobs, `perf`: copy_folio_from_iter_atomic).
        for chunk in table.ids.chunks(CHUNK_BYTES) {
            w.put(chunk)?;
        }
        let locs = table.packed_locations();
        w.u64(locs.len() as u64)?;
        for chunk in locs.chunks(CHUNK_BYTES) {
            w.put(chunk)?;
        }
        w.u64(table.escapes.len() as u64)?;
        for (pos, e) in &table.escapes {
            w.put(&pos.to_le_bytes())?;
            for v in [e.pack, e.offset, e.length, e.uncompressed_length] {
                w.put(&v.to_le_bytes())?;
            }
        }
    }
    Ok(())
}

fn type_byte(t: BlobType) -> u8 {
    match t {
        BlobType::Data => 0,
        BlobType::Tree => 1,
    }
}

/// A reader that authenticates what it reads and never reads past the tag.
struct MacReader<R: Read> {
    inner: R,
    /// None when the bytes are checked otherwise (a deferred table's pages).
    mac: Option<HmacSha256>,
    /// Bytes left before the tag.
    left: u64,
    /// Hashes of the pages of one section (a deferred data table, see [`DeferredTable`]).
    section: Option<PageHasher>,
}

impl<R: Read> MacReader<R> {
    fn new(inner: R, key: &[u8; 32], left: u64) -> MacReader<R> {
        MacReader {
            inner,
            mac: Some(new_mac(key)),
            left,
            section: None,
        }
    }
    fn fill(&mut self, buf: &mut [u8]) -> Option<()> {
        if buf.len() as u64 > self.left {
            return None;
        }
        self.inner.read_exact(buf).ok()?;
        self.left -= buf.len() as u64;
        if let Some(m) = &mut self.mac {
            m.update(buf);
        }
        if let Some(s) = &mut self.section {
            s.update(buf);
        }
        Some(())
    }
    /// Reads and authenticates `n` bytes without keeping them; the MAC and the page
    /// hashes of a large step run on two cores.
    fn skip(&mut self, n: u64) -> Option<()> {
        if n > self.left {
            return None;
        }
        let mut buf = vec![0u8; usize::try_from(n.min(4 * CHUNK_BYTES as u64)).ok()?];
        let mut rest = n;
        while rest > 0 {
            let k = usize::try_from(rest.min(buf.len() as u64)).ok()?;
            let chunk = &mut buf[..k];
            self.inner.read_exact(chunk).ok()?;
            self.left -= k as u64;
            rest -= k as u64;
            let chunk = &*chunk;
            let MacReader { mac, section, .. } = self;
            match (mac, section) {
                (Some(m), Some(s)) if k >= CHUNK_BYTES => std::thread::scope(|sc| {
                    sc.spawn(|| s.update(chunk));
                    m.update(chunk);
                }),
                (m, s) => {
                    if let Some(m) = m {
                        m.update(chunk);
                    }
                    if let Some(s) = s {
                        s.update(chunk);
                    }
                }
            }
        }
        Some(())
    }
    fn bytes(&mut self, n: u64) -> Option<Vec<u8>> {
        if n > self.left {
            return None;
        }
        let mut v = vec![0u8; usize::try_from(n).ok()?];
        self.fill(&mut v)?;
        Some(v)
    }
    fn u64(&mut self) -> Option<u64> {
        let mut b = [0u8; 8];
        self.fill(&mut b)?;
        Some(u64::from_le_bytes(b))
    }
    fn u32(&mut self) -> Option<u32> {
        let mut b = [0u8; 4];
        self.fill(&mut b)?;
        Some(u32::from_le_bytes(b))
    }
    fn id(&mut self) -> Option<Id> {
        let mut b = [0u8; 32];
        self.fill(&mut b)?;
        Some(Id(b))
    }
    /// A count of items of `size` bytes each that the rest of the file can hold.
    fn count(&mut self, size: u64) -> Option<usize> {
        let n = self.u64()?;
        if n.checked_mul(size)? > self.left {
            return None;
        }
        usize::try_from(n).ok()
    }
}

/// A loaded snapshot: the index files it covers (sorted) and the index built from them.
pub struct Loaded {
    pub covered: Vec<Id>,
    pub index: Index,
}

mod deferred;
pub(super) use deferred::DeferredTable;
use deferred::{Layout, PageHasher};

/// Reads the snapshot at `path` if it is authentic, of this repository, covers only index
/// files still `listed`, and was built with the pack sizes now listed (`sizes`, which then
/// move into the index; left as they are on None). Without `sizes` the pack sizes recorded
/// in the snapshot are taken as they are (see `Repository::load_index_for_reading`).
/// None on any problem: the caller rebuilds.
pub fn read(
    path: &Path,
    key: &[u8; 32],
    repo_id: &str,
    listed: &HashSet<Id>,
    sizes: Option<&mut HashMap<Id, u64>>,
) -> Option<Loaded> {
    read_with(path, key, repo_id, listed, sizes, false)
}

/// As [`read`], but the data table is only authenticated, not kept: the index holds it
/// deferred, looked up on disk and read whole when many lookups come (a backup whose
/// parent's blobs are vouched for needs data entries only to deduplicate changed files,
/// see `Repository::load_index_for_backup`; `ls` needs none, a restore of one file a few,
/// see `Repository::load_index_for_reading`).
pub fn read_deferring_data(
    path: &Path,
    key: &[u8; 32],
    repo_id: &str,
    listed: &HashSet<Id>,
    sizes: Option<&mut HashMap<Id, u64>>,
) -> Option<Loaded> {
    read_with(path, key, repo_id, listed, sizes, true)
}

fn read_with(
    path: &Path,
    key: &[u8; 32],
    repo_id: &str,
    listed: &HashSet<Id>,
    sizes: Option<&mut HashMap<Id, u64>>,
    defer_data: bool,
) -> Option<Loaded> {
    let file = fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let body = len.checked_sub(TAG_LEN as u64)?;
    let again = if defer_data {
        Some(file.try_clone().ok()?)
    } else {
        None
    };
    let mut r = MacReader::new(BufReader::with_capacity(1 << 20, file), key, body);
    let (mut loaded, section) = read_body(&mut r, repo_id, defer_data)?;
    if r.left != 0 {
        return None;
    }
    let mut tag = [0u8; TAG_LEN];
    r.inner.read_exact(&mut tag).ok()?;
    r.mac.take()?.verify_slice(&tag).ok()?;
    if let (Some(file), Some(s)) = (again, section) {
        loaded.index.defer_data(DeferredTable::new(
            file,
            body - s.left_before,
            s.left_before - s.left_after,
            s.pages,
            s.layout,
        )?);
    }
    // Authentic. Stale if an index file it covers is gone (prune, repair).
    if !loaded.covered.iter().all(|id| listed.contains(id)) {
        return None;
    }
    // The pack sizes it was built with must still be the listed ones.
    let mut index = loaded.index;
    if let Some(sizes) = sizes {
        if !index.adopt_listed_sizes(sizes) {
            return None;
        }
    }
    Some(Loaded {
        covered: loaded.covered,
        index,
    })
}

impl Index {
    /// Whether every pack of this index (loaded from a snapshot) still has the size it
    /// was built with in `sizes` (as listed now); if so the sizes move into the index,
    /// else `sizes` is left as it was.
    pub(crate) fn adopt_listed_sizes(&mut self, sizes: &mut HashMap<Id, u64>) -> bool {
        let mut taken = Vec::with_capacity(self.packs.len());
        for (id, want) in self.packs.iter().zip(&self.sizes) {
            let now = sizes.remove(id);
            if let Some(s) = now {
                taken.push((*id, s));
            }
            if now.unwrap_or(super::NO_SIZE) != *want {
                sizes.extend(taken);
                return false;
            }
        }
        self.other_sizes = std::mem::take(sizes);
        true
    }
}

/// A data table skipped by [`read_body`]: where it is and what a lookup needs of it.
struct Section {
    /// Bytes left before the tag when it starts and after it ends.
    left_before: u64,
    left_after: u64,
    pages: Vec<[u8; 32]>,
    layout: Layout,
}

/// The body; with `defer_data`, the data table is authenticated but not kept, and the
/// hashes of its pages taken on the way.
fn read_body<R: Read>(
    r: &mut MacReader<R>,
    repo_id: &str,
    defer_data: bool,
) -> Option<(Loaded, Option<Section>)> {
    let mut magic = [0u8; 8];
    r.fill(&mut magic)?;
    if &magic != MAGIC {
        return None;
    }
    let n = r.count(1)?;
    if r.bytes(n as u64)? != repo_id.as_bytes() {
        return None;
    }
    let n = r.count(32)?;
    let mut covered = Vec::with_capacity(n);
    for _ in 0..n {
        covered.push(r.id()?);
    }
    let packs_n = r.count(32 + 8 + 4)?;
    let mut index = Index::new();
    index.packs.reserve_exact(packs_n);
    for _ in 0..packs_n {
        index.packs.push(r.id()?);
    }
    index.sizes.reserve_exact(packs_n);
    for _ in 0..packs_n {
        index.sizes.push(r.u64()?);
    }
    index.pack_order.reserve_exact(packs_n);
    for _ in 0..packs_n {
        let p = r.u32()?;
        if p as usize >= packs_n {
            return None;
        }
        index.pack_order.push(p);
    }
    let n = r.count(1 + 32 + 8)?;
    for _ in 0..n {
        let mut t = [0u8; 1];
        r.fill(&mut t)?;
        let t = match t[0] {
            0 => BlobType::Data,
            1 => BlobType::Tree,
            _ => return None,
        };
        let id = r.id()?;
        let why_len = r.count(1)?;
        let why = String::from_utf8(r.bytes(why_len as u64)?).ok()?;
        index.damaged.insert((t, id), why);
    }
    let mut section = None;
    if defer_data {
        let left_before = r.left;
        r.section = Some(PageHasher::default());
        let (_, layout) = read_table(r, false)?;
        section = Some(Section {
            left_before,
            left_after: r.left,
            pages: r.section.take()?.finish(),
            layout: layout.counted_from_section(left_before),
        });
    } else {
        index.data = read_table(r, true)?.0;
    }
    index.trees = read_table(r, true)?.0;
    Some((Loaded { covered, index }, section))
}

/// Fills `dst` from the snapshot, authenticating it; a large `dst` is authenticated on a
/// second core while this one reads the next step.
fn fill_large<R: Read>(r: &mut MacReader<R>, dst: &mut [u8]) -> Option<()> {
    if dst.len() < 4 * CHUNK_BYTES {
        return r.fill(dst);
    }
    if dst.len() as u64 > r.left {
        return None;
    }
    let Some(mut mac) = r.mac.take() else {
        return r.fill(dst);
    };
    let (read, mac) = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<&[u8]>(4);
        let hasher = s.spawn(move || {
            for chunk in rx {
                mac.update(chunk);
            }
            mac
        });
        let mut read = Some(());
        for chunk in dst.chunks_mut(CHUNK_BYTES) {
            if r.inner.read_exact(chunk).is_err() {
                read = None;
                break;
            }
            r.left -= chunk.len() as u64;
            let _ = tx.send(&*chunk);
        }
        drop(tx);
        (read, hasher.join())
    });
    r.mac = Some(mac.ok()?);
    read
}

/// Reads one table; without `keep` only authenticates it, checks its framing and returns
/// an empty table and the layout a lookup on disk needs (with `ids_at` the bytes left
/// before its ids).
fn read_table<R: Read>(r: &mut MacReader<R>, keep: bool) -> Option<(Table, Layout)> {
    let mut prefix = [0u8; 1];
    r.fill(&mut prefix)?;
    let prefix = usize::from(prefix[0]);
    if prefix > PREFIX {
        return None;
    }
    let n = r.count(4)?;
    if n != 0 && n != (1 << (8 * prefix)) + 1 {
        return None;
    }
    let mut starts = Vec::with_capacity(n);
    for _ in 0..n {
        starts.push(r.u32()?);
    }
    let mut widths = Widths::default();
    r.fill(&mut widths.0)?;
    if !widths.valid() {
        return None;
    }
    let id_bytes = r.count(1)?;
    if !id_bytes.is_multiple_of(32 - prefix) {
        return None;
    }
    let ids_at = r.left;
    let mut ids = Vec::new();
    if keep {
        ids = vec![0u8; id_bytes];
        fill_large(r, &mut ids)?;
    } else {
        r.skip(id_bytes as u64)?;
    }
    let n = r.count(1)?;
    if n != widths.bytes_for(id_bytes / (32 - prefix)) {
        return None;
    }
    let locs_at = r.left;
    let mut locs = Vec::new();
    if keep {
        locs = vec![0u8; n + PAD];
        fill_large(r, &mut locs[..n])?;
    } else {
        r.skip(n as u64)?;
    }
    let n = r.count(ESCAPE_LEN as u64)?;
    let mut escapes = Vec::with_capacity(n);
    for _ in 0..n {
        let pos = r.u32()?;
        let loc = Location {
            pack: r.u32()?,
            offset: r.u32()?,
            length: r.u32()?,
            uncompressed_length: r.u32()?,
        };
        escapes.push((pos, loc));
    }
    if !keep {
        // The escapes stay in memory (a handful: locations past the table's widths).
        let layout = Layout::new(prefix, starts, id_bytes, widths, escapes, [ids_at, locs_at])?;
        return Some((Table::default(), layout));
    }
    // Starts, lengths and escapes are checked there.
    let table = Table::from_parts(prefix, starts, ids, widths, locs, escapes)?;
    Some((table, Layout::default()))
}

#[cfg(test)]
mod tests;
