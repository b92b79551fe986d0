//! Content identifiers: the SHA-256 of a blob's plaintext or of a file's stored bytes.
//!
//! Owns parsing and printing ids (64 lowercase hex digits in JSON, as restic writes them).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Hex digit values; 0x80 marks a byte that is not a hex digit.
const HEX: [u8; 256] = {
    let mut t = [0x80u8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// A 32-byte SHA-256 identifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// The id of `data`: its SHA-256.
    pub fn hash(data: &[u8]) -> Id {
        Id(crate::sha256::digest(data))
    }

    /// Parses 64 hex digits.
    pub fn parse(s: &str) -> Option<Id> {
        Id::parse_bytes(s.as_bytes())
    }

    /// Parses 64 hex digits given as bytes (either case, like `hex`). Table-driven: index
    /// files hold millions of ids, and a generic decoder was the largest cost of opening a
    /// big repository.
    pub fn parse_bytes(s: &[u8]) -> Option<Id> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        let mut bad = 0u8;
        for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
            let (hi, lo) = (HEX[pair[0] as usize], HEX[pair[1] as usize]);
            bad |= (hi | lo) & 0x80;
            *o = hi << 4 | (lo & 0x0f);
        }
        (bad == 0).then_some(Id(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, as restic prints short ids.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// Accepts a JSON string of 64 hex digits. Asks for bytes: serde_json then hands over
/// the string's raw bytes without validating UTF-8 (the hex check covers it).
struct IdVisitor;

impl<'de> serde::de::Visitor<'de> for IdVisitor {
    type Value = Id;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an id of 64 hex digits")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Id, E> {
        Id::parse_bytes(v).ok_or_else(|| {
            E::custom(format!(
                "invalid id {:?}",
                String::from_utf8_lossy(&v[..v.len().min(100)])
            ))
        })
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Id, E> {
        self.visit_bytes(v.as_bytes())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        d.deserialize_bytes(IdVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_sha256_of_empty_input() {
        let id = Id::hash(b"");
        assert_eq!(
            id.to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Id::parse(&id.to_hex()), Some(id));
        assert_eq!(Id::parse("zz"), None);
        assert_eq!(Id::parse(&id.to_hex().to_uppercase()), Some(id));
        let mut bad = id.to_hex().into_bytes();
        for c in [b'g', b'-', b' ', 0xff, b'/', b':', b'@', b'G', b'`'] {
            bad[17] = c;
            assert_eq!(Id::parse_bytes(&bad), None, "{c}");
        }
        let json = format!("\"{id}\"");
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
        // An escaped string is decoded before the check, like any other.
        let escaped = format!("\"\\u0065{}\"", &id.to_hex()[1..]);
        let want = Id::parse(&format!("e{}", &id.to_hex()[1..])).unwrap();
        assert_eq!(serde_json::from_str::<Id>(&escaped).unwrap(), want);
        for wrong in ["[1,2]", "12", "\"abc\"", "null"] {
            assert!(serde_json::from_str::<Id>(wrong).is_err(), "{wrong}");
        }
    }
}
