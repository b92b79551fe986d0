//! A data table left on disk: the index snapshot's data section, authenticated with the
//! whole file when it was read, then used where it lies. While the file was authenticated
//! the SHA-256 of each 4 KiB page of the section was taken (8 bytes of memory per KiB of
//! table); a lookup reads the pages holding its bucket from the same open file and checks
//! them against those hashes, and reading the whole table checks every page. So nothing
//! read later is trusted unless it is exactly what was authenticated. The snapshot file is
//! never written in place (a new one is renamed over it), so the open file keeps those
//! bytes; if they differ anyway (the disk, or someone with our rights), the lookup fails.
//!
//! Used by a backup whose parent's blobs are vouched for (see `index::vouch`): it looks up
//! only the blobs of the files it stores, a few pages each, instead of holding the whole
//! data index (360 MB at 10M blobs) for a run that changed a handful of files; and by the
//! commands that read a snapshot (`ls`, `cat`, `dump`, a restore of a few files), which
//! look up locations the same way (a packed location is one more checked page).

use super::{read_table, MacReader};
use crate::id::Id;
use crate::index::location::{bits_in, Location, Widths};
use crate::index::table::{bucket_in, Table};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;

/// Bytes per hashed page.
const PAGE: u64 = 4096;

/// Hashes the pages of a section as its bytes go by.
#[derive(Default)]
pub(in crate::index) struct PageHasher {
    page: Vec<u8>,
    hashes: Vec<[u8; 32]>,
}

impl PageHasher {
    pub(super) fn update(&mut self, mut b: &[u8]) {
        let page = PAGE as usize;
        while !b.is_empty() {
            if self.page.is_empty() && b.len() >= page {
                let (whole, rest) = b.split_at(b.len() / page * page);
                self.hashes.extend(
                    whole
                        .chunks_exact(page)
                        .map(|p| <[u8; 32]>::from(Sha256::digest(p))),
                );
                b = rest;
                continue;
            }
            let take = (page - self.page.len()).min(b.len());
            self.page.extend_from_slice(&b[..take]);
            b = &b[take..];
            if self.page.len() == page {
                self.hashes.push(Sha256::digest(&self.page).into());
                self.page.clear();
            }
        }
    }

    pub(super) fn finish(mut self) -> Vec<[u8; 32]> {
        if !self.page.is_empty() {
            self.hashes.push(Sha256::digest(&self.page).into());
        }
        self.hashes
    }
}

/// What a lookup needs of a table left on disk.
#[derive(Default)]
pub(in crate::index) struct Layout {
    /// Bytes of an id implied by its bucket.
    prefix: usize,
    /// Bucket start positions (empty for an empty table).
    starts: Vec<u32>,
    /// Where the ids and the packed locations start, from the start of the section
    /// (while reading: bytes left before the tag there).
    ids_at: u64,
    locs_at: u64,
    widths: Widths,
    /// Locations that do not fit the widths, by position (sorted).
    escapes: Vec<(u32, Location)>,
}

impl Layout {
    /// The same layout with `ids_at` and `locs_at` counted from the start of the section,
    /// which began `left_before` bytes before the tag.
    pub(super) fn counted_from_section(self, left_before: u64) -> Layout {
        Layout {
            ids_at: left_before - self.ids_at,
            locs_at: left_before - self.locs_at,
            ..self
        }
    }

    /// The layout of a table whose framing was read; None if its starts are not those of
    /// `id_bytes` of sorted ids or its escapes are not sorted positions within them (the
    /// checks of `Table::from_parts` that need neither ids nor locations). `at` holds
    /// `ids_at` and `locs_at`.
    pub(super) fn new(
        prefix: usize,
        starts: Vec<u32>,
        id_bytes: usize,
        widths: Widths,
        escapes: Vec<(u32, Location)>,
        [ids_at, locs_at]: [u64; 2],
    ) -> Option<Layout> {
        let n = id_bytes / (32 - prefix);
        let consistent = (starts.is_empty() || starts.len() == (1 << (8 * prefix)) + 1)
            && starts.first().is_none_or(|f| *f == 0)
            && starts.windows(2).all(|w| w[0] <= w[1])
            && starts.last().map_or(n == 0, |l| *l as usize == n)
            && escapes.windows(2).all(|w| w[0].0 < w[1].0)
            && escapes.last().is_none_or(|e| (e.0 as usize) < n);
        consistent.then_some(Layout {
            prefix,
            starts,
            ids_at,
            locs_at,
            widths,
            escapes,
        })
    }
}

/// The data table of a snapshot read by `read_deferring_data`.
pub(in crate::index) struct DeferredTable {
    file: fs::File,
    /// Where the section starts in the file, and its length.
    start: u64,
    len: u64,
    pages: Vec<[u8; 32]>,
    layout: Layout,
}

impl DeferredTable {
    pub(super) fn new(
        file: fs::File,
        start: u64,
        len: u64,
        pages: Vec<[u8; 32]>,
        layout: Layout,
    ) -> Option<DeferredTable> {
        (pages.len() as u64 == len.div_ceil(PAGE)).then_some(DeferredTable {
            file,
            start,
            len,
            pages,
            layout,
        })
    }

    /// Entries in the table.
    pub(in crate::index) fn len(&self) -> usize {
        self.layout.starts.last().map_or(0, |n| *n as usize)
    }

    /// Bytes of memory held (page hashes, bucket starts, escapes).
    pub(in crate::index) fn heap_bytes(&self) -> usize {
        self.pages.capacity() * 32
            + self.layout.starts.capacity() * 4
            + self.layout.escapes.capacity() * std::mem::size_of::<(u32, Location)>()
    }

    /// Reads pages `first..=last` of the section into `buf`, checked; None if any differs.
    fn pages(&self, first: u64, last: u64, buf: &mut Vec<u8>) -> Option<()> {
        let end = ((last + 1) * PAGE).min(self.len);
        let from = first * PAGE;
        buf.resize(usize::try_from(end.checked_sub(from)?).ok()?, 0);
        self.file.read_exact_at(buf, self.start + from).ok()?;
        for (i, page) in buf.chunks(PAGE as usize).enumerate() {
            let want = self.pages.get(usize::try_from(first).ok()? + i)?;
            if <[u8; 32]>::from(Sha256::digest(page)) != *want {
                return None;
            }
        }
        Some(())
    }

    /// Whether the table holds `id`, from the checked pages of its bucket; None if they
    /// cannot be read as they were authenticated.
    pub(in crate::index) fn contains(&self, id: &Id) -> Option<bool> {
        self.position(id).map(|p| p.is_some())
    }

    /// The location of `id`, from the checked pages of its bucket and of its packed
    /// location; None if they cannot be read as they were authenticated (or the table
    /// marks an escape it has no record of, which reading it whole refuses too).
    pub(in crate::index) fn find(&self, id: &Id) -> Option<Option<Location>> {
        let Some(pos) = self.position(id)? else {
            return Some(None);
        };
        let l = &self.layout;
        let stride = l.widths.stride();
        let bit = pos as u64 * stride as u64;
        // The 16 bytes a packed location is read from, as a table in memory does (zero
        // past the end of the section; the bits past this location's are masked off).
        let from = l.locs_at + bit / 8;
        let to = (from + 16).min(self.len);
        let mut buf = Vec::new();
        self.pages(from / PAGE, to.checked_sub(1)? / PAGE, &mut buf)?;
        let skip = usize::try_from(from % PAGE).ok()?;
        let bytes = buf.get(skip..skip + usize::try_from(to.checked_sub(from)?).ok()?)?;
        let mut window = [0u8; 16];
        window[..bytes.len()].copy_from_slice(bytes);
        let packed = bits_in(window, (bit % 8) as usize, stride);
        match l.widths.unpack(packed) {
            Some(loc) => Some(Some(loc)),
            None => {
                let i = l
                    .escapes
                    .binary_search_by_key(&(pos as u32), |e| e.0)
                    .ok()?;
                Some(Some(l.escapes[i].1))
            }
        }
    }

    /// The position of `id` in the table (None inside: absent), from the checked pages of
    /// its bucket; None if they cannot be read as they were authenticated.
    fn position(&self, id: &Id) -> Option<Option<usize>> {
        let l = &self.layout;
        if l.starts.is_empty() {
            return Some(None);
        }
        let b = bucket_in(l.prefix, id);
        let (lo, hi) = (
            u64::from(*l.starts.get(b)?),
            u64::from(*l.starts.get(b + 1)?),
        );
        if lo == hi {
            return Some(None);
        }
        let len = (32 - l.prefix) as u64;
        let (from, to) = (l.ids_at + lo * len, l.ids_at + hi * len);
        let mut buf = Vec::new();
        self.pages(from / PAGE, (to - 1) / PAGE, &mut buf)?;
        let skip = usize::try_from(from - from / PAGE * PAGE).ok()?;
        let ids = buf.get(skip..skip + usize::try_from(to - from).ok()?)?;
        let key = &id.0[l.prefix..];
        let len = len as usize;
        let (mut a, mut z) = (0, ids.len() / len);
        while a < z {
            let mid = a + (z - a) / 2;
            match key.cmp(&ids[mid * len..(mid + 1) * len]) {
                std::cmp::Ordering::Less => z = mid,
                std::cmp::Ordering::Greater => a = mid + 1,
                std::cmp::Ordering::Equal => return Some(Some(usize::try_from(lo).ok()? + mid)),
            }
        }
        Some(None)
    }

    /// Reads the whole table, checking every page.
    pub(in crate::index) fn load(&self) -> Option<Table> {
        let pages = Pages {
            table: self,
            next: 0,
            buf: Vec::new(),
            at: 0,
        };
        let mut r = MacReader {
            inner: std::io::BufReader::with_capacity(1 << 20, pages),
            mac: None,
            left: self.len,
            section: None,
        };
        let (table, _) = read_table(&mut r, true)?;
        (r.left == 0).then_some(table)
    }
}

/// The section read page by page, each checked before any of its bytes is served.
struct Pages<'a> {
    table: &'a DeferredTable,
    next: u64,
    buf: Vec<u8>,
    at: usize,
}

impl Read for Pages<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buf.len() {
            if self.next * PAGE >= self.table.len {
                return Ok(0);
            }
            // Up to 64 pages per read: fewer system calls, the same checks.
            let last = (self.next + 63).min(self.table.len.div_ceil(PAGE) - 1);
            self.table
                .pages(self.next, last, &mut self.buf)
                .ok_or_else(|| std::io::Error::other("index snapshot page changed"))?;
            self.next = last + 1;
            self.at = 0;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
