//! The web server's access control: login and sessions, the access check of every route
//! (walking the OpenAPI document), CSRF, login rate limiting, bearer tokens, trusted proxy
//! headers, security headers, a session's idle timeout, `cairn web hash-password`. TLS and
//! connections: `web_tls.rs`.

use crate::webkit::{hash_password, Reply, WebServer};
use crate::Env;

pub(crate) const USERS: &[(&str, &str, &str)] = &[
    ("alice", "alice's long password", "admin"),
    ("victor", "victor's long password", "viewer"),
];

fn cookie_of(r: &Reply) -> String {
    r.all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("cairn_session="))
        .unwrap_or_else(|| panic!("no session cookie in {:?}", r.headers))
        .to_string()
}

#[test]
fn login_sets_a_strict_http_only_cookie_and_logout_ends_the_session() {
    let env = Env::new();
    let server = WebServer::start(&env, "", USERS);

    // Wrong password and unknown user: the same refusal.
    let wrong = server.try_login("alice", "not it");
    let unknown = server.try_login("mallory", "not it");
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    assert_eq!(unknown.status, 401, "{}", unknown.text());
    assert_eq!(wrong.body, unknown.body);
    assert!(wrong.all("set-cookie").is_empty());

    let r = server.try_login("alice", "alice's long password");
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = cookie_of(&r);
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "Secure without TLS: {cookie}");
    let id = cookie
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("cairn_session="))
        .unwrap();
    assert_eq!(id.len(), 64, "a 256-bit id in hex: {id}");
    let v = r.json();
    assert_eq!(v["user"], "alice");
    assert_eq!(v["role"], "admin");

    let alice = server.login("alice", "alice's long password");
    let s = alice.get("/api/session");
    assert_eq!(s.status, 200, "{}", s.text());
    assert_eq!(s.json()["user"], "alice");
    assert_eq!(s.json()["csrf"], alice.csrf.as_str());
    let victor = server.login("victor", "victor's long password");
    assert_eq!(victor.get("/api/session").json()["role"], "viewer");
    assert_ne!(alice.cookie, victor.cookie);
    assert_ne!(alice.csrf, victor.csrf);

    // Logging in again with a live session needs no CSRF token.
    let again = alice.request(
        "POST",
        "/api/login",
        &[("Content-Type", "application/json")],
        Some(br#"{"username": "alice", "password": "alice's long password"}"#),
    );
    assert_eq!(again.status, 200, "{}", again.text());

    // Logout needs the CSRF token, then ends the session and removes the cookie.
    let no_token = alice.request("POST", "/api/logout", &[], Some(b""));
    assert_eq!(no_token.status, 403, "{}", no_token.text());
    assert_eq!(alice.get("/api/session").status, 200);
    let out = alice.post_json("/api/logout", &serde_json::json!({}));
    assert_eq!(out.status, 200, "{}", out.text());
    assert!(cookie_of(&out).contains("Max-Age=0"));
    assert_eq!(alice.get("/api/session").status, 401);
    // The other session lives on.
    assert_eq!(victor.get("/api/session").status, 200);

    // The form logout.
    let out = victor.post_form("/logout", &[]);
    assert_eq!(out.status, 303, "{}", out.text());
    assert_eq!(out.header("location"), Some("/login"));
    assert_eq!(victor.get("/api/session").status, 401);
}

#[test]
fn the_login_form_redirects_only_to_local_paths() {
    let env = Env::new();
    let server = WebServer::start(&env, "", USERS);
    let anon = server.anon();
    let page = anon.get("/login?next=%2Fsnapshots");
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains(r#"action="/login""#),
        "{}",
        page.text()
    );
    assert!(
        page.text().contains(r#"value="/snapshots""#),
        "{}",
        page.text()
    );
    for (next, expected) in [
        ("/snapshots?plan=a", "/snapshots?plan=a"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
    ] {
        let r = anon.post_form(
            "/login",
            &[
                ("username", "victor"),
                ("password", "victor's long password"),
                ("next", next),
            ],
        );
        assert_eq!(r.status, 303, "{next}: {}", r.text());
        assert_eq!(r.header("location"), Some(expected), "{next}");
        let cookie = cookie_of(&r);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    }
    let bad = anon.post_form(
        "/login",
        &[("username", "victor"), ("password", "nope"), ("next", "/")],
    );
    assert_eq!(bad.status, 401);
    assert!(
        bad.text().contains("Wrong user name or password"),
        "{}",
        bad.text()
    );
    assert!(bad.all("set-cookie").is_empty());
}

#[test]
fn a_changed_password_hash_file_applies_without_a_restart() {
    let env = Env::new();
    let server = WebServer::start(&env, "", USERS);
    server.login("victor", "victor's long password");
    std::fs::write(
        env.path("web-victor.hash"),
        hash_password("a brand new password"),
    )
    .unwrap();
    assert_eq!(
        server.try_login("victor", "victor's long password").status,
        401
    );
    server.login("victor", "a brand new password");
    // A file that holds no hash refuses the login and says why in the log.
    std::fs::write(env.path("web-victor.hash"), "plaintext\n").unwrap();
    assert_eq!(server.try_login("victor", "plaintext").status, 401);
    assert!(
        server.log().contains("holds no valid hash"),
        "{}",
        server.log()
    );
}

/// Every route of the OpenAPI document that is not public, with `{param}`s filled in.
fn guarded_routes(server: &WebServer) -> Vec<(String, String, String, bool)> {
    let doc = server.anon().get("/api/openapi.json");
    assert_eq!(doc.status, 200, "{}", doc.text());
    let doc = doc.json();
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            let access = op["x-cairn-access"].as_str().expect("x-cairn-access");
            if access == "public" {
                continue;
            }
            let filled: Vec<String> = path
                .split('/')
                .map(|seg| {
                    if seg.starts_with('{') && seg.ends_with('}') {
                        "dummy".to_string()
                    } else {
                        seg.to_string()
                    }
                })
                .collect();
            out.push((
                method.to_ascii_uppercase(),
                filled.join("/"),
                access.to_string(),
                op["x-cairn-page"].as_bool().expect("x-cairn-page"),
            ));
        }
    }
    out
}

#[test]
fn every_guarded_route_is_refused_without_a_session_and_admin_routes_to_viewers() {
    let env = Env::new();
    let server = WebServer::start(&env, "", USERS);
    let routes = guarded_routes(&server);
    for must in ["/api/session", "/metrics"] {
        assert!(
            routes.iter().any(|(_, p, _, _)| p == must),
            "{must} is not a guarded route of the document"
        );
    }
    let mut forged = server.anon();
    forged.cookie = format!("cairn_session={}", "ab".repeat(32));
    forged.csrf = "cd".repeat(32);
    let victor = server.login("victor", "victor's long password");
    for (method, path, access, page) in &routes {
        for (who, client) in [("nobody", server.anon()), ("forged cookie", forged.clone())] {
            let r = client.request(
                method,
                path,
                &[
                    ("Content-Type", "application/json"),
                    ("X-CSRF-Token", &client.csrf),
                ],
                (method != "GET").then_some(b"{}".as_slice()),
            );
            if *page {
                assert_eq!(r.status, 303, "{who}: {method} {path}: {}", r.text());
                let to = r.header("location").unwrap_or_default();
                // Back to the page after logging in; a POST's target cannot be a GET.
                let back = if method == "GET" {
                    path.replace('/', "%2F")
                } else {
                    "%2F".to_string()
                };
                assert_eq!(to, format!("/login?next={back}"), "{who}: {method} {path}");
            } else {
                assert_eq!(r.status, 401, "{who}: {method} {path}: {}", r.text());
                assert_eq!(r.json()["error"], "log in first", "{method} {path}");
            }
        }
        if access == "admin" {
            let r = victor.request(
                method,
                path,
                &[
                    ("Content-Type", "application/json"),
                    ("X-CSRF-Token", &victor.csrf),
                ],
                (method != "GET").then_some(b"{}".as_slice()),
            );
            assert_eq!(r.status, 403, "viewer: {method} {path}: {}", r.text());
        }
    }
    // The redirect keeps where the caller wanted to go.
    if let Some((_, path, _, _)) = routes.iter().find(|(m, _, _, page)| *page && m == "GET") {
        let r = server.anon().get(path);
        let to = r.header("location").unwrap_or_default().to_string();
        let back = server.anon().get(&to);
        assert_eq!(back.status, 200);
        assert!(back.text().contains("name=\"next\""), "{}", back.text());
    }
}

#[test]
fn state_changing_requests_need_the_sessions_csrf_token() {
    let env = Env::new();
    let server = WebServer::start(&env, "", USERS);
    let alice = server.login("alice", "alice's long password");
    let other = server.login("victor", "victor's long password");
    let posts: Vec<_> = guarded_routes(&server)
        .into_iter()
        .filter(|(m, _, _, _)| m != "GET")
        .collect();
    for (method, path, _, _) in &posts {
        let json = Some(b"{}".as_slice());
        let none = alice.request(method, path, &[("Content-Type", "application/json")], json);
        assert_eq!(
            none.status,
            403,
            "{method} {path} without a token: {}",
            none.text()
        );
        let wrong = alice.request(
            method,
            path,
            &[
                ("Content-Type", "application/json"),
                ("X-CSRF-Token", &other.csrf),
            ],
            json,
        );
        assert_eq!(
            wrong.status, 403,
            "{method} {path} with another session's token"
        );
        let form = alice.request(
            method,
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(b"csrf=0000&x=1"),
        );
        assert_eq!(form.status, 403, "{method} {path} with a wrong form field");
        let right = alice.request(
            method,
            path,
            &[
                ("Content-Type", "application/json"),
                ("X-CSRF-Token", &alice.csrf),
            ],
            json,
        );
        assert_ne!(
            right.status,
            403,
            "{method} {path} with the token: {}",
            right.text()
        );
        assert_ne!(
            right.status,
            401,
            "{method} {path} with the token: {}",
            right.text()
        );
    }
    // The session's own logout: refused without the token (header or form field), done
    // with it in the form.
    let r = alice.request(
        "POST",
        "/logout",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(format!("csrf={}", other.csrf).as_bytes()),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(alice.get("/api/session").status, 200);
    let r = alice.post_form("/logout", &[("x", "y")]);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(alice.get("/api/session").status, 401);
    // A form larger than the limit is not read.
    let big = format!("csrf={}&pad={}", other.csrf, "x".repeat(100 << 10));
    let r = other.try_request(
        "POST",
        "/logout",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(big.as_bytes()),
    );
    // The server answers 413 and closes without reading the rest: a client still sending
    // may see the broken pipe instead of the answer (as in web_hostile). Either way the
    // session was not logged out.
    if let Ok(r) = r {
        assert_eq!(r.status, 413, "{}", r.text());
    }
    assert_eq!(other.get("/api/session").status, 200);
}

#[test]
fn failed_logins_are_rate_limited_per_user_and_per_address() {
    let env = Env::new();
    // Behind a trusted proxy, the client address is the last of X-Forwarded-For: the test
    // plays clients on several addresses.
    let server = WebServer::start_with(&env, "", USERS, "trusted-proxies = [\"127.0.0.1\"]");
    let login_from = |ip: &str, user: &str, password: &str| {
        server.anon().request(
            "POST",
            "/api/login",
            &[
                ("Content-Type", "application/json"),
                ("X-Forwarded-For", ip),
            ],
            Some(
                serde_json::json!({"username": user, "password": password})
                    .to_string()
                    .as_bytes(),
            ),
        )
    };
    let alice_pw = "alice's long password";
    // A success resets the user's count.
    for i in 0..4 {
        assert_eq!(
            login_from(&format!("10.0.1.{i}"), "alice", "wrong").status,
            401
        );
    }
    assert_eq!(login_from("10.0.1.100", "alice", alice_pw).status, 200);
    for i in 10..14 {
        assert_eq!(
            login_from(&format!("10.0.1.{i}"), "alice", "wrong").status,
            401
        );
    }
    assert_eq!(login_from("10.0.1.101", "alice", alice_pw).status, 200);
    // Per user: five failures from five addresses block the name, even with the right
    // password from a fresh address; other users are not affected.
    for i in 20..25 {
        assert_eq!(
            login_from(&format!("10.0.1.{i}"), "alice", "wrong").status,
            401
        );
    }
    let r = login_from("10.0.1.102", "alice", alice_pw);
    assert_eq!(r.status, 429, "{}", r.text());
    let wait: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((250..=301).contains(&wait), "Retry-After {wait}");
    assert_eq!(
        login_from("10.0.1.102", "victor", "victor's long password").status,
        200
    );
    // Per address: five failures (any names) block the address for every name.
    for i in 0..5 {
        assert_eq!(
            login_from("10.0.2.1", &format!("nobody{i}"), "x").status,
            401
        );
    }
    let r = login_from("10.0.2.1", "victor", "victor's long password");
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        login_from("10.0.2.2", "victor", "victor's long password").status,
        200
    );
    // The form answers the same way.
    let r = server.anon().request(
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Forwarded-For", "10.0.2.1"),
        ],
        Some(b"username=victor&password=victor%27s+long+password&next=%2F"),
    );
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert!(r.text().contains("Too many failed logins"), "{}", r.text());
}

#[test]
fn failed_logins_from_one_client_are_limited_without_a_proxy() {
    let env = Env::new();
    let server = WebServer::start(&env, "", USERS);
    for _ in 0..5 {
        assert_eq!(server.try_login("victor", "wrong").status, 401);
    }
    let r = server.try_login("victor", "victor's long password");
    assert_eq!(r.status, 429, "{}", r.text());
    // Without a trusted proxy, X-Forwarded-For is not believed.
    let r = server.anon().request(
        "POST",
        "/api/login",
        &[
            ("Content-Type", "application/json"),
            ("X-Forwarded-For", "10.9.9.9"),
        ],
        Some(br#"{"username": "alice", "password": "alice's long password"}"#),
    );
    assert_eq!(r.status, 429, "{}", r.text());
}

fn write_tokens(env: &Env, text: &str, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = env.path("tokens");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn bearer_tokens_come_from_a_private_file_that_is_reread_when_it_changes() {
    let env = Env::new();
    let ci = "ci-token-0123456789abcdef";
    let ops = "ops-token-0123456789abcdef";
    let path = write_tokens(
        &env,
        &format!("# scripts\nci viewer {ci}\nops admin {ops}\nshort viewer abc\n"),
        0o600,
    );
    let server = WebServer::start_with(
        &env,
        "",
        USERS,
        &format!(
            "tokens-file = {}",
            crate::webkit::toml_str(&path.to_string_lossy())
        ),
    );
    let anon = server.anon();
    let with = |t: &str, method: &str, p: &str| {
        anon.request(
            method,
            p,
            &[("Authorization", &format!("Bearer {t}"))],
            None,
        )
    };
    let r = with(ci, "GET", "/api/session");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["user"], "ci");
    assert_eq!(r.json()["role"], "viewer");
    assert_eq!(with(ops, "GET", "/api/session").json()["role"], "admin");
    assert_eq!(with(ci, "GET", "/metrics").status, 200);
    for bad in ["ci-token-0123456789abcdeX", "abc", "", ci.split_at(10).0] {
        let r = with(bad, "GET", "/api/session");
        assert_eq!(r.status, 401, "token {bad:?}: {}", r.text());
    }
    assert!(server.log().contains("shorter than"), "{}", server.log());
    // Admin routes: a viewer token is refused; bearer callers need no CSRF token.
    for (method, p, access, _) in guarded_routes(&server) {
        if access == "admin" {
            let r = anon.request(
                &method,
                &p,
                &[
                    ("Authorization", &format!("Bearer {ci}")),
                    ("Content-Type", "application/json"),
                ],
                (method != "GET").then_some(b"{}".as_slice()),
            );
            assert_eq!(r.status, 403, "viewer token: {method} {p}");
        }
        if method != "GET" {
            let r = anon.request(
                &method,
                &p,
                &[
                    ("Authorization", &format!("Bearer {ops}")),
                    ("Content-Type", "application/json"),
                ],
                Some(b"{}"),
            );
            assert!(
                ![401, 403].contains(&r.status),
                "admin token: {method} {p}: {}",
                r.text()
            );
        }
    }
    // A new token works without a restart.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let new = "new-token-0123456789abcdef";
    write_tokens(&env, &format!("ci viewer {ci}\nnew admin {new}\n"), 0o600);
    assert_eq!(with(new, "GET", "/api/session").json()["user"], "new");
    assert_eq!(
        with(ops, "GET", "/api/session").status,
        401,
        "a removed token"
    );
    // A file others may read is not used at all.
    write_tokens(&env, &format!("ci viewer {ci}\n"), 0o644);
    assert_eq!(with(ci, "GET", "/api/session").status, 401);
    assert!(server.log().contains("chmod 600"), "{}", server.log());
    write_tokens(&env, &format!("ci viewer {ci}\n"), 0o600);
    assert_eq!(with(ci, "GET", "/api/session").status, 200);
    // A chmod alone (content untouched) is seen too.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(with(ci, "GET", "/api/session").status, 401);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(with(ci, "GET", "/api/session").status, 200);
    // A removed file: no token, one line in the log however many requests.
    std::fs::remove_file(&path).unwrap();
    for _ in 0..3 {
        assert_eq!(with(ci, "GET", "/api/session").status, 401);
    }
    assert_eq!(
        server.log().matches("cannot read tokens-file").count(),
        1,
        "{}",
        server.log()
    );
}

#[test]
fn a_proxy_user_header_is_believed_only_from_trusted_proxies() {
    let env = Env::new();
    let trusting = WebServer::start_with(&env, "", USERS, "trusted-proxies = [\"127.0.0.1\"]");
    let as_user =
        |s: &WebServer, h: &str, u: &str| s.anon().request("GET", "/api/session", &[(h, u)], None);
    let r = as_user(&trusting, "Remote-User", "victor");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["user"], "victor");
    assert_eq!(r.json()["role"], "viewer", "the role comes from the config");
    assert_eq!(as_user(&trusting, "Remote-User", "mallory").status, 401);
    let alice = as_user(&trusting, "remote-user", "alice").json();
    assert_eq!(alice["role"], "admin");
    // A browser behind the proxy sends its proxy login with every request, so changes
    // need the CSRF token of the page, as with a session.
    let csrf = alice["csrf"].as_str().unwrap().to_string();
    assert_eq!(csrf.len(), 64);
    for (method, path, _, _) in guarded_routes(&trusting) {
        if method == "GET" {
            continue;
        }
        let post = |token: &str| {
            trusting.anon().request(
                &method,
                &path,
                &[
                    ("Remote-User", "alice"),
                    ("Content-Type", "application/json"),
                    ("X-CSRF-Token", token),
                ],
                Some(b"{}"),
            )
        };
        assert_eq!(post("").status, 403, "{method} {path} without a token");
        let r = post(&csrf);
        assert!(
            ![401, 403].contains(&r.status),
            "{method} {path}: {}",
            r.text()
        );
    }
    drop(trusting);

    let env2 = Env::new();
    let other = WebServer::start_with(
        &env2,
        "",
        USERS,
        "trusted-proxies = [\"192.0.2.1\"]\nproxy-user-header = \"X-Auth-User\"",
    );
    assert_eq!(as_user(&other, "X-Auth-User", "alice").status, 401);
    assert_eq!(as_user(&other, "Remote-User", "alice").status, 401);
    let env3 = Env::new();
    let custom = WebServer::start_with(
        &env3,
        "",
        USERS,
        "trusted-proxies = [\"127.0.0.1\"]\nproxy-user-header = \"X-Auth-User\"",
    );
    assert_eq!(
        as_user(&custom, "X-Auth-User", "alice").json()["user"],
        "alice"
    );
    assert_eq!(as_user(&custom, "Remote-User", "alice").status, 401);
}

#[test]
fn responses_carry_the_security_headers() {
    let env = Env::new();
    let server = WebServer::start(&env, "", USERS);
    let victor = server.login("victor", "victor's long password");
    for r in [
        server.anon().get("/login"),
        server.anon().get("/api/openapi.json"),
        server.anon().get("/api/session"),
        server.anon().get("/no/such/page"),
        victor.get("/api/session"),
    ] {
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("referrer-policy"), Some("same-origin"));
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    // A handler's own caching wins.
    let css = server.anon().get("/assets/cairn.css");
    assert_eq!(css.status, 200);
    assert_eq!(css.header("cache-control"), Some("no-cache"));
    assert_eq!(css.header("x-content-type-options"), Some("nosniff"));
    assert!(!server.log().contains("warning"), "{}", server.log());
}

#[test]
fn metrics_are_served_to_logged_in_callers() {
    let env = Env::new();
    let plan = format!(
        "[repositories.nas]\nurl = {}\npassword-file = {}\n[plans.nightly]\nrepository = \"nas\"\npaths = [\"/etc\"]\nmax-age = \"1d\"\n",
        crate::webkit::toml_str(&env.repo().to_string_lossy()),
        crate::webkit::toml_str(&env.path("pw").to_string_lossy()),
    );
    let server = WebServer::start(&env, &plan, USERS);
    assert_eq!(server.anon().get("/metrics").status, 401);
    let r = server
        .login("victor", "victor's long password")
        .get("/metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/plain"));
    assert!(
        r.text().contains("cairn_plan_overdue{plan=\"nightly\"} 1"),
        "{}",
        r.text()
    );
}

#[test]
fn hash_password_prints_an_argon2id_hash_and_refuses_an_empty_password() {
    let a = hash_password("same password");
    let b = hash_password("same password");
    assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
    assert_ne!(a, b, "a fresh salt each time");
    // The output verifies: a server with this hash accepts the password (and only it).
    let env = Env::new();
    let server = WebServer::start(&env, "", &[("ann", "same password", "viewer")]);
    std::fs::write(env.path("web-ann.hash"), &b).unwrap();
    server.login("ann", "same password");
    assert_eq!(server.try_login("ann", "same passwor").status, 401);
    // Empty input is refused.
    for input in ["\n", ""] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["web", "hash-password"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "empty password accepted");
        assert!(out.stdout.is_empty());
        assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));
    }
}

#[test]
fn a_session_ends_after_the_idle_timeout() {
    let env = Env::new();
    let server = WebServer::start_with(&env, "", USERS, "session-timeout = \"2s\"");
    let victor = server.login("victor", "victor's long password");
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(1000));
        assert_eq!(victor.get("/api/session").status, 200, "use keeps it alive");
    }
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(victor.get("/api/session").status, 401);
}

#[test]
fn hash_password_does_not_echo_on_a_terminal() {
    use std::io::{Read, Write};
    // `script` (util-linux) runs the command on a pseudo-terminal.
    let mut child = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("{} web hash-password", env!("CARGO_BIN_EXE_cairn")),
        ])
        .arg("/dev/null")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs the command on a terminal");
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("Password:") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "no prompt: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"typed on a terminal\n").unwrap();
    stdout.read_to_end(&mut seen).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let text = String::from_utf8_lossy(&seen);
    assert!(!text.contains("typed on a terminal"), "echoed: {text}");
    let hash = text
        .split_whitespace()
        .find(|w| w.starts_with("$argon2id$"))
        .unwrap_or_else(|| panic!("no hash: {text}"));
    let env = Env::new();
    let server = WebServer::start(&env, "", &[("tty", "placeholder", "viewer")]);
    std::fs::write(env.path("web-tty.hash"), hash).unwrap();
    server.login("tty", "typed on a terminal");
}
