//! `cairn key list|add|remove|passwd`: manage the passwords of a repository (restic's
//! key files; restic opens the repository with keys cairn adds and vice versa).

use super::GlobalOpts;
use anyhow::{Context, Result};
use cairn_repo::backend::FileType;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum KeyCommand {
    /// List the keys (`*` marks the one in use)
    List,
    /// Add a key (a new password)
    Add(NewPassword),
    /// Remove a key by id (prefix); not the one in use
    Remove { id: String },
    /// Change the password: add a new key, then remove the one in use
    Passwd(NewPassword),
}

#[derive(clap::Args, Debug)]
pub struct NewPassword {
    /// File holding the new password (else RESTIC_NEW_PASSWORD or a prompt)
    #[arg(long)]
    pub new_password_file: Option<String>,
}

fn new_password(a: &NewPassword) -> Result<String> {
    if let Some(f) = &a.new_password_file {
        let s = std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?;
        let p = s.lines().next().unwrap_or("").to_string();
        anyhow::ensure!(!p.is_empty(), "{f}: the new password is empty");
        return Ok(p);
    }
    if let Ok(p) =
        std::env::var("RESTIC_NEW_PASSWORD").or_else(|_| std::env::var("CAIRN_NEW_PASSWORD"))
    {
        anyhow::ensure!(!p.is_empty(), "RESTIC_NEW_PASSWORD is empty");
        return Ok(p);
    }
    use std::io::IsTerminal;
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "no new password given: use --new-password-file or RESTIC_NEW_PASSWORD"
    );
    let p = super::progress::read_password("enter new password: ")?;
    let again = super::progress::read_password("enter password again: ")?;
    anyhow::ensure!(p == again, "passwords do not match");
    anyhow::ensure!(!p.is_empty(), "an empty password is not a password");
    Ok(p)
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    let repo = g.open()?;
    match &a.command {
        KeyCommand::List => {
            let _lock = g.lock(&repo, false)?;
            let keys = repo.list_keys()?;
            if g.json {
                let v: Vec<_> = keys
                    .iter()
                    .map(|(id, k)| {
                        serde_json::json!({
                            "current": id == repo.key_id(),
                            "id": &id[..8.min(id.len())],
                            "userName": k.username,
                            "hostName": k.hostname,
                            "created": k.created,
                        })
                    })
                    .collect();
                super::print_json(&v)?;
            } else {
                println!(" ID        User        Host          Created");
                println!("------------------------------------------------------");
                for (id, k) in &keys {
                    println!(
                        "{}{:<9} {:<11} {:<13} {}",
                        if id == repo.key_id() { "*" } else { " " },
                        &id[..8.min(id.len())],
                        k.username,
                        k.hostname,
                        k.created.get(..19).unwrap_or(&k.created).replace('T', " ")
                    );
                }
            }
        }
        KeyCommand::Add(p) => {
            let pw = new_password(p)?;
            let _lock = g.lock(&repo, true)?;
            let id = repo.add_key(&pw)?;
            g.say(format!("saved new key with ID {id}"));
        }
        KeyCommand::Remove { id } => {
            let _lock = g.lock(&repo, true)?;
            let full = repo
                .find_id(FileType::Key, id)
                .map_err(|e| e.context(format!("key {id}")))?;
            anyhow::ensure!(
                full.to_hex() != repo.key_id(),
                "key {id} is the one you opened the repository with: open it with another key to remove this one"
            );
            repo.backend().remove(FileType::Key, &full.to_hex())?;
            g.say(format!("removed key {}", full.to_hex()));
        }
        KeyCommand::Passwd(p) => {
            let pw = new_password(p)?;
            let _lock = g.lock(&repo, true)?;
            // The new key exists before the old one goes: never zero keys.
            let id = repo.add_key(&pw)?;
            repo.backend().remove(FileType::Key, repo.key_id())?;
            g.say(format!(
                "saved new key as {id}; the old password no longer works"
            ));
        }
    }
    Ok(super::exit::OK)
}
