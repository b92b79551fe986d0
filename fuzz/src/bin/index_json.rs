//! Index files (the JSON after decryption and decompression) and the in-memory index
//! built from them.
use cairn_repo::index::{Index, IndexFile};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(file) = serde_json::from_slice::<IndexFile>(data) else {
            return;
        };
        let mut index = Index::new();
        index.add_file(&file);
        for p in &file.packs {
            for b in &p.blobs {
                assert!(index.has(b.blob_type, &b.id));
                let _ = index.get(b.blob_type, &b.id);
            }
        }
        let _ = index.by_pack();
        let _ = index.tree_packs();
        let again = serde_json::to_vec(&file).expect("an index serializes");
        serde_json::from_slice::<IndexFile>(&again).expect("a re-encoded index parses");
    });
}
