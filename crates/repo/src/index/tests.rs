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
use proptest::prelude::*;

/// A model of the index: a hash map, first good entry wins.
type Model = HashMap<(BlobType, Id), (Id, u32, u32, u32)>;

fn model_add(model: &mut Model, sizes: &HashMap<Id, u64>, f: &IndexFile) {
    for p in &f.packs {
        for b in &p.blobs {
            let blob = b.packed();
            if blob.check_fits(sizes.get(&p.id).copied()).is_ok() {
                model.entry((b.blob_type, b.id)).or_insert((
                    p.id,
                    b.offset,
                    b.length,
                    b.uncompressed_length,
                ));
            }
        }
    }
}

fn assert_matches(idx: &Index, model: &Model, probes: &[(BlobType, Id)]) {
    // A prefetch of ids present and absent (and of an empty table) is only a hint: it must
    // not panic, and the lookups after it answer the same.
    for t in [BlobType::Data, BlobType::Tree] {
        idx.prefetch(t, probes.iter().map(|(_, id)| id));
    }
    for (t, id) in probes {
        let got = idx.get(*t, id).map(|l| {
            (
                l.pack,
                l.blob.offset,
                l.blob.length,
                l.blob.uncompressed_length,
            )
        });
        assert_eq!(got, model.get(&(*t, *id)).copied(), "{t} {id:?}");
        assert_eq!(idx.has(*t, id), model.contains_key(&(*t, *id)));
    }
    for t in [BlobType::Data, BlobType::Tree] {
        let n = model.keys().filter(|(mt, _)| *mt == t).count();
        assert_eq!(idx.blob_count(t), n);
    }
    let mut listed: Vec<(BlobType, Id, Id, u32, u32, u32)> = idx
        .by_pack()
        .into_iter()
        .flat_map(|(pack, blobs)| {
            blobs.into_iter().map(move |b| {
                (
                    b.blob_type,
                    b.id,
                    pack,
                    b.offset,
                    b.length,
                    b.uncompressed_length,
                )
            })
        })
        .collect();
    listed.sort();
    let mut want: Vec<(BlobType, Id, Id, u32, u32, u32)> = model
        .iter()
        .map(|((t, id), (p, o, l, u))| (*t, *id, *p, *o, *l, *u))
        .collect();
    want.sort();
    assert_eq!(listed, want);
    let mut trees: Vec<Id> = idx.tree_packs();
    trees.sort();
    let mut want_trees: Vec<Id> = model
        .iter()
        .filter(|((t, _), _)| *t == BlobType::Tree)
        .map(|(_, (p, ..))| *p)
        .collect();
    want_trees.sort();
    want_trees.dedup();
    assert_eq!(trees, want_trees);
}

/// Ids that often share their first bytes (one bucket) or are equal.
fn test_id(bucket: u8, tail: u8) -> Id {
    let mut id = [0u8; 32];
    id[0] = bucket % 3;
    id[1] = bucket / 3;
    id[31] = tail;
    id[7] = tail.wrapping_mul(7);
    Id(id)
}

fn arb_files() -> impl Strategy<Value = Vec<IndexFile>> {
    let blob = (
        any::<bool>(),
        0u8..6,
        0u8..12,
        prop_oneof![0u32..5000, Just(1 << 24), Just(u32::MAX - 3)],
        prop_oneof![20u32..3000, Just(40 << 20), Just((1 << 24) + 5)],
        prop_oneof![Just(0u32), 100u32..5000, Just(1 << 24)],
    )
        .prop_map(|(tree, bucket, tail, offset, length, ulen)| IndexBlob {
            id: test_id(bucket, tail),
            blob_type: if tree { BlobType::Tree } else { BlobType::Data },
            offset,
            length,
            uncompressed_length: ulen,
        });
    let pack = (0u8..8, prop::collection::vec(blob, 0..8)).prop_map(|(p, blobs)| IndexPack {
        id: Id::hash(&[p]),
        blobs,
    });
    let file = prop::collection::vec(pack, 0..5).prop_map(|packs| IndexFile {
        supersedes: vec![],
        packs,
    });
    prop::collection::vec(file, 0..5)
}

proptest! {
    #[test]
    fn compact_index_behaves_like_a_hash_map(files in arb_files(), split in 0usize..6, sized in any::<bool>()) {
        let sizes: HashMap<Id, u64> = if sized {
            (0u8..6).map(|p| (Id::hash(&[p]), 4000 + 1000 * p as u64)).collect()
        } else {
            HashMap::new()
        };
        let mut model = Model::new();
        for f in &files {
            model_add(&mut model, &sizes, f);
        }
        let probes: Vec<(BlobType, Id)> = (0u8..6)
            .flat_map(|b| (0u8..12).map(move |t| test_id(b, t)))
            .flat_map(|id| [(BlobType::Data, id), (BlobType::Tree, id)])
            .collect();
        // All at once, one file at a time, and built then extended.
        let bulk = Index::from_files(sizes.clone(), &files);
        assert_matches(&bulk, &model, &probes);
        let mut one_by_one = Index::with_pack_sizes(sizes.clone());
        for f in &files {
            one_by_one.add_file(f);
        }
        assert_matches(&one_by_one, &model, &probes);
        let split = split.min(files.len());
        let mut mixed = Index::from_files(sizes.clone(), &files[..split]);
        for f in &files[split..] {
            mixed.add_file(f);
        }
        assert_matches(&mixed, &model, &probes);
        for (t, id) in &probes {
            prop_assert_eq!(bulk.damage(*t, id), one_by_one.damage(*t, id));
            prop_assert_eq!(bulk.damage(*t, id).is_some(), mixed.damage(*t, id).is_some());
        }
        prop_assert_eq!(bulk.damaged_entries(), one_by_one.damaged_entries());
        for p in 0u8..8 {
            let id = Id::hash(&[p]);
            prop_assert_eq!(bulk.pack_size(&id), sizes.get(&id).copied());
            prop_assert_eq!(mixed.pack_size(&id), sizes.get(&id).copied());
        }
        // Compacted, saved as a snapshot and loaded back: the same index.
        mixed.compact();
        assert_matches(&mixed, &model, &probes);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c").join("index.snapshot");
        let covered = [Id::hash(b"f1"), Id::hash(b"f2")];
        snapshot::write(&path, &[3; 32], "abc", &covered, &mixed).unwrap();
        let listed: std::collections::HashSet<Id> = covered.iter().copied().collect();
        let mut listing = sizes.clone();
        let loaded = snapshot::read(&path, &[3; 32], "abc", &listed, Some(&mut listing)).unwrap();
        prop_assert!(listing.is_empty());
        prop_assert_eq!(&loaded.covered[..], &covered[..]);
        assert_matches(&loaded.index, &model, &probes);
        for (t, id) in &probes {
            prop_assert_eq!(loaded.index.damage(*t, id), mixed.damage(*t, id));
        }
        for p in 0u8..8 {
            let id = Id::hash(&[p]);
            prop_assert_eq!(loaded.index.pack_size(&id), sizes.get(&id).copied());
        }
        let mut listing = sizes.clone();
        prop_assert!(snapshot::read(&path, &[4; 32], "abc", &listed, Some(&mut listing)).is_none());
        prop_assert!(snapshot::read(&path, &[3; 32], "abd", &listed, Some(&mut listing)).is_none());
        prop_assert_eq!(&listing, &sizes);
    }
}

#[test]
fn side_maps_merge_into_the_table_as_packs_are_added() {
    let mut model = Model::new();
    let mut files = Vec::new();
    for f in 0..12u32 {
        let packs = (0..50u32)
            .map(|p| IndexPack {
                id: Id::hash(&(f * 1000 + p).to_le_bytes()),
                blobs: (0..200u32)
                    .map(|b| IndexBlob {
                        // Every blob again in a later file: the first copy must win.
                        id: Id::hash(&((f / 2) * 100_000 + p * 1000 + b).to_le_bytes()),
                        blob_type: if b % 10 == 0 {
                            BlobType::Tree
                        } else {
                            BlobType::Data
                        },
                        // A few offsets past any packed field's width: escaped.
                        offset: b * 100 + if p == 7 && b < 3 { 1 << 30 } else { 0 },
                        length: 100,
                        uncompressed_length: 0,
                    })
                    .collect(),
            })
            .collect();
        files.push(IndexFile {
            supersedes: vec![],
            packs,
        });
    }
    let sizes = HashMap::new();
    for f in &files {
        model_add(&mut model, &sizes, f);
    }
    let probes: Vec<(BlobType, Id)> = model.keys().copied().collect();
    let mut idx = Index::new();
    for f in &files {
        idx.add_file(f);
    }
    assert!(idx.data.side.len() < idx.data.len_sorted(), "merged");
    assert_matches(&idx, &model, &probes);
    let bulk = Index::from_files(HashMap::new(), &files);
    assert_matches(&bulk, &model, &probes);
    assert!(bulk.heap_bytes() < 60 * model.len() + 256 * 1024 + 100 * 600);
    assert!(!idx.data.escapes.is_empty());
}

/// The fast index JSON reader agrees with serde_json wherever it answers.
mod fast_json {
    use super::super::json;
    use super::*;

    fn same(text: &[u8]) {
        let fast = json::parse(text);
        let slow: Result<IndexFile, _> = serde_json::from_slice(text);
        if let Some(f) = fast {
            let slow = slow.unwrap_or_else(|e| panic!("serde refuses what we accept: {e}"));
            assert_eq!(format!("{f:?}"), format!("{slow:?}"));
        }
    }

    #[test]
    fn restic_shapes_are_read_fast_and_odd_ones_fall_back() {
        let id = Id::hash(b"a").to_hex();
        let pid = Id::hash(b"p").to_hex();
        let plain = format!(
            r#"{{"supersedes":["{id}"],"packs":[{{"id":"{pid}","blobs":[{{"id":"{id}","type":"data","offset":0,"length":42,"uncompressed_length":4294967295}},{{"id":"{id}","type":"tree","offset":7,"length":1}}]}}]}}"#
        );
        let f = json::parse(plain.as_bytes()).expect("plain shape");
        assert_eq!(f.packs[0].blobs[0].uncompressed_length, u32::MAX);
        assert_eq!(f.packs[0].blobs[1].blob_type, BlobType::Tree);
        same(plain.as_bytes());
        let spaced = format!(
            "{{ \"packs\" : [ {{ \"blobs\" : [ {{ \"length\" : 5 , \"type\" : \"data\" , \"id\" : \"{id}\" , \"offset\" : 10 }} ] , \"id\" : \"{pid}\" }} ] }}\n"
        );
        assert!(json::parse(spaced.as_bytes()).is_some());
        same(spaced.as_bytes());
        assert!(json::parse(b"{}").is_some());
        same(b"{}");
        let odd = [
            plain.replace("\"offset\":0", "\"offset\":00"),
            plain.replace("\"offset\":0", "\"offset\":0.0"),
            plain.replace("\"offset\":0", "\"offset\":-0"),
            plain.replace("\"offset\":0", "\"offset\":1e2"),
            plain.replace("4294967295", "4294967296"),
            plain.replace("4294967295", "99999999999"),
            plain.replace("\"type\":\"data\"", "\"type\":\"Data\""),
            plain.replace("\"type\":\"data\"", "\"type\":\"dat\\u0061\""),
            plain.replace("\"length\":42", "\"length\":42,\"length\":42"),
            plain.replace("\"length\":42,", ""),
            plain.replace("\"length\":42", "\"length\":42,\"extra\":1"),
            plain.replace("\"supersedes\":[", "\"supersedes\":null,\"x\":["),
            plain.replace(&id, &id[..63]),
            plain.replace(&id, &format!("{id}0")),
            plain.replace(&pid, &pid.to_uppercase()),
            format!("{plain}x"),
            format!("{plain},"),
            plain[..plain.len() - 1].to_string(),
            plain.replace("]}]}", "],}]}"),
            String::new(),
            "[]".into(),
            "{\"packs\":null}".into(),
        ];
        for o in &odd {
            same(o.as_bytes());
        }
        // Uppercase hex is an id for both.
        assert!(json::parse(odd[14].as_bytes()).is_some());
        for o in [&odd[0], &odd[1], &odd[4], &odd[8], &odd[10], &odd[15]] {
            assert!(json::parse(o.as_bytes()).is_none(), "{o}");
        }
    }

    proptest! {
        #[test]
        fn serde_written_files_and_their_truncations_agree(files in arb_files(), cut in 0usize..2000, pretty in any::<bool>()) {
            for f in &files {
                let text = if pretty {
                    serde_json::to_vec_pretty(f).unwrap()
                } else {
                    serde_json::to_vec(f).unwrap()
                };
                let fast = json::parse(&text);
                prop_assert!(fast.is_some());
                prop_assert_eq!(format!("{:?}", fast.unwrap()), format!("{f:?}"));
                let cut = cut.min(text.len());
                same(&text[..cut]);
                let mut flipped = text.clone();
                if !flipped.is_empty() {
                    let at = cut % flipped.len();
                    flipped[at] ^= 0x21;
                    same(&flipped);
                }
            }
        }
    }
}
