//! The virtual tree of backup targets, and where a recorded path is really read from.

use crate::error::{Error, Result};
use crate::node::NodeName;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// A node of the virtual tree of backup targets (`/home/a` and `/home/b` share `home`).
/// Like restic, a relative target is stored under its relative components (`backup docs`
/// gives `/docs` in the snapshot, `../x` gives `/x`), an absolute one under its full path;
/// `fs_path` is where the node is read from.
#[derive(Default)]
pub(super) struct Targets {
    pub(super) children: BTreeMap<NodeName, Targets>,
    pub(super) is_target: bool,
    /// A streamed file (index into the walker's streams).
    pub(super) stream: Option<usize>,
    pub(super) fs_path: PathBuf,
    /// For top-level nodes: the directory the target's components start from (`/`, `.`,
    /// `../..`); two targets with the same first name but different roots get `name-1`.
    pub(super) root: PathBuf,
}

impl Targets {
    /// Adds a streamed file at an absolute path.
    pub(super) fn add_stream(&mut self, path: &Path, index: usize) {
        let (root, components) = split_target(path);
        let mut fs_path = root;
        let mut t = self;
        for c in &components {
            fs_path.push(c.as_path());
            t = t.children.entry(c.clone()).or_default();
            t.fs_path = fs_path.clone();
        }
        t.stream = Some(index);
    }

    pub(super) fn has_stream(&self) -> bool {
        self.stream.is_some() || self.children.values().any(Targets::has_stream)
    }

    /// Adds one target path (as the user gave it, lexically cleaned).
    pub(super) fn add(&mut self, target: &Path) {
        let (root, components) = split_target(target);
        if components.is_empty() {
            return;
        }
        let first = components[0].clone();
        let mut name = first.clone();
        let mut i = 0;
        while let Some(other) = self.children.get(&name) {
            if other.root == root {
                break;
            }
            i += 1;
            let mut renamed = first.as_bytes().to_vec();
            renamed.extend_from_slice(format!("-{i}").as_bytes());
            name = NodeName::new(renamed);
        }
        let mut fs_path = root.join(first.as_path());
        let mut t = self.children.entry(name).or_default();
        t.root = root.clone();
        t.fs_path = fs_path.clone();
        for c in &components[1..] {
            fs_path.push(c.as_path());
            t = t.children.entry(c.clone()).or_default();
            t.fs_path = fs_path.clone();
        }
        t.is_target = true;
    }
}

/// Lexically cleans `p` (no filesystem access) and splits it into the directory its
/// stored components start from and those components: `/a/b` -> (`/`, [a, b]),
/// `x/../y` -> (`.`, [y]), `../../z` -> (`../..`, [z]).
pub(super) fn split_target(p: &Path) -> (PathBuf, Vec<NodeName>) {
    let mut root = PathBuf::from(if p.is_absolute() { "/" } else { "." });
    let mut parts: Vec<NodeName> = Vec::new();
    for c in p.components() {
        match c {
            // `..` drops the last component; with none left it climbs the root instead.
            Component::ParentDir if parts.pop().is_none() && !p.is_absolute() => {
                root.push("..");
            }
            Component::Normal(n) => parts.push(NodeName::from(n)),
            _ => {}
        }
    }
    (root, parts)
}

/// Expands a target that names only a directory (`.`, `..`, `../..`) into its entries,
/// like restic: `backup .` stores the current directory's entries at the snapshot root.
pub(super) fn expand_relative_target(p: &Path) -> std::io::Result<Vec<PathBuf>> {
    let (root, parts) = split_target(p);
    if !parts.is_empty() || p.is_absolute() {
        return Ok(vec![p.to_path_buf()]);
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(&root)? {
        out.push(root.join(e?.file_name()));
    }
    out.sort();
    Ok(out)
}

pub(super) fn clean_absolute(p: &Path) -> Result<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("current directory", e))?
            .join(p)
    };
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    Ok(out)
}

/// Where a recorded path really is: the longest `source_map` prefix replaced.
pub(super) fn actual_path<'p>(
    map: &[(PathBuf, PathBuf)],
    recorded: &'p Path,
) -> std::borrow::Cow<'p, Path> {
    let best = map
        .iter()
        .filter(|(r, _)| recorded.starts_with(r))
        .max_by_key(|(r, _)| r.components().count());
    match best {
        Some((r, a)) => match recorded.strip_prefix(r) {
            Ok(rest) if rest.as_os_str().is_empty() => std::borrow::Cow::Owned(a.clone()),
            Ok(rest) => std::borrow::Cow::Owned(a.join(rest)),
            Err(_) => std::borrow::Cow::Borrowed(recorded),
        },
        None => std::borrow::Cow::Borrowed(recorded),
    }
}
