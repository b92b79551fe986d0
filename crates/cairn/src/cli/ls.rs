//! `cairn ls SNAP [DIR...]`: list a snapshot (restic's output, `--long`, `--json`).
//! Only the trees on the way to the listed directories are loaded.

use super::GlobalOpts;
use anyhow::Result;
use cairn_repo::browse::{self, Located, Trees};
use cairn_repo::node::{Node, NodeType};
use cairn_repo::snapshot::{Filter, Snapshot};
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub plan: super::PlanArg,
    /// Snapshot id (prefix) or `latest`
    pub snapshot: String,
    /// Directories to list (default: everything)
    pub dirs: Vec<String>,
    /// Show permissions, owner, size and time
    #[arg(short, long)]
    pub long: bool,
    /// List everything below the given directories
    #[arg(long)]
    pub recursive: bool,
    /// With `latest`: only snapshots of this host
    #[arg(short = 'H', long)]
    pub host: Vec<String>,
    /// With `latest`: only snapshots with these tags
    #[arg(long)]
    pub tag: Vec<String>,
    /// With `latest`: only snapshots with exactly these paths
    #[arg(long)]
    pub path: Vec<String>,
}

/// restic's JSON for one node (`ls --json`), fields in restic's order.
#[derive(serde::Serialize)]
pub struct NodeJson<'a> {
    /// Lossy like Go's encoding/json, which writes invalid UTF-8 as U+FFFD.
    name: std::borrow::Cow<'a, str>,
    #[serde(rename = "type")]
    node_type: &'static str,
    path: &'a str,
    uid: u32,
    gid: u32,
    /// Files only (an empty file shows 0), like restic.
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    mode: u32,
    permissions: String,
    mtime: String,
    atime: String,
    ctime: String,
    struct_type: &'static str,
}

pub fn node_json<'a>(path: &'a str, n: &'a Node) -> NodeJson<'a> {
    NodeJson {
        name: n.name.to_string_lossy(),
        node_type: n.node_type.as_str(),
        path,
        uid: n.uid,
        gid: n.gid,
        size: (n.node_type == NodeType::File).then_some(n.size),
        mode: n.mode,
        permissions: browse::mode_string(n.mode),
        mtime: cairn_repo::gotime::format(&n.mtime),
        atime: cairn_repo::gotime::format(&n.atime),
        ctime: cairn_repo::gotime::format(&n.ctime),
        struct_type: "node",
    }
}

#[derive(serde::Serialize)]
struct SnapshotJson<'a> {
    #[serde(flatten)]
    snapshot: &'a Snapshot,
    id: String,
    short_id: String,
    struct_type: &'static str,
}

/// restic's `ls -l` line.
pub fn long_line(path: &str, n: &Node) -> String {
    let mut s = format!(
        "{} {:>5} {:>5} {:>6} {} {path}",
        browse::mode_string(n.mode),
        n.uid,
        n.gid,
        n.size,
        n.mtime.format("%Y-%m-%d %H:%M:%S"),
    );
    if n.node_type == NodeType::Symlink {
        s.push_str(&format!(" -> {}", n.linktarget));
    }
    s
}

/// A filter as restic 0.14 prints it: `(Paths:[a b] Tags:[[t1 t2]] Hosts:[h])`.
fn restic_filter(f: &Filter) -> String {
    let tags: Vec<String> = f
        .tags
        .iter()
        .map(|set| format!("[{}]", set.split(',').collect::<Vec<_>>().join(" ")))
        .collect();
    format!(
        "(Paths:[{}] Tags:[{}] Hosts:[{}])",
        f.paths.join(" "),
        tags.join(" "),
        f.hosts.join(" ")
    )
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    let g = &a.plan.globals(g)?;
    let repo = g.open()?;
    let _lock = g.lock(&repo, false)?;
    let filter = Filter {
        hosts: a.host.clone(),
        paths: a.path.clone(),
        tags: a.plan.tags(&a.tag),
    };
    let snap = match Snapshot::find(&repo, &a.snapshot, &filter) {
        Ok(s) => s,
        // restic 0.14 says so and lists nothing, successfully (an empty repository is not
        // an error to list).
        Err(e) if a.snapshot == "latest" && e.kind() == cairn_repo::Kind::NotFound => {
            eprintln!(
                "Ignoring \"latest\", no snapshot matched given filter {}",
                restic_filter(&filter)
            );
            return Ok(super::exit::OK);
        }
        Err(e) => return Err(e.into()),
    };
    a.plan.check(&snap)?;
    // A listing looks up trees only: the data index stays on disk.
    let index = repo.load_index_for_reading()?;
    let trees = Trees::new(&repo, &index);
    let dirs: Vec<String> = a
        .dirs
        .iter()
        .map(|d| format!("/{}", d.trim_matches('/')))
        .collect();
    // One write(2) per 64 KiB, not per line (stdout is line-buffered): a 100k-file listing
    // was 100k system calls.
    let mut out = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    let listed = list(g, a, &snap, &trees, &dirs, &mut out).and_then(|()| Ok(out.flush()?));
    match listed {
        Ok(()) => Ok(super::exit::OK),
        // `cairn ls latest | head`: the reader went away; stop quietly like other Unix
        // tools (the lock guard is released on return).
        Err(e) if is_broken_pipe(&e) => Err(super::Exit(141).into()),
        Err(e) => {
            let _ = out.flush();
            Err(e)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Writes the listing to `out` (buffered by the caller).
fn list(
    g: &GlobalOpts,
    a: &Args,
    snap: &Snapshot,
    trees: &Trees,
    dirs: &[String],
    out: &mut impl Write,
) -> Result<()> {
    let print = |out: &mut dyn Write, path: &str, n: &Node| -> cairn_repo::Result<()> {
        let r = if g.json {
            writeln!(out, "{}", super::go_json(&node_json(path, n)))
        } else if a.long {
            writeln!(out, "{}", long_line(path, n))
        } else {
            writeln!(out, "{path}")
        };
        r.map_err(|e| cairn_repo::Error::io("writing the listing to stdout", e))
    };
    if g.json {
        let v = SnapshotJson {
            snapshot: snap,
            id: snap.id.to_hex(),
            short_id: snap.id.short(),
            struct_type: "snapshot",
        };
        writeln!(out, "{}", super::go_json(&v))?;
    } else if !g.quiet {
        writeln!(
            out,
            "snapshot {} of [{}] filtered by [{}] at {}):",
            snap.id.short(),
            snap.paths.join(" "),
            dirs.join(" "),
            snap.time.format("%Y-%m-%d %H:%M:%S%.f %z")
        )?;
    }
    if dirs.is_empty() {
        browse::walk(trees, &snap.tree, "", &mut |p, n| {
            print(out, p, n)?;
            Ok(true)
        })?;
        return Ok(());
    }
    for dir in dirs {
        let (tree, path) = match browse::lookup(trees, snap.tree, dir)? {
            Located::Root(t) => (Some(t), String::new()),
            Located::Node(n) => {
                print(out, dir, &n)?;
                (n.subtree, dir.clone())
            }
        };
        if let Some(t) = tree {
            browse::walk(trees, &t, &path, &mut |p, n| {
                print(out, p, n)?;
                Ok(a.recursive)
            })?;
        }
    }
    Ok(())
}
