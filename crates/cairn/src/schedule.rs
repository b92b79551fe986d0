//! When plans run: systemd calendar expressions (the subset people write) and cron.
//!
//! Accepted: `minutely`, `hourly`, `daily`, `weekly`, `monthly`, `quarterly`,
//! `semiannually`, `yearly`/`annually` (like systemd);
//! systemd's `[WEEKDAYS] [YYYY-MM-DD] [HH:MM[:SS]]` with `*`, lists (`,`), ranges
//! (`..`) and steps (`/`) — `03:00`, `Mon..Fri 02:30`, `Sat,Sun 10:00`, `*-*-01 05:00`,
//! `*:0/15`; and five-field cron (`30 2 * * 1-5`, with cron's rule that a restricted
//! day-of-month and day-of-week match either). Times are local, with minute precision.
//! The clock is passed in, never read here, so the scheduler is tested with any time.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone};
use serde::Serialize;

/// A set of allowed values of one field, as a bit mask (values 0..64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Set(u64);

impl Set {
    fn all(lo: u32, hi: u32) -> Set {
        let mut s = Set(0);
        for v in lo..=hi {
            s.0 |= 1 << v;
        }
        s
    }
    fn has(self, v: u32) -> bool {
        v < 64 && self.0 & (1 << v) != 0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    minutes: Set,
    hours: Set,
    /// Days of the month, 1..=31.
    days: Set,
    /// Months, 1..=12.
    months: Set,
    /// Weekdays, 0 = Monday .. 6 = Sunday.
    weekdays: Set,
    /// Specific years, or any.
    years: Option<Vec<i32>>,
    /// cron: when both days and weekdays are restricted, either matches.
    either_day: bool,
}

impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn weekday(s: &str) -> Result<u32, String> {
    let l = s.to_ascii_lowercase();
    WEEKDAYS
        .iter()
        .position(|d| {
            // `get`, not indexing: the third byte may fall inside a non-ASCII character.
            l.get(..3).is_some_and(|p| d.starts_with(p))
                && "mondaytuesdaywednesdaythursdayfridaysaturdaysunday".contains(&l)
        })
        .map(|p| p as u32)
        .ok_or_else(|| format!("{s:?} is not a weekday (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"))
}

/// One field: `*`, `N`, `A..B` (or `A-B` in cron), `X/STEP`, comma lists.
fn field(s: &str, lo: u32, hi: u32, name: &str, range_sep: &str) -> Result<Set, String> {
    let mut set = Set(0);
    for part in s.split(',') {
        let (base, step) = match part.split_once('/') {
            Some((b, st)) => {
                let st: u32 = st
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("{name}: bad step in {part:?}"))?;
                (b, st)
            }
            None => (part, 1),
        };
        let num = |v: &str| -> Result<u32, String> {
            let n: u32 = v
                .parse()
                .map_err(|_| format!("{name}: {v:?} is not a number"))?;
            if n < lo || n > hi {
                return Err(format!("{name}: {n} is outside {lo}..{hi}"));
            }
            Ok(n)
        };
        let (a, b) = if base == "*" {
            (lo, hi)
        } else if let Some((a, b)) = base.split_once(range_sep) {
            (num(a)?, num(b)?)
        } else if part.contains('/') {
            (num(base)?, hi)
        } else {
            let n = num(base)?;
            (n, n)
        };
        if a > b {
            return Err(format!("{name}: empty range {base:?}"));
        }
        // Values are below 64, so `step_by` cannot overflow whatever the step.
        for v in (a..=b).step_by(step as usize) {
            set.0 |= 1 << v;
        }
    }
    if set.0 == 0 {
        return Err(format!("{name}: {s:?} matches nothing"));
    }
    Ok(set)
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("empty schedule".into());
        }
        let mut s = Schedule {
            text: t.to_string(),
            minutes: Set(1),
            hours: Set(1),
            days: Set::all(1, 31),
            months: Set::all(1, 12),
            weekdays: Set::all(0, 6),
            years: None,
            either_day: false,
        };
        match t.to_ascii_lowercase().as_str() {
            "minutely" => {
                s.minutes = Set::all(0, 59);
                s.hours = Set::all(0, 23);
                return Ok(s);
            }
            "hourly" => {
                s.hours = Set::all(0, 23);
                return Ok(s);
            }
            "daily" | "midnight" => return Ok(s),
            "weekly" => {
                s.weekdays = Set(1);
                return Ok(s);
            }
            "monthly" => {
                s.days = Set(1 << 1);
                return Ok(s);
            }
            // systemd's keywords: the first day of January, April, July, October (and of
            // January and July).
            "quarterly" => {
                s.days = Set(1 << 1);
                s.months = Set((1 << 1) | (1 << 4) | (1 << 7) | (1 << 10));
                return Ok(s);
            }
            "semiannually" => {
                s.days = Set(1 << 1);
                s.months = Set((1 << 1) | (1 << 7));
                return Ok(s);
            }
            "yearly" | "annually" => {
                s.days = Set(1 << 1);
                s.months = Set(1 << 1);
                return Ok(s);
            }
            _ => {}
        }
        let words: Vec<&str> = t.split_whitespace().collect();
        let cronish = |w: &str| w.chars().all(|c| c.is_ascii_digit() || "*,-/".contains(c));
        if words.len() == 5 && words.iter().all(|w| cronish(w)) {
            s.minutes = field(words[0], 0, 59, "cron minute", "-")?;
            s.hours = field(words[1], 0, 23, "cron hour", "-")?;
            s.days = field(words[2], 1, 31, "cron day of month", "-")?;
            s.months = field(words[3], 1, 12, "cron month", "-")?;
            // cron weekdays: 0 and 7 are Sunday, 1 is Monday.
            let w = field(words[4], 0, 7, "cron day of week", "-")?;
            let mut wd = Set(0);
            for v in 0..=7u32 {
                if w.has(v) {
                    wd.0 |= 1 << ((v + 6) % 7);
                }
            }
            s.weekdays = wd;
            s.either_day = words[2] != "*" && words[4] != "*";
            return Ok(s);
        }
        // systemd: [weekdays] [date] [time]
        let mut rest = &words[..];
        if let Some(w) = rest.first() {
            if w.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
                let mut set = Set(0);
                for part in w.split(',') {
                    match part.split_once("..") {
                        Some((a, b)) => {
                            let (a, b) = (weekday(a)?, weekday(b)?);
                            if a > b {
                                return Err(format!("weekday range {part:?} runs backwards"));
                            }
                            for d in a..=b {
                                set.0 |= 1 << d;
                            }
                        }
                        None => set.0 |= 1 << weekday(part)?,
                    }
                }
                s.weekdays = set;
                rest = &rest[1..];
            }
        }
        if let Some(d) = rest.first() {
            if d.contains('-') {
                let parts: Vec<&str> = d.split('-').collect();
                let (y, m, day) = match parts.as_slice() {
                    [y, m, day] => (Some(*y), *m, *day),
                    [m, day] => (None, *m, *day),
                    _ => return Err(format!("date {d:?}: expected YYYY-MM-DD, *-MM-DD or MM-DD")),
                };
                if let Some(y) = y.filter(|y| *y != "*") {
                    let years: Result<Vec<i32>, _> = y.split(',').map(str::parse).collect();
                    s.years = Some(years.map_err(|_| format!("year {y:?} is not a number"))?);
                }
                s.months = field(m, 1, 12, "month", "..")?;
                s.days = field(day, 1, 31, "day", "..")?;
                rest = &rest[1..];
            }
        }
        match rest {
            [] if rest.len() < words.len() => {} // weekday and/or date alone: midnight
            [] => return Err(format!("{t:?} is not a schedule")),
            [time] => {
                let parts: Vec<&str> = time.split(':').collect();
                let (h, m, sec) = match parts.as_slice() {
                    [h, m] => (*h, *m, None),
                    [h, m, sec] => (*h, *m, Some(*sec)),
                    _ => return Err(format!("time {time:?}: expected HH:MM")),
                };
                s.hours = field(h, 0, 23, "hour", "..")?;
                s.minutes = field(m, 0, 59, "minute", "..")?;
                if let Some(sec) = sec {
                    if sec.parse::<u32>().ok() != Some(0) {
                        return Err(format!(
                            "time {time:?}: seconds must be 00 (schedules have minute precision)"
                        ));
                    }
                }
            }
            _ => return Err(format!("{t:?} is not a schedule")),
        }
        Ok(s)
    }

    /// The same schedule as systemd `OnCalendar=` lines (one, or two for cron's
    /// day-of-month-or-weekday rule).
    pub fn to_systemd(&self) -> Vec<String> {
        fn list(set: Set, lo: u32, hi: u32, width: usize) -> String {
            if set == Set::all(lo, hi) {
                return "*".into();
            }
            (lo..=hi)
                .filter(|v| set.has(*v))
                .map(|v| format!("{v:0width$}"))
                .collect::<Vec<_>>()
                .join(",")
        }
        let names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        let weekdays = |set: Set| -> String {
            if set == Set::all(0, 6) {
                return String::new();
            }
            let days: Vec<&str> = (0..7)
                .filter(|d| set.has(*d))
                .map(|d| names[d as usize])
                .collect();
            format!("{} ", days.join(","))
        };
        let years = match &self.years {
            Some(y) => y
                .iter()
                .map(|y| y.to_string())
                .collect::<Vec<_>>()
                .join(","),
            None => "*".into(),
        };
        let time = format!(
            "{}:{}:00",
            list(self.hours, 0, 23, 2),
            list(self.minutes, 0, 59, 2)
        );
        let line = |wd: Set, days: Set| {
            format!(
                "{}{years}-{}-{} {time}",
                weekdays(wd),
                list(self.months, 1, 12, 2),
                list(days, 1, 31, 2)
            )
        };
        if self.either_day {
            vec![
                line(Set::all(0, 6), self.days),
                line(self.weekdays, Set::all(1, 31)),
            ]
        } else {
            vec![line(self.weekdays, self.days)]
        }
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        if let Some(years) = &self.years {
            if !years.contains(&d.year()) {
                return false;
            }
        }
        if !self.months.has(d.month()) {
            return false;
        }
        let dom = self.days.has(d.day());
        let dow = self.weekdays.has(d.weekday().num_days_from_monday());
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The first time strictly after `after` that this schedule matches (within 8 years).
    pub fn next_after<Tz: TimeZone>(&self, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        let tz = after.timezone();
        let local = after.naive_local();
        let mut day = local.date();
        for _ in 0..(366 * 8) {
            if self.day_matches(day) {
                for h in 0..24 {
                    if !self.hours.has(h) {
                        continue;
                    }
                    for m in 0..60 {
                        if !self.minutes.has(m) {
                            continue;
                        }
                        let Some(t) = day.and_hms_opt(h, m, 0) else {
                            continue;
                        };
                        if t <= local {
                            continue;
                        }
                        // A time skipped by a DST change does not exist: go on.
                        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
                            return Some(dt);
                        }
                    }
                }
            }
            day = day.succ_opt()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(expr: &str, after: &str) -> String {
        Schedule::parse(expr)
            .unwrap()
            .next_after(&at(after))
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn keywords_and_times() {
        // 2026-11-28 is a Saturday.
        assert_eq!(
            next("daily", "2026-11-28T03:00:00Z"),
            "2026-11-29T00:00:00+00:00"
        );
        assert_eq!(
            next("hourly", "2026-11-28T03:00:00Z"),
            "2026-11-28T04:00:00+00:00"
        );
        assert_eq!(
            next("weekly", "2026-11-28T03:00:00Z"),
            "2026-11-30T00:00:00+00:00"
        );
        assert_eq!(
            next("monthly", "2026-11-28T03:00:00Z"),
            "2026-12-01T00:00:00+00:00"
        );
        assert_eq!(
            next("yearly", "2026-11-28T03:00:00Z"),
            "2027-01-01T00:00:00+00:00"
        );
        assert_eq!(
            next("quarterly", "2026-11-28T03:00:00Z"),
            "2027-01-01T00:00:00+00:00"
        );
        assert_eq!(
            next("quarterly", "2027-01-01T00:00:00Z"),
            "2027-04-01T00:00:00+00:00"
        );
        assert_eq!(
            next("semiannually", "2027-01-01T00:00:00Z"),
            "2027-07-01T00:00:00+00:00"
        );
        assert_eq!(
            Schedule::parse("quarterly").unwrap().to_systemd(),
            ["*-01,04,07,10-01 00:00:00"]
        );
        assert_eq!(
            next("03:00", "2026-11-28T02:59:00Z"),
            "2026-11-28T03:00:00+00:00"
        );
        assert_eq!(
            next("03:00", "2026-11-28T03:00:00Z"),
            "2026-11-29T03:00:00+00:00"
        );
        assert_eq!(
            next("03:00:00", "2026-11-28T03:00:00Z"),
            "2026-11-29T03:00:00+00:00"
        );
        assert_eq!(
            next("*:0/15", "2026-11-28T03:07:00Z"),
            "2026-11-28T03:15:00+00:00"
        );
    }

    #[test]
    fn weekdays_and_dates() {
        assert_eq!(
            next("Mon..Fri 02:30", "2026-11-28T00:00:00Z"),
            "2026-11-30T02:30:00+00:00"
        );
        assert_eq!(
            next("Sat,Sun 10:00", "2026-11-28T11:00:00Z"),
            "2026-11-29T10:00:00+00:00"
        );
        assert_eq!(
            next("Sun 04:00", "2026-11-28T11:00:00Z"),
            "2026-11-29T04:00:00+00:00"
        );
        assert_eq!(
            next("*-*-01 05:00", "2026-11-28T11:00:00Z"),
            "2026-12-01T05:00:00+00:00"
        );
        assert_eq!(
            next("*-*-* 02:00:00", "2026-11-28T11:00:00Z"),
            "2026-11-29T02:00:00+00:00"
        );
        assert_eq!(
            next("2027-01-15 12:00", "2026-11-28T11:00:00Z"),
            "2027-01-15T12:00:00+00:00"
        );
        assert_eq!(
            next("Fri", "2026-11-28T11:00:00Z"),
            "2026-12-04T00:00:00+00:00"
        );
    }

    #[test]
    fn cron() {
        assert_eq!(
            next("30 2 * * 1-5", "2026-11-28T00:00:00Z"),
            "2026-11-30T02:30:00+00:00"
        );
        assert_eq!(
            next("0 */6 * * *", "2026-11-28T07:00:00Z"),
            "2026-11-28T12:00:00+00:00"
        );
        assert_eq!(
            next("0 4 * * 0", "2026-11-28T07:00:00Z"),
            "2026-11-29T04:00:00+00:00"
        );
        assert_eq!(
            next("0 4 * * 7", "2026-11-28T07:00:00Z"),
            "2026-11-29T04:00:00+00:00"
        );
        // Day of month OR day of week when both are given (cron's rule): the 1st or a Monday.
        assert_eq!(
            next("0 0 1 * 1", "2026-11-28T07:00:00Z"),
            "2026-11-30T00:00:00+00:00"
        );
    }

    #[test]
    fn bad_expressions_are_explained() {
        for (e, want) in [
            ("25:00", "hour"),
            ("03:61", "minute"),
            ("Mon..Fry 02:00", "weekday"),
            ("Fri..Mon", "backwards"),
            ("03:00:30", "seconds"),
            ("61 * * * *", "cron minute"),
            ("every day", "weekday"),
            ("", "empty"),
            ("Moé 03:00", "weekday"),
            ("Dié..Fri 03:00", "weekday"),
            ("*:1/4294967295", "minute"),
        ] {
            match Schedule::parse(e) {
                Err(err) => assert!(err.contains(want), "{e:?}: {err}"),
                Ok(s) => assert_eq!(want, "minute", "{e:?} parsed as {s:?}"),
            }
        }
        // A step larger than the field keeps only the start.
        let s = Schedule::parse("*:1/4294967295").unwrap();
        assert_eq!(s.minutes, Set(1 << 1));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Any Unicode text is a schedule or an error, never a panic; and a parsed schedule
        /// can always be asked for its next time and its systemd form.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
            if let Ok(s) = Schedule::parse(&text) {
                let _ = s.next_after(&at("2026-11-28T03:00:00Z"));
                let _ = s.to_systemd();
            }
        }

        /// Text shaped like schedules (digits, separators, weekday letters, non-ASCII).
        #[test]
        fn schedule_like_text_never_panics(text in "[0-9*,./:\\- MoTuWeThFrSaSué]{0,30}") {
            if let Ok(s) = Schedule::parse(&text) {
                let _ = s.next_after(&at("2026-11-28T03:00:00Z"));
            }
        }
    }
}
