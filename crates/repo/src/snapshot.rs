//! Snapshots: the JSON restic stores under `snapshots/`, and finding them by id prefix,
//! `latest`, host, paths and tags.

use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repository::Repository;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One snapshot, with restic's field names and omissions.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Snapshot {
    #[serde(with = "crate::gotime::serde_go")]
    pub time: DateTime<FixedOffset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    pub tree: Id,
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uid: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub program_version: String,
    /// The snapshot's own id (its file name); not part of the JSON.
    #[serde(skip)]
    pub id: Id,
}

/// Which snapshots a command is about.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub hosts: Vec<String>,
    pub paths: Vec<String>,
    /// Each entry is a comma-separated set of tags that must all be present; any entry matches.
    pub tags: Vec<String>,
}

impl Filter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        if !self.hosts.is_empty() && !self.hosts.contains(&s.hostname) {
            return false;
        }
        if !self.paths.is_empty() {
            let mut want: Vec<&str> = self.paths.iter().map(|p| p.trim_end_matches('/')).collect();
            let mut have: Vec<&str> = s.paths.iter().map(|p| p.as_str()).collect();
            want.sort_unstable();
            have.sort_unstable();
            if want != have {
                return false;
            }
        }
        if !self.tags.is_empty() {
            let any = self.tags.iter().any(|set| {
                set.split(',')
                    .filter(|t| !t.is_empty())
                    .all(|t| s.tags.iter().any(|have| have == t))
            });
            if !any {
                return false;
            }
        }
        true
    }
}

impl Snapshot {
    pub fn save(&mut self, repo: &Repository) -> Result<Id> {
        let id = repo.save_json(FileType::Snapshot, self)?;
        self.id = id;
        Ok(id)
    }

    pub fn load(repo: &Repository, id: &Id) -> Result<Snapshot> {
        let mut s: Snapshot = repo.load_json(FileType::Snapshot, id)?;
        s.id = *id;
        Ok(s)
    }

    /// All snapshots, oldest first.
    pub fn load_all(repo: &Repository) -> Result<Vec<Snapshot>> {
        let ids = repo.list_ids(FileType::Snapshot)?;
        let mut all = crate::parallel::map(ids, 4, |id| Snapshot::load(repo, &id))?;
        all.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    /// Resolves `latest` (newest matching the filter) or an id prefix.
    pub fn find(repo: &Repository, spec: &str, filter: &Filter) -> Result<Snapshot> {
        if spec == "latest" {
            let all = Snapshot::load_all(repo)?;
            return all
                .into_iter()
                .rev()
                .find(|s| filter.matches(s))
                .ok_or_else(|| {
                    Error::not_found("no snapshot matches (repository empty or filter too narrow)")
                });
        }
        if spec.is_empty() || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!(
                "{spec:?} is not a snapshot id: give an id (prefix) from `cairn snapshots` or `latest`"
            )));
        }
        let id = repo
            .find_id(FileType::Snapshot, spec)
            .map_err(|e| e.context(format!("snapshot {spec}")))?;
        Snapshot::load(repo, &id).map_err(|e| {
            if e.kind() == crate::Kind::NotFound {
                Error::not_found(format!("snapshot {spec} not found"))
            } else {
                e
            }
        })
    }
}
