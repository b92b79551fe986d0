//! Tree nodes and their encoding, byte-identical to restic 0.14's (Go's `encoding/json` of
//! restic's `Node`, in field order, with its `omitempty` rules, string escaping, RFC 3339
//! nanosecond times in the time's own zone, Go `os.FileMode` bits), so a directory with
//! the same metadata gets the same tree id from cairn as from restic.
//!
//! Owns: building a node from `lstat` data like restic's archiver (atime recorded as the
//! mtime, names of users and groups looked up once per id). Does not read file contents;
//! does not write to the filesystem (restore applies metadata through descriptors in
//! `restore/write.rs`).

use crate::gotime;
use crate::id::Id;
use base64::Engine;
use chrono::{DateTime, FixedOffset};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

mod decode;
pub use decode::{decode_tree, decode_tree_canonical};

// Go's os.FileMode bits.
const MODE_DIR: u32 = 1 << 31;
const MODE_SYMLINK: u32 = 1 << 27;
const MODE_DEVICE: u32 = 1 << 26;
const MODE_NAMED_PIPE: u32 = 1 << 25;
const MODE_SOCKET: u32 = 1 << 24;
const MODE_SETUID: u32 = 1 << 23;
const MODE_SETGID: u32 = 1 << 22;
const MODE_CHAR_DEVICE: u32 = 1 << 21;
const MODE_STICKY: u32 = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeType {
    File,
    Dir,
    Symlink,
    Dev,
    CharDev,
    Fifo,
    Socket,
    Irregular,
}

impl NodeType {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::File => "file",
            NodeType::Dir => "dir",
            NodeType::Symlink => "symlink",
            NodeType::Dev => "dev",
            NodeType::CharDev => "chardev",
            NodeType::Fifo => "fifo",
            NodeType::Socket => "socket",
            NodeType::Irregular => "irregular",
        }
    }

    fn parse(s: &str) -> NodeType {
        match s {
            "file" => NodeType::File,
            "dir" => NodeType::Dir,
            "symlink" => NodeType::Symlink,
            "dev" => NodeType::Dev,
            "chardev" => NodeType::CharDev,
            "fifo" => NodeType::Fifo,
            "socket" => NodeType::Socket,
            _ => NodeType::Irregular,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExtendedAttribute {
    pub name: String,
    pub value: Vec<u8>,
}

/// A node's name: the exact bytes of the file name. A file name need not be UTF-8, and
/// a tree from elsewhere may hold any bytes at all (`/`, NUL, `..`): check
/// [`NodeName::is_plain_component`] before using one as a path component.
///
/// Ordered by bytes, like Go strings (restic sorts a tree's nodes by name). Displayed
/// lossily (invalid UTF-8 as U+FFFD); `{:?}` shows the bytes Go-quoted, so every name is
/// told apart.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeName(Vec<u8>);

impl NodeName {
    pub fn new(bytes: impl Into<Vec<u8>>) -> NodeName {
        NodeName(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    pub fn as_os_str(&self) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(&self.0)
    }

    /// The name as a path of one component (check [`NodeName::is_plain_component`] first).
    pub fn as_path(&self) -> &Path {
        Path::new(self.as_os_str())
    }

    pub fn to_string_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the name can stand as one path component: not empty, `.` or `..`, and
    /// without `/` or NUL.
    pub fn is_plain_component(&self) -> bool {
        !self.0.is_empty()
            && self.0 != b"."
            && self.0 != b".."
            && !self.0.iter().any(|&b| b == b'/' || b == 0)
    }
}

impl std::fmt::Display for NodeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string_lossy())
    }
}

impl std::fmt::Debug for NodeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{}\"", crate::goquote::quote(&self.0))
    }
}

impl From<&str> for NodeName {
    fn from(s: &str) -> NodeName {
        NodeName(s.as_bytes().to_vec())
    }
}

impl From<String> for NodeName {
    fn from(s: String) -> NodeName {
        NodeName(s.into_bytes())
    }
}

impl From<&std::ffi::OsStr> for NodeName {
    fn from(s: &std::ffi::OsStr) -> NodeName {
        use std::os::unix::ffi::OsStrExt;
        NodeName(s.as_bytes().to_vec())
    }
}

impl PartialEq<str> for NodeName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for NodeName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The real name; trees store it Go-quoted (see `goquote`).
    pub name: NodeName,
    pub node_type: NodeType,
    /// Go `os.FileMode` bits (type bits high, permissions low).
    pub mode: u32,
    pub mtime: DateTime<FixedOffset>,
    pub atime: DateTime<FixedOffset>,
    pub ctime: DateTime<FixedOffset>,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub group: String,
    pub inode: u64,
    pub device_id: u64,
    pub size: u64,
    pub links: u64,
    pub linktarget: String,
    pub extended_attributes: Vec<ExtendedAttribute>,
    pub device: u64,
    /// `None` encodes as `null` (directories, special files), `Some(vec![])` as `[]`.
    pub content: Option<Vec<Id>>,
    pub subtree: Option<Id>,
    pub error: String,
}

thread_local! {
    // Per thread, so walker threads never contend on a lock for every file.
    static USERS: std::cell::RefCell<HashMap<u32, String>> = Default::default();
    static GROUPS: std::cell::RefCell<HashMap<u32, String>> = Default::default();
}

fn cached_name(
    cache: &'static std::thread::LocalKey<std::cell::RefCell<HashMap<u32, String>>>,
    id: u32,
    lookup: impl Fn(u32) -> Option<String>,
) -> String {
    if let Some(n) = cache.with(|c| c.borrow().get(&id).cloned()) {
        return n;
    }
    let name = lookup(id).unwrap_or_default();
    cache.with(|c| c.borrow_mut().insert(id, name.clone()));
    name
}

/// The user name of a uid ("" if unknown), looked up once per uid (and thread).
pub fn user_name(uid: u32) -> String {
    cached_name(&USERS, uid, |u| {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(u))
            .ok()
            .flatten()
            .map(|u| u.name)
    })
}

/// The group name of a gid ("" if unknown), looked up once per gid (and thread).
pub fn group_name(gid: u32) -> String {
    cached_name(&GROUPS, gid, |g| {
        nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(g))
            .ok()
            .flatten()
            .map(|g| g.name)
    })
}

/// Go's `os.FileMode` for a unix `st_mode`, masked like restic (perm, type, setuid/gid, sticky).
pub fn go_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    match st_mode & 0o170000 {
        0o060000 => m |= MODE_DEVICE,
        0o020000 => m |= MODE_DEVICE | MODE_CHAR_DEVICE,
        0o040000 => m |= MODE_DIR,
        0o010000 => m |= MODE_NAMED_PIPE,
        0o120000 => m |= MODE_SYMLINK,
        0o140000 => m |= MODE_SOCKET,
        _ => {}
    }
    if st_mode & 0o2000 != 0 {
        m |= MODE_SETGID;
    }
    if st_mode & 0o4000 != 0 {
        m |= MODE_SETUID;
    }
    if st_mode & 0o1000 != 0 {
        m |= MODE_STICKY;
    }
    m
}

/// Reads all extended attributes of a path (not following symlinks), in listing order.
pub fn read_xattrs(path: &Path) -> std::io::Result<Vec<ExtendedAttribute>> {
    let mut out = Vec::new();
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTSUP) => return Ok(out),
        Err(e) => return Err(e),
    };
    for name in names {
        if let Ok(Some(value)) = xattr::get(path, &name) {
            out.push(ExtendedAttribute {
                name: name.to_string_lossy().into_owned(),
                value,
            });
        }
    }
    Ok(out)
}

/// What `lstat` says of a file: the fields a node is built from. From `std::fs::Metadata`,
/// or from a `statat` relative to the directory's descriptor (the backup walker: no path
/// walk in the kernel for each file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    /// The unix `st_mode` (type and permission bits).
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub ctime: i64,
    pub ctime_nsec: u32,
}

impl From<&std::fs::Metadata> for Stat {
    fn from(m: &std::fs::Metadata) -> Stat {
        Stat {
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            nlink: m.nlink(),
            uid: m.uid(),
            gid: m.gid(),
            rdev: m.rdev(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec() as u32,
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec() as u32,
        }
    }
}

impl From<&rustix::fs::Stat> for Stat {
    // The field types of `struct stat` differ between targets.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn from(m: &rustix::fs::Stat) -> Stat {
        Stat {
            dev: m.st_dev as u64,
            ino: m.st_ino as u64,
            mode: m.st_mode as u32,
            nlink: m.st_nlink as u64,
            uid: m.st_uid as u32,
            gid: m.st_gid as u32,
            rdev: m.st_rdev as u64,
            size: m.st_size as u64,
            mtime: m.st_mtime as i64,
            mtime_nsec: m.st_mtime_nsec as u32,
            ctime: m.st_ctime as i64,
            ctime_nsec: m.st_ctime_nsec as u32,
        }
    }
}

impl Stat {
    pub fn node_type(&self) -> NodeType {
        match self.mode & 0o170000 {
            0o100000 => NodeType::File,
            0o040000 => NodeType::Dir,
            0o120000 => NodeType::Symlink,
            0o060000 => NodeType::Dev,
            0o020000 => NodeType::CharDev,
            0o010000 => NodeType::Fifo,
            0o140000 => NodeType::Socket,
            _ => NodeType::Irregular,
        }
    }

    pub fn is_file(&self) -> bool {
        self.mode & 0o170000 == 0o100000
    }

    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }
}

/// Whether two nodes encode to the same bytes (every field equal, and times equal with
/// their zones: `DateTime`'s `==` compares instants only, the encoding shows the zone).
pub fn encodes_same(a: &Node, b: &Node) -> bool {
    let same_time =
        |x: &DateTime<FixedOffset>, y: &DateTime<FixedOffset>| x == y && x.offset() == y.offset();
    a == b
        && same_time(&a.mtime, &b.mtime)
        && same_time(&a.atime, &b.atime)
        && same_time(&a.ctime, &b.ctime)
}

impl Node {
    /// A node for `meta` (from lstat of `path`) exactly as restic 0.14's archiver builds
    /// it. `content`/`subtree` are left for the caller.
    pub fn from_path(
        path: &Path,
        name: impl Into<NodeName>,
        meta: &std::fs::Metadata,
        with_xattrs: bool,
    ) -> std::io::Result<Node> {
        Node::from_stat(path, name, &Stat::from(meta), with_xattrs)
    }

    /// [`Node::from_path`] from [`Stat`] (`path` is read only for a symlink's target and
    /// the xattrs).
    pub fn from_stat(
        path: &Path,
        name: impl Into<NodeName>,
        meta: &Stat,
        with_xattrs: bool,
    ) -> std::io::Result<Node> {
        let node_type = meta.node_type();
        let mtime = gotime::local_from_unix(meta.mtime, meta.mtime_nsec);
        let mut node = Node {
            name: name.into(),
            node_type,
            mode: go_mode(meta.mode),
            mtime,
            // restic records the mtime as atime unless --with-atime: reading must not
            // change trees.
            atime: mtime,
            ctime: gotime::local_from_unix(meta.ctime, meta.ctime_nsec),
            uid: meta.uid,
            gid: meta.gid,
            user: user_name(meta.uid),
            group: group_name(meta.gid),
            inode: meta.ino,
            device_id: meta.dev,
            size: 0,
            links: 0,
            linktarget: String::new(),
            extended_attributes: Vec::new(),
            device: 0,
            content: None,
            subtree: None,
            error: String::new(),
        };
        match node_type {
            NodeType::File => {
                node.size = meta.size;
                node.links = meta.nlink;
            }
            NodeType::Symlink => {
                node.linktarget = std::fs::read_link(path)?.to_string_lossy().into_owned();
                node.links = meta.nlink;
            }
            NodeType::Dev | NodeType::CharDev => {
                node.device = meta.rdev;
                node.links = meta.nlink;
            }
            _ => {}
        }
        if with_xattrs && node_type != NodeType::Symlink {
            node.extended_attributes = read_xattrs(path)?;
        }
        Ok(node)
    }

    /// The node of data read from standard input or a command: a 0644 file owned by us, now.
    /// A directory that exists only in the snapshot (it holds streamed files whose
    /// directories are not on disk): owned by us, 0755, now.
    pub fn synthetic_dir(name: impl Into<NodeName>) -> Node {
        Node {
            node_type: NodeType::Dir,
            mode: MODE_DIR | 0o755,
            content: None,
            ..Node::for_stdin(name)
        }
    }

    pub fn for_stdin(name: impl Into<NodeName>) -> Node {
        let now = chrono::Local::now().fixed_offset();
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        Node {
            name: name.into(),
            node_type: NodeType::File,
            mode: 0o644,
            mtime: now,
            atime: now,
            ctime: now,
            uid,
            gid,
            user: user_name(uid),
            group: group_name(gid),
            inode: 0,
            device_id: 0,
            size: 0,
            links: 0,
            linktarget: String::new(),
            extended_attributes: Vec::new(),
            device: 0,
            content: Some(Vec::new()),
            subtree: None,
            error: String::new(),
        }
    }

    /// Permission and special bits for chmod (Go's syscallMode).
    pub fn unix_mode(&self) -> u32 {
        let mut m = self.mode & 0o777;
        if self.mode & MODE_SETUID != 0 {
            m |= 0o4000;
        }
        if self.mode & MODE_SETGID != 0 {
            m |= 0o2000;
        }
        if self.mode & MODE_STICKY != 0 {
            m |= 0o1000;
        }
        m
    }
}

/// Appends `s` as a JSON string the way Go's encoding/json (1.19, HTML-safe) writes it.
fn push_go_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let esc: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            _ => None,
        };
        if let Some(e) = esc {
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(e);
            i += 1;
            start = i;
            continue;
        }
        if b < 0x20 || b == b'<' || b == b'>' || b == b'&' {
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
            i += 1;
            start = i;
            continue;
        }
        // U+2028 and U+2029 (E2 80 A8/A9) are escaped for JavaScript safety.
        if b == 0xE2 && i + 2 < bytes.len() && bytes[i + 1] == 0x80 && (bytes[i + 2] & 0xFE) == 0xA8
        {
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(if bytes[i + 2] == 0xA8 {
                b"\\u2028"
            } else {
                b"\\u2029"
            });
            i += 3;
            start = i;
            continue;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn push_field_name(out: &mut Vec<u8>, name: &str) {
    out.push(b',');
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_id(out: &mut Vec<u8>, id: &Id) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 66];
    buf[0] = b'"';
    for (i, b) in id.0.iter().enumerate() {
        buf[1 + 2 * i] = HEX[(b >> 4) as usize];
        buf[2 + 2 * i] = HEX[(b & 0xf) as usize];
    }
    buf[65] = b'"';
    out.extend_from_slice(&buf);
}

/// Whether Go's `strconv.Quote` leaves `bytes` as they are (printable ASCII without `"`
/// and `\\`), and so `strconv.Unquote` too: the common name needs no escaping work.
fn quote_is_identity(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

fn encode_node(out: &mut Vec<u8>, n: &Node) {
    out.extend_from_slice(b"{\"name\":");
    // restic 0.14's Node.MarshalJSON: `strconv.Quote(name)` without its quotes.
    match std::str::from_utf8(n.name.as_bytes()) {
        Ok(plain) if quote_is_identity(plain.as_bytes()) => push_go_string(out, plain),
        _ => push_go_string(out, &crate::goquote::quote(n.name.as_bytes())),
    }
    push_field_name(out, "type");
    push_go_string(out, n.node_type.as_str());
    if n.mode != 0 {
        push_field_name(out, "mode");
        push_u64(out, n.mode as u64);
    }
    for (name, t) in [
        ("mtime", &n.mtime),
        ("atime", &n.atime),
        ("ctime", &n.ctime),
    ] {
        push_field_name(out, name);
        out.push(b'"');
        gotime::push_format(out, t);
        out.push(b'"');
    }
    push_field_name(out, "uid");
    push_u64(out, n.uid as u64);
    push_field_name(out, "gid");
    push_u64(out, n.gid as u64);
    if !n.user.is_empty() {
        push_field_name(out, "user");
        push_go_string(out, &n.user);
    }
    if !n.group.is_empty() {
        push_field_name(out, "group");
        push_go_string(out, &n.group);
    }
    for (name, v) in [
        ("inode", n.inode),
        ("device_id", n.device_id),
        ("size", n.size),
        ("links", n.links),
    ] {
        if v != 0 {
            push_field_name(out, name);
            push_u64(out, v);
        }
    }
    if !n.linktarget.is_empty() {
        push_field_name(out, "linktarget");
        push_go_string(out, &n.linktarget);
    }
    if !n.extended_attributes.is_empty() {
        push_field_name(out, "extended_attributes");
        out.push(b'[');
        for (i, x) in n.extended_attributes.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"name\":");
            push_go_string(out, &x.name);
            out.extend_from_slice(b",\"value\":\"");
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(&x.value)
                    .as_bytes(),
            );
            out.extend_from_slice(b"\"}");
        }
        out.push(b']');
    }
    if n.device != 0 {
        push_field_name(out, "device");
        push_u64(out, n.device);
    }
    push_field_name(out, "content");
    match &n.content {
        None => out.extend_from_slice(b"null"),
        Some(ids) => {
            out.push(b'[');
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_id(out, id);
            }
            out.push(b']');
        }
    }
    if let Some(s) = &n.subtree {
        push_field_name(out, "subtree");
        push_id(out, s);
    }
    if !n.error.is_empty() {
        push_field_name(out, "error");
        push_go_string(out, &n.error);
    }
    out.push(b'}');
}

/// The exact bytes restic stores for a tree: `{"nodes":[...]}` and a newline.
pub fn encode_tree(nodes: &[Node]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + nodes.len() * 400);
    out.extend_from_slice(b"{\"nodes\":[");
    for (i, n) in nodes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        encode_node(&mut out, n);
    }
    out.extend_from_slice(b"]}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<FixedOffset> {
        gotime::parse(s).unwrap()
    }

    fn file_node() -> Node {
        Node {
            name: "a <&> b\u{1}\u{2028}é\"\\\n".into(),
            node_type: NodeType::File,
            mode: 0o644,
            mtime: t("2020-09-13T14:26:40.123456789+02:00"),
            atime: t("2020-09-13T14:26:40.123456789+02:00"),
            ctime: t("2024-01-02T03:04:05Z"),
            uid: 1000,
            gid: 0,
            user: "alice".into(),
            group: String::new(),
            inode: 42,
            device_id: 2049,
            size: 5,
            links: 1,
            linktarget: String::new(),
            extended_attributes: vec![ExtendedAttribute {
                name: "user.x".into(),
                value: vec![0, 1, 255],
            }],
            device: 0,
            content: Some(vec![Id::hash(b"hello")]),
            subtree: None,
            error: String::new(),
        }
    }

    #[test]
    fn encodes_like_go_encoding_json() {
        let n = file_node();
        let got = String::from_utf8(encode_tree(&[n])).unwrap();
        let want = format!(
            "{{\"nodes\":[{{\"name\":{name},\"type\":\"file\",\"mode\":420,\
\"mtime\":\"2020-09-13T14:26:40.123456789+02:00\",\"atime\":\"2020-09-13T14:26:40.123456789+02:00\",\
\"ctime\":\"2024-01-02T03:04:05Z\",\"uid\":1000,\"gid\":0,\"user\":\"alice\",\"inode\":42,\"device_id\":2049,\
\"size\":5,\"links\":1,\"extended_attributes\":[{{\"name\":\"user.x\",\"value\":\"AAH/\"}}],\
\"content\":[\"{}\"]}}]}}\n",
            Id::hash(b"hello"),
            // Go-quoted (`\x01`, `\u2028`, `\"`, `\\`, `\n`), then JSON-escaped.
            name = r#""a \u003c\u0026\u003e b\\x01\\u2028é\\\"\\\\\\n""#,
        );
        assert_eq!(got, want);
        let dir = Node {
            name: "d".into(),
            node_type: NodeType::Dir,
            mode: MODE_DIR | 0o755,
            content: None,
            subtree: Some(Id::hash(b"t")),
            extended_attributes: vec![],
            size: 0,
            links: 0,
            ..file_node()
        };
        let got = String::from_utf8(encode_tree(&[dir])).unwrap();
        assert!(got.contains("\"mode\":2147484141"), "{got}");
        assert!(got.contains("\"content\":null,\"subtree\":\""), "{got}");
        assert_eq!(encode_tree(&[]), b"{\"nodes\":[]}\n");
    }

    #[test]
    fn decode_then_encode_reproduces_the_bytes() {
        let bytes = encode_tree(&[
            file_node(),
            Node {
                content: Some(vec![]),
                ..file_node()
            },
        ]);
        let nodes = decode_tree(&bytes).unwrap();
        assert_eq!(nodes[0], file_node());
        assert_eq!(encode_tree(&nodes), bytes);
    }

    #[test]
    fn names_are_go_quoted_in_trees_and_unquoted_on_read() {
        let named = |name: &[u8]| Node {
            name: NodeName::new(name),
            ..file_node()
        };
        // What restic 0.14 stores for these names (strconv.Quote, then encoding/json).
        for (name, stored) in [
            (&b"new\nline"[..], r#""new\\nline""#),
            (b"quo\"te", r#""quo\\\"te""#),
            (b"back\\slash", r#""back\\\\slash""#),
            (b"bad\xff\xc3utf8", r#""bad\\xff\\xc3utf8""#),
            (b"tab\there", r#""tab\\there""#),
        ] {
            let bytes = encode_tree(&[named(name)]);
            let text = String::from_utf8(bytes.clone()).unwrap();
            assert!(
                text.starts_with(&format!("{{\"nodes\":[{{\"name\":{stored},")),
                "{text}"
            );
            let back = decode_tree(&bytes).unwrap();
            assert_eq!(back[0].name.as_bytes(), name);
            assert_eq!(encode_tree(&back), bytes);
        }
    }

    #[test]
    fn a_name_that_does_not_unquote_fails_the_tree_like_restic() {
        // Written unquoted (as cairn did before): restic fails with "Unquote: invalid syntax".
        for stored in [r#"back\\slash"#, r#"quo\"te"#, r#"new\nline"#, r#"end\\"#] {
            let tree = format!("{{\"nodes\":[{{\"name\":\"{stored}\",\"type\":\"file\"}}]}}");
            let err = decode_tree(tree.as_bytes()).unwrap_err().to_string();
            assert!(err.contains("Unquote: invalid syntax"), "{stored}: {err}");
        }
    }

    #[test]
    fn node_names_order_by_bytes_and_check_components() {
        let mut names = [
            NodeName::new(&b"\xff"[..]),
            NodeName::from("b"),
            NodeName::from("a"),
            NodeName::from("é"),
        ];
        names.sort();
        let bytes: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
        assert_eq!(bytes, [&b"a"[..], b"b", "é".as_bytes(), b"\xff"]);
        for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"nul\0"] {
            assert!(!NodeName::new(bad).is_plain_component(), "{bad:?}");
        }
        for good in [&b"..."[..], b".a", b"a\\b", b"\xff", b"new\nline"] {
            assert!(NodeName::new(good).is_plain_component(), "{good:?}");
        }
        assert_eq!(
            format!("{:?}", NodeName::new(&b"a\n\xff"[..])),
            r#""a\n\xff""#
        );
        assert_eq!(NodeName::new(&b"a\xff"[..]).to_string(), "a\u{fffd}");
    }

    #[test]
    fn go_mode_maps_types_and_special_bits() {
        assert_eq!(go_mode(0o100644), 0o644);
        assert_eq!(go_mode(0o040755), MODE_DIR | 0o755);
        assert_eq!(go_mode(0o120777), MODE_SYMLINK | 0o777);
        assert_eq!(go_mode(0o104755), MODE_SETUID | 0o755);
        assert_eq!(go_mode(0o041777), MODE_DIR | MODE_STICKY | 0o777);
        assert_eq!(go_mode(0o020620), MODE_DEVICE | MODE_CHAR_DEVICE | 0o620);
    }
}
