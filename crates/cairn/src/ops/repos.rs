//! Repositories of the config opened in-process, by name, with their indexes loaded and
//! kept while they do not change.
//!
//! A repository is resolved like `cairn run` resolves it for its children (URL, password
//! from file/command/environment, `env-file` and `env`, `-o` options, limits, cache
//! directory), except that the environment goes into the backend's overlay
//! ([`cairn_repo::backend::Options::env`]) instead of a child's environment: two
//! repositories with different keys work side by side in one process, and nothing here
//! ever sets a variable of the process.
//!
//! An [`Open`] repository keeps its index (reloaded only when the files under `index/`
//! change, looked at no more than every [`RECHECK`]), its snapshots (each loaded once),
//! a bounded cache of decoded trees and the recursive sizes of directories (trees are
//! immutable by id, so neither cache goes stale). This module must not print.

use crate::config::{Config, Password, Repository as RepoConfig};
use cairn_repo::backend::{self, FileType};
use cairn_repo::browse::{TreeCache, Trees};
use cairn_repo::id::Id;
use cairn_repo::index::Index;
use cairn_repo::node::Node;
use cairn_repo::repository::Repository;
use cairn_repo::snapshot::Snapshot;
use cairn_repo::{Error, Kind, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a listing of `index/` or `snapshots/` is trusted before it is looked at again.
pub const RECHECK: Duration = Duration::from_secs(3);

/// The tree cache's budget (estimated memory of decoded trees).
pub const TREE_CACHE_BYTES: usize = 64 << 20;

/// Retry budget of a repository opened here unless its `retry.max-time` option says
/// otherwise: someone is waiting for the answer (a backup run's default is five minutes).
pub const INTERACTIVE_RETRY: Duration = Duration::from_secs(30);

/// A repository that failed to open is not tried again for this long (every request
/// would otherwise wait for the same failure); its error is answered meanwhile.
pub const FAILED_OPEN_HOLD: Duration = Duration::from_secs(10);

/// The repositories of one config, opened on first use and kept.
pub struct Handles {
    pub config: Arc<Config>,
    open: Mutex<HashMap<String, Arc<Open>>>,
    /// Recent failures to open: when, the error's kind and message.
    failed: Mutex<HashMap<String, (Instant, Kind, String)>>,
}

impl Handles {
    pub fn new(config: Arc<Config>) -> Handles {
        Handles {
            config,
            open: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
        }
    }

    /// The names of the config's repositories, sorted.
    pub fn names(&self) -> Vec<String> {
        self.config.repositories.keys().cloned().collect()
    }

    /// The repository `name` of the config, opened (password checked, index loaded) on
    /// first use and shared afterwards. Blocking: call it off the async runtime.
    pub fn get(&self, name: &str) -> Result<Arc<Open>> {
        if let Some(o) = self.open.lock().ok().and_then(|m| m.get(name).cloned()) {
            return Ok(o);
        }
        let rc = self.config.repositories.get(name).ok_or_else(|| {
            let known: Vec<&str> = self
                .config
                .repositories
                .keys()
                .map(String::as_str)
                .collect();
            Error::not_found(format!(
                "no repository named {name:?} in the config (known: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })?;
        if let Some((when, kind, msg)) = self.failed.lock().ok().and_then(|m| m.get(name).cloned())
        {
            if when.elapsed() < FAILED_OPEN_HOLD {
                return Err(Error::new(kind, msg));
            }
        }
        let started = Instant::now();
        let opened = open_config_repository(rc).and_then(|repo| {
            let key = started.elapsed();
            let open = Open::new(name, repo)?;
            if let Ok(mut t) = open.times.lock() {
                *t = Some(OpenTimes {
                    key,
                    index: started.elapsed().saturating_sub(key),
                });
            }
            Ok(open)
        });
        let open = match opened {
            Ok(o) => Arc::new(o),
            Err(e) => {
                if let Ok(mut m) = self.failed.lock() {
                    m.insert(name.to_string(), (Instant::now(), e.kind(), e.to_string()));
                }
                return Err(e);
            }
        };
        if let Ok(mut m) = self.failed.lock() {
            m.remove(name);
        }
        let mut map = self
            .open
            .lock()
            .map_err(|_| Error::new(Kind::Io, "repository table poisoned"))?;
        // Another request may have opened it meanwhile: keep the first.
        Ok(map.entry(name.to_string()).or_insert(open).clone())
    }
}

/// A repository of the config resolved for use: its entry and its environment overlay
/// (env-file, then `env`). Shared by [`open_config_repository`] and the CLI's `-r NAME`.
#[derive(Clone)]
pub struct Resolved {
    pub rc: RepoConfig,
    pub env: BTreeMap<String, String>,
}

impl std::fmt::Debug for Resolved {
    // The overlay holds credentials: never print its values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("name", &self.rc.name)
            .field("url", &self.rc.url)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Resolved {
    /// Backend options of the entry (limits, cache directory, `options`, the overlay).
    pub fn options(&self) -> Result<backend::Options> {
        backend_options(&self.rc, self.env.clone())
    }

    /// The password from the entry's source (file, command run with the overlay, variable).
    pub fn password(&self) -> Result<String> {
        password(&self.rc, &self.env)
    }
}

/// The names of the config's repositories, for messages: "a, b" or "none".
pub fn known_names(config: &Config) -> String {
    if config.repositories.is_empty() {
        return "none".into();
    }
    config
        .repositories
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .join(", ")
}

mod origin;
pub use origin::{
    env_hint, unreadable_hint, Origin, Role, ENV_FROM_ORIGIN, ENV_FROM_ORIGIN_FILE, ENV_ORIGIN,
    ENV_ORIGIN_FILE,
};

/// Resolves the repository `name` of `config`: unknown names are `NotFound` listing the
/// known ones; an unreadable env-file is `Config`-like (`Invalid`) naming the entry.
pub fn resolve(config: &Config, name: &str) -> Result<Resolved> {
    let rc = config.repositories.get(name).ok_or_else(|| {
        Error::not_found(format!(
            "no repository named {name:?} in the config (known: {})",
            known_names(config)
        ))
    })?;
    resolve_entry(rc)
}

fn resolve_entry(rc: &RepoConfig) -> Result<Resolved> {
    let env = overlay(rc)
        .map_err(|e| Error::invalid(format!("repository {:?}: {e}: {}", rc.name, env_hint(rc))))?;
    Ok(Resolved {
        rc: rc.clone(),
        env,
    })
}

/// Opens the repository of config entry `rc` in-process, resolved like `cairn run`'s
/// children resolve it. Errors name the repository and what to check.
pub fn open_config_repository(rc: &RepoConfig) -> Result<Repository> {
    let name = &rc.name;
    let named = |e: Error| {
        // Credentials a server refused come from the entry's env settings: name them.
        let settings = Origin::of(rc).credential_settings();
        let e = if e.kind() == Kind::Auth && !settings.is_empty() {
            Error::new(
                Kind::Auth,
                format!("{e}: the credentials come from {}", settings.join(", ")),
            )
        } else {
            e
        };
        e.context(format!("repository {name:?} ({})", rc.url))
    };
    let resolved = resolve_entry(rc)?;
    let opts = resolved.options()?;
    let password = resolved.password()?;
    let backend = backend::open(&rc.url, &opts).map_err(named)?;
    Repository::open(backend, &password)
        .map_err(|e| {
            if e.kind() == Kind::WrongPassword {
                Error::new(
                    Kind::WrongPassword,
                    format!(
                        "wrong password for repository {name:?} ({}): check {}",
                        rc.url,
                        Origin::of(rc).password_setting()
                    ),
                )
            } else {
                named(e)
            }
        })
        .map(|mut repo| {
            // The index snapshot lives in the metadata cache (also for local repositories).
            repo.set_cache_dir(opts.cache_dir.clone());
            repo
        })
}

/// The variables a child of `cairn run` would get on top of cairn's own environment:
/// the `env-file`, `env-credential`, `env-command`'s output, then `env` (later wins).
fn overlay(rc: &RepoConfig) -> std::result::Result<BTreeMap<String, String>, String> {
    Ok(crate::config::secrets::repository_env(rc)?
        .into_iter()
        .collect())
}

fn backend_options(rc: &RepoConfig, env: BTreeMap<String, String>) -> Result<backend::Options> {
    let mut opts = backend::Options {
        limits: Arc::new(backend::limit::Limits::new(
            rc.limit_upload,
            rc.limit_download,
        )),
        cache_dir: rc
            .cache_dir
            .clone()
            .or_else(|| {
                env.get("CAIRN_CACHE_DIR")
                    .map(Into::into)
                    .or_else(|| std::env::var_os("CAIRN_CACHE_DIR").map(Into::into))
            })
            .or_else(backend::cache::default_dir),
        env,
        ..Default::default()
    };
    opts.retry.max_time = INTERACTIVE_RETRY;
    let dur = |k: &str| -> Result<Option<Duration>> {
        rc.options
            .get(k)
            .map(|v| {
                crate::units::parse_duration(v).map_err(|e| {
                    Error::invalid(format!("repository {:?}: option {k}: {e}", rc.name))
                })
            })
            .transpose()
    };
    if let Some(d) = dur("retry.max-time")? {
        opts.retry.max_time = d;
    }
    if let Some(d) = dur("timeout.io")? {
        opts.timeouts.io = d;
    }
    if let Some(d) = dur("timeout.connect")? {
        opts.timeouts.connect = d;
    }
    opts.extended = rc.options.clone();
    Ok(opts)
}

/// The password of `rc`: its file's (or systemd credential's) first line, its command's
/// first output line (run with the repository's environment), or a variable of cairn's
/// environment.
fn password(rc: &RepoConfig, env: &BTreeMap<String, String>) -> Result<String> {
    let name = &rc.name;
    let first_line = |s: &str| s.lines().next().unwrap_or("").to_string();
    match &rc.password {
        Password::Credential(n) => {
            let p = crate::config::secrets::credential_path("password-credential", n).map_err(
                |e| {
                    Error::invalid(format!(
                        "repository {name:?}: {e} (defined in {})",
                        rc.defined_in.display()
                    ))
                },
            )?;
            std::fs::read_to_string(&p)
                .map(|s| first_line(&s))
                .map_err(|e| {
                    Error::new(
                        Kind::Auth,
                        format!(
                            "repository {name:?}: cannot read password-credential {n:?} ({}): {e}",
                            p.display()
                        ),
                    )
                })
        }
        Password::File(p) => std::fs::read_to_string(p)
            .map(|s| first_line(&s))
            .map_err(|e| {
                Error::new(
                    Kind::Auth,
                    format!(
                        "repository {name:?}: cannot read password-file {}: {e}: {}",
                        p.display(),
                        unreadable_hint(&e, &Origin::of(rc).setting("password-file"))
                    ),
                )
            }),
        Password::Command(c) => {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(c)
                .envs(env)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .output()
                .map_err(|e| {
                    Error::new(
                        Kind::Auth,
                        format!("repository {name:?}: cannot run password-command {c:?}: {e}"),
                    )
                })?;
            if !out.status.success() {
                return Err(Error::new(
                    Kind::Auth,
                    format!(
                        "repository {name:?}: password-command {c:?} failed ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                ));
            }
            Ok(first_line(&String::from_utf8_lossy(&out.stdout)))
        }
        Password::Env(var) => std::env::var(var).map_err(|_| {
            Error::new(
                Kind::Auth,
                format!(
                    "repository {name:?}: password-env {var} is not set in cairn's environment (set it, e.g. with systemd's EnvironmentFile=)"
                ),
            )
        }),
    }
}

/// Recursive totals of a directory (below it, not counting itself).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DirTotals {
    /// Sum of the sizes of the files below (hard links counted each time).
    pub bytes: u64,
    pub files: u64,
    pub dirs: u64,
    /// Everything else: symlinks, devices, sockets, fifos.
    pub others: u64,
}

/// How long opening a repository took, for the server's log.
#[derive(Clone, Copy, Debug)]
pub struct OpenTimes {
    /// Opening it: the key derivation (scrypt, set by the repository's key parameters)
    /// with the few reads around it (keys, config).
    pub key: Duration,
    /// Loading its index.
    pub index: Duration,
}

/// One repository, open, with what requests share.
pub struct Open {
    pub name: String,
    pub repo: Repository,
    index: Mutex<IndexState>,
    snapshots: Mutex<SnapshotState>,
    trees: TreeLru,
    /// Recursive totals of directories by tree id.
    pub(crate) sizes: Mutex<HashMap<Id, DirTotals>>,
    /// Set when [`Handles::get`] opened it; taken once by whoever logs it.
    times: Mutex<Option<OpenTimes>>,
}

struct IndexState {
    index: Arc<Index>,
    /// The listed index files, sorted.
    files: Vec<String>,
    checked: Instant,
}

struct SnapshotState {
    by_id: HashMap<Id, Arc<Snapshot>>,
    checked: Option<Instant>,
}

/// Bound on the directory-size memo (entries of a few dozen bytes).
const SIZES_MAX: usize = 1 << 20;

impl Open {
    /// Wraps an opened repository and loads its index.
    pub fn new(name: &str, repo: Repository) -> Result<Open> {
        // The listing kept to notice changes later runs beside the load (which lists
        // `index/` itself): on a remote, one round trip less before the first answer.
        let (files, index) = std::thread::scope(|s| {
            let listing = s.spawn(|| index_files(&repo));
            let index = repo.load_index_for_reading();
            let files = listing
                .join()
                .unwrap_or_else(|_| Err(Error::new(Kind::Io, "listing index/ failed")));
            (files, index)
        });
        let index =
            index.map_err(|e| e.context(format!("repository {name:?}: loading the index")))?;
        let files = files?;
        Ok(Open {
            name: name.to_string(),
            repo,
            index: Mutex::new(IndexState {
                index: Arc::new(index),
                files,
                checked: Instant::now(),
            }),
            snapshots: Mutex::new(SnapshotState {
                by_id: HashMap::new(),
                checked: None,
            }),
            trees: TreeLru::new(TREE_CACHE_BYTES),
            sizes: Mutex::new(HashMap::new()),
            times: Mutex::new(None),
        })
    }

    /// How long opening took, once (the first caller gets it, later ones `None`).
    pub fn take_open_times(&self) -> Option<OpenTimes> {
        self.times.lock().ok()?.take()
    }

    /// The index, reloaded first if the files under `index/` changed since they were last
    /// listed (listed at most every [`RECHECK`]).
    pub fn index(&self) -> Result<Arc<Index>> {
        let mut st = self
            .index
            .lock()
            .map_err(|_| Error::new(Kind::Io, "index state poisoned"))?;
        if st.checked.elapsed() >= RECHECK {
            let files = index_files(&self.repo)?;
            if files != st.files {
                st.index = Arc::new(self.repo.load_index_for_reading().map_err(|e| {
                    e.context(format!("repository {:?}: reloading the index", self.name))
                })?);
                st.files = files;
            }
            st.checked = Instant::now();
        }
        Ok(st.index.clone())
    }

    /// Trees read through `index` and kept in this repository's shared cache.
    pub fn trees<'a>(&'a self, index: &'a Index) -> Trees<'a> {
        Trees::with_cache(&self.repo, index, &self.trees)
    }

    /// Every snapshot, oldest first (each file loaded once; `snapshots/` listed at most
    /// every [`RECHECK`]).
    /// Makes the next [`Open::snapshots`] list the repository again, whatever the age of
    /// its last listing (figures read together must agree with each other).
    pub fn relist_snapshots(&self) {
        if let Ok(mut st) = self.snapshots.lock() {
            st.checked = None;
        }
    }

    pub fn snapshots(&self) -> Result<Vec<Arc<Snapshot>>> {
        let mut st = self
            .snapshots
            .lock()
            .map_err(|_| Error::new(Kind::Io, "snapshot state poisoned"))?;
        if st.checked.is_none_or(|t| t.elapsed() >= RECHECK) {
            let ids = self.repo.list_ids(FileType::Snapshot)?;
            let mut by_id = HashMap::with_capacity(ids.len());
            for id in ids {
                let s = match st.by_id.get(&id) {
                    Some(s) => s.clone(),
                    None => Arc::new(Snapshot::load(&self.repo, &id).map_err(|e| {
                        e.context(format!("repository {:?}: snapshot {id}", self.name))
                    })?),
                };
                by_id.insert(id, s);
            }
            st.by_id = by_id;
            st.checked = Some(Instant::now());
        }
        let mut all: Vec<Arc<Snapshot>> = st.by_id.values().cloned().collect();
        all.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    /// The snapshot `spec`: a full id or a unique prefix (at least 4 hex digits), or
    /// `latest`.
    pub fn snapshot(&self, spec: &str) -> Result<Arc<Snapshot>> {
        // A full id not seen yet: load that one file, not every snapshot (a fresh process's
        // first listing names its snapshot by id). A missing one is NotFound, as below.
        if spec.len() == 64 {
            if let Some(id) = Id::parse(&spec.to_ascii_lowercase()) {
                let mut st = self
                    .snapshots
                    .lock()
                    .map_err(|_| Error::new(Kind::Io, "snapshot state poisoned"))?;
                if let std::collections::hash_map::Entry::Vacant(slot) = st.by_id.entry(id) {
                    let s = match Snapshot::load(&self.repo, &id) {
                        Ok(s) => Arc::new(s),
                        Err(e) if e.kind() == Kind::NotFound => {
                            return Err(Error::not_found(format!(
                                "no snapshot {spec} in repository {:?}",
                                self.name
                            )))
                        }
                        Err(e) => {
                            return Err(
                                e.context(format!("repository {:?}: snapshot {id}", self.name))
                            )
                        }
                    };
                    slot.insert(s.clone());
                    return Ok(s);
                }
            }
        }
        let all = self.snapshots()?;
        if spec == "latest" {
            return all.last().cloned().ok_or_else(|| {
                Error::not_found(format!("repository {:?} has no snapshot", self.name))
            });
        }
        if spec.len() < 4 || spec.len() > 64 || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!(
                "{:?} is not a snapshot id: give an id or a prefix of at least 4 hex digits",
                truncate(spec, 80)
            )));
        }
        let spec = spec.to_ascii_lowercase();
        let mut hits = all.iter().filter(|s| s.id.to_hex().starts_with(&spec));
        match (hits.next(), hits.next()) {
            (Some(s), None) => Ok(s.clone()),
            (Some(_), Some(_)) => Err(Error::invalid(format!(
                "snapshot prefix {spec} is ambiguous in repository {:?}: give more digits",
                self.name
            ))),
            _ => Err(Error::not_found(format!(
                "no snapshot {spec} in repository {:?}",
                self.name
            ))),
        }
    }

    pub(crate) fn cached_size(&self, tree: &Id) -> Option<DirTotals> {
        self.sizes.lock().ok()?.get(tree).copied()
    }

    pub(crate) fn remember_size(&self, tree: Id, t: DirTotals) {
        if let Ok(mut m) = self.sizes.lock() {
            if m.len() >= SIZES_MAX {
                m.clear();
            }
            m.insert(tree, t);
        }
    }
}

/// `s` cut to at most `max` bytes (on a character boundary), for messages.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn index_files(repo: &Repository) -> Result<Vec<String>> {
    let mut files: Vec<String> = repo
        .backend()
        .list(FileType::Index)?
        .into_iter()
        .map(|f| f.name)
        .collect();
    files.sort();
    Ok(files)
}

/// Decoded trees, least recently used dropped first once their estimated memory passes
/// the budget.
struct TreeLru {
    inner: Mutex<Lru>,
    budget: usize,
}

#[derive(Default)]
struct Lru {
    entries: HashMap<Id, (Arc<Vec<Node>>, usize, u64)>,
    /// Use tick → id, oldest first.
    order: BTreeMap<u64, Id>,
    tick: u64,
    bytes: usize,
}

impl TreeLru {
    fn new(budget: usize) -> TreeLru {
        TreeLru {
            inner: Mutex::new(Lru::default()),
            budget,
        }
    }

    #[cfg(test)]
    fn usage(&self) -> (usize, usize) {
        self.inner
            .lock()
            .map(|l| (l.entries.len(), l.bytes))
            .unwrap_or((0, 0))
    }
}

impl TreeCache for TreeLru {
    fn get(&self, id: &Id) -> Option<Arc<Vec<Node>>> {
        let mut l = self.inner.lock().ok()?;
        l.tick += 1;
        let tick = l.tick;
        let (nodes, old) = {
            let e = l.entries.get_mut(id)?;
            let old = e.2;
            e.2 = tick;
            (e.0.clone(), old)
        };
        l.order.remove(&old);
        l.order.insert(tick, *id);
        Some(nodes)
    }

    fn put(&self, id: Id, nodes: Arc<Vec<Node>>, bytes: usize) {
        // Decoded nodes take about twice their JSON, plus the entry itself.
        let cost = bytes.saturating_mul(2) + 128;
        let Ok(mut l) = self.inner.lock() else {
            return;
        };
        if cost > self.budget || l.entries.contains_key(&id) {
            return;
        }
        while l.bytes + cost > self.budget {
            let Some((_, old)) = l.order.pop_first() else {
                break;
            };
            if let Some((_, c, _)) = l.entries.remove(&old) {
                l.bytes -= c;
            }
        }
        l.tick += 1;
        let tick = l.tick;
        l.entries.insert(id, (nodes, cost, tick));
        l.order.insert(tick, id);
        l.bytes += cost;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Id {
        Id::hash(&[n])
    }

    #[test]
    fn tree_cache_drops_the_least_recently_used_tree_past_its_budget() {
        // Each entry costs 2 * 100 + 128 = 328 bytes: three fit in 1000, four do not.
        let lru = TreeLru::new(1000);
        let nodes = Arc::new(Vec::new());
        for n in 0..3 {
            lru.put(id(n), nodes.clone(), 100);
        }
        assert!(lru.get(&id(0)).is_some(), "0 is now the most recent");
        lru.put(id(3), nodes.clone(), 100);
        assert!(lru.get(&id(1)).is_none(), "1 was the least recently used");
        for n in [0, 2, 3] {
            assert!(lru.get(&id(n)).is_some(), "{n} kept");
        }
        assert_eq!(lru.usage(), (3, 3 * 328));
        // A tree larger than the whole budget is not kept (and evicts nothing).
        lru.put(id(9), nodes, 10_000);
        assert!(lru.get(&id(9)).is_none());
        assert_eq!(lru.usage().0, 3);
    }
}
