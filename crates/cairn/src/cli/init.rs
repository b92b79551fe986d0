//! `cairn init`: create a repository.

use super::GlobalOpts;
use anyhow::Result;
use cairn_repo::chunker::Polynomial;
use cairn_repo::repository::Repository;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Repository format version: 1 (no compression) or 2
    #[arg(long, default_value = "2")]
    pub repository_version: String,
    /// Use the chunker polynomial of this existing repository (dedup with it after copy)
    #[arg(long)]
    pub copy_chunker_params: bool,
    /// The repository whose chunker parameters to copy
    #[command(flatten)]
    pub from: super::FromRepo,
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    let version = match a.repository_version.as_str() {
        "1" => 1,
        "2" | "latest" | "stable" => 2,
        v => anyhow::bail!("unknown --repository-version {v:?}: use 1 or 2"),
    };
    let mut pol = None;
    if a.copy_chunker_params {
        let src = a.from.open(g)?;
        pol = Some(src.polynomial());
    }
    let backend = g.backend()?;
    let password = g.password(true)?;
    let repo = Repository::init(backend, &password, version, pol.map(|p: Polynomial| p))?;
    if g.json {
        super::print_json(&serde_json::json!({
            "message_type": "initialized",
            "id": repo.config().id,
            "repository": repo.backend().location(),
        }))?;
    } else {
        g.say(format!(
            "created restic repository {} at {}\n\nPlease note that knowledge of your password is required to access\nthe repository. Losing your password means that your data is\nirrecoverably lost.",
            &repo.config().id[..10],
            repo.backend().location()
        ));
    }
    Ok(super::exit::OK)
}
