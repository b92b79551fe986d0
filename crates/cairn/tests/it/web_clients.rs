//! The web server against hostile and broken clients (issue 12): cross-site posts, even to
//! the login; open redirects and session fixation; every method, path variation and
//! traversal on protected routes; bodies above the limit, trickled bodies, floods of event
//! streams and stalled downloads, none of which may starve the server.

use crate::webkit::{form_encode, percent_encode as enc, toml_str, under, Session, WebServer};
use crate::{json, ok, Env};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[test]
fn requests_from_other_sites_are_refused_even_to_the_login() {
    let env = Env::new();
    let server = WebServer::start(&env, "", &[("alice", "alice-secret-pw", "admin")]);
    let anon = server.anon();
    let form = format!(
        "username=alice&password={}&next=%2F",
        form_encode("alice-secret-pw")
    );
    let json_body =
        serde_json::json!({"username": "alice", "password": "alice-secret-pw"}).to_string();
    let host = format!("127.0.0.1:{}", server.port);
    for (name, value) in [
        ("Origin", "https://evil.example"),
        ("Origin", "null"),
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Site", "same-site"),
    ] {
        let r = anon.request(
            "POST",
            "/login",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                (name, value),
            ],
            Some(form.as_bytes()),
        );
        assert_eq!(r.status, 403, "{name}: {value}: {}", r.text());
        assert!(r.all("set-cookie").is_empty());
        let r = anon.request(
            "POST",
            "/api/login",
            &[("Content-Type", "application/json"), (name, value)],
            Some(json_body.as_bytes()),
        );
        assert_eq!(r.status, 403, "{name}: {value}: {}", r.text());
        r.json();
    }
    // A logged-in session's state-changing requests from another site are refused too,
    // even with the token, and the session lives on.
    let alice = server.login("alice", "alice-secret-pw");
    let r = alice.request(
        "POST",
        "/api/logout",
        &[
            ("X-CSRF-Token", &alice.csrf),
            ("Origin", "https://evil.example"),
        ],
        Some(b""),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(alice.get("/api/session").status, 200);
    // The same origin, and clients that send neither header (scripts), are served.
    let origin = format!("http://{host}");
    let r = anon.request(
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", &origin),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        Some(form.as_bytes()),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let r = anon.request(
        "POST",
        "/api/login",
        &[
            ("Content-Type", "application/json"),
            ("Sec-Fetch-Site", "none"),
        ],
        Some(json_body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.try_login("alice", "alice-secret-pw").status, 200);
}

#[test]
fn login_redirects_only_to_local_paths_issues_a_new_session_and_logout_ends_it() {
    let env = Env::new();
    let server = WebServer::start(&env, "", &[("alice", "alice-secret-pw", "admin")]);
    let anon = server.anon();
    for next in [
        "//evil.example/",
        "/\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/%0d%0aSet-Cookie:x=1",
        "\t//evil.example",
    ] {
        let body = format!(
            "username=alice&password=alice-secret-pw&next={}",
            form_encode(next)
        );
        let r = anon.request(
            "POST",
            "/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(body.as_bytes()),
        );
        assert_eq!(r.status, 303, "{next}: {}", r.text());
        let loc = r.header("location").unwrap();
        assert!(
            loc.starts_with('/') && !loc.starts_with("//") && !loc.contains('\\'),
            "{next} -> {loc}"
        );
        assert!(r.all("set-cookie").len() == 1, "{:?}", r.headers);
        let page = anon
            .get(&format!("/login?next={}", form_encode(next)))
            .text();
        assert!(!page.contains("evil.example"), "{next}: {page}");
    }
    // A session id chosen by someone else is never adopted: login issues a new one.
    let planted = "cairn_session=".to_string() + &"a".repeat(64);
    let r = anon.request(
        "POST",
        "/api/login",
        &[("Content-Type", "application/json"), ("Cookie", &planted)],
        Some(
            serde_json::json!({"username": "alice", "password": "alice-secret-pw"})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 200);
    let cookie = r.header("set-cookie").unwrap();
    assert!(!cookie.contains(&"a".repeat(64)), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    // Two logins: two sessions; logging out ends the one logged out, on the server.
    let one = server.login("alice", "alice-secret-pw");
    let two = server.login("alice", "alice-secret-pw");
    assert_ne!(one.cookie, two.cookie);
    assert_ne!(one.csrf, two.csrf);
    let r = one.post_form("/logout", &[]);
    assert_eq!(r.status, 303);
    assert_eq!(
        one.get("/api/session").status,
        401,
        "the old cookie still works"
    );
    assert_eq!(two.get("/api/session").status, 200);
    // A logout without the token does not end the session.
    let r = two.request("POST", "/api/logout", &[], Some(b""));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(two.get("/api/session").status, 200);
}

/// Sends raw `request` on a new connection and returns the status line.
fn raw_status(port: u16, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(2).any(|w| w == b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    text.lines().next().unwrap_or_default().to_string()
}

#[test]
fn protected_routes_refuse_every_method_path_variation_and_traversal() {
    let env = Env::new();
    let server = WebServer::start(&env, "", &[("victor", "victor-secret-pw", "viewer")]);
    let anon = server.anon();
    for method in [
        "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH", "TRACE", "FOO",
    ] {
        for path in [
            "/api/status",
            "/api/session",
            "/api/config",
            "/config",
            "/api/status/",
            "/API/status",
            "/Config",
            "/config/",
            "//config",
            "/api//status",
            "/api/./status",
            "/assets/../config",
            "/assets/..%2F..%2Fconfig",
            "/assets/%2e%2e/config",
            "/api/history?x=/../../",
        ] {
            let line = raw_status(
                server.port,
                format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                    .as_bytes(),
            );
            let status: u16 = line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            assert!(
                status == 0 || (300..500).contains(&status),
                "{method} {path}: {line}"
            );
            assert_ne!(status, 0, "{method} {path}: no answer");
        }
    }
    // Assets are only the embedded files.
    for p in ["/assets/..%2Fweb-cairn.toml", "/assets/%2Fetc%2Fpasswd"] {
        let r = anon.get(p);
        assert_eq!(r.status, 404, "{p}: {}", r.text());
    }
    // A viewer is refused admin actions whatever the method or case.
    let victor = server.login("victor", "victor-secret-pw");
    let r = victor.post_json(
        "/api/plans/x/trigger",
        &serde_json::json!({"operation": "backup"}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
}

#[test]
fn bodies_above_the_limit_are_refused_with_413_and_the_server_lives_on() {
    let env = Env::new();
    let server = WebServer::start(&env, "", &[("alice", "alice-secret-pw", "admin")]);
    let anon = server.anon();
    let huge = vec![b'a'; 8 << 20];
    // The server may answer early and close: a reset while sending is fine, a 2xx is not.
    let refused = |client: &Session, path: &str, content_type: &str, body: &[u8]| {
        let r = client.try_request("POST", path, &[("Content-Type", content_type)], Some(body));
        if let Ok(r) = r {
            assert_eq!(r.status, 413, "{}", r.text());
        }
    };
    refused(&anon, "/api/login", "application/json", &huge);
    refused(&anon, "/login", "application/x-www-form-urlencoded", &huge);
    let alice = server.login("alice", "alice-secret-pw");
    let mut form = b"csrf=".to_vec();
    form.extend_from_slice(alice.csrf.as_bytes());
    form.extend_from_slice(b"&x=");
    form.extend_from_slice(&huge);
    refused(
        &alice,
        "/logout",
        "application/x-www-form-urlencoded",
        &form,
    );
    // A huge header or request line: 431 / 414 or a closed connection, never a 2xx.
    let long = "a".repeat(64 << 10);
    let line = raw_status(
        server.port,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {long}\r\n\r\n").as_bytes(),
    );
    assert!(line.is_empty() || line.contains(" 431"), "{line}");
    let line = raw_status(
        server.port,
        format!("GET /healthz?{long} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    );
    assert!(
        line.is_empty() || line.contains(" 431") || line.contains(" 414"),
        "{line}"
    );
    assert_eq!(anon.get("/healthz").status, 200);
    assert_eq!(alice.get("/api/session").status, 200);
}

#[test]
fn many_event_streams_are_capped_and_do_not_starve_the_server() {
    let env = Env::new();
    let server = WebServer::start(&env, "", &[("victor", "victor-secret-pw", "viewer")]);
    let victor = server.login("victor", "victor-secret-pw");
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..80 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = format!(
            "GET /api/events HTTP/1.1\r\nHost: x\r\nCookie: {}\r\n\r\n",
            victor.cookie
        );
        if s.write_all(req.as_bytes()).is_err() {
            refused += 1;
            continue;
        }
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(n) if n > 0 => {
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                if head.starts_with("HTTP/1.1 200") {
                    open.push(s);
                } else {
                    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
                    refused += 1;
                }
            }
            _ => refused += 1,
        }
    }
    assert!(refused > 0, "80 event streams were all served");
    assert!(!open.is_empty(), "no event stream was served");
    // With the streams still open, the server answers others at once.
    let t = Instant::now();
    let r = victor.try_request("GET", "/api/status", &[], None);
    assert!(r.is_ok_and(|r| r.status == 200), "starved by event streams");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(server.anon().get("/healthz").status, 200);
    drop(open);
}

/// Clients that start downloads and stop reading hold no more than a few of the server's
/// blocking threads: logging in and browsing (which need them) still answer at once.
#[test]
fn stalled_downloads_do_not_starve_logins_or_browsing() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big.bin"), crate::random_bytes(11, 48 << 20)).unwrap();
    ok(env.cairn(&["init"]));
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    let snaps = json(&ok(env.restic(&["snapshots", "--json"])));
    let id = snaps[0]["id"].as_str().unwrap().to_string();
    let toml = format!(
        "[repositories.main]\nurl = {}\npassword-file = {}\n",
        toml_str(&env.repo().to_string_lossy()),
        toml_str(&env.path("pw").to_string_lossy()),
    );
    let server = WebServer::start(&env, &toml, &[("victor", "victor-secret-pw", "viewer")]);
    let victor = server.login("victor", "victor-secret-pw");
    let item = enc(&under(&src, b"big.bin"));
    let mut stalled = Vec::new();
    let mut busy = 0;
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let req = format!(
            "GET /api/repositories/main/snapshots/{id}/download?item={item}&format=tar.gz HTTP/1.1\r\nHost: x\r\nCookie: {}\r\n\r\n",
            victor.cookie
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut head = [0u8; 12];
        if let Err(e) = s.read_exact(&mut head) {
            panic!(
                "download {} got no answer ({e}): the server is starved",
                stalled.len()
            );
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        if head.starts_with("HTTP/1.1 503") {
            busy += 1;
        } else {
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        }
        // Never read further: the server's producer fills the buffers and waits.
        stalled.push(s);
    }
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    let r = server.try_login("victor", "victor-secret-pw");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = victor.get(&format!("/api/repositories/main/snapshots/{id}/ls"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "login and listing took {:?} behind {} stalled downloads",
        t.elapsed(),
        20 - busy
    );
    assert!(busy > 0, "20 downloads at once were all started");
    drop(stalled);
}

/// A client that sends a request body one byte now and then (never idle long enough for
/// the idle timeout) is cut off after the body deadline instead of holding its slot.
#[test]
fn a_trickled_request_body_is_cut_off() {
    let env = Env::new();
    let server = WebServer::start(&env, "", &[("alice", "alice-secret-pw", "admin")]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
    )
    .unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "a trickled body held the connection for {:?}",
            start.elapsed()
        );
        if s.write_all(b" ").is_err() {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
        std::thread::sleep(Duration::from_millis(800));
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "{answer}"
    );
    assert!(
        start.elapsed() >= Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.try_login("alice", "alice-secret-pw").status, 200);
}
