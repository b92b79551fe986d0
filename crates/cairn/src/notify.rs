//! Notifications: healthchecks.io-style pings, ntfy and a generic JSON webhook.
//!
//! A notification never fails a run: each is tried three times with a 10-second timeout
//! per request, and a failure is written to the run's log. Which events go where:
//! healthchecks gets start, success and failure (`/start`, the URL itself, `/fail`, with
//! the log tail as the body, as healthchecks.io expects); the webhook gets success and
//! failure; ntfy gets failures only — unless the plan's `notify.on` lists the events.

use crate::config::{Event, Notify};
use serde::Serialize;
use std::time::Duration;

/// What happened, for every channel.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub plan: String,
    pub host: String,
    /// "start", "success", "failure" or "overdue".
    pub event: String,
    pub result: Option<String>,
    pub error_category: Option<String>,
    pub error: Option<String>,
    pub snapshot_id: Option<String>,
    pub duration_seconds: Option<f64>,
    pub bytes_added: Option<u64>,
    pub files_processed: Option<u64>,
    /// RFC 3339.
    pub time: String,
    /// The end of the run's log (at most 10 KB, healthchecks' limit).
    pub log_tail: String,
}

fn wants(n: &Notify, channel: &str, e: Event) -> bool {
    match &n.on {
        Some(on) => on.contains(&e),
        None => match channel {
            "healthchecks" => true,
            "webhook" => e != Event::Start,
            _ => e == Event::Failure,
        },
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// POSTs with retries; returns what went wrong, if it never worked.
fn post(
    agent: &ureq::Agent,
    url: &str,
    content_type: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Option<String> {
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(500 * (1 << attempt)));
        }
        let mut req = agent.post(url).set("Content-Type", content_type);
        for (k, v) in headers {
            req = req.set(k, v);
        }
        match req.send_bytes(body) {
            Ok(_) => return None,
            // A 4xx will not get better by retrying.
            Err(ureq::Error::Status(code, _)) if (400..500).contains(&code) && code != 429 => {
                return Some(format!("{} answered HTTP {code}", redact(url)));
            }
            Err(ureq::Error::Status(code, _)) => {
                last = format!("{} answered HTTP {code}", redact(url))
            }
            Err(e) => last = format!("{}: {}", redact(url), e.kind()),
        }
    }
    Some(last)
}

/// A URL without its path (ping UUIDs and topics are secrets of a sort).
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}/…", rest.split('/').next().unwrap_or("")),
        None => "<url>".into(),
    }
}

/// Overdue alerts (backups, restore tests) go to every channel, whatever its `on` says:
/// they are sent once per episode, and nobody must miss them.
fn is_overdue(event: &str) -> bool {
    event == "overdue" || event == "restore-test-overdue"
}

/// Sends `m` to every channel that wants it; returns problems for the log.
pub fn send(n: &Notify, e: Event, m: &Message) -> Vec<String> {
    let agent = agent();
    let mut problems = Vec::new();
    let tail = tail(&m.log_tail, 10_000);
    if let Some(url) = &n.healthchecks {
        let overdue = is_overdue(&m.event);
        if wants(n, "healthchecks", e) || overdue {
            let base = url.trim_end_matches('/');
            let target = match (e, overdue) {
                (_, true) | (Event::Failure, _) => format!("{base}/fail"),
                (Event::Start, _) => format!("{base}/start"),
                (Event::Success, _) => base.to_string(),
            };
            problems.extend(post(
                &agent,
                &target,
                "text/plain; charset=utf-8",
                &[],
                tail.as_bytes(),
            ));
        }
    }
    if let Some(url) = &n.ntfy {
        if wants(n, "ntfy", e) || is_overdue(&m.event) {
            let title = format!("cairn {}: {} on {}", m.event, m.plan, m.host);
            let body = match (&m.error, &m.error_category) {
                (Some(err), Some(cat)) => format!("{cat}: {err}"),
                (Some(err), None) => err.clone(),
                _ => format!("plan {} {}", m.plan, m.event),
            };
            let (prio, tags) = match e {
                Event::Failure => ("high", "warning"),
                Event::Start => ("low", "hourglass"),
                Event::Success => ("default", "white_check_mark"),
            };
            problems.extend(post(
                &agent,
                url,
                "text/plain; charset=utf-8",
                &[
                    ("Title", title),
                    ("Priority", prio.into()),
                    ("Tags", tags.into()),
                ],
                body.as_bytes(),
            ));
        }
    }
    if let Some(url) = &n.webhook {
        if wants(n, "webhook", e) || is_overdue(&m.event) {
            let mut m = m.clone();
            m.log_tail = tail.to_string();
            match serde_json::to_vec(&m) {
                Ok(body) => problems.extend(post(&agent, url, "application/json", &[], &body)),
                Err(err) => problems.push(format!("webhook: {err}")),
            }
        }
    }
    problems
}

/// The last `max` bytes of `s`, cut at a character boundary.
pub fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_routing() {
        let n = Notify::default();
        assert!(wants(&n, "healthchecks", Event::Start));
        assert!(!wants(&n, "webhook", Event::Start));
        assert!(wants(&n, "webhook", Event::Success));
        assert!(!wants(&n, "ntfy", Event::Success));
        assert!(wants(&n, "ntfy", Event::Failure));
        let only = Notify {
            on: Some([Event::Success].into_iter().collect()),
            ..Default::default()
        };
        assert!(wants(&only, "ntfy", Event::Success));
        assert!(!wants(&only, "healthchecks", Event::Failure));
    }

    #[test]
    fn tails_cut_at_char_boundaries() {
        assert_eq!(tail("héllo", 3), "llo");
        assert_eq!(tail("hé", 1), "");
        assert_eq!(
            redact("https://hc-ping.com/1234-uuid"),
            "https://hc-ping.com/…"
        );
    }
}
