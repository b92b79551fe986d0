//! The chunker cuts exactly where restic cuts: the real restic backs up files, and every
//! chunk cairn makes of them is one of restic's data blobs.

use cairn_repo::chunker::{Chunker, Polynomial};
use cairn_repo::Id;
use std::collections::HashSet;
use std::process::Command;

fn restic(repo: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("restic")
        .arg("-r")
        .arg(repo)
        .args(["--no-cache", "-q"])
        .args(args)
        .env("RESTIC_PASSWORD", "x")
        .output()
        .expect("the real restic is the oracle here: install it (apt-get install restic)");
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pseudo_random(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

#[test]
fn chunk_ids_equal_restic_data_blob_ids() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut low_entropy = Vec::new();
    for i in 0..(9u32 << 20) / 64 {
        low_entropy.extend_from_slice(format!("{:063}\n", i % 977).as_bytes());
    }
    let files = vec![
        pseudo_random(1, 3 << 20),
        pseudo_random(2, 20 << 20),
        vec![0u8; 9 << 20],
        low_entropy,
        pseudo_random(3, 100),
    ];
    for (i, f) in files.iter().enumerate() {
        std::fs::write(src.join(format!("f{i}")), f).unwrap();
    }
    restic(&repo, &["init"]);
    restic(&repo, &["backup", src.to_str().unwrap()]);
    let config: serde_json::Value =
        serde_json::from_str(&restic(&repo, &["cat", "config"])).unwrap();
    let pol = u64::from_str_radix(config["chunker_polynomial"].as_str().unwrap(), 16).unwrap();
    let listed = restic(&repo, &["list", "blobs"]);
    let restic_ids: HashSet<String> = listed
        .lines()
        .filter_map(|l| l.strip_prefix("data "))
        .map(String::from)
        .collect();
    let mut ours = HashSet::new();
    for f in &files {
        let mut c = Chunker::new(&f[..], Polynomial(pol));
        let mut buf = Vec::new();
        while c.next_chunk(&mut buf).unwrap() {
            let id = Id::hash(&buf).to_hex();
            assert!(
                restic_ids.contains(&id),
                "chunk of {} bytes not among restic's blobs",
                buf.len()
            );
            ours.insert(id);
        }
    }
    assert_eq!(ours, restic_ids);
}
