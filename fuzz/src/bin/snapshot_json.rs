//! Snapshot files, after decryption: parse, match against a filter, and round trip.
use cairn_repo::snapshot::{Filter, Snapshot};

fn main() {
    let filter = Filter {
        hosts: vec!["h".into()],
        paths: vec!["/a".into()],
        tags: vec!["x,y".into()],
    };
    afl::fuzz!(|data: &[u8]| {
        let Ok(s) = serde_json::from_slice::<Snapshot>(data) else {
            return;
        };
        let _ = filter.matches(&s);
        let _ = Filter::default().matches(&s);
        let encoded = serde_json::to_vec(&s).expect("a snapshot serializes");
        let back: Snapshot =
            serde_json::from_slice(&encoded).expect("a re-encoded snapshot parses");
        assert_eq!(
            serde_json::to_value(&s).ok(),
            serde_json::to_value(&back).ok(),
            "snapshot changed in a round trip"
        );
    });
}
