//! The differences between two snapshots (restic's `diff` without `--metadata`).

use super::*;

/// One difference between two snapshots.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct DiffChange {
    /// restic's form: a directory ends with `/`.
    pub path: String,
    pub path_url: String,
    /// `+` added, `-` removed, `M` content changed, `T` type changed.
    pub modifier: char,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// File sizes before and after (absent on the side without it).
    pub size_before: Option<u64>,
    pub size_after: Option<u64>,
}

#[derive(Serialize, Debug, Default, Clone, PartialEq, Eq)]
pub struct DiffCounts {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    /// Sum of the sizes of the files counted.
    pub bytes: u64,
}

#[derive(Serialize, Debug)]
pub struct DiffResult {
    pub a: SnapshotInfo,
    pub b: SnapshotInfo,
    /// At most the cap, in walk order.
    pub changes: Vec<DiffChange>,
    /// More changes than the cap (the counts below still cover all of them).
    pub truncated: bool,
    pub added: DiffCounts,
    pub removed: DiffCounts,
    pub changed_files: u64,
}

/// The changes from `a` to `b` (restic's `diff` without `--metadata`); equal subtrees
/// (same tree id) are skipped without being loaded.
pub fn diff(open: &Open, a: &Snapshot, b: &Snapshot, cap: usize) -> Result<DiffResult> {
    let index = open.index()?;
    let trees = open.trees(&index);
    let mut r = DiffResult {
        a: SnapshotInfo::of(a),
        b: SnapshotInfo::of(b),
        changes: Vec::new(),
        truncated: false,
        added: DiffCounts::default(),
        removed: DiffCounts::default(),
        changed_files: 0,
    };
    enum Frame {
        Both(Arc<Vec<Node>>, Arc<Vec<Node>>, usize, usize, SnapPath),
        One(Arc<Vec<Node>>, usize, SnapPath, char),
    }
    let record = |r: &mut DiffResult, path: &SnapPath, n: &Node, m: char, other: Option<&Node>| {
        let counts = match m {
            '+' => Some(&mut r.added),
            '-' => Some(&mut r.removed),
            _ => None,
        };
        if let Some(c) = counts {
            match n.node_type {
                NodeType::File => {
                    c.files += 1;
                    c.bytes += n.size;
                }
                NodeType::Dir => c.dirs += 1,
                _ => c.others += 1,
            }
        }
        if r.changes.len() >= cap {
            r.truncated = true;
            return;
        }
        let mut shown = path.display();
        if n.node_type == NodeType::Dir {
            shown.push('/');
        }
        let size = |x: &Node| (x.node_type == NodeType::File).then_some(x.size);
        let (before, after) = match m {
            '+' => (None, size(n)),
            '-' => (size(n), None),
            _ => (other.and_then(size), size(n)),
        };
        r.changes.push(DiffChange {
            path: shown,
            path_url: encode_path(&path.bytes()),
            modifier: m,
            kind: n.node_type.as_str(),
            size_before: before,
            size_after: after,
        });
    };
    let mut stack = Vec::new();
    if a.tree != b.tree {
        stack.push(Frame::Both(
            trees.load(&a.tree)?,
            trees.load(&b.tree)?,
            0,
            0,
            SnapPath::default(),
        ));
    }
    let empty: Arc<Vec<Node>> = Arc::new(Vec::new());
    while let Some(top) = stack.last_mut() {
        let push = match top {
            Frame::One(nodes, next, dir, m) => {
                let Some(n) = nodes.get(*next).cloned() else {
                    stack.pop();
                    continue;
                };
                *next += 1;
                let (m, path) = (*m, dir.child(n.name.as_bytes()));
                record(&mut r, &path, &n, m, None);
                match (n.node_type, n.subtree) {
                    (NodeType::Dir, Some(t)) => Some(Frame::One(trees.load(&t)?, 0, path, m)),
                    _ => None,
                }
            }
            Frame::Both(na, nb, i, j, dir) => {
                let order = match (na.get(*i), nb.get(*j)) {
                    (None, None) => {
                        stack.pop();
                        continue;
                    }
                    (Some(x), Some(y)) => x.name.cmp(&y.name),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                };
                let (m, n, other) = match order {
                    std::cmp::Ordering::Less => {
                        *i += 1;
                        ('-', na[*i - 1].clone(), None)
                    }
                    std::cmp::Ordering::Greater => {
                        *j += 1;
                        ('+', nb[*j - 1].clone(), None)
                    }
                    std::cmp::Ordering::Equal => {
                        *i += 1;
                        *j += 1;
                        ('=', nb[*j - 1].clone(), Some(na[*i - 1].clone()))
                    }
                };
                let path = dir.child(n.name.as_bytes());
                match (m, other) {
                    ('=', Some(x)) => {
                        if x.node_type != n.node_type {
                            record(&mut r, &path, &n, 'T', Some(&x));
                            // Counted as removed on one side, added on the other.
                            for (c, node) in [(&mut r.removed, &x), (&mut r.added, &n)] {
                                match node.node_type {
                                    NodeType::File => {
                                        c.files += 1;
                                        c.bytes += node.size
                                    }
                                    NodeType::Dir => c.dirs += 1,
                                    _ => c.others += 1,
                                }
                            }
                            None
                        } else if n.node_type == NodeType::Dir {
                            if x.subtree == n.subtree {
                                None
                            } else {
                                let load = |t: Option<Id>| match t {
                                    Some(t) => trees.load(&t),
                                    None => Ok(empty.clone()),
                                };
                                Some(Frame::Both(load(x.subtree)?, load(n.subtree)?, 0, 0, path))
                            }
                        } else if x.content != n.content || x.linktarget != n.linktarget {
                            record(&mut r, &path, &n, 'M', Some(&x));
                            if n.node_type == NodeType::File {
                                r.changed_files += 1;
                            }
                            None
                        } else {
                            None
                        }
                    }
                    (m, _) => {
                        record(&mut r, &path, &n, m, None);
                        match (n.node_type, n.subtree) {
                            (NodeType::Dir, Some(t)) => {
                                Some(Frame::One(trees.load(&t)?, 0, path, m))
                            }
                            _ => None,
                        }
                    }
                }
            }
        };
        stack.extend(push);
    }
    Ok(r)
}
