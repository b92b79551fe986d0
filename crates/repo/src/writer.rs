//! Saving blobs: dedup against the index, compress, encrypt, pack, upload, and finally
//! write the index of everything uploaded.
//!
//! Safe to call from many threads at once. Write order: a pack is durable before its blobs
//! are listed in an index file, and `finish` writes the index only after every pack.
//! Callers write the snapshot after `finish` returns.

use crate::backend::FileType;
use crate::crypto::OVERHEAD;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{Index, IndexPack};
use crate::pack::{BlobType, FinishedPack, InPlace, PackBuilder};
use crate::repository::Repository;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Target size of a pack file (restic's default is 16 MiB).
pub const DEFAULT_PACK_SIZE: usize = 16 * 1024 * 1024;
/// Blobs per index file before starting a new one (restic uses the same bound).
const INDEX_MAX_BLOBS: usize = 50_000;

/// Counters of what was added.
#[derive(Default, Debug)]
pub struct WriteStats {
    pub data_blobs: AtomicU64,
    pub tree_blobs: AtomicU64,
    /// Plaintext bytes of new blobs.
    pub data_added: AtomicU64,
    /// Bytes of new blobs as stored (compressed, encrypted).
    pub data_added_packed: AtomicU64,
    /// Packs begun in freshly allocated memory (the others reuse a stored pack's buffer).
    pub fresh_pack_buffers: AtomicU64,
}

pub struct PackWriter<'r> {
    repo: &'r Repository,
    index: &'r Index,
    pack_size: usize,
    open: [Mutex<PackBuilder>; 2],
    known: Mutex<HashSet<(BlobType, Id)>>,
    written: Arc<Mutex<Vec<WrittenPack>>>,
    /// Buffers of stored packs, for the next packs.
    spare: Spare,
    /// Uploader threads, one per backend connection.
    uploads: Uploads,
    pub stats: WriteStats,
}

/// Packs closed by adding a blob: the one before it (no room left), the one it filled.
type Closed = (Option<PackBuilder>, Option<PackBuilder>);

/// A finished pack, and its index entry once stored.
type PackUpload = (FinishedPack, IndexPack);

/// A pack stored by the writer: its index entry and its size in bytes.
pub struct WrittenPack {
    pub pack: IndexPack,
    pub size: u64,
}

impl std::borrow::Borrow<IndexPack> for WrittenPack {
    fn borrow(&self) -> &IndexPack {
        &self.pack
    }
}

/// Pack buffers kept for reuse once their pack is stored: a new pack in fresh memory costs
/// a page fault per 4 KiB (a tenth of a backup's CPU on a virtual machine). At most
/// `MAX_SPARE` are kept; the writer never has more than a few packs in flight anyway.
/// One, not two, since a backup fills one pack per file worker ([`Lane`]): a first backup
/// of the bench's 1.1 GB then allocates 10 fresh buffers (peak RSS 86-92 MB); two spares
/// kept 97-103 MB for no measurable time saved; none took 0.3 s more kernel time.
///
/// A closed pack's successor takes the spare only when its first blob arrives
/// ([`PackWriter::recycle`]), and a lane stores the pack a blob does not fit in before it
/// adds that blob: a worker storing its pack itself then holds that one buffer, not also
/// a recycled one for its next pack (wholly resident, whatever it holds yet).
#[derive(Clone, Default)]
struct Spare(Arc<Mutex<Vec<Vec<u8>>>>);

const MAX_SPARE: usize = 1;

impl Spare {
    fn give(&self, buf: Vec<u8>) {
        if let Ok(mut s) = self.0.lock() {
            if s.len() < MAX_SPARE {
                s.push(buf);
            }
        }
    }

    /// A recycled buffer, if there is one.
    fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().ok().and_then(|mut s| s.pop())
    }
}

/// A pool of uploader threads fed through a short queue: network time overlaps chunking
/// and encryption, while at most `connections + 1` finished packs wait in memory.
struct Uploads {
    queue: Mutex<Option<crossbeam_channel::Sender<PackUpload>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    failed: Arc<Mutex<Option<Error>>>,
    /// For a file worker that stores its pack itself (see `send_or_store`).
    store: Store,
}

/// Stores a pack and records it (or the first failure).
#[derive(Clone)]
struct Store {
    backend: Arc<dyn crate::backend::Backend>,
    /// To seal a pack's header again when its upload is retried under a new name.
    key: Arc<crate::crypto::Key>,
    written: Arc<Mutex<Vec<WrittenPack>>>,
    failed: Arc<Mutex<Option<Error>>>,
    spare: Spare,
}

impl Store {
    fn store(&self, mut pack: FinishedPack, mut entry: IndexPack) {
        if self.failed.lock().map(|f| f.is_some()).unwrap_or(true) {
            return; // the writer reports the first failure
        }
        let size = pack.bytes().len() as u64;
        let mut renewable = RenewablePack {
            pack: &mut pack,
            key: &self.key,
        };
        let stored =
            crate::backend::write_renewing(self.backend.as_ref(), FileType::Pack, &mut renewable);
        entry.id = pack.id; // a retried upload stored the pack under a new name
        self.spare.give(pack.into_buffer());
        match stored {
            Ok(()) => {
                if let Ok(mut w) = self.written.lock() {
                    w.push(WrittenPack { pack: entry, size });
                }
            }
            Err(e) => {
                if let Ok(mut f) = self.failed.lock() {
                    f.get_or_insert(e);
                }
            }
        }
    }
}

/// A finished pack whose header can be sealed again: the same blobs under a new name.
struct RenewablePack<'a> {
    pack: &'a mut FinishedPack,
    key: &'a crate::crypto::Key,
}

impl crate::backend::Renewable for RenewablePack<'_> {
    fn name(&self) -> String {
        self.pack.id.to_hex()
    }
    fn bytes(&self) -> &[u8] {
        self.pack.bytes()
    }
    fn renew(&mut self) {
        self.pack.reseal(self.key);
    }
}

impl Uploads {
    fn start(repo: &Repository, written: Arc<Mutex<Vec<WrittenPack>>>, spare: &Spare) -> Uploads {
        // One connection gets a thread too: storing a pack (a disk flush, a round trip)
        // then overlaps chunking and compressing the next one. A rendezvous channel: a
        // finished pack waits in its worker's hands, not in a queue holding one more.
        let n = repo.backend().connections().max(1);
        let (tx, rx) = crossbeam_channel::bounded::<PackUpload>(0);
        let failed = Arc::new(Mutex::new(None::<Error>));
        let store = Store {
            backend: repo.backend().clone(),
            key: Arc::new(repo.key().clone()),
            written,
            failed: failed.clone(),
            spare: spare.clone(),
        };
        let threads = (0..n)
            .map(|_| {
                let (rx, store) = (rx.clone(), store.clone());
                std::thread::spawn(move || {
                    for (pack, entry) in rx {
                        store.store(pack, entry);
                    }
                })
            })
            .collect();
        Uploads {
            queue: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
            failed,
            store,
        }
    }

    /// Hands the pack to an idle uploader or, when none is idle and the backend is a local
    /// directory, stores it on this thread: waiting for the uploader would idle this
    /// thread as long, and a worker holding its finished pack while it fills the next
    /// would hold one more pack buffer (16 MiB of peak RSS).
    fn send_or_store(&self, pack: FinishedPack, entry: IndexPack) -> Result<()> {
        if !self.store.backend.is_local() {
            return self.send(pack, entry);
        }
        self.check()?;
        let tx = self.sender()?;
        match tx.try_send((pack, entry)) {
            Ok(()) => Ok(()),
            Err(crossbeam_channel::TrySendError::Full((pack, entry))) => {
                self.store.store(pack, entry);
                self.check()
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                Err(Error::invalid("the pack uploaders stopped"))
            }
        }
    }

    fn sender(&self) -> Result<crossbeam_channel::Sender<PackUpload>> {
        self.queue
            .lock()
            .map_err(|_| poisoned())?
            .clone()
            .ok_or_else(|| Error::invalid("pack written after the writer finished"))
    }

    /// The first upload failure, as an error for every later caller.
    fn check(&self) -> Result<()> {
        match &*self.failed.lock().map_err(|_| poisoned())? {
            Some(e) => Err(Error::new(e.kind(), e.to_string())),
            None => Ok(()),
        }
    }

    fn send(&self, pack: FinishedPack, entry: IndexPack) -> Result<()> {
        self.check()?;
        let tx = self.sender()?;
        tx.send((pack, entry))
            .map_err(|_| Error::invalid("the pack uploaders stopped"))
    }

    /// Waits for every queued upload; fails if any failed.
    fn wait(&self) -> Result<()> {
        drop(self.queue.lock().map_err(|_| poisoned())?.take());
        for t in std::mem::take(&mut *self.threads.lock().map_err(|_| poisoned())?) {
            t.join()
                .map_err(|_| Error::invalid("a pack uploader thread panicked"))?;
        }
        self.check()
    }
}

impl Drop for Uploads {
    fn drop(&mut self) {
        let _ = self.wait();
    }
}

impl<'r> PackWriter<'r> {
    pub fn new(repo: &'r Repository, index: &'r Index) -> PackWriter<'r> {
        let written = Arc::new(Mutex::new(Vec::new()));
        let spare = Spare::default();
        PackWriter {
            repo,
            index,
            pack_size: repo.pack_size(),
            open: [
                Mutex::new(PackBuilder::new()),
                Mutex::new(PackBuilder::new()),
            ],
            known: Mutex::new(HashSet::new()),
            uploads: Uploads::start(repo, written.clone(), &spare),
            written,
            spare,
            stats: WriteStats::default(),
        }
    }

    /// The repository being written.
    pub fn repo(&self) -> &Repository {
        self.repo
    }

    pub fn with_pack_size(mut self, bytes: usize) -> Self {
        self.pack_size = bytes.max(1024);
        self
    }

    /// True if the blob is already stored or being stored.
    pub fn has(&self, t: BlobType, id: &Id) -> bool {
        self.index.has(t, id)
            || self
                .known
                .lock()
                .map(|k| k.contains(&(t, *id)))
                .unwrap_or(false)
    }

    /// Stores a blob unless it exists; returns its id and whether it was new.
    pub fn save(&self, t: BlobType, data: &[u8]) -> Result<(Id, bool)> {
        let id = Id::hash(data);
        let new = self.save_with_id(t, id, data)?;
        Ok((id, new))
    }

    /// Like `save` for a caller that already hashed `data`.
    pub fn save_with_id(&self, t: BlobType, id: Id, data: &[u8]) -> Result<bool> {
        if !self.claim(t, id)? {
            return Ok(false);
        }
        self.store_new(t, id, data, false, || {
            self.open[t as usize].lock().map_err(|_| poisoned())
        })?;
        Ok(true)
    }

    /// A file worker's own data pack (see [`Lane`]).
    pub fn lane(&self) -> Lane<'_, 'r> {
        Lane {
            writer: self,
            pack: PackBuilder::new(),
        }
    }

    /// True if the blob is new to the repository and to this writer, and notes it as
    /// being stored.
    fn claim(&self, t: BlobType, id: Id) -> Result<bool> {
        // A backup may look data blobs up on disk (a deferred table): that can fail.
        Ok(!self.index.has_checked(t, &id)?
            && self.known.lock().map_err(|_| poisoned())?.insert((t, id)))
    }

    /// Compresses (if the repository does) and encrypts a new blob into the pack `open`
    /// gives: the shared pack of its type under its lock, or a lane's own pack. A lane
    /// (`in_place`) compresses a large blob straight into its pack (no lock to hold).
    fn store_new<B: std::ops::DerefMut<Target = PackBuilder>>(
        &self,
        t: BlobType,
        id: Id,
        data: &[u8],
        in_place: bool,
        open: impl FnOnce() -> Result<B>,
    ) -> Result<()> {
        let level = self.repo.compression().level();
        COMPRESSOR.with(|cell| -> Result<()> {
            let mut slot = cell.borrow_mut();
            let c = level
                .and_then(|l| thread_compressor(&mut slot, l))
                .and_then(|c| c.worth(data).then_some(c));
            let (before, full) = match c {
                Some(c) if in_place && data.len() > c.small.len() => {
                    self.add_in_place(&mut *open()?, c, t, id, data)?
                }
                Some(c) => {
                    // Compressed before the shared pack's lock is taken.
                    let payload = match c.aside(data) {
                        Some(p) => (p, data.len() as u32),
                        None => (data, 0),
                    };
                    self.add(&mut *open()?, t, id, payload, in_place)?
                }
                None => self.add(&mut *open()?, t, id, (data, 0), in_place)?,
            };
            if let Some(b) = before {
                self.upload(b)?;
            }
            self.stats
                .data_added
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            match t {
                BlobType::Data => &self.stats.data_blobs,
                BlobType::Tree => &self.stats.tree_blobs,
            }
            .fetch_add(1, Ordering::Relaxed);
            if let Some(b) = full {
                self.upload(b)?;
            }
            Ok(())
        })
    }

    /// Seals `payload` (and its uncompressed length, 0 if stored as it is) into `b`;
    /// returns the packs closed before and after it, to upload. A `lane`'s pack closed
    /// for want of room is uploaded here, before the blob goes into the next pack (see
    /// [`Spare`]); a shared pack's after its lock is released, by the caller.
    fn add(
        &self,
        b: &mut PackBuilder,
        t: BlobType,
        id: Id,
        payload: (&[u8], u32),
        lane: bool,
    ) -> Result<Closed> {
        let mut before = self.make_room(b, payload.0.len() + OVERHEAD);
        if lane {
            if let Some(full) = before.take() {
                self.upload(full)?;
            }
        }
        self.recycle(b);
        let sealed = b.seal_and_add(
            self.repo.key(),
            t,
            id,
            payload.0,
            payload.1,
            self.reserve(payload.0.len()),
        );
        self.stats
            .data_added_packed
            .fetch_add(sealed as u64, Ordering::Relaxed);
        Ok((before, self.take_full(b)))
    }

    /// Compresses `data` into `b` in place when its worst case (zstd's bound) fits in
    /// the pack; near a pack's end, aside first to learn its size (then that buffer is
    /// freed: it would otherwise stay resident at the largest size it ever took).
    fn add_in_place(
        &self,
        b: &mut PackBuilder,
        c: &mut ThreadCompressor,
        t: BlobType,
        id: Id,
        data: &[u8],
    ) -> Result<Closed> {
        let bound = zstd::zstd_safe::compress_bound(data.len());
        self.recycle(b);
        if b.is_empty() || b.len() + bound + OVERHEAD <= self.pack_size {
            let key = self.repo.key();
            match b.compress_seal_and_add(key, &mut c.ctx, t, id, data, self.reserve(bound)) {
                InPlace::Stored(sealed) => {
                    self.stats
                        .data_added_packed
                        .fetch_add(sealed as u64, Ordering::Relaxed);
                    return Ok((None, self.take_full(b)));
                }
                InPlace::NotSmaller => return self.add(b, t, id, (data, 0), true),
                InPlace::NoRoom => {}
            }
        }
        let closed = match c.aside(data) {
            Some(p) => self.add(b, t, id, (p, data.len() as u32), true),
            None => self.add(b, t, id, (data, 0), true),
        };
        c.release_out();
        closed
    }

    /// Stores a blob that is already encrypted (and maybe compressed) as it was in another
    /// pack of this repository: prune's repacking copies blobs without re-encoding them.
    /// The caller has verified it. Returns false if the blob was already added.
    pub fn save_sealed(
        &self,
        t: BlobType,
        id: Id,
        sealed: &[u8],
        uncompressed_len: u32,
    ) -> Result<bool> {
        if !self.claim(t, id)? {
            return Ok(false);
        }
        let (before, full) = {
            let mut b = self.open[t as usize].lock().map_err(|_| poisoned())?;
            let before = self.make_room(&mut b, sealed.len());
            self.recycle(&mut b);
            if b.is_empty() {
                b.reserve(self.reserve(sealed.len()));
            }
            b.add(t, id, sealed, uncompressed_len);
            (before, self.take_full(&mut b))
        };
        self.stats
            .data_added_packed
            .fetch_add(sealed.len() as u64, Ordering::Relaxed);
        if let Some(b) = before {
            self.upload(b)?;
        }
        if let Some(b) = full {
            self.upload(b)?;
        }
        Ok(true)
    }

    /// Closes the open pack if a blob of `stored` bytes would take it past the pack size:
    /// packs stay under it (restic lets the last blob overshoot, by up to 8 MiB), so a
    /// pack buffer never holds more than that, and the few buffers in flight are smaller.
    fn make_room(&self, b: &mut PackBuilder, stored: usize) -> Option<PackBuilder> {
        (!b.is_empty() && b.len() + stored > self.pack_size).then(|| std::mem::take(b))
    }

    /// Closes the open pack if it reached the pack size.
    fn take_full(&self, b: &mut PackBuilder) -> Option<PackBuilder> {
        (b.len() >= self.pack_size).then(|| std::mem::take(b))
    }

    /// Gives an empty pack without a buffer the spare one, if any, before its first blob.
    fn recycle(&self, b: &mut PackBuilder) {
        if b.is_empty() && b.capacity() == 0 {
            match self.spare.take() {
                Some(buf) => *b = PackBuilder::with_buffer(buf),
                None => {
                    self.stats
                        .fresh_pack_buffers
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// The room a new pack buffer reserves when its first blob has `payload` bytes: the
    /// pack size (or that blob if larger) and the header (address space only: pages are
    /// touched as they are used).
    fn reserve(&self, payload: usize) -> usize {
        self.pack_size.max(payload + OVERHEAD) + HEADER_RESERVE
    }

    fn upload(&self, b: PackBuilder) -> Result<()> {
        let pack = b.finish(self.repo.key());
        let entry = IndexPack::from_blobs(pack.id, &pack.blobs);
        self.uploads.send_or_store(pack, entry)
    }

    /// Uploads partly filled packs, then writes index files for everything uploaded.
    /// Returns the ids of the new index files.
    pub fn finish(&self) -> Result<Vec<Id>> {
        Ok(self.finish_written()?.0)
    }

    /// As [`PackWriter::finish`], and also returns every pack written with its size (what
    /// the index files list), for [`Repository::refresh_index_snapshot`].
    ///
    /// [`Repository::refresh_index_snapshot`]: crate::repository::Repository::refresh_index_snapshot
    pub fn finish_written(&self) -> Result<(Vec<Id>, Vec<WrittenPack>)> {
        let written = self.finish_written_packs()?;
        Ok((write_index_files(self.repo, &written, &[])?, written))
    }

    /// Uploads partly filled packs and returns every pack written, for a caller that
    /// writes the index itself.
    pub fn finish_packs(&self) -> Result<Vec<IndexPack>> {
        Ok(self
            .finish_written_packs()?
            .into_iter()
            .map(|w| w.pack)
            .collect())
    }

    fn finish_written_packs(&self) -> Result<Vec<WrittenPack>> {
        for slot in &self.open {
            let b = std::mem::take(&mut *slot.lock().map_err(|_| poisoned())?);
            if !b.is_empty() {
                self.upload(b)?;
            }
        }
        self.uploads.wait()?;
        Ok(std::mem::take(
            &mut *self.written.lock().map_err(|_| poisoned())?,
        ))
    }
}

/// A file worker's own data pack, so it can hash the next chunk's plaintext together with
/// the pack bytes it sealed last (two SHA-256 messages interleaved run 1.7 times as fast
/// as one after the other, see [`crate::sha256`]): a shared pack's bytes are appended by
/// several workers in turn. Blobs are deduplicated across lanes (one `known` set). Each
/// lane holds one open pack, so a backup has up to one partly filled pack per worker.
///
/// [`Lane::finish`] must be called before the writer's `finish`: a pack still open in a
/// lane is not in the index.
pub struct Lane<'w, 'r> {
    writer: &'w PackWriter<'r>,
    pack: PackBuilder,
}

impl Lane<'_, '_> {
    /// Stores a data blob unless it exists; returns its id and whether it was new.
    pub fn save(&mut self, data: &[u8]) -> Result<(Id, bool)> {
        let t = BlobType::Data;
        let id = self.pack.id_beside(data);
        if !self.writer.claim(t, id)? {
            return Ok((id, false));
        }
        self.writer
            .store_new(t, id, data, true, || Ok(&mut self.pack))?;
        Ok((id, true))
    }

    /// Uploads the lane's partly filled pack.
    pub fn finish(mut self) -> Result<()> {
        let b = std::mem::take(&mut self.pack);
        if b.is_empty() {
            return Ok(());
        }
        self.writer.upload(b)
    }
}

/// Room reserved for a pack's header: that of a pack of 25,000 blobs.
const HEADER_RESERVE: usize = 1024 * 1024;

/// Per-thread zstd context and output buffer, reused across blobs: a fresh context per
/// blob costs more than compressing a small file.
struct ThreadCompressor {
    level: i32,
    ctx: zstd::bulk::Compressor<'static>,
    out: Vec<u8>,
    /// Output of inputs up to `8 * SAMPLE` bytes, and of samples (zeroed once).
    small: Vec<u8>,
}

/// `auto` skips chunks that will not compress (media, archives, encrypted files), judged by
/// two samples of this size. Compressing them costs as much CPU as the rest of the pipeline
/// and, like restic, we would store them uncompressed anyway. `max` tries everything.
const SAMPLE: usize = 16 * 1024;

thread_local! {
    static COMPRESSOR: std::cell::RefCell<Option<ThreadCompressor>> =
        const { std::cell::RefCell::new(None) };
}

/// The thread's compressor for `level` (made on first use).
fn thread_compressor(
    slot: &mut Option<ThreadCompressor>,
    level: i32,
) -> Option<&mut ThreadCompressor> {
    if slot.as_ref().is_none_or(|c| c.level != level) {
        *slot = Some(ThreadCompressor {
            level,
            ctx: zstd::bulk::Compressor::new(level).ok()?,
            out: Vec::new(),
            small: vec![0u8; 8 * SAMPLE],
        });
    }
    slot.as_mut()
}

/// Compresses `data` at `level` into the thread's buffer; None when that fails or would
/// not make the blob smaller (then it is stored uncompressed, like restic does).
#[cfg(test)]
fn compress<'a>(
    slot: &'a mut Option<ThreadCompressor>,
    level: i32,
    data: &[u8],
) -> Option<&'a [u8]> {
    let c = thread_compressor(slot, level)?;
    if !c.worth(data) {
        return None;
    }
    c.aside(data)
}

impl ThreadCompressor {
    /// False when `data` is too short to compress or, for large inputs, when two samples
    /// do not compress (skipped: compressing it would cost as much as the rest).
    fn worth(&mut self, data: &[u8]) -> bool {
        if data.len() < 2 {
            return false;
        }
        if self.level < 10 && data.len() >= 8 * SAMPLE {
            let mid = data.len() / 2;
            // Incompressible: not even 2% smaller (no room for more output than that).
            let mut incompressible = |s: &[u8]| {
                let room = s.len() * 98 / 100;
                self.ctx
                    .compress_to_buffer(s, &mut self.small[..room])
                    .is_err()
            };
            if incompressible(&data[..SAMPLE]) && incompressible(&data[mid..mid + SAMPLE]) {
                return false;
            }
        }
        true
    }

    /// Compresses `data` into the thread's own buffer; None when that fails or would not
    /// make it smaller.
    fn aside(&mut self, data: &[u8]) -> Option<&[u8]> {
        // The output must come out smaller than the input or it is not used. Small inputs
        // (below the sampling size) get only that much room, so on incompressible data zstd
        // gives up (an error) instead of copying the input into a raw block we would throw
        // away. Larger ones write into the spare capacity of `out`: a buffer zeroed to the
        // largest chunk would keep up to 8 MiB per thread resident.
        if data.len() <= self.small.len() {
            let n = self
                .ctx
                .compress_to_buffer(data, &mut self.small[..data.len() - 1])
                .ok()?;
            return Some(&self.small[..n]);
        }
        self.out.clear();
        self.out
            .reserve(zstd::zstd_safe::compress_bound(data.len()));
        let n = self.ctx.compress_to_buffer(data, &mut self.out).ok()?;
        (n < data.len()).then_some(&self.out[..n])
    }

    /// Frees `out` if it grew past the mmap threshold (back to the kernel at once).
    fn release_out(&mut self) {
        if self.out.capacity() > 1024 * 1024 {
            self.out = Vec::new();
        }
    }
}

/// An index file as [`IndexFile`](crate::index::IndexFile) writes it, borrowing its packs: they are serialised
/// in place (a copy of every entry, about 50 bytes each, would sit beside the JSON).
#[derive(serde::Serialize)]
#[serde(bound(serialize = "P: std::borrow::Borrow<IndexPack>"))]
struct IndexFileOf<'a, P> {
    #[serde(skip_serializing_if = "<[Id]>::is_empty")]
    supersedes: &'a [Id],
    packs: PacksOf<'a, P>,
}

struct PacksOf<'a, P>(&'a [P]);

impl<P: std::borrow::Borrow<IndexPack>> serde::Serialize for PacksOf<'_, P> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|p| p.borrow()))
    }
}

/// Writes index files for `packs`, a new file once one holds `INDEX_MAX_BLOBS` blobs;
/// `supersedes` goes into the first.
pub fn write_index_files<P: std::borrow::Borrow<IndexPack>>(
    repo: &Repository,
    packs: &[P],
    supersedes: &[Id],
) -> Result<Vec<Id>> {
    let mut ids = Vec::new();
    let (mut rest, mut supersedes) = (packs, supersedes);
    while !rest.is_empty() || !supersedes.is_empty() {
        let mut blobs = 0;
        let n = rest
            .iter()
            .take_while(|p| {
                let fits = blobs < INDEX_MAX_BLOBS;
                blobs += p.borrow().blobs.len();
                fits
            })
            .count();
        let file = IndexFileOf {
            supersedes,
            packs: PacksOf(&rest[..n]),
        };
        ids.push(repo.save_json(FileType::Index, &file)?);
        rest = &rest[n..];
        supersedes = &[];
    }
    Ok(ids)
}

fn poisoned() -> Error {
    Error::new(crate::Kind::Io, "internal error: a worker thread panicked")
}

#[cfg(test)]
pub(crate) mod tests;
