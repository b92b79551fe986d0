//! Plans: a repository, sources resolved by name or pattern, schedule, retention, check,
//! copy, restore test, hooks and notifications.

use super::{At, Validator};
use crate::config::model::*;
use crate::config::{closest, raw};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use toml::Spanned;

impl Validator<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn plan(
        &mut self,
        name: &str,
        at: &At<raw::Plan>,
        repos: &BTreeMap<String, At<raw::Repository>>,
        sources: &BTreeMap<String, At<raw::Source>>,
        sources_ok: &BTreeMap<String, Source>,
        settings: &Settings,
    ) -> Option<Plan> {
        let f = at.file;
        let p = at.value.get_ref();
        let before = self.errors();
        let repo = p.repository.get_ref();
        if !repos.contains_key(repo) {
            let help = match closest(repo, repos.keys().map(String::as_str)) {
                Some(c) => format!("did you mean `{c}`?"),
                None if repos.is_empty() => {
                    "define it: [repositories.NAME] with url and a password source".into()
                }
                None => format!(
                    "defined repositories: {}",
                    repos.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            };
            self.error(
                f,
                &p.repository,
                format!("plan `{name}`: unknown repository `{repo}`"),
                Some(help),
            );
        }
        let mut chosen: Vec<String> = Vec::new();
        for s in &p.sources {
            let pat = s.get_ref();
            let matched: Vec<&String> = if let Some(prefix) = pat.strip_suffix('*') {
                sources.keys().filter(|k| k.starts_with(prefix)).collect()
            } else {
                sources.keys().filter(|k| *k == pat).collect()
            };
            if matched.is_empty() {
                let help = match closest(pat, sources.keys().map(String::as_str)) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None if sources.is_empty() => {
                        "no sources are defined: add [sources.NAME] with paths".into()
                    }
                    None => format!(
                        "defined sources: {}",
                        sources.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                };
                self.error(
                    f,
                    s,
                    format!("plan `{name}`: no source matches `{pat}`"),
                    Some(help),
                );
            }
            for m in matched {
                if !chosen.contains(m) {
                    chosen.push(m.clone());
                }
            }
        }
        if p.sources.is_empty() && p.paths.is_empty() {
            self.error(
                f,
                at.value,
                format!("plan `{name}` backs up nothing"),
                Some("add sources = [\"NAME\"] and/or paths = [\"/path\"]".into()),
            );
        }
        let own_paths = self.absolute_paths(f, &format!("plan `{name}`"), &p.paths);
        let own_filter = self.filter(
            f,
            &p.exclude,
            &p.iexclude,
            &p.exclude_file,
            &p.exclude_if_present,
            p.exclude_caches,
            &p.exclude_larger_than,
            p.one_file_system,
        );
        let schedule = p
            .schedule
            .as_ref()
            .and_then(|s| self.schedule(f, &format!("plan `{name}`: schedule"), s));
        let retention = p
            .retention
            .as_ref()
            .and_then(|r| self.retention(f, name, at.value, r));
        let prune = if retention.is_some() {
            self.when(f, &format!("plan `{name}`: prune"), &p.prune, "weekly")
        } else {
            if let Some(pr) = &p.prune {
                self.error(
                    f,
                    pr,
                    format!("plan `{name}`: prune without retention"),
                    Some(
                        "prune reclaims what retention forgets: add [plans.NAME.retention]".into(),
                    ),
                );
            }
            None
        };
        let checks = self.checks(f, name, p.check.as_ref());
        let mut copy_to = Vec::new();
        for c in &p.copy_to {
            let dest = c.get_ref();
            if dest == repo {
                self.error(
                    f,
                    c,
                    format!("plan `{name}`: copy-to its own repository `{dest}`"),
                    Some("copy-to names another repository, e.g. an offsite one".into()),
                );
            } else if !repos.contains_key(dest) {
                let help = closest(dest, repos.keys().map(String::as_str))
                    .map(|c| format!("did you mean `{c}`?"));
                self.error(
                    f,
                    c,
                    format!("plan `{name}`: copy-to unknown repository `{dest}`"),
                    help,
                );
            } else if !copy_to.contains(dest) {
                copy_to.push(dest.clone());
            }
        }
        let restore_test = p.restore_test.as_ref().and_then(|rt| {
            let when = self.when(
                f,
                &format!("plan `{name}`: restore-test.schedule"),
                &rt.schedule,
                "monthly",
            )?;
            let label = format!("plan `{name}`: restore-test");
            let mode = match rt.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
                None | Some((_, "sample")) => RestoreTestMode::Sample,
                Some((_, "full")) => RestoreTestMode::Full,
                Some((m, other)) => {
                    self.error(
                        f,
                        m,
                        format!("{label}: mode {other:?} is not a restore-test mode"),
                        Some("use \"sample\" (random files) or \"full\" (the whole snapshot)".into()),
                    );
                    return None;
                }
            };
            let timeout = match &rt.timeout {
                None => std::time::Duration::from_secs(3600),
                Some(t) => self.positive_duration(f, t, &format!("{label}.timeout"), "\"10m\" or \"2h\"")?,
            };
            let max_age = match &rt.max_age {
                None => None,
                Some(m) => Some(self.positive_duration(f, m, &format!("{label}.max-age"), "\"35d\"")?),
            };
            if rt.verify_dumps && !chosen.iter().any(|c| {
                    sources.get(c).is_some_and(|s| {
                        let s = s.value.get_ref();
                        s.postgres.is_some() || s.mysql.is_some()
                    })
                }) {
                self.error(
                    f,
                    at.value,
                    format!("{label}: verify-dumps, but no source of the plan dumps a database"),
                    Some("add postgres = { ... } or mysql = { ... } to a source of the plan, or drop verify-dumps".into()),
                );
            }
            Some(RestoreTestPolicy {
                when,
                mode,
                files: rt.files.unwrap_or(20).max(1),
                command: rt.command.clone().filter(|c| !c.trim().is_empty()),
                timeout,
                verify_dumps: rt.verify_dumps,
                max_age,
            })
        });
        let nice = p.nice.as_ref().and_then(|n| {
            if (-20..=19).contains(n.get_ref()) {
                Some(*n.get_ref())
            } else {
                self.error(
                    f,
                    n,
                    format!("plan `{name}`: nice {} is out of range", n.get_ref()),
                    Some("use -20 (highest priority) to 19 (lowest)".into()),
                );
                None
            }
        });
        let ionice = p.ionice.as_ref().and_then(|io| match io.get_ref().as_str() {
            "idle" => Some(Ionice::Idle),
            "best-effort" => Some(Ionice::BestEffort(4)),
            s => match s.strip_prefix("best-effort:").and_then(|l| l.parse::<u8>().ok()) {
                Some(l) if l <= 7 => Some(Ionice::BestEffort(l)),
                _ => {
                    self.error(f, io, format!("plan `{name}`: ionice {s:?} is not an I/O class"), Some("use \"idle\", \"best-effort\" or \"best-effort:0\"..\"best-effort:7\"".into()));
                    None
                }
            },
        });
        let max_age = p.max_age.as_ref().and_then(|m| {
            self.positive_duration(
                f,
                m,
                &format!("plan `{name}`: max-age"),
                "\"26h\" or \"8d\"",
            )
        });
        self.tag_placeholders(f, &format!("plan `{name}`"), at.value, &p.tags);
        for c in &chosen {
            if let Some(s) = sources.get(c) {
                let tags = &s.value.get_ref().tags;
                self.tag_placeholders(s.file, &format!("source `{c}`"), s.value, tags);
            }
        }
        let plan_hooks = self.hooks(f, &p.hooks);
        let plan_snapshot = self.snapshot_kind(f, &format!("plan `{name}`"), &p.snapshot);
        let notify = match &p.notify {
            Some(n) => self.notify(f, n),
            None => settings.notify.clone(),
        };
        if self.errors() > before || chosen.iter().any(|c| !sources_ok.contains_key(c)) {
            return None;
        }
        // Assemble: the sources' paths, excludes scoped to them, tags and hooks.
        let mut paths: Vec<PathBuf> = own_paths;
        let mut sqlite: Vec<PathBuf> = Vec::new();
        let mut dumps: Vec<crate::sources::Dump> = Vec::new();
        let mut snapshots: Vec<(PathBuf, crate::sources::SnapshotKind)> = match plan_snapshot {
            Some(k) => paths.iter().map(|p| (p.clone(), k)).collect(),
            None => Vec::new(),
        };
        let mut filter = own_filter;
        let mut tags = p.tags.clone();
        let mut hooks = vec![(format!("plan {name}"), plan_hooks)];
        for s in chosen.iter().filter_map(|c| sources_ok.get(c)) {
            paths.extend(s.paths.iter().cloned());
            sqlite.extend(s.sqlite.iter().cloned());
            dumps.extend(s.dumps.iter().cloned());
            if let Some(k) = s.snapshot {
                snapshots.extend(s.paths.iter().map(|p| (p.clone(), k)));
            }
            for pat in &s.filter.exclude {
                filter.exclude.extend(scope(pat, &s.paths));
            }
            for pat in &s.filter.iexclude {
                filter.iexclude.extend(scope(pat, &s.paths));
            }
            filter
                .exclude_file
                .extend(s.filter.exclude_file.iter().cloned());
            filter
                .exclude_if_present
                .extend(s.filter.exclude_if_present.iter().cloned());
            filter.exclude_caches |= s.filter.exclude_caches;
            filter.one_file_system |= s.filter.one_file_system;
            if filter.exclude_larger_than.is_none() {
                filter.exclude_larger_than = s.filter.exclude_larger_than.clone();
            }
            tags.extend(s.tags.iter().cloned());
            if !s.hooks.is_empty() {
                hooks.push((format!("source {}", s.name), s.hooks.clone()));
            }
        }
        paths.sort();
        paths.dedup();
        sqlite.sort();
        sqlite.dedup();
        dedup_keep_order(&mut tags);
        dedup_keep_order(&mut filter.exclude_if_present);
        Some(Plan {
            name: name.to_string(),
            repository: repo.clone(),
            sources: chosen,
            paths,
            sqlite,
            snapshots,
            dumps,
            filter,
            schedule,
            retention,
            prune,
            checks,
            copy_to,
            restore_test,
            tags,
            host: p.host.clone().or_else(|| settings.host.clone()),
            nice,
            ionice,
            limit_upload: p.limit_upload,
            limit_download: p.limit_download,
            hooks,
            notify,
            max_age,
            defined_in: self.texts[f].path.clone(),
        })
    }

    /// The plan's check policies: one table (`#1`) or an array of them. Errors name the
    /// policy and key; two policies alike (same schedule, same reading) get a warning.
    fn checks(&mut self, f: usize, plan: &str, c: Option<&raw::Checks>) -> Vec<CheckPolicy> {
        let Some(c) = c else {
            return Vec::new();
        };
        let several = matches!(c, raw::Checks::Several(_));
        let mut out = Vec::new();
        // (id, schedule text, reading) of the policies seen, for duplicates.
        let mut seen: Vec<(String, String, Option<String>)> = Vec::new();
        for (i, c) in c.policies().iter().enumerate() {
            let key = if several {
                format!("check #{}", i + 1)
            } else {
                "check".to_string()
            };
            let id = match &c.name {
                Some(n) if !super::valid_name(n.get_ref()) => {
                    self.error(
                        f,
                        n,
                        format!(
                            "plan `{plan}`: {key}: name {:?} is not a valid name",
                            n.get_ref()
                        ),
                        Some("letters, digits, `-` and `_`, at most 64".into()),
                    );
                    continue;
                }
                Some(n) if seen.iter().any(|(id, ..)| id == n.get_ref()) => {
                    self.error(
                        f,
                        n,
                        format!(
                            "plan `{plan}`: two check policies are named `{}`",
                            n.get_ref()
                        ),
                        Some(
                            "each policy's name is its identity in the history: make them differ"
                                .into(),
                        ),
                    );
                    continue;
                }
                Some(n) => n.get_ref().clone(),
                None => format!("#{}", i + 1),
            };
            let Some(when) = self.when(
                f,
                &format!("plan `{plan}`: {key}: schedule"),
                &c.schedule,
                "weekly",
            ) else {
                continue;
            };
            let (read_data, rotate) = match &c.read_data_subset {
                None => (None, None),
                Some(s) => match parse_read_data(s.get_ref()) {
                    Ok(r) => r,
                    Err(e) => {
                        self.error(
                            f,
                            s,
                            format!("plan `{plan}`: {key}: read-data-subset {:?}: {e}", s.get_ref()),
                            Some("\"5%\" (random each time), \"1/4\" (a quarter per run, rotating) or \"all\"".into()),
                        );
                        continue;
                    }
                },
            };
            let schedule = c
                .schedule
                .as_ref()
                .map_or("weekly", |s| s.get_ref().as_str())
                .to_string();
            if let Some((other, ..)) = seen
                .iter()
                .find(|(_, sch, rd)| *sch == schedule && *rd == read_data)
            {
                let what = read_data
                    .as_deref()
                    .map_or("no data".to_string(), |r| format!("{r:?}"));
                let msg = format!("plan `{plan}`: {key} repeats policy {other}: both read {what} on schedule {schedule:?}");
                let help = Some("one of them is enough: remove it or change its schedule".into());
                match c.read_data_subset.as_ref().or(c.schedule.as_ref()) {
                    Some(s) => self.warn(f, s, msg, help),
                    None => {
                        let mut d = self.texts[f].whole(msg, help);
                        d.warning = true;
                        self.problems.push(d);
                    }
                }
            }
            seen.push((id.clone(), schedule, read_data.clone()));
            out.push(CheckPolicy {
                id,
                when,
                read_data,
                rotate,
            });
        }
        out
    }

    /// Tags of `whose` (at `at`): their date placeholders must be known ones.
    fn tag_placeholders<T>(&mut self, f: usize, whose: &str, at: &Spanned<T>, tags: &[String]) {
        let now = chrono::Local::now();
        for t in tags {
            if let Err(bad) = expand_tag(t, &now) {
                self.error(
                    f,
                    at,
                    format!("{whose}: tags: {t:?} has the unknown placeholder `{bad}`"),
                    Some(format!(
                        "tags take the date placeholders {} (expanded when the run starts) and `%%` for a `%`",
                        TAG_PLACEHOLDERS.join(" ")
                    )),
                );
            }
        }
    }

    fn retention(
        &mut self,
        f: usize,
        plan: &str,
        at: &Spanned<raw::Plan>,
        r: &raw::Retention,
    ) -> Option<Retention> {
        let counts = [
            r.keep_last,
            r.keep_hourly,
            r.keep_daily,
            r.keep_weekly,
            r.keep_monthly,
            r.keep_yearly,
        ];
        if counts.iter().all(Option::is_none) && r.keep_within.is_none() && r.keep_tag.is_empty() {
            self.error(f, at, format!("plan `{plan}`: retention keeps nothing"), Some("add e.g. keep-daily = 7, keep-weekly = 4, keep-monthly = 6 (or remove [retention] to keep every snapshot)".into()));
            return None;
        }
        if let Some(w) = &r.keep_within {
            if let Err(e) = cairn_repo::forget::Duration::parse(w.get_ref()) {
                self.error(
                    f,
                    w,
                    format!("plan `{plan}`: keep-within: {e}"),
                    Some("numbers with y, m, d, h: \"30d\", \"1y6m\", \"2d12h\"".into()),
                );
                return None;
            }
        }
        // Counts: -1 keeps all (restic >= 0.16), stored as "unlimited" (u32::MAX).
        let mut bad_count = None;
        let mut count = |key: &'static str, v: Option<i64>| match v {
            None => None,
            Some(-1) => Some(u32::MAX),
            Some(n) => match u32::try_from(n).ok().filter(|&n| n < u32::MAX) {
                Some(n) => Some(n),
                None => {
                    bad_count.get_or_insert((key, n));
                    None
                }
            },
        };
        let counts = [
            count("keep-last", r.keep_last),
            count("keep-hourly", r.keep_hourly),
            count("keep-daily", r.keep_daily),
            count("keep-weekly", r.keep_weekly),
            count("keep-monthly", r.keep_monthly),
            count("keep-yearly", r.keep_yearly),
        ];
        if let Some((key, n)) = bad_count {
            self.error(
                f,
                at,
                format!("plan `{plan}`: retention {key} = {n} is not a count"),
                Some(format!(
                    "a number from 0 to {}, or -1 to keep all",
                    u32::MAX - 1
                )),
            );
            return None;
        }
        if let Some(g) = &r.group_by {
            if g.split(',')
                .any(|p| !["", "host", "paths", "tags"].contains(&p.trim()))
            {
                let d = self.texts[f].whole(
                    format!("plan `{plan}`: group-by {g:?}"),
                    Some("a comma-separated subset of host, paths, tags".into()),
                );
                self.problems.push(d);
                return None;
            }
        }
        for t in r.keep_tag.iter().filter(|t| t.contains('%')) {
            self.warn(
                f,
                at,
                format!("plan `{plan}`: keep-tag {t:?} is matched literally"),
                Some("placeholders are expanded in a plan's tags only: keep-tag names a tag as it is in the snapshots (e.g. \"2026-12\")".into()),
            );
        }
        let [keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly] = counts;
        Some(Retention {
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            keep_within: r.keep_within.as_ref().map(|w| w.get_ref().clone()),
            keep_tag: r.keep_tag.clone(),
            group_by: r.group_by.clone(),
        })
    }
}

/// A source's exclude pattern, applied to that source only: absolute patterns as they
/// are; a relative one (which restic matches at any depth) below each of its paths.
fn scope(pattern: &str, paths: &[PathBuf]) -> Vec<String> {
    let (neg, pat) = match pattern.strip_prefix('!') {
        Some(p) => ("!", p),
        None => ("", pattern),
    };
    if pat.starts_with('/') {
        return vec![pattern.to_string()];
    }
    paths
        .iter()
        .map(|p| {
            format!(
                "{neg}{}/**/{pat}",
                p.display().to_string().trim_end_matches('/')
            )
        })
        .collect()
}

/// What a check reads (the child's `--read-data-subset` value, "all" for `--read-data`)
/// and, for `n/t`, the rotation.
type ReadData = (Option<String>, Option<(u32, u32)>);

/// A check's `read-data-subset`.
fn parse_read_data(s: &str) -> Result<ReadData, String> {
    if s == "all" {
        return Ok((Some("all".into()), None));
    }
    if let Some((n, t)) = s.split_once('/') {
        let num = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("{:?} is not a whole number", v.trim()))
        };
        let (n, t) = (num(n)?, num(t)?);
        if t == 0 {
            return Err("the data cannot be split into 0 groups".into());
        }
        if n == 0 || n > t {
            return Err(format!(
                "there is no group {n} of {t} (groups are 1 to {t})"
            ));
        }
        return Ok((Some(format!("{n}/{t}")), Some((n, t))));
    }
    match cairn_repo::check::ReadData::parse_subset(s) {
        Ok(_) => Ok((Some(s.to_string()), None)),
        Err(_) => Err("not a share of the data".into()),
    }
}

fn dedup_keep_order(v: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    v.retain(|x| seen.insert(x.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_data_subset_forms() {
        assert_eq!(parse_read_data("all").unwrap(), (Some("all".into()), None));
        assert_eq!(parse_read_data("5%").unwrap(), (Some("5%".into()), None));
        assert_eq!(
            parse_read_data("2/4").unwrap(),
            (Some("2/4".into()), Some((2, 4)))
        );
        assert!(parse_read_data("5/4")
            .unwrap_err()
            .contains("no group 5 of 4"));
        assert!(parse_read_data("1/0").unwrap_err().contains("0 groups"));
        assert!(parse_read_data("0/3").is_err());
        assert!(parse_read_data("x/3").unwrap_err().contains("whole number"));
        assert!(parse_read_data("150%").is_err());
        assert!(parse_read_data("lots").is_err());
    }

    #[test]
    fn source_excludes_are_scoped_to_the_source() {
        assert_eq!(
            scope("*.log", &[PathBuf::from("/var/lib/hass")]),
            vec!["/var/lib/hass/**/*.log"]
        );
        assert_eq!(scope("/abs/x", &[PathBuf::from("/a")]), vec!["/abs/x"]);
    }
}
