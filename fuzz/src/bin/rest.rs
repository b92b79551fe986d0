//! The REST backend against a hostile server: each request is answered with the next
//! frame of the input (see `cairn_fuzz::frames`): listings (v1 and v2 JSON), HEAD sizes,
//! reads, ranges, writes, removals and error statuses.
use cairn_repo::backend::rest::RestBackend;
use cairn_repo::backend::{Backend, FileType};

fn main() {
    // No abort hook: the HTTP layer catches a panic inside ureq (see `Http::send_raw`);
    // one escaping the harness still aborts.
    afl::fuzz_nohook!(|data: &[u8]| {
        let server = cairn_fuzz::FakeHttp::start(cairn_fuzz::frames(data));
        let url = format!("http://u:p@127.0.0.1:{}/repo", server.port);
        let Ok(be) = RestBackend::new(&url, cairn_fuzz::fast_http()) else {
            return;
        };
        let name = "ab".repeat(32);
        let done = || server.done.load(std::sync::atomic::Ordering::SeqCst);
        // Each step stops the run once the replies are used up (the rest could only
        // fail to connect, slowly).
        let steps: Vec<Box<dyn Fn()>> = vec![
            Box::new(|| drop(be.has_config())),
            Box::new(|| drop(be.list(FileType::Key))),
            Box::new(|| drop(be.list(FileType::Snapshot))),
            Box::new(|| drop(be.list(FileType::Pack))),
            Box::new(|| drop(be.read(FileType::Config, ""))),
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
