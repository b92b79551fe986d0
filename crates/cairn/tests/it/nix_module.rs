//! Issue 16, point 2: the NixOS module (nix/module.nix) and the flake, evaluated with
//! Debian's `nix-bin` (`nix-instantiate`) against the module-system stub of
//! nix/tests/stub.nix. What is checked: the generated cairn.toml passes `cairn config check
//! --offline`; the daemon's unit has the sandbox of `cairn systemd generate` (every
//! directive, the same writable paths, the same credentials) and systemd accepts it; the
//! module refuses an inline password and a secret in the Nix store; the flake's outputs.
//!
//! Not checked here, and said plainly: a NixOS VM test (nixosTest) cannot run on this
//! machine: it needs nixpkgs (no network to fetch it) and KVM. The package is not built
//! either (rustPlatform needs nixpkgs); its attributes are evaluated.
//!
//! nix-instantiate runs without a daemon and writes nothing outside the test's directory:
//! `--store dummy://` (paths are computed, nothing is stored), NIX_STATE_DIR, NIX_CONF_DIR
//! and HOME in the test's directory.

use crate::{sh_out, write_file, Env};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn nix_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../nix")
}

/// Whether `nix-instantiate` is here; in CI it must be (scripts/test.sh installs nix-bin).
fn have_nix() -> bool {
    let ok = Command::new("nix-instantiate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "nix-instantiate is needed in CI: apt-get install nix-bin"
        );
        eprintln!("SKIPPED: nix-instantiate is missing (apt-get install nix-bin); the NixOS module is not evaluated");
    }
    ok
}

/// `nix-instantiate --eval --strict --json FILE --argstr K V...` with nothing written
/// outside `env`'s directory: the JSON, or the error output.
fn nix_eval(env: &Env, file: &str, args: &[(&str, &str)]) -> Result<Value, String> {
    let mut c = Command::new("nix-instantiate");
    c.args(["--store", "dummy://", "--eval", "--strict", "--json"])
        .arg(nix_dir().join(file));
    for (k, v) in args {
        c.args(["--argstr", k, v]);
    }
    let nix = env.path("nix");
    std::fs::create_dir_all(nix.join("conf")).unwrap();
    let out = c
        .env("HOME", &nix)
        .env("NIX_STATE_DIR", nix.join("state"))
        .env("NIX_CONF_DIR", nix.join("conf"))
        .env("NIX_PATH", "")
        .output()
        .expect("run nix-instantiate");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("nix-instantiate --json prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The evaluation of one case of nix/tests/eval.nix, the package's cairn being this
/// test's binary (`PKG/bin/cairn`).
fn eval_case(env: &Env, case: &str) -> Result<Value, String> {
    let dir = env.dir.path().display().to_string();
    let pkg = package(env).display().to_string();
    nix_eval(
        env,
        "tests/eval.nix",
        &[("dir", &dir), ("package", &pkg), ("case", case)],
    )
}

fn package(env: &Env) -> PathBuf {
    let pkg = env.path("pkg");
    let bin = pkg.join("bin/cairn");
    if !bin.exists() {
        std::fs::create_dir_all(pkg.join("bin")).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_cairn"), &bin).unwrap();
    }
    pkg
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string: {v:#}"))
}

/// Every file nix/tests/example.nix names, so that `config check` can read them.
fn example_files(env: &Env) {
    for (name, text) in [
        ("secrets/usb.pass", "usb password\n"),
        ("secrets/offsite.pass", "offsite password\n"),
        (
            "secrets/offsite.env",
            "AWS_ACCESS_KEY_ID=GK0000\nAWS_SECRET_ACCESS_KEY=secret\n",
        ),
        ("data/hass/configuration.yaml", "homeassistant:\n"),
        ("data/photos/a.jpg", "jpeg"),
        ("data/home/notes.txt", "notes"),
    ] {
        write_file(&env.path(name), text);
    }
    let db = env.path("data/hass/home-assistant_v2.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("create table t(x); insert into t values (1);")
        .unwrap();
    for user in ["alice", "bob"] {
        let hash = sh_out(&format!(
            "printf 'pw-of-{user}\\n' | {} web hash-password",
            env!("CARGO_BIN_EXE_cairn")
        ));
        write_file(&env.path(&format!("secrets/{user}.hash")), &hash);
    }
    for d in ["cache", "state", "prom", "usb disk/restic"] {
        std::fs::create_dir_all(env.path(d)).unwrap();
    }
}

/// The `[Service]` settings of a unit file: key → values (a key may repeat).
fn directives(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in unit.lines() {
        if line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.entry(k.to_string()).or_default().push(v.to_string());
        }
    }
    out
}

/// The words of ReadWritePaths= lines: `-/path` or `"-/path with space"`.
fn unit_words(values: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for v in values {
        let mut rest = v.trim();
        while !rest.is_empty() {
            let (word, tail) = if let Some(r) = rest.strip_prefix('"') {
                let end = r.find('"').expect("closing quote");
                (&rest[..end + 2], &r[end + 1..])
            } else {
                rest.split_once(' ').unwrap_or((rest, ""))
            };
            out.insert(word.to_string());
            rest = tail.trim_start();
        }
    }
    out
}

/// The module's service as a unit file, as NixOS writes it (a list repeats its key).
fn render_unit(v: &Value) -> String {
    let mut u = String::from("[Unit]\nDescription=cairn backup daemon\n");
    for w in v["after"].as_array().unwrap() {
        u.push_str(&format!("After={}\n", w.as_str().unwrap()));
    }
    for w in v["wants"].as_array().unwrap() {
        u.push_str(&format!("Wants={}\n", w.as_str().unwrap()));
    }
    u.push_str("\n[Service]\n");
    for (k, val) in v["environment"].as_object().unwrap() {
        u.push_str(&format!("Environment=\"{k}={}\"\n", val.as_str().unwrap()));
    }
    for (k, val) in v["serviceConfig"].as_object().unwrap() {
        match val {
            Value::Array(a) => {
                for x in a {
                    u.push_str(&format!("{k}={}\n", x.as_str().unwrap()));
                }
            }
            Value::String(x) => u.push_str(&format!("{k}={x}\n")),
            other => u.push_str(&format!("{k}={other}\n")),
        }
    }
    u.push_str("\n[Install]\nWantedBy=multi-user.target\n");
    u
}

#[test]
fn nix_module_config_passes_config_check_and_its_unit_has_the_sandbox_of_systemd_generate() {
    if !have_nix() {
        return;
    }
    let env = Env::new();
    example_files(&env);
    let v = eval_case(&env, "example").unwrap_or_else(|e| panic!("evaluation failed:\n{e}"));
    let text = s(&v, "text");
    assert_eq!(
        text,
        s(&v, "etcText"),
        "/etc/cairn/cairn.toml is the generated text"
    );

    // The generated config is one cairn accepts.
    let config = env.path("etc/cairn.toml");
    write_file(&config, text);
    let out = env.config_run(&config, &["config", "check", "--offline"]);
    assert!(
        out.status.success(),
        "config check of the module's cairn.toml:\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = env.config_run(&config, &["config", "show", "--json"]);
    let shown: Value = serde_json::from_slice(&shown.stdout).expect("config show --json");
    let plans: BTreeSet<&str> = shown["plans"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(plans, BTreeSet::from(["docs", "nightly"]), "{shown:#}");
    assert_eq!(
        shown["settings"]["web"]["users"].as_object().unwrap().len(),
        2,
        "{shown:#}"
    );

    // `cairn systemd generate` on the same config, with the module's cache directory.
    let units = env.path("units");
    let out = env
        .config_cmd(&config, &["systemd", "generate", "--dir"])
        .arg(&units)
        .env("CAIRN_CACHE_DIR", env.path("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sc = &v["serviceConfig"];
    let mut generated_paths = BTreeSet::new();
    let mut generated_credentials = BTreeSet::new();
    for plan in ["nightly", "docs"] {
        let unit = std::fs::read_to_string(units.join(format!("cairn-{plan}.service"))).unwrap();
        let d = directives(&unit);
        // Every sandbox directive of the generated unit is in the module's, same value.
        for key in [
            "ProtectSystem",
            "ProtectHome",
            "PrivateTmp",
            "NoNewPrivileges",
            "ProtectKernelTunables",
            "ProtectKernelModules",
            "ProtectControlGroups",
            "RestrictSUIDSGID",
            "LockPersonality",
            "RestrictRealtime",
            "KillMode",
            "TimeoutStopSec",
        ] {
            let want = d.get(key).unwrap_or_else(|| panic!("{key} not in\n{unit}"));
            assert_eq!(
                sc[key].as_str(),
                Some(want[0].as_str()),
                "{key}: the module's service differs from `cairn systemd generate`:\n{unit}"
            );
        }
        // The sandbox list of the generator is exactly the one in systemd.rs's `sandbox`:
        // a directive added there must be added to the module too.
        let sandbox_keys: BTreeSet<&str> = d
            .keys()
            .map(String::as_str)
            .filter(|k| {
                k.starts_with("Protect")
                    || k.starts_with("Restrict")
                    || k.starts_with("Private")
                    || k.starts_with("NoNew")
                    || k.starts_with("Lock")
            })
            .collect();
        for k in sandbox_keys {
            assert!(
                sc.get(k).is_some(),
                "{k} of `cairn systemd generate` is missing from the module"
            );
        }
        // The same shape of command line: the executable, --config, the subcommand.
        let exec = &d["ExecStart"][0];
        assert!(
            exec.starts_with(&format!(
                "{} --config {} run {plan}",
                env!("CARGO_BIN_EXE_cairn"),
                config.display()
            )),
            "{exec}"
        );
        generated_paths.extend(unit_words(d.get("ReadWritePaths").unwrap()));
        for c in d.get("LoadCredential").into_iter().flatten() {
            generated_credentials.insert(c.clone());
        }
    }
    // The daemon runs every plan: it writes the union of what their units write.
    let module_paths: BTreeSet<String> = sc["ReadWritePaths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    // On Btrfs the generator names the subvolume's snapshot directory (it can look); the
    // module, evaluated before the machine exists, names every one above the path.
    let on_btrfs = sh_out(&format!("stat -f -c %T {}", env.dir.path().display())) == "btrfs";
    let module_paths: BTreeSet<String> = module_paths
        .into_iter()
        .filter(|p| !(on_btrfs && p.contains(".cairn-snapshots")))
        .collect();
    generated_paths.retain(|p| !(on_btrfs && p.contains(".cairn-snapshots")));
    let covered: BTreeSet<String> = generated_paths
        .iter()
        .filter(|p| {
            let bare = p.trim_matches('"').trim_start_matches('-');
            !generated_paths.iter().any(|o| {
                let ob = o.trim_matches('"').trim_start_matches('-');
                ob != bare && Path::new(bare).starts_with(ob)
            })
        })
        .cloned()
        .collect();
    assert_eq!(
        module_paths, covered,
        "ReadWritePaths of the module vs the generated units"
    );
    assert!(
        module_paths.contains(&format!("\"-{}\"", env.path("usb disk/restic").display())),
        "a path with a space is quoted as systemd.rs quotes it: {module_paths:?}"
    );
    let module_credentials: BTreeSet<String> = sc["LoadCredential"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().split(':').next().unwrap().to_string())
        .collect();
    assert_eq!(module_credentials, generated_credentials);
    assert_eq!(
        sc["LoadCredential"][0].as_str().unwrap(),
        format!("offsite-env:{}", env.path("secrets/offsite.env").display()),
        "services.cairn.credentials gives the credential's file"
    );

    // The daemon: this package's cairn, the installed config, as the cairn user reading
    // every file through CAP_DAC_READ_SEARCH alone.
    assert_eq!(
        s(sc, "ExecStart"),
        format!(
            "{}/bin/cairn --config /etc/cairn/cairn.toml daemon",
            package(&env).display()
        )
    );
    assert_eq!(s(sc, "User"), "cairn");
    assert_eq!(s(sc, "Group"), "cairn");
    assert_eq!(
        sc["AmbientCapabilities"],
        serde_json::json!(["CAP_DAC_READ_SEARCH"])
    );
    assert_eq!(
        sc["CapabilityBoundingSet"],
        serde_json::json!(["CAP_DAC_READ_SEARCH"])
    );
    assert_eq!(
        s(&v["environment"], "CAIRN_CACHE_DIR"),
        env.path("cache").display().to_string()
    );
    let user = &v["users"]["users"]["cairn"];
    assert_eq!(user["isSystemUser"], Value::Bool(true), "{v:#}");
    assert_eq!(s(user, "group"), "cairn");
    assert!(v["users"]["groups"].get("cairn").is_some(), "{v:#}");
    let tmpfiles: Vec<&str> = v["tmpfiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tmpfiles
            .contains(&format!("d {} 0700 cairn cairn -", env.path("state").display()).as_str()),
        "{tmpfiles:?}"
    );
    assert_eq!(
        v["firewall"],
        serde_json::json!([9816]),
        "openFirewall opens the web port"
    );
    assert_eq!(
        v["warnings"],
        serde_json::json!([
            "services.cairn: btrfs/zfs/lvm snapshots need root: set services.cairn.user = \"root\"."
        ]),
        "a Btrfs snapshot source as the cairn user"
    );

    // systemd accepts the unit as NixOS would write it.
    let unit = env.path("rendered/cairn.service");
    write_file(&unit, &render_unit(&v));
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze (systemd) is needed to verify the unit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let about: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("cairn.service"))
        .collect();
    assert!(
        out.status.success() && about.is_empty(),
        "systemd-analyze verify: {stderr}\n{}",
        std::fs::read_to_string(&unit).unwrap()
    );
}

#[test]
fn nix_module_defaults_state_in_var_lib_cairn_and_root_drops_the_capability() {
    if !have_nix() {
        return;
    }
    let env = Env::new();
    let v = eval_case(&env, "minimal").unwrap_or_else(|e| panic!("{e}"));
    let text = s(&v, "text");
    let doc: toml::Value = toml::from_str(text).expect("the generated file is TOML");
    assert_eq!(
        doc["settings"]["state-dir"].as_str(),
        Some("/var/lib/cairn"),
        "{text}"
    );
    assert!(
        doc["settings"].get("web").is_none(),
        "no web UI unless configured: {text}"
    );
    let sc = &v["serviceConfig"];
    assert_eq!(s(sc, "StateDirectory"), "cairn");
    assert_eq!(s(sc, "StateDirectoryMode"), "0700");
    assert_eq!(s(sc, "CacheDirectory"), "cairn");
    assert_eq!(s(sc, "CacheDirectoryMode"), "0700");
    assert_eq!(s(sc, "User"), "cairn");
    let rw: Vec<&str> = sc["ReadWritePaths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(rw, ["-/srv/backup/restic", "-/var/lib/cairn"]);
    assert_eq!(s(&v["environment"], "CAIRN_CACHE_DIR"), "/var/cache/cairn");
    assert!(v["firewall"].is_null(), "no port opened by default: {v:#}");
    assert!(
        v["tmpfiles"]
            .as_array()
            .unwrap()
            .contains(&Value::from("d /var/lib/cairn 0700 cairn cairn -")),
        "{v:#}"
    );

    let v = eval_case(&env, "root").unwrap_or_else(|e| panic!("{e}"));
    let sc = &v["serviceConfig"];
    assert_eq!(s(sc, "User"), "root");
    assert!(sc.get("AmbientCapabilities").is_none(), "{sc:#}");
    assert!(v["users"]["users"].get("cairn").is_none(), "{v:#}");
}

#[test]
fn nix_module_refuses_an_inline_password_and_a_secret_in_the_store() {
    if !have_nix() {
        return;
    }
    let env = Env::new();
    let err = eval_case(&env, "inline-password").expect_err("an inline password must be refused");
    assert!(err.contains("Failed assertions"), "{err}");
    assert!(
        err.contains(
            "services.cairn.repositories.offsite.password: passwords never go in the config"
        ),
        "{err}"
    );
    assert!(
        !err.contains("hunter2-inline-secret"),
        "the secret is never printed: {err}"
    );

    let err = eval_case(&env, "store-secret").expect_err("a secret in the store must be refused");
    assert!(
        err.contains("services.cairn.repositories.usb.password-file")
            && err.contains("outside the Nix store"),
        "{err}"
    );
    assert!(
        err.contains("services.cairn.settings.web.peers (nas).token-file"),
        "a peer's token file is a secret too: {err}"
    );
}

#[test]
fn flake_exposes_the_module_with_its_overlay_and_the_package_from_cargo_lock() {
    if !have_nix() {
        return;
    }
    let env = Env::new();
    let v = eval_case(&env, "flake").unwrap_or_else(|e| panic!("{e}"));
    let example = eval_case(&env, "example").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        v["text"], example["text"],
        "the flake's module is nix/module.nix"
    );
    for key in ["package", "overlayPackage"] {
        let p = &v[key];
        assert_eq!(s(p, "pname"), "cairn");
        assert_eq!(
            s(p, "version"),
            env!("CARGO_PKG_VERSION"),
            "version from Cargo.toml"
        );
        assert!(s(p, "lockFile").ends_with("/Cargo.lock"), "{p:#}");
        assert_eq!(p["doCheck"], Value::Bool(false));
        assert_eq!(p["cargoBuildFlags"], serde_json::json!(["-p", "cairn"]));
    }
    // nixosModules.default brings the overlay: the package defaults to the flake's.
    let exec = s(&v["serviceConfig"], "ExecStart");
    assert!(
        exec.starts_with(&format!(
            "/nix/store/stub-cairn-{}/bin/cairn ",
            env!("CARGO_PKG_VERSION")
        )),
        "{exec}"
    );
}

#[test]
fn nix_toml_writer_output_parses_back_to_the_same_value() {
    if !have_nix() {
        return;
    }
    let env = Env::new();
    let v = nix_eval(&env, "tests/toml.nix", &[]).unwrap_or_else(|e| panic!("{e}"));
    let text = s(&v, "toml");
    let parsed: toml::Value =
        toml::from_str(text).unwrap_or_else(|e| panic!("not TOML: {e}\n{text}"));
    assert_eq!(
        parsed["float"],
        toml::Value::Float(1.0),
        "a whole float stays a float"
    );
    let mut got = serde_json::to_value(&parsed).unwrap();
    let mut want: Value = serde_json::from_str(s(&v, "json")).unwrap();
    got.as_object_mut().unwrap().remove("float");
    want.as_object_mut().unwrap().remove("float");
    assert_eq!(got, want, "{text}");
}
