//! The config, read-only: `GET /api/config` (the JSON of `cairn config show --json`) and
//! the `/config` page. Both show the config this server loaded at its start, with secrets
//! redacted by [`crate::ops::config::redacted`] (what is a secret is decided there, once).
//! Nothing here edits the config: it lives in files (in git), checked by `cairn config
//! check`.

use super::auth::Caller;
use super::layout::{self, esc};
use super::routes::{Access, Route};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::Value;

pub fn routes() -> Vec<Route> {
    vec![
        Route::api(
            "GET",
            "/api/config",
            Access::Viewer,
            "The merged config (every file, main first in `files`) with secrets redacted",
            axum::routing::get(api_config),
        ),
        Route::page(
            "/config",
            Access::Viewer,
            "The merged config, read-only, secrets redacted",
            axum::routing::get(config_page),
        ),
    ]
}

/// The redacted config as JSON, or why it cannot be shown.
fn redacted_json(state: &AppState) -> Result<Value, String> {
    serde_json::to_value(crate::ops::config::redacted(&state.config))
        .map_err(|e| format!("cannot serialize the config: {e}"))
}

async fn api_config(State(state): State<AppState>) -> Response {
    match redacted_json(&state) {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => {
            eprintln!("web: config: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(serde_json::json!({
                    "error": "cannot show the config",
                    "hint": "run `cairn config show` on the server to see the problem",
                })),
            )
                .into_response()
        }
    }
}

async fn config_page(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let viewer = caller.viewer();
    let v = match redacted_json(&state) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("web: config: {e}");
            return layout::error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(&viewer),
                "Config",
                "The config cannot be shown; run `cairn config show` on the server to see why.",
            );
        }
    };
    layout::page("Config", Some(&viewer), &render(&v)).into_response()
}

/// The page body: a note, the files, then settings, repositories, sources and plans, one
/// section each, every entry a table of its keys.
fn render(v: &Value) -> String {
    let mut b = String::from("<h1>Config</h1>");
    b.push_str(
        r#"<p class="notice" id="config-note">Read-only. The config lives in git: edit the files, then run <code>cairn config check</code> (and restart <code>cairn daemon</code> / <code>cairn web</code> to load it). Shown as loaded when this server started; secrets are <code>&lt;redacted&gt;</code>.</p>"#,
    );
    b.push_str(r#"<h2 id="files">Files</h2><ul class="mono">"#);
    for f in v["files"].as_array().into_iter().flatten() {
        b.push_str(&format!("<li>{}</li>", esc(&scalar(f))));
    }
    b.push_str("</ul>");
    b.push_str(r#"<section id="settings"><h2>Settings</h2>"#);
    b.push_str(&table(&v["settings"]));
    b.push_str("</section>");
    for (key, title) in [
        ("repositories", "Repositories"),
        ("sources", "Sources"),
        ("plans", "Plans"),
    ] {
        b.push_str(&format!(r#"<section id="{key}"><h2>{title}</h2>"#));
        let entries = v[key].as_object();
        if entries.is_none_or(|m| m.is_empty()) {
            b.push_str(r#"<p class="muted">none</p>"#);
        }
        for (name, entry) in entries.into_iter().flatten() {
            // The heading is the name.
            let mut entry = entry.clone();
            if let Some(m) = entry.as_object_mut() {
                m.remove("name");
            }
            b.push_str(&format!(
                r#"<h3 id="{key}-{id}">{name}</h3>{table}"#,
                id = esc(&layout::url(name)),
                name = esc(name),
                table = table(&entry),
            ));
        }
        b.push_str("</section>");
    }
    b
}

/// An object as a two-column table of its non-empty keys; anything else as a value.
fn table(v: &Value) -> String {
    let Some(m) = v.as_object() else {
        return value(v);
    };
    let mut rows = String::new();
    for (k, x) in m {
        if is_empty(x) {
            continue;
        }
        rows.push_str(&format!(
            r#"<tr><th>{}</th><td>{}</td></tr>"#,
            esc(k),
            value(x)
        ));
    }
    if rows.is_empty() {
        return r#"<p class="muted">defaults</p>"#.into();
    }
    format!(r#"<div class="scroll"><table class="kv">{rows}</table></div>"#)
}

fn value(v: &Value) -> String {
    match v {
        Value::Object(_) => table(v),
        Value::Array(items) => {
            // Pairs (a dump's path and command, a hook list's label) read best on a line.
            let lines: Vec<String> = items
                .iter()
                .map(|x| match x {
                    Value::Array(parts) if parts.iter().all(|p| !p.is_object()) => parts
                        .iter()
                        .map(|p| format!("<code>{}</code>", esc(&scalar(p))))
                        .collect::<Vec<_>>()
                        .join(" "),
                    Value::Array(parts) => parts.iter().map(value).collect::<Vec<_>>().join(" "),
                    other => value(other),
                })
                .collect();
            format!("<ul><li>{}</li></ul>", lines.join("</li><li>"))
        }
        other => format!("<code>{}</code>", esc(&scalar(other))),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_escapes_names_and_values_and_skips_empty_keys() {
        let v = serde_json::json!({
            "files": ["/etc/cairn/<x>.toml"],
            "settings": {"state-dir": "/var/lib/cairn", "host": null},
            "repositories": {"nas": {"name": "nas", "url": "sftp:nas:/srv", "env": {"K": "<redacted>"}, "options": {}}},
            "sources": {},
            "plans": {"nightly": {"hooks": [["plan", {"before": ["echo <b>"]}]], "tags": []}},
        });
        let html = render(&v);
        assert!(html.contains("/etc/cairn/&lt;x&gt;.toml"));
        assert!(html.contains("<code>&lt;redacted&gt;</code>"));
        assert!(html.contains("<code>echo &lt;b&gt;</code>"));
        assert!(!html.contains("<b>"));
        assert!(!html.contains(">host<"), "null keys are skipped");
        assert!(!html.contains(">options<"), "empty keys are skipped");
        assert!(html.contains(r#"id="plans-nightly""#));
        assert!(!html.contains(">name<"), "an entry's name is its heading");
        assert!(html.contains(r#"<section id="sources"><h2>Sources</h2><p class="muted">none</p>"#));
        assert!(html.contains("cairn config check"));
    }
}
