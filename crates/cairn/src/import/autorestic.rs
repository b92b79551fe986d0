//! autorestic's `.autorestic.yml` (format version 2): `backends` become repositories,
//! each location a `conf.d/` fragment with one source (`from`, its excludes) and one plan
//! per backend of `to` (`cron`, `hooks`, `options.forget` retention, `copy`).
//!
//! autorestic backs up `from` resolved against the config file's directory, with
//! restic's default host, so the plans keep those paths and host: the first cairn backup
//! finds autorestic's last snapshot as its parent.

use super::{
    absolute, add_repo, backup_flag, put_retention, retention_key, schedule, Fragment, Imported,
    Obj, Password, Plan, Repo, Report,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Options of one command merged from global, backend and location, each value with the
/// key it came from.
type Opts = BTreeMap<String, (String, Value)>;

fn merge_options(into: &mut [(&str, &mut Opts)], o: &mut Obj, rep: &mut Report) {
    let path = o.key("options");
    let v = o.get("options");
    merge_sections(into, path, v, rep);
}

/// `{all: {...}, backup: {...}, forget: {...}}` at `path` into the commands' options.
fn merge_sections(
    into: &mut [(&str, &mut Opts)],
    path: String,
    v: Option<&Value>,
    rep: &mut Report,
) {
    let mut opts = Obj::new(path.clone(), v, rep);
    for section in opts.keys() {
        let v = opts.get(&section);
        let mut s = Obj::new(format!("{path}.{section}"), v, rep);
        let targets: Vec<usize> = into
            .iter()
            .enumerate()
            .filter(|(_, (name, _))| section == "all" || *name == section)
            .map(|(i, _)| i)
            .collect();
        if targets.is_empty() {
            rep.skip(
                s.path.clone(),
                "options of a command cairn runs differently (only `all`, `backup` and `forget` are carried over)",
            );
            continue;
        }
        for k in s.keys() {
            let key = s.key(&k);
            if let Some(v) = s.get(&k) {
                for &i in &targets {
                    into[i].1.insert(k.clone(), (key.clone(), v.clone()));
                }
            }
        }
        s.finish(rep);
    }
}

fn backend(name: &str, o: &mut Obj, base: &Path, rep: &mut Report) -> Option<Repo> {
    let kind = o.str("type", rep).unwrap_or_default();
    let path = o.str("path", rep).unwrap_or_default();
    let url = match kind.as_str() {
        "local" => absolute(&path, base),
        "b2" | "s3" | "sftp" | "rest" | "azure" | "gs" | "swift" | "rclone" => {
            format!("{kind}:{path}")
        }
        other => {
            rep.skip(
                o.path.clone(),
                format!("backend type {other:?} is not one autorestic documents: backend left out"),
            );
            return None;
        }
    };
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut e = Obj::new(o.key("env"), o.get("env"), rep);
    for k in e.keys() {
        if let Some(v) = e.str(&k, rep) {
            env.insert(k.to_uppercase(), v);
        }
    }
    e.finish(rep);
    let mut r = Obj::new(o.key("rest"), o.get("rest"), rep);
    if let Some(u) = r.str("user", rep) {
        env.insert("RESTIC_REST_USERNAME".into(), u);
    }
    if let Some(p) = r.str("password", rep) {
        env.insert("RESTIC_REST_PASSWORD".into(), p);
    }
    r.finish(rep);
    let mut password = match o.str("key", rep) {
        Some(k) => Password::Inline(k),
        None => {
            let var = format!(
                "AUTORESTIC_{}_RESTIC_PASSWORD",
                name.to_uppercase().replace('-', "_")
            );
            rep.note(
                o.key("key"),
                format!("no key in the file: the repository reads its password from ${var} (autorestic's .autorestic.env); prefer a password-file"),
            );
            Password::Env(var)
        }
    };
    let mut url = Some(url);
    super::take_restic_env(&mut env, &mut password, &mut url);
    o.ignore(&["requireKey"]);
    Some(Repo {
        name: super::name(name),
        url: url.unwrap_or_default(),
        password,
        env,
        env_file: None,
        options: BTreeMap::new(),
    })
}

/// Reads an autorestic config (YAML text) from `file`.
pub fn import(text: &str, file: &Path) -> Result<Imported, String> {
    let root = super::parse_yaml(text, file)?;
    let base = file
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| Path::new(".").to_path_buf());
    let mut imp = Imported {
        tool: "autorestic",
        source: file.to_path_buf(),
        ..Default::default()
    };
    let rep = &mut imp.report;
    let mut top = Obj::new("", Some(&root), rep);
    match top.get("version") {
        Some(v) if v.as_i64() == Some(2) || v.as_str() == Some("2") => {}
        None => {
            return Err(format!(
                "{}: no `version: 2`: this is an autorestic 0.x config; run `autorestic check` once to migrate it, then import",
                file.display()
            ))
        }
        Some(v) => return Err(format!("{}: autorestic config version {v} is not 2", file.display())),
    }
    top.ignore(&["extras"]);
    // Options every location inherits.
    let mut g_backup = Opts::new();
    let mut g_forget = Opts::new();
    let global = top.get("global");
    merge_sections(
        &mut [("backup", &mut g_backup), ("forget", &mut g_forget)],
        "global".into(),
        global,
        rep,
    );
    // Backends.
    let mut backend_opts: BTreeMap<String, (Opts, Opts)> = BTreeMap::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut backends = Obj::new("backends", top.get("backends"), rep);
    for b in backends.keys() {
        let v = backends.get(&b);
        let mut o = Obj::new(format!("backends.{b}"), v, rep);
        let (mut bb, mut bf) = (g_backup.clone(), g_forget.clone());
        merge_options(&mut [("backup", &mut bb), ("forget", &mut bf)], &mut o, rep);
        if let Some(repo) = backend(&b, &mut o, &base, rep) {
            let n = add_repo(&mut imp.repos, repo);
            names.insert(b.clone(), n);
            backend_opts.insert(b.clone(), (bb, bf));
        }
        o.finish(rep);
    }
    backends.finish(rep);
    // Locations.
    let mut locations = Obj::new("locations", top.get("locations"), rep);
    for l in locations.keys() {
        let v = locations.get(&l);
        let mut o = Obj::new(format!("locations.{l}"), v, rep);
        if let Some(t) = o.str("type", rep) {
            if t == "volume" {
                rep.skip(
                    o.path.clone(),
                    "a Docker volume location: cairn backs up paths; back up the volume's directory (docker volume inspect) or dump it in a before hook",
                );
                o.ignore(&["from", "to", "cron", "hooks", "options", "forget", "copy"]);
                o.finish(rep);
                continue;
            }
        }
        let fname = super::name(&l);
        let mut frag = Fragment {
            name: fname.clone(),
            origin: format!("autorestic location `{l}`"),
            ..Default::default()
        };
        frag.paths = o
            .strs("from", rep)
            .iter()
            .map(|p| absolute(p, &base))
            .collect();
        let to = o.strs("to", rep);
        let cron = o.str("cron", rep).and_then(|c| {
            let key = o.key("cron");
            schedule(&c, &key, rep)
        });
        if cron.is_some() {
            rep.note(
                o.key("cron"),
                "runs on this schedule under `cairn daemon` or `cairn systemd generate` (drop the `autorestic cron` crontab line)",
            );
        }
        // Hooks.
        let mut hooks = super::Hooks::default();
        {
            let mut h = Obj::new(o.key("hooks"), o.get("hooks"), rep);
            let dir = h.str("dir", rep);
            let wrap = |cmds: Vec<String>| -> Vec<String> {
                match &dir {
                    Some(d) => cmds
                        .into_iter()
                        .map(|c| format!("cd '{}' && {c}", d.replace('\'', "'\\''")))
                        .collect(),
                    None => cmds,
                }
            };
            let pre = wrap(h.strs("prevalidate", rep));
            if !pre.is_empty() {
                rep.note(
                    h.key("prevalidate"),
                    "prevalidate hooks run first among the before hooks",
                );
            }
            hooks.before = pre;
            hooks.before.extend(wrap(h.strs("before", rep)));
            hooks.after = wrap(h.strs("after", rep));
            hooks.success = wrap(h.strs("success", rep));
            hooks.failure = wrap(h.strs("failure", rep));
            h.finish(rep);
        }
        let forget = match o.get("forget") {
            None | Some(Value::Bool(false)) => None,
            Some(Value::String(s)) if s == "no" || s == "false" => None,
            Some(Value::String(s)) if s == "prune" => Some(true),
            Some(Value::Bool(true)) => Some(false),
            Some(Value::String(s)) if s == "yes" || s == "true" => Some(false),
            Some(v) => {
                rep.skip(
                    o.key("forget"),
                    format!("{v} is not yes, no or prune: left out"),
                );
                None
            }
        };
        let copy_obj = o.get("copy").cloned();
        let mut lb = Opts::new();
        let mut lf = Opts::new();
        merge_options(&mut [("backup", &mut lb), ("forget", &mut lf)], &mut o, rep);
        if to.is_empty() {
            rep.skip(o.key("to"), "the location names no backend: no plan made");
        }
        for (i, b) in to.iter().enumerate() {
            let Some(repo) = names.get(b) else {
                rep.skip(
                    format!("{}.to", o.path),
                    format!("backend `{b}` is not defined (or was left out): no plan for it"),
                );
                continue;
            };
            let (bb, bf) = backend_opts.get(b).cloned().unwrap_or_default();
            let mut plan = Plan {
                name: if to.len() == 1 {
                    fname.clone()
                } else {
                    super::name(&format!("{l}-{b}"))
                },
                repository: repo.clone(),
                schedule: cron.clone(),
                hooks: hooks.clone(),
                ..Default::default()
            };
            let mut bopts = bb;
            bopts.extend(lb.clone());
            let mut filter = super::Filter::default();
            for (k, (key, v)) in &bopts {
                if !backup_flag(k, v, &base, &mut filter, &mut plan) && i == 0 {
                    rep.skip(key, "a restic backup flag cairn has no setting for");
                }
            }
            if i == 0 {
                frag.filter = filter;
            }
            let mut fopts = bf;
            fopts.extend(lf.clone());
            for (k, (key, v)) in &fopts {
                match retention_key(k) {
                    Some(c) => put_retention(&mut plan.retention, key, c, v, rep),
                    None if matches!(
                        k.as_str(),
                        "host"
                            | "tag"
                            | "exclude"
                            | "iexclude"
                            | "exclude-file"
                            | "exclude-if-present"
                            | "exclude-caches"
                            | "one-file-system"
                            | "exclude-larger-than"
                    ) => {}
                    None if i == 0 => {
                        rep.skip(key, "a restic forget flag cairn has no setting for")
                    }
                    None => {}
                }
            }
            match forget {
                Some(prune) if !plan.retention.is_empty() => {
                    if prune {
                        plan.prune = Some("always".into());
                    }
                    rep.note(
                        format!("{}.forget", o.path),
                        format!("cairn's retention applies to the plan's own snapshots (tag plan:{}): autorestic's stay until `cairn forget` (e.g. --tag ar:location:{l})", plan.name),
                    );
                }
                Some(_) => {}
                None if !plan.retention.is_empty() => {
                    if i == 0 {
                        rep.note(
                            o.key("forget"),
                            "no `forget:` on the location: autorestic applied its keep-* options only when run by hand, so the plan has no retention; add `retention` to apply them after each backup",
                        );
                    }
                    plan.retention.clear();
                }
                None => {}
            }
            if let Some(Value::Object(c)) = &copy_obj {
                if let Some(targets) = c.get(b) {
                    for t in super::strings(targets) {
                        match names.get(&t) {
                            Some(n) => plan.copy_to.push(n.clone()),
                            None => rep.skip(
                                format!("{}.copy.{b}", o.path),
                                format!("copy target `{t}` is not a defined backend"),
                            ),
                        }
                    }
                }
            }
            frag.plans.push(plan);
        }
        if let Some(c) = &copy_obj {
            if !c.is_object() {
                rep.skip(o.key("copy"), "expected a map of backend to copy targets");
            } else if let Value::Object(m) = c {
                for k in m.keys().filter(|k| !to.contains(k)) {
                    rep.skip(
                        format!("{}.copy.{k}", o.path),
                        "copies from a backend the location is not backed up to",
                    );
                }
            }
        }
        o.finish(rep);
        imp.fragments.push(frag);
    }
    locations.finish(rep);
    top.finish(rep);
    imp.report.not_carried_over.dedup();
    Ok(imp)
}
