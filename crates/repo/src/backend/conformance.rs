//! The one test suite every backend passes (like restic's `internal/backend/test`).

use super::{Backend, FileType};
use crate::error::Kind;

/// The name of a pack holding `data`: restic names every pack by the SHA-256 of its
/// bytes, and a backend may rely on it (S3 signs the name as the body's hash).
fn pack_name(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Runs every conformance check against an empty location.
pub fn run(be: &dyn Backend) {
    // Public so that integration tests can run it against real servers.
    assert!(!be.has_config().unwrap(), "fresh location has no config");
    be.create().unwrap();
    be.create()
        .expect("create is idempotent until a config exists (a retried init)");

    for t in [
        FileType::Key,
        FileType::Lock,
        FileType::Snapshot,
        FileType::Index,
        FileType::Pack,
    ] {
        assert!(be.list(t).unwrap().is_empty(), "{t:?} starts empty");
    }

    be.write(FileType::Config, "", b"cfg").unwrap();
    assert!(be.has_config().unwrap());
    assert_eq!(be.read(FileType::Config, "").unwrap(), b"cfg");
    assert!(
        be.create().is_err(),
        "create refuses an existing repository"
    );

    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let name = pack_name(&data);
    for t in [
        FileType::Key,
        FileType::Lock,
        FileType::Snapshot,
        FileType::Index,
        FileType::Pack,
    ] {
        be.write(t, &name, &data).unwrap();
        let listed = be.list(t).unwrap();
        assert_eq!(listed.len(), 1, "{t:?} lists the written file");
        assert_eq!(listed[0].name, name);
        assert_eq!(listed[0].size, data.len() as u64);
        assert_eq!(be.read(t, &name).unwrap(), data);
        assert_eq!(be.read_range(t, &name, 10, 5).unwrap(), &data[10..15]);
        assert_eq!(
            be.read_range(t, &name, 99_990, 10).unwrap(),
            &data[99_990..]
        );
        assert!(
            be.read_range(t, &name, 99_990, 11).is_err(),
            "short read is an error"
        );
        // Overwriting with the same content (same name = same hash) is allowed.
        be.write(t, &name, &data).unwrap();
        be.remove(t, &name).unwrap();
        assert!(be.list(t).unwrap().is_empty(), "{t:?} removed");
        be.remove(t, &name).unwrap();
        let err = be.read(t, &name).unwrap_err();
        assert_eq!(
            err.kind(),
            Kind::NotFound,
            "missing file is NotFound: {err}"
        );
    }

    // Many threads at once (remote backends multiplex one connection or a pool):
    // writes, whole reads and ranges of files of many sizes, each checked.
    let mut files: Vec<(String, Vec<u8>)> = (0..48u32)
        .map(|i| {
            let len = (i as usize * 7919 * 13) % 400_000 + 1;
            let data: Vec<u8> = (0..len)
                .map(|j| (j as u32 ^ i.wrapping_mul(2654435761)) as u8)
                .collect();
            (pack_name(&data), data)
        })
        .collect();
    files.sort();
    std::thread::scope(|s| {
        for part in files.chunks(6) {
            s.spawn(move || {
                for (name, data) in part {
                    be.write(FileType::Pack, name, data).unwrap();
                }
                for (name, data) in part {
                    assert_eq!(&be.read(FileType::Pack, name).unwrap(), data, "{name}");
                    let mid = data.len() / 3;
                    let n = (data.len() - mid).min(100_000) as u64;
                    assert_eq!(
                        be.read_range(FileType::Pack, name, mid as u64, n).unwrap(),
                        &data[mid..mid + n as usize],
                        "{name} range"
                    );
                }
            });
        }
    });
    let mut listed = be.list(FileType::Pack).unwrap();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(listed.len(), files.len(), "every concurrent write listed");
    for ((name, data), info) in files.iter().zip(&listed) {
        assert_eq!((&info.name, info.size), (name, data.len() as u64));
        be.remove(FileType::Pack, name).unwrap();
    }

    // Many files, listed completely.
    for i in 0..300u32 {
        be.write(
            FileType::Pack,
            &pack_name(&i.to_le_bytes()),
            &i.to_le_bytes(),
        )
        .unwrap();
    }
    assert_eq!(be.list(FileType::Pack).unwrap().len(), 300);
}
