//! Copy snapshots between repositories with different keys (restic's `copy`).
//!
//! Blobs are decrypted with the source's key, verified, and stored with the
//! destination's key and compression; what the destination already has is not copied
//! again. With the same chunker polynomial, trees and blob ids are unchanged. With
//! different polynomials, `rechunk` re-chunks every file with the destination's
//! polynomial so the copies deduplicate with the destination's own backups (without it,
//! blobs are copied as they are, which restic also does).
//!
//! A snapshot the destination already has (restic's "similar snapshot" rule, or one that
//! records the source snapshot as its `original`) is skipped. Write order: packs ->
//! index -> snapshots.

use crate::chunker::Chunker;
use crate::depth;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::Index;
use crate::node::{self, NodeType};
use crate::pack::BlobType;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::writer::PackWriter;
use serde::Serialize;
use std::collections::HashMap;
use std::io::Read;

#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    /// Re-chunk files when the repositories' chunker polynomials differ.
    pub rechunk: bool,
}

#[derive(Serialize, Debug, Default)]
pub struct CopyReport {
    /// (source snapshot, new destination snapshot)
    pub copied: Vec<(Id, Id)>,
    /// Source snapshots the destination already had.
    pub skipped: Vec<Id>,
    pub data_blobs_added: u64,
    pub tree_blobs_added: u64,
    /// Bytes stored in the destination (compressed, encrypted).
    pub bytes_added: u64,
    pub rechunked: bool,
}

/// restic's rule: everything but parent and original matches.
fn similar(a: &Snapshot, b: &Snapshot) -> bool {
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    a.time == b.time
        && a.tree == b.tree
        && a.hostname == b.hostname
        && a.username == b.username
        && a.uid == b.uid
        && a.gid == b.gid
        && sorted(&a.paths) == sorted(&b.paths)
        && sorted(&a.excludes) == sorted(&b.excludes)
        && sorted(&a.tags) == sorted(&b.tags)
}

/// Whether `dst` already holds a copy of `s`.
fn already_copied(s: &Snapshot, dst: &[Snapshot]) -> bool {
    let persistent = s.original.unwrap_or(s.id);
    dst.iter().any(|d| {
        similar(s, d)
            || (d.original == Some(persistent) && d.time == s.time && d.hostname == s.hostname)
    })
}

/// Streams a file's content from the source's blobs, one blob in memory at a time.
struct BlobReader<'a> {
    repo: &'a Repository,
    index: &'a Index,
    blobs: std::slice::Iter<'a, Id>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for BlobReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            let Some(id) = self.blobs.next() else {
                return Ok(0);
            };
            self.buf = self
                .repo
                .load_blob(self.index, BlobType::Data, id)
                .map_err(std::io::Error::other)?;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

struct Copier<'a> {
    src: &'a Repository,
    src_index: &'a Index,
    writer: &'a PackWriter<'a>,
    rechunk: bool,
    /// Source tree id -> destination tree id.
    trees: HashMap<Id, Id>,
}

impl Copier<'_> {
    fn copy_blob(&self, t: BlobType, id: &Id) -> Result<()> {
        if self.writer.has(t, id) {
            return Ok(());
        }
        let data = self.src.load_blob(self.src_index, t, id)?;
        self.writer.save_with_id(t, *id, &data)?;
        Ok(())
    }

    fn rechunk_file(&self, content: &[Id]) -> Result<Vec<Id>> {
        let reader = BlobReader {
            repo: self.src,
            index: self.src_index,
            blobs: content.iter(),
            buf: Vec::new(),
            pos: 0,
        };
        let mut chunker = Chunker::new(reader, self.writer.repo().polynomial());
        let mut buf = Vec::new();
        let mut ids = Vec::new();
        while chunker
            .next_chunk(&mut buf)
            .map_err(|e| Error::corrupt(format!("reading the source: {e}")))?
        {
            ids.push(self.writer.save(BlobType::Data, &buf)?.0);
        }
        Ok(ids)
    }

    /// Copies `tree` (`depth` levels below the snapshot's root) and everything below it;
    /// recursive, bounded by [`depth::check`] (see [`crate::depth`]).
    fn copy_tree(&mut self, tree: Id, depth: usize) -> Result<Id> {
        if let Some(id) = self.trees.get(&tree) {
            return Ok(*id);
        }
        depth::check(depth)?;
        let bytes = self.src.load_blob(self.src_index, BlobType::Tree, &tree)?;
        let mut nodes =
            node::decode_tree(&bytes).map_err(|e| Error::corrupt(format!("tree {tree}: {e}")))?;
        for n in &mut nodes {
            match n.node_type {
                NodeType::Dir => {
                    if let Some(sub) = n.subtree {
                        n.subtree = Some(self.copy_tree(sub, depth + 1)?);
                    }
                }
                NodeType::File => {
                    let content = n.content.clone().unwrap_or_default();
                    if self.rechunk {
                        n.content = Some(self.rechunk_file(&content)?);
                    } else {
                        for id in &content {
                            self.copy_blob(BlobType::Data, id)?;
                        }
                    }
                }
                _ => {}
            }
        }
        let new = if self.rechunk {
            self.writer
                .save(BlobType::Tree, &node::encode_tree(&nodes))?
                .0
        } else {
            // Same blobs, same tree: store the source's bytes under the same id.
            self.copy_blob(BlobType::Tree, &tree)?;
            tree
        };
        self.trees.insert(tree, new);
        Ok(new)
    }
}

/// Copies `snapshots` of `src` into `dst`. The caller holds locks on both.
pub fn copy(
    src: &Repository,
    dst: &Repository,
    snapshots: &[Snapshot],
    opts: &CopyOptions,
) -> Result<CopyReport> {
    if src.config().version > dst.config().version {
        return Err(Error::new(
            crate::Kind::Unsupported,
            format!(
                "the destination is a format version {} repository and the source version {}: it cannot hold compressed data; upgrade it first (`restic migrate upgrade_repo_v2`) or copy into a version {} repository",
                dst.config().version,
                src.config().version,
                src.config().version
            ),
        ));
    }
    let rechunk = opts.rechunk && src.polynomial() != dst.polynomial();
    let existing = Snapshot::load_all(dst)?;
    let src_index = src.load_index()?;
    let dst_index = dst.load_index()?;
    let writer = PackWriter::new(dst, &dst_index);
    let mut copier = Copier {
        src,
        src_index: &src_index,
        writer: &writer,
        rechunk,
        trees: HashMap::new(),
    };
    let mut report = CopyReport {
        rechunked: rechunk,
        ..Default::default()
    };
    let mut new_snapshots = Vec::new();
    for s in snapshots {
        if already_copied(s, &existing) {
            report.skipped.push(s.id);
            continue;
        }
        let tree = depth::with_deep_stack(|| copier.copy_tree(s.tree, 0))
            .map_err(|e| e.context(format!("copying snapshot {}", s.id.short())))?;
        let mut n = s.clone();
        n.tree = tree;
        n.parent = None;
        n.original = Some(s.original.unwrap_or(s.id));
        new_snapshots.push((s.id, n));
    }
    writer.finish()?;
    for (from, mut n) in new_snapshots {
        report.copied.push((from, n.save(dst)?));
    }
    let st = &writer.stats;
    use std::sync::atomic::Ordering::Relaxed;
    report.data_blobs_added = st.data_blobs.load(Relaxed);
    report.tree_blobs_added = st.tree_blobs.load(Relaxed);
    report.bytes_added = st.data_added_packed.load(Relaxed);
    Ok(report)
}
