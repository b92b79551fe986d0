//! Issue 16, point 3: `[settings.web] peers` federates other cairn daemons into one
//! read-only dashboard. Real `cairn web` peers on loopback (one with a good viewer token,
//! one that refuses ours), a dead port, and tiny TCP servers here that answer garbage,
//! hostile markup, or accept and never answer.

use crate::webkit::{toml_str, WebServer};
use crate::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN_B: &str = "fleet-token-b-0123456789abcdef";
const TOKEN_C: &str = "fleet-token-c-0123456789abcdef";
const HOSTILE: &str = "<script>alert('peer')</script>";

fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A peer that is not cairn: it answers every request with `answer` (or, when `None`,
/// accepts and never answers). Counts the connections it accepted.
fn fake_peer(answer: Option<String>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            let Some(answer) = &answer else {
                held.push(conn);
                continue;
            };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    (port, count)
}

fn http_answer(content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A `cairn web` with repository `nas` and plan `photos` (one successful run), whose
/// tokens file holds `token` as a viewer.
fn cairn_peer(env: &Env, token: &str) -> WebServer {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"peer data\n").unwrap();
    ok(env.cairn(&["init"]));
    let tokens = env.path("tokens");
    private_file(&tokens, &format!("fleet viewer {token}\n"));
    let toml = format!(
        "[repositories.nas]\nurl = {repo}\npassword-file = {pw}\n\
         [plans.photos]\nrepository = \"nas\"\npaths = [{src}]\n",
        repo = toml_str(&env.repo().to_string_lossy()),
        pw = toml_str(&env.path("pw").to_string_lossy()),
        src = toml_str(&src.to_string_lossy()),
    );
    let server = WebServer::start_with(
        env,
        &toml,
        &[("admin", "admin-peer-pw", "admin")],
        &format!("tokens-file = {}", toml_str(&tokens.to_string_lossy())),
    );
    ok(env.config_run(&server.config, &["run", "photos"]));
    server
}

fn peer_entry(name: &str, url: &str, token_file: &Path, extra: &str) -> String {
    format!(
        "[[settings.web.peers]]\nname = \"{name}\"\nurl = {}\ntoken-file = {}\n{extra}\n",
        toml_str(url),
        toml_str(&token_file.to_string_lossy()),
    )
}

/// The `<section id="peer-NAME" ...>...</section>` of `name` in `html`.
fn peer_html<'a>(html: &'a str, name: &str) -> &'a str {
    let start = html
        .find(&format!(r#"<section class="peer" id="peer-{name}""#))
        .unwrap_or_else(|| panic!("no section of peer {name} in:\n{html}"));
    let rest = &html[start..];
    &rest[..rest
        .find("</section>")
        .map(|e| e + 10)
        .unwrap_or(rest.len())]
}

#[test]
fn dashboard_federates_peers_read_only_and_shows_each_failure_as_such() {
    let (env_b, env_c, env_a) = (Env::new(), Env::new(), Env::new());
    let b = cairn_peer(&env_b, TOKEN_B);
    let c = cairn_peer(&env_c, TOKEN_C);
    let dead = crate::peers::free_port();
    let (junk, _) = fake_peer(Some(http_answer("text/html", "<html>not a status</html>")));
    let evil_status = serde_json::json!({
        "plans": [{"plan": HOSTILE, "repository": "\"><img src=x onerror=alert(1)>",
                   "last_run": {"started": 1.0, "result": "success"}}],
        "repositories": [{"repository": HOSTILE, "hosts": ["<b>host</b>"]}],
        "jobs": [],
    });
    let (evil, _) = fake_peer(Some(http_answer(
        "application/json",
        &evil_status.to_string(),
    )));
    let (sleepy, sleepy_count) = fake_peer(None);

    // A holds the good token for b and, for c, a token c does not know (b's).
    let good = env_a.path("token-b");
    private_file(&good, &format!("{TOKEN_B}\n"));
    let peers = [
        peer_entry("b", &b.base, &good, ""),
        peer_entry("c", &c.base, &good, ""),
        peer_entry("dead", &format!("http://127.0.0.1:{dead}"), &good, ""),
        peer_entry("junk", &format!("http://127.0.0.1:{junk}/"), &good, ""),
        peer_entry("evil", &format!("http://127.0.0.1:{evil}"), &good, ""),
        peer_entry(
            "sleepy",
            &format!("http://127.0.0.1:{sleepy}"),
            &good,
            "timeout = \"1s\"",
        ),
    ]
    .concat();
    let a = WebServer::start_with(
        &env_a,
        "",
        &[
            ("alice", "alice-fleet-pw", "admin"),
            ("victor", "victor-fleet-pw", "viewer"),
        ],
        &peers,
    );
    let alice = a.login("alice", "alice-fleet-pw");

    // The page answers within a bound though one peer never does.
    let t = Instant::now();
    let r = alice.get("/");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the dashboard took {:?}",
        t.elapsed()
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let html = r.text();

    let pb = peer_html(&html, "b");
    assert!(pb.contains(r#"data-state="ok""#), "{pb}");
    assert!(pb.contains(r#"id="peer-b-plan-photos""#), "{pb}");
    assert!(pb.contains(r#"id="peer-b-repo-nas""#), "{pb}");
    assert!(pb.contains("success"), "b's last run: {pb}");
    assert!(peer_html(&html, "c").contains(r#"data-state="refused""#));
    assert!(peer_html(&html, "dead").contains(r#"data-state="unreachable""#));
    assert!(peer_html(&html, "junk").contains(r#"data-state="bad-answer""#));
    assert!(peer_html(&html, "sleepy").contains(r#"data-state="slow""#));
    let pe = peer_html(&html, "evil");
    assert!(pe.contains(r#"data-state="ok""#), "{pe}");
    assert!(pe.contains("&lt;script&gt;"), "{pe}");
    assert!(!html.contains(HOSTILE), "peer markup reached the page");
    assert!(!html.contains("<img src=x"), "peer markup reached the page");
    assert!(
        !html.contains("<b>host</b>"),
        "peer markup reached the page"
    );

    // Read-only: nothing in the peers' part of the page starts anything here.
    let section = &html[html.find(r#"<section id="peers">"#).expect("peers section")..];
    let section = &section[..section
        .find(r#"<section id="charts">"#)
        .unwrap_or(section.len())];
    for forbidden in ["<form", "<button", "/trigger", "/restore", "href=\"/"] {
        assert!(!section.contains(forbidden), "{forbidden} in:\n{section}");
    }

    // The status API carries the same, as data.
    let v = alice.get("/api/status").json();
    let peers = v["peers"].as_array().unwrap_or_else(|| panic!("{v}"));
    let by = |n: &str| {
        peers
            .iter()
            .find(|p| p["name"] == n)
            .unwrap_or_else(|| panic!("no peer {n} in {v}"))
            .clone()
    };
    let vb = by("b");
    assert_eq!(vb["state"], "ok", "{vb}");
    assert_eq!(vb["status"]["plans"][0]["plan"], "photos", "{vb}");
    assert_eq!(vb["status"]["repositories"][0]["repository"], "nas");
    for (n, state) in [
        ("c", "refused"),
        ("dead", "unreachable"),
        ("junk", "bad-answer"),
        ("sleepy", "slow"),
        ("evil", "ok"),
    ] {
        let p = by(n);
        assert_eq!(p["state"], state, "{p}");
        if state != "ok" {
            assert!(p["error"].as_str().is_some_and(|e| !e.is_empty()), "{p}");
        }
    }
    // b's own answer to A named no peers of b (A asked with ?peers=none).
    assert!(vb["status"].get("peers").is_none(), "{vb}");

    // Page loads are served from the cache: the stalled peer was not asked again each time.
    for _ in 0..3 {
        assert_eq!(alice.get("/").status, 200);
    }
    assert!(
        sleepy_count.load(Ordering::SeqCst) < 5,
        "the stalled peer was asked {} times in 5 loads",
        sleepy_count.load(Ordering::SeqCst)
    );

    // A viewer sees the same, and the token shows nowhere: pages, API, logs.
    let victor = a.login("victor", "victor-fleet-pw");
    let vhtml = victor.get("/").text();
    assert!(peer_html(&vhtml, "b").contains(r#"data-state="ok""#));
    let all = format!("{html}{vhtml}{v}{}{}{}", a.log(), b.log(), c.log());
    assert!(!all.contains(TOKEN_B), "the token leaked");
    assert!(!all.contains(TOKEN_C), "the token leaked");
    let show = String::from_utf8_lossy(&env_a.config_run(&a.config, &["config", "show"]).stdout)
        .into_owned();
    assert!(!show.contains(TOKEN_B), "config show printed the token");
}

#[test]
fn config_check_reports_bad_peer_entries_with_their_lines() {
    let env = Env::new();
    let token = env.path("token");
    private_file(&token, "0123456789abcdef0123\n");
    let t = toml_str(&token.to_string_lossy());
    let main = env.path("cairn.toml");
    let text = format!(
        "[settings]\nstate-dir = {state}\n[settings.web]\n\
         [[settings.web.peers]]\nname = \"nas\"\nurl = \"https://nas.lan:9816\"\ntoken-file = {t}\n\
         [[settings.web.peers]]\nname = \"nas\"\nurl = \"http://other:9816\"\ntoken-file = {t}\n\
         [[settings.web.peers]]\nname = \"ftp\"\nurl = \"ftp://nas.lan\"\ntoken-file = {t}\n\
         [[settings.web.peers]]\nname = \"creds\"\nurl = \"https://u:pw@nas.lan\"\ntoken-file = {t}\n\
         [[settings.web.peers]]\nname = \"bad name!\"\nurl = \"https://x.lan\"\ntoken-file = {t}\n\
         [[settings.web.peers]]\nname = \"slow\"\nurl = \"https://y.lan\"\ntoken-file = {t}\ntimeout = \"5m\"\n\
         [[settings.web.peers]]\nname = \"gone\"\nurl = \"https://z.lan\"\ntoken-file = \"missing-token\"\n",
        state = toml_str(&env.path("state").to_string_lossy()),
    );
    std::fs::write(&main, &text).unwrap();
    let out = env.config_run(&main, &["--json", "config", "check"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    let v = json(&String::from_utf8_lossy(&out.stdout));
    let problems: Vec<(u64, String, bool)> = v["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|p| {
            (
                p["line"].as_u64().unwrap_or(0),
                p["message"].as_str().unwrap_or("").to_string(),
                p["warning"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    let line_of = |needle: &str, nth: usize| {
        text.lines()
            .enumerate()
            .filter(|(_, l)| l.contains(needle))
            .nth(nth)
            .map(|(i, _)| i as u64 + 1)
            .unwrap()
    };
    let has = |line: u64, words: &str| {
        assert!(
            problems
                .iter()
                .any(|(l, m, _)| *l == line && m.contains(words)),
            "no problem {words:?} at line {line}: {problems:?}"
        )
    };
    has(line_of("name = \"nas\"", 1), "listed twice");
    has(line_of("ftp://", 0), "not an http:// or https:// URL");
    has(line_of("u:pw@", 0), "credentials");
    has(line_of("bad name!", 0), "is not a name");
    has(line_of("timeout = \"5m\"", 0), "out of range");
    has(line_of("missing-token", 0), "token-file");
    // The missing token file is a warning (the UI shows the peer as not configured).
    assert!(problems.iter().any(|(_, m, w)| m.contains("gone") && *w));
    // The URL's password is not repeated in the problem, nor in its printed line.
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("u:pw@"),
        "{v}"
    );
    let human = env.config_run(&main, &["config", "check"]);
    assert!(!format!(
        "{}{}",
        stderr(&human),
        String::from_utf8_lossy(&human.stdout)
    )
    .contains("u:pw@"));
    // Offline, the same entries are errors, the file is not looked at.
    let out = env.config_run(&main, &["--json", "config", "check", "--offline"]);
    assert!(!out.status.success());

    // A correct peer passes.
    let good = format!(
        "[settings]\nstate-dir = {state}\n[settings.web]\n\
         peers = [{{ name = \"nas\", url = \"https://nas.lan:9816\", token-file = {t}, timeout = \"2s\" }}]\n",
        state = toml_str(&env.path("state").to_string_lossy()),
    );
    std::fs::write(&main, good).unwrap();
    ok(env.config_run(&main, &["config", "check", "--offline"]));
    let shown = ok(env.config_run(&main, &["--json", "config", "show"]));
    assert!(shown.contains("nas.lan:9816"), "{shown}");
}
