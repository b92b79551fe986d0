//! The S3 backend against a hostile server: ListObjectsV2 pages (XML, continuation
//! tokens), XML errors (codes, messages, the region hint), reads, ranges, writes.
use cairn_repo::backend::s3::{Credentials, S3Backend, Target};
use cairn_repo::backend::{Backend, FileType};

fn main() {
    // No abort hook: the HTTP layer catches a panic inside ureq (see `Http::send_raw`);
    // one escaping the harness still aborts.
    afl::fuzz_nohook!(|data: &[u8]| {
        let server = cairn_fuzz::FakeHttp::start(cairn_fuzz::frames(data));
        let Ok(target) = Target::parse(&format!("http://127.0.0.1:{}/bucket/prefix", server.port))
        else {
            return;
        };
        let creds = Credentials {
            access_key: "AKIAFUZZ".into(),
            secret_key: "secret".into(),
            session_token: None,
        };
        let be = S3Backend::new(target, creds, "us-east-1".into(), cairn_fuzz::fast_http());
        let name = "ab".repeat(32);
        let done = || server.done.load(std::sync::atomic::Ordering::SeqCst);
        // Each step stops the run once the replies are used up (the rest could only
        // fail to connect, slowly).
        let steps: Vec<Box<dyn Fn()>> = vec![
            Box::new(|| drop(be.has_config())),
            Box::new(|| drop(be.list(FileType::Key))),
            Box::new(|| drop(be.list(FileType::Snapshot))),
            Box::new(|| drop(be.list(FileType::Pack))),
            Box::new(|| drop(be.read(FileType::Snapshot, &name))),
            Box::new(|| {
                if let Ok(v) = be.read_range(FileType::Pack, &name, 3, 17) {
                    assert_eq!(v.len(), 17, "read_range returned the wrong length");
                }
            }),
            Box::new(|| drop(be.write(FileType::Lock, &name, b"lock"))),
            Box::new(|| drop(be.remove(FileType::Lock, &name))),
        ];
        for step in steps {
            if done() {
                break;
            }
            step();
        }
        drop(server);
    });
}
