//! Prometheus metrics from the run history, in the text exposition format: served at
//! `/metrics` by the daemon and written as a node-exporter textfile after `cairn run`.
//!
//! Per plan and operation (backup, forget, prune, check, copy, restore-test): time of the last run and of the
//! last success, duration and result of the last run; per plan: bytes and files of the
//! last backup, and whether it is overdue (no success within `max-age`); the last proven
//! restore (`cairn_last_restore_test_success_timestamp_seconds`, only once a restore test
//! succeeded) and, for plans whose restore test has a `max-age`, whether it is overdue
//! (`cairn_restore_test_overdue`).
//!
//! The web server serves `/metrics` to logged-in callers ([`web_route`]). [`serve`] is the
//! separate server of `metrics.listen` (`/metrics` and `/healthz` to anyone who can reach
//! it): axum on a small tokio runtime, serving connections concurrently with a header-read timeout, a whole-connection timeout,
//! a cap on the request head and on open connections, so a slow or hostile client cannot
//! block a scrape or exhaust memory. It must not do blocking work on the runtime's threads
//! (the history is read in `spawn_blocking`).

use crate::config::Config;
use crate::history::History;
use anyhow::Result;
use std::fmt::Write;
use std::path::Path;

pub const OPERATIONS: [&str; 7] = [
    "run",
    "backup",
    "forget",
    "prune",
    "check",
    "copy",
    "restore-test",
];

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics text for every plan of `config`, as of `now` (Unix seconds).
pub fn render(config: &Config, history: &History, now: f64) -> Result<String> {
    let mut families: Vec<(&str, &str, &str, Vec<String>)> = vec![
        (
            "cairn_last_run_timestamp_seconds",
            "gauge",
            "Start of the last run of the operation.",
            vec![],
        ),
        (
            "cairn_last_success_timestamp_seconds",
            "gauge",
            "Start of the last successful run of the operation.",
            vec![],
        ),
        (
            "cairn_last_run_duration_seconds",
            "gauge",
            "Duration of the last run of the operation.",
            vec![],
        ),
        (
            "cairn_last_run_success",
            "gauge",
            "1 if the last run of the operation succeeded, else 0.",
            vec![],
        ),
        (
            "cairn_last_backup_bytes_processed",
            "gauge",
            "Bytes read by the last backup.",
            vec![],
        ),
        (
            "cairn_last_backup_bytes_added",
            "gauge",
            "Bytes added to the repository by the last backup.",
            vec![],
        ),
        (
            "cairn_last_backup_files_processed",
            "gauge",
            "Files processed by the last backup.",
            vec![],
        ),
        (
            "cairn_plan_overdue",
            "gauge",
            "1 if the plan has had no successful backup within its max-age.",
            vec![],
        ),
        (
            "cairn_last_restore_test_success_timestamp_seconds",
            "gauge",
            "Start of the last successful restore test of the plan: the last proven restore.",
            vec![],
        ),
        (
            "cairn_restore_test_overdue",
            "gauge",
            "1 if the plan has had no successful restore test within its restore-test max-age.",
            vec![],
        ),
    ];
    for (name, plan) in &config.plans {
        for op in OPERATIONS {
            let labels = format!(
                "plan=\"{}\",repository=\"{}\",operation=\"{op}\"",
                esc(name),
                esc(&plan.repository)
            );
            if let Some(r) = history.last(name, op)? {
                families[0].3.push(format!("{{{labels}}} {}", r.started));
                if let Some(d) = r.duration() {
                    families[2]
                        .3
                        .push(format!("{{{labels}}} {:.3}", d.as_secs_f64()));
                }
                if r.finished.is_some() {
                    families[3]
                        .3
                        .push(format!("{{{labels}}} {}", u8::from(r.result.ok())));
                }
                if op == "backup" {
                    let l = format!(
                        "plan=\"{}\",repository=\"{}\"",
                        esc(name),
                        esc(&plan.repository)
                    );
                    if let Some(b) = r.bytes_processed {
                        families[4].3.push(format!("{{{l}}} {b}"));
                    }
                    if let Some(b) = r.bytes_added {
                        families[5].3.push(format!("{{{l}}} {b}"));
                    }
                    if let Some(f) = r.files_processed {
                        families[6].3.push(format!("{{{l}}} {f}"));
                    }
                }
            }
            if let Some(r) = history.last_ok(name, op)? {
                families[1].3.push(format!("{{{labels}}} {}", r.started));
            }
        }
        if let Some(max) = plan.max_age {
            let last = history.last_ok(name, "backup")?.map(|r| r.started);
            let overdue = crate::run::overdue(max, last, now);
            families[7]
                .3
                .push(format!("{{plan=\"{}\"}} {}", esc(name), u8::from(overdue)));
        }
        let proven = history.last_ok(name, "restore-test")?.map(|r| r.started);
        if let Some(t) = proven {
            families[8]
                .3
                .push(format!("{{plan=\"{}\"}} {t}", esc(name)));
        }
        if crate::ops::status::restore_test_max_age(plan).is_some() {
            let overdue = crate::ops::status::restore_test_overdue(plan, proven, now);
            families[9]
                .3
                .push(format!("{{plan=\"{}\"}} {}", esc(name), u8::from(overdue)));
        }
    }
    let mut out = String::new();
    for (name, kind, help, samples) in families {
        if samples.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in samples {
            let _ = writeln!(out, "{name}{s}");
        }
    }
    Ok(out)
}

/// Writes the textfile atomically (node-exporter must never read half a file).
pub fn write_textfile(path: &Path, text: &str) -> Result<()> {
    use anyhow::Context;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("cairn.prom")
    ));
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A client must send its whole request head within this time.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// A connection (request, rendering, response) is closed after this time, whatever it does.
pub const CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Connections served at once; more are refused until one ends (the timeouts bound how long).
pub const MAX_CONNECTIONS: usize = 64;
/// The largest request head (request line and headers) read; larger ones get 431.
const MAX_HEAD_BYTES: usize = 16 << 10;

/// Serves `/metrics` and `/healthz` on `addr` from a thread of its own until `stop` is set.
/// Fails at once if the address cannot be bound.
pub fn serve(
    addr: &str,
    config: std::sync::Arc<Config>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    use anyhow::Context;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .thread_name("cairn-http")
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the metrics server's runtime")?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("cannot listen on {addr} for /metrics"))?;
    eprintln!("metrics on http://{addr}/metrics");
    let app = router(config);
    Ok(std::thread::spawn(move || {
        runtime.block_on(accept_loop(listener, app, stop));
        // Connections still open are dropped with the runtime.
        runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    }))
}

fn router(config: std::sync::Arc<Config>) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "not found\n") })
        .with_state(config)
}

/// `GET /metrics` on the web server, for logged-in callers (Prometheus: a bearer token).
pub(crate) fn web_route() -> crate::web::routes::Route {
    crate::web::routes::Route::api(
        "GET",
        "/metrics",
        crate::web::routes::Access::Viewer,
        "Prometheus metrics of every plan (text exposition format)",
        axum::routing::get(
            |axum::extract::State(state): axum::extract::State<crate::web::AppState>| {
                scrape_response(state.config.clone())
            },
        ),
    )
}

async fn scrape(
    axum::extract::State(config): axum::extract::State<std::sync::Arc<Config>>,
) -> axum::response::Response {
    scrape_response(config).await
}

/// The metrics of `config` as an HTTP response (history read on a blocking thread).
async fn scrape_response(config: std::sync::Arc<Config>) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let rendered = tokio::task::spawn_blocking(move || {
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        History::open(&config.settings.state_dir).and_then(|h| render(&config, &h, now))
    })
    .await;
    match rendered {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => {
            eprintln!("metrics: cannot read the run history: {e:#}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the run history: see the daemon's log\n",
            )
                .into_response()
        }
        Err(e) => {
            eprintln!("metrics: rendering failed: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering the metrics failed: see the daemon's log\n",
            )
                .into_response()
        }
    }
}

pub(crate) async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    while !stop.load(Ordering::Relaxed) {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: do not spin.
                    eprintln!("metrics: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
        };
        // Over the limit the connection is closed at once rather than queued behind
        // connections that may be stalling on purpose.
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            drop(permit);
        });
    }
}
