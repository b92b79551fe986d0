//! `dump` of a directory as a tar archive, with the same rules on names as restore: an
//! entry whose name is not one plain path component (empty, `.`, `..`, with `/` or NUL)
//! is left out, a name seen twice in one tree is written once (the first), and both are
//! reported. The trees are walked with an explicit stack (no recursion depth tied to the
//! snapshot) and each file is streamed one blob at a time.
//!
//! The walk ([`walk_entries`]), the tar entry writer ([`TarWriter`]) and a file's content
//! as a reader ([`content_reader`]) are public so that other archive writers (the web
//! UI's `.tar.gz` and `.zip` downloads) apply exactly these rules.
//!
//! Does not write to the filesystem; the archive goes to the caller's writer.

use crate::browse::Trees;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::node::{Node, NodeType};
use crate::pack::BlobType;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Entries of the snapshot left out of the archive, and why.
#[derive(Debug, Default)]
pub struct DumpReport {
    pub skipped: Vec<String>,
}

struct Frame {
    nodes: std::vec::IntoIter<Node>,
    /// The directory's path inside the archive ("" for the archive's top).
    dir: PathBuf,
    seen: HashSet<Vec<u8>>,
}

/// Streams the directory `tree` as a tar archive whose entries are named below `name`
/// (a relative path given by the user; "" for the top of the archive).
pub fn dump_tar(trees: &Trees, tree: &Id, name: &str, out: &mut dyn Write) -> Result<DumpReport> {
    let top = PathBuf::from(name.trim_start_matches('/').trim_end_matches('/'));
    if top
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(Error::invalid(format!(
            "{name:?}: the archive path must be relative, without `.` or `..`"
        )));
    }
    let mut ar = TarWriter::new(out);
    let mut report = DumpReport::default();
    walk_entries(trees, tree, &top, &mut report, &mut |path, n| {
        ar.entry(trees, path, n)
    })?;
    ar.finish()?;
    Ok(report)
}

/// Visits every entry below the directory `tree`, depth-first, a directory before its
/// contents, with its path inside the archive (`top` joined with the names on the way,
/// as bytes). Names that are not one plain path component and names seen twice in one
/// tree are left out and listed in `report`. `f` sees every kind of node (the caller
/// decides what to write for devices, fifos and sockets).
pub fn walk_entries(
    trees: &Trees,
    tree: &Id,
    top: &Path,
    report: &mut DumpReport,
    f: &mut dyn FnMut(&Path, &Node) -> Result<()>,
) -> Result<()> {
    let load = |id: &Id| trees.load(id).map(|t| t.as_ref().clone().into_iter());
    let mut stack = vec![Frame {
        nodes: load(tree)?,
        dir: top.to_path_buf(),
        seen: HashSet::new(),
    }];
    while let Some(frame) = stack.last_mut() {
        let Some(n) = frame.nodes.next() else {
            stack.pop();
            continue;
        };
        let raw = n.name.as_bytes().to_vec();
        let shown = frame.dir.join(String::from_utf8_lossy(&raw).as_ref());
        if !n.name.is_plain_component() {
            report.skipped.push(format!(
                "{}: invalid file name {:?} in the snapshot (not one path component): left out",
                frame.dir.display(),
                String::from_utf8_lossy(&raw)
            ));
            continue;
        }
        let path = frame.dir.join(OsStr::from_bytes(&raw));
        if !frame.seen.insert(raw) {
            report.skipped.push(format!(
                "{}: the snapshot's tree names this entry more than once: only the first was written",
                shown.display()
            ));
            continue;
        }
        f(&path, &n)?;
        if let (NodeType::Dir, Some(sub)) = (n.node_type, n.subtree) {
            stack.push(Frame {
                nodes: load(&sub)?,
                dir: path,
                seen: HashSet::new(),
            });
        }
    }
    Ok(())
}

/// A tar archive being written: one entry per directory, file and symlink (GNU headers:
/// long names and non-UTF-8 names are kept byte for byte). Devices, fifos and sockets are
/// not written.
pub struct TarWriter<W: Write> {
    ar: tar::Builder<W>,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> TarWriter<W> {
        let mut ar = tar::Builder::new(out);
        ar.mode(tar::HeaderMode::Complete);
        TarWriter { ar }
    }

    /// Writes the entry of `n` at `path` (a directory's entry only: not its contents).
    pub fn entry(&mut self, trees: &Trees, path: &Path, n: &Node) -> Result<()> {
        let mut h = header(n);
        let r = match n.node_type {
            NodeType::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                // A directory's entry name ends in `/`, as tar itself writes it.
                let mut with_slash = path.as_os_str().to_os_string();
                with_slash.push("/");
                self.ar.append_data(&mut h, with_slash, std::io::empty())
            }
            NodeType::File => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(n.size);
                let reader = content_reader(trees, n);
                self.ar.append_data(&mut h, path, reader)
            }
            NodeType::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                self.ar.append_link(&mut h, path, &n.linktarget)
            }
            _ => return Ok(()),
        };
        r.map_err(|e| Error::io(format!("tar entry {}", path.display()), e))
    }

    /// Writes the archive's end and returns the writer.
    pub fn finish(self) -> Result<W> {
        self.ar
            .into_inner()
            .map_err(|e| Error::io("finishing the tar archive", e))
    }
}

fn header(n: &Node) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(n.unix_mode() & 0o7777);
    h.set_uid(n.uid as u64);
    h.set_gid(n.gid as u64);
    let _ = h.set_username(&n.user);
    let _ = h.set_groupname(&n.group);
    h.set_mtime(n.mtime.timestamp().max(0) as u64);
    h
}

/// A file node's content as a reader, one blob in memory at a time; it ends after
/// `n.size` bytes, and fails if the blobs add up to less.
pub fn content_reader<'a, 'b>(trees: &'b Trees<'a>, n: &Node) -> impl std::io::Read + 'b {
    BlobStream::new(trees, n.content.clone().unwrap_or_default(), n.size)
}

/// A file's content as a reader, one blob in memory at a time; it ends after the size
/// the header announced, so a node whose blobs add up to more cannot break the archive
/// (and one whose blobs add up to less makes the tar writer fail the entry).
struct BlobStream<'a, 'b> {
    trees: &'b Trees<'a>,
    ids: std::vec::IntoIter<Id>,
    buf: Vec<u8>,
    pos: usize,
    left: u64,
}

impl<'a, 'b> BlobStream<'a, 'b> {
    fn new(trees: &'b Trees<'a>, ids: Vec<Id>, size: u64) -> Self {
        BlobStream {
            trees,
            ids: ids.into_iter(),
            buf: Vec::new(),
            pos: 0,
            left: size,
        }
    }
}

impl std::io::Read for BlobStream<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        while self.pos >= self.buf.len() {
            let Some(id) = self.ids.next() else {
                return Err(std::io::Error::other(format!(
                    "the file's content is {} bytes shorter than its recorded size",
                    self.left
                )));
            };
            self.buf = self
                .trees
                .repo
                .load_blob(self.trees.index, BlobType::Data, &id)
                .map_err(std::io::Error::other)?;
            self.pos = 0;
        }
        let n = out
            .len()
            .min(self.buf.len() - self.pos)
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.left -= n as u64;
        Ok(n)
    }
}
