//! The web server's transport: HTTPS with a self-signed certificate (secure cookies),
//! TLS files that are unreadable or invalid, kept-alive and stalled connections and their
//! bound, and the warning when it serves the network without TLS or users.

use crate::web_auth::USERS;
use crate::webkit::WebServer;
use crate::Env;

/// A self-signed certificate for 127.0.0.1 made by `openssl req`: (cert, key).
fn self_signed(env: &Env) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (env.path("cert.pem"), env.path("key.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is needed for the TLS test (apt-get install openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

#[test]
fn https_with_a_self_signed_certificate_sets_secure_cookies() {
    let env = Env::new();
    let (cert, key) = self_signed(&env);
    let server = WebServer::start_with(
        &env,
        "",
        USERS,
        &format!(
            "tls-cert = {}\ntls-key = {}",
            crate::webkit::toml_str(&cert.to_string_lossy()),
            crate::webkit::toml_str(&key.to_string_lossy())
        ),
    );
    assert!(server.base.starts_with("https://"));
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-i", "--max-time", "30", "--cacert"])
            .arg(&cert)
            .args(args)
            .output()
            .expect("curl is needed for the TLS test (apt-get install curl)");
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let login = curl(&[
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"username": "victor", "password": "victor's long password"}"#,
        &format!("{}/api/login", server.base),
    ]);
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    let cookie_line = login
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: cairn_session=")
        })
        .unwrap_or_else(|| panic!("no cookie: {login}"));
    assert!(cookie_line.contains("; Secure"), "{cookie_line}");
    assert!(cookie_line.contains("HttpOnly"), "{cookie_line}");
    let pair = cookie_line["set-cookie: ".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let session = curl(&[
        "-H",
        &format!("Cookie: {pair}"),
        &format!("{}/api/session", server.base),
    ]);
    assert!(session.starts_with("HTTP/1.1 200"), "{session}");
    assert!(session.contains("\"victor\""), "{session}");
    // Plain HTTP on the TLS port gets no answer.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP answered on the TLS port"
    );
}

#[test]
fn unreadable_or_invalid_tls_files_stop_the_server_naming_the_file() {
    let env = Env::new();
    let (cert, key) = self_signed(&env);
    let garbage = env.path("garbage.pem");
    std::fs::write(&garbage, "not a pem\n").unwrap();
    let missing = env.path("missing.pem");
    for (c, k, named) in [
        (&cert, &missing, &missing),
        (&garbage, &key, &garbage),
        (&cert, &garbage, &garbage),
    ] {
        let cfg = env.path("tls.toml");
        std::fs::write(
            &cfg,
            format!(
                "[settings]\nstate-dir = {}\n[settings.web]\nlisten = \"127.0.0.1:{}\"\ntls-cert = {}\ntls-key = {}\n",
                crate::webkit::toml_str(&env.path("state").to_string_lossy()),
                crate::peers::free_port(),
                crate::webkit::toml_str(&c.to_string_lossy()),
                crate::webkit::toml_str(&k.to_string_lossy()),
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .arg("--config")
            .arg(&cfg)
            .arg("web")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&*named.to_string_lossy()), "{err}");
    }
}

/// Sends `request` on `s` and reads one response whose body is `ok\n` (healthz).
fn healthz_on(s: &mut std::net::TcpStream) -> String {
    use std::io::{Read, Write};
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"\r\n\r\nok\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn connections_are_kept_alive_stalled_ones_closed_and_their_number_bounded() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};
    let env = Env::new();
    let server = WebServer::start(&env, "", USERS);
    let connect = || TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    // Keep-alive: two requests on one connection; left idle, it is closed.
    let mut s = connect();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    assert!(healthz_on(&mut s).starts_with("HTTP/1.1 200"));
    assert!(healthz_on(&mut s).starts_with("HTTP/1.1 200"));
    let t = Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "an idle connection stayed open {:?}",
        t.elapsed()
    );
    // Clients that send half a request head and stall do not hold up others.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut s = connect();
        s.write_all(b"GET /login HTTP/1.1\r\nHost: x\r\n").unwrap();
        stalled.push(s);
    }
    let t = Instant::now();
    assert_eq!(server.anon().get("/healthz").status, 200);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    for mut s in stalled {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let t = Instant::now();
        let _ = s.read_to_end(&mut Vec::new());
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "a stalled client was kept"
        );
    }
    // At most 64 connections: the 65th is closed at once, and service resumes when the
    // silent ones are dropped.
    let silent: Vec<TcpStream> = (0..64).map(|_| connect()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut extra = connect();
    extra
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answer = Vec::new();
    let _ = extra.read_to_end(&mut answer);
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    drop(silent);
    let start = Instant::now();
    loop {
        let ok = server
            .anon()
            .try_request("GET", "/healthz", &[], None)
            .is_ok_and(|r| r.status == 200);
        if ok {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no service after the flood"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serving_the_network_without_tls_or_users_warns() {
    use std::io::BufRead;
    let env = Env::new();
    let cfg = env.path("open.toml");
    std::fs::write(
        &cfg,
        format!(
            "[settings]\nstate-dir = {}\n[settings.web]\nlisten = \"0.0.0.0:{}\"\n",
            crate::webkit::toml_str(&env.path("state").to_string_lossy()),
            crate::peers::free_port()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--config")
        .arg(&cfg)
        .arg("web")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    while !(seen.iter().any(|l: &String| l.contains("without TLS"))
        && seen
            .iter()
            .any(|l: &String| l.contains("nobody can log in")))
    {
        match lines.next() {
            Some(Ok(l)) => seen.push(l),
            _ => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = seen.join("\n");
    assert!(
        text.contains("reachable from the network without TLS"),
        "{text}"
    );
    assert!(text.contains("nobody can log in"), "{text}");
}
