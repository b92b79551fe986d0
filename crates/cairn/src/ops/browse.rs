//! Reading snapshots for the browser and the CLI: snapshots of a repository, one
//! directory's listing, one node's metadata, search by name, diff of two snapshots,
//! versions of one path across snapshots, previews, and where the space goes.
//!
//! Typed results only: nothing here prints or parses arguments. Paths are bytes (names in
//! a snapshot need not be UTF-8): [`SnapPath`] splits them, [`encode_path`] writes them for
//! URLs, and every entry carries a display string and its exact bytes (percent-encoded).
//! Walks are iterative; a listing loads only the trees on the way to its directory.

use super::repos::{DirTotals, Open};
use cairn_repo::browse::Trees;
use cairn_repo::id::Id;
use cairn_repo::node::{Node, NodeType};
use cairn_repo::pack::BlobType;
use cairn_repo::snapshot::Snapshot;
use cairn_repo::{Error, Kind, Result};
use serde::Serialize;
use std::sync::Arc;

mod diff;
mod find;
mod list;
mod preview;
mod sizes;
mod versions;

pub use diff::*;
pub use find::*;
pub use list::*;
pub use preview::*;
pub use sizes::*;
pub use versions::*;

/// Longest path accepted (bytes), and longest search query (characters).
pub const MAX_PATH: usize = 4096;
pub const MAX_QUERY: usize = 256;
/// Default cap on search hits and diff changes.
pub const DEFAULT_CAP: usize = 1000;

/// A path inside a snapshot: its components as bytes, `/` separated, no `.` or `..`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapPath(pub Vec<Vec<u8>>);

impl SnapPath {
    /// Parses a path's bytes ("" and "/" are the root). Refuses `.`/`..` components, NUL
    /// and paths longer than [`MAX_PATH`].
    pub fn parse(bytes: &[u8]) -> Result<SnapPath> {
        if bytes.len() > MAX_PATH {
            return Err(Error::invalid(format!(
                "path too long ({} bytes, at most {MAX_PATH})",
                bytes.len()
            )));
        }
        if bytes.contains(&0) {
            return Err(Error::invalid("path contains a NUL byte"));
        }
        let mut parts = Vec::new();
        for c in bytes.split(|&b| b == b'/') {
            match c {
                b"" => {}
                b"." | b".." => {
                    return Err(Error::invalid(
                        "path must not contain `.` or `..` components: give it from the snapshot's root, e.g. /home/me",
                    ))
                }
                c => parts.push(c.to_vec()),
            }
        }
        Ok(SnapPath(parts))
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path's bytes, starting with `/`.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for c in &self.0 {
            out.push(b'/');
            out.extend_from_slice(c);
        }
        if out.is_empty() {
            out.push(b'/');
        }
        out
    }

    /// For display (lossy for names that are not UTF-8).
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    pub fn child(&self, name: &[u8]) -> SnapPath {
        let mut p = self.clone();
        p.0.push(name.to_vec());
        p
    }
}

/// Percent-encodes a path's bytes for a URL query, keeping `/`.
pub fn encode_path(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (and `+` as a space, as in forms) into bytes; a `%` not
/// followed by two hex digits is kept as it is.
pub fn decode_component(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// One snapshot, for lists.
#[derive(Serialize, Debug, Clone)]
pub struct SnapshotInfo {
    pub id: String,
    pub short_id: String,
    /// RFC 3339.
    pub time: String,
    pub hostname: String,
    pub username: String,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    /// The plan that made it (its `plan:NAME` tag), if any.
    pub plan: Option<String>,
    pub tree: String,
    pub parent: Option<String>,
}

impl SnapshotInfo {
    pub fn of(s: &Snapshot) -> SnapshotInfo {
        SnapshotInfo {
            id: s.id.to_hex(),
            short_id: s.id.short(),
            time: s.time.to_rfc3339(),
            hostname: s.hostname.clone(),
            username: s.username.clone(),
            paths: s.paths.clone(),
            tags: s.tags.clone(),
            plan: plan_of(s).map(str::to_string),
            tree: s.tree.to_hex(),
            parent: s.parent.map(|p| p.to_hex()),
        }
    }
}

/// The plan of a snapshot: its `plan:NAME` tag.
pub fn plan_of(s: &Snapshot) -> Option<&str> {
    s.tags.iter().find_map(|t| t.strip_prefix("plan:"))
}

/// Which snapshots to list; `None` matches all.
#[derive(Default, Debug, Clone)]
pub struct SnapshotQuery {
    pub plan: Option<String>,
    pub host: Option<String>,
    /// A path the snapshot backed up (one of its `paths`).
    pub path: Option<String>,
}

/// The snapshots of `open` matching `q`, oldest first.
pub fn snapshots(open: &Open, q: &SnapshotQuery) -> Result<Vec<SnapshotInfo>> {
    Ok(matching(open, q)?
        .iter()
        .map(|s| SnapshotInfo::of(s))
        .collect())
}

fn matching(open: &Open, q: &SnapshotQuery) -> Result<Vec<Arc<Snapshot>>> {
    Ok(open
        .snapshots()?
        .into_iter()
        .filter(|s| q.plan.as_deref().is_none_or(|p| plan_of(s) == Some(p)))
        .filter(|s| q.host.as_deref().is_none_or(|h| s.hostname == h))
        .filter(|s| {
            q.path
                .as_deref()
                .is_none_or(|p| s.paths.iter().any(|sp| sp == p))
        })
        .collect())
}

/// One entry of a directory (or one node looked up).
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Entry {
    /// For display: lossy if the name is not UTF-8.
    pub name: String,
    /// The name's exact bytes, percent-encoded.
    pub name_url: String,
    /// Full path in the snapshot, for display.
    pub path: String,
    /// The full path's exact bytes, percent-encoded (ready for `?path=`).
    pub path_url: String,
    /// `file`, `dir`, `symlink`, `dev`, `chardev`, `fifo`, `socket`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub size: u64,
    /// Go's `os.FileMode` bits, as restic stores them.
    pub mode: u32,
    /// `-rw-r--r--`, like `ls -l`.
    pub permissions: String,
    /// As restic prints it (`ls --json`).
    pub mtime: String,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub group: String,
    pub link_target: Option<String>,
    /// A directory with its contents in the snapshot.
    pub subtree: bool,
}

impl Entry {
    pub fn of(path: &SnapPath, n: &Node) -> Entry {
        let bytes = path.bytes();
        Entry {
            name: n.name.to_string_lossy().into_owned(),
            name_url: encode_path(n.name.as_bytes()).replace('/', "%2F"),
            path: String::from_utf8_lossy(&bytes).into_owned(),
            path_url: encode_path(&bytes),
            kind: n.node_type.as_str(),
            size: n.size,
            mode: n.mode,
            permissions: cairn_repo::browse::mode_string(n.mode),
            mtime: cairn_repo::gotime::format(&n.mtime),
            uid: n.uid,
            gid: n.gid,
            user: n.user.clone(),
            group: n.group.clone(),
            link_target: (n.node_type == NodeType::Symlink).then(|| n.linktarget.clone()),
            subtree: n.subtree.is_some(),
        }
    }
}

/// What a path names in a snapshot.
enum Found {
    Root(Id),
    Node(Box<Node>),
}

/// Finds `path` below `root`, loading only the trees on the way; names compare as bytes.
fn lookup(trees: &Trees, root: Id, path: &SnapPath) -> Result<Found> {
    let mut tree = root;
    for (i, part) in path.0.iter().enumerate() {
        let nodes = trees.load(&tree)?;
        let node = nodes
            .iter()
            .find(|n| n.name.as_bytes() == part.as_slice())
            .ok_or_else(|| Error::not_found(format!("{}: not in this snapshot", path.display())))?;
        if i == path.0.len() - 1 {
            return Ok(Found::Node(Box::new(node.clone())));
        }
        tree = match (node.node_type, node.subtree) {
            (NodeType::Dir, Some(sub)) => sub,
            _ => {
                return Err(Error::not_found(format!(
                    "{}: {} is not a directory",
                    path.display(),
                    SnapPath(path.0[..=i].to_vec()).display()
                )))
            }
        };
    }
    Ok(Found::Root(tree))
}

/// Equal for equal content: a file's blob list, a directory's tree, a link's target.
pub fn content_id(n: &Node) -> Option<String> {
    match n.node_type {
        NodeType::File => {
            let mut all = Vec::new();
            for id in n.content.iter().flatten() {
                all.extend_from_slice(&id.0);
            }
            Some(Id::hash(&all).to_hex())
        }
        NodeType::Dir => n.subtree.map(|t| t.to_hex()),
        NodeType::Symlink => Some(Id::hash(n.linktarget.as_bytes()).to_hex()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_refuse_dot_dot_nul_and_overlong_and_round_trip_bytes() {
        assert!(SnapPath::parse(b"/a/../b").is_err());
        assert!(SnapPath::parse(b"..").is_err());
        assert!(SnapPath::parse(b"/a/./b").is_err());
        assert!(SnapPath::parse(b"/a\0b").is_err());
        assert!(SnapPath::parse(&vec![b'a'; MAX_PATH + 1]).is_err());
        assert!(SnapPath::parse(b"/").unwrap().is_root());
        let p = SnapPath::parse(b"//home/\xffme/").unwrap();
        assert_eq!(p.0, vec![b"home".to_vec(), b"\xffme".to_vec()]);
        assert_eq!(encode_path(&p.bytes()), "/home/%FFme");
        assert_eq!(decode_component(&encode_path(&p.bytes())), p.bytes());
        assert_eq!(decode_component("a%2Fb+c%zz%4"), b"a/b c%zz%4");
    }
}
