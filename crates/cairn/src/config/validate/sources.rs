//! Sources and the parts plans share with them: paths, filters, hooks, snapshot kinds,
//! schedules.

use super::{At, Validator};
use crate::config::model::*;
use crate::config::{closest, raw};
use crate::schedule::Schedule;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

impl Validator<'_> {
    pub(super) fn absolute_paths(
        &mut self,
        f: usize,
        what: &str,
        paths: &[Spanned<String>],
    ) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for p in paths {
            let s = p.get_ref();
            let path = if let Some(rest) = s.strip_prefix("~/") {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(rest))
            } else {
                Some(PathBuf::from(s))
            };
            match path {
                Some(path) if path.is_absolute() => {
                    if !self.opts.offline && std::fs::symlink_metadata(&path).is_err() {
                        self.warn(f, p, format!("{what}: {} does not exist on this machine", path.display()), Some("a run fails with `source missing` until it exists".into()));
                    }
                    out.push(path);
                }
                _ => self.error(f, p, format!("{what}: path {s:?} is not absolute"), Some("write the full path, e.g. \"/var/lib/hass\" (a plan may run from any directory)".into())),
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn filter(
        &mut self,
        f: usize,
        exclude: &[String],
        iexclude: &[String],
        exclude_file: &[Spanned<String>],
        exclude_if_present: &[String],
        exclude_caches: bool,
        exclude_larger_than: &Option<Spanned<String>>,
        one_file_system: bool,
    ) -> Filter {
        let mut files = Vec::new();
        for e in exclude_file {
            let p = self.path(f, e.get_ref());
            if !self.opts.offline && std::fs::read_to_string(&p).is_err() {
                self.error(
                    f,
                    e,
                    format!("cannot read exclude file {}", p.display()),
                    Some("create it or fix the path".into()),
                );
            }
            files.push(p);
        }
        for pat in exclude.iter().chain(iexclude) {
            if let Err(e) = cairn_repo::exclude::Pattern::parse(pat) {
                let d = self.texts[f].whole(format!("exclude pattern {pat:?}: {e}"), None);
                self.problems.push(d);
            }
        }
        if let Some(s) = exclude_larger_than {
            if cairn_repo::exclude::parse_size(s.get_ref()).is_err() {
                self.error(
                    f,
                    s,
                    format!("exclude-larger-than {:?} is not a size", s.get_ref()),
                    Some("e.g. \"500K\", \"20M\", \"2G\"".into()),
                );
            }
        }
        Filter {
            exclude: exclude.to_vec(),
            iexclude: iexclude.to_vec(),
            exclude_file: files,
            exclude_if_present: exclude_if_present.to_vec(),
            exclude_caches,
            exclude_larger_than: exclude_larger_than.as_ref().map(|s| s.get_ref().clone()),
            one_file_system,
        }
    }

    /// A duration longer than zero, or an error at `at` naming `what`.
    pub(super) fn positive_duration(
        &mut self,
        f: usize,
        at: &Spanned<String>,
        what: &str,
        example: &str,
    ) -> Option<Duration> {
        match parse_duration(at.get_ref()) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.error(
                    f,
                    at,
                    format!("{what} must be longer than 0s"),
                    Some(format!("e.g. {example}")),
                );
                None
            }
            Err(e) => {
                self.error(
                    f,
                    at,
                    format!("{what}: {e}"),
                    Some(format!("e.g. {example}")),
                );
                None
            }
        }
    }

    pub(super) fn hooks(&mut self, f: usize, h: &Option<raw::Hooks>) -> Hooks {
        let Some(h) = h else { return Hooks::default() };
        let timeout = h
            .timeout
            .as_ref()
            .and_then(|t| self.positive_duration(f, t, "hooks.timeout", "\"90s\", \"5m\", \"1h\""))
            .unwrap_or(Duration::from_secs(300));
        Hooks {
            before: h.before.clone(),
            after: h.after.clone(),
            success: h.success.clone(),
            failure: h.failure.clone(),
            finally: h.finally.clone(),
            before_restore: h.before_restore.clone(),
            after_restore: h.after_restore.clone(),
            timeout,
        }
    }

    pub(super) fn source(&mut self, name: &str, at: &At<raw::Source>) -> Option<Source> {
        let f = at.file;
        let s = at.value.get_ref();
        let before = self.errors();
        if s.paths.is_empty() && s.sqlite.is_empty() && s.postgres.is_none() && s.mysql.is_none() {
            self.error(
                f,
                at.value,
                format!("source `{name}` has no paths"),
                Some("add paths = [\"/var/lib/...\"]".into()),
            );
        }
        let mut paths = self.absolute_paths(f, &format!("source `{name}`"), &s.paths);
        let sqlite = self.absolute_paths(f, &format!("source `{name}`: sqlite"), &s.sqlite);
        for db in &sqlite {
            if !paths.iter().any(|p| db.starts_with(p)) {
                paths.push(db.clone());
            }
        }
        let filter = self.filter(
            f,
            &s.exclude,
            &s.iexclude,
            &s.exclude_file,
            &s.exclude_if_present,
            s.exclude_caches,
            &s.exclude_larger_than,
            s.one_file_system,
        );
        let hooks = self.hooks(f, &s.hooks);
        let snapshot = self.snapshot_kind(f, &format!("source `{name}`"), &s.snapshot);
        let mut dumps = Vec::new();
        if let Some(pg) = &s.postgres {
            dumps.extend(crate::sources::postgres_dumps(name, pg));
        }
        if let Some(my) = &s.mysql {
            dumps.extend(crate::sources::mysql_dumps(name, my));
        }
        if self.errors() > before {
            return None;
        }
        Some(Source {
            snapshot,
            dumps,
            name: name.to_string(),
            paths,
            filter,
            tags: s.tags.clone(),
            hooks,
            sqlite,
            defined_in: self.texts[f].path.clone(),
        })
    }

    pub(super) fn snapshot_kind(
        &mut self,
        f: usize,
        what: &str,
        s: &Option<raw::Snapshot>,
    ) -> Option<crate::sources::SnapshotKind> {
        let k = &s.as_ref()?.kind;
        match k.get_ref().as_str() {
            "btrfs" => Some(crate::sources::SnapshotKind::Btrfs),
            "zfs" => Some(crate::sources::SnapshotKind::Zfs),
            "lvm" => Some(crate::sources::SnapshotKind::Lvm),
            other => {
                let help = closest(other, ["btrfs", "zfs", "lvm"])
                    .map(|c| format!("did you mean \"{c}\"?"))
                    .unwrap_or_else(|| "use \"btrfs\", \"zfs\" or \"lvm\"".into());
                self.error(
                    f,
                    k,
                    format!("{what}: unknown snapshot kind {other:?}"),
                    Some(help),
                );
                None
            }
        }
    }

    pub(super) fn schedule(
        &mut self,
        f: usize,
        what: &str,
        s: &Spanned<String>,
    ) -> Option<Schedule> {
        match Schedule::parse(s.get_ref()) {
            Ok(s) => Some(s),
            Err(e) => {
                self.error(f, s, format!("{what}: {e}"), Some("examples: \"daily\", \"03:00\", \"Mon..Fri 02:30\", \"Sun 04:00\", \"*-*-01 05:00\", cron \"30 2 * * 1-5\"".into()));
                None
            }
        }
    }

    pub(super) fn when(
        &mut self,
        f: usize,
        what: &str,
        s: &Option<Spanned<String>>,
        default: &str,
    ) -> Option<When> {
        match s {
            Some(v) if v.get_ref() == "always" => Some(When::Always),
            Some(v) => self.schedule(f, what, v).map(When::Schedule),
            None => Schedule::parse(default).ok().map(When::Schedule),
        }
    }
}
