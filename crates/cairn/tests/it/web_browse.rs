//! The snapshot browser (issue 12): every browse route of the API checked against the real
//! restic (`ls --json`, `find --json`, `diff`) on a repository holding a snapshot made by
//! restic and one made by cairn; the pages; hostile parameters; and a directory of a
//! 100,000-file snapshot listed quickly (the figures themselves: scripts/bench-web.sh).

use crate::webkit::{toml_str, Session, WebServer};
use crate::{json, make_source, ok, Env};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// `[repositories.main]` over the env's repository.
fn repo_toml(env: &Env, name: &str, repo: &Path) -> String {
    format!(
        "[repositories.{name}]\nurl = {}\npassword-file = {}\n",
        toml_str(&repo.to_string_lossy()),
        toml_str(&env.path("pw").to_string_lossy())
    )
}

/// Percent-encodes a path for `?path=` (every byte but unreserved ones and `/`).
fn enc(p: &str) -> String {
    let mut out = String::new();
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// restic's `ls --json` of a snapshot: its nodes by path.
fn restic_ls(env: &Env, snap: &str) -> BTreeMap<String, serde_json::Value> {
    ok(env.restic(&["ls", "--json", snap]))
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["struct_type"] == "node")
        .map(|v| (v["path"].as_str().unwrap_or_default().to_string(), v))
        .collect()
}

fn parent(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) => "/",
        Some(i) => &p[..i],
        None => "/",
    }
}

/// A repository with a snapshot by restic (source A) and one by cairn (source B: a file
/// changed, one removed, a directory added, an image and a binary file).
struct Fixture {
    env: Env,
    src: std::path::PathBuf,
    first: String,
    second: String,
}

fn fixture() -> Fixture {
    let env = Env::new();
    let src = env.path("src");
    make_source(&src);
    std::fs::write(src.join("docs/notes.txt"), b"first version\n").unwrap();
    ok(env.restic(&["init"]));
    ok(env.restic(&[
        "backup",
        "--host",
        "h1",
        "--tag",
        "plan:daily",
        src.to_str().unwrap(),
    ]));
    std::fs::write(src.join("docs/notes.txt"), b"second version, longer\n").unwrap();
    std::fs::remove_file(src.join("secret.key")).unwrap();
    std::fs::create_dir_all(src.join("new-dir/inner")).unwrap();
    std::fs::write(src.join("new-dir/inner/Report-2024.TXT"), b"report\n").unwrap();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(crate::random_bytes(7, 300));
    std::fs::write(src.join("new-dir/pic.png"), &png).unwrap();
    std::fs::write(src.join("new-dir/blob.bin"), crate::random_bytes(8, 5000)).unwrap();
    ok(env.cairn(&[
        "backup",
        "--host",
        "h1",
        "--tag",
        "plan:daily",
        src.to_str().unwrap(),
    ]));
    let snaps = json(&ok(env.restic(&["snapshots", "--json"])));
    let ids: Vec<String> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    Fixture {
        first: ids[0].clone(),
        second: ids[1].clone(),
        env,
        src,
    }
}

fn start(f: &Fixture) -> (WebServer, Session) {
    let server = WebServer::start(
        &f.env,
        &repo_toml(&f.env, "main", &f.env.repo()),
        &[("victor", "victor-pw", "viewer")],
    );
    let s = server.login("victor", "victor-pw");
    (server, s)
}

#[test]
fn browse_api_answers_like_restic_on_snapshots_by_restic_and_by_cairn() {
    let f = fixture();
    let (_server, s) = start(&f);

    // Snapshots: the same ids as restic, oldest first, with their plan.
    let r = s.get("/api/repositories/main/snapshots");
    assert_eq!(r.status, 200, "{}", r.text());
    let list = r.json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [f.first.as_str(), f.second.as_str()]);
    assert_eq!(list[0]["plan"], "daily");
    let r = s.get("/api/repositories/main/snapshots?plan=other");
    assert_eq!(r.json().as_array().unwrap().len(), 0);
    let r = s.get("/api/repositories/main/snapshots?host=h1&plan=daily");
    assert_eq!(r.json().as_array().unwrap().len(), 2);

    for snap in [&f.first, &f.second] {
        let nodes = restic_ls(&f.env, snap);
        // Every directory restic lists, listed through the API: the same children with the
        // same type, size, permissions and mtime.
        let mut dirs: BTreeSet<&str> = nodes
            .iter()
            .filter(|(_, v)| v["type"] == "dir")
            .map(|(p, _)| p.as_str())
            .collect();
        dirs.insert("/");
        for dir in dirs {
            let r = s.get(&format!(
                "/api/repositories/main/snapshots/{}/ls?path={}",
                &snap[..8],
                enc(dir)
            ));
            assert_eq!(r.status, 200, "{dir}: {}", r.text());
            let got: BTreeMap<String, (String, Option<u64>, String, String)> = r.json()["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["path"].as_str().unwrap().to_string(),
                        (
                            e["type"].as_str().unwrap().to_string(),
                            (e["type"] == "file").then(|| e["size"].as_u64().unwrap()),
                            e["permissions"].as_str().unwrap().to_string(),
                            e["mtime"].as_str().unwrap().to_string(),
                        ),
                    )
                })
                .collect();
            let want: BTreeMap<String, (String, Option<u64>, String, String)> = nodes
                .iter()
                .filter(|(p, _)| parent(p) == dir && p.as_str() != "/")
                .map(|(p, v)| {
                    (
                        p.clone(),
                        (
                            v["type"].as_str().unwrap().to_string(),
                            v["size"].as_u64(),
                            v["permissions"].as_str().unwrap().to_string(),
                            v["mtime"].as_str().unwrap().to_string(),
                        ),
                    )
                })
                .collect();
            assert!(!want.is_empty() || dir.ends_with("empty-dir"), "{dir}");
            assert_eq!(got, want, "listing of {dir} in {snap}");
        }

        // Node metadata of the unicode file, like restic's.
        let (upath, uwant) = nodes
            .iter()
            .find(|(p, _)| p.ends_with("ünïcødé <&> name.txt"))
            .expect("unicode name listed");
        let r = s.get(&format!(
            "/api/repositories/main/snapshots/{snap}/node?path={}",
            enc(upath)
        ));
        assert_eq!(r.status, 200, "{}", r.text());
        let n = r.json();
        assert_eq!(n["size"], uwant["size"]);
        assert_eq!(n["mtime"], uwant["mtime"]);
        assert_eq!(n["uid"], uwant["uid"]);

        // Search: the same files as `restic find -i` (no directory matches the glob, so
        // restic's "everything below a match" adds nothing).
        let rf = json(&ok(f
            .env
            .restic(&["find", "--json", "-i", "-s", snap, "*.txt"])));
        let want: BTreeSet<String> = rf
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["matches"].as_array().unwrap().iter())
            .map(|m| m["path"].as_str().unwrap().to_string())
            .collect();
        let r = s.get(&format!(
            "/api/repositories/main/snapshots/{snap}/find?q={}",
            enc("*.TXT")
        ));
        assert_eq!(r.status, 200, "{}", r.text());
        let got: BTreeSet<String> = r.json()["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["path"].as_str().unwrap().to_string())
            .collect();
        assert!(want.len() >= 3, "{want:?}");
        assert_eq!(got, want);

        // Sizes: the root's totals are restic's file sizes summed (hard links each time).
        let r = s.get(&format!("/api/repositories/main/snapshots/{snap}/sizes"));
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let files: Vec<&serde_json::Value> =
            nodes.values().filter(|v| v["type"] == "file").collect();
        let bytes: u64 = files.iter().map(|v| v["size"].as_u64().unwrap()).sum();
        assert_eq!(v["totals"]["bytes"].as_u64(), Some(bytes));
        assert_eq!(v["totals"]["files"].as_u64(), Some(files.len() as u64));
        let children = v["children"].as_array().unwrap();
        let sizes: Vec<u64> = children
            .iter()
            .map(|c| c["totals"]["bytes"].as_u64().unwrap())
            .collect();
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "largest first");
        assert_eq!(sizes.iter().sum::<u64>(), bytes);
    }

    // Diff: the same changes as restic's.
    let out = ok(f.env.restic(&["diff", &f.first, &f.second]));
    let want: BTreeSet<(String, String)> = out
        .lines()
        .filter_map(|l| {
            let (m, p) = l.split_once(' ')?;
            (["+", "-", "M", "T"].contains(&m)).then(|| (m.to_string(), p.trim().to_string()))
        })
        .collect();
    let r = s.get(&format!(
        "/api/repositories/main/diff?a={}&b={}",
        f.first, f.second
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    let d = r.json();
    let got: BTreeSet<(String, String)> = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["modifier"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(want.len() >= 6, "{out}");
    assert_eq!(got, want);
    assert_eq!(d["changed_files"], 1);

    // Versions of a file: both snapshots, the second changed, with their sizes.
    let notes = format!("{}/docs/notes.txt", f.src.display());
    let r = s.get(&format!(
        "/api/repositories/main/versions?path={}&plan=daily",
        enc(&notes)
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let v = v.as_array().unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0]["entry"]["size"], 14);
    assert_eq!(v[1]["entry"]["size"], 23);
    assert_eq!(
        (v[0]["changed"].as_bool(), v[1]["changed"].as_bool()),
        (Some(true), Some(true))
    );
    assert_ne!(v[0]["content_id"], v[1]["content_id"]);
    let log = format!("{}/docs/log.txt", f.src.display());
    let v = s
        .get(&format!(
            "/api/repositories/main/versions?path={}",
            enc(&log)
        ))
        .json();
    assert_eq!(v[1]["changed"], false, "log.txt did not change");
    let gone = format!("{}/secret.key", f.src.display());
    let v = s
        .get(&format!(
            "/api/repositories/main/versions?path={}",
            enc(&gone)
        ))
        .json();
    assert!(
        v[1]["entry"].is_null(),
        "secret.key is not in the second snapshot"
    );

    // Previews: text (its bytes), an image (its type), a binary file refused.
    let pre = |p: &str| {
        s.get(&format!(
            "/api/repositories/main/snapshots/{}/preview?path={}",
            f.second,
            enc(&format!("{}/{p}", f.src.display()))
        ))
    };
    let r = pre("docs/notes.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"second version, longer\n");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let r = pre("docs/log.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 256 << 10, "text preview cut at 256 KiB");
    assert_eq!(r.header("x-cairn-truncated"), Some("true"));
    let r = pre("new-dir/pic.png");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(
        r.body,
        std::fs::read(f.src.join("new-dir/pic.png")).unwrap()
    );
    assert_eq!(pre("new-dir/blob.bin").status, 415);
    assert_eq!(pre("docs").status, 400);
}

#[test]
fn browse_refuses_hostile_and_unknown_requests_with_clear_4xx() {
    let f = fixture();
    let (server, s) = start(&f);
    let snap = &f.second;
    let get = |p: &str| s.get(p);
    for (what, path, status) in [
        (
            "dot-dot",
            format!("/api/repositories/main/snapshots/{snap}/ls?path=../.."),
            400,
        ),
        (
            "encoded dot-dot",
            format!("/api/repositories/main/snapshots/{snap}/ls?path=%2F..%2F..%2Fetc"),
            400,
        ),
        (
            "NUL",
            format!("/api/repositories/main/snapshots/{snap}/ls?path=/a%00b"),
            400,
        ),
        (
            "missing path",
            format!("/api/repositories/main/snapshots/{snap}/ls?path=/no/such/dir"),
            404,
        ),
        (
            "a file listed",
            format!(
                "/api/repositories/main/snapshots/{snap}/ls?path={}",
                enc(&format!("{}/docs/notes.txt", f.src.display()))
            ),
            400,
        ),
        (
            "unknown repository",
            format!("/api/repositories/nope/snapshots/{snap}/ls"),
            404,
        ),
        (
            "unknown snapshot",
            "/api/repositories/main/snapshots/deadbeef/ls".to_string(),
            404,
        ),
        (
            "not an id",
            "/api/repositories/main/snapshots/..%2F../ls".to_string(),
            400,
        ),
        (
            "short prefix",
            "/api/repositories/main/snapshots/ab/ls".to_string(),
            400,
        ),
        (
            "huge query",
            format!(
                "/api/repositories/main/snapshots/{snap}/find?q={}",
                "a".repeat(10_000)
            ),
            414,
        ),
        (
            "long search",
            format!(
                "/api/repositories/main/snapshots/{snap}/find?q={}",
                "a".repeat(300)
            ),
            400,
        ),
        (
            "empty search",
            format!("/api/repositories/main/snapshots/{snap}/find?q="),
            400,
        ),
        (
            "diff without b",
            format!("/api/repositories/main/diff?a={snap}"),
            400,
        ),
        (
            "versions of the root",
            "/api/repositories/main/versions?path=/".to_string(),
            400,
        ),
    ] {
        let r = get(&path);
        assert_eq!(r.status, status, "{what}: {}", r.text());
        let v = r.json();
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {v}"
        );
    }
    // A request head past the server's limit is refused before any handler.
    let r = get(&format!(
        "/api/repositories/main/snapshots/{snap}/ls?path={}",
        "a".repeat(20_000)
    ));
    assert_eq!(r.status, 431);
    // The unknown repository's message names it and the known ones.
    let r = get(&format!("/api/repositories/nope/snapshots/{snap}/ls"));
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(e.contains("\"nope\"") && e.contains("main"), "{e}");
    // A page answers with a readable page, not JSON.
    let r = get(&format!("/browse/main/{snap}?path=../x"));
    assert_eq!(r.status, 400);
    assert!(r.text().contains("<html"), "{}", r.text());
    let r = get("/browse/nope/abcd1234");
    assert_eq!(r.status, 404);
    // Nothing without a session.
    let anon = server.anon();
    assert_eq!(anon.get("/api/repositories/main/snapshots").status, 401);
    assert_ne!(anon.get(&format!("/browse/main/{snap}")).status, 200);
}

#[test]
fn browse_pages_show_snapshots_listing_search_sizes_file_versions_and_diff() {
    let f = fixture();
    let (_server, s) = start(&f);
    let src = f.src.display().to_string();
    let page = |p: &str| {
        let r = s.get(p);
        assert_eq!(r.status, 200, "{p}: {}", r.text());
        r.text()
    };
    let t = page("/snapshots");
    assert!(t.contains(&format!("id=\"snap-{}\"", f.first)), "{t}");
    assert!(t.contains(&format!("id=\"snap-{}\"", f.second)));
    assert!(t.contains("plan daily"));
    assert!(t.contains("class=\"diff\""));

    let t = page(&format!(
        "/browse/main/{}?path={}",
        f.second,
        enc(&format!("{src}/docs/deep/deeper"))
    ));
    assert!(t.contains("id=\"pick\"") && t.contains("id=\"pick-actions\""));
    assert!(t.contains("id=\"breadcrumbs\""));
    // The other snapshot is offered for a diff with this one.
    assert!(t.contains("id=\"diff-form\""));
    assert!(
        t.contains(&format!("<option value=\"{}\">", f.first)),
        "{t}"
    );
    assert!(!t.contains(&format!("<option value=\"{}\">", f.second)));
    // The name is escaped, and its checkbox carries the percent-encoded full path.
    assert!(t.contains("ünïcødé &lt;&amp;&gt; name.txt"), "{t}");
    assert!(!t.contains("<&>"));
    assert!(t.contains(&format!(
        "value=\"{}\"",
        enc(&format!("{src}/docs/deep/deeper/ünïcødé <&> name.txt"))
    )));

    let t = page(&format!("/browse/main/{}/find?q=report", f.second));
    assert!(t.contains("Report-2024.TXT"), "{t}");
    assert_eq!(t.matches("class=\"hit\"").count(), 1);

    let t = page(&format!(
        "/browse/main/{}/sizes?path={}",
        f.second,
        enc(&src)
    ));
    assert!(t.contains("id=\"sizes\"") && t.contains("big-random.bin"));

    let t = page(&format!(
        "/browse/main/{}/file?path={}",
        f.second,
        enc(&format!("{src}/docs/notes.txt"))
    ));
    assert!(
        t.contains("<pre id=\"preview\">second version, longer\n</pre>"),
        "{t}"
    );
    let t = page(&format!(
        "/browse/main/{}/file?path={}",
        f.second,
        enc(&format!("{src}/new-dir/blob.bin"))
    ));
    assert!(t.contains("No preview"), "{t}");

    let t = page(&format!(
        "/versions/main?path={}",
        enc(&format!("{src}/docs/notes.txt"))
    ));
    assert_eq!(t.matches("class=\"version changed\"").count(), 2, "{t}");

    let t = page(&format!("/diff/main?a={}&b={}", f.first, f.second));
    assert!(
        t.contains("data-modifier=\"M\"") && t.contains("notes.txt"),
        "{t}"
    );
    assert!(t.contains("data-modifier=\"-\"") && t.contains("secret.key"));
}

/// 100,000 files in 100 directories, backed up by restic (fast), browsed through the API:
/// once the repository is open, listing any directory answers well under a second (the
/// bench measures the real figures: scripts/bench-web.sh).
#[test]
fn listing_a_directory_of_a_100k_file_snapshot_does_not_walk_the_snapshot() {
    let env = Env::new();
    let src = env.path("big");
    for d in 0..100 {
        let dir = src.join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..1000 {
            std::fs::write(dir.join(format!("f{i:04}")), format!("{d} {i}\n")).unwrap();
        }
    }
    ok(env.restic(&["init"]));
    ok(env.restic(&["backup", "-q", src.to_str().unwrap()]));
    let server = WebServer::start(
        &env,
        &repo_toml(&env, "big", &env.repo()),
        &[("victor", "victor-pw", "viewer")],
    );
    let s = server.login("victor", "victor-pw");
    // Opening the repository (key, index) is not part of a listing.
    let r = s.get("/api/repositories/big/snapshots");
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()[0]["id"].as_str().unwrap().to_string();
    let base = src.display().to_string();
    let mut slowest = Duration::ZERO;
    for d in (0..100).step_by(7) {
        let t = Instant::now();
        let r = s.get(&format!(
            "/api/repositories/big/snapshots/{id}/ls?path={}",
            enc(&format!("{base}/d{d:03}"))
        ));
        slowest = slowest.max(t.elapsed());
        assert_eq!(r.status, 200, "{}", r.text());
        let entries = r.json()["entries"].as_array().unwrap().len();
        assert_eq!(entries, 1000);
    }
    assert!(
        slowest < Duration::from_millis(900),
        "a listing took {slowest:?}"
    );
    // Search and sizes walk it all and still answer, capped.
    let r = s.get(&format!(
        "/api/repositories/big/snapshots/{id}/find?q=f09*&limit=50"
    ));
    let v = r.json();
    assert_eq!(v["hits"].as_array().unwrap().len(), 50);
    assert_eq!(v["truncated"], true);
    let r = s.get(&format!(
        "/api/repositories/big/snapshots/{id}/sizes?path={}",
        enc(&base)
    ));
    assert_eq!(r.json()["totals"]["files"], 100_000);
}

/// The same repository under a second name whose password comes from a command reading a
/// variable of its env-file: the repository's environment reaches the password command
/// (and the backends) without being cairn's own. A snapshot made while the server runs
/// is listed and browsable once the index has been looked at again (new index files).
#[test]
fn repositories_open_with_their_own_environment_and_new_snapshots_appear() {
    let f = fixture();
    std::fs::write(
        f.env.path("repo.env"),
        format!("CAIRN_TEST_BROWSE_PW={}\n", crate::PASSWORD),
    )
    .unwrap();
    let extra = format!(
        "{}[repositories.viaenv]\nurl = {}\npassword-command = \"printf %s \\\"$CAIRN_TEST_BROWSE_PW\\\"\"\nenv-file = {}\n",
        repo_toml(&f.env, "main", &f.env.repo()),
        toml_str(&f.env.repo().to_string_lossy()),
        toml_str(&f.env.path("repo.env").to_string_lossy()),
    );
    let server = WebServer::start(&f.env, &extra, &[("victor", "victor-pw", "viewer")]);
    let s = server.login("victor", "victor-pw");
    let r = s.get("/api/repositories/viaenv/snapshots");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    assert!(
        std::env::var_os("CAIRN_TEST_BROWSE_PW").is_none(),
        "the test's own environment must not provide it"
    );

    // A third snapshot, made while the server has the repository open.
    let src = f.src.display().to_string();
    std::fs::write(f.src.join("docs/notes.txt"), b"third\n").unwrap();
    ok(f.env
        .cairn(&["backup", "--host", "h1", "--tag", "plan:daily", &src]));
    std::thread::sleep(Duration::from_millis(3500));
    let r = s.get("/api/repositories/viaenv/snapshots");
    let list = r.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3, "{list:?}");
    let third = list[2]["id"].as_str().unwrap();
    let r = s.get(&format!(
        "/api/repositories/viaenv/snapshots/{third}/preview?path={}",
        enc(&format!("{src}/docs/notes.txt"))
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"third\n");
    let r = s.get(&format!(
        "/api/repositories/viaenv/versions?path={}",
        enc(&format!("{src}/docs/notes.txt"))
    ));
    assert_eq!(r.json().as_array().unwrap().len(), 3);

    // A wrong password names the repository and what to check, as a server-side error.
    std::fs::write(f.env.path("repo.env"), "CAIRN_TEST_BROWSE_PW=wrong\n").unwrap();
    let server2 = WebServer::start(&f.env, &extra, &[("victor", "victor-pw", "viewer")]);
    let s2 = server2.login("victor", "victor-pw");
    let r = s2.get("/api/repositories/viaenv/snapshots");
    assert_eq!(r.status, 502, "{}", r.text());
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(e.contains("viaenv") && e.contains("password"), "{e}");
}

/// A repository that cannot be reached answers 502 naming it, after its own retry budget;
/// requests right after that get the same answer at once instead of waiting again.
#[test]
fn an_unreachable_repository_fails_clearly_and_is_not_retried_by_every_request() {
    let env = Env::new();
    let port = crate::peers::free_port();
    let extra = format!(
        "[repositories.gone]\nurl = \"rest:http://127.0.0.1:{port}/repo\"\npassword-file = {}\noptions = {{ \"retry.max-time\" = \"2s\" }}\n",
        toml_str(&env.path("pw").to_string_lossy())
    );
    let server = WebServer::start(&env, &extra, &[("victor", "victor-pw", "viewer")]);
    let s = server.login("victor", "victor-pw");
    let t = Instant::now();
    let r = s.get("/api/repositories/gone/snapshots");
    let first = t.elapsed();
    // Refused connections are retried within the budget: the first answer takes a while.
    assert!(first >= Duration::from_millis(500), "{first:?}");
    assert_eq!(r.status, 502, "{}", r.text());
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(e.contains("gone"), "{e}");
    assert!(
        first < Duration::from_secs(20),
        "the retry budget was {first:?}"
    );
    let t = Instant::now();
    let r = s.get("/api/repositories/gone/snapshots");
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"].as_str().unwrap(), e);
    assert!(
        t.elapsed() < Duration::from_millis(500) && t.elapsed() < first,
        "the second request waited {:?} (the first {first:?})",
        t.elapsed()
    );
}
