//! Writes synthetic index files into an existing repository, to measure opening a large
//! repository: `synth_index REPO_DIR PASSWORD BLOBS PACKS`.
//!
//! The index files are valid (encrypted, compressed in format v2, restic's JSON) and list
//! BLOBS blobs (one in 20 a tree) in PACKS packs that do not exist: commands that only
//! load the index (`cairn stats --mode debug`, `restic cat blob ID`) see a repository of
//! that size. Do not run prune or check on it.
//!
//! To time both ways of opening it: `cairn --no-cache stats --mode debug` parses every
//! index file; with a cache directory the first run parses them and writes the index
//! snapshot, later runs load the snapshot (`--cache-dir DIR`, or the default cache).

use cairn_repo::backend::local::LocalBackend;
use cairn_repo::backend::FileType;
use cairn_repo::index::{IndexBlob, IndexFile, IndexPack};
use cairn_repo::pack::BlobType;
use cairn_repo::repository::Repository;
use cairn_repo::Id;
use std::sync::Arc;

/// Blobs per index file, as restic writes them.
const PER_FILE: u64 = 50_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: synth_index REPO_DIR PASSWORD BLOBS PACKS");
        std::process::exit(2);
    }
    let (blobs, packs): (u64, u64) = match (args[3].parse(), args[4].parse()) {
        (Ok(b), Ok(p)) if p > 0 => (b, p),
        _ => {
            eprintln!("BLOBS and PACKS must be numbers, PACKS at least 1");
            std::process::exit(2);
        }
    };
    let backend = Arc::new(LocalBackend::new(std::path::PathBuf::from(&args[1])));
    let repo = match Repository::open(backend, &args[2]) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("open: {e}");
            std::process::exit(1);
        }
    };
    let per_pack = blobs.div_ceil(packs);
    // Whole packs per file: no pack is split between index files.
    let packs_per_file = (PER_FILE / per_pack).max(1);
    let per_file = packs_per_file * per_pack;
    let files: Vec<u64> = (0..blobs.div_ceil(per_file)).collect();
    let written = cairn_repo::parallel::map(files, 2, |f| {
        let first = f * per_file;
        let last = (first + per_file).min(blobs);
        let mut file = IndexFile::default();
        let mut blob = first;
        while blob < last {
            let pack_no = blob / per_pack;
            let pack_end = ((pack_no + 1) * per_pack).min(last);
            let mut offset = 0u32;
            let mut entries = Vec::new();
            for b in blob..pack_end {
                let id = Id::hash(&b.to_le_bytes());
                let tree = b % 20 == 0;
                let ulen = 1000 + (id.0[5] as u32) * 4000;
                let length = ulen / 2 + 32;
                entries.push(IndexBlob {
                    id,
                    blob_type: if tree { BlobType::Tree } else { BlobType::Data },
                    offset,
                    length,
                    uncompressed_length: ulen,
                });
                offset += length;
            }
            file.packs.push(IndexPack {
                id: Id::hash(format!("synthetic pack {pack_no}").as_bytes()),
                blobs: entries,
            });
            blob = pack_end;
        }
        repo.save_json(FileType::Index, &file)
    });
    match written {
        Ok(ids) => println!("{} index files, {blobs} blobs, {packs} packs", ids.len()),
        Err(e) => {
            eprintln!("writing index files: {e}");
            std::process::exit(1);
        }
    }
}
