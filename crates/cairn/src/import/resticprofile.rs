//! resticprofile's `profiles.toml` / `profiles.yaml` / `profiles.json` (format versions
//! 1 and 2): every profile with a `backup` section becomes a `conf.d/` fragment (its
//! `source` and excludes, one plan with the backup `schedule`, the `retention` section
//! when it runs after the backup, `run-*` hooks, `check` and healthchecks-style
//! `send-*` pings); `inherit` is resolved first, as resticprofile does. The repository,
//! password file and environment of each profile become a repository (shared when equal).

use super::{
    absolute, add_repo, backup_flag, put_retention, retention_key, schedule, Filter, Fragment,
    Hooks, Imported, Obj, Password, Plan, Repo, Report,
};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Profile keys that only tune how resticprofile itself runs restic.
const RUNNER_KEYS: &[&str] = &[
    "description",
    "initialize",
    "lock",
    "force-inactive-lock",
    "verbose",
    "quiet",
    "status-file",
    "extended-status",
    "prometheus-save-to-file",
    "prometheus-push",
    "prometheus-labels",
];

/// Parses the file by its extension (TOML, YAML or JSON; YAML when unknown).
fn parse(text: &str, file: &Path) -> Result<Value, String> {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "toml" => {
            let t: toml::Table = toml::from_str(text).map_err(|e| {
                format!("{}: not valid TOML: {}", file.display(), e.message())
            })?;
            serde_json::to_value(t).map_err(|e| format!("{}: {e}", file.display()))
        }
        "json" => serde_json::from_str(text)
            .map_err(|e| format!("{}: not valid JSON: {e}", file.display())),
        "hcl" => Err(format!(
            "{}: HCL profiles are not read; convert them to TOML or YAML (`resticprofile show` prints each profile)",
            file.display()
        )),
        _ => super::parse_yaml(text, file),
    }
}

/// Merges `parent` under `child` (child keys win; nested maps merged), as resticprofile's
/// `inherit` does.
fn merge(child: &mut Map<String, Value>, parent: &Map<String, Value>) {
    for (k, pv) in parent {
        match child.get_mut(k) {
            None => {
                child.insert(k.clone(), pv.clone());
            }
            Some(Value::Object(c)) => {
                if let Value::Object(p) = pv {
                    merge(c, p);
                }
            }
            Some(_) => {}
        }
    }
}

fn resolve(
    name: &str,
    profiles: &Map<String, Value>,
    depth: usize,
) -> Result<Map<String, Value>, String> {
    let Some(Value::Object(p)) = profiles.get(name) else {
        return Err(format!(
            "profile `{name}` (named by inherit) is not defined"
        ));
    };
    let mut p = p.clone();
    if let Some(parent) = p.remove("inherit") {
        let Some(parent) = parent.as_str() else {
            return Err(format!("profile `{name}`: inherit is not a profile name"));
        };
        if depth > 16 {
            return Err(format!("profile `{name}`: inherit goes round in a circle"));
        }
        let base = resolve(parent, profiles, depth + 1)?;
        merge(&mut p, &base);
    }
    Ok(p)
}

fn hook_list(o: &mut Obj, k: &str, rep: &mut Report) -> Vec<String> {
    o.strs(k, rep)
}

/// `send-*` sections: a list of `{url, method, body, headers}` or one.
fn urls(o: &mut Obj, k: &str, rep: &mut Report) -> Vec<String> {
    let key = o.key(k);
    let items: Vec<Value> = match o.get(k) {
        None => return Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(v) => vec![v.clone()],
    };
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        match it {
            Value::String(s) => out.push(s.clone()),
            Value::Object(m) => {
                let mut s = Obj::new(format!("{key}[{i}]"), Some(it), rep);
                if let Some(u) = s.str("url", rep) {
                    out.push(u);
                }
                for extra in m.keys().filter(|k| *k != "url") {
                    s.skip(extra, "cairn's healthchecks ping takes a URL only", rep);
                }
                s.finish(rep);
            }
            _ => rep.skip(format!("{key}[{i}]"), "expected a URL or a map with `url`"),
        }
    }
    out
}

fn profile(
    pname: &str,
    p: &Map<String, Value>,
    base: &Path,
    imp: &mut Imported,
) -> Result<(), String> {
    let rep = &mut imp.report;
    let pv = Value::Object(p.clone());
    let mut o = Obj::new(pname, Some(&pv), rep);
    o.ignore(RUNNER_KEYS);
    let Some(backup) = o.get("backup").cloned() else {
        rep.note(
            pname,
            "no backup section (a base for `inherit`, or a profile for other commands): no plan made",
        );
        return Ok(());
    };
    // The repository.
    let mut url = o.str("repository", rep);
    if let Some(f) = o.str("repository-file", rep) {
        rep.skip(
            o.key("repository-file"),
            format!("cairn takes the URL itself: copy it from {f} into cairn.toml"),
        );
    }
    let mut password = Password::None;
    if let Some(f) = o.str("password-file", rep) {
        password = Password::File(absolute(&f, base));
    }
    if let Some(c) = o.str("password-command", rep) {
        if password == Password::None {
            password = Password::Command(c);
        }
    }
    let mut env = BTreeMap::new();
    let mut e = Obj::new(o.key("env"), o.get("env"), rep);
    for k in e.keys() {
        if let Some(v) = e.str(&k, rep) {
            env.insert(k.to_uppercase(), v);
        }
    }
    e.finish(rep);
    super::take_restic_env(&mut env, &mut password, &mut url);
    let Some(url) = url else {
        rep.skip(
            pname,
            "no repository (nor RESTIC_REPOSITORY in env): no plan made",
        );
        return Ok(());
    };
    if password == Password::None {
        rep.note(
            o.key("password-file"),
            "no password source: set password-file (or password-command) in cairn.toml",
        );
    }
    let mut options = BTreeMap::new();
    for v in o.strs("option", rep) {
        match v.split_once('=') {
            Some((k, v)) => {
                options.insert(k.trim().to_string(), v.trim().to_string());
            }
            None => rep.skip(o.key("option"), format!("{v:?} is not KEY=VALUE")),
        }
    }
    let repo = add_repo(
        &mut imp.repos,
        Repo {
            name: super::name(pname),
            url: url.trim_start_matches("local:").to_string(),
            password,
            env,
            env_file: None,
            options,
        },
    );
    for k in [
        "cache-dir",
        "no-cache",
        "limit-upload",
        "limit-download",
        "cacert",
        "insecure-tls",
        "tls-client-cert",
    ] {
        o.skip(
            k,
            "set per repository in cairn.toml (cache-dir, limit-upload, ...) by hand",
            rep,
        );
    }
    let fname = super::name(pname);
    let mut plan = Plan {
        name: fname.clone(),
        repository: repo,
        ..Default::default()
    };
    let mut hooks = Hooks {
        before: hook_list(&mut o, "run-before", rep),
        after: hook_list(&mut o, "run-after", rep),
        failure: hook_list(&mut o, "run-after-fail", rep),
        finally: hook_list(&mut o, "run-finally", rep),
        ..Default::default()
    };
    // The backup section.
    let mut b = Obj::new(o.key("backup"), Some(&backup), rep);
    let mut paths: Vec<String> = b.strs("source", rep);
    if paths
        .iter()
        .any(|p| !p.starts_with('/') && !p.starts_with("~/"))
    {
        rep.note(
            b.key("source"),
            "relative sources were resolved against the profiles file's directory: check they are the paths restic recorded",
        );
    }
    paths = paths.iter().map(|p| absolute(p, base)).collect();
    if let Some(s) = b.get("schedule") {
        let key = b.key("schedule");
        let list = super::strings(s);
        if list.len() > 1 {
            rep.skip(
                &key,
                format!(
                    "cairn runs a plan on one schedule: kept {:?}, left out {:?}",
                    list[0],
                    &list[1..]
                ),
            );
        }
        if let Some(first) = list.first() {
            plan.schedule = schedule(first, &key, rep);
        }
    }
    b.ignore(&[
        "schedule-permission",
        "schedule-log",
        "schedule-lock-mode",
        "schedule-lock-wait",
        "schedule-priority",
        "schedule-after-network-online",
        "schedule-ignore-on-battery",
        "schedule-ignore-on-battery-less-than",
        "verbose",
        "extended-status",
        "no-error-on-warning",
    ]);
    hooks.before.extend(hook_list(&mut b, "run-before", rep));
    hooks.after.extend(hook_list(&mut b, "run-after", rep));
    hooks
        .failure
        .extend(hook_list(&mut b, "run-after-fail", rep));
    hooks.finally.extend(hook_list(&mut b, "run-finally", rep));
    // healthchecks.io: `send-before` URL/start, `send-after` URL, `send-after-fail` URL/fail.
    let before = urls(&mut b, "send-before", rep);
    let after = urls(&mut b, "send-after", rep);
    let fail = urls(&mut b, "send-after-fail", rep);
    let finally = urls(&mut b, "send-finally", rep);
    let hc = match (after.as_slice(), fail.as_slice()) {
        ([a], [f]) if f.strip_suffix("/fail") == Some(a.trim_end_matches('/')) => {
            Some(a.trim_end_matches('/').to_string())
        }
        ([a], []) => Some(a.trim_end_matches('/').to_string()),
        _ => None,
    };
    let hc_ok = hc.as_ref().is_some_and(|h| {
        before
            .iter()
            .all(|u| u.trim_end_matches('/') == format!("{h}/start"))
            && finally.is_empty()
    });
    if hc_ok {
        plan.healthchecks = hc;
        if !before.is_empty() || !fail.is_empty() {
            rep.note(
                b.key("send-after"),
                "healthchecks-style pings: cairn sends /start, success and /fail itself",
            );
        }
    } else if !(before.is_empty() && after.is_empty() && fail.is_empty() && finally.is_empty()) {
        rep.skip(
            b.key("send-*"),
            "HTTP calls that are not healthchecks.io-style pings (URL/start, URL, URL/fail): use [plans.NAME.notify] webhook or a hook with curl",
        );
    }
    for k in ["check-before", "check-after"] {
        b.skip(
            k,
            "cairn checks on the plan's [plans.NAME.check] schedule instead",
            rep,
        );
    }
    let mut filter = Filter::default();
    for k in b.keys() {
        if matches!(
            k.as_str(),
            "source"
                | "schedule"
                | "run-before"
                | "run-after"
                | "run-after-fail"
                | "run-finally"
                | "send-before"
                | "send-after"
                | "send-after-fail"
                | "send-finally"
                | "check-before"
                | "check-after"
        ) || b.was_used(&k)
        {
            continue;
        }
        let key = b.key(&k);
        if let Some(v) = b.get(&k) {
            if !backup_flag(&k, v, base, &mut filter, &mut plan) {
                rep.skip(key, "a restic backup flag cairn has no setting for");
            }
        }
    }
    b.finish(rep);
    plan.hooks = hooks;
    // Retention: applied by cairn after each backup when resticprofile did so.
    let mut r = Obj::new(o.key("retention"), o.get("retention"), rep);
    let after = r.bool("after-backup", rep).unwrap_or(false);
    let before = r.bool("before-backup", rep).unwrap_or(false);
    let prune = r.bool("prune", rep).unwrap_or(false);
    let mut retention = toml::Table::new();
    for k in r.keys() {
        let key = r.key(&k);
        if let Some(c) = retention_key(&k) {
            if let Some(v) = r.get(&k) {
                put_retention(&mut retention, &key, c, v, rep);
            }
        } else if matches!(k.as_str(), "host" | "path" | "tag") {
            // resticprofile's forget filters: cairn's own is the plan tag (noted below).
            r.ignore(&[k.as_str()]);
            let _ = key;
        } else if !r.was_used(&k) {
            r.skip(&k, "a restic forget flag cairn has no setting for", rep);
        }
    }
    r.finish(rep);
    if after || before {
        plan.retention = retention;
        if before && !after {
            rep.note(
                o.key("retention.before-backup"),
                "cairn applies retention after the backup",
            );
        }
        if prune {
            plan.prune = Some("always".into());
        }
        rep.note(
            o.key("retention"),
            format!("cairn's retention applies to the plan's own snapshots (tag plan:{fname}): resticprofile's stay until `cairn forget`"),
        );
    } else if !retention.is_empty() {
        rep.note(
            o.key("retention"),
            "neither after-backup nor before-backup: resticprofile applied it only when run by hand, so the plan has no retention",
        );
    }
    // Check.
    let mut c = Obj::new(o.key("check"), o.get("check"), rep);
    if let Some(s) = c.str("schedule", rep) {
        let key = c.key("schedule");
        if let Some(s) = schedule(&s, &key, rep) {
            plan.check.insert("schedule".into(), toml::Value::String(s));
        }
    }
    if let Some(s) = c.str("read-data-subset", rep) {
        plan.check
            .insert("read-data-subset".into(), toml::Value::String(s));
    } else if c.bool("read-data", rep) == Some(true) {
        plan.check
            .insert("read-data-subset".into(), toml::Value::String("all".into()));
    }
    c.ignore(&[
        "schedule-permission",
        "schedule-log",
        "schedule-priority",
        "schedule-lock-mode",
    ]);
    c.finish(rep);
    // Sections for other commands.
    for k in o.keys() {
        if o.was_used(&k) {
            continue;
        }
        if matches!(
            k.as_str(),
            "forget"
                | "prune"
                | "copy"
                | "snapshots"
                | "mount"
                | "tag"
                | "dump"
                | "find"
                | "ls"
                | "restore"
                | "stats"
                | "init"
                | "unlock"
                | "rewrite"
        ) {
            o.skip(&k, "settings of another restic command: cairn's runs use the plan's settings (copy: copy-to, forget: retention)", rep);
        }
    }
    o.finish(rep);
    imp.fragments.push(Fragment {
        name: fname,
        origin: format!("resticprofile profile `{pname}`"),
        paths,
        filter,
        plans: vec![plan],
    });
    Ok(())
}

/// Reads a resticprofile config from `file`.
pub fn import(text: &str, file: &Path) -> Result<Imported, String> {
    let root = parse(text, file)?;
    let base = file
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| Path::new(".").to_path_buf());
    if text.contains("{{") {
        return Err(format!(
            "{}: uses Go templates ({{{{ ... }}}}): import the output of `resticprofile show --name PROFILE` per profile, or a copy with the templates filled in",
            file.display()
        ));
    }
    let mut imp = Imported {
        tool: "resticprofile",
        source: file.to_path_buf(),
        ..Default::default()
    };
    let Value::Object(top) = &root else {
        return Err(format!("{}: expected a map of profiles", file.display()));
    };
    let v2 = matches!(top.get("version"), Some(Value::String(s)) if s.starts_with('2'))
        || top.get("version").and_then(Value::as_i64) == Some(2);
    let mut t = Obj::new("", Some(&root), &mut imp.report);
    t.ignore(&["version"]);
    for k in ["global", "groups", "includes", "mixins", "templates"] {
        t.skip(
            k,
            match k {
                "global" => "resticprofile's own settings (priority, restic binary, ...): cairn has its own ([settings], plan nice/ionice)",
                "groups" => "groups of profiles: `cairn run PLAN PLAN...` runs several plans in one go",
                _ => "resolve it into the profiles (`resticprofile show`) and import that",
            },
            &mut imp.report,
        );
    }
    let profiles: Map<String, Value> = if v2 {
        match t.get("profiles") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        }
    } else {
        top.iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "version" | "global" | "groups" | "includes" | "mixins" | "templates"
                )
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    if !v2 {
        t.ignore(&profiles.keys().map(String::as_str).collect::<Vec<_>>());
    }
    t.finish(&mut imp.report);
    for name in profiles.keys() {
        if !profiles[name].is_object() {
            imp.report
                .skip(name, "not a profile (a map of settings): left out");
            continue;
        }
        let p = resolve(name, &profiles, 0).map_err(|e| format!("{}: {e}", file.display()))?;
        profile(name, &p, &base, &mut imp)?;
    }
    Ok(imp)
}
