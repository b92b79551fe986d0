//! Downloads of picked items of a snapshot (or a folder, or all of it) as a streamed
//! `.tar.gz` or `.zip`, audited.
//!
//! A download streams: a blocking thread walks the snapshot and writes the archive into
//! a bounded channel ([`CHUNKS`] x [`CHUNK`]) that the response body drains, so memory
//! does not grow with the download and a client that goes away stops the walk (the audit
//! row then says `interrupted`). An error after the first bytes aborts the response (the
//! client sees a failed download, never a short archive that looks complete).

// Handlers' errors are ready responses (axum's own type, ~100 bytes): boxing them would
// only add noise on paths that end the request anyway.
#![allow(clippy::result_large_err)]

use super::api_browse::{check_query, query_values};
use super::api_data::{field, internal, now, pairs, picked, repo_error, shown};
use super::auth::Caller;
use super::AppState;
use crate::history::{Finish, History, Outcome};
use crate::ops::archive::{self, Format};
use crate::ops::repos::Open;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Extension;
use cairn_repo::index::Index;
use cairn_repo::lock::LockGuard;
use cairn_repo::snapshot::Snapshot;
use std::io::Write;
use std::sync::Arc;

/// Bytes per chunk handed to the response body.
pub const CHUNK: usize = 256 << 10;
/// Chunks in flight between the archive writer and the client.
pub const CHUNKS: usize = 8;
/// Downloads served at once. Each holds a blocking thread for as long as its client
/// reads (a client that stops reading holds it until the connection's idle timeout):
/// without a cap, a few stalled downloads would take every blocking thread, and logins,
/// browsing and restores would wait behind them. More get 503.
pub const MAX_DOWNLOADS: usize = 6;
static DOWNLOADS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_DOWNLOADS);

/// `s` reduced to characters safe in a file name of a Content-Disposition header.
fn safe_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    while out.starts_with('.') {
        out.remove(0);
    }
    if out.is_empty() {
        out.push_str("items");
    }
    out
}

pub(super) async fn download_get(
    State(st): State<AppState>,
    Path((repo, id)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    if let Err(r) = check_query(&q) {
        return r;
    }
    let raw = q.as_deref();
    let p = pairs(raw.unwrap_or("").as_bytes());
    let items = query_values(raw, "item");
    let format = field(&p, "format").unwrap_or_default();
    download(st, caller, repo, id, items, format).await
}

pub(super) async fn download_post(
    State(st): State<AppState>,
    Path((repo, id)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let p = pairs(&body);
    let format = field(&p, "format").unwrap_or_default();
    download(st, caller, repo, id, picked(&p), format).await
}

/// What a download needs once checked: the repository, its index, the snapshot, the
/// resolved selection, the lock and the audit row.
struct Prepared {
    open: Arc<Open>,
    index: Arc<Index>,
    snap: Arc<Snapshot>,
    sel: archive::Selection,
    lock: Option<LockGuard>,
    audit: i64,
}

async fn download(
    st: AppState,
    caller: Caller,
    repo: String,
    id: String,
    items: Vec<Vec<u8>>,
    format: String,
) -> Response {
    let format = match Format::parse(&format) {
        Ok(f) => f,
        Err(e) => return repo_error(&e),
    };
    let Ok(permit) = DOWNLOADS.try_acquire() else {
        let mut r = super::api_runs::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many downloads at once ({MAX_DOWNLOADS})"),
            Some("wait for a download to finish, then try again"),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("10"));
        return r;
    };
    let state = st.clone();
    let user = caller.user.clone();
    let prepared = tokio::task::spawn_blocking(move || -> Result<Prepared, Response> {
        let e = |e: cairn_repo::Error| repo_error(&e);
        let open = state.repos.get(&repo).map_err(e)?;
        let snap = open.snapshot(&id).map_err(e)?;
        let index = open.index().map_err(e)?;
        let sel = {
            let trees = open.trees(&index);
            archive::resolve(&trees, snap.tree, &items).map_err(e)?
        };
        // A shared lock, like `restic dump`: prune cannot delete packs under the stream.
        let lock = Some(cairn_repo::lock::lock(&open.repo, false).map_err(e)?);
        let detail = serde_json::json!({"items": shown(&items), "format": format});
        let audit = History::open(&state.config.settings.state_dir)
            .and_then(|h| {
                h.start_audited(&user, &repo, "download", &snap.id.to_hex(), &detail, now())
            })
            .map_err(|e| internal(format!("cannot audit the download: {e:#}")))?;
        Ok(Prepared {
            open,
            index,
            snap,
            sel,
            lock,
            audit,
        })
    })
    .await;
    let p = match prepared {
        Ok(Ok(p)) => p,
        Ok(Err(r)) => return r,
        Err(e) => return internal(e),
    };
    let name = format!(
        "{}-{}-{}.{}",
        safe_name(&p.open.name),
        &p.snap.id.to_hex()[..8],
        safe_name(&p.sel.single_name().unwrap_or_else(|| "items".into())),
        format.extension()
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(CHUNKS);
    let state = st.clone();
    tokio::task::spawn_blocking(move || {
        produce(state, p, format, tx);
        drop(permit);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, format.content_type())
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(stream))
        .unwrap_or_else(internal)
}

/// Writes into the response body's channel, [`CHUNK`] bytes at a time; a closed channel
/// (the client went away) fails the write, which stops the archive writer.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
    sent: u64,
    gone: bool,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let n = chunk.len() as u64;
        if self.tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
            self.gone = true;
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client went away",
            ));
        }
        self.sent += n;
        Ok(())
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The blocking side of a download: the archive into the channel, then the audit row.
fn produce(
    state: AppState,
    p: Prepared,
    format: Format,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) {
    let mut w = ChannelWriter {
        tx,
        buf: Vec::with_capacity(CHUNK),
        sent: 0,
        gone: false,
    };
    let result = {
        let trees = p.open.trees(&p.index);
        archive::write(&trees, &p.sel, format, &mut w).and_then(|r| {
            w.send()
                .map_err(|e| cairn_repo::Error::io("sending the archive", e))?;
            Ok(r)
        })
    };
    drop(p.lock);
    let (outcome, f) = match result {
        Ok(r) => (
            Outcome::Success,
            Finish {
                files_processed: Some(r.files),
                bytes_processed: Some(w.sent),
                snapshot_id: Some(p.snap.id.to_hex()),
                error: (!r.skipped.is_empty())
                    .then(|| format!("{} entries left out: {}", r.skipped.len(), r.skipped[0])),
                ..Default::default()
            },
        ),
        Err(e) if w.gone => (
            Outcome::Interrupted,
            Finish {
                bytes_processed: Some(w.sent),
                snapshot_id: Some(p.snap.id.to_hex()),
                error: Some(format!("the client went away after {} bytes ({e})", w.sent)),
                ..Default::default()
            },
        ),
        Err(e) => {
            eprintln!("web: download from repository {:?}: {e}", p.open.name);
            // Aborts the response: the client sees a failed download.
            let _ =
                w.tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            (
                Outcome::Failure,
                Finish {
                    bytes_processed: Some(w.sent),
                    snapshot_id: Some(p.snap.id.to_hex()),
                    error: Some(e.to_string()),
                    ..Default::default()
                },
            )
        }
    };
    let recorded = History::open(&state.config.settings.state_dir)
        .and_then(|h| h.finish(p.audit, now(), outcome, &f));
    if let Err(e) = recorded {
        eprintln!("web: cannot record the end of download {}: {e:#}", p.audit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_in_the_disposition_header_are_safe() {
        assert_eq!(safe_name("docs"), "docs");
        assert_eq!(safe_name("a\"b\r\nc/../d"), "a_b__c_.._d");
        assert_eq!(safe_name("..hidden"), "hidden");
        assert_eq!(safe_name(""), "items");
        assert_eq!(safe_name(&"x".repeat(500)).len(), 80);
    }
}
