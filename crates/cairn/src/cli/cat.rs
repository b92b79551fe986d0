//! `cairn cat config|snapshot ID|index ID|key ID|masterkey|blob ID|tree ID`.

use super::GlobalOpts;
use anyhow::{bail, Result};
use cairn_repo::backend::FileType;
use cairn_repo::pack::BlobType;
use cairn_repo::snapshot::Snapshot;
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to print: config, snapshot, index, key, masterkey, blob, tree
    pub kind: String,
    /// Id (or prefix) of the object
    pub id: Option<String>,
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    let repo = g.open()?;
    let need_id = || -> Result<&str> {
        a.id.as_deref()
            .ok_or_else(|| anyhow::anyhow!("`cat {}` needs an id", a.kind))
    };
    let bytes: Vec<u8> = match a.kind.as_str() {
        "config" => serde_json::to_vec_pretty(repo.config())?,
        "masterkey" => serde_json::to_vec_pretty(&repo.key().to_json())?,
        "snapshot" => {
            let s = Snapshot::find(&repo, need_id()?, &Default::default())?;
            serde_json::to_vec_pretty(&s)?
        }
        "index" => {
            let id = repo.find_id(FileType::Index, need_id()?)?;
            repo.load_file(FileType::Index, &id)?
        }
        "key" => {
            let id = repo.find_id(FileType::Key, need_id()?)?;
            repo.backend().read(FileType::Key, &id.to_hex())?
        }
        "blob" | "tree" => {
            let id = cairn_repo::Id::parse(need_id()?)
                .ok_or_else(|| anyhow::anyhow!("give the full 64-digit blob id"))?;
            // One lookup: the data index stays on disk.
            let index = repo.load_index_for_reading()?;
            let t = if a.kind == "tree" || index.has(BlobType::Tree, &id) {
                BlobType::Tree
            } else {
                BlobType::Data
            };
            repo.load_blob(&index, t, &id)?
        }
        other => bail!(
            "unknown object type {other:?}: use config, snapshot, index, key, masterkey, blob or tree"
        ),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)?;
    if a.kind != "blob" && !bytes.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    Ok(super::exit::OK)
}
