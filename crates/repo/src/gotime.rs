//! Times as Go's `time.Time` marshals them (RFC 3339 with nanoseconds, trailing zeros
//! trimmed, `Z` for UTC), so what we write is what restic writes and parses.

use chrono::{DateTime, FixedOffset, Local, TimeZone};

/// Formats like Go's `time.RFC3339Nano` (`2006-01-02T15:04:05.999999999Z07:00`).
pub fn format(t: &DateTime<FixedOffset>) -> String {
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    let off = t.offset().local_minus_utc();
    if off == 0 {
        s.push('Z');
    } else {
        let sign = if off < 0 { '-' } else { '+' };
        let a = off.abs();
        s.push_str(&format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60));
    }
    s
}

/// Parses an RFC 3339 time keeping its offset.
pub fn parse(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

/// A Unix time in the local zone, as Go's `time.Unix` gives it.
pub fn local_from_unix(secs: i64, nanos: u32) -> DateTime<FixedOffset> {
    match Local.timestamp_opt(secs, nanos) {
        chrono::LocalResult::Single(t) => t.fixed_offset(),
        chrono::LocalResult::Ambiguous(t, _) => t.fixed_offset(),
        chrono::LocalResult::None => DateTime::from_timestamp(secs, nanos)
            .unwrap_or_default()
            .fixed_offset(),
    }
}

/// serde adapter for `DateTime<FixedOffset>` fields in Go's format.
pub mod serde_go {
    use chrono::{DateTime, FixedOffset};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<FixedOffset>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<FixedOffset>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("invalid time {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go_rfc3339nano() {
        let t = parse("2024-03-01T10:20:30.120000000+01:00").unwrap();
        assert_eq!(format(&t), "2024-03-01T10:20:30.12+01:00");
        let t = parse("2024-03-01T10:20:30Z").unwrap();
        assert_eq!(format(&t), "2024-03-01T10:20:30Z");
        let t = parse("2024-03-01T10:20:30.000000001-05:30").unwrap();
        assert_eq!(format(&t), "2024-03-01T10:20:30.000000001-05:30");
    }
}
