//! The web UI end to end, in a real headless Chromium driven over W3C WebDriver
//! (Debian's `chromium` + `chromium-driver`; scripts/test.sh installs them, and the test
//! fails, not skips, when they are missing). Each step saves a screenshot under
//! `target/web-artifacts/<step>.png`.
//!
//! The WebDriver client below is deliberately small: new session, navigate, find by CSS,
//! click, send keys, text, attribute, execute script, screenshot.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The W3C key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a step waits for what it expects on a page.
const WAIT: Duration = Duration::from_secs(20);

/// A chromedriver process with one Chromium session; both end on drop.
pub struct Browser {
    driver: Child,
    base: String,
    agent: ureq::Agent,
    /// Chromium's profile and the download directory.
    pub dir: tempfile::TempDir,
    /// Where screenshots go.
    pub artifacts: PathBuf,
}

/// An element of the current page.
#[derive(Clone, Debug)]
pub struct El(String);

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

fn chromedriver_bin() -> PathBuf {
    let bin = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"));
    assert!(
        bin.exists(),
        "{} is missing: the web UI test drives headless Chromium (`apt-get install chromium chromium-driver`, or run scripts/test.sh)",
        bin.display()
    );
    bin
}

/// `target/web-artifacts`, next to the cairn binary under test.
pub fn artifacts_dir() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_cairn"));
    let target = exe
        .parent()
        .and_then(Path::parent)
        .expect("the cairn binary lives in target/<profile>/");
    let dir = target.join("web-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/web-artifacts");
    dir
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session with a 1280×800
    /// viewport, a temporary profile and downloads going to [`Browser::downloads`].
    pub fn start() -> Browser {
        let port = free_port();
        let driver = Command::new(chromedriver_bin())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let dir = tempfile::Builder::new()
            .prefix("cairn-chromium")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("downloads")).unwrap();
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(120))
            .build();
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            agent,
            dir,
            artifacts: artifacts_dir(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = b
                .agent
                .get(&format!("{}/status", b.base))
                .call()
                .ok()
                .and_then(|r| r.into_string().ok())
                .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut args = vec![
            "--headless=new".to_string(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            "--disable-extensions".into(),
            "--lang=en-US".into(),
            "--window-size=1280,800".into(),
            format!("--user-data-dir={}", b.dir.path().join("profile").display()),
        ];
        if nix::unistd::geteuid().is_root() {
            args.push("--no-sandbox".into()); // Chromium refuses to run as root otherwise
        }
        let downloads = b.downloads();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": args,
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                    "safebrowsing.enabled": false,
                },
            },
        }}});
        let v = b.raw("POST", "/session", Some(caps));
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {v}"))
            .to_string();
        b.base = format!("{}/session/{id}", b.base);
        // An exact 1280×800 viewport for the screenshots, and downloads allowed headless.
        b.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
        );
        b.cdp(
            "Browser.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": downloads}),
        );
        b
    }

    /// Where the browser saves downloads.
    pub fn downloads(&self) -> PathBuf {
        self.dir.path().join("downloads")
    }

    /// One WebDriver command; panics with the driver's message on an error.
    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.try_raw(method, path, body) {
            Ok(v) => v,
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        }
    }

    fn try_raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let req = self.agent.request(method, &url);
        let res = match body {
            Some(b) => req
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => req.call(),
        };
        let text = match res {
            Ok(r) => r.into_string().map_err(|e| e.to_string())?,
            Err(ureq::Error::Status(code, r)) => {
                let t = r.into_string().unwrap_or_default();
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                return Err(format!(
                    "{code} {}: {}",
                    v["value"]["error"],
                    v["value"]["message"].as_str().unwrap_or(&t)
                ));
            }
            Err(e) => return Err(e.to_string()),
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        Ok(v["value"].clone())
    }

    fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.raw(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
    }

    pub fn goto(&self, url: &str) {
        self.raw("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.raw("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn find_now(&self, css: &str) -> Option<El> {
        let v = self
            .try_raw(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .ok()?;
        v[ELEMENT].as_str().map(|s| El(s.to_string()))
    }

    /// The first element matching `css`, waiting for it to appear.
    #[track_caller]
    pub fn find(&self, css: &str) -> El {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.find_now(css) {
                return e;
            }
            if Instant::now() > deadline {
                self.screenshot("failed-find");
                panic!(
                    "no element {css:?} on {} after {WAIT:?}; page text:\n{}",
                    self.url(),
                    self.body_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every element matching `css`, now.
    pub fn find_all(&self, css: &str) -> Vec<El> {
        let v = self.raw(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(|s| El(s.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn click(&self, e: &El) {
        self.raw("POST", &format!("/element/{}/click", e.0), Some(json!({})));
    }

    pub fn send_keys(&self, e: &El, text: &str) {
        self.raw(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        );
    }

    pub fn text(&self, e: &El) -> String {
        self.raw("GET", &format!("/element/{}/text", e.0), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn attr(&self, e: &El, name: &str) -> Option<String> {
        self.raw("GET", &format!("/element/{}/attribute/{name}", e.0), None)
            .as_str()
            .map(str::to_string)
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its value.
    pub fn exec(&self, script: &str, args: Vec<Value>) -> Value {
        self.raw(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Runs asynchronous `script`: its last argument is the callback that ends it with a
    /// value.
    pub fn exec_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.raw(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// An element as a script argument.
    pub fn arg(e: &El) -> Value {
        json!({ ELEMENT: e.0 })
    }

    /// The visible text of the whole page.
    pub fn body_text(&self) -> String {
        self.exec(
            "return document.body ? document.body.innerText : ''",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Waits until `check` holds, polling; panics with `what` and a screenshot otherwise.
    #[track_caller]
    pub fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut(&Browser) -> bool) {
        let deadline = Instant::now() + timeout;
        while !check(self) {
            if Instant::now() > deadline {
                self.screenshot("failed-wait");
                panic!(
                    "timed out waiting for {what} on {}; page text:\n{}",
                    self.url(),
                    self.body_text()
                );
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Saves a PNG of the viewport as `target/web-artifacts/<step>.png`.
    pub fn screenshot(&self, step: &str) -> PathBuf {
        let b64 = self.raw("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().unwrap_or_default());
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        let path = self.artifacts.join(format!("{step}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium; killing chromedriver alone would orphan it.
        if self.base.contains("/session/") {
            let _ = self.try_raw("DELETE", "", None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (what WebDriver's screenshot answers), ignoring whitespace.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u32> = s.bytes().filter_map(val).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut n = 0u32;
        for (i, d) in chunk.iter().enumerate() {
            n |= d << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    out
}

#[test]
fn base64_decoder_matches_known_vectors() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGVsbG8gd29ybGQ="), b"hello world");
    assert_eq!(base64_decode("YWJj"), b"abc");
    assert_eq!(base64_decode("YWI=\n"), b"ab");
}

/// The scenario's data: a 100,000-file tree (`tree/dNNN/fNNNN.txt`, 100 directories of
/// 1,000 small files), a needle to search for, and a `docs` folder to download and
/// restore (nested, an empty file, a few MB of random bytes).
///
/// The files of one directory are hard links of one file: to the snapshot they are
/// 100,000 file entries all the same, but the scratch directory goes away in a second
/// instead of minutes (deleting 100k inodes on a loaded ext4 took 3 minutes here).
fn make_data(root: &Path) {
    for d in 0..100 {
        let dir = root.join(format!("tree/d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        let first = dir.join("f0000.txt");
        std::fs::write(&first, format!("file of d{d:03}\n")).unwrap();
        for f in 1..1000 {
            std::fs::hard_link(&first, dir.join(format!("f{f:04}.txt"))).unwrap();
        }
    }
    std::fs::write(root.join("tree/d042/needle-in-haystack.txt"), "found me\n").unwrap();
    let docs = root.join("docs");
    std::fs::create_dir_all(docs.join("notes")).unwrap();
    std::fs::write(docs.join("report.txt"), "quarterly report\nall good\n").unwrap();
    std::fs::write(docs.join("notes/todo.md"), "- restore drill\n").unwrap();
    std::fs::write(docs.join("notes/empty"), "").unwrap();
    std::fs::write(docs.join("photo.bin"), crate::random_bytes(7, 3 << 20)).unwrap();
}

/// Waits for the browser to finish a download ending in `ext`; returns its path.
fn wait_for_download(b: &Browser, ext: &str) -> PathBuf {
    let dir = b.downloads();
    let mut found = None;
    let mut last_size = None;
    b.wait_for(
        &format!("a .{ext} download"),
        Duration::from_secs(120),
        |_| {
            let names: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map(|rd| rd.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            if names
                .iter()
                .any(|p| p.to_string_lossy().ends_with(".crdownload"))
            {
                return false;
            }
            let Some(p) = names
                .into_iter()
                .find(|p| p.to_string_lossy().ends_with(ext))
            else {
                return false;
            };
            let size = std::fs::metadata(&p).map(|m| m.len()).ok();
            let stable = size.is_some() && size == last_size;
            last_size = size;
            found = Some(p);
            stable
        },
    );
    found.expect("a download")
}

/// Asserts that two trees have the same names, types and file bytes.
fn assert_same_bytes(a: &Path, b: &Path) {
    let ma = std::fs::symlink_metadata(a).unwrap_or_else(|e| panic!("{}: {e}", a.display()));
    let mb = std::fs::symlink_metadata(b).unwrap_or_else(|e| panic!("{}: {e}", b.display()));
    assert_eq!(ma.file_type(), mb.file_type(), "type of {}", b.display());
    if ma.is_file() {
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "content of {}",
            b.display()
        );
    } else if ma.is_dir() {
        let names = |p: &Path| {
            let mut v: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        let (na, nb) = (names(a), names(b));
        assert_eq!(na, nb, "entries of {}", b.display());
        for n in na {
            assert_same_bytes(&a.join(&n), &b.join(&n));
        }
    }
}

/// `s` as a CSS string literal (for attribute selectors).
fn css_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A config fragment: repository `main`, plan `files` over `data`.
fn plan_config(env: &crate::Env) -> String {
    use crate::webkit::toml_str;
    format!(
        "[repositories.main]\nurl = {}\npassword-file = {}\n\
         [sources.files]\npaths = [{}]\n\
         [plans.files]\nrepository = \"main\"\nsources = [\"files\"]\nschedule = \"03:00\"\n",
        toml_str(&env.repo().to_string_lossy()),
        toml_str(&env.path("pw").to_string_lossy()),
        toml_str(&env.path("data").to_string_lossy()),
    )
}

/// Logs in through the login page: the form posts, the cookie is set, the dashboard
/// comes back.
fn log_in(b: &Browser, base: &str, user: &str, password: &str) {
    b.goto(&format!("{base}/"));
    // Without a session the dashboard sends us to the login page.
    b.wait_for("the login page", WAIT, |b| b.url().contains("/login"));
    let u = b.find("#username");
    b.send_keys(&u, user);
    let p = b.find("#password");
    b.send_keys(&p, password);
    b.screenshot("login");
    b.click(&b.find("#login"));
    b.wait_for("the dashboard after login", WAIT, |b| {
        !b.url().contains("/login") && b.find_now("#plans-table").is_some()
    });
}

#[test]
fn chromium_drives_login_dashboard_browse_download_restore_trigger_logout() {
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("{:>7.1?} {what}", t0.elapsed());
    let env = crate::Env::new();
    make_data(&env.path("data"));
    step("data made");
    crate::ok(env.cairn(&["init"]));
    let server = crate::webkit::WebServer::start(
        &env,
        &plan_config(&env),
        &[("alice", "alice-pw", "admin")],
    );
    let config = server.config.to_string_lossy().to_string();
    crate::ok(env.cairn(&["--config", &config, "run", "files"]));
    step("first backup done");
    let b = Browser::start();
    step("browser started");

    // Login, then the dashboard shows the plan with its last run.
    log_in(&b, &server.base, "alice", "alice-pw");
    let row = b.find("#plan-files");
    let text = b.text(&row);
    assert!(text.contains("files"), "plan row: {text}");
    // The stylesheet is applied (the script and CSS come from /assets).
    let bg = b.exec(
        "return getComputedStyle(document.querySelector('table')).borderCollapse",
        vec![],
    );
    assert_eq!(bg, "collapse", "cairn.css not applied");
    // The screenshots are of a 1280×800 viewport.
    let size = b.exec("return [innerWidth, innerHeight]", vec![]);
    assert_eq!(size, json!([1280, 800]));
    b.screenshot("dashboard");
    step("dashboard");

    // Browse into the 100k-file snapshot: from the snapshot list down to one directory
    // of 1,000 files, one click per level.
    b.click(&b.find("body > nav a[href=\"/snapshots\"]"));
    b.click(&b.find("table.snapshots a.browse"));
    let target = env.path("data/tree/d042");
    let mut data_url = String::new();
    for comp in target.components().skip(1) {
        let name = comp.as_os_str().to_string_lossy().to_string();
        let css = format!("tr.entry[data-name={}] a.open", css_str(&name));
        let link = b.find(&css);
        let before = b.url();
        let started = Instant::now();
        b.click(&link);
        b.wait_for(&format!("the listing of {name}"), WAIT, |b| {
            b.url() != before && b.find_now("table#listing").is_some()
        });
        eprintln!("opened {name} in {:?}", started.elapsed());
        if name == "data" {
            data_url = b.url();
        }
    }
    let entries = b.find_all("table#listing tr.entry");
    assert_eq!(entries.len(), 1001, "d042 holds 1000 files and the needle");
    b.screenshot("browser");
    step("browsed");

    // Search the whole snapshot by name, from its root (the breadcrumbs' snapshot link).
    let crumbs = b.find_all("#breadcrumbs a");
    assert!(crumbs.len() >= 2, "breadcrumbs up to the snapshot");
    b.click(&crumbs[1]);
    b.wait_for("the snapshot's root", WAIT, |b| {
        b.find_all("#breadcrumbs a").len() == 2
    });
    let q = b.find("#search-q");
    b.send_keys(&q, "needle");
    b.click(&b.find("#search-go"));
    b.wait_for("search results", WAIT, |b| {
        b.find_now("table#find-results").is_some()
    });
    let hits = b.find_all("table#find-results tr.hit");
    assert_eq!(hits.len(), 1, "one file is named like the needle");
    // ... found among every entry of the snapshot, not one directory's.
    let summary = b.body_text();
    let searched: u64 = summary
        .split("among ")
        .nth(1)
        .map(|t| {
            t.chars()
                .take_while(|c| c.is_ascii_digit() || *c == ',')
                .filter(|c| *c != ',')
                .collect::<String>()
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no 'among N entries' in {summary}"));
    assert!(searched > 100_000, "searched {searched} entries: {summary}");
    assert!(b.text(&hits[0]).contains("needle-in-haystack.txt"));
    b.screenshot("search");
    step("searched");

    // Download a folder as .tar.gz from the pick form, and compare it with the source.
    b.goto(&data_url);
    b.click(&b.find("tr.entry[data-name=\"docs\"] input[name=item]"));
    b.screenshot("pick");
    b.click(&b.find("#download-tgz"));
    let archive = wait_for_download(&b, "tar.gz");
    let out = env.path("downloaded");
    std::fs::create_dir_all(&out).unwrap();
    let tar = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&out)
        .output()
        .expect("run tar");
    assert!(
        tar.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&tar.stderr)
    );
    assert_same_bytes(&env.path("data/docs"), &out.join("docs"));
    step("downloaded");

    // Restore one file to a path on the server (admin): pick it, preview, restore.
    b.goto(&data_url);
    b.click(&b.find("tr.entry[data-name=\"docs\"] a.open"));
    b.click(&b.find("tr.entry[data-name=\"report.txt\"] input[name=item]"));
    b.click(&b.find("#restore-picked"));
    let restored = env.path("restored");
    let t = b.find("#restore-target");
    b.send_keys(&t, &restored.to_string_lossy());
    b.click(&b.find("#restore-preview"));
    let created = b.find("#preview-create");
    b.wait_for("the preview's count", WAIT, |b| b.text(&created) == "1");
    b.click(&b.find("#restore-run"));
    b.wait_for("the restore report", WAIT, |b| {
        b.find_now("#restore-report[data-outcome]").is_some()
    });
    let report = b.find("#restore-report");
    assert_eq!(
        b.attr(&report, "data-outcome").as_deref(),
        Some("complete"),
        "{}",
        b.text(&report)
    );
    b.screenshot("restore");
    let files = crate::files_under(&restored);
    assert_eq!(files.len(), 1, "one file restored: {files:?}");
    assert!(files[0].ends_with("report.txt"), "{files:?}");
    assert_eq!(
        std::fs::read(&files[0]).unwrap(),
        std::fs::read(env.path("data/docs/report.txt")).unwrap()
    );
    step("restored");

    // The script's helpers: fetch() POSTs carry the session's CSRF token by themselves
    // (an explicit wrong token is left alone and refused), relative times.
    let snapshot = data_url
        .split("/browse/main/")
        .nth(1)
        .and_then(|t| t.split(['?', '/']).next())
        .expect("snapshot id in the browse URL")
        .to_string();
    let post = |headers: Value| {
        b.exec_async(
            "const [url, body, headers] = arguments; const done = arguments[arguments.length - 1];
             fetch(url, {method: 'POST', headers: Object.assign({'Content-Type': 'application/json'}, headers), body: JSON.stringify(body)})
               .then(r => done(r.status), e => done(String(e)));",
            vec![
                json!(format!("/api/repositories/main/snapshots/{snapshot}/restore/preview")),
                json!({"items": [env.path("data/docs/report.txt").to_string_lossy()],
                       "target": env.path("preview-only").to_string_lossy(), "overwrite": false}),
                headers,
            ],
        )
    };
    assert_eq!(post(json!({})), json!(200), "fetch with the helper's token");
    assert_eq!(
        post(json!({"X-CSRF-Token": "forged"})),
        json!(403),
        "a forged token is refused"
    );
    let ago = b.exec(
        "return [cairn.ago(new Date(Date.now() - 3 * 3600e3)), cairn.ago(new Date(Date.now() + 5 * 60e3)), cairn.ago(new Date(Date.now() - 10e3))]",
        vec![],
    );
    assert_eq!(ago, json!(["3 h ago", "in 5 min", "just now"]));
    step("script helpers");

    // Trigger a backup from the dashboard (admin) and watch its progress reach the end on
    // its run page, live. New data first, so the run has something to show.
    std::fs::write(env.path("data/big.bin"), crate::random_bytes(11, 96 << 20)).unwrap();
    b.click(&b.find("body > nav a[href=\"/\"]"));
    b.click(&b.find("#trigger-backup-files"));
    b.click(&b.find("#live-link-files"));
    b.wait_for("the run page", WAIT, |b| b.url().contains("/runs/"));
    let progress = b.find("progress#run-progress");
    let mut seen: Vec<f64> = Vec::new();
    let mut mid_run_shot = false;
    b.wait_for("the run's end", Duration::from_secs(300), |b| {
        let v = b.exec("return arguments[0].value", vec![Browser::arg(&progress)]);
        let v = v.as_f64().unwrap_or(-1.0);
        if seen.last() != Some(&v) {
            seen.push(v);
        }
        if v > 0.0 && v < 1.0 && !mid_run_shot {
            b.screenshot("run-progress");
            mid_run_shot = true;
        }
        b.find_now("#run-result:not([data-result=running])")
            .is_some()
    });
    let result = b.find("#run-result");
    assert_eq!(
        b.attr(&result, "data-result").as_deref(),
        Some("success"),
        "{}",
        b.body_text()
    );
    let last = b.exec("return arguments[0].value", vec![Browser::arg(&progress)]);
    assert_eq!(
        last.as_f64(),
        Some(1.0),
        "progress at the end; seen {seen:?}"
    );
    assert!(
        seen.iter().any(|v| *v > 0.0 && *v < 1.0),
        "no progress between start and end was shown: {seen:?}"
    );
    b.screenshot("run-finished");
    step("triggered backup finished");
    // The dashboard now shows both runs in the plan's chart.
    b.click(&b.find("body > nav a[href=\"/\"]"));
    b.find("#plan-files");
    b.screenshot("dashboard-after-run");

    // Dark mode follows the system's preference.
    b.cdp(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    );
    let luminance = |b: &Browser| {
        let rgb = b.exec(
            "return getComputedStyle(document.body).backgroundColor.match(/\\d+/g).slice(0, 3).map(Number)",
            vec![],
        );
        let c: Vec<f64> = rgb
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        assert_eq!(c.len(), 3, "background colour {rgb}");
        0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]
    };
    let dark = luminance(&b);
    assert!(dark < 60.0, "dark background expected, luminance {dark}");
    b.screenshot("dashboard-dark");
    step("dark");
    b.cdp(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "light"}]}),
    );
    assert!(luminance(&b) > 200.0, "light background again");

    // A phone: the page fits the screen's width (wide tables scroll inside themselves).
    b.cdp(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true}),
    );
    b.goto(&format!("{}/", server.base));
    b.find("#plan-files");
    let widths = b.exec(
        "return [document.documentElement.scrollWidth, innerWidth]",
        vec![],
    );
    assert!(
        widths[0].as_f64() <= widths[1].as_f64(),
        "the dashboard overflows a phone's width: {widths}"
    );
    b.screenshot("dashboard-phone");
    step("phone");
    b.cdp(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
    );

    step("before logout");
    // Logout ends the session: the dashboard asks for a login again.
    b.click(&b.find("#logout"));
    b.wait_for("the login page after logout", WAIT, |b| {
        b.url().contains("/login")
    });
    b.goto(&format!("{}/", server.base));
    b.wait_for("the login page for a logged-out browser", WAIT, |b| {
        b.url().contains("/login") && b.find_now("#username").is_some()
    });
    step("logged out");
    drop(b);
    step("browser closed");
    drop(server);
    step("server stopped");
    drop(env);
    step("scratch removed");
}

#[test]
fn assets_are_served_without_a_session_typed_and_revalidated_by_etag() {
    let env = crate::Env::new();
    let server = crate::webkit::WebServer::start(&env, "", &[("alice", "alice-pw", "admin")]);
    let anon = server.anon();
    for (name, ty, needle) in [
        ("cairn.css", "text/css", "prefers-color-scheme: dark"),
        ("cairn.js", "text/javascript", "X-CSRF-Token"),
        ("favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let r = anon.get(&format!("/assets/{name}"));
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert!(
            r.header("content-type").is_some_and(|t| t.starts_with(ty)),
            "{name}: {:?}",
            r.header("content-type")
        );
        assert!(r.text().contains(needle), "{name}");
        let tag = r.header("etag").expect("an ETag").to_string();
        let again = anon.request(
            "GET",
            &format!("/assets/{name}"),
            &[("If-None-Match", &tag)],
            None,
        );
        assert_eq!(again.status, 304, "{name} revalidated");
        assert!(again.body.is_empty());
        let stale = anon.request(
            "GET",
            &format!("/assets/{name}"),
            &[("If-None-Match", "\"00000000-0\"")],
            None,
        );
        assert_eq!(stale.status, 200, "{name} with another tag");
    }
    for bad in ["/assets/nope.css", "/assets/..%2FCargo.toml", "/assets/"] {
        let r = anon.get(bad);
        assert_eq!(r.status, 404, "{bad}: {}", r.text());
    }
}
