//! The route table: every page and API route with who may call it. The router and
//! `GET /api/openapi.json` are both built from this one table, so a route cannot exist
//! without being described, nor escape the access check (the tests walk the document and
//! call every route without a session).

use super::AppState;
use axum::routing::MethodRouter;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Anyone: the login page and API, the OpenAPI document, static assets, health.
    Public,
    /// A logged-in user of any role: see, browse, download.
    Viewer,
    /// Role `admin`: restore to a path on the server, trigger runs.
    Admin,
}

/// One route. `path` uses axum's syntax (`/api/snapshots/{id}`); `method` is the HTTP
/// method of `handler` (one method per entry, so the OpenAPI document is exact).
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
    /// Query parameters the route reads (name, description), for the document.
    pub query: &'static [(&'static str, &'static str)],
    /// Whether the route is a page (HTML; a caller without a session is sent to the
    /// login page) rather than an API route (JSON; 401).
    pub page: bool,
    pub handler: MethodRouter<AppState>,
}

impl Route {
    pub fn api(
        method: &'static str,
        path: &'static str,
        access: Access,
        summary: &'static str,
        handler: MethodRouter<AppState>,
    ) -> Route {
        Route {
            method,
            path,
            access,
            summary,
            query: &[],
            page: false,
            handler,
        }
    }

    pub fn page(
        path: &'static str,
        access: Access,
        summary: &'static str,
        handler: MethodRouter<AppState>,
    ) -> Route {
        Route {
            method: "GET",
            path,
            access,
            summary,
            query: &[],
            page: true,
            handler,
        }
    }

    pub fn with_query(mut self, query: &'static [(&'static str, &'static str)]) -> Route {
        self.query = query;
        self
    }
}

/// The OpenAPI 3.1 document of `routes`.
pub fn openapi(routes: &[Route]) -> serde_json::Value {
    let mut paths = serde_json::Map::new();
    for r in routes {
        let mut params: Vec<serde_json::Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| {
                let name = name.trim_start_matches('*');
                serde_json::json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
            })
            .collect();
        params.extend(r.query.iter().map(|(name, desc)| {
            serde_json::json!({"name": name, "in": "query", "required": false, "description": desc, "schema": {"type": "string"}})
        }));
        let security = match r.access {
            Access::Public => serde_json::json!([]),
            _ => serde_json::json!([{"session": []}, {"bearer": []}]),
        };
        let op = serde_json::json!({
            "summary": r.summary,
            "parameters": params,
            "security": security,
            "x-cairn-access": r.access,
            "x-cairn-page": r.page,
            "responses": {"200": {"description": "OK"}, "401": {"description": "no session"}, "403": {"description": "role not allowed"}},
        });
        let path = paths
            .entry(r.path.replace("{*", "{"))
            .or_insert_with(|| serde_json::json!({}));
        if let Some(obj) = path.as_object_mut() {
            obj.insert(r.method.to_ascii_lowercase(), op);
        }
    }
    serde_json::json!({
        "openapi": "3.1.0",
        "info": {"title": "cairn", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": super::auth::SESSION_COOKIE},
            "bearer": {"type": "http", "scheme": "bearer"},
        }},
        "paths": paths,
    })
}
