//! Where the space goes: recursive totals of a directory's children, memoised per tree.

use super::*;

/// One child of a directory with its recursive totals.
#[derive(Serialize, Debug, Clone)]
pub struct SizeEntry {
    #[serde(flatten)]
    pub entry: Entry,
    /// For a directory: everything below it; for a file: itself.
    pub totals: DirTotals,
}

#[derive(Serialize, Debug)]
pub struct Sizes {
    pub path: String,
    pub path_url: String,
    pub totals: DirTotals,
    /// Largest first.
    pub children: Vec<SizeEntry>,
}

/// Where the space goes in directory `path`: each child's recursive size, largest first.
/// Directory totals are kept by tree id, so a subtree shared by snapshots (or met again)
/// is summed once.
pub fn sizes(open: &Open, snap: &Snapshot, path: &SnapPath) -> Result<Sizes> {
    let index = open.index()?;
    let trees = open.trees(&index);
    let tree = dir_tree(&trees, snap.tree, path)?;
    let mut totals = DirTotals::default();
    let mut children = Vec::new();
    for n in trees.load(&tree)?.iter() {
        let t = match (n.node_type, n.subtree) {
            (NodeType::Dir, Some(sub)) => tree_totals(open, &trees, sub)?,
            _ => {
                let mut t = DirTotals::default();
                add_leaf(&mut t, n);
                t
            }
        };
        add_child(&mut totals, n, &t);
        children.push(SizeEntry {
            entry: Entry::of(&path.child(n.name.as_bytes()), n),
            totals: t,
        });
    }
    children.sort_by_key(|c| std::cmp::Reverse(c.totals.bytes));
    Ok(Sizes {
        path: path.display(),
        path_url: encode_path(&path.bytes()),
        totals,
        children,
    })
}

pub(super) fn add_leaf(t: &mut DirTotals, n: &Node) {
    match n.node_type {
        NodeType::File => {
            t.files += 1;
            t.bytes += n.size;
        }
        NodeType::Dir => t.dirs += 1,
        _ => t.others += 1,
    }
}

/// Adds child `n` whose own totals are `t` (for a directory: below it).
pub(super) fn add_child(total: &mut DirTotals, n: &Node, t: &DirTotals) {
    if n.node_type == NodeType::Dir {
        total.dirs += 1 + t.dirs;
        total.files += t.files;
        total.others += t.others;
        total.bytes += t.bytes;
    } else {
        add_leaf(total, n);
    }
}

/// Everything below tree `root`, memoised per tree id. Iterative post-order walk.
pub fn tree_totals(open: &Open, trees: &Trees, root: Id) -> Result<DirTotals> {
    if let Some(t) = open.cached_size(&root) {
        return Ok(t);
    }
    struct Frame {
        id: Id,
        nodes: Arc<Vec<Node>>,
        next: usize,
        acc: DirTotals,
    }
    let mut stack = vec![Frame {
        id: root,
        nodes: trees.load(&root)?,
        next: 0,
        acc: DirTotals::default(),
    }];
    loop {
        let Some(top) = stack.last_mut() else {
            return Ok(DirTotals::default());
        };
        let Some(n) = top.nodes.get(top.next).cloned() else {
            let done = stack.pop().map(|f| (f.id, f.acc));
            let Some((id, acc)) = done else { continue };
            open.remember_size(id, acc);
            match stack.last_mut() {
                Some(parent) => {
                    let dir = parent.nodes[parent.next - 1].clone();
                    add_child(&mut parent.acc, &dir, &acc);
                }
                None => return Ok(acc),
            }
            continue;
        };
        top.next += 1;
        match (n.node_type, n.subtree) {
            (NodeType::Dir, Some(sub)) => match open.cached_size(&sub) {
                Some(t) => add_child(&mut top.acc, &n, &t),
                None => stack.push(Frame {
                    id: sub,
                    nodes: trees.load(&sub)?,
                    next: 0,
                    acc: DirTotals::default(),
                }),
            },
            _ => add_child(&mut top.acc, &n, &DirTotals::default()),
        }
    }
}
