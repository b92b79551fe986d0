//! Reading snapshots as file trees: lookup of one path (loading only the trees on the
//! way), walks, `find` matching, `diff` of two trees, file and tar dumps, and statistics.

use crate::error::{Error, Result};
use crate::exclude::Pattern;
use crate::id::Id;
use crate::index::Index;
use crate::node::{self, Node, NodeName, NodeType};
use crate::pack::BlobType;
use crate::repository::Repository;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Decoded trees, cached: a walk that meets the same subtree twice decodes it once.
pub struct Trees<'a> {
    pub repo: &'a Repository,
    pub index: &'a Index,
    cache: Cache<'a>,
}

/// A cache of decoded trees kept beyond one [`Trees`] (e.g. shared by a server's
/// requests). Trees are immutable by id, so an entry never goes stale.
pub trait TreeCache: Send + Sync {
    fn get(&self, id: &Id) -> Option<Arc<Vec<Node>>>;
    /// `bytes`: the tree's encoded size, for a cache bounded by memory.
    fn put(&self, id: Id, nodes: Arc<Vec<Node>>, bytes: usize);
}

enum Cache<'a> {
    Own(Mutex<OwnCache>),
    Shared(&'a dyn TreeCache),
}

/// A walk's own cache, bounded by the encoded size of the trees it holds: it was bounded
/// by their number (10,000), and `ls` of a snapshot of 200 directories of 1,000 files held
/// all their nodes at once (131 MB peak, restic's 129; 200 trees of ≈350 KiB). Emptied
/// when full; a tree larger than the bound is not kept.
#[derive(Default)]
struct OwnCache {
    trees: HashMap<Id, Arc<Vec<Node>>>,
    bytes: usize,
}

/// Encoded bytes of the trees a walk's own cache keeps at most.
const OWN_CACHE_BYTES: usize = 8 << 20;

impl OwnCache {
    /// Keeps `nodes` (a tree of `bytes` encoded bytes) unless that would pass `limit`:
    /// then the cache is emptied first, and a tree larger than `limit` is not kept.
    fn insert(&mut self, id: Id, nodes: Arc<Vec<Node>>, bytes: usize, limit: usize) {
        if self.bytes + bytes > limit {
            self.trees.clear();
            self.bytes = 0;
        }
        if bytes <= limit && self.trees.insert(id, nodes).is_none() {
            self.bytes += bytes;
        }
    }
}

impl<'a> Trees<'a> {
    pub fn new(repo: &'a Repository, index: &'a Index) -> Trees<'a> {
        Trees {
            repo,
            index,
            cache: Cache::Own(Mutex::new(OwnCache::default())),
        }
    }

    /// Trees kept in `cache` instead of a cache of this value's own.
    pub fn with_cache(
        repo: &'a Repository,
        index: &'a Index,
        cache: &'a dyn TreeCache,
    ) -> Trees<'a> {
        Trees {
            repo,
            index,
            cache: Cache::Shared(cache),
        }
    }

    pub fn load(&self, id: &Id) -> Result<Arc<Vec<Node>>> {
        let hit = match &self.cache {
            Cache::Own(c) => c.lock().ok().and_then(|c| c.trees.get(id).cloned()),
            Cache::Shared(c) => c.get(id),
        };
        if let Some(t) = hit {
            return Ok(t);
        }
        let bytes = self.repo.load_blob(self.index, BlobType::Tree, id)?;
        let nodes = Arc::new(
            node::decode_tree(&bytes).map_err(|e| Error::corrupt(format!("tree {id}: {e}")))?,
        );
        match &self.cache {
            Cache::Own(c) => {
                if let Ok(mut c) = c.lock() {
                    c.insert(*id, nodes.clone(), bytes.len(), OWN_CACHE_BYTES);
                }
            }
            Cache::Shared(c) => c.put(*id, nodes.clone(), bytes.len()),
        }
        Ok(nodes)
    }
}

/// What a snapshot path names.
pub enum Located {
    /// The snapshot's root directory.
    Root(Id),
    Node(Box<Node>),
}

/// Finds `path` ("/" or "" for the root) below `root`, loading only the trees on the way.
pub fn lookup(trees: &Trees, root: Id, path: &str) -> Result<Located> {
    let mut tree = root;
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Ok(Located::Root(root));
    }
    for (i, part) in parts.iter().enumerate() {
        let nodes = trees.load(&tree)?;
        let node = nodes
            .iter()
            .find(|n| n.name == *part)
            .ok_or_else(|| Error::not_found(format!("{path}: not in this snapshot")))?;
        if i == parts.len() - 1 {
            return Ok(Located::Node(Box::new(node.clone())));
        }
        tree = match (node.node_type, node.subtree) {
            (NodeType::Dir, Some(sub)) => sub,
            _ => {
                return Err(Error::not_found(format!(
                    "{path}: /{} is not a directory",
                    parts[..=i].join("/")
                )))
            }
        };
    }
    Ok(Located::Root(tree))
}

/// Joins a directory's snapshot path and a name (lossily: for display and matching).
pub fn join(dir: &str, name: &NodeName) -> String {
    format!("{}/{}", dir.trim_end_matches('/'), name)
}

/// Visits every node below `tree` (whose path is `dir`) depth-first in name order;
/// `f` returns whether to descend into a directory.
///
/// Iterative, with one frame per open directory and one path buffer shared by all of
/// them: a snapshot nested arbitrarily deep costs memory linear in its depth, never
/// call stack (issue 11: no recursion depth tied to input).
pub fn walk(
    trees: &Trees,
    tree: &Id,
    dir: &str,
    f: &mut dyn FnMut(&str, &Node) -> Result<bool>,
) -> Result<()> {
    struct Frame {
        nodes: Arc<Vec<Node>>,
        next: usize,
        /// Length of this directory's path in `path`.
        dir_len: usize,
    }
    let mut path = dir.trim_end_matches('/').to_string();
    let mut stack = vec![Frame {
        nodes: trees.load(tree)?,
        next: 0,
        dir_len: path.len(),
    }];
    while let Some(top) = stack.last_mut() {
        if top.next >= top.nodes.len() {
            stack.pop();
            continue;
        }
        let nodes = top.nodes.clone();
        let n = &nodes[top.next];
        top.next += 1;
        path.truncate(top.dir_len);
        push_name(&mut path, &n.name);
        if f(&path, n)? {
            if let (NodeType::Dir, Some(sub)) = (n.node_type, n.subtree) {
                stack.push(Frame {
                    nodes: trees.load(&sub)?,
                    next: 0,
                    dir_len: path.len(),
                });
            }
        }
    }
    Ok(())
}

/// Appends `/name` to a directory path held without its trailing slash (as [`join`]).
fn push_name(path: &mut String, name: &NodeName) {
    use std::fmt::Write as _;
    let _ = write!(path, "/{name}");
}

/// Go's `os.FileMode.String()` ("drwxr-xr-x", "Lrwxrwxrwx", "-rw-r--r--").
pub fn mode_string(mode: u32) -> String {
    const TYPES: &str = "dalTLDpSugct?";
    let mut s = String::new();
    for (i, c) in TYPES.chars().enumerate() {
        if mode & (1 << (31 - i)) != 0 {
            s.push(c);
        }
    }
    if s.is_empty() {
        s.push('-');
    }
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    s
}

/// Nodes matching any pattern (restic's `find`: matched against the whole path, so
/// everything below a matching directory matches too).
pub fn find(
    trees: &Trees,
    root: &Id,
    patterns: &[Pattern],
    ignore_case: bool,
) -> Result<Vec<(String, Node)>> {
    let mut hits = Vec::new();
    walk(trees, root, "", &mut |path, n| {
        let p = if ignore_case {
            path.to_lowercase()
        } else {
            path.to_string()
        };
        if patterns.iter().any(|pat| pat.matches(&p)) {
            hits.push((path.to_string(), n.clone()));
        }
        Ok(true)
    })?;
    Ok(hits)
}

/// Writes a file's content to `out`.
pub fn dump_file(trees: &Trees, node: &Node, out: &mut dyn Write) -> Result<()> {
    for id in node.content.iter().flatten() {
        let data = trees.repo.load_blob(trees.index, BlobType::Data, id)?;
        out.write_all(&data)
            .map_err(|e| Error::io("writing the output", e))?;
    }
    Ok(())
}

/// One difference between two snapshots.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    /// `+` added, `-` removed, `M` content changed, `T` type changed, `U` metadata only.
    pub modifier: char,
}

#[derive(Serialize, Debug, Default, Clone)]
pub struct DiffSide {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    /// Plaintext bytes of the blobs only on this side.
    pub bytes: u64,
}

#[derive(Serialize, Debug, Default)]
pub struct Diff {
    pub changes: Vec<Change>,
    pub changed_files: u64,
    pub added: DiffSide,
    pub removed: DiffSide,
}

/// Compares two trees like restic's `diff`: identical subtrees are skipped without
/// loading them; blob counts and sizes cover blobs referenced on one side only.
///
/// Iterative (an explicit stack of open directories sharing one path buffer), so a
/// snapshot nested arbitrarily deep cannot overflow the call stack.
pub fn diff(trees: &Trees, a: &Id, b: &Id, metadata: bool) -> Result<Diff> {
    let mut d = Diff::default();
    let mut blobs_a: HashSet<(BlobType, Id)> = HashSet::new();
    let mut blobs_b: HashSet<(BlobType, Id)> = HashSet::new();
    diff_trees(trees, *a, *b, metadata, &mut d, &mut blobs_a, &mut blobs_b)?;
    for (set, other, side) in [
        (&blobs_a, &blobs_b, &mut d.removed),
        (&blobs_b, &blobs_a, &mut d.added),
    ] {
        for key in set.difference(other) {
            match key.0 {
                BlobType::Data => side.data_blobs += 1,
                BlobType::Tree => side.tree_blobs += 1,
            }
            if let Some(loc) = trees.index.get(key.0, &key.1) {
                side.bytes += if loc.blob.uncompressed_length != 0 {
                    loc.blob.uncompressed_length as u64
                } else {
                    (loc.blob.length as u64).saturating_sub(crate::crypto::OVERHEAD as u64)
                };
            }
        }
    }
    Ok(d)
}

/// Adds every blob of `tree` and the trees below it to `set`. Iterative: a worklist of
/// trees not yet seen.
fn collect_blobs(trees: &Trees, tree: &Id, set: &mut HashSet<(BlobType, Id)>) -> Result<()> {
    let mut todo = vec![*tree];
    while let Some(tree) = todo.pop() {
        if !set.insert((BlobType::Tree, tree)) {
            continue;
        }
        for n in trees.load(&tree)?.iter() {
            for id in n.content.iter().flatten() {
                set.insert((BlobType::Data, *id));
            }
            if let Some(sub) = n.subtree {
                todo.push(sub);
            }
        }
    }
    Ok(())
}

fn count_side(side: &mut DiffSide, n: &Node) {
    match n.node_type {
        NodeType::File => side.files += 1,
        NodeType::Dir => side.dirs += 1,
        _ => side.others += 1,
    }
}

fn display(path: &str, n: &Node) -> String {
    if n.node_type == NodeType::Dir {
        format!("{path}/")
    } else {
        path.to_string()
    }
}

/// One open directory of [`diff_trees`]; `dir_len` is the length of its path in the
/// shared path buffer.
enum DiffFrame {
    /// Merging the entries of the two sides' versions of a directory.
    Both {
        na: Arc<Vec<Node>>,
        nb: Arc<Vec<Node>>,
        i: usize,
        j: usize,
        dir_len: usize,
    },
    /// Everything in a directory that only one side has: `-` removed, `+` added.
    One {
        nodes: Arc<Vec<Node>>,
        next: usize,
        dir_len: usize,
        modifier: char,
    },
}

/// Opens the two sides' versions of a directory (`None`: that side lacks it). The same
/// subtree on both sides holds no change and its blobs are on both sides: no frame.
fn open_both(
    trees: &Trees,
    a: Option<Id>,
    b: Option<Id>,
    dir_len: usize,
    blobs_a: &mut HashSet<(BlobType, Id)>,
    blobs_b: &mut HashSet<(BlobType, Id)>,
) -> Result<Option<DiffFrame>> {
    if a == b {
        if let Some(t) = a {
            let mut shared = HashSet::new();
            collect_blobs(trees, &t, &mut shared)?;
            blobs_a.extend(shared.iter().copied());
            blobs_b.extend(shared);
        }
        return Ok(None);
    }
    let side = |t: Option<Id>, blobs: &mut HashSet<(BlobType, Id)>| match t {
        Some(t) => {
            blobs.insert((BlobType::Tree, t));
            trees.load(&t)
        }
        None => Ok(Arc::new(Vec::new())),
    };
    Ok(Some(DiffFrame::Both {
        na: side(a, blobs_a)?,
        nb: side(b, blobs_b)?,
        i: 0,
        j: 0,
        dir_len,
    }))
}

/// Records `n` (at `path`) as added or removed; a directory's contents follow in the
/// returned frame.
fn one_sided(
    trees: &Trees,
    path: &str,
    n: &Node,
    modifier: char,
    d: &mut Diff,
    blobs: &mut HashSet<(BlobType, Id)>,
) -> Result<Option<DiffFrame>> {
    d.changes.push(Change {
        path: display(path, n),
        modifier,
    });
    let side = if modifier == '+' {
        &mut d.added
    } else {
        &mut d.removed
    };
    count_side(side, n);
    for id in n.content.iter().flatten() {
        blobs.insert((BlobType::Data, *id));
    }
    match (n.node_type, n.subtree) {
        (NodeType::Dir, Some(sub)) => {
            blobs.insert((BlobType::Tree, sub));
            Ok(Some(DiffFrame::One {
                nodes: trees.load(&sub)?,
                next: 0,
                dir_len: path.len(),
                modifier,
            }))
        }
        _ => Ok(None),
    }
}

/// The changes from root tree `a` to root tree `b`, depth-first in name order.
fn diff_trees(
    trees: &Trees,
    a: Id,
    b: Id,
    metadata: bool,
    d: &mut Diff,
    blobs_a: &mut HashSet<(BlobType, Id)>,
    blobs_b: &mut HashSet<(BlobType, Id)>,
) -> Result<()> {
    // The root's path is "/": entries below it are "/name".
    let mut path = String::new();
    let mut stack: Vec<DiffFrame> = Vec::new();
    stack.extend(open_both(trees, Some(a), Some(b), 0, blobs_a, blobs_b)?);
    while let Some(top) = stack.last_mut() {
        let next = match top {
            DiffFrame::One {
                nodes,
                next,
                dir_len,
                modifier,
            } => {
                let Some(n) = nodes.get(*next).cloned() else {
                    stack.pop();
                    continue;
                };
                *next += 1;
                path.truncate(*dir_len);
                push_name(&mut path, &n.name);
                let blobs = if *modifier == '+' {
                    &mut *blobs_b
                } else {
                    &mut *blobs_a
                };
                let modifier = *modifier;
                one_sided(trees, &path, &n, modifier, d, blobs)?
            }
            DiffFrame::Both {
                na,
                nb,
                i,
                j,
                dir_len,
            } => {
                if *i >= na.len() && *j >= nb.len() {
                    stack.pop();
                    continue;
                }
                path.truncate(*dir_len);
                let order = match (na.get(*i), nb.get(*j)) {
                    (Some(x), Some(y)) => x.name.cmp(&y.name),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    _ => std::cmp::Ordering::Greater,
                };
                match order {
                    std::cmp::Ordering::Less => {
                        let n = &na[*i];
                        *i += 1;
                        push_name(&mut path, &n.name);
                        one_sided(trees, &path, n, '-', d, blobs_a)?
                    }
                    std::cmp::Ordering::Greater => {
                        let n = &nb[*j];
                        *j += 1;
                        push_name(&mut path, &n.name);
                        one_sided(trees, &path, n, '+', d, blobs_b)?
                    }
                    std::cmp::Ordering::Equal => {
                        let (x, y) = (&na[*i], &nb[*j]);
                        *i += 1;
                        *j += 1;
                        push_name(&mut path, &x.name);
                        diff_entry(trees, x, y, &path, metadata, d, blobs_a, blobs_b)?
                    }
                }
            }
        };
        stack.extend(next);
    }
    Ok(())
}

/// Compares the entries both sides have at `path`; a directory on both sides is
/// compared further in the returned frame.
#[allow(clippy::too_many_arguments)]
fn diff_entry(
    trees: &Trees,
    x: &Node,
    y: &Node,
    path: &str,
    metadata: bool,
    d: &mut Diff,
    blobs_a: &mut HashSet<(BlobType, Id)>,
    blobs_b: &mut HashSet<(BlobType, Id)>,
) -> Result<Option<DiffFrame>> {
    for id in x.content.iter().flatten() {
        blobs_a.insert((BlobType::Data, *id));
    }
    for id in y.content.iter().flatten() {
        blobs_b.insert((BlobType::Data, *id));
    }
    if x.node_type != y.node_type {
        d.changes.push(Change {
            path: display(path, y),
            modifier: 'T',
        });
        count_side(&mut d.removed, x);
        count_side(&mut d.added, y);
    } else if x.node_type == NodeType::Dir {
        if metadata && !same_metadata(x, y) {
            d.changes.push(Change {
                path: display(path, y),
                modifier: 'U',
            });
        }
        return open_both(trees, x.subtree, y.subtree, path.len(), blobs_a, blobs_b);
    } else if x.content != y.content || x.linktarget != y.linktarget {
        d.changes.push(Change {
            path: path.to_string(),
            modifier: 'M',
        });
        if x.node_type == NodeType::File {
            d.changed_files += 1;
        }
    } else if metadata && !same_metadata(x, y) {
        d.changes.push(Change {
            path: path.to_string(),
            modifier: 'U',
        });
    }
    Ok(None)
}

fn same_metadata(a: &Node, b: &Node) -> bool {
    a.mode == b.mode
        && a.mtime == b.mtime
        && a.uid == b.uid
        && a.gid == b.gid
        && a.user == b.user
        && a.group == b.group
        && a.extended_attributes == b.extended_attributes
}

/// restic's `stats` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsMode {
    RestoreSize,
    FilesByContents,
    RawData,
    BlobsPerFile,
}

impl StatsMode {
    pub fn parse(s: &str) -> Result<StatsMode> {
        match s {
            "restore-size" => Ok(StatsMode::RestoreSize),
            "files-by-contents" => Ok(StatsMode::FilesByContents),
            "raw-data" => Ok(StatsMode::RawData),
            "blobs-per-file" => Ok(StatsMode::BlobsPerFile),
            _ => Err(Error::invalid(format!(
                "unknown --mode {s:?}: use restore-size, files-by-contents, raw-data or blobs-per-file"
            ))),
        }
    }
}

#[derive(Serialize, Debug, Default)]
pub struct Stats {
    pub total_size: u64,
    pub total_file_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_blob_count: Option<u64>,
    pub snapshots_count: u64,
}

/// Statistics over the trees of `roots`, computed like restic 0.14's `stats`.
pub fn stats(trees: &Trees, roots: &[Id], mode: StatsMode) -> Result<Stats> {
    let mut st = Stats {
        snapshots_count: roots.len() as u64,
        ..Default::default()
    };
    let mut blobs: HashSet<(BlobType, Id)> = HashSet::new();
    let mut unique_files: HashSet<Vec<Id>> = HashSet::new();
    let mut file_blobs: HashSet<(String, Id)> = HashSet::new();
    let mut counted_paths: HashSet<String> = HashSet::new();
    // restore-size counts a hard-linked file once (by inode and device).
    let mut hard_links: HashSet<(u64, u64)> = HashSet::new();
    // Like restic: a blob a snapshot uses but no index has makes the total wrong.
    let not_indexed = |t: BlobType, id: &Id| {
        Error::corrupt(format!(
            "{t} blob {id} is used by a snapshot but not in the index: run `cairn check`, then `cairn repair index`"
        ))
    };
    let plain_size = |id: &Id| {
        let loc = trees
            .index
            .get(BlobType::Data, id)
            .ok_or_else(|| not_indexed(BlobType::Data, id))?;
        Ok::<u64, Error>(if loc.blob.uncompressed_length != 0 {
            loc.blob.uncompressed_length as u64
        } else {
            (loc.blob.length as u64).saturating_sub(crate::crypto::OVERHEAD as u64)
        })
    };
    for root in roots {
        if mode == StatsMode::RawData {
            collect_blobs(trees, root, &mut blobs)?;
            continue;
        }
        // Like restic, hard links are recognised within one snapshot.
        hard_links.clear();
        walk(trees, root, "", &mut |path, n| {
            if mode == StatsMode::RestoreSize {
                // Every entry counts; a hard-linked file's size counts once.
                st.total_file_count += 1;
                if n.node_type == NodeType::Dir
                    || n.links <= 1
                    || hard_links.insert((n.inode, n.device_id))
                {
                    st.total_size += n.size;
                }
                return Ok(true);
            }
            if n.node_type == NodeType::Dir {
                return Ok(true);
            }
            let content = n.content.clone().unwrap_or_default();
            if !unique_files.insert(content.clone()) {
                return Ok(true);
            }
            if mode == StatsMode::FilesByContents {
                st.total_file_count += 1;
                st.total_size += n.size;
                return Ok(true);
            }
            for id in &content {
                if counted_paths.insert(path.to_string()) {
                    st.total_file_count += 1;
                }
                if file_blobs.insert((path.to_string(), *id)) {
                    st.total_size += plain_size(id)?;
                    blobs.insert((BlobType::Data, *id));
                    st.total_blob_count = Some(st.total_blob_count.unwrap_or(0) + 1);
                }
            }
            Ok(true)
        })?;
    }
    match mode {
        StatsMode::RawData => {
            st.total_blob_count = Some(blobs.len() as u64);
            for (t, id) in &blobs {
                let loc = trees.index.get(*t, id).ok_or_else(|| not_indexed(*t, id))?;
                st.total_size += loc.blob.length as u64;
            }
        }
        StatsMode::BlobsPerFile => {
            st.total_blob_count = Some(st.total_blob_count.unwrap_or(0));
        }
        _ => {}
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walks_own_cache_stays_within_its_bound() {
        let mut c = OwnCache::default();
        let tree = Arc::new(Vec::new());
        for i in 0..100u8 {
            c.insert(Id([i; 32]), tree.clone(), 300, 1000);
            assert!(
                c.bytes <= 1000 && c.bytes == 300 * c.trees.len(),
                "{i}: {}",
                c.bytes
            );
            assert!(
                c.trees.contains_key(&Id([i; 32])),
                "the tree just loaded is kept"
            );
        }
        // The same tree again is counted once.
        c.insert(Id([99; 32]), tree.clone(), 300, 1000);
        assert_eq!(c.bytes, 300 * c.trees.len());
        // A tree larger than the bound is not kept (and empties the cache).
        c.insert(Id([200; 32]), tree, 1001, 1000);
        assert!(c.trees.is_empty() && c.bytes == 0);
    }
}
