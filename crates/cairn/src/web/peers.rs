//! `[settings.web] peers`: other cairn daemons shown read-only on this dashboard and in
//! `GET /api/status`. Each peer's status API is fetched server-side with a viewer bearer
//! token read from its `token-file`, all peers at once, each within its timeout and a
//! bounded body, and cached briefly so page loads do not hammer the peers.
//!
//! What this module must not do: let anything from a peer trigger anything here (peer
//! rows have no buttons and no links into this server), trust a peer's text (everything
//! is escaped, clipped and counted), or let the token out (it is read at each fetch, sent
//! only in the `Authorization` header, and never logged, shown or stored). A peer that is
//! down, refuses the token, stalls or answers garbage is shown as such; the rest still
//! shows. A peer's own peers are not asked for (`?peers=none`), so two daemons listing
//! each other do not fetch in a loop.

use super::layout::esc;
use crate::config::{Config, WebPeer};
use cairn_repo::backend::http::{Http, Timeouts};
use cairn_repo::backend::limit::Limits;
use cairn_repo::backend::retry::Retry;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The largest status answer read from a peer.
pub const MAX_BODY: u64 = 1 << 20;
/// How long a fetched answer (or failure) is reused.
pub const FRESH: Duration = Duration::from_secs(15);
/// The most plans, repositories and jobs kept of one peer's answer.
const MAX_ROWS: usize = 500;
/// The most characters kept of one text of a peer.
const MAX_TEXT: usize = 200;
/// The largest token file read.
const MAX_TOKEN_FILE: u64 = 4 << 10;

/// How a peer answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerState {
    /// Its status came.
    Ok,
    /// It answered 401 or 403: the token is wrong or not allowed.
    Refused,
    /// No connection (down, wrong address, name not resolved, TLS failed).
    Unreachable,
    /// Connected, but no complete answer within the timeout.
    Slow,
    /// It answered something that is not a cairn status (another status code, not JSON,
    /// too large).
    BadAnswer,
    /// The token file cannot be used (missing, unreadable, open to others, empty).
    NotConfigured,
}

impl PeerState {
    fn text(self) -> &'static str {
        match self {
            PeerState::Ok => "up",
            PeerState::Refused => "refused our token",
            PeerState::Unreachable => "unreachable",
            PeerState::Slow => "no answer in time",
            PeerState::BadAnswer => "bad answer",
            PeerState::NotConfigured => "token file unusable",
        }
    }

    fn class(self) -> &'static str {
        match self {
            PeerState::Ok => "ok",
            PeerState::Slow | PeerState::NotConfigured => "warn",
            _ => "failed",
        }
    }
}

/// The parts of a peer's `GET /api/status` shown here. Unknown fields are ignored (peers
/// may run another version); `plans` and `repositories` must be there.
#[derive(Deserialize, Serialize, Clone, Debug)]
pub struct PeerStatus {
    #[serde(default)]
    pub generated: Option<f64>,
    pub plans: Vec<PeerPlan>,
    pub repositories: Vec<PeerRepository>,
    #[serde(default)]
    pub jobs: Vec<PeerJob>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default)]
#[serde(default)]
pub struct PeerPlan {
    pub plan: String,
    pub repository: String,
    pub schedule: Option<String>,
    pub last_run: Option<PeerRun>,
    pub next_run: Option<String>,
    pub overdue: bool,
    pub last_check_success: Option<f64>,
    pub last_restore_test: Option<f64>,
    pub restore_test_overdue: bool,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default)]
#[serde(default)]
pub struct PeerRun {
    pub operation: String,
    pub started: f64,
    pub finished: Option<f64>,
    pub result: String,
    pub error_category: Option<String>,
    pub error: Option<String>,
    pub bytes_added: Option<u64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default)]
#[serde(default)]
pub struct PeerRepository {
    pub repository: String,
    pub plans: Vec<String>,
    pub size: Option<u64>,
    pub snapshots: Option<u64>,
    pub hosts: Vec<String>,
    pub last_snapshot: Option<String>,
    pub error: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default)]
#[serde(default)]
pub struct PeerJob {
    pub plan: String,
    pub operation: String,
    pub state: String,
    pub result: Option<String>,
}

/// One peer as this server shows it (`peers` of `GET /api/status`).
#[derive(Serialize, Clone, Debug)]
pub struct PeerView {
    pub name: String,
    pub url: String,
    pub state: PeerState,
    /// Why it is not `ok`.
    pub error: Option<String>,
    /// When the answer (or failure) shown was fetched, Unix seconds.
    pub fetched: Option<f64>,
    /// Its status, when it answered.
    pub status: Option<PeerStatus>,
}

type Outcome = Result<PeerStatus, (PeerState, String)>;

#[derive(Clone)]
struct Fetched {
    at: Instant,
    wall: f64,
    outcome: Outcome,
}

/// A peer's cache entry: the last outcome, and the lock held by the one fetch in flight.
#[derive(Default)]
struct Slot {
    last: Mutex<Option<Fetched>>,
    fetching: tokio::sync::Mutex<()>,
}

impl Slot {
    fn fresh(&self) -> Option<Fetched> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref().filter(|f| f.at.elapsed() < FRESH).cloned()
    }
}

/// Cache entries by peer (name, URL and token file: a reloaded config starts afresh).
fn slot(peer: &WebPeer) -> Arc<Slot> {
    static SLOTS: OnceLock<Mutex<HashMap<String, Arc<Slot>>>> = OnceLock::new();
    let key = format!("{}\0{}\0{}", peer.name, peer.url, peer.token_file.display());
    let mut slots = SLOTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    slots.entry(key).or_default().clone()
}

/// Starts fetching every peer of `config` at once (when `wanted`); the future answers
/// within the longest peer timeout and a second, whatever the peers do.
pub fn start(config: &Config, wanted: bool) -> impl Future<Output = Vec<PeerView>> + Send {
    let peers: Vec<WebPeer> = match (&config.settings.web, wanted) {
        (Some(w), true) => w.peers.clone(),
        _ => Vec::new(),
    };
    let tasks: Vec<_> = peers
        .into_iter()
        .map(|p| (p.clone(), tokio::spawn(view(p))))
        .collect();
    async move {
        let mut out = Vec::with_capacity(tasks.len());
        for (p, task) in tasks {
            out.push(task.await.unwrap_or_else(|_| PeerView {
                name: p.name.clone(),
                url: p.url.clone(),
                state: PeerState::BadAnswer,
                error: Some("internal error while asking this peer".into()),
                fetched: None,
                status: None,
            }));
        }
        out
    }
}

/// One peer: its cached outcome, or a fetch (one at a time per peer) waited for at most
/// its timeout and a second.
async fn view(peer: WebPeer) -> PeerView {
    let s = slot(&peer);
    let deadline = peer.timeout + Duration::from_secs(1);
    let fetched = match s.fresh() {
        Some(f) => Some(f),
        None => {
            let (s2, p2) = (s.clone(), peer.clone());
            // The fetch runs to its end even when this request stops waiting, so the
            // next request finds its outcome instead of starting another.
            let task = tokio::spawn(async move {
                let _one = s2.fetching.lock().await;
                if let Some(f) = s2.fresh() {
                    return f;
                }
                let outcome = tokio::task::spawn_blocking(move || fetch(&p2))
                    .await
                    .unwrap_or_else(|_| {
                        Err((PeerState::BadAnswer, "internal error while asking".into()))
                    });
                let f = Fetched {
                    at: Instant::now(),
                    wall: now(),
                    outcome,
                };
                *s2.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(f.clone());
                f
            });
            tokio::time::timeout(deadline, task)
                .await
                .ok()
                .and_then(Result::ok)
        }
    };
    let (state, error, status, fetched) = match fetched {
        Some(Fetched {
            outcome: Ok(st),
            wall,
            ..
        }) => (PeerState::Ok, None, Some(st), Some(wall)),
        Some(Fetched {
            outcome: Err((state, e)),
            wall,
            ..
        }) => (state, Some(e), None, Some(wall)),
        None => (
            PeerState::Slow,
            Some(format!(
                "no answer within {}",
                crate::config::format_duration(deadline)
            )),
            None,
            None,
        ),
    };
    PeerView {
        name: peer.name,
        url: peer.url,
        state,
        error,
        fetched,
        status,
    }
}

fn now() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

/// Reads the token of `path`: a private file (mode 0600 or stricter) holding one token.
/// Messages never contain the file's content.
fn read_token(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read token-file {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read token-file {shown}: {e}"))?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "not using token-file {shown}: group or others may access it (mode {:o}); run chmod 600 on it",
            meta.mode() & 0o7777
        ));
    }
    let mut text = String::new();
    file.take(MAX_TOKEN_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read token-file {shown}: {e}"))?;
    if text.len() as u64 > MAX_TOKEN_FILE {
        return Err(format!(
            "token-file {shown} is larger than {MAX_TOKEN_FILE} bytes: it should hold the token alone"
        ));
    }
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "token-file {shown} is empty: write a viewer token of the peer's tokens-file into it"
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "token-file {shown} should hold one token (printable characters, no spaces), nothing else"
        ));
    }
    Ok(token.to_string())
}

/// Asks `peer` for its status (blocking, bounded by its timeout on connect and each read,
/// and by [`MAX_BODY`]).
fn fetch(peer: &WebPeer) -> Outcome {
    let token = read_token(&peer.token_file).map_err(|e| (PeerState::NotConfigured, e))?;
    let http = Http::new(
        &Timeouts {
            connect: peer.timeout,
            io: peer.timeout,
        },
        1,
        Retry {
            max_time: Duration::ZERO,
            first_wait: Duration::ZERO,
            max_wait: Duration::ZERO,
        },
        Arc::new(Limits::new(None, None)),
    );
    let url = format!("{}/api/status?peers=none", peer.url);
    let headers = [
        ("Authorization", format!("Bearer {token}")),
        ("Accept", "application/json".to_string()),
    ];
    let what = format!("peer {}", peer.name);
    let started = Instant::now();
    let reply = http.send_raw("GET", &url, &headers, None, MAX_BODY, &what);
    let fail = |state: PeerState, msg: String| Err((state, clip(&msg, 400)));
    match reply {
        Err(e) if e.kind() == cairn_repo::Kind::Network => {
            // Connected but nothing came in time reads as slow; the rest as unreachable.
            let msg = e.to_string();
            let no_connection =
                msg.contains(": cannot connect") || msg.contains(": cannot resolve");
            if !no_connection && started.elapsed() >= peer.timeout.mul_f64(0.9) {
                fail(
                    PeerState::Slow,
                    format!(
                        "{what} sent no complete answer within {} ({msg}): is it overloaded, or behind a proxy that holds the request?",
                        crate::config::format_duration(peer.timeout)
                    ),
                )
            } else {
                fail(PeerState::Unreachable, e.to_string())
            }
        }
        Err(e) => fail(PeerState::BadAnswer, e.to_string()),
        Ok(Err(h)) => match h.status {
            401 | 403 => fail(
                PeerState::Refused,
                format!(
                    "{what} answered HTTP {}: it does not accept our token; put a viewer token of its tokens-file into {}",
                    h.status,
                    peer.token_file.display()
                ),
            ),
            300..=399 => fail(
                PeerState::BadAnswer,
                format!("{what} answered with a redirect (HTTP {}): set url to its web UI's base address", h.status),
            ),
            s => fail(PeerState::BadAnswer, format!("{what} answered HTTP {s}")),
        },
        Ok(Ok(r)) => match serde_json::from_slice::<PeerStatus>(&r.body) {
            Ok(st) => Ok(sanitize(st)),
            Err(e) => fail(
                PeerState::BadAnswer,
                format!("{what} did not answer with a cairn status ({e}): is url its web UI?"),
            ),
        },
    }
}

/// `s` cut to `n` characters (an ellipsis marks the cut).
fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A peer's answer with its lists counted and its texts clipped.
fn sanitize(mut st: PeerStatus) -> PeerStatus {
    let c = |s: &mut String| *s = clip(s, MAX_TEXT);
    let co = |s: &mut Option<String>| {
        if let Some(s) = s {
            *s = clip(s, MAX_TEXT);
        }
    };
    st.plans.truncate(MAX_ROWS);
    st.repositories.truncate(MAX_ROWS);
    st.jobs.truncate(MAX_ROWS);
    for p in &mut st.plans {
        c(&mut p.plan);
        c(&mut p.repository);
        co(&mut p.schedule);
        co(&mut p.next_run);
        if let Some(r) = &mut p.last_run {
            c(&mut r.operation);
            c(&mut r.result);
            co(&mut r.error_category);
            co(&mut r.error);
        }
    }
    for r in &mut st.repositories {
        c(&mut r.repository);
        r.plans.truncate(MAX_ROWS);
        r.plans.iter_mut().for_each(c);
        r.hosts.truncate(MAX_ROWS);
        r.hosts.iter_mut().for_each(c);
        co(&mut r.last_snapshot);
        co(&mut r.error);
    }
    for j in &mut st.jobs {
        c(&mut j.plan);
        c(&mut j.operation);
        c(&mut j.state);
        co(&mut j.result);
    }
    st
}

/// Unix seconds as local time, or `none` muted.
fn time(t: Option<f64>, none: &str) -> String {
    match t.and_then(|t| chrono::DateTime::<chrono::Utc>::from_timestamp(t as i64, 0)) {
        Some(d) => format!(
            r#"<time datetime="{}">{}</time>"#,
            d.to_rfc3339(),
            d.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M")
        ),
        None => format!(r#"<span class="muted">{}</span>"#, esc(none)),
    }
}

/// An RFC 3339 time of a peer as local time (its text, escaped, when it is not one).
fn rfc3339(t: Option<&str>, none: &str) -> String {
    match t {
        Some(s) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(d) => time(Some(d.timestamp() as f64), none),
            Err(_) => esc(s),
        },
        None => time(None, none),
    }
}

fn result_class(result: &str) -> &'static str {
    match result {
        "success" => "ok",
        "warning" | "skipped" => "warn",
        "running" => "running",
        _ => "failed",
    }
}

/// The dashboard's section of peers (`#peers`), empty when none is configured.
///
/// Element ids (NAME the peer's name, PLAN and REPO as the peer names them): a section
/// `#peer-NAME` per peer (attribute `data-state`: ok, refused, unreachable, slow,
/// bad-answer, not-configured) with its message in `#peer-NAME-error`, its plans in
/// `#peer-NAME-plans` (a row `#peer-NAME-plan-PLAN` each) and its repositories in
/// `#peer-NAME-repositories` (a row `#peer-NAME-repo-REPO` each). Read-only: no buttons,
/// no links into this server.
pub fn section(views: &[PeerView]) -> String {
    if views.is_empty() {
        return String::new();
    }
    let mut b = String::from(
        r#"<section id="peers"><h2>Other cairn daemons</h2><p class="small muted">Read-only: what each daemon's status API answered. Start and restore from its own web UI.</p>"#,
    );
    for v in views {
        peer_section(&mut b, v);
    }
    b.push_str("</section>");
    b
}

fn peer_section(b: &mut String, v: &PeerView) {
    let id = esc(&v.name);
    let _ = write!(
        b,
        r#"<section class="peer" id="peer-{id}" data-state="{state}"><h3>{id} <a class="small" href="{u}" rel="noopener noreferrer">{u}</a> <span class="badge {class}">{text}</span> <span class="small muted">as of {at}</span></h3>"#,
        u = esc(&v.url),
        state = serde_json::to_value(v.state)
            .ok()
            .and_then(|s| s.as_str().map(str::to_string))
            .unwrap_or_default(),
        class = v.state.class(),
        text = v.state.text(),
        at = time(v.fetched, "now"),
    );
    if let Some(e) = &v.error {
        let _ = write!(b, r#"<p class="error" id="peer-{id}-error">{}</p>"#, esc(e));
    }
    let Some(st) = &v.status else {
        b.push_str("</section>");
        return;
    };
    let _ = write!(
        b,
        r#"<div class="scroll"><table id="peer-{id}-plans"><thead><tr><th>Plan</th><th>Repository</th><th>Last run</th><th>Result</th><th class="num">Duration</th><th class="num">Added</th><th>Next run</th><th>Last check</th><th>Last restore test</th><th>Now</th></tr></thead><tbody>"#
    );
    if st.plans.is_empty() {
        b.push_str(r#"<tr><td colspan="10" class="muted">No plans.</td></tr>"#);
    }
    for p in &st.plans {
        plan_row(b, &id, p, st.jobs.iter().find(|j| j.plan == p.plan));
    }
    let _ = write!(
        b,
        r#"</tbody></table></div><div class="scroll"><table id="peer-{id}-repositories"><thead><tr><th>Repository</th><th>Plans</th><th class="num">Size</th><th class="num">Snapshots</th><th>Hosts</th><th>Last snapshot</th><th></th></tr></thead><tbody>"#
    );
    for r in &st.repositories {
        let num = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let _ = write!(
            b,
            r#"<tr id="peer-{id}-repo-{rid}"><td>{rid}</td><td>{plans}</td><td class="num">{size}</td><td class="num">{snaps}</td><td>{hosts}</td><td>{last}</td><td>{error}</td></tr>"#,
            rid = esc(&r.repository),
            plans = esc(&r.plans.join(", ")),
            size = r.size.map(crate::units::format_bytes).unwrap_or_default(),
            snaps = num(r.snapshots),
            hosts = esc(&r.hosts.join(", ")),
            last = rfc3339(r.last_snapshot.as_deref(), ""),
            error = r
                .error
                .as_deref()
                .map(|e| format!(r#"<span class="error">{}</span>"#, esc(e)))
                .unwrap_or_default(),
        );
    }
    b.push_str("</tbody></table></div></section>");
}

fn plan_row(b: &mut String, peer_id: &str, p: &PeerPlan, job: Option<&PeerJob>) {
    let pid = esc(&p.plan);
    let class = if p.overdue {
        "overdue"
    } else if p
        .last_run
        .as_ref()
        .is_some_and(|r| result_class(&r.result) == "failed")
    {
        "failed"
    } else {
        ""
    };
    let (last, result, dur, added) = match &p.last_run {
        Some(r) => {
            let mut text = r.result.clone();
            if let (Some(c), "failed") = (&r.error_category, result_class(&r.result)) {
                let _ = write!(text, ": {c}");
            }
            (
                time(Some(r.started), "never"),
                format!(
                    r#"<span class="badge {}" title="{}">{}</span>"#,
                    result_class(&r.result),
                    esc(r.error.as_deref().unwrap_or("")),
                    esc(&text)
                ),
                r.finished
                    .map(|f| super::runs_pages::duration(f - r.started))
                    .unwrap_or_default(),
                r.bytes_added
                    .map(crate::units::format_bytes)
                    .unwrap_or_default(),
            )
        }
        None => (
            time(None, "never"),
            String::new(),
            String::new(),
            String::new(),
        ),
    };
    let overdue = if p.overdue {
        r#" <span class="badge overdue">overdue</span>"#
    } else {
        ""
    };
    let restore_overdue = if p.restore_test_overdue {
        r#" <span class="badge overdue">restore test overdue</span>"#
    } else {
        ""
    };
    let now = match job {
        Some(j) => esc(&format!(
            "{} {}",
            j.operation,
            j.result.as_deref().unwrap_or(&j.state)
        )),
        None => r#"<span class="muted">idle</span>"#.to_string(),
    };
    let next = match &p.next_run {
        Some(t) => rfc3339(Some(t), ""),
        None => r#"<span class="muted">manual</span>"#.to_string(),
    };
    let _ = write!(
        b,
        r#"<tr id="peer-{peer_id}-plan-{pid}" class="{class}"><td>{pid}{overdue}</td><td>{repo}</td><td>{last}</td><td>{result}</td><td class="num">{dur}</td><td class="num">{added}</td><td>{next}</td><td>{check}</td><td>{restore}{restore_overdue}</td><td>{now}</td></tr>"#,
        repo = esc(&p.repository),
        check = time(p.last_check_success, "never"),
        restore = time(p.last_restore_test, "never"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token file is used only when it is private and holds one printable token; every
    /// refusal names the file and what to do, never the content.
    #[test]
    fn token_file_must_be_private_and_hold_one_token() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &[u8], mode: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        let good = write("good", b"  s3cr3t-token\n", 0o600);
        assert_eq!(read_token(&good).unwrap(), "s3cr3t-token");
        let cases = [
            (dir.path().join("missing"), "cannot read"),
            (write("open", b"s3cr3t-token\n", 0o640), "chmod 600"),
            (write("empty", b" \n", 0o600), "is empty"),
            (write("two", b"s3cr3t-token other\n", 0o600), "one token"),
            (write("big", &[b'a'; 5000], 0o600), "larger than"),
        ];
        for (path, want) in cases {
            let e = read_token(&path).unwrap_err();
            assert!(e.contains(want), "{}: {e}", path.display());
            assert!(e.contains(&*path.to_string_lossy()), "{e}");
            assert!(!e.contains("s3cr3t"), "the token leaked: {e}");
        }
    }

    #[test]
    fn hostile_peer_text_is_escaped_clipped_and_has_no_controls() {
        let st: PeerStatus = serde_json::from_value(serde_json::json!({
            "plans": [{"plan": "<script>alert(1)</script>", "repository": "\"><img src=x>",
                       "last_run": {"started": 1.0, "result": "<b>", "error": "x".repeat(5000)}}],
            "repositories": [{"repository": "r", "hosts": ["<h>"]}],
            "extra": {"ignored": true}
        }))
        .unwrap();
        let st = sanitize(st);
        let html = section(&[PeerView {
            name: "b".into(),
            url: "http://x".into(),
            state: PeerState::Ok,
            error: None,
            fetched: Some(1.0),
            status: Some(st),
        }]);
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<h>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains(&"x".repeat(MAX_TEXT + 1)));
        assert!(!html.contains("<button"), "{html}");
        assert!(!html.contains("<form"), "{html}");
    }

    #[test]
    fn garbage_is_not_a_status() {
        for bad in [
            &b"{}"[..],
            b"<html>",
            b"[1,2]",
            b"{\"plans\": 3, \"repositories\": []}",
        ] {
            assert!(serde_json::from_slice::<PeerStatus>(bad).is_err());
        }
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("ab", 3), "ab");
    }
}
