//! Every host of a repository: the per-host table of `cairn status --repositories` and the
//! web dashboard, for a repository many machines back up into (a fleet, or cairn beside
//! restic). Built from the snapshot list the status already reads; nothing else is loaded
//! (restic's snapshot `summary` is not kept by the engine, so there is no size per host).
//!
//! Host names, tags and paths come from the repository, which may be hostile: the table is
//! bounded ([`MAX_HOSTS`] most recent hosts, [`MAX_PATHS`] paths each) and says how many
//! were left out; [`printable`] makes a name safe for a terminal. HTML escaping is the
//! web's job.

use cairn_repo::snapshot::Snapshot;
use serde::Serialize;
use std::collections::HashMap;

/// How many hosts a repository's table shows (the most recent); the rest are counted.
pub const MAX_HOSTS: usize = 50;

/// How many paths of a host's latest snapshot are shown; the rest are counted.
pub const MAX_PATHS: usize = 10;

/// One host of a repository.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostStatus {
    /// The host name recorded in its snapshots (may be empty: restic allows it).
    pub host: String,
    /// How many snapshots the host has in the repository.
    pub snapshots: u64,
    /// The host's newest snapshot: its time (RFC 3339 as stored) and id (hex).
    pub latest: String,
    pub latest_id: String,
    /// The newest snapshot's paths (at most [`MAX_PATHS`]) and how many more it has.
    pub latest_paths: Vec<String>,
    pub latest_paths_more: u64,
    /// The newest snapshot's tags (at most [`MAX_PATHS`]).
    pub latest_tags: Vec<String>,
}

/// The hosts of `snaps`, most recent first (newest snapshot time, then name), at most
/// `max`; the second value is how many hosts were left out.
pub fn host_table<'a>(
    snaps: impl IntoIterator<Item = &'a Snapshot>,
    max: usize,
) -> (Vec<HostStatus>, u64) {
    let mut by_host: HashMap<&str, (u64, &Snapshot)> = HashMap::new();
    for s in snaps {
        by_host
            .entry(s.hostname.as_str())
            .and_modify(|(n, latest)| {
                *n += 1;
                if (s.time, s.id) > (latest.time, latest.id) {
                    *latest = s;
                }
            })
            .or_insert((1, s));
    }
    let mut rows: Vec<(&str, u64, &Snapshot)> =
        by_host.into_iter().map(|(h, (n, s))| (h, n, s)).collect();
    rows.sort_by(|a, b| b.2.time.cmp(&a.2.time).then_with(|| a.0.cmp(b.0)));
    let more = rows.len().saturating_sub(max) as u64;
    let table = rows
        .into_iter()
        .take(max)
        .map(|(host, n, s)| HostStatus {
            host: host.to_string(),
            snapshots: n,
            latest: s.time.to_rfc3339(),
            latest_id: s.id.to_hex(),
            latest_paths: s.paths.iter().take(MAX_PATHS).cloned().collect(),
            latest_paths_more: s.paths.len().saturating_sub(MAX_PATHS) as u64,
            latest_tags: s.tags.iter().take(MAX_PATHS).cloned().collect(),
        })
        .collect();
    (table, more)
}

/// `s` safe for a terminal: control characters (escape sequences, new lines) shown as
/// `\u{..}` escapes, and at most `max` characters (then `…`). An empty name is `(none)`.
pub fn printable(s: &str, max: usize) -> String {
    if s.is_empty() {
        return "(none)".to_string();
    }
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i >= max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_repo::id::Id;

    fn snap(host: &str, minute: u32, paths: &[&str], seed: u8) -> Snapshot {
        let time =
            chrono::DateTime::parse_from_rfc3339(&format!("2026-12-04T07:{minute:02}:00+00:00"))
                .unwrap();
        let mut s: Snapshot = serde_json::from_value(serde_json::json!({
            "time": "2026-12-04T07:00:00Z",
            "tree": "00".repeat(32),
            "paths": paths,
            "hostname": host,
        }))
        .unwrap();
        s.time = time;
        s.id = Id::parse(&format!("{seed:02x}").repeat(32)).unwrap();
        s
    }

    #[test]
    fn hosts_are_counted_newest_first_with_their_latest_snapshot() {
        let snaps = vec![
            snap("a", 1, &["/old"], 1),
            snap("b", 5, &["/b"], 2),
            snap("a", 9, &["/new", "/also"], 3),
            snap("c", 3, &["/c"], 4),
            snap("", 2, &["/x"], 5),
        ];
        let (t, more) = host_table(&snaps, 10);
        assert_eq!(more, 0);
        let hosts: Vec<(&str, u64)> = t.iter().map(|h| (h.host.as_str(), h.snapshots)).collect();
        assert_eq!(hosts, [("a", 2), ("b", 1), ("c", 1), ("", 1)]);
        assert_eq!(t[0].latest_paths, ["/new", "/also"]);
        assert_eq!(t[0].latest_id, "03".repeat(32));
        assert!(
            t[0].latest.starts_with("2026-12-04T07:09:00"),
            "{}",
            t[0].latest
        );
    }

    #[test]
    fn the_table_is_bounded_and_says_how_many_hosts_and_paths_were_left_out() {
        let many: Vec<String> = (0..25).map(|i| format!("/p{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let snaps: Vec<Snapshot> = (0..60u32)
            .map(|i| snap(&format!("h{i:02}"), i % 60, &many, i as u8))
            .collect();
        let (t, more) = host_table(&snaps, 7);
        assert_eq!((t.len(), more), (7, 53));
        assert_eq!(t[0].host, "h59", "the most recent host first");
        assert_eq!(t[0].latest_paths.len(), MAX_PATHS);
        assert_eq!(t[0].latest_paths_more, 25 - MAX_PATHS as u64);
        let (none, more) = host_table(&Vec::<Snapshot>::new(), 7);
        assert!(none.is_empty() && more == 0);
    }

    #[test]
    fn printable_names_cannot_drive_a_terminal() {
        assert_eq!(printable("box-1", 40), "box-1");
        assert_eq!(printable("", 40), "(none)");
        let p = printable("evil\x1b[2J\nx", 40);
        assert!(!p.chars().any(|c| c.is_control()), "{p:?}");
        assert!(p.starts_with("evil\\u{1b}[2J\\u{a}x"), "{p:?}");
        assert_eq!(printable("abcdef", 3), "abc…");
    }
}
