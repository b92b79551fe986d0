use super::*;

#[test]
fn restic_sftp_forms_parse() {
    let s = Spec::parse("user@host:/srv/restic-repo").unwrap();
    assert_eq!(
        s,
        Spec {
            user: Some("user".into()),
            host: "host".into(),
            port: None,
            path: "/srv/restic-repo".into()
        }
    );
    let s = Spec::parse("nas:backups/repo").unwrap();
    assert_eq!(
        (s.user, s.host.as_str(), s.path.as_str()),
        (None, "nas", "backups/repo")
    );
    let s = Spec::parse("//u@h:2222/abs/path").unwrap();
    assert_eq!((s.port, s.path.as_str()), (Some(2222), "/abs/path"));
    assert!(Spec::parse("hostonly").is_err());
}

fn name_reply(names: &[&str]) -> Packet {
    let mut data = Vec::new();
    put_u32(&mut data, names.len() as u32);
    for n in names {
        put_str(&mut data, n.as_bytes());
        put_str(&mut data, b"");
        put_u32(&mut data, ATTR_SIZE);
        put_u64(&mut data, 5);
    }
    Packet {
        typ: FXP_NAME,
        data,
    }
}

/// A fake server answering READDIR with `reply` forever; the test gives up (an error
/// the listing would pass on) after many calls, so a missing cap fails instead of hanging.
fn endless(reply: Packet, calls: &mut u32) -> impl FnMut() -> Result<Packet> + '_ {
    move || {
        *calls += 1;
        if *calls > 100_000 {
            return Err(Error::new(Kind::Network, "test: the listing never stopped"));
        }
        Ok(Packet {
            typ: reply.typ,
            data: reply.data.clone(),
        })
    }
}

#[test]
fn listing_collects_names_until_eof() {
    let mut replies = vec![
        name_reply(&[".", "..", "a", "b"]),
        name_reply(&["c"]),
        Packet {
            typ: FXP_STATUS,
            data: [FX_EOF.to_be_bytes().as_slice(), &[0; 8]].concat(),
        },
    ]
    .into_iter();
    let got = read_dir_replies("d", 10, || {
        Ok(replies.next().expect("no READDIR after EOF"))
    })
    .unwrap();
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(got[0].1.size, Some(5));
}

#[test]
fn listing_stops_when_the_server_answers_empty_names_forever() {
    let mut calls = 0;
    let err = read_dir_replies("d", 10, endless(name_reply(&[]), &mut calls)).unwrap_err();
    assert_eq!(err.kind(), Kind::Io, "{err}");
    assert!(err.to_string().contains("does not end"), "{err}");
    assert!(calls <= MAX_EMPTY_READDIRS + 1, "{calls} READDIRs");
}

#[test]
fn listing_stops_at_the_entry_cap() {
    let mut calls = 0;
    let reply = name_reply(&["a", "b", "c"]);
    let err = read_dir_replies("d", 10, endless(reply, &mut calls)).unwrap_err();
    assert!(err.to_string().contains("does not end"), "{err}");
    assert_eq!(calls, 4);
}

/// An SFTP server in python3 that answers each request, in order, with the next of
/// `replies` (packet type, body after the id), putting in the request's id; it exits
/// when the replies are used up. Returns the `sftp.command` that starts it.
fn scripted_server(dir: &std::path::Path, replies: &[(u8, Vec<u8>)]) -> String {
    let mut script = Vec::new();
    for (typ, body) in replies {
        script.push(*typ);
        put_str(&mut script, body);
    }
    std::fs::write(dir.join("replies"), script).unwrap();
    std::fs::write(
        dir.join("server.py"),
        r#"
import struct, sys
raw = open(sys.argv[1], "rb").read()
inp, out = sys.stdin.buffer, sys.stdout.buffer
at, first = 0, True
while at < len(raw):
    typ, n = raw[at], struct.unpack(">I", raw[at + 1:at + 5])[0]
    body = raw[at + 5:at + 5 + n]
    at += 5 + n
    head = inp.read(4)
    if len(head) < 4:
        break
    req = inp.read(struct.unpack(">I", head)[0])
    payload = (b"" if first else req[1:5]) + body
    first = False
    out.write(struct.pack(">I", len(payload) + 1) + bytes([typ]) + payload)
    out.flush()
"#,
    )
    .unwrap();
    format!(
        "python3 {} {}",
        dir.join("server.py").display(),
        dir.join("replies").display()
    )
}

fn backend(command: &str) -> SftpBackend {
    let retry = Retry {
        max_time: Duration::ZERO,
        first_wait: Duration::from_millis(1),
        max_wait: Duration::from_millis(1),
    };
    SftpBackend::new(
        Spec::parse("fake:/repo").unwrap(),
        Some(command),
        None,
        retry,
        Arc::new(Limits::new(None, None)),
        Duration::from_secs(10),
        Duration::from_secs(10),
    )
    .unwrap()
}

/// Found by the `sftp` fuzz target: a whole-file read allocated the size FSTAT
/// reported, so a server claiming 2^64-1 bytes made cairn panic (capacity overflow)
/// and one claiming terabytes made it abort for lack of memory.
#[test]
fn whole_file_read_refuses_a_size_no_file_of_its_type_has() {
    for (t, size) in [
        (FileType::Snapshot, u64::MAX),
        (FileType::Snapshot, 1 << 40),
        (FileType::Key, 2 << 20),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut attrs = Vec::new();
        put_u32(&mut attrs, ATTR_SIZE);
        put_u64(&mut attrs, size);
        let mut handle = Vec::new();
        put_str(&mut handle, b"h");
        let mut ok = Vec::new();
        put_u32(&mut ok, FX_OK);
        let mut version = Vec::new();
        put_u32(&mut version, 3);
        let replies = [
            (FXP_VERSION, version),
            (FXP_HANDLE, handle),
            (FXP_ATTRS, attrs),
            (FXP_STATUS, ok),
        ];
        let be = backend(&scripted_server(dir.path(), &replies));
        let err = be.read(t, &"ab".repeat(32)).unwrap_err();
        assert_eq!(err.kind(), Kind::Corrupt, "{err}");
        assert!(
            err.to_string().contains(&format!("reports {size} bytes")),
            "{err}"
        );
    }
}

#[test]
fn whole_file_read_through_a_scripted_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut attrs = Vec::new();
    put_u32(&mut attrs, ATTR_SIZE);
    put_u64(&mut attrs, 5);
    let mut handle = Vec::new();
    put_str(&mut handle, b"h");
    let mut data = Vec::new();
    put_str(&mut data, b"hello");
    let mut ok = Vec::new();
    put_u32(&mut ok, FX_OK);
    let mut version = Vec::new();
    put_u32(&mut version, 3);
    let replies = [
        (FXP_VERSION, version),
        (FXP_HANDLE, handle),
        (FXP_ATTRS, attrs),
        (FXP_DATA, data),
        (FXP_STATUS, ok),
    ];
    let be = backend(&scripted_server(dir.path(), &replies));
    assert_eq!(be.read(FileType::Snapshot, "x").unwrap(), b"hello");
}

#[test]
fn sftp_command_splits_like_a_shell() {
    assert_eq!(
        shell_words("ssh -F '/tmp/my dir/cfg' host -s sftp"),
        ["ssh", "-F", "/tmp/my dir/cfg", "host", "-s", "sftp"]
    );
}
