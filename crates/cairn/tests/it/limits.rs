//! Issue 11 (hardening), total parsers and capped input: inputs that used to panic, wrap,
//! hang or allocate without bound (huge durations, non-ASCII schedules, bad %-escapes,
//! endless HTTP bodies and S3 pagination from a malicious server, a slow metrics client)
//! give a clear error or a bounded answer.
//!
//! The HTTP peers here are fake on purpose: they play a MALICIOUS server (an endless body,
//! a listing that never ends), which no real server does.

use crate::{ok, stderr, Env};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn cfg_cmd(env: &Env, config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("RESTIC_PASSWORD")
        .env_remove("RESTIC_PASSWORD_FILE")
        .env("CAIRN_CACHE_DIR", env.path("cache"));
    c
}

/// Runs `cmd`, killing it after `limit`: a hang fails the test instead of stalling it.
fn run_within(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn assert_clean_failure(out: &Output, want: &str) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "succeeded: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(want), "expected {want:?} in: {err}");
    err
}

fn backup_two_snapshots(env: &Env) {
    ok(env.cairn(&["init"]));
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"one").unwrap();
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    std::fs::write(src.join("a"), b"two").unwrap();
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
}

/// `--keep-within 1000000y` used to shrink to nothing (all but the newest removed) and
/// `99999999d` to panic; like restic, a duration past the calendar keeps everything, and
/// one that does not fit is a clear error.
#[test]
fn huge_keep_within_durations_keep_everything_or_fail_cleanly() {
    let env = Env::new();
    backup_two_snapshots(&env);
    for w in ["1000000y", "99999999d", "2147483647h"] {
        let out = ok(env.cairn(&["--json", "forget", "--dry-run", "--keep-within", w]));
        let groups = crate::json(&out);
        assert_eq!(groups[0]["keep"].as_array().unwrap().len(), 2, "{w}: {out}");
        assert_eq!(
            groups[0]["remove"].as_array().unwrap().len(),
            0,
            "{w}: {out}"
        );
    }
    let out = env.cairn(&["forget", "--dry-run", "--keep-within", "99999999999y"]);
    assert_clean_failure(&out, "too large");
}

/// restic >= 0.16 takes -1 as "unlimited" in the keep flags.
#[test]
fn minus_one_keeps_all_in_keep_flags() {
    let env = Env::new();
    backup_two_snapshots(&env);
    for args in [
        &["--keep-last", "-1"][..],
        &["--keep-last=-1", "--keep-daily", "-1"][..],
        &["-l", "-1"][..],
    ] {
        let mut a = vec!["--json", "forget", "--dry-run"];
        a.extend_from_slice(args);
        let out = ok(env.cairn(&a));
        let groups = crate::json(&out);
        assert_eq!(groups[0]["keep"].as_array().unwrap().len(), 2, "{args:?}");
    }
    let out = env.cairn(&["forget", "--dry-run", "--keep-last", "-2"]);
    assert_clean_failure(&out, "-1");
}

/// `config check` on values that used to panic (a non-ASCII weekday, a step past u32,
/// durations that overflow) reports each one; -1 counts and huge keep-within are valid.
#[test]
fn config_check_reports_overflowing_and_non_ascii_values_without_panicking() {
    let env = Env::new();
    let main = env.path("cfg/cairn.toml");
    let repo = format!(
        "[repositories.nas]\nurl = \"/srv/repo\"\npassword-file = \"{}\"\n",
        env.path("pw").display()
    );
    let plan = "[plans.p]\nrepository = \"nas\"\npaths = [\"/etc\"]\n";
    for (extra, want) in [
        ("schedule = \"Moé 03:00\"\n", "weekday"),
        ("schedule = \"*:1/4294967295 x\"\n", "schedule"),
        ("max-age = \"99999999999999999w\"\n", "too long"),
        ("max-age = \"18446744073709551615s\"\n", "too long"),
        ("max-age = \"99999999999999999999999s\"\n", "too long"),
        ("hooks = { timeout = \"36500000d\" }\n", "too long"),
        (
            "retention = { keep-within = \"99999999999y\" }\n",
            "too large",
        ),
        ("retention = { keep-last = -2 }\n", "-1 to keep all"),
        (
            "retention = { keep-daily = 4294967296 }\n",
            "-1 to keep all",
        ),
    ] {
        write(&main, &format!("{repo}{plan}{extra}"));
        let out = run_within(
            cfg_cmd(&env, &main, &["config", "check"]),
            Duration::from_secs(30),
        );
        assert_clean_failure(&out, want);
    }
    write(
        &main,
        &format!(
            "{repo}{plan}schedule = \"Mon 03:00\"\nretention = {{ keep-last = -1, keep-within = \"1000000y\" }}\n"
        ),
    );
    ok(cfg_cmd(&env, &main, &["config", "check"]).output().unwrap());
}

/// A bad or truncated %-escape in a URL's credentials used to panic (or pass through);
/// now it is an error that names neither secret. S3 takes no credentials in the URL.
#[test]
fn bad_percent_escapes_in_url_credentials_are_errors() {
    let env = Env::new();
    for (url, want) in [
        ("rest:http://u:%@127.0.0.1:9/", "%-escape"),
        ("rest:http://u:%€x@127.0.0.1:9/", "%-escape"),
        ("rest:http://a%zz:b@127.0.0.1:9/", "%-escape"),
        ("s3:https://a%zz:b@127.0.0.1:9/bucket", "AWS_ACCESS_KEY_ID"),
    ] {
        let mut c = env.cairn_cmd(Path::new(url), &["snapshots"]);
        c.env("AWS_ACCESS_KEY_ID", "k")
            .env("AWS_SECRET_ACCESS_KEY", "s")
            .args(["-o", "retry.max-time=1s"]);
        let out = run_within(c, Duration::from_secs(30));
        let err = assert_clean_failure(&out, want);
        assert!(!err.contains("zz:b") && !err.contains("u:%"), "{err}");
    }
}

// ---- a malicious HTTP server ---------------------------------------------------------

/// What the fake server answers.
#[derive(Clone, Copy)]
enum Answer {
    /// A status and a small body.
    Fixed(u16, &'static str),
    /// A status, then bytes until the client goes away.
    Endless(u16),
    /// An S3 ListObjectsV2 page that says there is more, with this token every time.
    RepeatedPage,
}

/// Serves `answer(method, path)` to every request on a fresh port, one thread per
/// connection; returns the port.
fn malicious_server(answer: fn(&str, &str) -> Answer) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || serve_one(conn, answer));
        }
    });
    port
}

fn serve_one(mut conn: TcpStream, answer: fn(&str, &str) -> Answer) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let path = words.next().unwrap_or("").to_string();
    // Request bodies (PUT/POST) are small here: read what Content-Length says.
    if let Some(len) = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse::<usize>().ok())
    {
        let mut body = vec![0; len];
        let _ = conn.read_exact(&mut body);
    }
    match answer(&method, &path) {
        Answer::Fixed(status, body) => {
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        Answer::Endless(status) => {
            let _ = write!(conn, "HTTP/1.1 {status} X\r\nConnection: close\r\n\r\n");
            let chunk = vec![b'['; 64 << 10];
            while conn.write_all(&chunk).is_ok() {}
        }
        Answer::RepeatedPage => {
            let body = "<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>true</IsTruncated>\
                <Contents><Key>keys/abc</Key><Size>1</Size></Contents>\
                <NextContinuationToken>again</NextContinuationToken></ListBucketResult>";
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    }
}

fn cairn_against(env: &Env, url: &str) -> Output {
    let mut c = env.cairn_cmd(Path::new(url), &["snapshots"]);
    c.env("AWS_ACCESS_KEY_ID", "k")
        .env("AWS_SECRET_ACCESS_KEY", "s")
        .args(["--no-cache", "-o", "retry.max-time=2s"]);
    run_within(c, Duration::from_secs(60))
}

/// A REST server whose listing never ends used to be read until memory ran out; now the
/// read stops past the cap with an error.
#[test]
fn endless_rest_listing_is_cut_at_the_cap() {
    let port = malicious_server(|method, path| match (method, path) {
        ("HEAD", "/config") => Answer::Fixed(200, ""),
        _ => Answer::Endless(200),
    });
    let env = Env::new();
    let out = cairn_against(&env, &format!("rest:http://127.0.0.1:{port}/"));
    assert_clean_failure(&out, "refusing to read it");
}

/// An error answer with an endless body used to be read to the end (never) before the
/// status was reported; now a few KiB are read for the message.
#[test]
fn endless_error_body_is_cut_and_the_status_reported() {
    let port = malicious_server(|method, path| match (method, path) {
        ("HEAD", "/config") => Answer::Fixed(200, ""),
        _ => Answer::Endless(403),
    });
    let env = Env::new();
    let out = cairn_against(&env, &format!("rest:http://127.0.0.1:{port}/"));
    assert_clean_failure(&out, "HTTP 403");
}

/// An S3 server that answers every listing page with the same continuation token used to
/// be followed forever; now the repeated token ends the listing with an error.
#[test]
fn s3_pagination_stops_on_a_repeated_token() {
    let port = malicious_server(|method, path| match method {
        "HEAD" => Answer::Fixed(200, ""),
        _ if path.contains("list-type=2") => Answer::RepeatedPage,
        _ => Answer::Fixed(404, "<Error><Code>NoSuchKey</Code></Error>"),
    });
    let env = Env::new();
    let out = cairn_against(&env, &format!("s3:http://127.0.0.1:{port}/bucket"));
    assert_clean_failure(&out, "continuation token repeated");
}

// ---- the metrics server --------------------------------------------------------------

fn http_get(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The old /metrics server took one connection at a time: a client sending half a
/// request blocked every scrape for seconds. Now others are answered at once, the
/// stalled ones are closed after the header timeout, and a huge request line is refused.
#[test]
fn metrics_server_answers_beside_stalled_clients_and_refuses_huge_requests() {
    let env = Env::new();
    let port = crate::peers::free_port();
    let main = env.path("cfg/cairn.toml");
    write(
        &main,
        &format!(
            "[settings]\nstate-dir = \"{}\"\nmetrics = {{ listen = \"127.0.0.1:{port}\" }}\n\
             [repositories.nas]\nurl = \"{}\"\npassword-file = \"{}\"\n\
             [plans.p]\nrepository = \"nas\"\npaths = [\"/etc\"]\n",
            env.path("state").display(),
            env.repo().display(),
            env.path("pw").display()
        ),
    );
    let mut daemon = cfg_cmd(&env, &main, &["daemon"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no metrics server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Clients that send half a request and stall.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        stalled.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let health = http_get(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok\n"), "{health}");
    let metrics = http_get(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "scrapes took {:?} beside stalled clients",
        t.elapsed()
    );
    // A huge request line is refused, not read.
    let huge = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(1 << 20));
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(huge.as_bytes());
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 431") || answer.starts_with("HTTP/1.1 414"),
        "{answer}"
    );
    // The stalled clients are closed after the header-read timeout.
    for mut s in stalled {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let t = Instant::now();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "a stalled client was kept open"
        );
    }
    assert!(http_get(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").ends_with("ok\n"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let start = Instant::now();
    while daemon.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut err = String::new();
    daemon
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("panicked"), "{err}");
}

/// A key file is not authenticated: one claiming scrypt N=2^30 used to make us allocate
/// 128 GiB (an abort, or the machine's memory); now it is refused at once, like restic
/// refuses parameters outside its limits.
#[test]
fn key_file_with_huge_scrypt_parameters_is_refused_without_allocating() {
    let env = Env::new();
    ok(env.cairn(&["init"]));
    let keys = env.repo().join("keys");
    let old = std::fs::read_dir(&keys)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut key: serde_json::Value = serde_json::from_slice(&std::fs::read(&old).unwrap()).unwrap();
    key["N"] = serde_json::json!(1u64 << 30);
    let bytes = serde_json::to_vec(&key).unwrap();
    let tmp = env.path("key.json");
    std::fs::write(&tmp, &bytes).unwrap();
    let sum = Command::new("sha256sum").arg(&tmp).output().unwrap();
    let name = String::from_utf8(sum.stdout).unwrap()[..64].to_string();
    let mut perm = std::fs::metadata(&old).unwrap().permissions();
    std::fs::remove_file(&old).unwrap();
    std::fs::write(keys.join(&name), &bytes).unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o400);
    std::fs::set_permissions(keys.join(&name), perm).unwrap();
    let out = run_within(
        env.cairn_cmd(&env.repo(), &["snapshots"]),
        Duration::from_secs(30),
    );
    assert_clean_failure(&out, "refused");
}
