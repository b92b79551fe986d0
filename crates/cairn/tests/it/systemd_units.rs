//! Issue 13, point 3: `cairn systemd generate` writes units whose sandbox lets a plan write
//! everything it writes, that systemd accepts, and `cairn status --alert` (run by the
//! generated cairn-alert.timer) notifies an overdue plan once per overdue episode.

use crate::plans::Receiver;
use crate::{ok, Env};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `ReadWritePaths=` of a unit, without their `-` prefix.
fn read_write_paths(unit: &str) -> Vec<PathBuf> {
    unit.lines()
        .filter_map(|l| l.strip_prefix("ReadWritePaths="))
        .flat_map(|l| l.split_whitespace())
        .map(|w| PathBuf::from(w.trim_start_matches('-')))
        .collect()
}

/// `systemd-analyze verify` on one unit file: it must succeed and say nothing about the
/// unit (an unknown key or a bad value is only a warning there).
fn verify(unit: &Path) {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(unit)
        .output()
        .expect("systemd-analyze (systemd 252) is needed to verify generated units");
    let name = unit.file_name().unwrap().to_str().unwrap();
    let stem = name.rsplit_once('.').unwrap().0;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let about: Vec<&str> = stderr.lines().filter(|l| l.contains(stem)).collect();
    assert!(
        out.status.success() && about.is_empty(),
        "systemd-analyze verify {name}: {}\n{stderr}\n{}",
        out.status,
        std::fs::read_to_string(unit).unwrap()
    );
}

#[test]
fn generated_units_may_write_every_path_a_plan_writes_and_pass_systemd_analyze_verify() {
    let env = Env::new();
    ok(env.cairn(&["init"]));
    let usb = env.path("usb");
    ok(env.cairn_repo(&usb, &["init"]));
    let main = env.path("cfg/cairn.toml");
    std::fs::create_dir_all(main.parent().unwrap()).unwrap();
    let state = env.path("state");
    // A Btrfs snapshot source under /home: the path does not exist here, so its
    // subvolume cannot be found and every directory above it may hold the snapshots.
    std::fs::write(
        &main,
        format!(
            "[settings]\nstate-dir = \"{state}\"\nmetrics = {{ textfile = \"{tf}\" }}\n\
             [repositories.main]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\n\
             [repositories.usb]\nurl = \"local:{usb}\"\npassword-file = \"{pw}\"\n\
             [repositories.offsite]\nurl = \"rest:http://127.0.0.1:9/r\"\npassword-file = \"{pw}\"\ncache-dir = \"{offcache}\"\n\
             [repositories.cloud]\nurl = \"sftp:backup@127.0.0.1:/r\"\npassword-credential = \"cloud-pw\"\nenv-credential = \"cloud-env\"\n\
             [sources.photos]\npaths = [\"/home/cairn-it-nobody/photos\"]\nsnapshot = {{ kind = \"btrfs\" }}\n\
             [plans.home]\nrepository = \"main\"\nsources = [\"photos\"]\nschedule = \"daily\"\n\
             copy-to = [\"usb\", \"offsite\", \"cloud\"]\nrestore-test = {{ files = 2 }}\nmax-age = \"26h\"\n\
             [plans.etc]\nrepository = \"offsite\"\npaths = [\"/etc\"]\nschedule = \"Mon..Fri 02:30\"\n",
            state = state.display(),
            tf = env.path("prom/cairn.prom").display(),
            repo = env.repo().display(),
            usb = usb.display(),
            pw = env.path("pw").display(),
            offcache = env.path("offsite-cache").display(),
        ),
    )
    .unwrap();
    let dir = env.path("units");
    ok(env.config_run(
        &main,
        &["systemd", "generate", "--dir", dir.to_str().unwrap()],
    ));
    let service = std::fs::read_to_string(dir.join("cairn-home.service")).unwrap();
    let rw = read_write_paths(&service);
    let covered = |p: &Path| rw.iter().any(|w| p.starts_with(w));
    for p in [
        state.clone(),
        state.join("restore-test"),
        state.join("work/home"),
        env.repo(),
        usb.clone(),
        env.path("offsite-cache"),
        // The sftp copy-to destination's cache: CAIRN_CACHE_DIR of the generating user.
        env.path("cache"),
        env.path("prom"),
        PathBuf::from("/home/.cairn-snapshots"),
        PathBuf::from("/home/cairn-it-nobody/photos/.cairn-snapshots"),
    ] {
        assert!(covered(&p), "{} not writable in:\n{service}", p.display());
    }
    assert!(
        !covered(Path::new("/home")) && !covered(Path::new("/root/.cache/cairn")),
        "{service}"
    );
    assert!(service.contains("ProtectHome=read-only") && service.contains("ProtectSystem=strict"));
    assert!(
        service.contains(&format!(
            "Environment=CAIRN_CACHE_DIR={}",
            env.path("cache").display()
        )),
        "the service uses the cache the unit lets it write: {service}"
    );
    // cairn creates its state and cache directories on first use; the sandbox cannot.
    assert!(state.is_dir() && env.path("cache").is_dir() && env.path("offsite-cache").is_dir());

    // The copy-to destination's secrets come from systemd credentials: the unit loads them.
    assert!(
        service.contains("\nLoadCredential=cloud-env\nLoadCredential=cloud-pw\n"),
        "{service}"
    );

    let etc = std::fs::read_to_string(dir.join("cairn-etc.service")).unwrap();
    assert!(!etc.contains("LoadCredential"), "{etc}");
    let rw = read_write_paths(&etc);
    assert!(rw.contains(&env.path("offsite-cache")), "{etc}");
    assert!(!rw.iter().any(|p| p == &usb), "{etc}");

    let alert = std::fs::read_to_string(dir.join("cairn-alert.service")).unwrap();
    assert!(alert.contains("status --alert"), "{alert}");
    assert_eq!(read_write_paths(&alert), [state]);
    let alert_timer = std::fs::read_to_string(dir.join("cairn-alert.timer")).unwrap();
    assert!(alert_timer.contains("OnCalendar=hourly"), "{alert_timer}");

    let mut units: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    units.sort();
    let names: Vec<&str> = units
        .iter()
        .map(|u| u.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "cairn-alert.service",
            "cairn-alert.timer",
            "cairn-etc.service",
            "cairn-etc.timer",
            "cairn-home.service",
            "cairn-home.timer"
        ]
    );
    for u in &units {
        verify(u);
    }
}

#[test]
fn status_alert_notifies_an_overdue_plan_once_per_overdue_episode() {
    let rx = Receiver::start();
    let env = Env::new();
    ok(env.cairn(&["init"]));
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), b"hello").unwrap();
    let state = env.path("state");
    let main = env.path("cairn.toml");
    std::fs::write(
        &main,
        format!(
            "[settings]\nstate-dir = \"{}\"\n[repositories.main]\nurl = \"{}\"\npassword-file = \"{}\"\n\
             [plans.nightly]\nrepository = \"main\"\npaths = [\"{}\"]\nmax-age = \"1h\"\n\
             notify = {{ webhook = \"http://127.0.0.1:{}/hook\" }}\n\
             [plans.manual]\nrepository = \"main\"\npaths = [\"{}\"]\n",
            state.display(),
            env.repo().display(),
            env.path("pw").display(),
            data.display(),
            rx.port,
            data.display(),
        ),
    )
    .unwrap();
    let alert = || env.config_run(&main, &["status", "--alert"]);

    // Never backed up: overdue, told once.
    let out = alert();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("nightly") && stdout.contains("OVERDUE") && !stdout.contains("manual"),
        "{stdout}"
    );
    let posts = rx.hook_posts(Some("overdue"));
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0]["plan"], "nightly");
    assert!(
        posts[0]["error"].as_str().unwrap().contains("max-age 1h"),
        "{}",
        posts[0]
    );
    let out = alert();
    assert_eq!(out.status.code(), Some(1), "still overdue: {out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("already notified"));
    assert_eq!(
        rx.hook_posts(Some("overdue")).len(),
        1,
        "the same episode is told once"
    );

    // A success ends the episode.
    ok(env.config_run(&main, &["run", "nightly"]));
    assert_eq!(alert().status.code(), Some(0));
    assert_eq!(rx.hook_posts(Some("overdue")).len(), 1);

    // Two hours later (the history aged), overdue again: a new episode, told again.
    let db = rusqlite::Connection::open(state.join("history.db")).unwrap();
    db.execute(
        "UPDATE operations SET started = started - 7200, finished = finished - 7200",
        [],
    )
    .unwrap();
    drop(db);
    assert_eq!(alert().status.code(), Some(1));
    let posts = rx.hook_posts(Some("overdue"));
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert!(
        !posts[1]["error"].as_str().unwrap().contains("since ever"),
        "{}",
        posts[1]
    );
    assert_eq!(alert().status.code(), Some(1));
    assert_eq!(rx.hook_posts(Some("overdue")).len(), 2);
}
