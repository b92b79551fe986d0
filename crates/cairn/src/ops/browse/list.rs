//! One directory's listing and one node's metadata.

use super::*;

/// The tree of directory `path` (an error naming the path if it is not a directory).
pub(super) fn dir_tree(trees: &Trees, root: Id, path: &SnapPath) -> Result<Id> {
    match lookup(trees, root, path)? {
        Found::Root(t) => Ok(t),
        Found::Node(n) => match (n.node_type, n.subtree) {
            (NodeType::Dir, Some(t)) => Ok(t),
            _ => Err(Error::invalid(format!(
                "{} is a {}, not a directory",
                path.display(),
                n.node_type.as_str()
            ))),
        },
    }
}

/// One directory of a snapshot.
#[derive(Serialize, Debug)]
pub struct Listing {
    pub snapshot: SnapshotInfo,
    pub path: String,
    pub path_url: String,
    pub entries: Vec<Entry>,
}

/// Lists directory `path` of `snap` (its entries in the snapshot's name order). Loads only
/// the trees from the root to the directory.
pub fn list_dir(open: &Open, snap: &Snapshot, path: &SnapPath) -> Result<Listing> {
    let index = open.index()?;
    let trees = open.trees(&index);
    let tree = dir_tree(&trees, snap.tree, path)?;
    let entries = trees
        .load(&tree)?
        .iter()
        .map(|n| Entry::of(&path.child(n.name.as_bytes()), n))
        .collect();
    Ok(Listing {
        snapshot: SnapshotInfo::of(snap),
        path: path.display(),
        path_url: encode_path(&path.bytes()),
        entries,
    })
}

/// One node's metadata, with what the listing leaves out.
#[derive(Serialize, Debug)]
pub struct NodeInfo {
    #[serde(flatten)]
    pub entry: Entry,
    pub atime: String,
    pub ctime: String,
    pub inode: u64,
    pub links: u64,
    pub device_id: u64,
    /// Extended attribute names.
    pub xattrs: Vec<String>,
    /// Data blobs of a file.
    pub blobs: usize,
    /// Identifies the content: equal for equal content (files: of its blob ids;
    /// directories: the tree id).
    pub content_id: Option<String>,
    /// An error restic recorded when reading the item.
    pub error: Option<String>,
}

/// The metadata of `path` in `snap` (the root is shown as a directory named `/`).
pub fn node(open: &Open, snap: &Snapshot, path: &SnapPath) -> Result<NodeInfo> {
    let index = open.index()?;
    let trees = open.trees(&index);
    let n = match lookup(&trees, snap.tree, path)? {
        Found::Node(n) => *n,
        Found::Root(t) => {
            let mut n = Node::synthetic_dir("/");
            n.subtree = Some(t);
            n.mtime = snap.time;
            n
        }
    };
    Ok(NodeInfo {
        entry: Entry::of(path, &n),
        atime: cairn_repo::gotime::format(&n.atime),
        ctime: cairn_repo::gotime::format(&n.ctime),
        inode: n.inode,
        links: n.links,
        device_id: n.device_id,
        xattrs: n
            .extended_attributes
            .iter()
            .map(|x| x.name.clone())
            .collect(),
        blobs: n.content.as_ref().map_or(0, Vec::len),
        content_id: content_id(&n),
        error: (!n.error.is_empty()).then(|| n.error.clone()),
    })
}
