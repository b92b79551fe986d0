//! Names with special characters (issue 11, point 7): restic 0.14 stores a node's name
//! Go-quoted (`strconv.Quote`) and unquotes it on read. Every byte 0x01–0xff, invalid
//! UTF-8, newline, quote, backslash, Unicode non-printables and combining marks must
//! survive a trip through either tool byte for byte, and give the same tree ids.

use crate::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Every name the tests use, as raw bytes.
fn special_names() -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    for b in 1u8..=0xff {
        if b == b'/' {
            continue;
        }
        // The byte alone ('.' alone is the directory itself) and between other bytes.
        if b != b'.' {
            names.push(vec![b]);
        }
        names.push([&b"a"[..], &[b], b"z"].concat());
    }
    let more: &[&[u8]] = &[
        b"new\nline",
        b"quo\"te",
        b"back\\slash",
        b"\\x41 looks like an escape",
        b"\\u00e9 too",
        b"tab\there",
        b"cr\r",
        b"\xc3",               // truncated 2-byte sequence
        b"\xe2\x80",           // truncated 3-byte sequence
        b"\xed\xa0\x80",       // a surrogate
        b"\xc0\xaf",           // overlong '/'
        b"\xf4\x90\x80\x80",   // above U+10FFFF
        b"latin1 caf\xe9.txt", // Latin-1, as old systems write it
        "soft\u{ad}hyphen".as_bytes(),
        "line\u{2028}sep\u{2029}".as_bytes(),
        "\u{feff}bom".as_bytes(),
        "zero\u{200b}width\u{200d}joiner".as_bytes(),
        "rtl\u{200f}mark".as_bytes(),
        "private\u{e000}use".as_bytes(),
        "tag\u{e0041}char".as_bytes(),
        "nbsp\u{a0}and ideographic\u{3000}space".as_bytes(),
        "e\u{301} combining".as_bytes(),
        "\u{301}leading combining".as_bytes(),
        "circled\u{20dd}".as_bytes(),
        "日本語 ünïcødé 😀".as_bytes(),
        "replacement \u{fffd} char".as_bytes(),
        // Assigned after Unicode 13 (restic 0.14's Go knows 13): escaped in trees.
        "shaking \u{1fae8} face (15.0)".as_bytes(),
        "slide \u{1f6dd} (14.0)".as_bytes(),
    ];
    names.extend(more.iter().map(|n| n.to_vec()));
    names
}

/// A directory holding a file per special name (the content names it), a directory and a
/// symlink with special names too. Times are pinned, so trees are reproducible.
fn make_named_source(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    for name in special_names() {
        let mut content = b"content of ".to_vec();
        content.extend_from_slice(&name);
        std::fs::write(root.join(OsStr::from_bytes(&name)), content).unwrap();
    }
    let dir = root.join(OsStr::from_bytes(b"dir\nwith \"\\\x01\xff"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(OsStr::from_bytes(b"inner\x7f\\n")), b"inner").unwrap();
    std::os::unix::fs::symlink("quo\"te", root.join(OsStr::from_bytes(b"link\x1b\"q"))).unwrap();
    pin_times(root);
}

fn restored_at(target: &Path, src: &Path) -> std::path::PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

/// The tree id of the directory `path` (absolute) in a snapshot, found with `cairn cat`.
fn tree_id_of(env: &Env, snapshot: &str, path: &Path) -> String {
    let snap = json(&ok(env.cairn(&["cat", "snapshot", snapshot])));
    let mut tree = snap["tree"].as_str().unwrap().to_string();
    for comp in path.components().skip(1) {
        let t = json(&ok(env.cairn(&["cat", "tree", &tree])));
        let name = comp.as_os_str().to_str().unwrap();
        let node = t["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in tree {tree}"));
        tree = node["subtree"].as_str().unwrap().to_string();
    }
    tree
}

#[test]
fn special_names_backed_up_by_restic_are_restored_byte_identical_by_cairn() {
    let env = Env::new();
    let src = env.path("src");
    make_named_source(&src);
    ok(env.restic(&["init"]));
    ok(env.restic(&["backup", src.to_str().unwrap()]));
    ok(env.cairn(&["check", "--read-data"]));
    let target = env.path("restored");
    ok(env.cairn(&["restore", "latest", "--target", target.to_str().unwrap()]));
    assert_same_tree(&src, &restored_at(&target, &src));
    // Listing shows the real names (lossy for invalid UTF-8).
    let ls = ok(env.cairn(&["ls", "latest"]));
    let shown = |name: &str| format!("{}/{name}\n", src.display());
    for name in ["quo\"te", "back\\slash", "new\nline", "e\u{301} combining"] {
        assert!(ls.contains(&shown(name)), "{name:?} not listed:\n{ls}");
    }
    assert!(ls.contains(&shown("latin1 caf\u{fffd}.txt")), "{ls}");
}

#[test]
fn special_names_backed_up_by_cairn_are_listed_checked_and_restored_by_restic() {
    let env = Env::new();
    let src = env.path("src");
    make_named_source(&src);
    ok(env.cairn(&["init"]));
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    let check = env.restic(&["check", "--read-data"]);
    let out = ok(check);
    assert!(out.contains("no errors were found"), "{out}");
    let ls = env.restic(&["ls", "latest"]);
    assert!(ls.status.success(), "restic ls: {}", stderr(&ls));
    // restic prints names as they are: every one of them is there, bytes and all.
    for name in special_names() {
        let mut line = src.as_os_str().as_bytes().to_vec();
        line.push(b'/');
        line.extend_from_slice(&name);
        line.push(b'\n');
        assert!(
            ls.stdout.windows(line.len()).any(|w| w == line),
            "restic ls does not show {:?}",
            String::from_utf8_lossy(&name)
        );
    }
    let target = env.path("restored");
    ok(env.restic(&["restore", "latest", "--target", target.to_str().unwrap()]));
    assert_same_tree(&src, &restored_at(&target, &src));
    // And cairn reads back what it wrote.
    let again = env.path("again");
    ok(env.cairn(&["restore", "latest", "--target", again.to_str().unwrap()]));
    assert_same_tree(&src, &restored_at(&again, &src));
}

#[test]
fn special_names_get_the_same_tree_ids_from_cairn_and_restic() {
    let env = Env::new();
    let src = env.path("src");
    make_named_source(&src);
    ok(env.restic(&["init"]));
    ok(env.restic(&["backup", "--host", "h", src.to_str().unwrap()]));
    let restic_snap = json(&ok(env.restic(&["snapshots", "--json"])))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = ok(env.cairn(&[
        "backup",
        "--json",
        "--force",
        "--host",
        "h",
        src.to_str().unwrap(),
    ]));
    let cairn_snap = json(&out)["snapshot_id"].as_str().unwrap().to_string();
    assert_eq!(
        tree_id_of(&env, &restic_snap, &src),
        tree_id_of(&env, &cairn_snap, &src),
        "the directory of special names has the same tree id from both tools"
    );
    ok(env.restic(&["check"]));
}

/// Builds one tree's JSON from the ids saved so far (the data blob first, then the trees).
type TreeJson<'a> = &'a dyn Fn(&[cairn_repo::Id]) -> serde_json::Value;

/// Saves raw tree JSON (names exactly as given, so as a tree stores them) and a snapshot
/// of the last one; the snapshot is `latest`.
fn craft_snapshot(env: &Env, trees: &[TreeJson]) {
    use cairn_repo::backend::local::LocalBackend;
    use cairn_repo::pack::BlobType;
    use cairn_repo::repository::Repository;
    use cairn_repo::snapshot::Snapshot;
    use cairn_repo::writer::PackWriter;
    let repo =
        Repository::open(std::sync::Arc::new(LocalBackend::new(env.repo())), PASSWORD).unwrap();
    let index = repo.load_index().unwrap();
    let writer = PackWriter::new(&repo, &index);
    let data = writer.save(BlobType::Data, b"data").unwrap().0;
    let mut ids = vec![data];
    for t in trees {
        let mut bytes = serde_json::to_vec(&t(&ids)).unwrap();
        bytes.push(b'\n');
        ids.push(writer.save(BlobType::Tree, &bytes).unwrap().0);
    }
    writer.finish().unwrap();
    let mut snap: Snapshot = serde_json::from_value(serde_json::json!({
        "time": TIME, "tree": ids.last().unwrap().to_hex(), "paths": ["/crafted"],
        "hostname": "h",
    }))
    .unwrap();
    snap.save(&repo).unwrap();
}

const TIME: &str = "2020-09-13T14:26:40.123456789+02:00";

fn file_node(name: &str, data: &cairn_repo::Id) -> serde_json::Value {
    serde_json::json!({"name": name, "type": "file", "mode": 0o644, "mtime": TIME,
        "atime": TIME, "ctime": TIME, "uid": 0, "gid": 0, "size": 4, "links": 1,
        "content": [data.to_hex()]})
}

fn dir_node(name: &str, subtree: &cairn_repo::Id) -> serde_json::Value {
    serde_json::json!({"name": name, "type": "dir", "mode": 2147484141u32, "mtime": TIME,
        "atime": TIME, "ctime": TIME, "uid": 0, "gid": 0, "content": null,
        "subtree": subtree.to_hex()})
}

#[test]
fn a_tree_whose_name_does_not_unquote_is_an_error_like_in_restic() {
    // Stored unquoted (as cairn wrote before): `\s` is no Go escape.
    let env = Env::new();
    ok(env.cairn(&["init"]));
    craft_snapshot(
        &env,
        &[&|ids| serde_json::json!({"nodes": [file_node("back\\slash", &ids[0])]})],
    );
    let restic = env.restic(&["ls", "latest"]);
    assert!(!restic.status.success());
    let err = stderr(&restic);
    assert!(
        err.contains("invalid syntax") && err.contains("Unquote"),
        "{err}"
    );
    let ls = env.cairn(&["ls", "latest"]);
    assert!(
        !ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stdout)
    );
    let err = stderr(&ls);
    assert!(err.contains("Unquote: invalid syntax"), "{err}");
    assert!(err.contains("back\\\\slash"), "the name is shown: {err}");
    let check = env.cairn(&["check"]);
    assert!(!check.status.success());
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        stderr(&check)
    );
    assert!(out.contains("Unquote: invalid syntax"), "{out}");
}

#[test]
fn names_checks_apply_to_unquoted_names() {
    // `\x2e\x2e` is "..", `\x2f` a slash, `\x00` NUL once unquoted: restore must refuse
    // them as path components, and nothing may land outside the target.
    let env = Env::new();
    ok(env.cairn(&["init"]));
    craft_snapshot(
        &env,
        &[
            &|ids| serde_json::json!({"nodes": [file_node("escaped", &ids[0])]}),
            &|ids| {
                serde_json::json!({"nodes": [
                    dir_node("\\x2e\\x2e", &ids[1]),
                    file_node("\\x2e", &ids[0]),
                    file_node("fine\\nname", &ids[0]),
                    file_node("nul\\x00byte", &ids[0]),
                    file_node("sub\\x2fescaped", &ids[0]),
                ]})
            },
        ],
    );
    let target = env.path("t/target");
    let out = env.cairn(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success(), "invalid names are reported: {err}");
    assert!(!env.path("t/escaped").exists(), "nothing written outside");
    let mut restored: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    restored.sort();
    assert_eq!(restored, [OsStr::new("fine\nname")], "{err}");
    for shown in ["\"..\"", "\".\"", "nul\\0byte", "sub/escaped"] {
        assert!(err.contains(shown), "{shown} reported: {err}");
    }
}
