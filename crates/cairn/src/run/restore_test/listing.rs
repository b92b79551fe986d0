//! What a restore test knows of the snapshot it restores: `cairn ls SNAPSHOT --json` read
//! into the snapshot's id and its nodes, and the random sample of files it restores.

use chrono::Utc;

/// The kinds of node a restore test checks after a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Dir,
    Symlink,
    /// FIFOs, devices, sockets: restored by restic's rules, not checked here.
    Other,
}

/// One node of the snapshot, as `ls --json` printed it.
#[derive(Debug, Clone)]
pub(super) struct Node {
    /// Absolute path in the snapshot (also the live file's path).
    pub path: String,
    pub kind: Kind,
    /// Files only; 0 otherwise.
    pub size: u64,
    /// Recorded modification time: (seconds since the epoch, nanoseconds).
    pub mtime: Option<(i64, u32)>,
}

/// The tested snapshot and everything it holds.
#[derive(Debug, Default)]
pub(super) struct Listing {
    /// Full id of the snapshot (`None`: the plan has no snapshot).
    pub snapshot: Option<String>,
    pub nodes: Vec<Node>,
}

/// Reads `ls --json` output: one JSON object a line, the snapshot first, then nodes.
/// Lines that are not JSON (warnings) are skipped.
pub(super) fn parse(stdout: &str) -> Listing {
    let mut out = Listing::default();
    for v in stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        match v["struct_type"].as_str() {
            Some("snapshot") => out.snapshot = v["id"].as_str().map(str::to_string),
            Some("node") => {
                let Some(path) = v["path"].as_str() else {
                    continue;
                };
                let kind = match v["type"].as_str() {
                    Some("file") => Kind::File,
                    Some("dir") => Kind::Dir,
                    Some("symlink") => Kind::Symlink,
                    _ => Kind::Other,
                };
                let mtime = v["mtime"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| (t.timestamp(), t.timestamp_subsec_nanos()));
                out.nodes.push(Node {
                    path: path.to_string(),
                    kind,
                    size: v["size"].as_u64().unwrap_or(0),
                    mtime,
                });
            }
            _ => {}
        }
    }
    out
}

/// Up to `n` of `pool`, picked at random: a different sample each time (xorshift seeded
/// by the clock), so successive tests cover different files.
pub(super) fn sample<T>(mut pool: Vec<T>, n: usize) -> Vec<T> {
    let mut x = (Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64) | 1;
    let mut out = Vec::with_capacity(n.min(pool.len()));
    while !pool.is_empty() && out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(pool.swap_remove((x % pool.len() as u64) as usize));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ls_json_gives_the_snapshot_id_and_typed_nodes_with_their_mtimes() {
        let out = "{\"time\":\"2026-12-01T03:00:00Z\",\"id\":\"abc123\",\"short_id\":\"abc1\",\"struct_type\":\"snapshot\"}\n\
            {\"name\":\"d\",\"type\":\"dir\",\"path\":\"/d\",\"mtime\":\"2020-09-13T12:26:40.123456789Z\",\"struct_type\":\"node\"}\n\
            {\"name\":\"f\",\"type\":\"file\",\"path\":\"/d/f\",\"size\":42,\"mtime\":\"2020-09-13T14:26:40.5+02:00\",\"struct_type\":\"node\"}\n\
            not json\n\
            {\"name\":\"l\",\"type\":\"symlink\",\"path\":\"/d/l\",\"struct_type\":\"node\"}\n";
        let l = parse(out);
        assert_eq!(l.snapshot.as_deref(), Some("abc123"));
        assert_eq!(l.nodes.len(), 3);
        assert_eq!(l.nodes[0].kind, Kind::Dir);
        assert_eq!(l.nodes[0].mtime, Some((1_600_000_000, 123_456_789)));
        assert_eq!((l.nodes[1].kind, l.nodes[1].size), (Kind::File, 42));
        assert_eq!(l.nodes[1].mtime, Some((1_600_000_000, 500_000_000)));
        assert_eq!((l.nodes[2].kind, l.nodes[2].mtime), (Kind::Symlink, None));
        assert!(parse("").snapshot.is_none());
    }

    #[test]
    fn a_sample_is_distinct_and_bounded() {
        let s = sample((0..100).collect::<Vec<_>>(), 20);
        let mut d = s.clone();
        d.sort();
        d.dedup();
        assert_eq!((s.len(), d.len()), (20, 20));
        assert_eq!(sample(vec![1, 2], 5).len(), 2);
    }
}
