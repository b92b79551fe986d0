//! The API of plans and runs: status, history, one run with its steps and logs, live
//! progress (Server-Sent Events) and triggers. Pages over the same data are in
//! [`super::runs_pages`].

use super::routes::{Access, Route};
use super::AppState;
use crate::history::{History, Record};
use crate::ops::jobs::{HubEvent, JobState, Operation, Refused};
use crate::ops::status::Status;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The most runs one history request answers.
pub const MAX_LIMIT: usize = 1000;

/// A JSON error `{"error", "hint"}` with `status`.
pub fn error(status: StatusCode, error: impl Into<String>, hint: Option<&str>) -> Response {
    let mut body = serde_json::json!({ "error": error.into() });
    if let Some(h) = hint {
        body["hint"] = h.into();
    }
    (status, Json(body)).into_response()
}

/// Runs `f` on a blocking thread; its error is logged and answered as a 500 with a safe
/// message.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            eprintln!("web: {e:#}");
            Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the history",
                Some("see the server's log"),
            ))
        }
        Err(e) => {
            eprintln!("web: a request's worker failed: {e}");
            Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
                None,
            ))
        }
    }
}

pub fn routes() -> Vec<Route> {
    vec![
        Route::api(
            "GET",
            "/api/status",
            Access::Viewer,
            "Every plan (last run, result, next run, overdue, last check, last restore test, chart) and repository (size, snapshots, hosts), and the operations running now",
            axum::routing::get(status),
        )
        .with_query(&[("peers", "`none`: leave out the peers of [settings.web] peers")]),
        Route::api(
            "GET",
            "/api/history",
            Access::Viewer,
            "Runs with their steps, newest first",
            axum::routing::get(history),
        )
        .with_query(&[
            ("plan", "only this plan's runs"),
            ("limit", "how many runs (default 50, at most 1000)"),
        ]),
        Route::api(
            "GET",
            "/api/runs/{id}",
            Access::Viewer,
            "One run: its steps, logs, error categories, and live progress while it runs",
            axum::routing::get(run),
        ),
        Route::api(
            "GET",
            "/api/events",
            Access::Viewer,
            "Server-Sent Events: `job` (an operation's state: queued, running with files, bytes, rate, ETA, finished with its result) and `progress` (the runner's messages)",
            axum::routing::get(events),
        ),
        Route::api(
            "POST",
            "/api/plans/{plan}/trigger",
            Access::Admin,
            "Start an operation of a plan: JSON {\"operation\": \"backup\"|\"check\"|\"prune\"|\"restore-test\"}; 202 queued, 409 when the plan already has one queued or running",
            axum::routing::post(trigger),
        ),
    ]
}

/// What `GET /api/status` answers: the status and the operations running now.
#[derive(Serialize)]
pub struct StatusAnswer {
    #[serde(flatten)]
    pub status: Status,
    pub jobs: Vec<JobState>,
    /// The other cairn daemons of `[settings.web] peers`, as they answered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<super::peers::PeerView>,
}

/// The status of every plan and repository (blocking: history and repository listings).
pub fn read_status(state: &AppState) -> anyhow::Result<Status> {
    let history = History::open(&state.config.settings.state_dir)?;
    let now = chrono::Utc::now();
    Ok(Status {
        generated: now.timestamp_millis() as f64 / 1000.0,
        plans: crate::ops::status::plans(&state.config, &history, now)?,
        repositories: crate::ops::status::repositories(&state.config, &state.repos, now),
    })
}

async fn status(
    State(state): State<AppState>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let peers = super::peers::start(&state.config, q.get("peers").is_none_or(|p| p != "none"));
    let s = state.clone();
    match blocking(move || read_status(&s)).await {
        Ok(status) => Json(StatusAnswer {
            status,
            jobs: state.jobs.hub().snapshot(),
            peers: peers.await,
        })
        .into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    pub plan: Option<String>,
    pub limit: Option<String>,
}

impl HistoryQuery {
    /// The plan filter (empty is none) and the limit, or why the limit is wrong.
    pub fn parse(&self) -> Result<(Option<String>, usize), String> {
        let limit = match self.limit.as_deref().filter(|l| !l.is_empty()) {
            None => 50,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| format!("limit must be a number from 1 to {MAX_LIMIT}"))?,
        };
        let plan = self.plan.clone().filter(|p| !p.is_empty());
        Ok((plan, limit))
    }
}

/// A run with its steps.
#[derive(Serialize)]
pub struct RunWithSteps {
    #[serde(flatten)]
    pub run: Record,
    pub steps: Vec<Record>,
}

/// Runs with their steps, newest first (blocking).
pub fn read_history(
    state: &AppState,
    plan: Option<&str>,
    limit: usize,
) -> anyhow::Result<Vec<RunWithSteps>> {
    let h = History::open(&state.config.settings.state_dir)?;
    h.list(plan, limit, false)?
        .into_iter()
        .map(|run| {
            let steps = h.steps(run.id)?;
            Ok(RunWithSteps { run, steps })
        })
        .collect()
}

async fn history(State(state): State<AppState>, Query(q): Query<HistoryQuery>) -> Response {
    let (plan, limit) = match q.parse() {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, e, None),
    };
    match blocking(move || read_history(&state, plan.as_deref(), limit)).await {
        Ok(runs) => Json(runs).into_response(),
        Err(r) => r,
    }
}

/// One run (or step) with its log, and its steps with theirs.
#[derive(Serialize)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: Record,
    pub steps: Vec<Record>,
    /// The live state while the run is queued or running.
    pub live: Option<JobState>,
}

/// One run by id (blocking); `None` when there is none.
pub fn read_run(state: &AppState, id: i64) -> anyhow::Result<Option<RunDetail>> {
    let h = History::open(&state.config.settings.state_dir)?;
    let Some(run) = h.get(id)? else {
        return Ok(None);
    };
    let steps = h
        .steps(id)?
        .into_iter()
        .map(|s| -> anyhow::Result<Record> {
            let log = h.log(s.id)?;
            Ok(Record { log, ..s })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let live = state
        .jobs
        .hub()
        .busy(&run.plan)
        .filter(|j| j.run_id == Some(id));
    Ok(Some(RunDetail { run, steps, live }))
}

async fn run(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a run id"),
            Some("run ids are numbers, see GET /api/history"),
        );
    };
    match blocking(move || read_run(&state, id)).await {
        Ok(Some(r)) => Json(r).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no run {id}"),
            Some("see GET /api/history for run ids"),
        ),
        Err(r) => r,
    }
}

fn job_event(s: &JobState) -> Event {
    Event::default()
        .event("job")
        .data(serde_json::to_string(s).unwrap_or_default())
}

/// Event streams served at once: each holds one of the server's connections for as long
/// as a page stays open, so without a cap enough open tabs (or a hostile client) would
/// take every connection and starve the rest of the UI. More get 503.
pub const MAX_EVENT_STREAMS: usize = 16;
static EVENT_STREAMS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_EVENT_STREAMS);

async fn events(State(state): State<AppState>) -> Response {
    use futures_util::StreamExt;
    let Ok(permit) = EVENT_STREAMS.try_acquire() else {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many live event streams ({MAX_EVENT_STREAMS} at once)"),
            Some("close other cairn tabs, or poll GET /api/status"),
        );
        r.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("10"),
        );
        return r;
    };
    // Subscribe first, then take the current states: nothing falls in between.
    let rx = state.jobs.hub().subscribe();
    let current: Vec<Result<Event, std::convert::Infallible>> = state
        .jobs
        .hub()
        .snapshot()
        .iter()
        .map(|s| Ok(job_event(s)))
        .collect();
    let stop = state.stop.clone();
    // The permit lives in the stream: it is given back when the client goes away.
    let changes =
        futures_util::stream::unfold((rx, stop, permit), |(mut rx, stop, permit)| async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                let ev = match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                    Err(_) => continue,
                    Ok(Err(RecvError::Lagged(_))) => continue,
                    Ok(Err(RecvError::Closed)) => return None,
                    Ok(Ok(ev)) => ev,
                };
                let event = match &ev {
                    HubEvent::Job(s) => job_event(s),
                    HubEvent::Progress(p) => Event::default()
                        .event("progress")
                        .data(serde_json::to_string(p).unwrap_or_default()),
                };
                return Some((Ok(event), (rx, stop, permit)));
            }
        });
    Sse::new(futures_util::stream::iter(current).chain(changes))
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(10))
                .text("keep-alive"),
        )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    pub operation: String,
}

/// A refused trigger: its status and JSON body.
pub type Refusal = (StatusCode, serde_json::Value);

fn refusal(status: StatusCode, error: String, hint: Option<&str>) -> Refusal {
    let mut body = serde_json::json!({ "error": error });
    if let Some(h) = hint {
        body["hint"] = h.into();
    }
    (status, body)
}

/// Starts `operation` of `plan`; refused with 404, 400, 409 or 503 and why.
pub fn start(state: &AppState, plan: &str, operation: &str) -> Result<JobState, Refusal> {
    let Some(op) = Operation::parse(operation) else {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            format!("unknown operation {operation:?}"),
            Some("use backup, check, prune or restore-test"),
        ));
    };
    state
        .jobs
        .trigger(&state.config, plan, op)
        .map_err(|refused| {
            let msg = refused.to_string();
            match refused {
                Refused::UnknownPlan(_) => refusal(
                    StatusCode::NOT_FOUND,
                    msg,
                    Some("see GET /api/status for the plans"),
                ),
                Refused::NotConfigured(_) => refusal(StatusCode::BAD_REQUEST, msg, None),
                Refused::Busy(running) => (
                    StatusCode::CONFLICT,
                    serde_json::json!({
                        "error": msg,
                        "hint": "wait for it to finish (GET /api/events shows its progress)",
                        "running": running,
                    }),
                ),
                Refused::Locked(_) => refusal(
                    StatusCode::CONFLICT,
                    msg,
                    Some("another cairn runs this plan now; try again when it is done"),
                ),
                Refused::Unavailable(_) => refusal(StatusCode::SERVICE_UNAVAILABLE, msg, None),
            }
        })
}

async fn trigger(
    State(state): State<AppState>,
    Path(plan): Path<String>,
    body: Result<Json<TriggerBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(b)) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("bad request body: {}", e.body_text()),
                Some(r#"send JSON {"operation": "backup"} with Content-Type: application/json"#),
            )
        }
    };
    // Starting a child or queueing is quick, but spawning touches the disk (the plan lock).
    let result = tokio::task::spawn_blocking(move || start(&state, &plan, &body.operation)).await;
    match result {
        Ok(Ok(queued)) => (StatusCode::ACCEPTED, Json(queued)).into_response(),
        Ok(Err((status, body))) => (status, Json(body)).into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None),
    }
}
