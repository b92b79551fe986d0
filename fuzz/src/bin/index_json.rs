//! Index files (the JSON after decryption and decompression) and the in-memory index
//! built from them, with every pack 4096 bytes long: an entry either lands in the index
//! within its pack, or is refused as damage.
use cairn_repo::index::{Index, IndexFile};
use std::collections::HashMap;

const PACK_SIZE: u64 = 4096;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(file) = serde_json::from_slice::<IndexFile>(data) else {
            return;
        };
        let sizes: HashMap<_, _> = file.packs.iter().map(|p| (p.id, PACK_SIZE)).collect();
        let mut index = Index::with_pack_sizes(sizes);
        index.add_file(&file);
        for p in &file.packs {
            for b in &p.blobs {
                match index.get(b.blob_type, &b.id) {
                    Some(loc) => assert!(
                        u64::from(loc.blob.offset) + u64::from(loc.blob.length) <= PACK_SIZE,
                        "index entry {loc:?} outside its {PACK_SIZE}-byte pack"
                    ),
                    None => assert!(
                        index.damage(b.blob_type, &b.id).is_some(),
                        "blob {b:?} neither indexed nor reported as damage"
                    ),
                }
            }
        }
        let _ = index.by_pack();
        let _ = index.tree_packs();
        let _ = index.damaged_entries();
        let again = serde_json::to_vec(&file).expect("an index serializes");
        serde_json::from_slice::<IndexFile>(&again).expect("a re-encoded index parses");
    });
}
