//! The pack writer's tests: uploads, lanes, failures and retried uploads.

use super::*;
use crate::backend::local::LocalBackend;
use crate::backend::{Backend, FileInfo};
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

/// A local backend that claims 4 connections, takes 50 ms per pack upload, records how
/// many uploads ran at once, and fails pack uploads when asked. With `broken` it is a
/// REST-like server instead: it stores the first upload of a pack and of an index file
/// through `write_once` but breaks the connection before answering, and records them for
/// the test to remove later (its late cleanup of a broken upload, see
/// `backend::write_renewing`).
struct Slow {
    inner: LocalBackend,
    now: AtomicUsize,
    peak: AtomicUsize,
    fail: bool,
    connections: usize,
    broken: Option<Mutex<Vec<(FileType, String)>>>,
}

impl Backend for Slow {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> Result<()> {
        self.inner.create()
    }
    fn has_config(&self) -> Result<bool> {
        self.inner.has_config()
    }
    fn list(&self, t: FileType) -> Result<Vec<FileInfo>> {
        self.inner.list(t)
    }
    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        self.inner.read(t, name)
    }
    fn read_range(&self, t: FileType, name: &str, o: u64, l: u64) -> Result<Vec<u8>> {
        self.inner.read_range(t, name, o, l)
    }
    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        if t != FileType::Pack {
            return self.inner.write(t, name, data);
        }
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        self.now.fetch_sub(1, Ordering::SeqCst);
        if self.fail {
            return Err(Error::new(crate::error::Kind::Network, "server gone"));
        }
        self.inner.write(t, name, data)
    }
    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        self.inner.remove(t, name)
    }
    fn connections(&self) -> usize {
        self.connections
    }
    fn is_local(&self) -> bool {
        self.connections == 1
    }
    fn renaming_retry(&self) -> Option<crate::backend::retry::Retry> {
        self.broken.as_ref().map(|_| crate::backend::retry::Retry {
            max_time: Duration::from_secs(5),
            first_wait: Duration::from_millis(1),
            max_wait: Duration::from_millis(5),
        })
    }
    fn write_once(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.inner.write(t, name, data)?;
        let Some(broken) = &self.broken else {
            return Ok(());
        };
        let mut broken = broken.lock().unwrap();
        if matches!(t, FileType::Pack | FileType::Index) && !broken.iter().any(|b| b.0 == t) {
            broken.push((t, name.to_string()));
            return Err(Error::new(crate::error::Kind::Network, "connection reset"));
        }
        Ok(())
    }
}

fn repo(fail: bool) -> (tempfile::TempDir, Arc<Slow>, Repository) {
    repo_with(fail, 4)
}

fn repo_with(fail: bool, connections: usize) -> (tempfile::TempDir, Arc<Slow>, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let be = Arc::new(Slow {
        inner: LocalBackend::new(dir.path().join("r")),
        now: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        fail,
        connections,
        broken: None,
    });
    let repo = Repository::init(be.clone(), "pw", 2, None).unwrap();
    (dir, be, repo)
}

/// 8 KiB of incompressible bytes, different for each `i` (also used by check's tests).
pub(crate) fn blob(i: u32) -> Vec<u8> {
    let mut x = i.wrapping_mul(2_654_435_761) | 1;
    (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Compressed output is used only when smaller; incompressible data (small, or large
/// enough for the samples) comes back as None, and what compresses round trips.
#[test]
fn compress_keeps_only_smaller_output_and_round_trips() {
    let mut slot = None;
    let text: Vec<u8> = (0..300_000u32)
        .flat_map(|i| format!("line {} of {}\n", i % 977, i % 13).into_bytes())
        .take(300_000)
        .collect();
    let noise: Vec<u8> = (0..300_000u32)
        .flat_map(|i| blob(i)[..8].to_vec())
        .collect();
    for len in [0, 1, 2, 100, 4096, 200_000, 300_000] {
        let got = compress(&mut slot, 1, &text[..len]).map(|c| c.to_vec());
        if len >= 100 {
            let c = got.expect("text compresses");
            assert!(c.len() < len);
            assert_eq!(zstd::bulk::decompress(&c, len).unwrap(), &text[..len]);
        }
        assert_eq!(
            compress(&mut slot, 1, &noise[..len]),
            None,
            "noise, {len} bytes"
        );
    }
    // Half noise, half text: the samples see both and the whole is compressed.
    let mixed: Vec<u8> = noise[..150_000]
        .iter()
        .chain(&text[..150_000])
        .copied()
        .collect();
    let c = compress(&mut slot, 1, &mixed)
        .expect("compressible half")
        .to_vec();
    assert_eq!(zstd::bulk::decompress(&c, mixed.len()).unwrap(), mixed);
}

#[test]
fn remote_uploads_run_concurrently_and_all_land_in_the_index() {
    let (_dir, be, repo) = repo(false);
    let index = Index::new();
    let w = PackWriter::new(&repo, &index).with_pack_size(16 * 1024);
    let ids: Vec<Id> = (0..64)
        .map(|i| w.save(BlobType::Data, &blob(i)).unwrap().0)
        .collect();
    w.finish().unwrap();
    assert!(be.peak.load(Ordering::SeqCst) > 1, "uploads overlapped");
    let loaded = repo.load_index().unwrap();
    for id in &ids {
        assert_eq!(
            repo.load_blob(&loaded, BlobType::Data, id).unwrap().len(),
            8192
        );
    }
}

/// Two file workers with a lane each, saving overlapping blobs of odd sizes (partial
/// SHA-256 blocks on both messages), some compressible: every blob is stored once,
/// every pack file is named by the SHA-256 of its bytes (checked with sha2, not with
/// the interleaved code that computed the names), everything reads back. As a local
/// backend (`Slow` says it is one with one connection), workers store packs themselves
/// while the uploader is busy.
#[test]
fn lanes_name_packs_by_their_hash_and_share_dedup() {
    for connections in [1, 4] {
        lanes_with(connections);
    }
}

fn lanes_with(connections: usize) {
    let (_dir, be, repo) = repo_with(false, connections);
    let index = Index::new();
    let w = PackWriter::new(&repo, &index).with_pack_size(16 * 1024);
    // Every fifth blob is large (compressed in place into an empty pack, aside near a
    // pack's end), the others small; a third of them text, the rest noise.
    let content = |i: u32| -> Vec<u8> {
        let len = match i % 5 {
            0 => 150_000 + 1_000 * i as usize,
            _ => 700 + 97 * i as usize,
        };
        if i.is_multiple_of(3) {
            format!("line {i}\n").repeat(len / 6).as_bytes()[..len].to_vec()
        } else {
            (0..len / 8192 + 1)
                .flat_map(|k| blob(i * 1000 + k as u32))
                .take(len)
                .collect()
        }
    };
    let saved: Vec<Vec<(Id, bool)>> = std::thread::scope(|s| {
        let workers: Vec<_> = [0..30u32, 15..45]
            .into_iter()
            .map(|range| {
                let w = &w;
                s.spawn(move || {
                    let mut lane = w.lane();
                    let r: Vec<_> = range.map(|i| lane.save(&content(i)).unwrap()).collect();
                    lane.finish().unwrap();
                    r
                })
            })
            .collect();
        workers.into_iter().map(|t| t.join().unwrap()).collect()
    });
    w.finish().unwrap();
    if connections == 1 {
        assert!(
            be.peak.load(Ordering::SeqCst) > 1,
            "a worker stored a pack itself"
        );
    }
    let new = saved.iter().flatten().filter(|(_, new)| *new).count();
    assert_eq!(new, 45, "each blob stored once across lanes");
    assert_eq!(w.stats.data_blobs.load(Ordering::Relaxed), 45);
    let packs = be.inner.list(FileType::Pack).unwrap();
    assert!(packs.len() > 3, "several packs per lane: {}", packs.len());
    for p in &packs {
        use sha2::Digest;
        let bytes = be.inner.read(FileType::Pack, &p.name).unwrap();
        assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), p.name);
    }
    let loaded = repo.load_index().unwrap();
    for i in 0..45 {
        let data = content(i);
        let id = Id::hash(&data);
        assert_eq!(repo.load_blob(&loaded, BlobType::Data, &id).unwrap(), data);
    }
}

/// A lane's packs reuse the buffers of stored packs rather than one fresh buffer per pack
/// (a page fault per 4 KiB). With one spare kept, a buffer the uploader frees while the
/// worker's own stored one waits as the spare is dropped, so some packs start fresh: here
/// 10-12 of 30, as the bench's first backup allocates ~10 for 65 packs.
#[test]
fn a_lanes_packs_reuse_the_buffers_of_stored_packs() {
    let (_dir, be, repo) = repo_with(false, 1);
    let index = Index::new();
    let w = PackWriter::new(&repo, &index).with_pack_size(16 * 1024);
    let mut lane = w.lane();
    for i in 0..60u32 {
        let noise: Vec<u8> = (0..2).flat_map(|k| blob(i * 10 + k)).take(6_000).collect();
        lane.save(&noise).unwrap();
    }
    lane.finish().unwrap();
    w.finish().unwrap();
    let packs = be.inner.list(FileType::Pack).unwrap().len();
    assert!(packs >= 20, "{packs} packs");
    let fresh = w.stats.fresh_pack_buffers.load(Ordering::Relaxed);
    assert!(
        fresh >= 1 && fresh * 2 <= packs as u64,
        "{fresh} fresh buffers for {packs} packs"
    );
}

#[test]
fn a_failed_upload_fails_the_writer_and_writes_no_index() {
    let (_dir, _be, repo) = repo(true);
    let index = Index::new();
    let w = PackWriter::new(&repo, &index).with_pack_size(16 * 1024);
    let mut first_err = None;
    for i in 0..64 {
        if let Err(e) = w.save(BlobType::Data, &blob(i)) {
            first_err = Some(e);
            break;
        }
    }
    let err = first_err.or_else(|| w.finish().err()).expect("an error");
    assert!(err.to_string().contains("server gone"), "{err}");
    assert!(repo.list_ids(FileType::Index).unwrap().is_empty());
}

#[test]
fn an_upload_retried_after_a_broken_connection_goes_under_a_new_name() {
    let dir = tempfile::tempdir().unwrap();
    let be = Arc::new(Slow {
        inner: LocalBackend::new(dir.path().join("r")),
        now: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        fail: false,
        connections: 1,
        broken: Some(Mutex::new(Vec::new())),
    });
    let repo = Repository::init(be.clone(), "pw", 2, None).unwrap();
    let index = Index::new();
    let w = PackWriter::new(&repo, &index).with_pack_size(16 * 1024);
    let ids: Vec<Id> = (0..16)
        .map(|i| w.save(BlobType::Data, &blob(i)).unwrap().0)
        .collect();
    w.finish().unwrap();
    // The server's late cleanup of the broken uploads.
    let broken = be.broken.as_ref().unwrap().lock().unwrap().clone();
    assert_eq!(broken.len(), 2, "one pack and one index upload broke");
    for (t, name) in &broken {
        be.inner.remove(*t, name).unwrap();
    }
    let loaded = repo.load_index().unwrap();
    for id in &ids {
        assert_eq!(
            repo.load_blob(&loaded, BlobType::Data, id).unwrap(),
            blob_of(&ids, id)
        );
    }
    let stored: HashSet<String> = be
        .inner
        .list(FileType::Pack)
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    let indexed: HashSet<String> = loaded.pack_ids().iter().map(|p| p.to_hex()).collect();
    assert_eq!(
        stored, indexed,
        "every stored pack indexed, every indexed pack stored"
    );
}

fn blob_of(ids: &[Id], id: &Id) -> Vec<u8> {
    blob(ids.iter().position(|i| i == id).unwrap() as u32)
}
