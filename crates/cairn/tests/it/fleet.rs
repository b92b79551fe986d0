//! A fleet into one repository: eight `cairn backup --host hN` processes and a
//! `restic backup` at once into one Garage-backed (S3) repository, then `forget --group-by
//! host --keep-last 1 --prune` while two of the backups are still writing. Every host's
//! kept snapshot restores byte for byte with both tools, both checks read every pack clean,
//! and `cairn status --repositories` and the web dashboard show every host.
//!
//! The behaviour decided for forget + prune beside running backups: it *waits*. A backup
//! holds a shared lock from before it uploads its first pack until its snapshot is saved;
//! forget and prune need the exclusive lock, which cannot coexist with a shared one. With
//! `--retry-lock` they wait for the running backups to finish (saying so on stderr), then
//! see their snapshots and packs like any others; without it they refuse at once (exit 11,
//! naming the lock), and a retry afterwards succeeds. Waiting is what keeps a running
//! backup's packs, uploaded but in no index yet, from looking unreferenced to prune.

use crate::peers::{self, Peer};
use crate::webkit::{toml_str, WebServer};
use crate::*;
use cairn_repo::backend::{self, FileType};
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// Reads `pipe` line by line on a thread: each line as it comes on the receiver, all of
/// them joined (with newlines) when the thread ends.
fn follow_lines(
    pipe: impl std::io::Read + Send + 'static,
) -> (mpsc::Receiver<String>, std::thread::JoinHandle<String>) {
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    (rx, reader)
}

/// One S3 repository in a Garage, with what both tools need to reach it.
struct Fleet {
    env: Env,
    url: String,
    vars: Vec<(String, String)>,
    _garage: Peer,
}

impl Fleet {
    fn new() -> Fleet {
        let g = peers::garage();
        let url = format!("s3:{}/{}/fleet", g.var("S3_ENDPOINT"), g.var("S3_BUCKET"));
        let vars = [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
        ]
        .iter()
        .map(|k| (k.to_string(), g.var(k).to_string()))
        .collect();
        Fleet {
            env: Env::new(),
            url,
            vars,
            _garage: g,
        }
    }

    /// cairn on host `host`: its own cache, as on its own machine.
    fn cairn(&self, host: &str, args: &[&str]) -> Command {
        let mut c = self.env.cairn_cmd(Path::new(&self.url), &[]);
        c.arg("--cache-dir")
            .arg(self.env.path(&format!("cache-{host}")))
            .args(args)
            .envs(self.vars.iter().map(|(k, v)| (k, v)));
        c
    }

    fn restic(&self, args: &[&str]) -> Command {
        let mut c = Command::new(restic_bin());
        c.arg("-r")
            .arg(&self.url)
            .arg("--password-file")
            .arg(self.env.path("pw"))
            .arg("--no-cache")
            .args(args)
            .envs(self.vars.iter().map(|(k, v)| (k, v)));
        c
    }

    /// The repository through the library (no lock taken: it only reads).
    fn open(&self) -> cairn_repo::repository::Repository {
        let opts = backend::Options {
            env: self.vars.iter().cloned().collect(),
            ..Default::default()
        };
        let be = backend::open(&self.url, &opts).expect("open the S3 backend");
        cairn_repo::repository::Repository::open(be, PASSWORD).expect("open the repository")
    }

    /// A cairn.toml naming this repository `fleet` (credentials in an env file, 0600).
    fn config(&self) -> String {
        let env_file = self.env.path("fleet.env");
        let text: String = self
            .vars
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        std::fs::write(&env_file, text).unwrap();
        std::fs::set_permissions(
            &env_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        format!(
            "[repositories.fleet]\nurl = {}\npassword-file = {}\nenv-file = {}\n",
            toml_str(&self.url),
            toml_str(&self.env.path("pw").to_string_lossy()),
            toml_str(&env_file.to_string_lossy()),
        )
    }
}

/// Children killed when the test ends, so a failure leaves no backup waiting at its gate.
struct Kill(Vec<Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Packs in the backend that no index names: packs of a backup still running.
fn unindexed_packs(repo: &cairn_repo::repository::Repository) -> BTreeSet<cairn_repo::Id> {
    let listed = repo.pack_sizes().unwrap();
    let mut indexed = BTreeSet::new();
    for id in repo.list_ids(FileType::Index).unwrap() {
        let f: cairn_repo::index::IndexFile = repo.load_json(FileType::Index, &id).unwrap();
        indexed.extend(f.packs.into_iter().map(|p| p.id));
    }
    listed
        .into_keys()
        .filter(|p| !indexed.contains(p))
        .collect()
}

/// Waits for `what` up to a minute (a bound against hanging, not a timing assertion);
/// on timeout the panic message adds what `explain` says.
#[track_caller]
fn wait_for(what: &str, mut done: impl FnMut() -> bool, mut explain: impl FnMut() -> String) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {what} within 60 s\n{}",
            explain()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Host `i`'s files: its own random data and note, and (fast hosts) 2 MiB every fast host
/// and restic-box share, so the repository deduplicates across hosts.
fn write_tree(dir: &Path, seed: u64, version: u32, shared: bool) {
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(
        dir.join("own.bin"),
        random_bytes(seed * 10 + version as u64, 3 * MIB / 2),
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/note.txt"),
        format!("host {seed}, version {version}\n"),
    )
    .unwrap();
    if shared {
        std::fs::write(dir.join("shared.bin"), random_bytes(4242, 2 * MIB)).unwrap();
    }
}

fn snapshot_id(out: std::process::Output) -> String {
    let v = json(&ok(out));
    v["snapshot_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a snapshot id in {v}"))
        .to_string()
}

#[test]
fn a_fleet_backs_up_into_one_s3_repository_while_forget_and_prune_wait_for_the_last_writers() {
    let t0 = Instant::now();
    let phase = |what: &str| eprintln!("fleet: {what} at {:.1} s", t0.elapsed().as_secs_f64());
    let f = Fleet::new();
    let env = &f.env;
    ok(f.cairn("init", &["init"]).output().unwrap());

    // Eight cairn hosts: h0..h3 back up twice (an older snapshot for forget to remove),
    // h4, h5 once, h6, h7 are the slow writers: their tree plus a stream of 20 MiB (more
    // than a pack, so a pack is uploaded) that then waits at a gate the test opens.
    let src = |h: &str| env.path(&format!("src/{h}"));
    let mut stream_parts = BTreeMap::new();
    for i in 0..8u64 {
        let h = format!("h{i}");
        write_tree(&src(&h), i, 1, i < 6);
        if i >= 6 {
            let a = random_bytes(600 + i, 20 * MIB);
            let b = random_bytes(700 + i, MIB / 2);
            std::fs::write(env.path(&format!("{h}.part1")), &a).unwrap();
            std::fs::write(env.path(&format!("{h}.part2")), &b).unwrap();
            stream_parts.insert(h, [a, b].concat());
        }
    }
    write_tree(&src("restic-box"), 99, 1, true);

    // restic beside them. restic 0.14 retries for about a minute to read a lock file that
    // was deleted between its listing and its read (a backup that just ended): the cairn
    // backups start once restic holds its lock ("load index files" comes after).
    let mut restic = Kill(vec![f
        .restic(&["backup", "-v", "--host", "restic-box"])
        .arg(src("restic-box"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(env.path("restic-box.err")).unwrap())
        .spawn()
        .unwrap()]);
    let (rrx, restic_reader) = follow_lines(restic.0[0].stdout.take().unwrap());
    while !rrx
        .recv_timeout(Duration::from_secs(60))
        .expect("restic locked the repository")
        .starts_with("load index files")
    {}

    let mut slow = Kill(Vec::new());
    for h in ["h6", "h7"] {
        let (reached, gate) = (
            env.path(&format!("{h}.reached")),
            env.path(&format!("{h}.gate")),
        );
        // The gate gives up after a minute, so a failed test leaves nothing waiting.
        let cmd = format!(
            "cat {p1}; : > {reached}; i=0; while [ ! -e {gate} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; cat {p2}",
            p1 = env.path(&format!("{h}.part1")).display(),
            p2 = env.path(&format!("{h}.part2")).display(),
            reached = reached.display(),
            gate = gate.display(),
        );
        let child = f
            .cairn(
                h,
                &[
                    "--json",
                    "backup",
                    "--host",
                    h,
                    "--from-command",
                    &format!("/stream/{h}.bin={cmd}"),
                    src(h).to_str().unwrap(),
                ],
            )
            .stdout(std::fs::File::create(env.path(&format!("{h}.out"))).unwrap())
            .stderr(std::fs::File::create(env.path(&format!("{h}.err"))).unwrap())
            .spawn()
            .unwrap();
        slow.0.push(child);
    }
    let fast: Vec<_> = (0..6u64)
        .map(|i| {
            let h = format!("h{i}");
            let dir = src(&h);
            let old = [
                "--json",
                "backup",
                "--host",
                &h,
                "--time",
                "2026-01-02 03:04:05",
            ];
            let mut first = f.cairn(&h, &old);
            first.arg(&dir);
            let mut then = f.cairn(&h, &["--json", "backup", "--host", &h]);
            then.arg(&dir);
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                if i < 4 {
                    ids.push(snapshot_id(first.output().unwrap()));
                    write_tree(&dir, i, 2, true);
                }
                ids.push(snapshot_id(then.output().unwrap()));
                (format!("h{i}"), ids)
            })
        })
        .collect();
    let mut ids: BTreeMap<String, Vec<String>> = fast
        .into_iter()
        .map(|t| t.join().expect("a fast backup"))
        .collect();
    let restic_status = restic.0[0].wait().unwrap();
    let restic_text = restic_reader.join().unwrap();
    assert!(
        restic_status.success(),
        "restic backup: {restic_status}\n{restic_text}\n{}",
        std::fs::read_to_string(env.path("restic-box.err")).unwrap_or_default()
    );
    let restic_id = restic_text
        .lines()
        .find_map(|l| l.strip_prefix("snapshot ")?.strip_suffix(" saved"))
        .unwrap_or_else(|| panic!("restic's snapshot id in {restic_text}"))
        .to_string();
    ids.insert("restic-box".into(), vec![restic_id]);

    phase("fast backups done");
    // The slow writers are inside their backups (lock held, command running) and have
    // uploaded a pack no index names yet.
    wait_for(
        "slow writer at its gate",
        || {
            ["h6", "h7"]
                .iter()
                .all(|h| env.path(&format!("{h}.reached")).exists())
        },
        String::new,
    );
    let repo = f.open();
    let mut in_flight = BTreeSet::new();
    wait_for(
        "pack of each running backup",
        || {
            in_flight = unindexed_packs(&repo);
            in_flight.len() >= 2
        },
        // Why: a writer that ended (its stream's `cat` then still marks the gate as
        // reached) or one that never stored a pack.
        || {
            ["h6", "h7"]
                .iter()
                .zip(slow.0.iter_mut())
                .map(|(h, c)| {
                    format!(
                        "{h}: {:?}, stderr: {}",
                        c.try_wait(),
                        std::fs::read_to_string(env.path(&format!("{h}.err"))).unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        },
    );

    phase("slow writers at their gates");
    // Without --retry-lock, forget refuses at once and says why.
    let refused = f
        .cairn(
            "admin",
            &[
                "forget",
                "--group-by",
                "host",
                "--keep-last",
                "1",
                "--prune",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(11), "{}", stderr(&refused));
    let why = stderr(&refused);
    assert!(
        why.contains("already locked") && why.contains("shared lock"),
        "{why}"
    );

    // With --retry-lock it waits for the writers.
    let mut forget = Kill(vec![f
        .cairn(
            "admin",
            &[
                "--retry-lock",
                "2m",
                "forget",
                "--group-by",
                "host",
                "--keep-last",
                "1",
                "--prune",
            ],
        )
        .stdout(std::fs::File::create(env.path("forget.out")).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()]);
    let (rx, reader) = follow_lines(forget.0[0].stderr.take().unwrap());
    let waiting = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("forget says it waits for the lock");
        if line.contains("retrying") {
            break line;
        }
    };
    assert!(
        waiting.contains("shared lock") && waiting.contains("retrying (--retry-lock)"),
        "{waiting}"
    );
    for c in slow.0.iter_mut() {
        assert!(
            c.try_wait().unwrap().is_none(),
            "the slow writers are still running while forget waits"
        );
    }
    assert!(forget.0[0].try_wait().unwrap().is_none());

    phase("forget waits");
    // Open the gates: the writers finish, then forget and prune run.
    for h in ["h6", "h7"] {
        std::fs::write(env.path(&format!("{h}.gate")), b"").unwrap();
    }
    for (h, mut c) in ["h6", "h7"].into_iter().zip(std::mem::take(&mut slow.0)) {
        let status = c.wait().unwrap();
        let out = std::fs::read_to_string(env.path(&format!("{h}.out"))).unwrap();
        let err = std::fs::read_to_string(env.path(&format!("{h}.err"))).unwrap();
        assert!(status.success(), "backup of {h}: {status}\n{out}\n{err}");
        let id = json(&out)["snapshot_id"].as_str().unwrap().to_string();
        ids.insert(h.to_string(), vec![id]);
    }
    let forget_status = forget.0[0].wait().unwrap();
    let forget_err = reader.join().unwrap();
    let forget_text = std::fs::read_to_string(env.path("forget.out")).unwrap();
    assert!(
        forget_status.success(),
        "forget failed:\n{forget_text}\n{forget_err}"
    );
    assert!(forget_text.contains("removed 4 snapshots"), "{forget_text}");
    // It read the snapshot list after the late writers saved theirs: it waited.
    for h in ["h6", "h7"] {
        let short = &ids[h][0][..8];
        assert!(
            forget_text.contains(short),
            "{h} {short} kept:\n{forget_text}"
        );
    }

    phase("forget and prune done");
    // One snapshot per host is left: the newest of each.
    let snaps = json(&ok(f
        .cairn("admin", &["--json", "snapshots"])
        .output()
        .unwrap()));
    let mut left: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in snaps.as_array().unwrap() {
        left.entry(s["hostname"].as_str().unwrap().to_string())
            .or_default()
            .push(s["id"].as_str().unwrap().to_string());
    }
    // restic prints a short id: the full one is the listed id it starts.
    let short = ids["restic-box"][0].clone();
    ids.insert(
        "restic-box".into(),
        vec![left["restic-box"]
            .iter()
            .find(|id| id.starts_with(&short))
            .unwrap_or_else(|| panic!("restic's snapshot {short}: {snaps}"))
            .clone()],
    );
    let expected: BTreeMap<String, Vec<String>> = ids
        .iter()
        .map(|(h, v)| (h.clone(), vec![v.last().unwrap().clone()]))
        .collect();
    assert_eq!(left, expected, "{forget_text}");

    // The running backups' packs were kept, and are indexed now.
    let repo = f.open();
    let listed = repo.pack_sizes().unwrap();
    for p in &in_flight {
        assert!(
            listed.contains_key(p),
            "pack {p} of a running backup was deleted"
        );
    }
    assert!(unindexed_packs(&repo).is_empty());

    phase("listed");
    // Every host's snapshot restores byte for byte, with cairn and with restic.
    let restores: Vec<_> = expected
        .iter()
        .flat_map(|(h, id)| {
            let id = id[0].clone();
            ["cairn", "restic"].map(|tool| {
                let target = env.path(&format!("restore/{tool}/{h}"));
                let args = ["restore", &id, "--target", target.to_str().unwrap()];
                let mut c = if tool == "cairn" {
                    f.cairn(&format!("restore-{h}"), &args)
                } else {
                    // Read-only, and clear of restic 0.14's wait on deleted locks.
                    let mut c = f.restic(&args);
                    c.arg("--no-lock");
                    c
                };
                (
                    h.clone(),
                    target,
                    std::thread::spawn(move || c.output().unwrap()),
                )
            })
        })
        .collect();
    for (h, target, t) in restores {
        ok(t.join().unwrap());
        let dir = src(&h);
        assert_same_tree(&dir, &target.join(dir.strip_prefix("/").unwrap()));
        if let Some(bytes) = stream_parts.get(&h) {
            let got = std::fs::read(target.join(format!("stream/{h}.bin"))).unwrap();
            assert!(
                got == *bytes,
                "the stream of {h} restored from {}",
                target.display()
            );
        }
    }

    phase("restored");
    ok(f.restic(&["check", "--read-data"]).output().unwrap());
    ok(f.cairn("admin", &["check", "--read-data"])
        .output()
        .unwrap());

    phase("checked");
    // `cairn status --repositories` shows every host of the repository.
    let config = env.path("cairn.toml");
    std::fs::write(&config, f.config()).unwrap();
    let out = env.config_run(&config, &["--json", "status", "--repositories"]);
    let st = json(&ok(out));
    let r = &st["repositories"][0];
    assert_eq!(r["repository"], "fleet", "{st}");
    assert_eq!(r["snapshots"], 9, "{st}");
    assert_eq!(r["more_hosts"], 0, "{st}");
    let rows: BTreeMap<String, (u64, String)> = r["by_host"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap().to_string(),
                (
                    h["snapshots"].as_u64().unwrap(),
                    h["latest_id"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    let want: BTreeMap<String, (u64, String)> = expected
        .iter()
        .map(|(h, v)| (h.clone(), (1, v[0].clone())))
        .collect();
    assert_eq!(rows, want, "{st}");
    let restic_row = r["by_host"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "restic-box")
        .unwrap();
    assert_eq!(
        restic_row["latest_paths"][0],
        src("restic-box").to_str().unwrap()
    );
    // Shared content is stored once (prune removed the copies concurrent uploads made):
    // well under the sum of the hosts' files.
    let total: u64 = ids
        .keys()
        .flat_map(|h| files_under(&src(h)))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum::<u64>()
        + stream_parts.values().map(|b| b.len() as u64).sum::<u64>();
    let size = r["size"].as_u64().unwrap();
    assert!(
        size + 6 * (MIB as u64) < total,
        "repository {size} bytes for {total} bytes of files"
    );

    let out = env.config_run(&config, &["status", "--repositories"]);
    let text = ok(out);
    assert!(
        text.contains("hosts of fleet (9 hosts, most recent first):"),
        "{text}"
    );
    for (h, id) in &expected {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{h} ")))
            .unwrap_or_else(|| panic!("a line for {h}:\n{text}"));
        assert!(line.contains(&id[0][..8]), "{line}");
    }

    phase("status");
    // The dashboard and the status API show the same hosts.
    let server = WebServer::start(env, &f.config(), &[("vera", "vera-pw", "viewer")]);
    let vera = server.login("vera", "vera-pw");
    let api = vera.get("/api/status").json();
    assert_eq!(
        api["repositories"][0]["by_host"], r["by_host"],
        "{api}\n{st}"
    );
    let html = vera.get("/").text();
    assert!(html.contains(r#"id="hosts-fleet""#), "{html}");
    assert_eq!(html.matches(r#"<tr class="host""#).count(), 9, "{html}");
    for (h, id) in &expected {
        assert!(html.contains(&format!(r#"data-host="{h}""#)), "{h}: {html}");
        assert!(html.contains(&format!("/browse/fleet/{}", id[0])), "{html}");
    }
    assert!(html.contains(r##"<a href="#hosts-fleet" class="hosts-link">9 hosts</a>"##));
}

/// A repository's host names come from whoever writes into it: the host tables are
/// bounded (the most recent [`MAX`] hosts, then "and K more") and the names escaped, in
/// the terminal as in the dashboard.
#[test]
fn host_tables_are_bounded_and_escape_hostile_host_names() {
    const MAX: usize = 50;
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    ok(env.cairn(&["init"]));
    let first = json(&ok(env.cairn(&[
        "backup",
        "--json",
        "--host",
        "plain",
        src.to_str().unwrap(),
    ])));
    let backend = std::sync::Arc::new(cairn_repo::backend::local::LocalBackend::new(env.repo()));
    let repo = cairn_repo::repository::Repository::open(backend, PASSWORD).unwrap();
    let id = cairn_repo::Id::parse(first["snapshot_id"].as_str().unwrap()).unwrap();
    let base = cairn_repo::snapshot::Snapshot::load(&repo, &id).unwrap();
    // 60 more hosts, newer than `plain`; the newest is the hostile one.
    for i in 0..60i64 {
        let mut s = base.clone();
        s.time = base.time + chrono::TimeDelta::minutes(i + 1);
        s.hostname = if i == 59 {
            "<img src=x onerror=alert(1)>\u{1b}[2J\nevil".to_string()
        } else {
            format!("host-{i:02}")
        };
        s.save(&repo).unwrap();
    }
    let config = env.path("cairn.toml");
    let repo_toml = format!(
        "[repositories.main]\nurl = {}\npassword-file = {}\n",
        toml_str(&env.repo().to_string_lossy()),
        toml_str(&env.path("pw").to_string_lossy())
    );
    std::fs::write(&config, &repo_toml).unwrap();

    let st = json(&ok(
        env.config_run(&config, &["--json", "status", "--repositories"])
    ));
    let r = &st["repositories"][0];
    let rows = r["by_host"].as_array().unwrap();
    assert_eq!(
        (rows.len(), r["more_hosts"].as_u64()),
        (MAX, Some(11)),
        "{st}"
    );
    assert!(
        rows[0]["host"].as_str().unwrap().starts_with("<img"),
        "newest first: {st}"
    );
    assert_eq!(rows[1]["host"], "host-58");
    assert_eq!(r["hosts"].as_array().unwrap().len(), 61);

    let text = ok(env.config_run(&config, &["status", "--repositories"]));
    assert!(
        !text.contains('\u{1b}'),
        "an escape sequence reached the terminal: {text:?}"
    );
    assert!(
        text.contains("<img src=x onerror=alert(1)>\\u{1b}[2J\\u{a}evil"),
        "{text}"
    );
    assert!(
        text.contains("hosts of main (61 hosts, most recent first):"),
        "{text}"
    );
    assert!(text.contains("... and 11 more hosts"), "{text}");
    assert!(
        !text.contains("host-08 "),
        "an old host is not listed: {text}"
    );
    assert!(text.contains("61 hosts"), "{text}");

    let server = WebServer::start(&env, &repo_toml, &[("vera", "vera-pw", "viewer")]);
    let html = server.login("vera", "vera-pw").get("/").text();
    assert_eq!(html.matches(r#"<tr class="host""#).count(), MAX, "{html}");
    assert!(html.contains("and 11 more hosts"), "{html}");
    assert!(
        !html.contains("<img src=x"),
        "a host name as markup: {html}"
    );
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{html}"
    );
    assert!(html.contains(r#"data-host="host-58""#));
    assert!(!html.contains(r#"data-host="host-08""#));
    assert!(html.contains("61 hosts"));
}
