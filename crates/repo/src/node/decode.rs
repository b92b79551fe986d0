//! Decoding trees. Two paths: a strict one for the canonical bytes [`encode_tree`] writes
//! (restic 0.14 writes the same), which is most trees and is what a no-change backup
//! decodes for every directory, and serde_json for anything else.
//!
//! The strict path accepts a tree only if encoding what it returns gives back exactly the
//! input bytes: fields in encoding order, `omitempty` fields present only when non-empty,
//! numbers without leading zeros, strings without escapes (a string that needs one makes
//! it give up), ids in lower-case hex, times as `gotime::push_format` writes them, xattr
//! values in canonical base64. Whatever it does not accept goes to serde_json, so it
//! changes no result, only the cost; and a tree it accepts is known to be canonical: a
//! directory whose nodes are [`encodes_same`] as such a parent tree's has that tree's id
//! without encoding it again.
//!
//! [`encode_tree`]: super::encode_tree
//! [`encodes_same`]: super::encodes_same

use super::{quote_is_identity, ExtendedAttribute, Node, NodeName, NodeType};
use crate::gotime;
use crate::id::Id;
use base64::Engine;
use chrono::{DateTime, FixedOffset};
use serde::Deserialize;
use std::borrow::Cow;

/// Parses a tree written by restic or cairn (unknown fields of newer restic versions are
/// ignored).
pub fn decode_tree(bytes: &[u8]) -> Result<Vec<Node>, serde_json::Error> {
    Ok(decode_tree_canonical(bytes)?.0)
}

/// [`decode_tree`], and whether the bytes are exactly what [`super::encode_tree`] writes
/// for the nodes returned.
pub fn decode_tree_canonical(bytes: &[u8]) -> Result<(Vec<Node>, bool), serde_json::Error> {
    match decode_strict(bytes) {
        Some(nodes) => Ok((nodes, true)),
        None => Ok((decode_tree_serde(bytes)?, false)),
    }
}

/// A cursor over canonical tree bytes; every method returns None at the first byte that
/// is not what the encoder would have written.
struct Strict<'a> {
    b: &'a [u8],
    i: usize,
    /// Scratch for re-encoding times and xattr values to compare them with the input.
    scratch: Vec<u8>,
}

impl<'a> Strict<'a> {
    fn lit(&mut self, s: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + s.len())? == s {
            self.i += s.len();
            Some(())
        } else {
            None
        }
    }

    /// Consumes `s` if it is next.
    fn opt(&mut self, s: &[u8]) -> bool {
        self.lit(s).is_some()
    }

    /// A string the encoder writes verbatim (no byte it would escape), without its quotes.
    fn plain(&mut self) -> Option<&'a str> {
        self.lit(b"\"")?;
        let start = self.i;
        let rest = self.b.get(start..)?;
        let len = rest.iter().position(|&c| c == b'"')?;
        let s = &rest[..len];
        for (k, &c) in s.iter().enumerate() {
            if c < 0x20 || c == b'\\' || c == b'<' || c == b'>' || c == b'&' {
                return None;
            }
            // U+2028 and U+2029 are escaped by the encoder.
            if c == 0xE2
                && s.get(k + 1) == Some(&0x80)
                && s.get(k + 2).is_some_and(|&x| x & 0xFE == 0xA8)
            {
                return None;
            }
        }
        self.i = start + len + 1;
        std::str::from_utf8(s).ok()
    }

    fn nonempty(&mut self) -> Option<&'a str> {
        self.plain().filter(|s| !s.is_empty())
    }

    /// A decimal number as the encoder writes it: no sign, no leading zero.
    fn num(&mut self) -> Option<u64> {
        let rest = self.b.get(self.i..)?;
        let len = rest
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if len == 0 || len > 20 || (len > 1 && rest[0] == b'0') {
            return None;
        }
        let mut n = 0u64;
        for &c in &rest[..len] {
            n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        }
        self.i += len;
        Some(n)
    }

    fn nonzero(&mut self) -> Option<u64> {
        self.num().filter(|&n| n != 0)
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.num()?).ok()
    }

    /// An id: 64 lower-case hex digits in quotes.
    fn id(&mut self) -> Option<Id> {
        let s = self.b.get(self.i..self.i + 66)?;
        if s[0] != b'"' || s[65] != b'"' {
            return None;
        }
        let mut id = [0u8; 32];
        for (k, pair) in s[1..65].chunks_exact(2).enumerate() {
            let hex = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            };
            id[k] = hex(pair[0])? << 4 | hex(pair[1])?;
        }
        self.i += 66;
        Some(Id(id))
    }

    /// A time, accepted only if formatting it gives the same text back.
    fn time(&mut self) -> Option<DateTime<FixedOffset>> {
        let s = self.plain()?;
        let t = gotime::parse(s)?;
        self.scratch.clear();
        gotime::push_format(&mut self.scratch, &t);
        (self.scratch == s.as_bytes()).then_some(t)
    }

    fn node(&mut self) -> Option<Node> {
        self.lit(b"{\"name\":")?;
        let name = self.plain()?;
        // Stored Go-quoted: a name that quotes to itself is its own bytes.
        if !quote_is_identity(name.as_bytes()) {
            return None;
        }
        self.lit(b",\"type\":")?;
        let ty = self.plain()?;
        let node_type = NodeType::parse(ty);
        if node_type.as_str() != ty {
            return None;
        }
        let mode = if self.opt(b",\"mode\":") {
            u32::try_from(self.nonzero()?).ok()?
        } else {
            0
        };
        self.lit(b",\"mtime\":")?;
        let m_at = self.i;
        let mtime = self.time()?;
        let m_text = &self.b[m_at..self.i];
        self.lit(b",\"atime\":")?;
        // Usually the same text as the mtime (restic records the mtime as atime).
        let atime = if self.b.get(self.i..self.i + m_text.len()) == Some(m_text)
            && self.b.get(self.i + m_text.len()) == Some(&b',')
        {
            self.i += m_text.len();
            mtime
        } else {
            self.time()?
        };
        self.lit(b",\"ctime\":")?;
        let ctime = self.time()?;
        self.lit(b",\"uid\":")?;
        let uid = self.u32()?;
        self.lit(b",\"gid\":")?;
        let gid = self.u32()?;
        let field = |p: &mut Self, key: &[u8]| -> Option<Option<u64>> {
            if p.opt(key) {
                p.nonzero().map(Some)
            } else {
                Some(None)
            }
        };
        let user = if self.opt(b",\"user\":") {
            self.nonempty()?
        } else {
            ""
        };
        let group = if self.opt(b",\"group\":") {
            self.nonempty()?
        } else {
            ""
        };
        let inode = field(self, b",\"inode\":")?.unwrap_or(0);
        let device_id = field(self, b",\"device_id\":")?.unwrap_or(0);
        let size = field(self, b",\"size\":")?.unwrap_or(0);
        let links = field(self, b",\"links\":")?.unwrap_or(0);
        let linktarget = if self.opt(b",\"linktarget\":") {
            self.nonempty()?
        } else {
            ""
        };
        let mut extended_attributes = Vec::new();
        if self.opt(b",\"extended_attributes\":[") {
            loop {
                self.lit(b"{\"name\":")?;
                let name = self.plain()?.to_string();
                self.lit(b",\"value\":")?;
                let text = self.plain()?;
                let b64 = base64::engine::general_purpose::STANDARD;
                let value = b64.decode(text.as_bytes()).ok()?;
                self.scratch.clear();
                self.scratch
                    .extend_from_slice(b64.encode(&value).as_bytes());
                if self.scratch != text.as_bytes() {
                    return None;
                }
                self.lit(b"}")?;
                extended_attributes.push(ExtendedAttribute { name, value });
                if !self.opt(b",") {
                    break;
                }
            }
            self.lit(b"]")?;
        }
        let device = field(self, b",\"device\":")?.unwrap_or(0);
        self.lit(b",\"content\":")?;
        let content = if self.opt(b"null") {
            None
        } else {
            self.lit(b"[")?;
            let mut ids = Vec::new();
            if !self.opt(b"]") {
                loop {
                    ids.push(self.id()?);
                    if self.opt(b"]") {
                        break;
                    }
                    self.lit(b",")?;
                }
            }
            Some(ids)
        };
        let subtree = if self.opt(b",\"subtree\":") {
            Some(self.id()?)
        } else {
            None
        };
        let error = if self.opt(b",\"error\":") {
            self.nonempty()?
        } else {
            ""
        };
        self.lit(b"}")?;
        Some(Node {
            name: NodeName(name.as_bytes().to_vec()),
            node_type,
            mode,
            mtime,
            atime,
            ctime,
            uid,
            gid,
            user: user.to_string(),
            group: group.to_string(),
            inode,
            device_id,
            size,
            links,
            linktarget: linktarget.to_string(),
            extended_attributes,
            device,
            content,
            subtree,
            error: error.to_string(),
        })
    }
}

/// The strict decoder: the nodes, or None if the bytes are not canonical.
fn decode_strict(bytes: &[u8]) -> Option<Vec<Node>> {
    let mut p = Strict {
        b: bytes,
        i: 0,
        scratch: Vec::with_capacity(64),
    };
    p.lit(b"{\"nodes\":[")?;
    // A file's node takes 300-500 bytes: no regrowing (and copying) for a large directory.
    let mut nodes = Vec::with_capacity(bytes.len() / 320 + 1);
    if !p.opt(b"]") {
        loop {
            nodes.push(p.node()?);
            if p.opt(b"]") {
                break;
            }
            p.lit(b",")?;
        }
    }
    p.lit(b"}\n")?;
    (p.i == bytes.len()).then_some(nodes)
}

// The raw shapes borrow from the tree's bytes where the JSON text has no escapes: a
// no-change backup decodes every parent tree, and an allocation per string was most of it.
#[derive(Deserialize)]
struct RawTree<'a> {
    #[serde(default, borrow)]
    nodes: Option<Vec<RawNode<'a>>>,
}

#[derive(Deserialize)]
struct RawXattr<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    value: Option<Cow<'a, str>>,
}

/// An id read from its hex text without an intermediate `String`.
struct HexId(Id);

impl<'de> Deserialize<'de> for HexId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<HexId, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = HexId;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a hex id")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<HexId, E> {
                Id::parse(s)
                    .map(HexId)
                    .ok_or_else(|| E::custom(format!("invalid id {s:?}")))
            }
        }
        d.deserialize_str(V)
    }
}

/// A time read from its text without an intermediate `String`.
struct GoTime(DateTime<FixedOffset>);

impl<'de> Deserialize<'de> for GoTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<GoTime, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = GoTime;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an RFC 3339 time")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<GoTime, E> {
                gotime::parse(s)
                    .map(GoTime)
                    .ok_or_else(|| E::custom(format!("invalid time {s:?}")))
            }
        }
        d.deserialize_str(V)
    }
}

#[derive(Deserialize)]
struct RawNode<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    node_type: Cow<'a, str>,
    #[serde(default)]
    mode: u32,
    #[serde(default)]
    mtime: Option<GoTime>,
    #[serde(default)]
    atime: Option<GoTime>,
    #[serde(default)]
    ctime: Option<GoTime>,
    #[serde(default)]
    uid: u32,
    #[serde(default)]
    gid: u32,
    #[serde(default, borrow)]
    user: Cow<'a, str>,
    #[serde(default, borrow)]
    group: Cow<'a, str>,
    #[serde(default)]
    inode: u64,
    #[serde(default)]
    device_id: u64,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    links: u64,
    #[serde(default, borrow)]
    linktarget: Cow<'a, str>,
    #[serde(default, borrow)]
    extended_attributes: Option<Vec<RawXattr<'a>>>,
    #[serde(default)]
    device: u64,
    #[serde(default)]
    content: Option<Vec<HexId>>,
    #[serde(default)]
    subtree: Option<HexId>,
    #[serde(default, borrow)]
    error: Cow<'a, str>,
}

fn parse_time(t: Option<GoTime>) -> DateTime<FixedOffset> {
    t.map_or_else(|| DateTime::UNIX_EPOCH.fixed_offset(), |t| t.0)
}

/// The general decoder: any JSON restic accepts (unknown fields of newer restic versions
/// are ignored).
fn decode_tree_serde(bytes: &[u8]) -> Result<Vec<Node>, serde_json::Error> {
    let raw: RawTree = serde_json::from_slice(bytes)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    raw.nodes
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            // restic 0.14's Node.UnmarshalJSON: `strconv.Unquote("\"" + name + "\"")`.
            let name = if quote_is_identity(r.name.as_bytes()) {
                NodeName(r.name.as_bytes().to_vec())
            } else {
                crate::goquote::unquote(&r.name)
                    .map(NodeName)
                    .map_err(|e| {
                        serde::de::Error::custom(format!("node name {:?}: Unquote: {e}", r.name))
                    })?
            };
            let xattrs = r
                .extended_attributes
                .unwrap_or_default()
                .into_iter()
                .map(|x| {
                    let value = match x.value {
                        Some(v) => b64
                            .decode(v.as_bytes())
                            .map_err(|e| serde::de::Error::custom(format!("xattr value: {e}")))?,
                        None => Vec::new(),
                    };
                    Ok(ExtendedAttribute {
                        name: x.name.into_owned(),
                        value,
                    })
                })
                .collect::<Result<Vec<_>, serde_json::Error>>()?;
            Ok(Node {
                node_type: NodeType::parse(&r.node_type),
                mtime: parse_time(r.mtime),
                atime: parse_time(r.atime),
                ctime: parse_time(r.ctime),
                name,
                mode: r.mode,
                uid: r.uid,
                gid: r.gid,
                user: r.user.into_owned(),
                group: r.group.into_owned(),
                inode: r.inode,
                device_id: r.device_id,
                size: r.size,
                links: r.links,
                linktarget: r.linktarget.into_owned(),
                extended_attributes: xattrs,
                device: r.device,
                content: r.content.map(|c| c.into_iter().map(|h| h.0).collect()),
                subtree: r.subtree.map(|h| h.0),
                error: r.error.into_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{encode_tree, encodes_same};
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn time() -> impl Strategy<Value = DateTime<FixedOffset>> {
        (
            // Years 0-9999: what Go's encoding/json writes (and reads back).
            -62_000_000_000i64..253_000_000_000,
            prop_oneof![Just(0u32), 0u32..1_000_000_000, Just(500_000_000)],
            prop_oneof![Just(0i32), -720i32..840],
        )
            .prop_map(|(s, n, off)| {
                FixedOffset::east_opt(off * 60)
                    .unwrap()
                    .timestamp_opt(s, n)
                    .unwrap()
            })
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[a-z0-9._ -]{1,12}",
            "[a-z]{0,3}[<>&\"\\\\\n\u{1}\u{2028}é]{1,2}[a-z]{0,3}",
        ]
    }

    fn node() -> impl Strategy<Value = Node> {
        let ids = proptest::collection::vec(any::<[u8; 32]>().prop_map(Id), 0..3);
        (
            (
                prop_oneof![
                    "[a-zA-Z0-9._ -]{1,12}".prop_map(|s| NodeName::new(s.into_bytes())),
                    proptest::collection::vec(any::<u8>(), 1..8).prop_map(NodeName::new),
                ],
                0usize..8,
                prop_oneof![Just(0u32), any::<u32>()],
                time(),
                prop_oneof![Just(None), time().prop_map(Some)],
                time(),
                any::<(u32, u32)>(),
            ),
            (
                text(),
                text(),
                proptest::collection::vec(prop_oneof![Just(0u64), any::<u64>()], 5),
                text(),
                proptest::collection::vec(
                    ("[a-z.]{0,8}", proptest::collection::vec(any::<u8>(), 0..6)),
                    0..3,
                ),
                prop_oneof![Just(None), ids.prop_map(Some)],
                prop_oneof![Just(None), any::<[u8; 32]>().prop_map(|b| Some(Id(b)))],
                text(),
            ),
        )
            .prop_map(
                |(
                    (name, ty, mode, mtime, atime, ctime, (uid, gid)),
                    (user, group, nums, linktarget, xattrs, content, subtree, error),
                )| {
                    let types = [
                        NodeType::File,
                        NodeType::Dir,
                        NodeType::Symlink,
                        NodeType::Dev,
                        NodeType::CharDev,
                        NodeType::Fifo,
                        NodeType::Socket,
                        NodeType::Irregular,
                    ];
                    Node {
                        name,
                        node_type: types[ty],
                        mode,
                        mtime,
                        atime: atime.unwrap_or(mtime),
                        ctime,
                        uid,
                        gid,
                        user,
                        group,
                        inode: nums[0],
                        device_id: nums[1],
                        size: nums[2],
                        links: nums[3],
                        linktarget,
                        extended_attributes: xattrs
                            .into_iter()
                            .map(|(name, value)| ExtendedAttribute { name, value })
                            .collect(),
                        device: nums[4],
                        content,
                        subtree,
                        error,
                    }
                },
            )
    }

    fn same(a: &[Node], b: &[Node]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| encodes_same(x, y))
    }

    proptest! {
        /// What the encoder writes decodes to the same nodes by either path, and the strict
        /// path takes it unless a string needed escaping.
        #[test]
        fn encoded_trees_decode_to_their_nodes(nodes in proptest::collection::vec(node(), 0..4)) {
            let bytes = encode_tree(&nodes);
            let serde = decode_tree_serde(&bytes).unwrap();
            prop_assert!(same(&serde, &nodes));
            let (got, canonical) = decode_tree_canonical(&bytes).unwrap();
            prop_assert!(same(&got, &nodes));
            let plain = |s: &str| !s.bytes().any(|c| c < 0x20 || b"\"\\<>&".contains(&c))
                && !s.contains('\u{2028}');
            let all_plain = nodes.iter().all(|n| {
                super::quote_is_identity(n.name.as_bytes())
                    && plain(std::str::from_utf8(n.name.as_bytes()).unwrap_or("<"))
                    && [&n.user, &n.group, &n.linktarget, &n.error].iter().all(|s| plain(s))
                    && n.extended_attributes.iter().all(|x| plain(&x.name))
            });
            prop_assert_eq!(canonical, all_plain);
        }

        /// Whatever the strict path accepts, encoding gives back exactly, and serde_json
        /// reads the same nodes from it.
        #[test]
        fn the_strict_path_accepts_only_canonical_bytes(
            nodes in proptest::collection::vec(node(), 1..3),
            edits in proptest::collection::vec((any::<proptest::sample::Index>(), 0u8..3, any::<u8>()), 1..4),
        ) {
            let mut bytes = encode_tree(&nodes);
            for (at, kind, b) in edits {
                let i = at.index(bytes.len());
                match kind {
                    0 => bytes[i] = b,
                    1 => { bytes.remove(i); }
                    _ => bytes.insert(i, b),
                }
            }
            if let Some(got) = decode_strict(&bytes) {
                prop_assert_eq!(encode_tree(&got), bytes.clone());
                let serde = decode_tree_serde(&bytes).unwrap();
                prop_assert!(same(&serde, &got));
            }
        }
    }

    #[test]
    fn other_spellings_go_to_serde_and_decode_alike() {
        let id = "ab".repeat(32);
        let base = format!(
            "{{\"name\":\"f\",\"type\":\"file\",\"mode\":420,\"mtime\":\"2020-01-02T03:04:05.5+01:00\",\
\"atime\":\"2020-01-02T03:04:05.5+01:00\",\"ctime\":\"2020-01-02T03:04:05Z\",\"uid\":1,\"gid\":2,\
\"size\":3,\"content\":[\"{id}\"]}}"
        );
        let tree = |node: &str| format!("{{\"nodes\":[{node}]}}\n");
        let (want, canonical) = decode_tree_canonical(tree(&base).as_bytes()).unwrap();
        assert!(canonical);
        assert_eq!(encode_tree(&want), tree(&base).as_bytes());
        for (from, to) in [
            ("\"mode\":420,", "\"mode\":420,\"inode\":0,"),
            (".5+01:00\",\"atime", ".50+01:00\",\"atime"),
            ("05Z", "05+00:00"),
            ("\"uid\":1,", "\"uid\": 1,"),
            ("\"uid\":1,\"gid\":2,", "\"gid\":2,\"uid\":1,"),
            (&id, &id.to_uppercase()),
            ("\"size\":3,", "\"size\":3,\"new_field\":true,"),
            ("\"name\":\"f\"", "\"name\":\"\\u0066\""),
        ] {
            let node = base.replacen(from, to, 1);
            assert_ne!(node, base);
            let (got, canonical) = decode_tree_canonical(tree(&node).as_bytes()).unwrap();
            assert!(!canonical, "{node}");
            assert_eq!(got, want, "{node}");
        }
        let (got, canonical) = decode_tree_canonical(b"{\"nodes\":[]}\n").unwrap();
        assert!(got.is_empty() && canonical);
        assert!(!decode_tree_canonical(b"{\"nodes\":null}").unwrap().1);
    }

    #[test]
    fn the_same_instant_in_another_zone_does_not_encode_the_same() {
        let (nodes, _) = decode_tree_canonical(
            b"{\"nodes\":[{\"name\":\"f\",\"type\":\"file\",\"mtime\":\"2020-01-02T03:04:05Z\",\"atime\":\"2020-01-02T03:04:05Z\",\"ctime\":\"2020-01-02T03:04:05Z\",\"uid\":0,\"gid\":0,\"content\":[]}]}\n",
        )
        .unwrap();
        let mut other = nodes[0].clone();
        let zone = FixedOffset::east_opt(3600).unwrap();
        other.mtime = other.mtime.with_timezone(&zone);
        assert_eq!(other, nodes[0], "chrono compares instants");
        assert!(!encodes_same(&other, &nodes[0]));
        assert_ne!(encode_tree(&[other]), encode_tree(&nodes));
    }
}
