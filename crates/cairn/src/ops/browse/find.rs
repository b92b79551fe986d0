//! Search by name: glob or substring patterns over a snapshot's walk.

use super::*;

/// A name pattern: `*` and `?` globs if it has any, else a substring; case-insensitive.
pub struct NameQuery {
    pattern: Vec<char>,
    glob: bool,
}

impl NameQuery {
    pub fn parse(q: &str) -> Result<NameQuery> {
        let q = q.trim();
        if q.is_empty() {
            return Err(Error::invalid(
                "empty search: give part of a name, or a glob like *.pdf",
            ));
        }
        if q.chars().count() > MAX_QUERY {
            return Err(Error::invalid(format!(
                "search too long (at most {MAX_QUERY} characters)"
            )));
        }
        Ok(NameQuery {
            pattern: q.to_lowercase().chars().collect(),
            glob: q.contains(['*', '?']),
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.to_lowercase().chars().collect();
        if self.glob {
            glob(&self.pattern, &name)
        } else {
            let p = &self.pattern;
            p.len() <= name.len() && name.windows(p.len()).any(|w| w == p.as_slice())
        }
    }
}

/// `*` any run, `?` one character; linear backtracking on the last `*`.
pub(super) fn glob(p: &[char], s: &[char]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[derive(Serialize, Debug)]
pub struct FindResult {
    pub hits: Vec<Entry>,
    /// More matched than the cap: the search stopped.
    pub truncated: bool,
    /// Entries looked at.
    pub scanned: u64,
}

/// Entries of `snap` below `under` whose name matches `q`, in walk order, at most `cap`.
pub fn find(
    open: &Open,
    snap: &Snapshot,
    under: &SnapPath,
    q: &NameQuery,
    cap: usize,
) -> Result<FindResult> {
    let index = open.index()?;
    let trees = open.trees(&index);
    let start = dir_tree(&trees, snap.tree, under)?;
    let mut r = FindResult {
        hits: Vec::new(),
        truncated: false,
        scanned: 0,
    };
    // Iterative depth-first walk in name order; each frame owns its directory's path.
    let mut stack: Vec<(Arc<Vec<Node>>, usize, SnapPath)> =
        vec![(trees.load(&start)?, 0, under.clone())];
    while let Some((nodes, next, dir)) = stack.last_mut() {
        let Some(n) = nodes.get(*next).cloned() else {
            stack.pop();
            continue;
        };
        *next += 1;
        r.scanned += 1;
        let path = dir.child(n.name.as_bytes());
        if q.matches(&n.name.to_string_lossy()) {
            if r.hits.len() >= cap {
                r.truncated = true;
                break;
            }
            r.hits.push(Entry::of(&path, &n));
        }
        if let (NodeType::Dir, Some(sub)) = (n.node_type, n.subtree) {
            let sub = trees.load(&sub)?;
            stack.push((sub, 0, path));
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_query_is_a_case_insensitive_glob_or_substring() {
        let q = NameQuery::parse("*.TXT").unwrap();
        assert!(q.matches("notes.txt"));
        assert!(!q.matches("notes.txt.bak"));
        let q = NameQuery::parse("a?c*z").unwrap();
        assert!(q.matches("abcz") && q.matches("ABCxyz"));
        assert!(!q.matches("acz"));
        let q = NameQuery::parse("Report").unwrap();
        assert!(q.matches("2024-report-final.pdf"));
        assert!(!q.matches("repor"));
        assert!(NameQuery::parse("  ").is_err());
        assert!(NameQuery::parse(&"x".repeat(MAX_QUERY + 1)).is_err());
    }
}
