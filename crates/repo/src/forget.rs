//! Retention policies, computed exactly like restic 0.14's `forget`.
//!
//! Snapshots are grouped (by host, paths and/or tags), sorted newest first, and each
//! bucket kind (last, hourly, daily, weekly, monthly, yearly) keeps a snapshot when its
//! time bucket (in the snapshot's own time zone) differs from the last one that kind
//! kept, while the kind still has count left. `within` durations count back from the
//! newest snapshot of the group, not from now. A snapshot is kept if any rule keeps it.

use crate::error::{Error, Result};
use crate::snapshot::Snapshot;
use chrono::{DateTime, Datelike, FixedOffset, Months, TimeDelta, Timelike};
use serde::Serialize;
use std::collections::BTreeMap;

/// restic's `1y2m3d4h` durations (calendar years/months/days, then hours).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Duration {
    pub years: i32,
    pub months: i32,
    pub days: i32,
    pub hours: i32,
}

impl Duration {
    pub fn parse(s: &str) -> Result<Duration> {
        let bad = || {
            Error::invalid(format!(
                "{s:?} is not a duration: use numbers with y, m, d, h (e.g. 1y6m, 14d, 2d12h)"
            ))
        };
        let too_large = || {
            Error::invalid(format!(
                "duration {s:?} is too large: each of y, m, d, h must be below {}",
                i32::MAX
            ))
        };
        let mut d = Duration::default();
        let mut num = String::new();
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            if num.is_empty() {
                return Err(bad());
            }
            let n: i32 = num.parse().map_err(|_| too_large())?;
            num.clear();
            let field = match c {
                'y' => &mut d.years,
                'm' => &mut d.months,
                'd' => &mut d.days,
                'h' => &mut d.hours,
                _ => return Err(bad()),
            };
            *field = field.checked_add(n).ok_or_else(too_large)?;
        }
        if !num.is_empty() || s.trim().is_empty() {
            return Err(bad());
        }
        Ok(d)
    }

    pub fn is_zero(&self) -> bool {
        *self == Duration::default()
    }

    /// `t` minus this duration, like Go's `AddDate(-y, -m, -d).Add(-h)` (which normalises
    /// overflowing days, e.g. March 31 minus one month is March 3). `None` when that is
    /// before the earliest time we can represent (about 262,000 BC): every snapshot is
    /// after it, which is exactly what restic computes for such a duration.
    fn before(&self, t: DateTime<FixedOffset>) -> Option<DateTime<FixedOffset>> {
        // i64: 12 * i32::MAX + i32::MAX cannot overflow.
        let months = i64::from(self.years) * 12 + i64::from(self.months);
        // Go's AddDate adds to year/month/day and normalises; emulate via the first of
        // the month, then add the day offset back.
        let day = i64::from(t.day());
        let first = t.with_day(1)?;
        let shifted = if months >= 0 {
            first.checked_sub_months(Months::new(u32::try_from(months).ok()?))?
        } else {
            first.checked_add_months(Months::new(u32::try_from(-months).ok()?))?
        };
        shifted
            .checked_add_signed(TimeDelta::try_days(day - 1 - i64::from(self.days))?)?
            .checked_sub_signed(TimeDelta::try_hours(i64::from(self.hours))?)
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, u) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{u}")?;
            }
        }
        Ok(())
    }
}

/// How many snapshots of each kind to keep. `Some(u32::MAX)` is "unlimited".
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    pub within: Duration,
    pub within_hourly: Duration,
    pub within_daily: Duration,
    pub within_weekly: Duration,
    pub within_monthly: Duration,
    pub within_yearly: Duration,
    /// Keep snapshots having all tags of any of these lists.
    pub tags: Vec<Vec<String>>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ]
        .iter()
        .all(|c| c.unwrap_or(0) == 0)
            && [
                self.within,
                self.within_hourly,
                self.within_daily,
                self.within_weekly,
                self.within_monthly,
                self.within_yearly,
            ]
            .iter()
            .all(Duration::is_zero)
            && self.tags.is_empty()
    }
}

fn bucket_hour(t: &DateTime<FixedOffset>) -> i64 {
    t.year() as i64 * 1_000_000 + t.month() as i64 * 10_000 + t.day() as i64 * 100 + t.hour() as i64
}
fn bucket_day(t: &DateTime<FixedOffset>) -> i64 {
    t.year() as i64 * 10_000 + t.month() as i64 * 100 + t.day() as i64
}
fn bucket_week(t: &DateTime<FixedOffset>) -> i64 {
    let w = t.iso_week();
    w.year() as i64 * 100 + w.week() as i64
}
fn bucket_month(t: &DateTime<FixedOffset>) -> i64 {
    t.year() as i64 * 100 + t.month() as i64
}
fn bucket_year(t: &DateTime<FixedOffset>) -> i64 {
    t.year() as i64
}

/// One kept snapshot and why.
#[derive(Serialize, Debug, Clone)]
pub struct KeepReason {
    pub snapshot: Snapshot,
    pub matches: Vec<String>,
}

/// The decision for one group.
#[derive(Debug, Clone)]
pub struct Decision {
    pub keep: Vec<Snapshot>,
    pub remove: Vec<Snapshot>,
    pub reasons: Vec<KeepReason>,
}

/// Applies `p` to one group of snapshots (any order).
pub fn apply(mut list: Vec<Snapshot>, p: &Policy) -> Decision {
    // Newest first; stable for equal times (restic sorts with sort.Stable).
    list.sort_by_key(|s| std::cmp::Reverse(s.time));
    let mut out = Decision {
        keep: Vec::new(),
        remove: Vec::new(),
        reasons: Vec::new(),
    };
    let Some(latest) = list.iter().map(|s| s.time).max() else {
        return out;
    };
    type Bucker = fn(&DateTime<FixedOffset>) -> i64;
    let mut buckets: [(u32, Option<Bucker>, Option<i64>, &str); 6] = [
        (p.last.unwrap_or(0), None, None, "last snapshot"),
        (
            p.hourly.unwrap_or(0),
            Some(bucket_hour),
            None,
            "hourly snapshot",
        ),
        (
            p.daily.unwrap_or(0),
            Some(bucket_day),
            None,
            "daily snapshot",
        ),
        (
            p.weekly.unwrap_or(0),
            Some(bucket_week),
            None,
            "weekly snapshot",
        ),
        (
            p.monthly.unwrap_or(0),
            Some(bucket_month),
            None,
            "monthly snapshot",
        ),
        (
            p.yearly.unwrap_or(0),
            Some(bucket_year),
            None,
            "yearly snapshot",
        ),
    ];
    let mut within: [(Duration, Bucker, Option<i64>, &str); 5] = [
        (p.within_hourly, bucket_hour, None, "hourly within"),
        (p.within_daily, bucket_day, None, "daily within"),
        (p.within_weekly, bucket_week, None, "weekly within"),
        (p.within_monthly, bucket_month, None, "monthly within"),
        (p.within_yearly, bucket_year, None, "yearly within"),
    ];
    for (nr, cur) in list.into_iter().enumerate() {
        let mut reasons = Vec::new();
        for tags in &p.tags {
            if tags.iter().all(|t| cur.tags.contains(t)) {
                reasons.push(format!("has tags [{}]", tags.join(" ")));
            }
        }
        if !p.within.is_zero() && p.within.before(latest).is_none_or(|b| cur.time > b) {
            reasons.push(format!("within {}", p.within));
        }
        for (count, bucker, last, reason) in &mut buckets {
            if *count == 0 {
                continue;
            }
            // "last" buckets by position: every snapshot is its own bucket.
            let val = bucker.map_or(nr as i64, |b| b(&cur.time));
            if Some(val) != *last {
                *last = Some(val);
                if *count != u32::MAX {
                    *count -= 1;
                }
                reasons.push(reason.to_string());
            }
        }
        for (dur, bucker, last, reason) in &mut within {
            if dur.is_zero() || dur.before(latest).is_some_and(|b| cur.time <= b) {
                continue;
            }
            let val = bucker(&cur.time);
            if Some(val) != *last {
                *last = Some(val);
                reasons.push(format!("{reason} {dur}"));
            }
        }
        if reasons.is_empty() {
            out.remove.push(cur);
        } else {
            out.keep.push(cur.clone());
            out.reasons.push(KeepReason {
                snapshot: cur,
                matches: reasons,
            });
        }
    }
    out
}

/// How snapshots are grouped before the policy applies (restic's `--group-by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
}

impl GroupBy {
    /// `host,paths` (restic's default), any subset, or "" for one group.
    pub fn parse(s: &str) -> Result<GroupBy> {
        let mut g = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" | "hosts" => g.host = true,
                "path" | "paths" => g.paths = true,
                "tag" | "tags" => g.tags = true,
                other => {
                    return Err(Error::invalid(format!(
                    "--group-by {other:?}: use host, paths and/or tags, comma-separated, or \"\""
                )))
                }
            }
        }
        Ok(g)
    }
}

/// A group's key: the fields grouped by (empty when not grouped by them).
#[derive(Serialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupKey {
    pub host: String,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
}

pub fn group(snapshots: Vec<Snapshot>, by: GroupBy) -> BTreeMap<GroupKey, Vec<Snapshot>> {
    let mut groups: BTreeMap<GroupKey, Vec<Snapshot>> = BTreeMap::new();
    for s in snapshots {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        let key = GroupKey {
            host: if by.host {
                s.hostname.clone()
            } else {
                String::new()
            },
            paths: if by.paths {
                sorted(&s.paths)
            } else {
                Vec::new()
            },
            tags: if by.tags { sorted(&s.tags) } else { Vec::new() },
        };
        groups.entry(key).or_default().push(s);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(time: &str, tags: &[&str]) -> Snapshot {
        let t = DateTime::parse_from_rfc3339(time).unwrap();
        let mut s: Snapshot = serde_json::from_value(serde_json::json!({
            "time": time, "tree": "00".repeat(32), "paths": ["/x"], "hostname": "h",
        }))
        .unwrap();
        s.time = t;
        s.tags = tags.iter().map(|t| t.to_string()).collect();
        s.id = crate::Id::hash(time.as_bytes());
        s
    }

    #[test]
    fn durations_parse_and_subtract_like_go() {
        let d = Duration::parse("1y2m3d4h").unwrap();
        assert_eq!(
            d,
            Duration {
                years: 1,
                months: 2,
                days: 3,
                hours: 4
            }
        );
        assert!(Duration::parse("3w").is_err());
        assert!(Duration::parse("5").is_err());
        let t = DateTime::parse_from_rfc3339("2024-03-31T12:00:00+02:00").unwrap();
        // Go: 2024-03-31 AddDate(0,-1,0) = 2024-02-31 = 2024-03-02.
        let back = Duration::parse("1m").unwrap().before(t).unwrap();
        assert_eq!(back.to_rfc3339(), "2024-03-02T12:00:00+02:00");
    }

    /// restic keeps everything for a `within` longer than the calendar: so do we, rather
    /// than panicking (`99999999d`) or shrinking the duration to nothing (`1000000y`).
    #[test]
    fn huge_within_durations_keep_everything() {
        for w in [
            "1000000y",
            "99999999d",
            "2147483647h",
            "2147483647y2147483647m",
        ] {
            let list = vec![
                snap("1970-01-01T00:00:00Z", &[]),
                snap("2024-01-02T10:00:00Z", &[]),
            ];
            for p in [
                Policy {
                    within: Duration::parse(w).unwrap(),
                    ..Default::default()
                },
                Policy {
                    within_daily: Duration::parse(w).unwrap(),
                    ..Default::default()
                },
            ] {
                let d = apply(list.clone(), &p);
                assert_eq!((d.keep.len(), d.remove.len()), (2, 0), "{w}");
            }
        }
        for w in [
            "2147483648y",
            "2147483647y1y",
            "99999999999999999999d",
            "d",
            "1y-1d",
        ] {
            let e = Duration::parse(w).unwrap_err();
            assert!(e.to_string().contains(w), "{w}: {e}");
        }
    }

    proptest::proptest! {
        /// Any Unicode text is a duration or an error; any duration can be subtracted.
        #[test]
        fn arbitrary_durations_never_panic(text in "\\PC{0,30}", digits in "[0-9ymdh]{0,30}") {
            let t = DateTime::parse_from_rfc3339("2024-03-31T12:00:00+02:00").unwrap();
            for s in [text, digits] {
                if let Ok(d) = Duration::parse(&s) {
                    let _ = d.before(t);
                    let _ = d.to_string();
                }
            }
        }
    }

    #[test]
    fn buckets_keep_the_newest_of_each_period() {
        let list = vec![
            snap("2024-01-01T10:00:00Z", &[]),
            snap("2024-01-01T20:00:00Z", &[]),
            snap("2024-01-02T10:00:00Z", &["keep"]),
            snap("2024-01-03T10:00:00Z", &[]),
        ];
        let p = Policy {
            daily: Some(2),
            tags: vec![vec!["keep".into()]],
            ..Default::default()
        };
        let d = apply(list, &p);
        let kept: Vec<String> = d.keep.iter().map(|s| s.time.to_rfc3339()).collect();
        assert_eq!(
            kept,
            ["2024-01-03T10:00:00+00:00", "2024-01-02T10:00:00+00:00"]
        );
        assert_eq!(d.remove.len(), 2);
        assert!(Policy::default().is_empty());
    }
}
