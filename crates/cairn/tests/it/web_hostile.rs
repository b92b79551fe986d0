//! The web server against hostile and broken clients and repositories (issue 12): file
//! names, host names and hook output full of markup on every page; path escapes; bounded
//! work (bodies, previews, event streams); auth corners (open redirects, cross-site posts
//! even to the login, session fixation, logout, methods, path variations, traversal); no
//! secret in the server's log.

use crate::webkit::{form_encode, toml_str, Session, WebServer};
use crate::{json, ok, Env};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const IMG: &str = "<img src=x onerror=alert(1)>";
const QUOTES: &str = "\"'><script>hostile7";
const HOST: &str = "<svg onload=alert(2)>";
const HOOK: &str = "<script>alert(3)</script>hookout";
/// A name with markup and no `"` (restic stores names with one Go-quoted).
const LINK: &str = "q'><script>hostile7";
const CONTENT: &str = "<script>alert(\"content\")</script>";

/// Names of the source: markup, quotes, a CR/LF header injection, not UTF-8.
fn hostile_names() -> Vec<Vec<u8>> {
    vec![
        IMG.as_bytes().to_vec(),
        b"raw\xff\xfe<b>bold".to_vec(),
        b"cr\r\nSet-Cookie: pwned=1".to_vec(),
        b"q\"uote;x.txt".to_vec(),
    ]
}

struct Fixture {
    env: Env,
    src: PathBuf,
    first: String,
    second: String,
    server: WebServer,
}

/// Percent-encodes bytes for a query value.
fn enc(p: &[u8]) -> String {
    let mut out = String::new();
    for &b in p {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn under(src: &Path, name: &[u8]) -> Vec<u8> {
    let mut p = src.as_os_str().as_bytes().to_vec();
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

fn fixture() -> Fixture {
    let env = Env::new();
    let src = env.path("src");
    let dir = src.join(QUOTES);
    std::fs::create_dir_all(&dir).unwrap();
    for name in hostile_names() {
        let p = src.join(std::ffi::OsStr::from_bytes(&name));
        std::fs::write(p, b"hostile\n").unwrap();
    }
    std::fs::write(dir.join("inner.txt"), CONTENT).unwrap();
    // A text file far above the preview's limit.
    std::fs::write(src.join("big.txt"), "line of text\n".repeat(300_000)).unwrap();
    ok(env.cairn(&["init"]));
    let backup = |env: &Env| {
        ok(env.cairn(&[
            "backup",
            "--host",
            HOST,
            "--tag",
            "plan:daily",
            src.to_str().unwrap(),
        ]))
    };
    backup(&env);
    std::fs::write(dir.join("inner.txt"), format!("{CONTENT} changed")).unwrap();
    std::fs::remove_file(src.join(IMG)).unwrap();
    backup(&env);
    let snaps = json(&ok(env.restic(&["snapshots", "--json"])));
    let ids: Vec<String> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    let toml = format!(
        "[repositories.main]\nurl = {repo}\npassword-file = {pw}\n\
         [plans.daily]\nrepository = \"main\"\npaths = [{src}]\n\
         hooks = {{ before = [{hook}] }}\n",
        repo = toml_str(&env.repo().to_string_lossy()),
        pw = toml_str(&env.path("pw").to_string_lossy()),
        src = toml_str(&src.to_string_lossy()),
        hook = toml_str(&format!("echo '{HOOK}'; echo '{HOOK}' >&2")),
    );
    let server = WebServer::start(
        &env,
        &toml,
        &[
            ("alice", "alice-secret-pw", "admin"),
            ("victor", "victor-secret-pw", "viewer"),
        ],
    );
    Fixture {
        first: ids[0].clone(),
        second: ids[1].clone(),
        env,
        src,
        server,
    }
}

/// `GET path` answered 200 with HTML, none of the hostile markup left raw.
#[track_caller]
fn clean_page(s: &Session, path: &str) -> String {
    let r = s.get(path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{path}: {:?}",
        r.header("content-type")
    );
    let t = r.text();
    for raw in [
        "<img src=x",
        "<script>hostile7",
        "\"'>",
        "<svg onload",
        "<script>alert",
        "<b>bold",
    ] {
        assert!(!t.contains(raw), "{path} shows {raw:?} raw:\n{t}");
    }
    t
}

#[test]
fn hostile_names_hosts_contents_and_hook_output_are_escaped_on_every_page() {
    let f = fixture();
    // A run of the plan records the hook's markup in the history and the run's log.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--config")
        .arg(&f.server.config)
        .args(["run", "daily"])
        .env("CAIRN_CACHE_DIR", f.env.path("cache"))
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("RESTIC_PASSWORD_FILE")
        .output()
        .unwrap();
    ok(out);
    let alice = f.server.login("alice", "alice-secret-pw");
    let (a, b) = (&f.first, &f.second);
    let root = enc(f.src.as_os_str().as_bytes());
    let dir = enc(&under(&f.src, QUOTES.as_bytes()));
    let inner = enc(&under(&f.src, format!("{QUOTES}/inner.txt").as_bytes()));
    let mut pages = vec![
        "/".to_string(),
        "/history".to_string(),
        "/snapshots".to_string(),
        "/config".to_string(),
        format!("/browse/main/{a}?path={root}"),
        format!("/browse/main/{b}?path={root}"),
        format!("/browse/main/{b}?path={dir}"),
        format!("/browse/main/{a}/find?q=*"),
        format!("/browse/main/{a}/find?q=%3C"),
        format!("/browse/main/{a}/sizes?path={root}"),
        format!("/browse/main/{b}/file?path={inner}"),
        format!("/versions/main?path={inner}"),
        format!("/diff/main?a={a}&b={b}"),
        format!("/restore/main/{b}?item={inner}"),
    ];
    for name in hostile_names() {
        pages.push(format!(
            "/browse/main/{a}/file?path={}",
            enc(&under(&f.src, &name))
        ));
        pages.push(format!(
            "/versions/main?path={}",
            enc(&under(&f.src, &name))
        ));
    }
    let history = alice.get("/api/history");
    assert_eq!(history.status, 200, "{}", history.text());
    let runs = history.json();
    let run = runs
        .as_array()
        .and_then(|r| r.first())
        .or_else(|| runs["runs"].as_array().and_then(|r| r.first()))
        .cloned()
        .unwrap_or_else(|| panic!("a run in the history: {runs}"));
    pages.push(format!("/runs/{}", run["id"]));
    for p in &pages {
        clean_page(&alice, p);
    }
    // The escaped forms are there: the names were shown, not dropped.
    let t = clean_page(&alice, &format!("/browse/main/{a}?path={root}"));
    assert!(t.contains("&lt;img src=x onerror=alert(1)&gt;"), "{t}");
    assert!(t.contains("&quot;&#39;&gt;&lt;script&gt;hostile7"), "{t}");
    let t = clean_page(&alice, &format!("/browse/main/{b}/file?path={inner}"));
    assert!(
        t.contains("&lt;script&gt;alert(&quot;content&quot;)"),
        "{t}"
    );
    let t = clean_page(&alice, &format!("/runs/{}", run["id"]));
    assert!(
        t.contains("&lt;script&gt;alert(3)&lt;/script&gt;hookout"),
        "{t}"
    );

    // JSON answers are JSON, whatever the names inside.
    for p in [
        format!("/api/repositories/main/snapshots/{a}/ls?path={root}"),
        format!("/api/repositories/main/snapshots/{a}/find?q=*"),
        format!("/api/repositories/main/diff?a={a}&b={b}"),
        "/api/history".to_string(),
        format!("/api/runs/{}", run["id"]),
    ] {
        let r = alice.get(&p);
        assert_eq!(r.status, 200, "{p}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"), "{p}");
        r.json();
    }
    // A preview is plain text, sandboxed, never HTML.
    let r = alice.get(&format!(
        "/api/repositories/main/snapshots/{b}/preview?path={inner}"
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .contains("sandbox"));
    // Downloads of names with CR/LF and quotes: one harmless Content-Disposition, no
    // injected header.
    for name in hostile_names().into_iter().skip(2) {
        let r = alice.get(&format!(
            "/api/repositories/main/snapshots/{a}/download?item={}&format=zip",
            enc(&under(&f.src, &name))
        ));
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.all("set-cookie").is_empty(), "{:?}", r.headers);
        let cd = r.all("content-disposition");
        assert_eq!(cd.len(), 1, "{cd:?}");
        let quoted = cd[0]
            .strip_prefix("attachment; filename=\"")
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{cd:?}"));
        assert!(!quoted.contains(['"', '\r', '\n', ';', '\\']), "{quoted:?}");
    }
}

#[test]
fn previews_of_huge_files_and_catch_all_searches_are_bounded() {
    let f = fixture();
    let victor = f.server.login("victor", "victor-secret-pw");
    let big = enc(&under(&f.src, b"big.txt"));
    let r = victor.get(&format!(
        "/api/repositories/main/snapshots/{}/preview?path={big}",
        f.first
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body.len() <= 256 << 10, "{} bytes", r.body.len());
    assert_eq!(r.header("x-cairn-truncated"), Some("true"));
    let t = clean_page(
        &victor,
        &format!("/browse/main/{}/file?path={big}", f.first),
    );
    assert!(t.len() < 2 << 20, "a preview page of {} bytes", t.len());
    // A catch-all search with an absurd limit answers at most the cap.
    let r = victor.get(&format!(
        "/api/repositories/main/snapshots/{}/find?q=*&limit=99999999999999999999",
        f.first
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = victor.get(&format!(
        "/api/repositories/main/snapshots/{}/find?q=*&limit=1",
        f.first
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let hits = v["hits"]
        .as_array()
        .or_else(|| v.as_array())
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(hits.len(), 1, "{v}");
}

#[test]
fn hostile_paths_in_browse_download_and_restore_are_refused() {
    let f = fixture();
    let alice = f.server.login("alice", "alice-secret-pw");
    let a = &f.first;
    for path in [
        "..",
        "/..",
        "%2F..%2F..%2Fetc%2Fpasswd",
        "//etc",
        "/a%00b",
        "%2e%2e",
    ] {
        for api in ["ls", "node", "preview", "sizes"] {
            let r = alice.get(&format!(
                "/api/repositories/main/snapshots/{a}/{api}?path={path}"
            ));
            assert!(
                r.status == 400 || r.status == 404,
                "{api} {path}: {} {}",
                r.status,
                r.text()
            );
            r.json();
        }
        let r = alice.get(&format!(
            "/api/repositories/main/snapshots/{a}/download?item={path}&format=tar.gz"
        ));
        assert!(r.status == 400 || r.status == 404, "{path}: {}", r.text());
    }
    // Restore targets: relative, with `..`, through a symlink to a place outside, into a
    // pseudo-filesystem: refused, nothing written.
    let outside = f.env.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let link = f.env.path("link");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let proc_link = f.env.path("proc-link");
    std::os::unix::fs::symlink("/proc/self", &proc_link).unwrap();
    let item = String::from_utf8(under(&f.src, b"q\"uote;x.txt")).unwrap();
    for target in [
        "rel".to_string(),
        format!("{}/../x", f.env.path("t").display()),
        "/proc/self".to_string(),
        "/sys/kernel".to_string(),
        "/dev".to_string(),
        "/proc/../proc/self".to_string(),
        proc_link.join("new-dir").display().to_string(),
    ] {
        let r = alice.post_json(
            &format!("/api/repositories/main/snapshots/{a}/restore"),
            &serde_json::json!({"items": [item], "target": target}),
        );
        assert_eq!(r.status, 400, "{target}: {}", r.text());
        r.json();
    }
    // A symlinked target directory is restored into (the CLI's rule: the target is
    // the user's choice), but nothing escapes through a symlink inside it.
    let r = alice.post_json(
        &format!("/api/repositories/main/snapshots/{a}/restore"),
        &serde_json::json!({"items": [item], "target": link.to_str().unwrap()}),
    );
    assert!(r.status < 500, "{}", r.text());
    assert_eq!(f.server.anon().get("/healthz").status, 200);
}

#[test]
fn requests_from_other_sites_are_refused_even_to_the_login() {
    let env = Env::new();
    let server = WebServer::start(&env, "", &[("alice", "alice-secret-pw", "admin")]);
    let anon = server.anon();
    let form = format!(
        "username=alice&password={}&next=%2F",
        form_encode("alice-secret-pw")
    );
    let json_body =
        serde_json::json!({"username": "alice", "password": "alice-secret-pw"}).to_string();
    let host = format!("127.0.0.1:{}", server.port);
    for (name, value) in [
        ("Origin", "https://evil.example"),
        ("Origin", "null"),
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Site", "same-site"),
    ] {
        let r = anon.request(
            "POST",
            "/login",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                (name, value),
            ],
            Some(form.as_bytes()),
        );
        assert_eq!(r.status, 403, "{name}: {value}: {}", r.text());
        assert!(r.all("set-cookie").is_empty());
        let r = anon.request(
            "POST",
            "/api/login",
            &[("Content-Type", "application/json"), (name, value)],
            Some(json_body.as_bytes()),
        );
        assert_eq!(r.status, 403, "{name}: {value}: {}", r.text());
        r.json();
    }
    // A logged-in session's state-changing requests from another site are refused too,
    // even with the token, and the session lives on.
    let alice = server.login("alice", "alice-secret-pw");
    let r = alice.request(
        "POST",
        "/api/logout",
        &[
            ("X-CSRF-Token", &alice.csrf),
            ("Origin", "https://evil.example"),
        ],
        Some(b""),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(alice.get("/api/session").status, 200);
    // The same origin, and clients that send neither header (scripts), are served.
    let origin = format!("http://{host}");
    let r = anon.request(
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", &origin),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        Some(form.as_bytes()),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let r = anon.request(
        "POST",
        "/api/login",
        &[
            ("Content-Type", "application/json"),
            ("Sec-Fetch-Site", "none"),
        ],
        Some(json_body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.try_login("alice", "alice-secret-pw").status, 200);
}

#[test]
fn login_redirects_only_to_local_paths_issues_a_new_session_and_logout_ends_it() {
    let env = Env::new();
    let server = WebServer::start(&env, "", &[("alice", "alice-secret-pw", "admin")]);
    let anon = server.anon();
    for next in [
        "//evil.example/",
        "/\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/%0d%0aSet-Cookie:x=1",
        "\t//evil.example",
    ] {
        let body = format!(
            "username=alice&password=alice-secret-pw&next={}",
            form_encode(next)
        );
        let r = anon.request(
            "POST",
            "/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(body.as_bytes()),
        );
        assert_eq!(r.status, 303, "{next}: {}", r.text());
        let loc = r.header("location").unwrap();
        assert!(
            loc.starts_with('/') && !loc.starts_with("//") && !loc.contains('\\'),
            "{next} -> {loc}"
        );
        assert!(r.all("set-cookie").len() == 1, "{:?}", r.headers);
        let page = anon
            .get(&format!("/login?next={}", form_encode(next)))
            .text();
        assert!(!page.contains("evil.example"), "{next}: {page}");
    }
    // A session id chosen by someone else is never adopted: login issues a new one.
    let planted = "cairn_session=".to_string() + &"a".repeat(64);
    let r = anon.request(
        "POST",
        "/api/login",
        &[("Content-Type", "application/json"), ("Cookie", &planted)],
        Some(
            serde_json::json!({"username": "alice", "password": "alice-secret-pw"})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 200);
    let cookie = r.header("set-cookie").unwrap();
    assert!(!cookie.contains(&"a".repeat(64)), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    // Two logins: two sessions; logging out ends the one logged out, on the server.
    let one = server.login("alice", "alice-secret-pw");
    let two = server.login("alice", "alice-secret-pw");
    assert_ne!(one.cookie, two.cookie);
    assert_ne!(one.csrf, two.csrf);
    let r = one.post_form("/logout", &[]);
    assert_eq!(r.status, 303);
    assert_eq!(
        one.get("/api/session").status,
        401,
        "the old cookie still works"
    );
    assert_eq!(two.get("/api/session").status, 200);
    // A logout without the token does not end the session.
    let r = two.request("POST", "/api/logout", &[], Some(b""));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(two.get("/api/session").status, 200);
}

/// Sends raw `request` on a new connection and returns the status line.
fn raw_status(port: u16, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(2).any(|w| w == b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    text.lines().next().unwrap_or_default().to_string()
}

#[test]
fn protected_routes_refuse_every_method_path_variation_and_traversal() {
    let env = Env::new();
    let server = WebServer::start(&env, "", &[("victor", "victor-secret-pw", "viewer")]);
    let anon = server.anon();
    for method in [
        "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH", "TRACE", "FOO",
    ] {
        for path in [
            "/api/status",
            "/api/session",
            "/api/config",
            "/config",
            "/api/status/",
            "/API/status",
            "/Config",
            "/config/",
            "//config",
            "/api//status",
            "/api/./status",
            "/assets/../config",
            "/assets/..%2F..%2Fconfig",
            "/assets/%2e%2e/config",
            "/api/history?x=/../../",
        ] {
            let line = raw_status(
                server.port,
                format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                    .as_bytes(),
            );
            let status: u16 = line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            assert!(
                status == 0 || (300..500).contains(&status),
                "{method} {path}: {line}"
            );
            assert_ne!(status, 0, "{method} {path}: no answer");
        }
    }
    // Assets are only the embedded files.
    for p in ["/assets/..%2Fweb-cairn.toml", "/assets/%2Fetc%2Fpasswd"] {
        let r = anon.get(p);
        assert_eq!(r.status, 404, "{p}: {}", r.text());
    }
    // A viewer is refused admin actions whatever the method or case.
    let victor = server.login("victor", "victor-secret-pw");
    let r = victor.post_json(
        "/api/plans/x/trigger",
        &serde_json::json!({"operation": "backup"}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
}

#[test]
fn bodies_above_the_limit_are_refused_with_413_and_the_server_lives_on() {
    let env = Env::new();
    let server = WebServer::start(&env, "", &[("alice", "alice-secret-pw", "admin")]);
    let anon = server.anon();
    let huge = vec![b'a'; 8 << 20];
    let r = anon.try_request(
        "POST",
        "/api/login",
        &[("Content-Type", "application/json")],
        Some(&huge),
    );
    // The server may answer early and close: a reset while sending is fine, a 2xx is not.
    if let Ok(r) = r {
        assert_eq!(r.status, 413, "{}", r.text());
    }
    let r = anon.try_request(
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&huge),
    );
    if let Ok(r) = r {
        assert_eq!(r.status, 413, "{}", r.text());
    }
    let alice = server.login("alice", "alice-secret-pw");
    let mut form = b"csrf=".to_vec();
    form.extend_from_slice(alice.csrf.as_bytes());
    form.extend_from_slice(b"&x=");
    form.extend_from_slice(&huge);
    let r = alice.try_request(
        "POST",
        "/logout",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&form),
    );
    if let Ok(r) = r {
        assert_eq!(r.status, 413, "{}", r.text());
    }
    // A huge header or request line: 431 / 414 or a closed connection, never a 2xx.
    let long = "a".repeat(64 << 10);
    let line = raw_status(
        server.port,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {long}\r\n\r\n").as_bytes(),
    );
    assert!(line.is_empty() || line.contains(" 431"), "{line}");
    let line = raw_status(
        server.port,
        format!("GET /healthz?{long} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    );
    assert!(
        line.is_empty() || line.contains(" 431") || line.contains(" 414"),
        "{line}"
    );
    assert_eq!(anon.get("/healthz").status, 200);
    assert_eq!(alice.get("/api/session").status, 200);
}

#[test]
fn many_event_streams_are_capped_and_do_not_starve_the_server() {
    let env = Env::new();
    let server = WebServer::start(&env, "", &[("victor", "victor-secret-pw", "viewer")]);
    let victor = server.login("victor", "victor-secret-pw");
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..80 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = format!(
            "GET /api/events HTTP/1.1\r\nHost: x\r\nCookie: {}\r\n\r\n",
            victor.cookie
        );
        if s.write_all(req.as_bytes()).is_err() {
            refused += 1;
            continue;
        }
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(n) if n > 0 => {
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                if head.starts_with("HTTP/1.1 200") {
                    open.push(s);
                } else {
                    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
                    refused += 1;
                }
            }
            _ => refused += 1,
        }
    }
    assert!(refused > 0, "80 event streams were all served");
    assert!(!open.is_empty(), "no event stream was served");
    // With the streams still open, the server answers others at once.
    let t = Instant::now();
    let r = victor.try_request("GET", "/api/status", &[], None);
    assert!(r.is_ok_and(|r| r.status == 200), "starved by event streams");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(server.anon().get("/healthz").status, 200);
    drop(open);
}

#[test]
fn no_password_hash_cookie_or_csrf_token_reaches_the_log_or_the_history() {
    let f = fixture();
    let _ = f.server.try_login("alice", "wrong-secret-attempt");
    let _ = f.server.try_login("nobody", "alice-secret-pw");
    let alice = f.server.login("alice", "alice-secret-pw");
    let victor = f.server.login("victor", "victor-secret-pw");
    let r = alice.get(&format!(
        "/api/repositories/main/snapshots/{}/download?item={}&format=tar.gz",
        f.first,
        enc(&under(&f.src, b"big.txt"))
    ));
    assert_eq!(r.status, 200);
    let _ = victor.post_json(
        "/api/plans/daily/trigger",
        &serde_json::json!({"operation": "backup"}),
    );
    let audit = alice.get("/api/audit").text();
    let _ = alice.post_form("/logout", &[]);
    let hash = std::fs::read_to_string(f.env.path("web-alice.hash")).unwrap();
    let secrets = [
        "alice-secret-pw",
        "victor-secret-pw",
        "wrong-secret-attempt",
        hash.trim(),
        alice.cookie.trim_start_matches("cairn_session="),
        victor.cookie.trim_start_matches("cairn_session="),
        &alice.csrf,
        &victor.csrf,
    ];
    let log = f.server.log();
    // Every byte the server keeps: the history database, audit rows, job state.
    let mut kept = Vec::new();
    let mut dirs = vec![f.env.path("state")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                kept.extend(std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    assert!(!kept.is_empty(), "no state kept");
    let kept = String::from_utf8_lossy(&kept).into_owned();
    for s in secrets {
        assert!(!log.contains(s), "the log holds a secret:\n{log}");
        assert!(!kept.contains(s), "the state directory holds a secret");
        assert!(!audit.contains(s), "the audit holds a secret");
    }
    // The config page and API redact the hash file's contents and the password file.
    let config = victor.get("/api/config").text();
    assert!(!config.contains(hash.trim()));
}

/// Clients that start downloads and stop reading hold no more than a few of the server's
/// blocking threads: logging in and browsing (which need them) still answer at once.
#[test]
fn stalled_downloads_do_not_starve_logins_or_browsing() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big.bin"), crate::random_bytes(11, 48 << 20)).unwrap();
    ok(env.cairn(&["init"]));
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    let snaps = json(&ok(env.restic(&["snapshots", "--json"])));
    let id = snaps[0]["id"].as_str().unwrap().to_string();
    let toml = format!(
        "[repositories.main]\nurl = {}\npassword-file = {}\n",
        toml_str(&env.repo().to_string_lossy()),
        toml_str(&env.path("pw").to_string_lossy()),
    );
    let server = WebServer::start(&env, &toml, &[("victor", "victor-secret-pw", "viewer")]);
    let victor = server.login("victor", "victor-secret-pw");
    let item = enc(&under(&src, b"big.bin"));
    let mut stalled = Vec::new();
    let mut busy = 0;
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let req = format!(
            "GET /api/repositories/main/snapshots/{id}/download?item={item}&format=tar.gz HTTP/1.1\r\nHost: x\r\nCookie: {}\r\n\r\n",
            victor.cookie
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut head = [0u8; 12];
        if let Err(e) = s.read_exact(&mut head) {
            panic!(
                "download {} got no answer ({e}): the server is starved",
                stalled.len()
            );
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        if head.starts_with("HTTP/1.1 503") {
            busy += 1;
        } else {
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        }
        // Never read further: the server's producer fills the buffers and waits.
        stalled.push(s);
    }
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    let r = server.try_login("victor", "victor-secret-pw");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = victor.get(&format!("/api/repositories/main/snapshots/{id}/ls"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "login and listing took {:?} behind {} stalled downloads",
        t.elapsed(),
        20 - busy
    );
    assert!(busy > 0, "20 downloads at once were all started");
    drop(stalled);
}

/// Parameters a link could carry (repository, snapshot, path, search, plan, next) come
/// back escaped in pages and error pages, and as JSON from the API.
#[test]
fn markup_in_request_parameters_is_never_reflected_raw() {
    let f = fixture();
    let alice = f.server.login("alice", "alice-secret-pw");
    let x = "%22%3E%3Cscript%3Ehostile7";
    let a = &f.first;
    let check = |s: &Session, p: &str| {
        let r = s.get(p);
        let t = r.text();
        if p.starts_with("/api/") {
            // JSON may carry the text as it is: typed JSON, never sniffed as HTML.
            assert_eq!(r.header("content-type"), Some("application/json"), "{p}");
            assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{p}");
            r.json();
            return;
        }
        assert!(
            !t.contains("<script>hostile7") && !t.contains("\"'>"),
            "{p} reflects the markup ({}):\n{t}",
            r.status
        );
        if r.status != 303 {
            assert!(
                r.header("content-type")
                    .is_some_and(|c| c.starts_with("text/html") || c.starts_with("text/plain")),
                "{p}: {:?}",
                r.header("content-type")
            );
        }
    };
    for p in [
        format!("/browse/main/{a}/find?q={x}"),
        format!("/browse/main/{a}?path={x}"),
        format!("/browse/main/{a}?path=%2F{x}"),
        format!("/browse/main/{a}/file?path=%2F{x}"),
        format!("/browse/main/{a}/sizes?path=%2F{x}"),
        format!("/browse/{x}/{a}"),
        format!("/browse/main/{x}"),
        format!("/versions/main?path=%2F{x}"),
        format!("/versions/{x}?path=%2Fa"),
        format!("/diff/main?a={x}&b={a}"),
        format!("/diff/main?a={a}&b={a}&limit={x}"),
        format!("/snapshots?plan={x}&host={x}&path={x}"),
        format!("/history?plan={x}&limit={x}"),
        format!("/runs/{x}"),
        format!("/restore/main/{a}?item={x}"),
        format!("/restore/{x}/{a}?item=%2Fa"),
        format!("/login?next=%2F{x}"),
        format!("/api/repositories/{x}/snapshots"),
        format!("/api/repositories/main/snapshots/{x}/ls"),
        format!("/api/repositories/main/snapshots/{a}/find?q={x}"),
        format!("/api/repositories/main/versions?path=%2F{x}"),
        format!("/api/history?plan={x}&limit={x}"),
        format!("/api/runs/{x}"),
    ] {
        check(&alice, &p);
    }
    let anon = f.server.anon();
    check(&anon, &format!("/login?next=%2F{x}"));
    // POSTed forms echo nothing raw either.
    let r = alice.post_form(
        &format!("/restore/main/{a}"),
        &[
            ("item", "%2F%22%3E%3Cscript%3Ehostile7"),
            ("target", "\"'><script>hostile7"),
            ("action", "preview"),
        ],
    );
    let t = r.text();
    assert!(!t.contains("<script>hostile7"), "{t}");
    let r = anon.request(
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(format!("username={x}&password=x&next=%2F{x}").as_bytes()),
    );
    assert_eq!(r.status, 401);
    assert!(!r.text().contains("<script>hostile7"), "{}", r.text());
}

/// A tree node of a crafted snapshot (restic's JSON; names as restic stores them).
fn node(name: &str, kind: &str, extra: serde_json::Value) -> serde_json::Value {
    const TIME: &str = "2020-09-13T14:26:40.123456789+02:00";
    let mut n = serde_json::json!({"name": name, "type": kind, "mode": 0o640, "mtime": TIME,
        "atime": TIME, "ctime": TIME, "uid": 0, "gid": 0, "links": 1, "content": null});
    for (k, v) in extra.as_object().unwrap() {
        n[k] = v.clone();
    }
    n
}

/// A snapshot written straight through cairn-repo: names no file system would give
/// (`..`, `a/b`), markup in names and in a symlink's target, a symlink to /etc/passwd.
fn hostile_repository(env: &Env) -> String {
    use cairn_repo::pack::BlobType;
    use cairn_repo::writer::PackWriter;
    ok(env.cairn(&["init"]));
    let repo = cairn_repo::repository::Repository::open(
        std::sync::Arc::new(cairn_repo::backend::local::LocalBackend::new(env.repo())),
        crate::PASSWORD,
    )
    .unwrap();
    let index = repo.load_index().unwrap();
    let writer = PackWriter::new(&repo, &index);
    let save = |t: BlobType, bytes: &[u8]| writer.save(t, bytes).unwrap().0;
    let tree = |nodes: Vec<serde_json::Value>| {
        let mut b = serde_json::to_vec(&serde_json::json!({ "nodes": nodes })).unwrap();
        b.push(b'\n');
        b
    };
    let data = save(BlobType::Data, b"crafted data\n");
    let file = |name: &str| {
        node(
            name,
            "file",
            serde_json::json!({"size": 13, "content": [data.to_hex()]}),
        )
    };
    let inner = save(BlobType::Tree, &tree(vec![file("g.txt")]));
    let root = save(
        BlobType::Tree,
        &tree(vec![
            file("ok.txt"),
            file("a/b"),
            file(".."),
            file("..\\x2f..\\x2fescape"),
            file(IMG),
            node(
                "passwd-link",
                "symlink",
                serde_json::json!({"linktarget": "/etc/passwd"}),
            ),
            node(
                LINK,
                "symlink",
                serde_json::json!({"linktarget": "<script>alert(9)</script>"}),
            ),
            node(
                "sub",
                "dir",
                serde_json::json!({"mode": 2147484141u32, "subtree": inner.to_hex()}),
            ),
        ]),
    );
    writer.finish().unwrap();
    let mut snap: cairn_repo::snapshot::Snapshot = serde_json::from_value(serde_json::json!({
        "time": "2020-09-13T14:26:40+02:00", "tree": root.to_hex(), "paths": ["/crafted"],
        "hostname": HOST,
    }))
    .unwrap();
    snap.save(&repo).unwrap();
    let snaps = json(&ok(env.restic(&["snapshots", "--json"])));
    snaps[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn a_hostile_repository_cannot_inject_markup_or_escape_through_downloads_and_restores() {
    let env = Env::new();
    let id = hostile_repository(&env);
    let toml = format!(
        "[repositories.main]\nurl = {}\npassword-file = {}\n",
        toml_str(&env.repo().to_string_lossy()),
        toml_str(&env.path("pw").to_string_lossy()),
    );
    let server = WebServer::start(&env, &toml, &[("alice", "alice-secret-pw", "admin")]);
    let alice = server.login("alice", "alice-secret-pw");
    for p in [
        "/snapshots".to_string(),
        format!("/browse/main/{id}"),
        format!("/browse/main/{id}?path=%2F"),
        format!("/browse/main/{id}/find?q=*"),
        format!("/browse/main/{id}/sizes"),
        format!("/browse/main/{id}/file?path=%2Fpasswd-link"),
        format!(
            "/browse/main/{id}/file?path={}",
            enc(format!("/{LINK}").as_bytes())
        ),
        format!("/versions/main?path={}", enc(format!("/{LINK}").as_bytes())),
    ] {
        let t = clean_page(&alice, &p);
        assert!(
            !t.contains("root:x:0"),
            "{p} shows the server's /etc/passwd"
        );
    }
    let r = alice.get(&format!(
        "/api/repositories/main/snapshots/{id}/preview?path=%2Fpasswd-link"
    ));
    assert!(!r.text().contains("root:x:0"), "{}", r.text());
    // Archives of the whole snapshot: no entry that climbs out or is absolute.
    let scratch = env.path("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    for format in ["tar.gz", "zip"] {
        let r = alice.get(&format!(
            "/api/repositories/main/snapshots/{id}/download?item=%2Fsub&item=%2Fok.txt&item=%2Fpasswd-link&format={format}"
        ));
        assert_eq!(r.status, 200, "{format}: {}", r.text());
        let file = scratch.join(format!("a.{format}"));
        std::fs::write(&file, &r.body).unwrap();
        let listed = if format == "zip" {
            std::process::Command::new("python3")
                .args([
                    "-c",
                    "import sys,zipfile\nfor n in zipfile.ZipFile(sys.argv[1]).namelist(): print(n)",
                ])
                .arg(&file)
                .output()
                .unwrap()
        } else {
            std::process::Command::new("tar")
                .arg("-tzf")
                .arg(&file)
                .output()
                .unwrap()
        };
        let names = ok(listed);
        assert!(
            names.contains("g.txt") && names.contains("ok.txt"),
            "{names}"
        );
        for n in names.lines() {
            assert!(
                !n.starts_with('/') && !n.split('/').any(|c| c == ".."),
                "{format} entry {n:?}"
            );
        }
    }
    // Picking a name that cannot be a path component is refused, not resolved elsewhere.
    for bad in ["%2Fa%2Fb", "%2F..", "%2F..%2F..%2Fetc%2Fpasswd"] {
        let r = alice.get(&format!(
            "/api/repositories/main/snapshots/{id}/download?item={bad}&format=zip"
        ));
        assert!(r.status == 400 || r.status == 404, "{bad}: {}", r.status);
    }
    // A restore of everything writes only below the target.
    let target = env.path("restore/target");
    let r = alice.post_json(
        &format!("/api/repositories/main/snapshots/{id}/restore"),
        &serde_json::json!({"items": [], "target": target.to_str().unwrap()}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        std::fs::read(target.join("ok.txt")).unwrap(),
        b"crafted data\n"
    );
    assert!(target.join("sub/g.txt").exists());
    let parent: Vec<_> = std::fs::read_dir(env.path("restore"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(parent, [std::ffi::OsString::from("target")], "{parent:?}");
    assert!(!env.path("escape").exists() && !env.dir.path().join("b").exists());
    assert_eq!(server.anon().get("/healthz").status, 200);
}

/// A client that sends a request body one byte now and then (never idle long enough for
/// the idle timeout) is cut off after the body deadline instead of holding its slot.
#[test]
fn a_trickled_request_body_is_cut_off() {
    let env = Env::new();
    let server = WebServer::start(&env, "", &[("alice", "alice-secret-pw", "admin")]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
    )
    .unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "a trickled body held the connection for {:?}",
            start.elapsed()
        );
        if s.write_all(b" ").is_err() {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
        std::thread::sleep(Duration::from_millis(800));
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "{answer}"
    );
    assert!(
        start.elapsed() >= Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.try_login("alice", "alice-secret-pw").status, 200);
}
