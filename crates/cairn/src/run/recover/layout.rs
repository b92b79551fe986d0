//! Which part of a plan's snapshot each restore of the runbook takes: one part per source
//! (its paths), one for the plan's own paths outside every source, and the patterns that
//! keep the parts apart (a path is restored by exactly one part, nested paths by the
//! innermost).
//!
//! Pure functions of the config; nothing here touches the disk or the repository.

use crate::config::{Config, Plan};
use std::path::{Path, PathBuf};

/// The name of the part holding the plan's own paths (those of no source).
pub const PLAN_PART: &str = "(plan)";

/// The report's name for the snapshot's paths no part covers (not restored).
pub const UNCOVERED_PART: &str = "(not in the config)";

/// The paths of a snapshot (`snapshot_paths`) that no part covers, neither itself nor
/// through a parent, dumps aside: what today's config would not restore.
pub fn uncovered(snapshot_paths: &[String], parts: &[Part]) -> Vec<String> {
    let dumps = Path::new(crate::sources::DUMP_ROOT);
    snapshot_paths
        .iter()
        .filter(|p| {
            let p = Path::new(p.as_str());
            !p.starts_with(dumps)
                && !parts
                    .iter()
                    .flat_map(|part| &part.paths)
                    .any(|q| p.starts_with(q))
        })
        .cloned()
        .collect()
}

/// One part of the plan restored by one child `cairn restore`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The source's name, or [`PLAN_PART`].
    pub name: String,
    /// Its paths as backed up (absolute).
    pub paths: Vec<PathBuf>,
}

/// The parts of `plan`, in the plan's source order, the plan's own paths last. A path
/// listed by two sources belongs to the first; a source whose paths all belong to
/// earlier ones is left out.
pub fn parts(config: &Config, plan: &Plan) -> Vec<Part> {
    let mut out: Vec<Part> = Vec::new();
    let mut claimed: Vec<PathBuf> = Vec::new();
    for name in &plan.sources {
        let Some(src) = config.sources.get(name) else {
            continue;
        };
        let paths: Vec<PathBuf> = src
            .paths
            .iter()
            .filter(|p| !claimed.contains(p))
            .cloned()
            .collect();
        claimed.extend(paths.iter().cloned());
        if !paths.is_empty() {
            out.push(Part {
                name: name.clone(),
                paths,
            });
        }
    }
    let own: Vec<PathBuf> = plan
        .paths
        .iter()
        .filter(|p| !claimed.iter().any(|c| p.starts_with(c)))
        .cloned()
        .collect();
    if !own.is_empty() {
        out.push(Part {
            name: PLAN_PART.into(),
            paths: own,
        });
    }
    out
}

/// The paths of the other parts that `part`'s restore must leave out: every one that is
/// not `part`'s own path nor above one of them (those below are restored by their part;
/// those beside never match anyway, but a user's `--include` pattern could reach them).
pub fn excludes(part: &Part, all: &[Part]) -> Vec<PathBuf> {
    all.iter()
        .filter(|o| o.name != part.name)
        .flat_map(|o| o.paths.iter())
        .filter(|x| !part.paths.iter().any(|p| p.starts_with(x)))
        .cloned()
        .collect()
}

/// `path` as a restore pattern matching exactly it (and what is below it): the pattern
/// characters `\ * ? [ ]` escaped.
pub fn literal(path: &Path) -> String {
    let s = path.display().to_string();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '*' | '?' | '[' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Where a path of the snapshot lands below `target`.
pub fn landing(target: &Path, path: &Path) -> PathBuf {
    target.join(path.strip_prefix("/").unwrap_or(path))
}

/// The SQLite databases of `plan` that `part` restores: under one of its paths and not
/// under a path of another part nested in it.
pub fn sqlite_of(plan: &Plan, part: &Part, all: &[Part]) -> Vec<PathBuf> {
    let nested = excludes(part, all);
    plan.sqlite
        .iter()
        .filter(|db| part.paths.iter().any(|p| db.starts_with(p)))
        .filter(|db| !nested.iter().any(|n| db.starts_with(n)))
        .cloned()
        .collect()
}

/// The files SQLite keeps beside database `db` (write-ahead log, shared memory,
/// rollback journal): stale once the database itself was replaced.
pub fn sqlite_companions(db: &Path) -> Vec<PathBuf> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|s| {
            let mut p = db.as_os_str().to_owned();
            p.push(s);
            PathBuf::from(p)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, paths: &[&str]) -> Part {
        Part {
            name: name.into(),
            paths: paths.iter().map(PathBuf::from).collect(),
        }
    }

    #[test]
    fn nested_parts_exclude_each_other_from_the_outside_in() {
        let all = vec![
            part("db", &["/srv/app/db"]),
            part("web", &["/etc/nginx"]),
            part(PLAN_PART, &["/srv/app"]),
        ];
        // The plan's /srv/app leaves /srv/app/db to its source.
        let x = excludes(&all[2], &all);
        assert!(x.contains(&PathBuf::from("/srv/app/db")), "{x:?}");
        // The source never excludes the directory it lives in.
        let x = excludes(&all[0], &all);
        assert!(!x.contains(&PathBuf::from("/srv/app")), "{x:?}");
        assert!(x.contains(&PathBuf::from("/etc/nginx")), "{x:?}");
    }

    #[test]
    fn literal_paths_escape_pattern_characters() {
        assert_eq!(literal(Path::new("/a/b c")), "/a/b c");
        assert_eq!(literal(Path::new("/a/[x]*?\\")), "/a/\\[x\\]\\*\\?\\\\");
        let set =
            cairn_repo::exclude::PatternSet::new(&[literal(Path::new("/d/[1]*"))], false).unwrap();
        assert!(set.matches("/d/[1]*/file"));
        assert!(!set.matches("/d/1x"));
    }

    #[test]
    fn paths_land_under_the_target_and_companions_sit_beside_the_db() {
        assert_eq!(
            landing(Path::new("/mnt/r"), Path::new("/var/lib/x")),
            PathBuf::from("/mnt/r/var/lib/x")
        );
        assert_eq!(
            landing(Path::new("/"), Path::new("/var/lib/x")),
            PathBuf::from("/var/lib/x")
        );
        assert_eq!(
            sqlite_companions(Path::new("/d/h.db")),
            vec![
                PathBuf::from("/d/h.db-wal"),
                PathBuf::from("/d/h.db-shm"),
                PathBuf::from("/d/h.db-journal")
            ]
        );
    }

    #[test]
    fn snapshot_paths_of_no_part_are_uncovered() {
        let parts = vec![Part {
            name: "a".into(),
            paths: vec![PathBuf::from("/srv/a"), PathBuf::from("/etc/x")],
        }];
        let snap: Vec<String> = [
            "/srv/a",
            "/srv/a/sub",
            "/srv/b",
            "/etc",
            "/.cairn/dumps/db/x.sql",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(uncovered(&snap, &parts), ["/srv/b", "/etc"]);
        assert!(uncovered(&snap[..2], &parts).is_empty());
    }
}
