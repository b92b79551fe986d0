//! Units shared by the CLI, the config and the plan runtime: durations (`90s`, `1h30m`,
//! `7d`) and human-readable byte sizes. Nothing here may depend on `cli`.

/// The longest duration [`parse_duration`] accepts: 100 years. Longer ones are typos, and
/// adding one to a clock (`Instant + d`) would overflow.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);

/// Parses durations like restic's `--retry-lock` (`90s`, `5m`, `1h30m`, `2h`), and the
/// config's (`26h`, `7d`, `2w`). Never overflows: past [`MAX_DURATION`] is an error.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let too_long = || {
        format!(
            "{s:?} is too long: durations are at most {} days (100 years)",
            MAX_DURATION.as_secs() / 86_400
        )
    };
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => {
                return Err(format!(
                    "{s:?}: unknown unit {c:?} (use s, m, h, d or w, e.g. 5m)"
                ))
            }
        };
        if num.is_empty() {
            return Err(format!("{s:?}: expected a number before {c:?} (e.g. 5m)"));
        }
        total = num
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit))
            .and_then(|n| n.checked_add(total))
            .filter(|&t| t <= MAX_DURATION.as_secs())
            .ok_or_else(too_long)?;
        num.clear();
    }
    if !num.is_empty() {
        return Err(format!("{s:?}: missing unit after {num} (e.g. {num}s)"));
    }
    Ok(std::time::Duration::from_secs(total))
}

/// Human-readable byte sizes like restic's (KiB, MiB, ...).
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.3} {}", UNITS[u])
    }
}
