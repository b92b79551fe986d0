//! The web UI and HTTP API: axum on a tokio runtime of its own, inside `cairn daemon`
//! (scheduler + UI) and `cairn web` (UI alone, for machines that run plans from timers).
//!
//! Every route comes from one table ([`routes`]) and passes one access check ([`auth`]):
//! nothing is reachable without a session (or a bearer token, or a trusted proxy's
//! header) except the login page and API, the OpenAPI document, assets and `/healthz`.
//! Handlers call the same typed operations as the CLI ([`crate::ops`]); repository and
//! history work runs on blocking threads, never on the runtime's workers.

pub mod auth;
pub mod layout;
pub mod routes;

mod api_browse;
mod api_config;
mod api_data;
mod api_download;
mod api_restore;
mod api_runs;
mod browse_pages;
mod pages;
mod peers;
mod restore_page;
mod runs_pages;
mod server;

use crate::config::Config;
use anyhow::Result;
use routes::{Access, Route};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState(pub Arc<Shared>);

pub struct Shared {
    pub config: Arc<Config>,
    /// Set when the server (and the daemon) stop.
    pub stop: Arc<AtomicBool>,
    pub auth: auth::Auth,
    /// Open repositories with their indexes loaded, shared by requests.
    pub repos: crate::ops::repos::Handles,
    /// Running and queued operations, their live progress, and how to start new ones.
    pub jobs: crate::ops::jobs::Jobs,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Every route of the server: pages, API, assets.
pub fn all_routes() -> Vec<Route> {
    let mut r = Vec::new();
    r.push(Route::api(
        "GET",
        "/api/openapi.json",
        Access::Public,
        "This document: every route of the API and pages",
        axum::routing::get(openapi),
    ));
    r.push(Route::api(
        "GET",
        "/healthz",
        Access::Public,
        "Liveness: answers ok",
        axum::routing::get(|| async { "ok\n" }),
    ));
    r.extend(auth::routes());
    r.push(crate::metrics::web_route());
    r.extend(pages::routes());
    r.extend(api_runs::routes());
    r.extend(runs_pages::routes());
    r.extend(api_browse::routes());
    r.extend(api_data::routes());
    r.extend(api_config::routes());
    r
}

async fn openapi() -> axum::Json<serde_json::Value> {
    axum::Json(routes::openapi(&all_routes()))
}

/// The router of `state`: every route of [`all_routes`] behind its access check.
pub fn router(state: AppState) -> axum::Router {
    let mut router = axum::Router::new();
    for r in all_routes() {
        let guarded = r.handler.route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), r.access, r.page),
            auth::guard,
        ));
        router = router.route(r.path, guarded);
    }
    router
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "not found\n") })
        .with_state(state)
}

/// Starts the web server of `config.settings.web` in a thread of its own, until `stop`
/// is set. `jobs` is how triggered operations run: the daemon's queues, or child
/// processes under `cairn web`. Fails at once if the address cannot be bound or the TLS
/// files cannot be read.
pub fn serve(
    config: Arc<Config>,
    jobs: crate::ops::jobs::Jobs,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    use anyhow::Context;
    let web = config
        .settings
        .web
        .clone()
        .context("no [settings.web] in the config: add one to serve the web UI")?;
    let state = AppState(Arc::new(Shared {
        auth: auth::Auth::new(&web)?,
        repos: crate::ops::repos::Handles::new(config.clone()),
        config,
        stop: stop.clone(),
        jobs,
    }));
    server::start(&web, router(state), stop)
}
