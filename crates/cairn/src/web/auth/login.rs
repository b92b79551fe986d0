//! Login and logout (API and form), the login page, password hashing and
//! `cairn web hash-password`.

use super::*;

/// The argon2id PHC string of `password` (argon2 defaults: m=19456 KiB, t=2, p=1, the
/// OWASP recommendation).
pub fn hash_password(password: &[u8]) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// Whether `password` matches the PHC string `phc`; an error when `phc` is not one.
pub fn verify_password(phc: &str, password: &[u8]) -> Result<bool> {
    let parsed = PasswordHash::new(phc.trim())
        .map_err(|e| anyhow::anyhow!("not an argon2 PHC hash string ({e})"))?;
    Ok(argon2::Argon2::default()
        .verify_password(password, &parsed)
        .is_ok())
}

pub(super) fn parse_role(s: &str) -> Option<Role> {
    match s {
        "viewer" => Some(Role::Viewer),
        "admin" => Some(Role::Admin),
        _ => None,
    }
}

pub(super) fn role_name(r: Role) -> &'static str {
    match r {
        Role::Viewer => "viewer",
        Role::Admin => "admin",
    }
}

impl Auth {
    /// Checks `password` for `user` (blocking: argon2 and a file read). Returns the role
    /// on success. Unknown users, users without a readable hash file and wrong passwords
    /// all fail the same way, after the same work.
    pub fn check_password(&self, user: &str, password: &str) -> Option<Role> {
        let Some(u) = self.users.get(user) else {
            let _ = verify_password(&self.dummy_hash, password.as_bytes());
            return None;
        };
        let phc = match &u.password_hash_file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!(
                        "web: login of {user}: cannot read password-hash-file {}: {e}",
                        path.display()
                    );
                    None
                }
            },
            None => {
                eprintln!("web: login of {user}: the user has no password-hash-file");
                None
            }
        };
        let Some(phc) = phc else {
            let _ = verify_password(&self.dummy_hash, password.as_bytes());
            return None;
        };
        match verify_password(&phc, password.as_bytes()) {
            Ok(true) => Some(u.role),
            Ok(false) => None,
            Err(e) => {
                if let Some(path) = &u.password_hash_file {
                    eprintln!(
                        "web: login of {user}: {} holds no valid hash: {e} (write one with `cairn web hash-password`)",
                        path.display()
                    );
                }
                let _ = verify_password(&self.dummy_hash, password.as_bytes());
                None
            }
        }
    }
}

pub fn routes() -> Vec<Route> {
    use axum::routing::{get, post};
    vec![
        Route::api(
            "POST",
            "/api/login",
            Access::Public,
            "Log in with JSON {\"username\", \"password\"}: sets the session cookie, answers {\"user\", \"role\", \"csrf\"}",
            post(api_login),
        ),
        Route::api(
            "POST",
            "/api/logout",
            Access::Public,
            "End the session (CSRF token required) and remove the cookie",
            post(api_logout),
        ),
        Route::api(
            "GET",
            "/api/session",
            Access::Viewer,
            "The caller: {\"user\", \"role\", \"csrf\"}",
            get(api_session),
        ),
        Route::page(
            "/login",
            Access::Public,
            "The login page",
            get(login_page),
        )
        .with_query(&[("next", "local path to go to after logging in")]),
        Route::api(
            "POST",
            "/login",
            Access::Public,
            "The login form: sets the session cookie and redirects to `next`",
            post(login_form),
        ),
        Route::api(
            "POST",
            "/logout",
            Access::Public,
            "The logout form: ends the session, redirects to the login page",
            post(logout_form),
        ),
    ]
}

pub(super) fn retry_after(wait: Duration) -> (HeaderName, String) {
    (header::RETRY_AFTER, (wait.as_secs() + 1).to_string())
}

pub(super) fn set_cookie(value: String) -> (HeaderName, HeaderValue) {
    (
        header::SET_COOKIE,
        HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("")),
    )
}

pub(super) async fn api_login(
    State(state): State<AppState>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    #[derive(serde::Deserialize)]
    struct Login {
        username: String,
        password: String,
    }
    let Ok(req) = serde_json::from_slice::<Login>(&body) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            false,
            "expected JSON {\"username\": \"...\", \"password\": \"...\"}",
            "send Content-Type: application/json",
        );
    };
    let peer = connect.map(|c| c.0 .0.ip());
    match login(&state, &headers, peer, &req.username, &req.password).await {
        Ok((id, caller)) => (
            [set_cookie(state.auth.cookie(&id))],
            axum::Json(serde_json::json!({
                "user": caller.user, "role": role_name(caller.role), "csrf": caller.csrf,
            })),
        )
            .into_response(),
        Err(LoginError::Wrong) => refuse(
            StatusCode::UNAUTHORIZED,
            false,
            "wrong user name or password",
            "after 5 failures in 5 minutes logins wait",
        ),
        Err(LoginError::Limited(wait)) => (
            [retry_after(wait)],
            refuse(
                StatusCode::TOO_MANY_REQUESTS,
                false,
                "too many failed logins",
                &format!("try again in {} s", wait.as_secs() + 1),
            ),
        )
            .into_response(),
        Err(LoginError::Internal) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            false,
            "the login failed inside the server",
            "see the server's log",
        ),
    }
}

pub(super) async fn api_logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        state.auth.end_session(&id);
    }
    (
        [set_cookie(state.auth.cookie_removal())],
        axum::Json(serde_json::json!({"ok": true})),
    )
        .into_response()
}

pub(super) async fn api_session(axum::Extension(caller): axum::Extension<Caller>) -> Response {
    axum::Json(serde_json::json!({
        "user": caller.user, "role": role_name(caller.role), "csrf": caller.csrf,
    }))
    .into_response()
}

/// `next` if it is a path on this server (never `//host` or a scheme), else `/`.
pub fn local_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control()) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

pub(super) fn login_html(next: &str, message: Option<&str>, caller: Option<&Caller>) -> String {
    let message = message
        .map(|m| {
            format!(
                r#"<p class="error" id="login-error">{}</p>"#,
                layout::esc(m)
            )
        })
        .unwrap_or_default();
    let csrf = caller
        .map(|c| {
            format!(
                r#"<input type="hidden" name="csrf" value="{}">"#,
                layout::esc(&c.csrf)
            )
        })
        .unwrap_or_default();
    format!(
        r#"<h1>Log in</h1>{message}<form method="post" action="/login" class="login">{csrf}<input type="hidden" name="next" value="{next}"><label>User <input name="username" id="username" autocomplete="username" required autofocus></label><label>Password <input name="password" id="password" type="password" autocomplete="current-password" required></label><button type="submit" id="login">Log in</button></form>"#,
        next = layout::esc(next),
    )
}

pub(super) async fn login_page(
    caller: Option<axum::Extension<Caller>>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let next = local_next(q.get("next").map(String::as_str));
    let caller = caller.map(|c| c.0);
    let body = login_html(&next, None, caller.as_ref());
    layout::page(
        "Log in",
        caller.as_ref().map(|c| c.viewer()).as_ref(),
        &body,
    )
    .into_response()
}

pub(super) async fn login_form(
    State(state): State<AppState>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let field = |name| form_field(&body, name).unwrap_or_default();
    let next = local_next(form_field(&body, "next").as_deref());
    let peer = connect.map(|c| c.0 .0.ip());
    let (status, message, wait) = match login(
        &state,
        &headers,
        peer,
        &field("username"),
        &field("password"),
    )
    .await
    {
        Ok((id, _)) => {
            return (
                StatusCode::SEE_OTHER,
                [
                    set_cookie(state.auth.cookie(&id)),
                    (
                        header::LOCATION,
                        HeaderValue::from_str(&next).unwrap_or(HeaderValue::from_static("/")),
                    ),
                ],
            )
                .into_response()
        }
        Err(LoginError::Wrong) => (
            StatusCode::UNAUTHORIZED,
            "Wrong user name or password.".to_string(),
            None,
        ),
        Err(LoginError::Limited(w)) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed logins: try again in {} s.",
                w.as_secs() + 1
            ),
            Some(w),
        ),
        Err(LoginError::Internal) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "The login failed inside the server; see its log.".to_string(),
            None,
        ),
    };
    let page = layout::page("Log in", None, &login_html(&next, Some(&message), None));
    let mut resp = (status, page).into_response();
    if let Some(w) = wait {
        let (k, v) = retry_after(w);
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

pub(super) async fn logout_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        state.auth.end_session(&id);
    }
    (
        StatusCode::SEE_OTHER,
        [
            set_cookie(state.auth.cookie_removal()),
            (header::LOCATION, HeaderValue::from_static("/login")),
        ],
    )
        .into_response()
}

/// `cairn web hash-password`: a password on stdin (not echoed on a terminal), its
/// argon2id hash on stdout.
pub fn hash_password_command() -> Result<u8> {
    let password = read_password_line()?;
    if password.is_empty() {
        anyhow::bail!("the password is empty: type one (or pipe it) on standard input");
    }
    println!("{}", hash_password(password.as_bytes())?);
    Ok(0)
}

/// One line of standard input without its line end; echo off when it is a terminal.
pub(super) fn read_password_line() -> Result<String> {
    use nix::sys::termios;
    use std::io::BufRead;
    let stdin = std::io::stdin();
    let saved = termios::tcgetattr(&stdin).ok();
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_flags.remove(termios::LocalFlags::ECHO);
        quiet.local_flags.insert(termios::LocalFlags::ECHONL);
        termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &quiet)
            .context("cannot turn off echo on the terminal")?;
        // The prompt only once echo is off: what is typed after it is never shown.
        eprint!("Password: ");
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = &saved {
        let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, saved);
    }
    read.context("cannot read the password from standard input")?;
    if let Some(l) = line.strip_suffix('\n') {
        line.truncate(l.len());
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(line)
}
