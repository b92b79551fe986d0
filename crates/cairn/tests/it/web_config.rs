//! The config, read-only and redacted: `cairn config show` (text and `--json`), and the
//! web's `GET /api/config` and `/config` page, all from one config file holding every kind
//! of secret the validator lets through; each secret string must appear nowhere.

use crate::webkit::{toml_str, WebServer};
use crate::*;
use std::process::Command;

/// Each secret, unique enough that finding it anywhere is a leak.
const SECRETS: &[&str] = &[
    "AKIA-IT-KEYID-0001",
    "eu-it-region-0002",
    "it-echo-pw-0003",
    "it-pg-0004",
    "it-mysql-0005",
    "it-hook-0006",
    "it-hc-0007",
    "it-topic-0008",
    "it-web-0009",
    "it-tok-0010",
    "it-query-0011",
];

/// Repositories, a source and a plan carrying every secret of [`SECRETS`] (no
/// `[settings]`: the caller writes it).
fn tables(env: &Env) -> String {
    format!(
        "[repositories.nas]\nurl = \"/srv/repo\"\npassword-file = {pw}\n\
         env = {{ AWS_ACCESS_KEY_ID = \"AKIA-IT-KEYID-0001\", AWS_DEFAULT_REGION = \"eu-it-region-0002\" }}\n\
         [repositories.cloud]\nurl = \"rest:https://alice@rest.example.com:8000/cloud/\"\n\
         password-command = \"echo it-echo-pw-0003\"\n\
         [sources.db]\npaths = [\"/var/lib/db\"]\n\
         hooks = {{ before = [\"PGPASSWORD=it-pg-0004 psql -c 'CHECKPOINT'\"] }}\n\
         mysql = {{ databases = [\"app\"], args = [\"--password=it-mysql-0005\"] }}\n\
         [plans.nightly]\nrepository = \"nas\"\nsources = [\"db\"]\n\
         hooks = {{ success = [\"curl -fsS \\\"https://hc-ping.com/it-hook-0006\\\"\"] }}\n\
         notify = {{ healthchecks = \"https://hc-ping.com/it-hc-0007\", ntfy = \"https://ntfy.sh/it-topic-0008\", webhook = \"https://hooks.example.com/services/it-web-0009\" }}\n",
        pw = toml_str(&env.path("pw").to_string_lossy()),
    )
}

const SETTINGS_NOTIFY: &str =
    "[settings.notify]\nntfy = \"https://:it-tok-0010@ntfy.example.com/alerts?auth=it-query-0011\"\n";

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows the secret {s}:\n{text}");
    }
}

fn config_show(config: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run cairn");
    ok(out)
}

#[test]
fn config_show_redacts_every_kind_of_secret_and_keeps_where_passwords_come_from() {
    let env = Env::new();
    let config = env.path("cairn.toml");
    let text = format!("{SETTINGS_NOTIFY}{}", tables(&env));
    std::fs::write(&config, &text).unwrap();
    for s in SECRETS {
        assert!(text.contains(s), "the test config lacks {s}");
    }
    let out = config_show(&config, &["--json", "config", "show", "--offline"]);
    assert_no_secret("config show --json", &out);
    let v = json(&out);
    let nas = &v["repositories"]["nas"];
    assert_eq!(
        nas["password"]["file"],
        env.path("pw").to_string_lossy().as_ref()
    );
    assert_eq!(nas["env"]["AWS_ACCESS_KEY_ID"], "<redacted>");
    assert_eq!(nas["env"]["AWS_DEFAULT_REGION"], "<redacted>");
    assert_eq!(
        v["repositories"]["cloud"]["url"],
        "rest:https://alice@rest.example.com:8000/cloud/"
    );
    assert_eq!(
        v["repositories"]["cloud"]["password"]["command"],
        "echo <redacted>"
    );
    assert_eq!(
        v["plans"]["nightly"]["notify"]["healthchecks"],
        "https://hc-ping.com/<redacted>"
    );
    assert_eq!(
        v["settings"]["notify"]["ntfy"],
        "https://ntfy.example.com/<redacted>"
    );
    assert_eq!(v["files"][0], config.to_string_lossy().as_ref());

    let out = config_show(&config, &["config", "show", "--offline"]);
    assert!(out.contains("nightly"), "{out}");
    assert_no_secret("config show", &out);
}

#[test]
fn config_page_and_api_show_the_redacted_config_to_viewers_only() {
    let env = Env::new();
    let server = WebServer::start(
        &env,
        &format!("{SETTINGS_NOTIFY}{}", tables(&env)),
        &[("victor", "victor-pw", "viewer")],
    );
    let config_text = std::fs::read_to_string(&server.config).unwrap();
    for s in SECRETS {
        assert!(config_text.contains(s), "the server's config lacks {s}");
    }

    // Without a session: refused, and nothing of the config in the answer.
    let anon = server.anon();
    let r = anon.get("/api/config");
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(!r.text().contains("nightly"));
    let r = anon.get("/config");
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/login?next=%2Fconfig"));
    assert!(!r.text().contains("nightly"));

    let victor = server.login("victor", "victor-pw");
    let r = victor.get("/api/config");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_no_secret("GET /api/config", &r.text());
    let api = r.json();
    // The same document as `cairn config show --json` on the same file.
    let cli = json(&config_show(
        &server.config,
        &["--json", "config", "show", "--offline"],
    ));
    assert_eq!(api, cli);
    assert_eq!(api["files"][0], server.config.to_string_lossy().as_ref());
    assert_eq!(api["plans"]["nightly"]["repository"], "nas");
    assert_eq!(api["settings"]["web"]["session-timeout"], "12h");

    let r = victor.get("/config");
    assert_eq!(r.status, 200, "{}", r.text());
    let html = r.text();
    assert_no_secret("the /config page", &html);
    for part in [
        "id=\"plans-nightly\"",
        "id=\"repositories-nas\"",
        "id=\"repositories-cloud\"",
        "id=\"sources-db\"",
        "cairn config check",
        "&lt;redacted&gt;",
        "/var/lib/db",
    ] {
        assert!(html.contains(part), "the page lacks {part}:\n{html}");
    }
    assert!(html.contains(&server.config.to_string_lossy().to_string()));
}
