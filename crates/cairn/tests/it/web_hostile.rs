//! The web server against hostile repositories and request parameters (issue 12): file
//! names, host names, contents and hook output full of markup on every page; parameters
//! never reflected raw; path escapes in browse, download and restore; bounded previews and
//! searches; no secret in the server's log. Hostile clients: `web_clients.rs`.

use crate::webkit::{percent_encode as enc, toml_str, under, Session, WebServer};
use crate::{json, ok, Env};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

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
