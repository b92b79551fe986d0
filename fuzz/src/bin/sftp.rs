//! The SFTP backend against a hostile server: the VERSION handshake and every reply
//! (STATUS, HANDLE, DATA, NAME, ATTRS) parsed by `backend/sftp.rs`. The input's frames
//! are the replies, in order; the fake server fills in the request ids.
use cairn_repo::backend::limit::Limits;
use cairn_repo::backend::sftp::{SftpBackend, Spec};
use cairn_repo::backend::{Backend, FileType};
use std::sync::Arc;
use std::time::Duration;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let server = cairn_fuzz::FakeSftp::start(cairn_fuzz::frames(data));
        let Ok(spec) = Spec::parse("fuzz:/repo") else {
            return;
        };
        let Ok(be) = SftpBackend::new(
            spec,
            Some(&server.command),
            None,
            cairn_fuzz::no_retry(),
            Arc::new(Limits::new(None, None)),
            Duration::from_secs(2),
            Duration::from_secs(2),
        ) else {
            return;
        };
        let name = "ab".repeat(32);
        let done = || server.done.load(std::sync::atomic::Ordering::SeqCst);
        // Each step stops the run once the replies are used up (the rest could only
        // fail to connect, slowly).
        let steps: Vec<Box<dyn Fn()>> = vec![
            Box::new(|| drop(be.has_config())),
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
        drop(be);
        drop(server);
    });
}
