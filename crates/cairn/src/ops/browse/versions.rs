//! One path across the snapshots of a repository.

use super::*;

/// `path` in one snapshot.
#[derive(Serialize, Debug, Clone)]
pub struct Version {
    pub snapshot: SnapshotInfo,
    /// `None`: the path is not in this snapshot.
    pub entry: Option<Entry>,
    pub content_id: Option<String>,
    /// Differs from the previous snapshot that had the path (or is the first).
    pub changed: bool,
}

/// `path` across every snapshot of the repository (of plan `plan` if given), oldest
/// first. Trees shared by snapshots are loaded once.
pub fn versions(open: &Open, path: &SnapPath, plan: Option<&str>) -> Result<Vec<Version>> {
    if path.is_root() {
        return Err(Error::invalid(
            "give the path of a file or directory, not the root",
        ));
    }
    let index = open.index()?;
    let trees = open.trees(&index);
    let q = SnapshotQuery {
        plan: plan.map(str::to_string),
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut last: Option<Option<String>> = None;
    for s in matching(open, &q)? {
        let n = match lookup(&trees, s.tree, path) {
            Ok(Found::Node(n)) => Some(n),
            Ok(Found::Root(_)) => None,
            Err(e) if e.kind() == Kind::NotFound => None,
            Err(e) => return Err(e),
        };
        let (entry, cid) = match &n {
            Some(n) => (Some(Entry::of(path, n)), content_id(n)),
            None => (None, None),
        };
        let changed = match (&last, &entry) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(prev), Some(_)) => *prev != cid,
        };
        if entry.is_some() {
            last = Some(cid.clone());
        }
        out.push(Version {
            snapshot: SnapshotInfo::of(&s),
            entry,
            content_id: cid,
            changed,
        });
    }
    Ok(out)
}
