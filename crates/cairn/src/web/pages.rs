//! The static assets of the UI (one stylesheet, one small script, the icon), embedded in
//! the binary so `cargo build` alone produces the whole UI. Served under `/assets/{file}`
//! without a session (the login page needs them), revalidated by ETag.
//!
//! Pages themselves live with their features (runs, browse, data, config, login).

use super::routes::{Access, Route};
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The embedded files: name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "cairn.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/cairn.css"),
    ),
    (
        "cairn.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/cairn.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("assets/favicon.svg"),
    ),
];

pub fn routes() -> Vec<Route> {
    vec![Route::api(
        "GET",
        "/assets/{file}",
        Access::Public,
        "Static assets of the UI (cairn.css, cairn.js, favicon.svg), embedded in the binary",
        axum::routing::get(asset),
    )]
}

/// The embedded asset `name`, if there is one.
pub fn lookup(name: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, ty, bytes)| (*ty, *bytes))
}

/// The strong ETag of an asset's bytes.
fn etag(bytes: &[u8]) -> String {
    format!("\"{:08x}-{:x}\"", crc32fast::hash(bytes), bytes.len())
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some((content_type, bytes)) = lookup(&file) else {
        return (StatusCode::NOT_FOUND, "no such asset\n").into_response();
    };
    let tag = etag(bytes);
    let cache = [
        (header::ETAG, tag.clone()),
        // Revalidate each time: cheap (304), and an upgraded binary is seen at once.
        (header::CACHE_CONTROL, "no-cache".to_string()),
    ];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        cache,
        bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_layout_links_is_embedded() {
        let html = super::super::layout::page("t", None, "").0;
        for name in ["cairn.css", "cairn.js", "favicon.svg"] {
            assert!(
                html.contains(&format!("/assets/{name}")),
                "layout does not link {name}"
            );
            let (_, bytes) = lookup(name).expect("embedded");
            assert!(!bytes.is_empty());
        }
        assert!(lookup("../Cargo.toml").is_none());
        assert!(lookup("nope.css").is_none());
    }

    #[test]
    fn etag_changes_with_the_bytes() {
        assert_ne!(etag(b"a{}"), etag(b"b{}"));
        assert_eq!(etag(b"x"), etag(b"x"));
    }
}
