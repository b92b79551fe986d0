//! Writing an import: `cairn.toml`, `conf.d/NAME.toml` and the secret files (0600 in a
//! 0700 `secrets/`), all refused before anything is written when one exists.

use super::{public_env, Imported, Password, Report, SECRETS_DIR};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use toml::Table;

struct Out {
    rel: String,
    text: String,
    secret: bool,
}

fn env_line(k: &str, v: &str) -> Option<String> {
    if v.contains('\n') || v.contains('\r') {
        return None;
    }
    let plain = v.trim() == v && !v.starts_with(['"', '\'']);
    Some(if plain {
        format!("{k}={v}\n")
    } else if !v.contains('\'') {
        format!("{k}='{v}'\n")
    } else {
        format!("{k}=\"{v}\"\n")
    })
}

fn strings(v: &[String]) -> toml::Value {
    toml::Value::Array(v.iter().cloned().map(toml::Value::String).collect())
}

/// The files an import writes, relative to the output directory.
fn render(imp: &mut Imported) -> Vec<Out> {
    let mut outs = Vec::new();
    // Fragments with paths, each (and each plan) under a name of its own.
    let mut sources: Vec<String> = Vec::new();
    let mut plans_seen: Vec<String> = Vec::new();
    let unique = |seen: &mut Vec<String>, n: &str| -> String {
        let mut name = n.to_string();
        let mut i = 2;
        while seen.contains(&name) {
            name = format!("{n}-{i}");
            i += 1;
        }
        seen.push(name.clone());
        name
    };
    let mut kept = Vec::new();
    for mut f in std::mem::take(&mut imp.fragments) {
        if f.paths.is_empty() {
            imp.report.skip(
                f.origin.clone(),
                "no paths to back up: no source or plan made",
            );
            continue;
        }
        f.name = unique(&mut sources, &f.name);
        for p in &mut f.plans {
            p.name = unique(&mut plans_seen, &p.name);
        }
        kept.push(f);
    }
    imp.fragments = kept;
    if imp
        .fragments
        .iter()
        .any(|f| f.plans.iter().any(|p| !p.hooks.is_empty()))
    {
        imp.report.note(
            "hooks",
            "each hook command has cairn's time limit of 5 minutes: set `timeout` in [plans.NAME.hooks] for longer ones",
        );
    }
    let header = format!(
        "# Imported by `cairn import {}` from {}.\n# `cairn config check` explains every setting; the report of the import lists what\n# was not carried over.\n\n",
        imp.tool,
        imp.source.display()
    );
    // cairn.toml: settings and repositories.
    let mut main = Table::new();
    if let Some(h) = &imp.host {
        let mut s = Table::new();
        s.insert("host".into(), toml::Value::String(h.clone()));
        main.insert("settings".into(), toml::Value::Table(s));
    }
    let mut repos = Table::new();
    for r in &imp.repos {
        let mut t = Table::new();
        t.insert("url".into(), toml::Value::String(r.url.clone()));
        match &r.password {
            Password::Inline(p) => {
                let rel = format!("{SECRETS_DIR}/{}.password", r.name);
                outs.push(Out {
                    rel: rel.clone(),
                    text: format!("{p}\n"),
                    secret: true,
                });
                t.insert("password-file".into(), toml::Value::String(rel));
            }
            Password::File(f) => {
                t.insert("password-file".into(), toml::Value::String(f.clone()));
            }
            Password::Command(c) => {
                t.insert("password-command".into(), toml::Value::String(c.clone()));
            }
            Password::Env(e) => {
                t.insert("password-env".into(), toml::Value::String(e.clone()));
            }
            Password::None => {}
        }
        let mut secret_env = String::new();
        let mut public = Table::new();
        for (k, v) in &r.env {
            if public_env(k) {
                public.insert(k.clone(), toml::Value::String(v.clone()));
            } else {
                match env_line(k, v) {
                    Some(l) => secret_env.push_str(&l),
                    None => imp.report.skip(
                        format!("{}: env {k}", r.name),
                        "a value of several lines does not fit an env file: set it yourself",
                    ),
                }
            }
        }
        if let Some(f) = &r.env_file {
            t.insert("env-file".into(), toml::Value::String(f.clone()));
            if !secret_env.is_empty() {
                imp.report.skip(
                    format!("{}: env", r.name),
                    "the repository already has an env file: add these variables to it",
                );
            }
        } else if !secret_env.is_empty() {
            let rel = format!("{SECRETS_DIR}/{}.env", r.name);
            outs.push(Out {
                rel: rel.clone(),
                text: secret_env,
                secret: true,
            });
            t.insert("env-file".into(), toml::Value::String(rel));
        }
        if !public.is_empty() {
            t.insert("env".into(), toml::Value::Table(public));
        }
        if !r.options.is_empty() {
            let o: Table = r
                .options
                .iter()
                .map(|(k, v)| (k.clone(), toml::Value::String(v.clone())))
                .collect();
            t.insert("options".into(), toml::Value::Table(o));
        }
        repos.insert(r.name.clone(), toml::Value::Table(t));
    }
    main.insert("repositories".into(), toml::Value::Table(repos));
    outs.insert(
        0,
        Out {
            rel: "cairn.toml".into(),
            text: format!("{header}{}", toml::to_string(&main).unwrap_or_default()),
            secret: false,
        },
    );
    for f in &imp.fragments {
        let mut doc = Table::new();
        let mut src = Table::new();
        src.insert("paths".into(), strings(&f.paths));
        let fl = &f.filter;
        for (k, v) in [
            ("exclude", &fl.exclude),
            ("iexclude", &fl.iexclude),
            ("exclude-file", &fl.exclude_file),
            ("exclude-if-present", &fl.exclude_if_present),
        ] {
            if !v.is_empty() {
                src.insert(k.into(), strings(v));
            }
        }
        if fl.exclude_caches {
            src.insert("exclude-caches".into(), toml::Value::Boolean(true));
        }
        if let Some(s) = &fl.exclude_larger_than {
            src.insert("exclude-larger-than".into(), toml::Value::String(s.clone()));
        }
        if fl.one_file_system {
            src.insert("one-file-system".into(), toml::Value::Boolean(true));
        }
        let mut sources = Table::new();
        sources.insert(f.name.clone(), toml::Value::Table(src));
        doc.insert("sources".into(), toml::Value::Table(sources));
        let mut plans = Table::new();
        for p in &f.plans {
            let mut t = Table::new();
            t.insert(
                "repository".into(),
                toml::Value::String(p.repository.clone()),
            );
            t.insert("sources".into(), strings(std::slice::from_ref(&f.name)));
            if let Some(s) = &p.schedule {
                t.insert("schedule".into(), toml::Value::String(s.clone()));
            }
            if !p.retention.is_empty() {
                t.insert("retention".into(), toml::Value::Table(p.retention.clone()));
            }
            if let Some(s) = &p.prune {
                t.insert("prune".into(), toml::Value::String(s.clone()));
            }
            if !p.check.is_empty() {
                t.insert("check".into(), toml::Value::Table(p.check.clone()));
            }
            if !p.copy_to.is_empty() {
                t.insert("copy-to".into(), strings(&p.copy_to));
            }
            if !p.tags.is_empty() {
                t.insert("tags".into(), strings(&p.tags));
            }
            if let Some(h) = &p.host {
                t.insert("host".into(), toml::Value::String(h.clone()));
            }
            if let Some(n) = p.nice {
                t.insert("nice".into(), toml::Value::Integer(n));
            }
            if let Some(n) = &p.ionice {
                t.insert("ionice".into(), toml::Value::String(n.clone()));
            }
            if !p.hooks.is_empty() {
                let h = &p.hooks;
                let mut ht = Table::new();
                for (k, v) in [
                    ("before", &h.before),
                    ("after", &h.after),
                    ("success", &h.success),
                    ("failure", &h.failure),
                    ("finally", &h.finally),
                ] {
                    if !v.is_empty() {
                        ht.insert(k.into(), strings(v));
                    }
                }
                t.insert("hooks".into(), toml::Value::Table(ht));
            }
            if let Some(u) = &p.healthchecks {
                let mut n = Table::new();
                n.insert("healthchecks".into(), toml::Value::String(u.clone()));
                t.insert("notify".into(), toml::Value::Table(n));
            }
            plans.insert(p.name.clone(), toml::Value::Table(t));
        }
        if !plans.is_empty() {
            doc.insert("plans".into(), toml::Value::Table(plans));
        }
        outs.push(Out {
            rel: format!("conf.d/{}.toml", f.name),
            text: format!(
                "# {}\n{header}{}",
                f.origin,
                toml::to_string(&doc).unwrap_or_default()
            ),
            secret: false,
        });
    }
    outs
}

/// Writes the import into `dir` (created if missing). Refuses, before writing anything,
/// when any of the files exists.
pub fn write(mut imp: Imported, dir: &Path) -> Result<Report, String> {
    let outs = render(&mut imp);
    for o in &outs {
        let p = dir.join(&o.rel);
        if p.symlink_metadata().is_ok() {
            return Err(format!(
                "{} already exists: nothing written (import into an empty directory with --output DIR, or move the existing config away)",
                p.display()
            ));
        }
    }
    let mkdir = |p: &Path| -> Result<(), String> {
        if p.is_dir() {
            return Ok(());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(p)
            .map_err(|e| format!("cannot create {}: {e}", p.display()))
    };
    mkdir(dir)?;
    mkdir(&dir.join("conf.d"))?;
    if outs.iter().any(|o| o.secret) {
        mkdir(&dir.join(SECRETS_DIR))?;
    }
    for o in &outs {
        let p = dir.join(&o.rel);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if o.secret { 0o600 } else { 0o644 })
            .open(&p)
            .map_err(|e| format!("cannot create {}: {e}", p.display()))?;
        f.write_all(o.text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        imp.report.written.push(o.rel.clone());
        if o.secret {
            imp.report.secrets.push(o.rel.clone());
        }
    }
    Ok(imp.report)
}
