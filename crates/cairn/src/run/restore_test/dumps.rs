//! `verify-dumps`: the plan's database dumps, restored with the rest, loaded into scratch
//! database servers ([`crate::databases::Scratch`]), one per engine the dumps need. The
//! servers stay up until the restore test's command ran (it may query them), then stop
//! with their [`Servers`].

use crate::databases::{self, Scratch};
use crate::sources::{DbEngine, Dump};
use std::path::Path;
use std::time::Duration;

/// The longest a scratch server may take to answer (the policy's timeout, when shorter):
/// a server that does not start within minutes will not, and an hour is a long wait.
const START_LIMIT: Duration = Duration::from_secs(300);

/// What loading one dump proved, for the restore test's history detail.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct DumpReport {
    /// Its path in the snapshot.
    pub path: String,
    pub databases: Vec<String>,
    pub tables: u64,
    /// Why it did not load; `None`: loaded.
    pub error: Option<String>,
}

/// The scratch servers started for the dumps (stopped and removed when dropped).
#[derive(Default)]
pub(super) struct Servers {
    running: Vec<Scratch>,
}

impl Servers {
    /// How the restore test's command reaches the scratch servers: `PGHOST`, `PGPORT`,
    /// `PGUSER` for PostgreSQL, `MYSQL_UNIX_PORT` and `CAIRN_MYSQL_SOCKET` for MariaDB.
    pub(super) fn env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        for s in &self.running {
            let c = &s.conn;
            match s.engine {
                DbEngine::Postgres => {
                    for (k, v) in [
                        ("PGHOST", c.host.clone()),
                        ("PGPORT", c.port.map(|p| p.to_string())),
                        ("PGUSER", c.user.clone()),
                    ] {
                        if let Some(v) = v {
                            env.push((k.to_string(), v));
                        }
                    }
                }
                DbEngine::Mysql => {
                    if let Some(sock) = &c.socket {
                        env.push(("MYSQL_UNIX_PORT".into(), sock.clone()));
                        env.push(("CAIRN_MYSQL_SOCKET".into(), sock.clone()));
                    }
                }
            }
        }
        env
    }

    /// The running server of `engine`, started now if need be; the error says why it
    /// could not start (kept, so later dumps of the engine report it without retrying).
    fn get(
        &mut self,
        engine: DbEngine,
        failed: &mut Vec<(DbEngine, String)>,
        timeout: Duration,
    ) -> Result<&Scratch, String> {
        if let Some((_, e)) = failed.iter().find(|(e, _)| *e == engine) {
            return Err(e.clone());
        }
        if let Some(i) = self.running.iter().position(|s| s.engine == engine) {
            return Ok(&self.running[i]);
        }
        match Scratch::start(engine, timeout.min(START_LIMIT)) {
            Ok(s) => {
                self.running.push(s);
                Ok(&self.running[self.running.len() - 1])
            }
            Err(e) => {
                let e = format!("cannot start a scratch {} server: {e:#}", name(engine));
                failed.push((engine, e.clone()));
                Err(e)
            }
        }
    }
}

/// The server's name for messages.
fn name(engine: DbEngine) -> &'static str {
    match engine {
        DbEngine::Postgres => "PostgreSQL",
        DbEngine::Mysql => "MariaDB/MySQL",
    }
}

/// Loads every dump of `dumps`, restored under `target`, into scratch servers; `in_snapshot`
/// says whether the tested snapshot holds a path. Returns a report per dump and the
/// servers (still running, for the command). `log` gets a line per dump.
pub(super) fn load_all(
    dumps: &[Dump],
    target: &Path,
    in_snapshot: impl Fn(&str) -> bool,
    timeout: Duration,
    log: &mut dyn FnMut(String),
) -> (Vec<DumpReport>, Servers) {
    let mut servers = Servers::default();
    let mut failed = Vec::new();
    let mut reports = Vec::new();
    for d in dumps {
        let path = d.path.display().to_string();
        let file = target.join(path.trim_start_matches('/'));
        let loaded = if !in_snapshot(&path) {
            Err(format!(
                "the snapshot holds no dump {path} (was it taken before the dump was configured?)"
            ))
        } else if !file.is_file() {
            Err(format!("dump {path} was not restored"))
        } else {
            servers.get(d.engine, &mut failed, timeout).and_then(|s| {
                databases::load(
                    d.engine,
                    &s.conn,
                    d.database.as_deref(),
                    &file,
                    false,
                    timeout,
                )
                .map_err(|e| format!("{e:#}"))
            })
        };
        let report = match loaded {
            Ok(l) => {
                log(format!(
                    "restore test: dump {path} loaded into a scratch {}: {} ({} table(s))",
                    name(d.engine),
                    l.databases.join(", "),
                    l.tables
                ));
                DumpReport {
                    path,
                    databases: l.databases,
                    tables: l.tables,
                    error: None,
                }
            }
            Err(e) => {
                log(format!("restore test: dump {path} did not load: {e}"));
                DumpReport {
                    path,
                    databases: d.database.iter().cloned().collect(),
                    tables: 0,
                    error: Some(e),
                }
            }
        };
        reports.push(report);
    }
    (reports, servers)
}
