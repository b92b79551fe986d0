//! Downloads: items picked in one snapshot (files and/or directories, or the whole
//! snapshot) written as a `.tar.gz` or a `.zip` archive to any `Write`, in one pass, with
//! memory bounded by one blob plus the compressor's window (the web layer puts a bounded
//! channel behind the writer, so a slow or gone client stops the walk).
//!
//! Owns: resolving picked paths (bytes, compared component by component like restore;
//! `.`/`..`/NUL refused, an absent path is an error, an item inside another is dropped),
//! naming entries relative to the items' common parent, and the zip format. The tar side
//! reuses `cairn_repo::dump` (its walk applies restore's rules on names: bad or duplicate
//! names are left out and reported).
//!
//! The zip writer is ours, not a crate's: it must stream to a non-seekable writer (local
//! headers with data descriptors), switch to ZIP64 per entry and for the end record when
//! sizes, offsets or the entry count need it, and write non-UTF-8 names as raw bytes
//! without the UTF-8 flag. The `zip` crate needs `Seek` for all of this, or buffers.
//! What stays in memory is one central-directory record per entry (~100 bytes + name).
//!
//! Must not: print, or read anything but the repository.

use cairn_repo::browse::Trees;
use cairn_repo::dump::{self, DumpReport, TarWriter};
use cairn_repo::error::{Error, Result};
use cairn_repo::id::Id;
use cairn_repo::node::{Node, NodeType};
use chrono::{Datelike, Timelike};
use serde::Serialize;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

mod tar;
mod zip;

use tar::*;
pub use zip::*;

/// The most items one request may pick.
pub const MAX_ITEMS: usize = 1000;

/// An archive format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Format {
    #[serde(rename = "tar.gz")]
    TarGz,
    #[serde(rename = "zip")]
    Zip,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format> {
        match s {
            "tar.gz" | "tgz" | "" => Ok(Format::TarGz),
            "zip" => Ok(Format::Zip),
            _ => Err(Error::invalid(format!(
                "unknown archive format {s:?}: use tar.gz or zip"
            ))),
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::TarGz => "tar.gz",
            Format::Zip => "zip",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::TarGz => "application/gzip",
            Format::Zip => "application/zip",
        }
    }
}

/// Picked items resolved in a snapshot.
#[derive(Debug)]
pub struct Selection {
    /// The items' common parent directory in the snapshot, as components (empty: the root).
    pub parent: Vec<Vec<u8>>,
    /// The tree of that directory.
    pub parent_tree: Id,
    /// Each item relative to `parent` (one or more components) with its node. Empty when
    /// the whole snapshot is picked.
    pub items: Vec<(PathBuf, Node)>,
}

impl Selection {
    /// The common parent as a snapshot path, for messages ("/" for the root).
    pub fn parent_display(&self) -> String {
        let mut s = String::new();
        for c in &self.parent {
            s.push('/');
            s.push_str(&String::from_utf8_lossy(c));
        }
        if s.is_empty() {
            s.push('/');
        }
        s
    }

    /// The items relative to the common parent (for restore's picks).
    pub fn rel_paths(&self) -> Vec<PathBuf> {
        self.items.iter().map(|(p, _)| p.clone()).collect()
    }

    /// A short name for the selection, for file names: the one item's name, or `None`.
    pub fn single_name(&self) -> Option<String> {
        match self.items.as_slice() {
            [(p, _)] => p
                .file_name()
                .map(|n| String::from_utf8_lossy(n.as_bytes()).into_owned()),
            [] => self
                .parent
                .last()
                .map(|n| String::from_utf8_lossy(n).into_owned()),
            _ => None,
        }
    }
}

/// Splits a picked path (bytes: `/a/b`, `a/b/`, `/` for the whole snapshot) into its
/// components; `.`, `..` and NUL are refused (an item must name a path of the snapshot,
/// never a way out of it).
pub fn split_path(path: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        if c == b"." || c == b".." || c.contains(&0) {
            return Err(Error::invalid(format!(
                "{:?}: an item is a path inside the snapshot, without `.`, `..` or NUL",
                String::from_utf8_lossy(path)
            )));
        }
        out.push(c.to_vec());
    }
    Ok(out)
}

/// Finds the node at `comps` below `root` (byte-exact names); `None` for the root.
fn find(trees: &Trees, root: Id, comps: &[Vec<u8>]) -> Result<Option<Node>> {
    let mut tree = root;
    let mut found = None;
    for (i, c) in comps.iter().enumerate() {
        let nodes = trees.load(&tree)?;
        let shown = || {
            let mut s = String::new();
            for c in &comps[..=i] {
                s.push('/');
                s.push_str(&String::from_utf8_lossy(c));
            }
            s
        };
        let n = nodes
            .iter()
            .find(|n| n.name.as_bytes() == c.as_slice())
            .ok_or_else(|| Error::not_found(format!("{}: not in this snapshot", shown())))?;
        if i + 1 < comps.len() {
            tree = match (n.node_type, n.subtree) {
                (NodeType::Dir, Some(s)) => s,
                _ => {
                    return Err(Error::not_found(format!(
                        "{}: not a directory in this snapshot",
                        shown()
                    )))
                }
            };
        }
        found = Some(n.clone());
    }
    Ok(found)
}

/// Resolves picked paths in the snapshot whose tree is `root`. No items, or one naming
/// the root, picks the whole snapshot. Duplicates and items inside another picked
/// directory are dropped; an item that is not in the snapshot is an error (`NotFound`).
pub fn resolve(trees: &Trees, root: Id, items: &[Vec<u8>]) -> Result<Selection> {
    if items.len() > MAX_ITEMS {
        return Err(Error::invalid(format!(
            "{} items picked: at most {MAX_ITEMS} per request (pick their directory instead)",
            items.len()
        )));
    }
    let mut picked = items
        .iter()
        .map(|p| split_path(p))
        .collect::<Result<Vec<_>>>()?;
    let whole = Selection {
        parent: Vec::new(),
        parent_tree: root,
        items: Vec::new(),
    };
    if picked.is_empty() || picked.iter().any(|p| p.is_empty()) {
        return Ok(whole);
    }
    picked.sort();
    picked.dedup();
    // Sorted, an item inside another comes right after it (or after its siblings inside).
    let mut kept: Vec<Vec<Vec<u8>>> = Vec::new();
    for p in picked {
        if kept.iter().any(|k| p.starts_with(k)) {
            continue;
        }
        kept.push(p);
    }
    let mut common: Vec<Vec<u8>> = kept[0][..kept[0].len() - 1].to_vec();
    for p in &kept[1..] {
        let parent = &p[..p.len() - 1];
        let n = common
            .iter()
            .zip(parent)
            .take_while(|(a, b)| a == b)
            .count();
        common.truncate(n);
    }
    let mut out = Vec::with_capacity(kept.len());
    for p in &kept {
        let node = find(trees, root, p)?
            .ok_or_else(|| Error::invalid("internal: an empty item was not taken as the root"))?;
        let rel: PathBuf = p[common.len()..]
            .iter()
            .map(|c| OsStr::from_bytes(c))
            .collect();
        out.push((rel, node));
    }
    let parent_tree = match find(trees, root, &common)? {
        None => root,
        Some(n) => match (n.node_type, n.subtree) {
            (NodeType::Dir, Some(s)) => s,
            _ => {
                return Err(Error::not_found(
                    "the picked items' parent is not a directory",
                ))
            }
        },
    };
    Ok(Selection {
        parent: common,
        parent_tree,
        items: out,
    })
}

/// What an archive contained.
#[derive(Debug, Default, Serialize)]
pub struct ArchiveReport {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// File content written (before compression).
    pub content_bytes: u64,
    /// Entries left out, and why (bad or duplicate names, devices, fifos, sockets).
    pub skipped: Vec<String>,
}

/// One archive writer (tar.gz or zip) behind the walk.
trait Sink {
    fn entry(&mut self, trees: &Trees, path: &Path, node: &Node) -> Result<()>;
}

/// Compression level of both formats: downloads are CPU-bound on the server, and the
/// fast level gets most of deflate's gain on text at a fraction of the default's cost.
fn level() -> flate2::Compression {
    flate2::Compression::fast()
}

/// Writes the selection as an archive in `format` to `out`. Entries are named relative to
/// the items' common parent (the whole snapshot: relative to its root).
pub fn write(
    trees: &Trees,
    sel: &Selection,
    format: Format,
    out: &mut dyn Write,
) -> Result<ArchiveReport> {
    let mut report = ArchiveReport::default();
    match format {
        Format::TarGz => {
            let gz = flate2::write::GzEncoder::new(out, level());
            let mut sink = Tar(TarWriter::new(gz));
            walk(trees, sel, &mut sink, &mut report)?;
            let gz = sink.0.finish()?;
            gz.finish()
                .map_err(|e| Error::io("finishing the gzip stream", e))?;
        }
        Format::Zip => {
            let mut sink = ZipWriter::new(out);
            walk(trees, sel, &mut sink, &mut report)?;
            sink.finish()
                .map_err(|e| Error::io("finishing the zip archive", e))?;
        }
    }
    Ok(report)
}

fn walk(
    trees: &Trees,
    sel: &Selection,
    sink: &mut dyn Sink,
    report: &mut ArchiveReport,
) -> Result<()> {
    let mut dumped = DumpReport::default();
    let mut visit = |path: &Path, n: &Node| -> Result<()> {
        match n.node_type {
            NodeType::Dir => report.dirs += 1,
            NodeType::File => {
                report.files += 1;
                report.content_bytes += n.size;
            }
            NodeType::Symlink => report.symlinks += 1,
            other => {
                report.skipped.push(format!(
                    "{}: a {} is not put in an archive: left out",
                    path.display(),
                    other.as_str()
                ));
                return Ok(());
            }
        }
        sink.entry(trees, path, n)
    };
    if sel.items.is_empty() {
        dump::walk_entries(
            trees,
            &sel.parent_tree,
            Path::new(""),
            &mut dumped,
            &mut visit,
        )?;
    }
    for (rel, n) in &sel.items {
        visit(rel, n)?;
        if let (NodeType::Dir, Some(sub)) = (n.node_type, n.subtree) {
            dump::walk_entries(trees, &sub, rel, &mut dumped, &mut visit)?;
        }
    }
    report.skipped.extend(dumped.skipped);
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cairn_repo::backend::local::LocalBackend;
    use cairn_repo::repository::Repository;
    use std::process::Command;

    pub(super) fn random(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Lists a zip with python3's zipfile (an independent reader): per entry the raw
    /// name (hex), size, whether it is flagged UTF-8, and the SHA-256 of its content;
    /// fails if `testzip` finds a bad CRC.
    pub(super) fn python_list(zip: &Path) -> Vec<serde_json::Value> {
        let script = r#"
import sys, zipfile, hashlib, json
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None, "bad crc"
out = []
for i in z.infolist():
    raw = i.filename.encode("utf-8" if i.flag_bits & 0x800 else "cp437")
    out.append({"name": raw.hex(), "size": i.file_size, "utf8": bool(i.flag_bits & 0x800),
                "mode": i.external_attr >> 16, "sha": hashlib.sha256(z.read(i)).hexdigest(),
                "time": list(i.date_time)})
print(json.dumps(out))
"#;
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(zip)
            .output()
            .expect("python3 is needed (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "python3 zipfile: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub(super) fn unzip_test(zip: &Path) {
        if Command::new("unzip").arg("-v").output().is_err() {
            return;
        }
        let out = Command::new("unzip").arg("-t").arg(zip).output().unwrap();
        assert!(
            out.status.success(),
            "unzip -t: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub(super) fn sha(data: &[u8]) -> String {
        Id::hash(data).to_hex()
    }

    /// A repository with one snapshot of `src`; returns its directory, the repository
    /// and the snapshot's tree.
    pub(crate) fn snapshot_of(src: &Path) -> (tempfile::TempDir, Repository, Id) {
        let dir = tempfile::tempdir().unwrap();
        let be = std::sync::Arc::new(LocalBackend::new(dir.path().join("repo")));
        let repo = Repository::init(be, "pw", 2, None).unwrap();
        let s = cairn_repo::backup::backup(
            &repo,
            cairn_repo::backup::BackupOptions {
                paths: vec![src.to_path_buf()],
                ..Default::default()
            },
            &cairn_repo::backup::Progress::default(),
        )
        .unwrap();
        let id = s.snapshot_id.unwrap();
        let snap = cairn_repo::snapshot::Snapshot::load(&repo, &id).unwrap();
        (dir, repo, snap.tree)
    }

    /// A source tree: nested dirs, an empty file, a symlink, a name that is not UTF-8.
    pub(crate) fn source(root: &Path) {
        std::fs::create_dir_all(root.join("docs/deep/deeper")).unwrap();
        std::fs::create_dir_all(root.join("other")).unwrap();
        std::fs::write(root.join("docs/a.txt"), b"alpha\n").unwrap();
        std::fs::write(root.join("docs/deep/b.bin"), random(5, 300_000)).unwrap();
        std::fs::write(root.join("docs/deep/deeper/empty"), b"").unwrap();
        std::fs::write(
            root.join("docs").join(OsStr::from_bytes(b"raw-\xff")),
            b"raw name",
        )
        .unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("docs/link")).unwrap();
        std::fs::write(root.join("other/c.txt"), b"gamma\n").unwrap();
    }

    fn snap_path(src: &Path, rel: &str) -> Vec<u8> {
        let mut p = src.as_os_str().as_bytes().to_vec();
        if !rel.is_empty() {
            p.push(b'/');
            p.extend_from_slice(rel.as_bytes());
        }
        p
    }

    /// Every file and symlink below `root` with its content (a link: "-> target").
    fn tree_of(root: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let rel = p
                    .strip_prefix(root)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec();
                let m = std::fs::symlink_metadata(&p).unwrap();
                if m.file_type().is_symlink() {
                    let t = std::fs::read_link(&p).unwrap();
                    let mut v = b"-> ".to_vec();
                    v.extend_from_slice(t.as_os_str().as_bytes());
                    out.push((rel, v));
                } else if m.is_dir() {
                    out.push((rel, b"dir".to_vec()));
                    stack.push(p);
                } else {
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn picked_items_resolve_relative_to_their_common_parent_and_hostile_paths_fail() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        source(&src);
        let (_r, repo, root) = snapshot_of(&src);
        let index = repo.load_index().unwrap();
        let trees = Trees::new(&repo, &index);
        let sel = resolve(
            &trees,
            root,
            &[
                snap_path(&src, "docs/deep/b.bin"),
                snap_path(&src, "docs/a.txt"),
                snap_path(&src, "docs/deep"),
                snap_path(&src, "docs/a.txt/"),
            ],
        )
        .unwrap();
        assert_eq!(
            sel.rel_paths(),
            [PathBuf::from("a.txt"), PathBuf::from("deep")]
        );
        assert_eq!(sel.parent_display(), format!("{}/docs", src.display()));
        let whole = resolve(&trees, root, &[b"/".to_vec()]).unwrap();
        assert!(whole.items.is_empty());
        assert_eq!(whole.parent_tree, root);
        for bad in [
            snap_path(&src, "docs/../other"),
            snap_path(&src, "./docs"),
            snap_path(&src, "docs/a\0"),
        ] {
            let e = resolve(&trees, root, &[bad]).unwrap_err();
            assert_eq!(e.kind(), cairn_repo::Kind::Invalid, "{e}");
        }
        let e = resolve(&trees, root, &[snap_path(&src, "docs/absent")]).unwrap_err();
        assert_eq!(e.kind(), cairn_repo::Kind::NotFound, "{e}");
        let e = resolve(&trees, root, &[snap_path(&src, "docs/a.txt/below")]).unwrap_err();
        assert_eq!(e.kind(), cairn_repo::Kind::NotFound, "{e}");
    }

    #[test]
    fn tar_gz_and_zip_of_picked_items_extract_to_the_source_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        source(&src);
        let (_r, repo, root) = snapshot_of(&src);
        let index = repo.load_index().unwrap();
        let trees = Trees::new(&repo, &index);
        let items = [snap_path(&src, "docs"), snap_path(&src, "other/c.txt")];
        let sel = resolve(&trees, root, &items).unwrap();
        let mut expected = tree_of(&src);
        expected.retain(|(p, _)| p != b"other");

        let mut tgz = Vec::new();
        let report = write(&trees, &sel, Format::TarGz, &mut tgz).unwrap();
        assert_eq!(report.files, 5);
        assert_eq!(report.symlinks, 1);
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        let x = dir.path().join("x-tar");
        std::fs::create_dir(&x).unwrap();
        std::fs::write(dir.path().join("a.tar.gz"), &tgz).unwrap();
        let out = Command::new("tar")
            .arg("-xzf")
            .arg(dir.path().join("a.tar.gz"))
            .arg("-C")
            .arg(&x)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut got = tree_of(&x);
        // tar creates the missing parent `other/` of the picked file.
        got.retain(|(p, _)| p != b"other");
        assert_eq!(got, expected);

        let mut zip = Vec::new();
        write(&trees, &sel, Format::Zip, &mut zip).unwrap();
        let zpath = dir.path().join("a.zip");
        std::fs::write(&zpath, &zip).unwrap();
        let list = python_list(&zpath);
        for (p, content) in &expected {
            if content == b"dir" {
                continue;
            }
            let e = list
                .iter()
                .find(|e| e["name"] == hex::encode(p))
                .unwrap_or_else(|| panic!("{:?} not in the zip", String::from_utf8_lossy(p)));
            let want = match content.strip_prefix(b"-> ") {
                Some(target) => sha(target),
                None => sha(content),
            };
            assert_eq!(e["sha"], want, "{}", String::from_utf8_lossy(p));
        }
        unzip_test(&zpath);
    }
}
