//! The restore plan: every directory, file, hard link, special file and symlink to
//! create, found by walking the snapshot's trees with an explicit stack (a snapshot nested
//! thousands of directories deep costs heap, never call stack).
//!
//! Owns what a tree may ask for: a name that is not one plain path component (empty,
//! `.`, `..`, with `/` or NUL) is refused, a name seen twice in one tree is restored once
//! (the first) and reported, and only regular files are hard-linked, to a regular file.
//! Does not touch the target.

use super::{RestoreError, RestoreOptions};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::Index;
use crate::node::{self, Node, NodeType};
use crate::pack::BlobType;
use crate::repository::Repository;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};

/// Something to create in a planned directory (`dir: None` is the target itself).
pub(super) struct Entry {
    pub dir: Option<usize>,
    pub name: OsString,
    /// For messages: the target path it goes to.
    pub path: PathBuf,
    pub node: Node,
}

pub(super) struct PlannedDir {
    pub entry: Entry,
    pub depth: usize,
}

pub(super) enum FileState {
    Pending,
    /// Already in the target and `overwrite` is off.
    Skipped,
    Failed(String),
}

pub(super) struct PlannedFile {
    pub entry: Entry,
    /// (blob id, plaintext length) in file order.
    pub blobs: Vec<(Id, u64)>,
    pub remaining: AtomicU64,
    pub state: Mutex<FileState>,
    /// The inode created for it.
    pub ident: OnceLock<super::write::Ident>,
    /// Set by the thread that wrote its last blob, which applied its metadata on the
    /// descriptor it held: the outcome of that (no reopening to finish it).
    pub finished: OnceLock<std::result::Result<(), String>>,
}

impl PlannedFile {
    pub fn size(&self) -> u64 {
        self.blobs.iter().map(|b| b.1).sum()
    }

    pub fn fail(&self, msg: impl FnOnce() -> String) {
        if let Ok(mut s) = self.state.lock() {
            if matches!(*s, FileState::Pending) {
                *s = FileState::Failed(msg());
            }
        }
    }

    pub fn pending(&self) -> bool {
        self.state
            .lock()
            .map(|s| matches!(*s, FileState::Pending))
            .unwrap_or(false)
    }
}

#[derive(Default)]
pub(super) struct Plan {
    /// Parents before children.
    pub dirs: Vec<PlannedDir>,
    pub files: Vec<PlannedFile>,
    /// Device nodes and fifos (sockets are listed and not recreated).
    pub specials: Vec<Entry>,
    /// Created last, after every file's data and every directory.
    pub symlinks: Vec<Entry>,
    /// (index of the first file of the group in `files`, the other member).
    pub hardlinks: Vec<(usize, Entry)>,
    pub errors: Vec<RestoreError>,
}

/// One directory being walked.
struct Frame {
    nodes: std::vec::IntoIter<Node>,
    snap_dir: String,
    dest: PathBuf,
    /// This directory's index in `plan.dirs` (`None`: the restore's top).
    dir: Option<usize>,
    /// Everything below is selected (no include pattern narrows it).
    whole: bool,
    /// Something below was selected.
    any: bool,
    seen: HashSet<Vec<u8>>,
    /// The directory's path relative to the restore's top (for `opts.picks`).
    rel: PathBuf,
}

/// Where a path stands with respect to `RestoreOptions::picks`.
#[derive(PartialEq, Eq)]
enum Picked {
    /// A picked item or below one (or nothing is picked: everything is).
    In,
    /// A directory on the way to a picked item.
    Ancestor,
    Out,
}

struct Planner<'a> {
    repo: &'a Repository,
    index: &'a Index,
    opts: &'a RestoreOptions,
    plan: Plan,
    /// (device, inode) of a hard-link group's first regular file -> its index in `files`.
    inodes: HashMap<(u64, u64), usize>,
}

impl Planner<'_> {
    fn load_tree(&self, id: &Id) -> Result<Vec<Node>> {
        let bytes = self.repo.load_blob(self.index, BlobType::Tree, id)?;
        node::decode_tree(&bytes).map_err(|e| Error::corrupt(format!("tree {id}: {e}")))
    }

    fn error(&mut self, path: &std::path::Path, error: String) {
        self.plan.errors.push(RestoreError {
            path: path.display().to_string(),
            error,
        });
    }

    fn frame(
        &mut self,
        tree: Option<Id>,
        snap_dir: String,
        dest: PathBuf,
        dir: Option<usize>,
        whole: bool,
        rel: PathBuf,
    ) -> Frame {
        let (nodes, any) = match tree.map(|t| self.load_tree(&t)) {
            None => (Vec::new(), false),
            Some(Ok(n)) => (n, false),
            Some(Err(e)) => {
                self.error(&dest, format!("directory contents could not be read: {e}"));
                (Vec::new(), true)
            }
        };
        Frame {
            nodes: nodes.into_iter(),
            snap_dir,
            dest,
            dir,
            whole,
            any,
            seen: HashSet::new(),
            rel,
        }
    }

    /// Where `rel` (relative to the restore's top) stands with respect to the picks;
    /// compared component by component, byte for byte.
    fn picked(&self, rel: &std::path::Path) -> Picked {
        if self.opts.picks.is_empty() || self.opts.picks.iter().any(|p| rel.starts_with(p)) {
            Picked::In
        } else if self.opts.picks.iter().any(|p| p.starts_with(rel)) {
            Picked::Ancestor
        } else {
            Picked::Out
        }
    }

    fn run(&mut self, tree: Id, snap_dir: &str, target: PathBuf) {
        let top = self.frame(
            Some(tree),
            snap_dir.to_string(),
            target,
            None,
            true,
            PathBuf::new(),
        );
        let mut stack = vec![top];
        let mut dir_starts: Vec<usize> = vec![0];
        loop {
            let depth = stack.len();
            let Some(frame) = stack.last_mut() else {
                return;
            };
            let Some(n) = frame.nodes.next() else {
                let Some(done) = stack.pop() else { return };
                let start = dir_starts.pop().unwrap_or(0);
                if done.dir.is_some() {
                    if done.whole || done.any {
                        if let Some(parent) = stack.last_mut() {
                            parent.any = true;
                        }
                    } else {
                        // Nothing selected below: don't create it (nor its empty subdirectories).
                        self.plan.dirs.truncate(start);
                    }
                }
                continue;
            };
            let name_bytes = n.name.as_bytes().to_vec();
            let shown = String::from_utf8_lossy(&name_bytes).into_owned();
            if !n.name.is_plain_component() {
                let dest = frame.dest.clone();
                self.error(&dest, format!("invalid file name {shown:?} in the snapshot (not one path component): skipped"));
                continue;
            }
            let name = OsString::from(std::ffi::OsStr::from_bytes(&name_bytes));
            let path = frame.dest.join(&name);
            if !frame.seen.insert(name_bytes) {
                self.error(&path, "the snapshot's tree names this entry more than once: only the first was restored".into());
                continue;
            }
            let snap_path = format!("{}/{}", frame.snap_dir.trim_end_matches('/'), shown);
            let parent = frame.dir;
            let excluded = !self.opts.exclude.is_empty() && self.opts.exclude.matches(&snap_path);
            if excluded {
                continue;
            }
            let rel = frame.rel.join(&name);
            let picked = self.picked(&rel);
            if picked == Picked::Out {
                continue;
            }
            let included = picked == Picked::In
                && (self.opts.include.is_empty() || self.opts.include.matches(&snap_path));
            if n.node_type == NodeType::Dir {
                let may_descend =
                    picked == Picked::Ancestor || self.opts.include.child_may_match(&snap_path);
                if !included && !may_descend {
                    continue;
                }
                let idx = self.plan.dirs.len();
                let subtree = n.subtree;
                self.plan.dirs.push(PlannedDir {
                    entry: Entry {
                        dir: parent,
                        name,
                        path: path.clone(),
                        node: n,
                    },
                    depth,
                });
                let child = self.frame(subtree, snap_path, path, Some(idx), included, rel);
                stack.push(child);
                dir_starts.push(idx);
                continue;
            }
            if !included {
                continue;
            }
            frame.any = true;
            let entry = Entry {
                dir: parent,
                name,
                path,
                node: n,
            };
            self.add(entry);
        }
    }

    fn add(&mut self, entry: Entry) {
        let n = &entry.node;
        match n.node_type {
            NodeType::File => {
                let key = (n.device_id, n.inode);
                if n.links > 1 {
                    if let Some(&first) = self.inodes.get(&key) {
                        self.plan.hardlinks.push((first, entry));
                        return;
                    }
                    self.inodes.insert(key, self.plan.files.len());
                }
                let mut blobs = Vec::new();
                let mut missing = None;
                for id in n.content.iter().flatten() {
                    match self.index.get(BlobType::Data, id) {
                        Some(loc) => blobs.push((*id, loc.blob.data_length() as u64)),
                        None => {
                            missing.get_or_insert_with(|| {
                                format!("data blob {id} is missing from the repository index: file not restored")
                            });
                            blobs.push((*id, 0));
                        }
                    }
                }
                self.plan.files.push(PlannedFile {
                    remaining: AtomicU64::new(blobs.len() as u64),
                    blobs,
                    state: Mutex::new(missing.map_or(FileState::Pending, FileState::Failed)),
                    ident: OnceLock::new(),
                    finished: OnceLock::new(),
                    entry,
                });
            }
            // A symlink, device or fifo is never a hard-link target: each is restored on its own.
            NodeType::Symlink => self.plan.symlinks.push(entry),
            _ => self.plan.specials.push(entry),
        }
    }
}

/// Plans the restore of `tree` (at `snap_dir` in the snapshot) into `opts.target`.
pub(super) fn plan(
    repo: &Repository,
    index: &Index,
    tree: Id,
    snap_dir: &str,
    opts: &RestoreOptions,
) -> Plan {
    let mut p = Planner {
        repo,
        index,
        opts,
        plan: Plan::default(),
        inodes: HashMap::new(),
    };
    p.run(tree, snap_dir, opts.target.clone());
    p.plan
}
