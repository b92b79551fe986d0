//! A fast reader for index files in the exact shape restic writes them.
//!
//! Parsing index JSON is most of the cost of opening a large repository without a cached
//! index snapshot (10M blobs: about 1.5 GB of JSON). This scanner reads the common shape
//! directly: objects with the known keys in any order, ids as plain 64-hex-digit strings,
//! non-negative integers without fraction or exponent, insignificant whitespace. Anything
//! else (an unknown or repeated key, an escape in a string, `null`, a number out of
//! range, trailing data) makes it give up, and the caller parses the file with serde_json:
//! what the scanner accepts it reads exactly as serde_json would, and everything it does
//! not accept keeps serde_json's behaviour and error messages.

use super::{IndexBlob, IndexFile, IndexPack};
use crate::id::Id;
use crate::pack::BlobType;

/// The index file in `json`, or None if it is not in the plain shape (use serde_json).
pub fn parse(json: &[u8]) -> Option<IndexFile> {
    let mut s = Scanner { b: json, i: 0 };
    let mut file = IndexFile::default();
    let (mut seen_supersedes, mut seen_packs) = (false, false);
    s.object(|s, key| match key {
        b"supersedes" if !seen_supersedes => {
            seen_supersedes = true;
            s.array(|s| {
                file.supersedes.push(s.id()?);
                Some(())
            })
        }
        b"packs" if !seen_packs => {
            seen_packs = true;
            s.array(|s| {
                file.packs.push(s.pack()?);
                Some(())
            })
        }
        _ => None,
    })?;
    s.ws();
    (s.i == s.b.len()).then_some(file)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.i += 1;
        }
    }

    /// Skips whitespace and takes `c`.
    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// Skips whitespace and takes `c` if it is next.
    fn maybe(&mut self, c: u8) -> bool {
        self.eat(c).is_some()
    }

    /// A string without escapes: its raw bytes.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let b: &'a [u8] = self.b;
        let start = self.i;
        let len = b.get(start..)?.iter().position(|c| *c == b'"')?;
        let raw = &b[start..start + len];
        // Escapes and control characters: serde_json's business.
        if raw.iter().any(|c| *c == b'\\' || *c < 0x20) {
            return None;
        }
        self.i = start + len + 1;
        Some(raw)
    }

    fn id(&mut self) -> Option<Id> {
        let raw = self.string()?;
        if raw.len() != 64 {
            return None;
        }
        Id::parse_bytes(raw)
    }

    /// A JSON integer that fits a u32: `0` or digits without a leading zero, not followed
    /// by a fraction or exponent.
    fn u32(&mut self) -> Option<u32> {
        self.ws();
        let start = self.i;
        let digits = self
            .b
            .get(start..)?
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 || digits > 10 || (digits > 1 && self.b[start] == b'0') {
            return None;
        }
        if matches!(self.b.get(start + digits), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let mut v: u64 = 0;
        for c in &self.b[start..start + digits] {
            v = v * 10 + u64::from(c - b'0');
        }
        self.i = start + digits;
        u32::try_from(v).ok()
    }

    /// `{ "key": value, ... }`, each value read by `member` (None: give up).
    fn object(&mut self, mut member: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.maybe(b'}') {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            member(self, key)?;
            if self.maybe(b'}') {
                return Some(());
            }
            self.eat(b',')?;
        }
    }

    /// `[ item, ... ]`, each item read by `item`.
    fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.maybe(b']') {
            return Some(());
        }
        loop {
            item(self)?;
            if self.maybe(b']') {
                return Some(());
            }
            self.eat(b',')?;
        }
    }

    fn pack(&mut self) -> Option<IndexPack> {
        let (mut id, mut blobs) = (None, None);
        self.object(|s, key| match key {
            b"id" if id.is_none() => {
                id = Some(s.id()?);
                Some(())
            }
            b"blobs" if blobs.is_none() => {
                let mut v = Vec::new();
                s.array(|s| {
                    v.push(s.blob()?);
                    Some(())
                })?;
                blobs = Some(v);
                Some(())
            }
            _ => None,
        })?;
        Some(IndexPack {
            id: id?,
            blobs: blobs?,
        })
    }

    fn blob(&mut self) -> Option<IndexBlob> {
        let (mut id, mut t, mut offset, mut length, mut ulen) = (None, None, None, None, None);
        self.object(|s, key| {
            match key {
                b"id" if id.is_none() => id = Some(s.id()?),
                b"type" if t.is_none() => {
                    t = Some(match s.string()? {
                        b"data" => BlobType::Data,
                        b"tree" => BlobType::Tree,
                        _ => return None,
                    })
                }
                b"offset" if offset.is_none() => offset = Some(s.u32()?),
                b"length" if length.is_none() => length = Some(s.u32()?),
                b"uncompressed_length" if ulen.is_none() => ulen = Some(s.u32()?),
                _ => return None,
            }
            Some(())
        })?;
        Some(IndexBlob {
            id: id?,
            blob_type: t?,
            offset: offset?,
            length: length?,
            uncompressed_length: ulen.unwrap_or(0),
        })
    }
}
