//! Test kit for the web UI: start `cairn web` on a free loopback port with users of your
//! choice, log in, and make requests as a session (cookie + CSRF token handled for you).
//!
//! ```ignore
//! let env = Env::new();
//! let server = WebServer::start(&env, "[repositories.nas]\n...\n[plans.p]\n...", &[
//!     ("alice", "alice-pw", "admin"),
//!     ("victor", "victor-pw", "viewer"),
//! ]);
//! let alice = server.login("alice", "alice-pw");
//! let r = alice.get("/api/plans");
//! assert_eq!(r.status, 200, "{}", r.text());
//! let v = r.json();
//! let r = alice.post_json("/api/plans/p/run", &serde_json::json!({}));   // X-CSRF-Token set
//! let r = alice.post_form("/restore", &[("path", "/tmp/x")]);             // `csrf` field added
//! let r = server.anon().get("/api/plans");                               // no session: 401
//! ```
//!
//! Redirects are not followed (a 303 comes back as it is). The server is killed when the
//! [`WebServer`] is dropped; its stderr is in [`WebServer::log`].
//!
//! Every helper is used by some test module, not necessarily by all.
#![allow(dead_code)]

use crate::Env;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `cairn web`.
pub struct WebServer {
    /// `http://127.0.0.1:PORT` (or `https://` when TLS is configured).
    pub base: String,
    pub port: u16,
    /// The cairn.toml it runs with.
    pub config: PathBuf,
    /// Its stderr.
    pub log_path: PathBuf,
    child: Child,
    agent: ureq::Agent,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names lowercase, sorted by name (a header sent twice appears twice).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the body when it is not).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.text()))
    }
}

/// A client of the server: logged in (cookie and CSRF token set) or anonymous (both
/// empty). Fields are public so tests can forge or drop them.
#[derive(Clone)]
pub struct Session {
    pub base: String,
    /// The `Cookie` header value, e.g. `cairn_session=ab12…` (empty: none sent).
    pub cookie: String,
    /// The session's CSRF token (empty: none sent).
    pub csrf: String,
    agent: ureq::Agent,
}

/// A TOML basic string of `s`.
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string to JSON")
}

/// The argon2id hash `cairn web hash-password` prints for `password`.
pub fn hash_password(password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["web", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cairn web hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password");
    let out = child.wait_with_output().expect("wait for hash-password");
    assert!(
        out.status.success(),
        "hash-password failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8 hash")
        .trim()
        .to_string()
}

impl WebServer {
    /// Starts `cairn web` with `users` (name, password, role) and `config_toml_extra`
    /// appended to the generated cairn.toml (tables such as `[repositories.x]` and
    /// `[plans.y]`; `[settings]` and `[settings.web]` are written by the kit, with
    /// `state-dir` = `env.path("state")`). Waits until `/healthz` answers.
    pub fn start(env: &Env, config_toml_extra: &str, users: &[(&str, &str, &str)]) -> WebServer {
        WebServer::start_with(env, config_toml_extra, users, "")
    }

    /// Like [`WebServer::start`], with `web_extra` lines inside `[settings.web]` (e.g.
    /// `tokens-file = "..."`, `trusted-proxies = ["127.0.0.1"]`, `tls-cert`/`tls-key`).
    pub fn start_with(
        env: &Env,
        config_toml_extra: &str,
        users: &[(&str, &str, &str)],
        web_extra: &str,
    ) -> WebServer {
        WebServer::start_with_env(env, config_toml_extra, users, web_extra, &[])
    }

    /// Like [`WebServer::start_with`], with environment variables for `cairn web` (e.g.
    /// the hidden `CAIRN_WEB_IDLE_TIMEOUT_MS`).
    pub fn start_with_env(
        env: &Env,
        config_toml_extra: &str,
        users: &[(&str, &str, &str)],
        web_extra: &str,
        vars: &[(&str, &str)],
    ) -> WebServer {
        let port = crate::peers::free_port();
        let mut toml = format!(
            "[settings]\nstate-dir = {}\n[settings.web]\nlisten = \"127.0.0.1:{port}\"\n{web_extra}\n",
            toml_str(&env.path("state").to_string_lossy())
        );
        for (name, password, role) in users {
            let file = env.path(&format!("web-{name}.hash"));
            std::fs::write(&file, format!("{}\n", hash_password(password))).expect("hash file");
            toml.push_str(&format!(
                "[settings.web.users.{name}]\npassword-hash-file = {}\nrole = \"{role}\"\n",
                toml_str(&file.to_string_lossy())
            ));
        }
        toml.push_str(config_toml_extra);
        toml.push('\n');
        let config = env.path("web-cairn.toml");
        std::fs::write(&config, toml).expect("write cairn.toml");
        let log_path = env.path("web.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .arg("--config")
            .arg(&config)
            .arg("web")
            .env_remove("CAIRN_CONFIG")
            .env_remove("RESTIC_REPOSITORY")
            .env_remove("RESTIC_PASSWORD")
            .env_remove("RESTIC_PASSWORD_FILE")
            .env("CAIRN_CACHE_DIR", env.path("cache"))
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start cairn web");
        let tls = web_extra.contains("tls-cert");
        let mut server = WebServer {
            base: format!("{}://127.0.0.1:{port}", if tls { "https" } else { "http" }),
            port,
            config,
            log_path,
            child,
            agent: agent(),
        };
        server.wait_ready(tls);
        server
    }

    fn wait_ready(&mut self, tls: bool) {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("cairn web exited ({status}):\n{}", self.log());
            }
            let up = if tls {
                std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            } else {
                self.anon()
                    .try_request("GET", "/healthz", &[], None)
                    .is_ok_and(|r| r.status == 200)
            };
            if up {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "cairn web did not answer within 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the server wrote on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A client without a session.
    pub fn anon(&self) -> Session {
        Session {
            base: self.base.clone(),
            cookie: String::new(),
            csrf: String::new(),
            agent: self.agent.clone(),
        }
    }

    /// Logs in through `POST /api/login`; panics unless it succeeds.
    #[track_caller]
    pub fn login(&self, user: &str, password: &str) -> Session {
        let r = self.try_login(user, password);
        assert_eq!(r.status, 200, "login of {user} failed: {}", r.text());
        let cookie = r
            .all("set-cookie")
            .into_iter()
            .find_map(|c| {
                c.split(';')
                    .next()
                    .filter(|kv| kv.starts_with("cairn_session="))
            })
            .expect("a session cookie")
            .to_string();
        let csrf = r.json()["csrf"]
            .as_str()
            .expect("csrf in the answer")
            .to_string();
        Session {
            cookie,
            csrf,
            ..self.anon()
        }
    }

    /// `POST /api/login` as it answers (for tests of failures).
    pub fn try_login(&self, user: &str, password: &str) -> Reply {
        self.anon().request(
            "POST",
            "/api/login",
            &[("Content-Type", "application/json")],
            Some(
                serde_json::json!({"username": user, "password": password})
                    .to_string()
                    .as_bytes(),
            ),
        )
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// No connection pool: the server closes idle keep-alive connections after 5 s, and ureq
/// does not retry a POST on a pooled connection that was closed meanwhile.
fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .max_idle_connections(0)
        .redirects(0)
        .timeout(Duration::from_secs(300))
        .build()
}

impl Session {
    /// `GET path` with the session cookie.
    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], None)
    }

    /// `POST path` with JSON `value`, the cookie and `X-CSRF-Token`.
    pub fn post_json(&self, path: &str, value: &serde_json::Value) -> Reply {
        let csrf = self.csrf.clone();
        let mut headers = vec![("Content-Type", "application/json")];
        if !csrf.is_empty() {
            headers.push(("X-CSRF-Token", csrf.as_str()));
        }
        self.request("POST", path, &headers, Some(value.to_string().as_bytes()))
    }

    /// `POST path` with a url-encoded form of `fields` plus the `csrf` field, and the
    /// cookie.
    pub fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let mut body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect();
        if !self.csrf.is_empty() {
            body.push(format!("csrf={}", form_encode(&self.csrf)));
        }
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(body.join("&").as_bytes()),
        )
    }

    /// Any request: `method path` with the cookie (if any) and `headers`; nothing else
    /// added (no CSRF token).
    #[track_caller]
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// `GET path` answered with its status and headers, the body left to read as it
    /// comes (Server-Sent Events, long downloads). Reads time out after `timeout`.
    pub fn stream(
        &self,
        path: &str,
        timeout: Duration,
    ) -> (u16, Vec<(String, String)>, Box<dyn Read + Send>) {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_read(timeout)
            .build();
        let mut req = agent.get(&format!("{}{path}", self.base));
        if !self.cookie.is_empty() {
            req = req.set("Cookie", &self.cookie);
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("GET {path}: {e}"),
        };
        let status = resp.status();
        let headers = header_list(&resp);
        (status, headers, Box::new(resp.into_reader()))
    }

    /// Like [`Session::request`], with transport errors (refused, reset) returned.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Reply, String> {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        if !self.cookie.is_empty() {
            req = req.set("Cookie", &self.cookie);
        }
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let answer = match body {
            Some(b) => req.send_bytes(b),
            None => req.call(),
        };
        let resp = match answer {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e.to_string()),
        };
        let status = resp.status();
        let headers = header_list(&resp);
        let mut body = Vec::new();
        resp.into_reader()
            .read_to_end(&mut body)
            .map_err(|e| format!("reading the body: {e}"))?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

fn header_list(resp: &ureq::Response) -> Vec<(String, String)> {
    let mut names = resp.headers_names();
    names.sort();
    names.dedup();
    let mut headers = Vec::new();
    for name in names {
        for v in resp.all(&name) {
            headers.push((name.to_ascii_lowercase(), v.to_string()));
        }
    }
    headers
}

/// Percent-encodes a form value.
pub fn form_encode(s: &str) -> String {
    percent_encode(s.as_bytes())
}

/// Percent-encodes bytes (a path that need not be UTF-8) for a query value or a form
/// field: every byte but the unreserved ones.
pub fn percent_encode(p: &[u8]) -> String {
    let mut out = String::new();
    for &b in p {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The bytes of `dir/name` (`name` need not be UTF-8).
pub fn under(dir: &std::path::Path, name: &[u8]) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut p = dir.as_os_str().as_bytes().to_vec();
    p.push(b'/');
    p.extend_from_slice(name);
    p
}
