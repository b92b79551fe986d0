//! The access check every route passes: who is calling, may they, and does a
//! state-changing request carry the caller's CSRF token.

use super::*;

/// The login routes: no CSRF token needed even with a live session.
pub(super) const LOGIN_PATHS: [&str; 2] = ["/api/login", "/login"];

/// How a request identified itself.
pub(super) enum Ident {
    None,
    /// It tried and failed (wrong token, unknown proxy user): the reason.
    Refused(String),
    Caller(Caller),
}

impl Auth {
    /// Who `headers` (from `peer`) say the caller is: a bearer token, then a trusted
    /// proxy's header, then the session cookie.
    pub(super) fn identify(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Ident {
        if let Some(v) = headers.get(header::AUTHORIZATION) {
            let token = v
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer ").or(v.strip_prefix("bearer ")))
                .map(str::trim);
            return match token.and_then(|t| self.bearer(t)) {
                Some(c) => Ident::Caller(c),
                None => Ident::Refused("the bearer token is not valid".into()),
            };
        }
        if self.trusted(peer) {
            if let Some(v) = headers.get(&self.proxy_header) {
                let name = v.to_str().unwrap_or("").trim();
                return match self.proxy_user(name) {
                    Some(c) => Ident::Caller(c),
                    None => Ident::Refused(format!(
                        "the proxy's user {name:?} is not a user of [settings.web.users]"
                    )),
                };
            }
        }
        match session_id(headers).and_then(|id| self.session(&id)) {
            Some(c) => Ident::Caller(c),
            None => Ident::None,
        }
    }
}

/// Decodes one `application/x-www-form-urlencoded` component.
pub(super) fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of field `name` of a url-encoded form.
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (form_decode(k) == name).then(|| form_decode(v))
    })
}

/// An error for the API (JSON) or a page (HTML).
pub(super) fn refuse(status: StatusCode, html: bool, error: &str, hint: &str) -> Response {
    if html {
        let body = format!(
            "<h1>{}</h1><p>{}</p><p class=\"hint\">{}</p>",
            layout::esc(status.canonical_reason().unwrap_or("Refused")),
            layout::esc(error),
            layout::esc(hint)
        );
        (status, layout::page("Refused", None, &body)).into_response()
    } else {
        (
            status,
            axum::Json(serde_json::json!({"error": error, "hint": hint})),
        )
            .into_response()
    }
}

pub(super) fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// The access check of every route: refuses what `access` does not allow (401 for the API,
/// a redirect to the login page for pages; 403 for a role not allowed or a state-changing
/// request without the caller's CSRF token), and puts the [`Caller`] in the request's
/// extensions.
pub async fn guard(
    State((state, access, page)): State<(AppState, Access, bool)>,
    request: Request,
    next: Next,
) -> Response {
    let with_body = request.headers().contains_key(header::CONTENT_LENGTH)
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    match check(&state, access, page, request).await {
        Ok(request) => next.run(request).await,
        Err(mut refused) => {
            // The request's body may be unread: close the connection after the answer
            // rather than leave the client a kept-alive connection that hyper may close.
            if with_body {
                refused
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            refused
        }
    }
}

/// The access check of [`guard`]: the request to hand on (with its [`Caller`]), or the
/// refusal.
pub(super) async fn check(
    state: &AppState,
    access: Access,
    page: bool,
    request: Request,
) -> Result<Request, Response> {
    let peer = peer_of(&request);
    let html = page || wants_html(request.headers());
    let caller = match state.auth.identify(request.headers(), peer) {
        Ident::Caller(c) => c,
        Ident::None | Ident::Refused(_) if access == Access::Public => return Ok(request),
        Ident::None if page => {
            // Back to the page after logging in; a form's POST cannot be replayed as a GET.
            let target = match *request.method() {
                Method::GET | Method::HEAD => request
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/"),
                _ => "/",
            };
            let location = format!("/login?next={}", layout::url(target));
            return Err((StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response());
        }
        Ident::None => {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                false,
                "log in first",
                "POST /api/login with {\"username\", \"password\"}, or send Authorization: Bearer TOKEN",
            ))
        }
        Ident::Refused(why) => {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                html,
                &why,
                "check the token (tokens-file) or the proxy's user header",
            ))
        }
    };
    if access == Access::Admin && caller.role != Role::Admin {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            html,
            &format!("{} is a viewer: this needs the admin role", caller.user),
            "ask an admin, or log in as one",
        ));
    }
    let mut request = request;
    // Logging in again while logged in needs no token: the session cookie is SameSite=Strict,
    // so another site's form never carries it, and scripts keep their cookie jars simple.
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) || LOGIN_PATHS.contains(&request.uri().path());
    if !safe && !caller.csrf.is_empty() {
        let (ok, req) = carries_csrf(request, &caller.csrf).await?;
        if !ok {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                html,
                "missing or wrong CSRF token",
                "send the session's token (GET /api/session) as X-CSRF-Token, or reload the page",
            ));
        }
        request = req;
    }
    request.extensions_mut().insert(caller);
    Ok(request)
}

/// Whether `request` carries `csrf` (header, or the `csrf` field of a url-encoded form
/// body, which is read and handed on).
pub(super) async fn carries_csrf(
    request: Request,
    csrf: &str,
) -> Result<(bool, Request), Response> {
    if let Some(v) = request.headers().get("x-csrf-token") {
        let ok = same_secret(v.as_bytes(), csrf.as_bytes());
        return Ok((ok, request));
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Ok((false, request));
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return Err(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                true,
                "the form is too large",
                "forms are limited to 64 KiB",
            ))
        }
    };
    let ok = form_field(&bytes, "csrf").is_some_and(|v| same_secret(v.as_bytes(), csrf.as_bytes()));
    Ok((ok, Request::from_parts(parts, Body::from(bytes))))
}
