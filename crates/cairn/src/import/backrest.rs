//! Backrest's `config.json` (the `v1.Config` message of its `proto/v1/config.proto`, in
//! protobuf's JSON form): `repos` become repositories (plaintext password and `env`
//! moved to secret files, check policy onto each plan), each of `plans` a `conf.d/`
//! fragment (paths, excludes, schedule, retention, command hooks).
//!
//! Backrest backs up with restic's default host, `--exclude-caches` and the tags
//! `plan:PLAN` and `created-by:INSTANCE`: each plan keeps its id as its name (cairn's plan
//! tag is then the same tag, so its retention covers Backrest's snapshots too), the
//! `created-by` tag and exclude-caches, and the first backup finds Backrest's last
//! snapshot (same host and paths) as its parent.

use super::{add_repo, schedule, Fragment, Hooks, Imported, Obj, Password, Plan, Repo, Report};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use toml::Table;

/// A Backrest `Schedule` as a cairn schedule.
fn sched(v: Option<&Value>, key: &str, rep: &mut Report) -> Option<String> {
    let mut o = Obj::new(key, v, rep);
    let out = if o.bool("disabled", rep) == Some(true) {
        None
    } else if let Some(c) = o.str("cron", rep) {
        schedule(&c, &o.key("cron"), rep)
    } else if let Some(h) = o.int("maxFrequencyHours", rep) {
        let s = match h {
            1 => "hourly".to_string(),
            h if h > 0 && h < 24 && 24 % h == 0 => format!("0 */{h} * * *"),
            24 => "daily".to_string(),
            _ => {
                rep.skip(
                    o.key("maxFrequencyHours"),
                    format!("every {h} hours does not fit a calendar: set a schedule by hand"),
                );
                return None;
            }
        };
        Some(s)
    } else if let Some(d) = o.int("maxFrequencyDays", rep) {
        let s = match d {
            1 => "daily".to_string(),
            7 => "weekly".to_string(),
            d if d > 1 && d < 31 => {
                rep.note(
                    o.key("maxFrequencyDays"),
                    format!("every {d} days became days 1, {}, ... of each month", 1 + d),
                );
                format!("0 0 */{d} * *")
            }
            _ => {
                rep.skip(
                    o.key("maxFrequencyDays"),
                    format!("every {d} days does not fit a calendar: set a schedule by hand"),
                );
                return None;
            }
        };
        Some(s)
    } else {
        None
    };
    o.ignore(&["clock"]);
    o.finish(rep);
    out
}

fn retention(v: Option<&Value>, key: &str, rep: &mut Report) -> Table {
    let mut t = Table::new();
    let mut o = Obj::new(key, v, rep);
    let put = |t: &mut Table, k: &str, n: Option<i64>| {
        if let Some(n) = n.filter(|n| *n != 0) {
            t.insert(k.into(), toml::Value::Integer(n));
        }
    };
    if let Some(n) = o.int("policyKeepLastN", rep) {
        put(&mut t, "keep-last", Some(n));
    }
    if o.bool("policyKeepAll", rep) == Some(true) {
        t.clear();
    }
    let mut b = Obj::new(
        o.key("policyTimeBucketed"),
        o.get("policyTimeBucketed"),
        rep,
    );
    for (k, c) in [
        ("hourly", "keep-hourly"),
        ("daily", "keep-daily"),
        ("weekly", "keep-weekly"),
        ("monthly", "keep-monthly"),
        ("yearly", "keep-yearly"),
    ] {
        let n = b.int(k, rep);
        put(&mut t, c, n);
    }
    if let Some(n) = b.int("keepLastN", rep) {
        put(&mut t, "keep-last", Some(n));
    }
    b.finish(rep);
    // The deprecated flat form of older configs.
    for (k, c) in [
        ("keepLastN", "keep-last"),
        ("keepHourly", "keep-hourly"),
        ("keepDaily", "keep-daily"),
        ("keepWeekly", "keep-weekly"),
        ("keepMonthly", "keep-monthly"),
        ("keepYearly", "keep-yearly"),
    ] {
        let n = o.int(k, rep);
        put(&mut t, c, n);
    }
    if let Some(w) = o.str("keepWithinDuration", rep) {
        if !w.is_empty() {
            t.insert("keep-within".into(), toml::Value::String(w));
        }
    }
    o.skip(
        "maxUnusedLimit",
        "a prune setting cairn does not have (prune repacks what it must)",
        rep,
    );
    o.finish(rep);
    t
}

/// Hooks with command actions; the rest reported.
fn hooks(v: Option<&Value>, key: &str, h: &mut Hooks, rep: &mut Report) {
    let list = match v {
        None | Some(Value::Null) => return,
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            rep.skip(key, "expected a list of hooks");
            return;
        }
    };
    for (i, hv) in list.iter().enumerate() {
        let mut o = Obj::new(format!("{key}[{i}]"), Some(hv), rep);
        let conditions = o.strs("conditions", rep);
        if let Some(e) = o.str("onError", rep) {
            if e != "ON_ERROR_IGNORE" {
                rep.note(
                    o.key("onError"),
                    format!("{e}: in cairn a failing before hook aborts the run, other hooks' failures are logged"),
                );
            }
        }
        let mut cmd = None;
        if let Some(a) = o.get("actionCommand") {
            let mut c = Obj::new(o.key("actionCommand"), Some(a), rep);
            cmd = c.str("command", rep);
            c.finish(rep);
        }
        for k in [
            "actionWebhook",
            "actionDiscord",
            "actionGotify",
            "actionSlack",
            "actionShoutrrr",
            "actionHealthchecks",
            "actionTelegram",
        ] {
            o.skip(
                k,
                "a notification cairn sends differently: [plans.NAME.notify] (healthchecks, ntfy, webhook)",
                rep,
            );
        }
        o.finish(rep);
        let Some(cmd) = cmd else { continue };
        for c in &conditions {
            let dst = match c.as_str() {
                "CONDITION_SNAPSHOT_START" => &mut h.before,
                "CONDITION_SNAPSHOT_END" => &mut h.finally,
                "CONDITION_SNAPSHOT_SUCCESS" => &mut h.success,
                "CONDITION_SNAPSHOT_ERROR" | "CONDITION_ANY_ERROR" => &mut h.failure,
                "CONDITION_SNAPSHOT_WARNING" => {
                    rep.note(
                        format!("{key}[{i}].conditions"),
                        "cairn has no warning hook: runs with unreadable files run the failure hooks",
                    );
                    &mut h.failure
                }
                other => {
                    rep.skip(
                        format!("{key}[{i}].conditions"),
                        format!("{other}: cairn runs hooks around backups only"),
                    );
                    continue;
                }
            };
            if !dst.contains(&cmd) {
                dst.push(cmd.clone());
            }
        }
    }
}

struct RepoExtra {
    name: String,
    check: Table,
    prune: Option<String>,
    hooks: Hooks,
    nice: Option<i64>,
    ionice: Option<String>,
}

/// Reads a Backrest `config.json` from `file`.
pub fn import(text: &str, file: &Path) -> Result<Imported, String> {
    let root: Value = serde_json::from_str(text)
        .map_err(|e| format!("{}: not valid JSON: {e}", file.display()))?;
    let mut imp = Imported {
        tool: "backrest",
        source: file.to_path_buf(),
        ..Default::default()
    };
    let rep = &mut imp.report;
    let mut top = Obj::new("", Some(&root), rep);
    top.ignore(&["modno", "version"]);
    let instance = top.str("instance", rep).filter(|s| !s.is_empty());
    top.skip(
        "auth",
        "Backrest's users have bcrypt hashes; cairn's web UI takes argon2id: add users with `cairn web hash-password`",
        rep,
    );
    top.skip(
        "sync",
        "Backrest multihost sync: cairn's web UI federates daemons with [settings.web] peers",
        rep,
    );
    let mut extras: BTreeMap<String, RepoExtra> = BTreeMap::new();
    let repos = top.list("repos", rep);
    for (i, rv) in repos.iter().enumerate() {
        let mut o = Obj::new(format!("repos[{i}]"), Some(rv), rep);
        let id = o.str("id", rep).unwrap_or_else(|| format!("repo{i}"));
        o.path = format!("repos.{id}");
        let Some(url) = o.str("uri", rep) else {
            rep.skip(o.path.clone(), "no uri: repository left out");
            o.ignore(&[
                "password",
                "env",
                "flags",
                "prunePolicy",
                "checkPolicy",
                "hooks",
                "autoUnlock",
                "commandPrefix",
                "guid",
            ]);
            o.finish(rep);
            continue;
        };
        let mut password = match o.str("password", rep) {
            Some(p) if !p.is_empty() => Password::Inline(p),
            _ => Password::None,
        };
        let mut env = BTreeMap::new();
        for e in o.strs("env", rep) {
            match e.split_once('=') {
                Some((k, v)) => {
                    if v.contains("${") {
                        rep.note(
                            format!("{}.env.{k}", o.path),
                            "refers to another variable (${...}), which Backrest expanded: cairn's env file takes values as written",
                        );
                    }
                    env.insert(k.trim().to_string(), v.to_string());
                }
                None => rep.skip(format!("{}.env", o.path), "an entry is not KEY=VALUE"),
            }
        }
        let mut u = Some(url);
        super::take_restic_env(&mut env, &mut password, &mut u);
        let mut options = BTreeMap::new();
        for f in o.strs("flags", rep) {
            let opt = f
                .strip_prefix("-o ")
                .or_else(|| f.strip_prefix("--option="))
                .or_else(|| f.strip_prefix("--option "))
                .and_then(|kv| kv.split_once('='));
            match opt {
                Some((k, v)) => {
                    options.insert(k.trim().to_string(), v.trim().to_string());
                }
                None => rep.skip(
                    format!("{}.flags", o.path),
                    format!("restic flag {f:?}: cairn has no such repository setting"),
                ),
            }
        }
        let name = add_repo(
            &mut imp.repos,
            Repo {
                name: super::name(&id),
                url: u.unwrap_or_default(),
                password,
                env,
                env_file: None,
                options,
            },
        );
        let mut prune = None;
        let mut check = Table::new();
        {
            let mut p = Obj::new(o.key("prunePolicy"), o.get("prunePolicy"), rep);
            if let Some(s) = sched(p.get("schedule"), &p.key("schedule"), rep) {
                prune = Some(s);
            }
            p.skip(
                "maxUnusedBytes",
                "cairn prunes on its schedule, repacking what it must: no unused-space limit",
                rep,
            );
            p.skip(
                "maxUnusedPercent",
                "cairn prunes on its schedule, repacking what it must: no unused-space limit",
                rep,
            );
            p.skip(
                "maxFrequencyDays",
                "deprecated in Backrest: use a schedule",
                rep,
            );
            p.finish(rep);
            let mut c = Obj::new(o.key("checkPolicy"), o.get("checkPolicy"), rep);
            if let Some(s) = sched(c.get("schedule"), &c.key("schedule"), rep) {
                check.insert("schedule".into(), toml::Value::String(s));
            }
            c.ignore(&["structureOnly"]);
            if let Some(Value::Number(n)) = c.get("readDataSubsetPercent") {
                if let Some(f) = n.as_f64().filter(|f| *f > 0.0) {
                    check.insert(
                        "read-data-subset".into(),
                        toml::Value::String(format!("{f}%")),
                    );
                }
            }
            c.finish(rep);
        }
        let mut h = Hooks::default();
        hooks(o.get("hooks"), &o.key("hooks"), &mut h, rep);
        let (mut nice, mut ionice) = (None, None);
        {
            let mut c = Obj::new(o.key("commandPrefix"), o.get("commandPrefix"), rep);
            match c.str("ioNice", rep).as_deref() {
                Some("IO_IDLE") => ionice = Some("idle".to_string()),
                Some("IO_BEST_EFFORT_LOW") => ionice = Some("best-effort:7".to_string()),
                Some("IO_BEST_EFFORT_HIGH") => ionice = Some("best-effort:0".to_string()),
                _ => {}
            }
            match c.str("cpuNice", rep).as_deref() {
                Some("CPU_LOW") => nice = Some(10),
                Some("CPU_HIGH") => nice = Some(-5),
                _ => {}
            }
            c.finish(rep);
        }
        o.ignore(&["autoUnlock", "guid"]);
        o.finish(rep);
        extras.insert(
            id,
            RepoExtra {
                name,
                check,
                prune,
                hooks: h,
                nice,
                ionice,
            },
        );
    }
    let plans = top.list("plans", rep);
    for (i, pv) in plans.iter().enumerate() {
        let mut o = Obj::new(format!("plans[{i}]"), Some(pv), rep);
        let id = o.str("id", rep).unwrap_or_else(|| format!("plan{i}"));
        o.path = format!("plans.{id}");
        let repo_id = o.str("repo", rep).unwrap_or_default();
        let Some(x) = extras.get(&repo_id) else {
            rep.skip(
                o.path.clone(),
                format!("repository `{repo_id}` is not defined: plan left out"),
            );
            o.ignore(&[
                "disabled",
                "paths",
                "excludes",
                "iexcludes",
                "cron",
                "schedule",
                "retention",
                "hooks",
                "backup_flags",
                "skipIfUnchanged",
            ]);
            o.finish(rep);
            continue;
        };
        let name = super::name(&id);
        if name != id {
            rep.note(
                o.path.clone(),
                format!("plan `{id}` is `{name}` in cairn: its snapshots' tag plan:{id} differs, so retention does not cover Backrest's snapshots"),
            );
        }
        let mut plan = Plan {
            name: name.clone(),
            repository: x.name.clone(),
            check: x.check.clone(),
            prune: x.prune.clone(),
            hooks: x.hooks.clone(),
            nice: x.nice,
            ionice: x.ionice.clone(),
            ..Default::default()
        };
        let disabled = o.bool("disabled", rep) == Some(true);
        let paths = o.strs("paths", rep);
        let mut filter = super::Filter {
            exclude: o.strs("excludes", rep),
            iexclude: o.strs("iexcludes", rep),
            // Backrest always passes --exclude-caches.
            exclude_caches: true,
            ..Default::default()
        };
        if let Some(i) = &instance {
            plan.tags.push(format!("created-by:{i}"));
        }
        if let Some(c) = o.str("cron", rep) {
            plan.schedule = schedule(&c, &o.key("cron"), rep);
        }
        if let Some(s) = sched(o.get("schedule"), &o.key("schedule"), rep) {
            plan.schedule = Some(s);
        }
        if disabled {
            plan.schedule = None;
            rep.note(
                o.path.clone(),
                "disabled in Backrest: the plan has no schedule (runs only when asked)",
            );
        }
        plan.retention = retention(o.get("retention"), &o.key("retention"), rep);
        let mut own = Hooks::default();
        hooks(o.get("hooks"), &o.key("hooks"), &mut own, rep);
        plan.hooks.before.extend(own.before);
        plan.hooks.after.extend(own.after);
        plan.hooks.success.extend(own.success);
        plan.hooks.failure.extend(own.failure);
        plan.hooks.finally.extend(own.finally);
        for f in o.strs("backup_flags", rep) {
            let (k, v) = match f.trim_start_matches('-').split_once(['=', ' ']) {
                Some((k, v)) => (k.to_string(), Value::String(v.trim().to_string())),
                None => (f.trim_start_matches('-').to_string(), Value::Bool(true)),
            };
            if !super::backup_flag(&k, &v, Path::new("/"), &mut filter, &mut plan) {
                rep.skip(
                    format!("{}.backup_flags", o.path),
                    format!("restic flag {f:?}: cairn has no such setting"),
                );
            }
        }
        o.skip(
            "skipIfUnchanged",
            "cairn always records a snapshot (an unchanged one costs a few bytes)",
            rep,
        );
        o.finish(rep);
        imp.fragments.push(Fragment {
            name: name.clone(),
            origin: format!("Backrest plan `{id}`"),
            paths,
            filter,
            plans: vec![plan],
        });
    }
    top.finish(rep);
    Ok(imp)
}
