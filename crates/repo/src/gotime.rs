//! Times as Go's `time.Time` marshals them (RFC 3339 with nanoseconds, trailing zeros
//! trimmed, `Z` for UTC), so what we write is what restic writes and parses.
//!
//! Formatting and parsing are hand-written for the common shape (years 0000-9999, whole
//! minute offsets): a no-change backup formats three times per file and parses three per
//! parent node, and chrono's `strftime` machinery cost more than the rest of a node's
//! encoding. Anything else goes through chrono exactly as before.

use chrono::{DateTime, Datelike, FixedOffset, Local, NaiveDate, TimeZone, Timelike};

/// Formats like Go's `time.RFC3339Nano` (`2006-01-02T15:04:05.999999999Z07:00`).
pub fn format(t: &DateTime<FixedOffset>) -> String {
    let mut out = Vec::with_capacity(35);
    push_format(&mut out, t);
    // Only ASCII digits and punctuation were pushed (or chrono's own UTF-8 output).
    String::from_utf8(out).unwrap_or_default()
}

fn push_digits(out: &mut Vec<u8>, n: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut n = n;
    for i in (0..width).rev() {
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

/// Appends [`format`]'s text to `out` without allocating.
pub fn push_format(out: &mut Vec<u8>, t: &DateTime<FixedOffset>) {
    let local = t.naive_local();
    let year = local.year();
    let nanos = t.timestamp_subsec_nanos();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        // chrono signs and widens such years, and a leap second prints as second 60:
        // keep exactly what was written before.
        out.extend_from_slice(format_chrono(t).as_bytes());
        return;
    }
    push_digits(out, year as u32, 4);
    out.push(b'-');
    push_digits(out, local.month(), 2);
    out.push(b'-');
    push_digits(out, local.day(), 2);
    out.push(b'T');
    push_digits(out, local.hour(), 2);
    out.push(b':');
    push_digits(out, local.minute(), 2);
    out.push(b':');
    push_digits(out, local.second(), 2);
    if nanos != 0 {
        let mut frac = [b'0'; 9];
        let mut n = nanos;
        for d in frac.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let mut len = 9;
        while len > 0 && frac[len - 1] == b'0' {
            len -= 1;
        }
        out.push(b'.');
        out.extend_from_slice(&frac[..len]);
    }
    let off = t.offset().local_minus_utc();
    if off == 0 {
        out.push(b'Z');
    } else {
        out.push(if off < 0 { b'-' } else { b'+' });
        // |offset| < 24 h (FixedOffset's bound): two digits each.
        let a = off.unsigned_abs();
        push_digits(out, a / 3600, 2);
        out.push(b':');
        push_digits(out, (a % 3600) / 60, 2);
    }
}

/// The general formatter (chrono's `strftime`), for the shapes `push_format` leaves to it.
fn format_chrono(t: &DateTime<FixedOffset>) -> String {
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

fn digits(b: &[u8]) -> Option<u32> {
    let mut n = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Some(n)
}

/// The common shape `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`, or None (then chrono decides).
fn parse_fast(s: &str) -> Option<DateTime<FixedOffset>> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, min, sec) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if sec > 59 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b[i] == b'.' {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start || end - start > 9 {
            return None;
        }
        nanos = digits(&b[start..end])? * 10u32.pow((9 - (end - start)) as u32);
        i = end;
    }
    let offset = match &b[i..] {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2])?;
            let m = digits(&[*m1, *m2])?;
            if h > 23 || m > 59 {
                return None;
            }
            let v = (h * 3600 + m * 60) as i32;
            if *sign == b'-' {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let naive = NaiveDate::from_ymd_opt(year as i32, month, day)?
        .and_hms_nano_opt(hour, min, sec, nanos)?;
    let tz = FixedOffset::east_opt(offset)?;
    tz.from_local_datetime(&naive).single()
}

/// Parses an RFC 3339 time keeping its offset.
pub fn parse(s: &str) -> Option<DateTime<FixedOffset>> {
    parse_fast(s).or_else(|| DateTime::parse_from_rfc3339(s).ok())
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
    use proptest::prelude::*;

    #[test]
    fn formats_like_go_rfc3339nano() {
        let t = parse("2024-03-01T10:20:30.120000000+01:00").unwrap();
        assert_eq!(format(&t), "2024-03-01T10:20:30.12+01:00");
        let t = parse("2024-03-01T10:20:30Z").unwrap();
        assert_eq!(format(&t), "2024-03-01T10:20:30Z");
        let t = parse("2024-03-01T10:20:30.000000001-05:30").unwrap();
        assert_eq!(format(&t), "2024-03-01T10:20:30.000000001-05:30");
        // Shapes left to chrono: a five-digit year, a leap second.
        let t = FixedOffset::east_opt(3600)
            .unwrap()
            .timestamp_opt(253_402_300_800, 5)
            .unwrap();
        assert_eq!(format(&t), "+10000-01-01T01:00:00.000000005+01:00");
        let t = parse("2016-12-31T23:59:60.5Z").unwrap();
        assert_eq!(format(&t), format_chrono(&t));
    }

    proptest! {
        #[test]
        fn fast_format_and_parse_agree_with_chrono(
            secs in -70_000_000_000i64..260_000_000_000i64,
            nanos in prop_oneof![0u32..1_000_000_000, Just(0u32), (0u32..1000).prop_map(|n| n * 1_000_000)],
            off in prop_oneof![-86_399i32..86_400, Just(0), (-26i32..27).prop_map(|h| h * 1800)],
        ) {
            let tz = FixedOffset::east_opt(off).unwrap();
            let t = tz.timestamp_opt(secs, nanos).unwrap();
            let text = format(&t);
            prop_assert_eq!(&text, &format_chrono(&t));
            let want = DateTime::parse_from_rfc3339(&text).ok();
            prop_assert_eq!(parse(&text), want);
            prop_assert_eq!(parse_fast(&text).is_none() || parse_fast(&text) == want, true);
        }

        #[test]
        fn parse_agrees_with_chrono_on_any_text(s in "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,11})?([Zz]|[+-][0-9]{2}:[0-9]{2}|[+-][0-9]{4})?x?") {
            prop_assert_eq!(parse(&s), DateTime::parse_from_rfc3339(&s).ok());
        }
    }
}
