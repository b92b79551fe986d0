//! Tests of what reads exclusions from outside the patterns: pattern files and the
//! variables in them, `--exclude-if-present` and `--exclude-larger-than`.

use super::files::expand_vars;
use super::*;

#[test]
fn exclude_expand_vars() {
    let env = |name: &str| match name {
        "HOME" => "/home/me".to_string(),
        "X" => "x".to_string(),
        "$" => "$".to_string(),
        "1" => "one".to_string(),
        _ => String::new(),
    };
    for (input, want) in [
        ("plain", "plain"),
        ("$HOME/.cache", "/home/me/.cache"),
        ("${HOME}/.cache", "/home/me/.cache"),
        ("${X}y", "xy"),
        ("$Xy", ""),
        ("$X-y", "x-y"),
        ("$$HOME", "$HOME"),
        ("a$$", "a$"),
        ("cost$", "cost$"),
        ("$ x", "$ x"),
        ("$/x", "$/x"),
        ("$UNSET/x", "/x"),
        ("${}x", "x"),
        ("${x", "x"),
        ("$1a", "onea"),
        ("${1}a", "onea"),
        ("${*}", ""),
        ("ä$X", "äx"),
        ("${ä}b", "b"),
    ] {
        assert_eq!(expand_vars(input, env), want, "Expand({input:?})");
    }
}

#[test]
fn exclude_read_pattern_file() {
    let dir = tempfile::tempdir().unwrap();
    let var = "CAIRN_EXCLUDE_TEST_VAR_2F9A";
    std::env::set_var(var, "/from/env");
    let path = dir.path().join("excludes.txt");
    let content = "# a comment\n\n   *.tmp   \r\n\t/var/cache\n  # indented comment\n\
                   $@V@/x\n${@V@}\n#$@V@\ncost$$\n$CAIRN_EXCLUDE_UNSET_77\nno-newline"
        .replace("@V@", var);
    std::fs::write(&path, content).unwrap();
    let got = read_pattern_file(&path).unwrap();
    assert_eq!(
        got,
        vec![
            "*.tmp",
            "/var/cache",
            "/from/env/x",
            "/from/env",
            "cost$",
            "", // an unset variable: kept like restic, skipped by PatternSet
            "no-newline"
        ]
    );
    // BOMs.
    let p8 = dir.path().join("bom8");
    std::fs::write(&p8, b"\xEF\xBB\xBF*.o\n").unwrap();
    assert_eq!(read_pattern_file(&p8).unwrap(), vec!["*.o"]);
    let mut le = vec![0xFF, 0xFE];
    for u in "*.ä\r\n# c\nb".encode_utf16() {
        le.extend_from_slice(&u.to_le_bytes());
    }
    let p16 = dir.path().join("bom16le");
    std::fs::write(&p16, &le).unwrap();
    assert_eq!(read_pattern_file(&p16).unwrap(), vec!["*.ä", "b"]);
    let mut be = vec![0xFE, 0xFF];
    for u in "x\ny".encode_utf16() {
        be.extend_from_slice(&u.to_be_bytes());
    }
    let p16 = dir.path().join("bom16be");
    std::fs::write(&p16, &be).unwrap();
    assert_eq!(read_pattern_file(&p16).unwrap(), vec!["x", "y"]);
    // Several files in order.
    assert_eq!(
        read_pattern_files(&[&p8, &p16]).unwrap(),
        vec!["*.o", "x", "y"]
    );
    // Errors name the file.
    let missing = dir.path().join("missing");
    let e = read_pattern_file(&missing).unwrap_err();
    assert!(matches!(e, PatternError::Io { .. }));
    assert!(e.to_string().contains("missing"), "{e}");
    let bad = dir.path().join("bad");
    std::fs::write(&bad, b"ok\n\xff\xfe\n").unwrap();
    let e = read_pattern_file(&bad).unwrap_err();
    assert!(matches!(e, PatternError::NotUtf8 { line: 2, .. }), "{e:?}");
    // Patterns read from a file feed a set.
    let s = PatternSet::new(&got, false).unwrap();
    assert!(s.matches("/from/env/x/y"));
    assert!(s.matches("/a/b.tmp"));
}

#[test]
fn exclude_if_present() {
    let dir = tempfile::tempdir().unwrap();
    let tagged = dir.path().join("tagged");
    let plain = dir.path().join("plain");
    let cache = dir.path().join("cache");
    let badcache = dir.path().join("badcache");
    let short = dir.path().join("short");
    let empty = dir.path().join("empty");
    for d in [&tagged, &plain, &cache, &badcache, &short, &empty] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(tagged.join(".nobackup"), b"").unwrap();
    std::fs::write(
        cache.join("CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n# comment\n",
    )
    .unwrap();
    std::fs::write(
        badcache.join("CACHEDIR.TAG"),
        b"Signature: 00000000000000000000000000000000 (wrong)\n",
    )
    .unwrap();
    std::fs::write(short.join("CACHEDIR.TAG"), b"Signature").unwrap();
    std::fs::write(empty.join("CACHEDIR.TAG"), b"").unwrap();

    let nb = ExcludeIfPresent::parse(".nobackup");
    assert_eq!(nb.filename, ".nobackup");
    assert!(nb.header.is_none());
    assert!(nb.excludes_dir(&tagged));
    assert!(!nb.excludes_dir(&plain));
    assert!(!nb.excludes_dir(&dir.path().join("does-not-exist")));
    // restic's per-item semantics: contents go, the tag file stays.
    assert!(nb.excludes_path(&tagged.join("file")));
    assert!(nb.excludes_path(&tagged.join("sub")));
    assert!(!nb.excludes_path(&tagged.join(".nobackup")));
    assert!(!nb.excludes_path(&tagged));
    assert!(!nb.excludes_path(&plain.join("file")));

    let c = ExcludeIfPresent::cachedir_tag();
    assert_eq!(c.filename, "CACHEDIR.TAG");
    assert_eq!(
        c.header.as_deref(),
        Some(&b"Signature: 8a477f597d28d172789f06886806bc55"[..])
    );
    assert!(c.excludes_dir(&cache));
    assert!(!c.excludes_dir(&plain));
    assert!(!c.excludes_dir(&badcache));
    let w = c.check_dir(&badcache).unwrap_err();
    assert!(w.to_string().starts_with("invalid signature"), "{w}");
    let w = c.check_dir(&short).unwrap_err();
    assert!(w.to_string().contains("unexpected EOF"), "{w}");
    let w = c.check_dir(&empty).unwrap_err();
    assert!(w.to_string().contains("too short"), "{w}");
    assert!(!c.excludes_dir(&short));
    // Without a header the mere presence counts.
    assert!(ExcludeIfPresent::parse("CACHEDIR.TAG").excludes_dir(&badcache));
    assert!(ExcludeIfPresent::parse("CACHEDIR.TAG:").excludes_dir(&empty));
    assert!(ExcludeIfPresent::parse("CACHEDIR.TAG:").header.is_none());
    // Header split at the first colon only.
    let h = ExcludeIfPresent::parse("T:a:b");
    assert_eq!(
        (h.filename.as_str(), h.header.as_deref()),
        ("T", Some(&b"a:b"[..]))
    );
    // Empty names.
    assert!(!ExcludeIfPresent::parse(":x").excludes_dir(&tagged));
    assert!(ExcludeIfPresent::try_parse("").is_err());
    assert!(ExcludeIfPresent::try_parse(":hdr").is_err());
    assert!(ExcludeIfPresent::try_parse(ExcludeIfPresent::CACHEDIR_TAG).is_ok());
}

#[test]
fn exclude_parse_size() {
    for (s, want) in [
        ("0", 0),
        ("100", 100),
        ("100b", 100),
        ("100B", 100),
        ("1k", 1024),
        ("2K", 2048),
        ("3m", 3 << 20),
        ("1G", 1 << 30),
        ("1t", 1 << 40),
        ("+5", 5),
    ] {
        assert_eq!(parse_size(s).unwrap(), want, "{s:?}");
    }
    for s in [
        "",
        "k",
        "1.5M",
        "10x",
        " 1k",
        "-1k",
        "99999999999999999999",
        "9000000000000000t",
    ] {
        assert!(parse_size(s).is_err(), "{s:?}");
    }
    assert!(exceeds_size(1025, false, 1024));
    assert!(!exceeds_size(1024, false, 1024));
    assert!(!exceeds_size(1 << 40, true, 1024));
}
