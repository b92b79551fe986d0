//! The blob index: which pack holds each blob, where, and how long it is.
//!
//! Owns the JSON format of index files and the compact in-memory lookup table built from
//! all of them. Loading tolerates duplicates (the same blob in several packs): the first
//! entry wins, as in restic. An entry that cannot be right (longer than any blob, or past
//! the end of its pack when the pack's size is known) is refused when it is added and kept
//! aside as damage, so no reader ever sizes a buffer by it.

use crate::id::Id;
use crate::pack::{BlobType, PackedBlob};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// An index file as stored (after decryption and decompression).
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct IndexFile {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<Id>,
    #[serde(default)]
    pub packs: Vec<IndexPack>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct IndexPack {
    pub id: Id,
    pub blobs: Vec<IndexBlob>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct IndexBlob {
    pub id: Id,
    #[serde(rename = "type")]
    pub blob_type: BlobType,
    pub offset: u32,
    pub length: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uncompressed_length: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl IndexPack {
    pub fn from_blobs(id: Id, blobs: &[PackedBlob]) -> IndexPack {
        IndexPack {
            id,
            blobs: blobs
                .iter()
                .map(|b| IndexBlob {
                    id: b.id,
                    blob_type: b.blob_type,
                    offset: b.offset,
                    length: b.length,
                    uncompressed_length: b.uncompressed_length,
                })
                .collect(),
        }
    }
}

/// Where a blob is, compactly: 20 bytes plus the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pack: u32,
    pub offset: u32,
    pub length: u32,
    pub uncompressed_length: u32,
}

/// A blob's location resolved to its pack id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: Id,
    pub blob: PackedBlob,
}

/// The in-memory index of all blobs of a repository.
#[derive(Default)]
pub struct Index {
    packs: Vec<Id>,
    pack_numbers: HashMap<Id, u32>,
    data: HashMap<Id, Location>,
    trees: HashMap<Id, Location>,
    /// Packs' real sizes (from the backend's listing), when known.
    pack_sizes: HashMap<Id, u64>,
    /// Refused entries: why each blob's (first) entry cannot be right.
    damaged: HashMap<(BlobType, Id), String>,
}

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    fn map(&self, t: BlobType) -> &HashMap<Id, Location> {
        match t {
            BlobType::Data => &self.data,
            BlobType::Tree => &self.trees,
        }
    }

    /// An index that checks entries against these pack sizes (as listed by the backend).
    pub fn with_pack_sizes(pack_sizes: HashMap<Id, u64>) -> Index {
        Index {
            pack_sizes,
            ..Index::default()
        }
    }

    /// A pack's size as listed, if known.
    pub fn pack_size(&self, pack: &Id) -> Option<u64> {
        self.pack_sizes.get(pack).copied()
    }

    /// Why the index entry of a blob was refused, if it was (and no good entry replaced it).
    pub fn damage(&self, t: BlobType, id: &Id) -> Option<&str> {
        if self.has(t, id) {
            return None;
        }
        self.damaged.get(&(t, *id)).map(String::as_str)
    }

    /// Every refused entry's problem, sorted.
    pub fn damaged_entries(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.damaged.values().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Whether an entry of `pack` can be right; the problem if not.
    pub fn entry_problem(&self, pack: &Id, b: &IndexBlob) -> Option<String> {
        let blob = PackedBlob {
            blob_type: b.blob_type,
            id: b.id,
            offset: b.offset,
            length: b.length,
            uncompressed_length: b.uncompressed_length,
        };
        blob.check_fits(self.pack_size(pack))
            .err()
            .map(|e| format!("pack {pack}: {e}"))
    }

    /// Adds every blob of a pack; a blob already known keeps its first location. Entries
    /// that cannot be right are refused (see [`Index::damage`]).
    pub fn add_pack(&mut self, pack: &IndexPack) {
        let n = match self.pack_numbers.get(&pack.id) {
            Some(n) => *n,
            None => {
                let n = self.packs.len() as u32;
                self.packs.push(pack.id);
                self.pack_numbers.insert(pack.id, n);
                n
            }
        };
        for b in &pack.blobs {
            if let Some(problem) = self.entry_problem(&pack.id, b) {
                self.damaged.entry((b.blob_type, b.id)).or_insert(problem);
                continue;
            }
            let map = match b.blob_type {
                BlobType::Data => &mut self.data,
                BlobType::Tree => &mut self.trees,
            };
            map.entry(b.id).or_insert(Location {
                pack: n,
                offset: b.offset,
                length: b.length,
                uncompressed_length: b.uncompressed_length,
            });
        }
    }

    pub fn add_file(&mut self, file: &IndexFile) {
        for p in &file.packs {
            self.add_pack(p);
        }
    }

    pub fn has(&self, t: BlobType, id: &Id) -> bool {
        self.map(t).contains_key(id)
    }

    pub fn get(&self, t: BlobType, id: &Id) -> Option<BlobLocation> {
        let loc = self.map(t).get(id)?;
        Some(BlobLocation {
            pack: self.packs[loc.pack as usize],
            blob: PackedBlob {
                blob_type: t,
                id: *id,
                offset: loc.offset,
                length: loc.length,
                uncompressed_length: loc.uncompressed_length,
            },
        })
    }

    pub fn blob_count(&self, t: BlobType) -> usize {
        self.map(t).len()
    }

    /// Ids of all packs that hold at least one indexed blob.
    pub fn pack_ids(&self) -> &[Id] {
        &self.packs
    }

    /// Ids of the packs holding tree blobs (as indexed: first location of each blob).
    pub fn tree_packs(&self) -> Vec<Id> {
        let numbers: std::collections::HashSet<u32> = self.trees.values().map(|l| l.pack).collect();
        numbers
            .into_iter()
            .map(|n| self.packs[n as usize])
            .collect()
    }

    /// Every indexed blob, grouped by pack: (pack id, blobs sorted by offset).
    pub fn by_pack(&self) -> Vec<(Id, Vec<PackedBlob>)> {
        let mut out: Vec<(Id, Vec<PackedBlob>)> =
            self.packs.iter().map(|p| (*p, Vec::new())).collect();
        for (t, map) in [(BlobType::Data, &self.data), (BlobType::Tree, &self.trees)] {
            for (id, loc) in map {
                out[loc.pack as usize].1.push(PackedBlob {
                    blob_type: t,
                    id: *id,
                    offset: loc.offset,
                    length: loc.length,
                    uncompressed_length: loc.uncompressed_length,
                });
            }
        }
        for (_, blobs) in &mut out {
            blobs.sort_by_key(|b| b.offset);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_json_matches_restic_field_names_and_first_location_wins() {
        let blob = IndexBlob {
            id: Id::hash(b"x"),
            blob_type: BlobType::Data,
            offset: 0,
            length: 42,
            uncompressed_length: 0,
        };
        let f = IndexFile {
            supersedes: vec![],
            packs: vec![IndexPack {
                id: Id::hash(b"p1"),
                blobs: vec![blob.clone()],
            }],
        };
        let json = serde_json::to_string(&f).unwrap();
        assert!(
            json.contains(r#""type":"data","offset":0,"length":42}"#),
            "{json}"
        );
        let mut idx = Index::new();
        idx.add_file(&serde_json::from_str(&json).unwrap());
        idx.add_pack(&IndexPack {
            id: Id::hash(b"p2"),
            blobs: vec![IndexBlob { offset: 9, ..blob }],
        });
        let loc = idx.get(BlobType::Data, &Id::hash(b"x")).unwrap();
        assert_eq!(loc.pack, Id::hash(b"p1"));
        assert!(!idx.has(BlobType::Tree, &Id::hash(b"x")));
    }

    #[test]
    fn entries_longer_than_their_pack_are_refused_and_a_good_duplicate_wins() {
        let pack = Id::hash(b"small pack");
        let good_pack = Id::hash(b"good pack");
        let sizes = HashMap::from([(pack, 142), (good_pack, 1000)]);
        let mut idx = Index::with_pack_sizes(sizes);
        let blob = |id: &[u8], offset, length| IndexBlob {
            id: Id::hash(id),
            blob_type: BlobType::Data,
            offset,
            length,
            uncompressed_length: 0,
        };
        idx.add_pack(&IndexPack {
            id: pack,
            blobs: vec![
                blob(b"huge", 0, u32::MAX),
                blob(b"past end", 100, 60),
                blob(b"fits", 0, 100),
                blob(b"dup", 0, 1 << 20),
            ],
        });
        idx.add_pack(&IndexPack {
            id: good_pack,
            blobs: vec![blob(b"dup", 0, 100)],
        });
        assert!(idx.has(BlobType::Data, &Id::hash(b"fits")));
        for bad in [&b"huge"[..], b"past end"] {
            assert!(!idx.has(BlobType::Data, &Id::hash(bad)));
            let why = idx.damage(BlobType::Data, &Id::hash(bad)).unwrap();
            assert!(why.contains("damaged"), "{why}");
        }
        assert_eq!(
            idx.get(BlobType::Data, &Id::hash(b"dup")).unwrap().pack,
            good_pack
        );
        assert_eq!(idx.damage(BlobType::Data, &Id::hash(b"dup")), None);
        assert_eq!(idx.damaged_entries().len(), 3);
    }
}
