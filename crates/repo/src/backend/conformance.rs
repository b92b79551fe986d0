//! The one test suite every backend passes (like restic's `internal/backend/test`).

use super::{Backend, FileType};
use crate::error::Kind;

/// Runs every conformance check against an empty location.
pub fn run(be: &dyn Backend) {
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

    let name = "ab".to_string() + &"0".repeat(62);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
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

    // Many files, listed completely.
    for i in 0..300u32 {
        be.write(FileType::Pack, &format!("{i:064x}"), &i.to_le_bytes())
            .unwrap();
    }
    assert_eq!(be.list(FileType::Pack).unwrap().len(), 300);
}
