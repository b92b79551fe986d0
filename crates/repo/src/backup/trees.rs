//! The tree finisher: assembles each directory's tree once its children are stored.

use super::{Counts, DirJob, Entry, FileError, Progress};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::node;
use crate::pack::BlobType;
use crate::writer::PackWriter;
use crossbeam_channel::Receiver;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// Assembles trees in post-order as their children complete.
pub(super) fn finish_trees(
    jobs: Receiver<DirJob>,
    writer: &PackWriter,
    warnings: &Mutex<Vec<String>>,
    progress: &Progress,
    counts: &Counts,
) -> Result<()> {
    // One vector for every directory: a fresh one of a large directory's size cost page
    // faults for each.
    let mut nodes = Vec::new();
    for job in jobs {
        nodes.clear();
        nodes.reserve(job.entries.len());
        let result = (|| -> Result<Id> {
            for e in job.entries {
                match e {
                    Entry::Ready(n) => nodes.push(n),
                    Entry::File(mut n, rx) => match rx.recv() {
                        Ok(Ok((ids, size))) => {
                            n.content = Some(ids);
                            n.size = size;
                            nodes.push(n);
                        }
                        Ok(Err(FileError::Source(msg))) => {
                            progress.errors.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut w) = warnings.lock() {
                                w.push(msg);
                            }
                        }
                        Ok(Err(FileError::Repository(e))) => return Err(e),
                        Err(_) => {
                            return Err(Error::new(crate::Kind::Io, "backup pipeline stopped"))
                        }
                    },
                    Entry::Dir(mut n, rx) => {
                        let id = rx.recv().map_err(|_| {
                            Error::new(crate::Kind::Io, "backup pipeline stopped")
                        })??;
                        n.subtree = Some(id);
                        nodes.push(n);
                    }
                    Entry::Pending => {
                        return Err(Error::new(
                            crate::Kind::Io,
                            "internal error: a directory entry was never walked",
                        ))
                    }
                }
            }
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            // An unchanged directory: its nodes encode exactly as the parent's, whose bytes
            // are canonical (what `encode_tree` writes), so its tree is the parent's, which
            // the index holds (it was loaded through it): no encoding, hashing or lookup.
            let reused = match (job.parent_tree, &job.parent_nodes) {
                (Some(id), Some(p))
                    if p.len() == nodes.len()
                        && p.iter().zip(&nodes).all(|(a, b)| node::encodes_same(a, b)) =>
                {
                    Some(id)
                }
                _ => None,
            };
            let id = match reused {
                Some(id) => id,
                None => writer.save(BlobType::Tree, &node::encode_tree(&nodes))?.0,
            };
            match job.parent_tree {
                None => &counts.dirs_new,
                Some(p) if p == id => &counts.dirs_unmodified,
                Some(_) => &counts.dirs_changed,
            }
            .fetch_add(1, Ordering::Relaxed);
            Ok(id)
        })();
        match result {
            Ok(id) => {
                let _ = job.done.send(Ok(id));
            }
            Err(e) => {
                // The real error is returned from here; waiters get a pointer to it.
                let _ = job.done.send(Err(Error::new(
                    e.kind(),
                    "backup stopped by an earlier error",
                )));
                return Err(e);
            }
        }
    }
    Ok(())
}
