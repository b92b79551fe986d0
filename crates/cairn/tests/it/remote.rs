//! Remote repositories against real servers on loopback (see peers.rs): the backend
//! conformance suite, interop with the real restic on each, faults, and a 3-node Garage.

use crate::peers::{self, Peer};
use crate::*;
use cairn_repo::backend::{self, Backend};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A repository URL with what both tools need to reach it.
struct Remote {
    url: String,
    /// `-o` options (the same for cairn and restic).
    opts: Vec<String>,
    env: Vec<(String, String)>,
}

impl Remote {
    fn cairn(&self, env: &Env, args: &[&str]) -> std::process::Output {
        self.cairn_cmd(env, args).output().unwrap()
    }

    fn cairn_cmd(&self, env: &Env, args: &[&str]) -> Command {
        let mut c = env.cairn_cmd(Path::new(&self.url), &[]);
        for o in &self.opts {
            c.arg("-o").arg(o);
        }
        c.args(args).envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    fn restic(&self, env: &Env, args: &[&str]) -> std::process::Output {
        let mut c = Command::new(restic_bin());
        c.arg("-r")
            .arg(&self.url)
            .arg("--password-file")
            .arg(env.path("pw"))
            .arg("--no-cache");
        for o in &self.opts {
            c.arg("-o").arg(o);
        }
        c.args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }

    fn with_url(&self, url: String) -> Remote {
        Remote {
            url,
            opts: self.opts.clone(),
            env: self.env.clone(),
        }
    }
}

fn s3_remote(g: &Peer, prefix: &str) -> Remote {
    Remote {
        url: format!(
            "s3:{}/{}/{prefix}",
            g.var("S3_ENDPOINT"),
            g.var("S3_BUCKET")
        ),
        opts: Vec::new(),
        env: [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
        ]
        .iter()
        .map(|k| (k.to_string(), g.var(k).to_string()))
        .collect(),
    }
}

fn sftp_remote(s: &Peer, dir: &str) -> Remote {
    Remote {
        url: format!("sftp:sftp-test:{}/{dir}", s.var("SFTP_DATA")),
        opts: vec![format!(
            "sftp.command=ssh -F {} sftp-test -s sftp",
            s.var("SFTP_SSH_CONFIG")
        )],
        env: Vec::new(),
    }
}

fn rest_remote(r: &Peer, dir: &str) -> Remote {
    let base = r.var("REST_URL").trim_end_matches('/').replacen(
        "://",
        &format!("://{}:{}@", r.var("REST_USER"), r.var("REST_PASS")),
        1,
    );
    Remote {
        url: format!("rest:{base}/{dir}"),
        opts: Vec::new(),
        env: Vec::new(),
    }
}

fn opts(extended: &[(&str, String)]) -> backend::Options {
    backend::Options {
        extended: extended
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..Default::default()
    }
}

// ---- the conformance suite on every remote backend -------------------------------------

#[test]
fn conformance_sftp() {
    let s = peers::sftp();
    let r = sftp_remote(&s, "conf");
    let be = backend::open(
        &r.url,
        &opts(&[("sftp.command", r.opts[0][13..].to_string())]),
    )
    .unwrap();
    backend::conformance::run(be.as_ref());
}

#[test]
fn conformance_s3_garage() {
    let g = peers::garage();
    let target = backend::s3::Target::parse(&format!(
        "{}/{}/conf",
        g.var("S3_ENDPOINT"),
        g.var("S3_BUCKET")
    ))
    .unwrap();
    let creds = backend::s3::Credentials {
        access_key: g.var("AWS_ACCESS_KEY_ID").into(),
        secret_key: g.var("AWS_SECRET_ACCESS_KEY").into(),
        session_token: None,
    };
    let o = opts(&[]);
    let http = backend::http::Http::new(&o.timeouts, 5, o.retry.clone(), o.limits.clone());
    // A wrong region on purpose: the backend must learn Garage's from its answer.
    let be = backend::s3::S3Backend::new(target, creds, "us-east-1".into(), http);
    backend::conformance::run(&be);
}

#[test]
fn conformance_rest() {
    let r = peers::rest();
    let be = backend::open(&rest_remote(&r, "conf").url, &opts(&[])).unwrap();
    backend::conformance::run(be.as_ref());
}

#[test]
fn conformance_rclone() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("rclone:{}/conf", dir.path().display());
    let be: Arc<dyn Backend> = backend::open(&url, &opts(&[])).unwrap();
    backend::conformance::run(be.as_ref());
}

// ---- interop with the real restic on each remote ----------------------------------------

/// cairn writes, restic checks and restores identical bytes; restic writes (into its own
/// repository), cairn checks and restores identical bytes.
fn interop(a: &Remote, b: &Remote) {
    let env = Env::new();
    let src = env.path("src");
    make_source(&src);
    let s = src.to_str().unwrap();

    ok(a.cairn(&env, &["init"]));
    ok(a.cairn(&env, &["backup", s]));
    ok(a.restic(&env, &["check", "--read-data"]));
    let t1 = env.path("by-restic");
    ok(a.restic(
        &env,
        &["restore", "latest", "--target", t1.to_str().unwrap()],
    ));
    assert_same_tree(&src, &t1.join(s.trim_start_matches('/')));

    ok(b.restic(&env, &["init"]));
    ok(b.restic(&env, &["backup", s]));
    ok(b.cairn(&env, &["check", "--read-data"]));
    let t2 = env.path("by-cairn");
    ok(b.cairn(
        &env,
        &[
            "restore",
            "latest",
            "--target",
            t2.to_str().unwrap(),
            "--verify",
        ],
    ));
    assert_same_tree(&src, &t2.join(s.trim_start_matches('/')));
}

#[test]
fn interop_sftp() {
    let p = peers::sftp();
    interop(&sftp_remote(&p, "a"), &sftp_remote(&p, "b"));
}

#[test]
fn interop_s3_garage() {
    let p = peers::garage();
    interop(&s3_remote(&p, "a"), &s3_remote(&p, "b"));
}

#[test]
fn interop_rest() {
    let p = peers::rest();
    interop(&rest_remote(&p, "a"), &rest_remote(&p, "b"));
}

#[test]
fn interop_rclone() {
    let dir = tempfile::tempdir().unwrap();
    let r = |d: &str| Remote {
        url: format!("rclone:{}/{d}", dir.path().display()),
        opts: Vec::new(),
        env: Vec::new(),
    };
    interop(&r("a"), &r("b"));
}

/// B2 itself cannot exist here (no network): its authorization call is answered by a stub
/// that points at a real Garage, as B2 points at its own S3 endpoint. Everything after
/// authorization is the real S3 path against a real server.
#[test]
fn b2_through_its_s3_api_simulated_authorization() {
    let g = peers::garage();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let endpoint = g.var("S3_ENDPOINT").to_string();
    let expected = format!(
        "Basic {}",
        base64_encode(&format!(
            "{}:{}",
            g.var("AWS_ACCESS_KEY_ID"),
            g.var("AWS_SECRET_ACCESS_KEY")
        ))
    );
    std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Write};
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut authorized = false;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                if line.trim() == format!("Authorization: {expected}")
                    || line.trim() == format!("authorization: {expected}")
                {
                    authorized = true;
                }
                line.clear();
            }
            let (status, body) = if authorized {
                (
                    "200 OK",
                    format!(r#"{{"accountId":"x","s3ApiUrl":"{endpoint}"}}"#),
                )
            } else {
                ("401 Unauthorized", r#"{"code":"unauthorized"}"#.to_string())
            };
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let b2 = Remote {
        url: format!("b2:{}:b2repo", g.var("S3_BUCKET")),
        opts: vec![format!(
            "b2.auth-url=http://127.0.0.1:{port}/b2api/v2/b2_authorize_account"
        )],
        env: vec![
            ("B2_ACCOUNT_ID".into(), g.var("AWS_ACCESS_KEY_ID").into()),
            (
                "B2_ACCOUNT_KEY".into(),
                g.var("AWS_SECRET_ACCESS_KEY").into(),
            ),
        ],
    };
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), random_bytes(3, 3 << 20)).unwrap();
    ok(b2.cairn(&env, &["init"]));
    ok(b2.cairn(&env, &["backup", src.to_str().unwrap()]));
    // The same objects, read by restic through plain S3.
    ok(s3_remote(&g, "b2repo").restic(&env, &["check", "--read-data"]));

    let mut wrong = b2.with_url(b2.url.clone());
    wrong.env[1].1 = "not-the-key".into();
    let out = wrong.cairn(&env, &["snapshots"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("B2 refused the key"),
        "{}",
        stderr(&out)
    );
}

fn base64_encode(s: &str) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---- faults -------------------------------------------------------------------------------

/// 48 MiB of incompressible data: three full packs, slow enough under a rate limit to
/// kill the server in the middle.
fn big_source(env: &Env) -> PathBuf {
    let src = env.path("big");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..3u64 {
        std::fs::write(src.join(format!("f{i}")), random_bytes(40 + i, 16 << 20)).unwrap();
    }
    src
}

#[test]
fn backup_survives_a_rest_server_restart() {
    let p = peers::rest();
    let r = rest_remote(&p, "repo");
    let env = Env::new();
    let src = big_source(&env);
    ok(r.cairn(&env, &["init"]));
    let child = r
        .cairn_cmd(
            &env,
            &["--limit-upload", "12288", "backup", src.to_str().unwrap()],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    p.kill();
    std::thread::sleep(Duration::from_secs(2));
    p.restart();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    ok(out);
    assert!(err.contains("retrying"), "the outage was noticed: {err}");
    ok(r.restic(&env, &["check", "--read-data"]));
    let t = env.path("t");
    ok(r.cairn(
        &env,
        &["restore", "latest", "--target", t.to_str().unwrap()],
    ));
    assert_same_tree(&src, &t.join(src.to_str().unwrap().trim_start_matches('/')));
}

/// The rate limits hold end to end: 48 MiB at 16 MiB/s cannot take less than 3 seconds
/// either way (a lower bound: a slow machine cannot make this fail).
#[test]
fn upload_and_download_limits_hold() {
    let p = peers::rest();
    let r = rest_remote(&p, "limited");
    let env = Env::new();
    let src = big_source(&env);
    ok(r.cairn(&env, &["init"]));
    let start = Instant::now();
    ok(r.cairn(
        &env,
        &["--limit-upload", "16384", "backup", src.to_str().unwrap()],
    ));
    let up = start.elapsed();
    assert!(up >= Duration::from_millis(2700), "upload took {up:?}");
    let t = env.path("t");
    let start = Instant::now();
    ok(r.cairn(
        &env,
        &[
            "--limit-download",
            "16384",
            "restore",
            "latest",
            "--target",
            t.to_str().unwrap(),
        ],
    ));
    let down = start.elapsed();
    assert!(
        down >= Duration::from_millis(2700),
        "download took {down:?}"
    );
    assert_same_tree(&src, &t.join(src.to_str().unwrap().trim_start_matches('/')));
}

#[test]
fn a_server_that_stays_down_fails_in_bounded_time_and_the_next_run_succeeds() {
    let g = peers::garage();
    let mut r = s3_remote(&g, "down");
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), random_bytes(5, 2 << 20)).unwrap();
    ok(r.cairn(&env, &["init"]));
    g.kill();
    r.opts.push("retry.max-time=4s".into());
    let start = Instant::now();
    let out = r.cairn(&env, &["backup", src.to_str().unwrap()]);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot connect") && err.contains("gave up"),
        "{err}"
    );
    assert!(
        !err.contains(g.var("AWS_SECRET_ACCESS_KEY")),
        "secret printed: {err}"
    );
    g.restart();
    ok(r.cairn(&env, &["backup", src.to_str().unwrap()]));
    ok(r.restic(&env, &["check", "--read-data"]));
}

#[test]
fn wrong_credentials_unknown_bucket_and_unreachable_hosts_are_clear_errors() {
    let g = peers::garage();
    let env = Env::new();
    let good = s3_remote(&g, "creds");
    ok(good.cairn(&env, &["init"]));
    let secret = g.var("AWS_SECRET_ACCESS_KEY").to_string();

    let mut bad = good.with_url(good.url.clone());
    bad.env[1].1 = "0".repeat(64);
    let out = bad.cairn(&env, &["snapshots"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("refused access") && err.contains("AWS_SECRET_ACCESS_KEY"),
        "{err}"
    );
    assert!(
        !err.contains(&secret) && !err.contains(&"0".repeat(64)),
        "secret printed: {err}"
    );

    let nobucket = good.with_url(format!("s3:{}/no-such-bucket", g.var("S3_ENDPOINT")));
    let out = nobucket.cairn(&env, &["snapshots"]);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("bucket \"no-such-bucket\" does not exist"),
        "{}",
        stderr(&out)
    );

    // Nothing listens on this port: bounded retries, then a clear message.
    let mut dead = Remote {
        url: format!("rest:http://127.0.0.1:{}/repo", peers::free_port()),
        opts: vec!["retry.max-time=2s".into()],
        env: Vec::new(),
    };
    let start = Instant::now();
    let out = dead.cairn(&env, &["snapshots"]);
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));

    // A host name that does not resolve.
    dead.url = "rest:http://no-such-host.invalid:8000/repo".into();
    let out = dead.cairn(&env, &["snapshots"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot resolve"), "{}", stderr(&out));

    // A REST server with the wrong password: refused, and the password is not printed.
    let rp = peers::rest();
    let rest_bad = Remote {
        url: format!(
            "rest:http://{}:hunter2@{}repo",
            rp.var("REST_USER"),
            rp.var("REST_URL").trim_start_matches("http://")
        ),
        opts: Vec::new(),
        env: Vec::new(),
    };
    let out = rest_bad.cairn(&env, &["snapshots"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("401") && !err.contains("hunter2"), "{err}");
}

#[test]
fn sftp_refuses_an_unknown_or_changed_host_key() {
    let s = peers::sftp();
    let env = Env::new();
    // A known_hosts entry with some other key for the server: ssh must refuse.
    let other = env.path("other_key");
    ok(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .output()
        .unwrap());
    let pubkey = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let known = env.path("known_hosts");
    std::fs::write(
        &known,
        format!("[127.0.0.1]:{} {}", s.var("SFTP_PORT"), pubkey),
    )
    .unwrap();
    let r = Remote {
        url: format!("sftp:{}@127.0.0.1:{}/x", s.var("SFTP_USER"), s.var("SFTP_DATA")),
        opts: vec![format!(
            "sftp.args=-p {} -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -o BatchMode=yes",
            s.var("SFTP_PORT"),
            s.var("SFTP_KEY"),
            known.display()
        )],
        env: Vec::new(),
    };
    let out = r.cairn(&env, &["init"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("host key"), "{}", stderr(&out));

    // The wrong key for the user: a login refusal, said as such.
    let r = Remote {
        url: format!("sftp:{}@127.0.0.1:{}/x", s.var("SFTP_USER"), s.var("SFTP_DATA")),
        opts: vec![format!(
            "sftp.args=-p {} -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes",
            s.var("SFTP_PORT"),
            other.display()
        )],
        env: Vec::new(),
    };
    let out = r.cairn(&env, &["init"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("refused our login"),
        "{}",
        stderr(&out)
    );
}

// ---- a replicated Garage cluster ----------------------------------------------------------

#[test]
fn garage_cluster_survives_losing_a_node() {
    let c = peers::garage_cluster();
    let eps = format!(
        "{},{},{}",
        c.var("S3_ENDPOINT_N1"),
        c.var("S3_ENDPOINT_N2"),
        c.var("S3_ENDPOINT_N3")
    );
    let r = Remote {
        url: format!(
            "s3:{}/{}/cluster",
            c.var("S3_ENDPOINT_N1"),
            c.var("S3_BUCKET")
        ),
        opts: vec![format!("s3.endpoints={eps}"), "retry.max-time=60s".into()],
        env: [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
        ]
        .iter()
        .map(|k| (k.to_string(), c.var(k).to_string()))
        .collect(),
    };
    let env = Env::new();
    let src = env.path("src");
    make_source(&src);
    ok(r.cairn(&env, &["init"]));
    ok(r.cairn(&env, &["backup", src.to_str().unwrap()]));
    c.kill_one(0); // node 1, the first endpoint
    std::fs::write(src.join("after-the-loss"), random_bytes(9, 1 << 20)).unwrap();
    ok(r.cairn(&env, &["backup", src.to_str().unwrap()]));
    let t = env.path("t");
    ok(r.cairn(
        &env,
        &["restore", "latest", "--target", t.to_str().unwrap()],
    ));
    assert_same_tree(&src, &t.join(src.to_str().unwrap().trim_start_matches('/')));
    // restic, pointed at a surviving node, agrees.
    let n2 = r.with_url(format!(
        "s3:{}/{}/cluster",
        c.var("S3_ENDPOINT_N2"),
        c.var("S3_BUCKET")
    ));
    let n2 = Remote {
        opts: Vec::new(),
        ..n2
    };
    ok(n2.restic(&env, &["check", "--read-data"]));
}

// ---- the local cache of a remote repository ---------------------------------------------

/// The cache holds snapshots, index and tree packs, is really used (a tree pack damaged on
/// the server is still read intact from it), is bypassed by `--no-cache` and by `check`
/// (which must see the damage), forgets what restic deletes, and survives damage to itself.
#[test]
fn remote_cache_serves_metadata_and_follows_the_repository() {
    let p = peers::sftp();
    let env = Env::new();
    let r = sftp_remote(&p, "cached");
    let src = env.path("src");
    make_source(&src);
    let s = src.to_str().unwrap();
    ok(r.cairn(&env, &["init"]));
    ok(r.cairn(&env, &["backup", s]));
    ok(r.cairn(&env, &["backup", s, "--tag", "second"]));
    let listing = ok(r.cairn(&env, &["ls", "latest"]));

    let cache = env.path("cache");
    assert!(cache.join("CACHEDIR.TAG").exists());
    let repos: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.path())
        .collect();
    assert_eq!(repos.len(), 1, "one directory per repository: {repos:?}");
    let dir = &repos[0];
    assert_eq!(files_under(&dir.join("snapshots")).len(), 2);
    assert!(!files_under(&dir.join("index")).is_empty());
    let tree_packs = files_under(&dir.join("data"));
    assert!(!tree_packs.is_empty(), "tree packs are cached");

    // Damage every cached tree pack on the server: listing still works from the cache,
    // while --no-cache and check (which never trusts the cache) see the damage.
    let server = PathBuf::from(p.var("SFTP_DATA")).join("cached/data");
    for t in &tree_packs {
        let name = t.file_name().unwrap().to_str().unwrap();
        let on_server = server.join(&name[..2]).join(name);
        let mut bytes = std::fs::read(&on_server).unwrap();
        bytes[10] ^= 0xff;
        std::fs::write(&on_server, &bytes).unwrap();
    }
    assert_eq!(ok(r.cairn(&env, &["ls", "latest"])), listing);
    let out = r.cairn(&env, &["--no-cache", "ls", "latest"]);
    assert!(!out.status.success(), "the server's tree pack is damaged");
    let out = r.cairn(&env, &["check"]);
    assert!(
        !out.status.success(),
        "check must not read trees from the cache"
    );
    for t in &tree_packs {
        let name = t.file_name().unwrap().to_str().unwrap();
        let on_server = server.join(&name[..2]).join(name);
        let mut bytes = std::fs::read(&on_server).unwrap();
        bytes[10] ^= 0xff;
        std::fs::write(&on_server, &bytes).unwrap();
    }
    ok(r.cairn(&env, &["check"]));

    // A damaged cache entry is detected and fetched again, not trusted.
    for f in files_under(&dir.join("index")) {
        std::fs::write(&f, b"not an index").unwrap();
    }
    assert_eq!(ok(r.cairn(&env, &["ls", "latest"])), listing);

    // restic forgets a snapshot: cairn lists what the repository has, and the cache drops it.
    ok(r.restic(&env, &["forget", "--keep-last", "1", "--prune"]));
    let snaps = ok(r.cairn(&env, &["snapshots", "--json"]));
    let snaps: serde_json::Value = serde_json::from_str(&snaps).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_eq!(files_under(&dir.join("snapshots")).len(), 1);
    let t = env.path("restored");
    ok(r.cairn(
        &env,
        &[
            "restore",
            "latest",
            "--target",
            t.to_str().unwrap(),
            "--verify",
        ],
    ));
    assert_same_tree(&src, &t.join(s.trim_start_matches('/')));
    ok(r.restic(&env, &["check", "--read-data"]));
}
