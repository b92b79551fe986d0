//! What a restore test proved: the history row's detail (`set_detail`) and the log's
//! one-line summary.

use super::dumps::DumpReport;

/// What a restore test proved: its history row's detail, and the log's summary.
#[derive(Debug, Default, serde::Serialize)]
pub(super) struct Proof {
    pub mode: &'static str,
    /// Full id of the snapshot tested.
    pub snapshot: Option<String>,
    pub files_restored: u64,
    pub bytes_restored: u64,
    /// Sample mode: files identical to the live files, and the bytes compared for that.
    pub identical: u64,
    pub compared_bytes: u64,
    /// Sample mode: files whose live version changed since the snapshot (size checked).
    pub changed_since: u64,
    /// SQLite databases that passed `PRAGMA integrity_check`.
    pub sqlite_checked: u64,
    /// The command, its secrets redacted.
    pub command: Option<String>,
    pub command_exit: Option<i32>,
    pub dumps: Vec<DumpReport>,
}

impl Proof {
    /// "restore test (sample): 20 files restored, 17 identical to the live files, ...".
    pub(super) fn summary(&self) -> String {
        let mut parts = vec![match self.mode {
            "full" => format!(
                "{} files restored ({}), all present with their sizes",
                self.files_restored,
                crate::units::format_bytes(self.bytes_restored)
            ),
            _ => format!(
                "{} files restored, {} identical to the live files, {} changed since the snapshot",
                self.files_restored, self.identical, self.changed_since
            ),
        }];
        if self.sqlite_checked > 0 {
            parts.push(format!("{} SQLite database(s) intact", self.sqlite_checked));
        }
        if self.command_exit == Some(0) {
            parts.push("command ok".into());
        }
        if !self.dumps.is_empty() {
            let loaded = self.dumps.iter().filter(|d| d.error.is_none()).count();
            let tables: u64 = self.dumps.iter().map(|d| d.tables).sum();
            parts.push(format!("{loaded} dump(s) loaded ({tables} tables)"));
        }
        format!("restore test ({}): {}", self.mode, parts.join(", "))
    }
}

/// At most the last `lines` lines of `out`, each cut to 200 characters: a command's
/// last words for an error message.
pub(super) fn tail(out: &str, lines: usize) -> String {
    let v: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    v[v.len().saturating_sub(lines)..]
        .iter()
        .map(|l| l.chars().take(200).collect::<String>())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// A list of paths for a message: the first few, and how many more.
pub(super) fn names(paths: &[String]) -> String {
    let mut s = paths.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if paths.len() > 5 {
        s.push_str(&format!(" and {} more", paths.len() - 5));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_what_was_proven() {
        let p = Proof {
            mode: "sample",
            files_restored: 20,
            identical: 17,
            changed_since: 3,
            sqlite_checked: 2,
            command_exit: Some(0),
            dumps: vec![DumpReport {
                path: "/.cairn/dumps/db/postgres-app.sql".into(),
                databases: vec!["app".into()],
                tables: 3,
                error: None,
            }],
            ..Default::default()
        };
        assert_eq!(
            p.summary(),
            "restore test (sample): 20 files restored, 17 identical to the live files, 3 changed since the snapshot, 2 SQLite database(s) intact, command ok, 1 dump(s) loaded (3 tables)"
        );
        assert_eq!(tail("a\n\nb\nc\n", 2), "b / c");
        let many: Vec<String> = (0..7).map(|i| format!("/f{i}")).collect();
        assert_eq!(names(&many), "/f0, /f1, /f2, /f3, /f4 and 2 more");
    }
}
