use super::files::expand_vars;
use super::*;
use proptest::prelude::*;

/// restic's `filter.Match`, including its "empty pattern matches
/// everything" rule.
fn restic_match(pattern: &str, path: &str) -> bool {
    if pattern.is_empty() {
        return true;
    }
    Pattern::parse(pattern).unwrap().matches(path)
}

fn restic_child_match(pattern: &str, path: &str) -> bool {
    if pattern.is_empty() {
        return true;
    }
    Pattern::parse(pattern).unwrap().child_may_match(path)
}

fn set(patterns: &[&str], ci: bool) -> PatternSet {
    let v: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
    PatternSet::new(&v, ci).unwrap()
}

// restic 0.14.0 internal/filter/filter_test.go: matchTests.
const MATCH_TESTS: &[(&str, &str, bool)] = &[
    ("", "", true),
    ("", "foo", true),
    ("", "/x/y/z/foo", true),
    ("*.go", "/foo/bar/test.go", true),
    ("*.c", "/foo/bar/test.go", false),
    ("*", "/foo/bar/test.go", true),
    ("**", "/foo/bar/test.go", true),
    ("foo*", "/foo/bar/test.go", true),
    ("bar*", "/foo/bar/test.go", true),
    ("/bar*", "/foo/bar/test.go", false),
    ("bar/*", "/foo/bar/test.go", true),
    ("baz/*", "/foo/bar/test.go", false),
    ("bar/test.go", "/foo/bar/test.go", true),
    ("bar/*.go", "/foo/bar/test.go", true),
    ("ba*/*.go", "/foo/bar/test.go", true),
    ("bb*/*.go", "/foo/bar/test.go", false),
    ("test.*", "/foo/bar/test.go", true),
    ("tesT.*", "/foo/bar/test.go", false),
    ("bar/*", "/foo/bar/baz", true),
    ("bar", "/foo/bar", true),
    ("/foo/bar", "/foo/bar", true),
    ("/foo/bar/", "/foo/bar", true),
    ("/foo/bar", "/foo/baz", false),
    ("/foo/bar", "/foo/baz/", false),
    ("/foo///bar", "/foo/bar", true),
    ("/foo/../bar", "/foo/bar", false),
    ("/foo/../bar", "/bar", true),
    ("/foo", "/foo/baz", true),
    ("/foo/", "/foo/baz", true),
    ("/foo/*", "/foo", false),
    ("/foo/*", "/foo/baz", true),
    ("bar", "/foo/bar/baz", true),
    ("bar", "/foo/bar/test.go", true),
    ("/foo/*test.*", "/foo/bar/test.go", false),
    ("/foo/*/test.*", "/foo/bar/test.go", true),
    ("/foo/*/bar/test.*", "/foo/bar/test.go", false),
    ("/*/*/bar/test.*", "/foo/bar/test.go", false),
    ("/*/*/bar/test.*", "/foo/bar/baz/test.go", false),
    ("/*/*/baz/test.*", "/foo/bar/baz/test.go", true),
    ("/*/foo/bar/test.*", "/foo/bar/baz/test.go", false),
    ("/foo/bar/test.*", "bar/baz/test.go", false),
    ("/x/y/bar/baz/test.*", "bar/baz/test.go", false),
    ("/x/y/bar/baz/test.c", "bar/baz/test.go", false),
    ("baz/test.*", "bar/baz/test.go", true),
    ("baz/tesT.*", "bar/baz/test.go", false),
    ("test.go", "bar/baz/test.go", true),
    ("*.go", "bar/baz/test.go", true),
    ("*.c", "bar/baz/test.go", false),
    ("sdk", "/foo/bar/sdk", true),
    ("sdk", "/foo/bar/sdk/test/sdk_foo.go", true),
    (
        "sdk/*/cpp/*/*vars*.html",
        "/usr/share/doc/libreoffice/sdk/docs/cpp/ref/a00517.html",
        false,
    ),
    (
        "foo/**/bar/*.go",
        "/home/user/foo/work/special/project/bar/test.go",
        true,
    ),
    ("foo/**/bar/*.go", "/home/user/foo/bar/test.go", true),
    ("foo/**/bar/*.go", "x/foo/bar/test.go", true),
    ("foo/**/bar/*.go", "foo/bar/test.go", true),
    ("foo/**/bar/*.go", "foo/bar/baz/bar/test.go", true),
    ("foo/**/bar/*.go", "/home/user/foo/test.c", false),
    ("foo/**/bar/*.go", "bar/foo/main.go", false),
    ("foo/**/bar/*.go", "/foo/bar/main.go", true),
    ("foo/**/bar/*.go", "bar/main.go", false),
    ("foo/**/bar", "/home/user/foo/x/y/bar", true),
    ("foo/**/bar", "/home/user/foo/x/y/bar/main.go", true),
    ("foo/**/bar/**/x", "/home/user/foo/bar/x", true),
    (
        "foo/**/bar/**/x",
        "/home/user/foo/blaaa/blaz/bar/shared/work/x",
        true,
    ),
    ("user/**/important*", "/home/user/work/x/y/hidden/x", false),
    (
        "user/**/hidden*/**/c",
        "/home/user/work/x/y/hidden/z/a/b/c",
        true,
    ),
    ("c:/foo/*test.*", "c:/foo/bar/test.go", false),
    ("c:/foo", "c:/foo/bar", true),
    ("c:/foo/", "c:/foo/bar", true),
    ("c:/foo/*/test.*", "c:/foo/bar/test.go", true),
    ("c:/foo/*/bar/test.*", "c:/foo/bar/test.go", false),
];

// More cases: classes, escapes, `?`, `**` placement, cleaning, quirks.
// Every expectation is also checked against the literal port of restic's
// algorithm below.
const MORE_MATCH_TESTS: &[(&str, &str, bool)] = &[
    // character classes
    ("/home/[uU]ser/?.go", "/home/user/F.go", true),
    ("/home/[uU]ser/?.go", "/home/User/F.go", true),
    ("/home/[uU]ser/?.go", "/home/xser/F.go", false),
    ("/home/[uU]ser/?.go", "/home/user/FF.go", false),
    ("[a-c]*.txt", "/x/b1.txt", true),
    ("[a-c]*.txt", "/x/d1.txt", false),
    ("[^a-c]*.txt", "/x/d1.txt", true),
    ("[^a-c]*.txt", "/x/a1.txt", false),
    ("[a-cx-z]", "/q/y", true),
    ("[a-cx-z]", "/q/m", false),
    ("[\\]]", "/q/]", true),
    ("[\\-]", "/q/-", true),
    ("[a\\-c]", "/q/b", false),
    ("?", "/q/é", true),
    ("??", "/q/é", false),
    ("[à-ü]", "/q/é", true),
    ("[^é]", "/é", false),
    ("[^é]", "/q/é", true),
    // escapes
    ("\\*.go", "/x/*.go", true),
    ("\\*.go", "/x/a.go", false),
    ("a\\?", "/x/a?", true),
    ("a\\?", "/x/ab", false),
    ("\\[x]", "/y/[x]", true),
    ("\\a\\b", "/y/ab", true),
    // `*` within a component
    ("*", "/", true),
    ("a*b*c", "/x/abxbyc", true),
    ("a*b*c", "/x/abxbyd", false),
    ("*.tar.*", "/x/a.tar.gz", true),
    ("*x", "/a/x/b", true),
    // relative vs absolute, parents
    ("foo", "/foo", true),
    ("foo", "foo", true),
    ("foo", "/a/foo/b/c", true),
    ("foo", "/a/foobar", false),
    ("/foo", "foo", false),
    ("/foo", "/a/foo", false),
    ("/", "/anything/at/all", true),
    ("/", "/", true),
    ("a/b", "/x/a/b/c", true),
    ("a/b", "/x/a/c/b", false),
    ("./foo", "/x/foo", true),
    ("foo/./bar/../baz", "/x/foo/baz", true),
    ("../foo", "/x/foo", false),
    ("/../foo", "/foo/x", true),
    (".", "/x/./y", true),
    // `**`
    ("**", "/", true),
    ("**", "a", true),
    ("/**", "/x", true),
    ("/**", "/", true),
    ("**/foo", "/foo", true),
    ("**/foo", "/a/b/foo/c", true),
    ("**/foo", "/a/b/fo", false),
    ("/**/foo", "/a/b/foo", true),
    ("/**/foo", "/foo", true),
    ("/a/**", "/a", true),
    ("/a/**", "/a/b/c", true),
    ("/a/**", "/b", false),
    ("/a/**/b", "/a/b", true),
    ("/a/**/b", "/a/x/y/b/z", true),
    ("/a/**/b", "/x/a/b", false),
    ("a/**/b/**/c", "/a/b/c", true),
    ("a/**/b/**/c", "/a/x/b/y/c/z", true),
    ("a/**/b/**/c", "/a/x/c/y/b", false),
    ("a/**/**/b", "/a/b", true),
    ("a/**/**/b", "/a/x/y/b", true),
    ("**/**", "/a", true),
    ("**/**/**/**", "/", false),
    ("**/**/**", "/", true),
    // restic 0.14 quirks of several `**` (see module docs)
    ("/**/a/**", "/x/a", false),
    ("/**/a/**", "/x/a/b", true),
    ("/**/a/**", "/a", false),
    ("/**/a/**", "/a/b", true),
    ("a/**/b/**", "a/x/b", false),
    ("a/**/b/**", "/a/x/b", true),
    ("a/**/b/**", "a/x/b/c", true),
    ("a/b/**", "a/b", true),
    // unclean paths are not cleaned
    ("/foo/bar", "/foo//bar", false),
    ("foo/*", "/foo/", true),
];

// restic 0.14.0 filter_test.go: childMatchTests.
const CHILD_MATCH_TESTS: &[(&str, &str, bool)] = &[
    ("", "", true),
    ("", "/foo", true),
    ("", "/x/y/z/foo", true),
    ("foo/bar", "/foo", true),
    ("baz/bar", "/foo", true),
    ("foo", "/foo/bar", true),
    ("bar", "/foo", true),
    ("baz", "/foo/bar", true),
    ("*", "/foo", true),
    ("*", "/foo/bar", true),
    ("/foo/bar", "/foo", true),
    ("/foo/bar/baz", "/foo", true),
    ("/foo/bar/baz", "/foo/bar", true),
    ("/foo/bar/baz", "/foo/baz", false),
    ("/foo/**/baz", "/foo/bar/baz", true),
    ("/foo/**/baz", "/foo/bar/baz/blah", true),
    ("/foo/**/qux", "/foo/bar/baz/qux", true),
    ("/foo/**/qux", "/foo/bar/baz", true),
    ("/foo/**/qux", "/foo/bar/baz/boo", true),
    ("/foo/**", "/foo/bar/baz", true),
    ("/foo/**", "/foo/bar", true),
    ("foo/**/bar/**/x", "/home/user/foo", true),
    ("foo/**/bar/**/x", "/home/user/foo/bar", true),
    (
        "foo/**/bar/**/x",
        "/home/user/foo/blaaa/blaz/bar/shared/work/x",
        true,
    ),
    ("/foo/*/qux", "/foo/bar", true),
    ("/foo/*/qux", "/foo/bar/boo", false),
    ("/foo/*/qux", "/foo/bar/boo/xx", false),
    ("/baz/bar", "/foo", false),
    ("/foo", "/foo/bar", true),
    ("/*", "/foo", true),
    ("/*", "/foo/bar", true),
    ("/foo", "/foo/bar", true),
    ("/**", "/foo", true),
    ("/*/**", "/foo", true),
    ("/*/**", "/foo/bar", true),
    ("/*/bar", "/foo", true),
    ("/bar/*", "/foo", false),
    ("/foo/*/baz", "/foo/bar", true),
    ("/foo/*/baz", "/foo/baz", true),
    ("/foo/*/baz", "/bar/baz", false),
    ("/**/*", "/foo", true),
    ("/**/bar", "/foo/bar", true),
    // more
    ("/home/[uU]ser/docs", "/home/User", true),
    ("/home/[uU]ser/docs", "/home/other", false),
    ("/home/user/docs", "/", false), // "/" splits into ["/", ""]
    ("/a/b", "/b", false),
    ("/a/**/c", "/b", false),
    ("/a/**/c", "/a/x/y/z", true),
];

// restic 0.14.0 filter_test.go: filterListTests (patterns, path, match,
// childMatch).
#[allow(clippy::type_complexity)]
const LIST_TESTS: &[(&[&str], &str, bool, bool)] = &[
    (&[], "/foo/bar/test.go", false, false),
    (&["*.go"], "/foo/bar/test.go", true, true),
    (&["*.go"], "/foo/bar", false, true),
    (&["*.c"], "/foo/bar/test.go", false, true),
    (&["*.go", "*.c"], "/foo/bar/test.go", true, true),
    (&["*"], "/foo/bar/test.go", true, true),
    (&["x"], "/foo/bar/test.go", false, true),
    (&["?"], "/foo/bar/test.go", false, true),
    (&["?", "x"], "/foo/bar/x", true, true),
    (&["/*/*/bar/test.*"], "/foo/bar/test.go", false, false),
    (&["/*/*/bar/test.*"], "/foo/bar/bar", false, true),
    (&["/*/*/bar/test.*", "*.go"], "/foo/bar/test.go", true, true),
    (&["", "*.c"], "/foo/bar/test.go", false, true),
    (&["!**", "*.go"], "/foo/bar/test.go", true, true),
    (&["!**", "*.c"], "/foo/bar/test.go", false, true),
    (&["/foo/*/test.*", "!*.c"], "/foo/bar/test.c", false, false),
    (&["/foo/*/test.*", "!*.c"], "/foo/bar/test.go", true, true),
    (
        &["/foo/*/*", "!test.*", "*.c"],
        "/foo/bar/test.go",
        false,
        true,
    ),
    (
        &["/foo/*/*", "!test.*", "*.c"],
        "/foo/bar/test.c",
        true,
        true,
    ),
    (
        &["/foo/*/*", "!test.*", "*.c"],
        "/foo/bar/file.go",
        true,
        true,
    ),
    (
        &["/**/*", "!/foo", "/foo/*", "!/foo/bar"],
        "/foo/other/test.go",
        true,
        true,
    ),
    (
        &["/**/*", "!/foo", "/foo/*", "!/foo/bar"],
        "/foo/bar",
        false,
        false,
    ),
    (
        &["/**/*", "!/foo", "/foo/*", "!/foo/bar"],
        "/foo/bar/test.go",
        false,
        false,
    ),
    (
        &["/**/*", "!/foo", "/foo/*", "!/foo/bar"],
        "/foo/bar/test.go/child",
        false,
        false,
    ),
    (
        &["/**/*", "!/foo", "/foo/*", "!/foo/bar", "/foo/bar/test*"],
        "/foo/bar/test.go/child",
        true,
        true,
    ),
    (&["/foo/bar/*"], "/foo", false, true),
    (&["/foo/bar/*", "!/foo/bar/[a-m]*"], "/foo", false, true),
    (&["/foo/**/test.c"], "/foo/bar/foo/bar/test.c", true, true),
    (&["/foo/*/test.c"], "/foo/bar/foo/bar/test.c", false, false),
    // more
    (&["/home/*/.cache"], "/home", false, true),
    (&["/home/*/.cache"], "/etc", false, false),
    (&["/home/*/.cache"], "/home/u/.cache/x", true, true),
    (&["*.o", "!keep.o"], "/src/keep.o", false, false),
    (&["*.o", "!keep.o"], "/src/other.o", true, true),
    (&["!*.o"], "/src/other.o", false, false),
    (&["*.o", "!keep.o", "keep.o"], "/src/keep.o", true, true),
    (
        &["/data", "!/data/important"],
        "/data/important/x",
        false,
        false,
    ),
    (&["/data", "!/data/important"], "/data/other", true, true),
    (&["/data", "!/data/important"], "/data", true, true),
    (&["/a/b", "/c/d"], "/a", false, true),
    (&["/a/b", "/c/d"], "/c", false, true),
    (&["/a/b", "/c/d"], "/e", false, false),
];

#[test]
fn exclude_match_table() {
    for &(pattern, path, want) in MATCH_TESTS.iter().chain(MORE_MATCH_TESTS) {
        assert_eq!(
            restic_match(pattern, path),
            want,
            "Match({pattern:?}, {path:?})"
        );
    }
}

#[test]
fn exclude_match_table_agrees_with_reference() {
    for &(pattern, path, _) in MATCH_TESTS.iter().chain(MORE_MATCH_TESTS) {
        if pattern.is_empty() || path.is_empty() {
            continue;
        }
        let p = Pattern::parse(pattern).unwrap();
        with_components(path.as_bytes(), |strs| {
            assert_eq!(
                p.match_components(strs),
                reference::matches(&p.parts, strs),
                "Match({pattern:?}, {path:?})"
            );
        });
    }
}

#[test]
fn exclude_child_match_table() {
    for &(pattern, path, want) in CHILD_MATCH_TESTS {
        assert_eq!(
            restic_child_match(pattern, path),
            want,
            "ChildMatch({pattern:?}, {path:?})"
        );
        if !pattern.is_empty() && !path.is_empty() {
            let p = Pattern::parse(pattern).unwrap();
            with_components(path.as_bytes(), |strs| {
                assert_eq!(
                    p.child_components(strs),
                    reference::child_matches(&p.parts, strs),
                    "ChildMatch({pattern:?}, {path:?}) vs reference"
                );
            });
        }
    }
}

#[test]
fn exclude_list_table() {
    for &(patterns, path, want_match, want_child) in LIST_TESTS {
        let s = set(patterns, false);
        assert_eq!(s.matches(path), want_match, "List({patterns:?}, {path:?})");
        assert_eq!(
            s.matches_with_child(path),
            (want_match, want_child),
            "ListWithChild({patterns:?}, {path:?})"
        );
        assert_eq!(s.child_may_match(path), want_child);
        // The same patterns in a case-insensitive set behave the same on
        // lower-case paths.
        let ci = set(patterns, true);
        assert_eq!(ci.matches_with_child(path), (want_match, want_child));
    }
}

#[test]
fn exclude_empty_inputs() {
    assert!(matches!(Pattern::parse(""), Err(PatternError::Empty)));
    let s = set(&["", ""], false);
    assert!(s.is_empty());
    assert_eq!(s.len(), 0);
    assert!(!s.matches("/foo"));
    assert!(!s.child_may_match("/foo"));
    let s = set(&["*"], false);
    assert!(!s.is_empty());
    assert!(!s.matches(""), "empty path never matches");
    assert_eq!(s.matches_with_child(""), (false, false));
    assert!(PatternSet::default().is_empty());
    assert!(!PatternSet::default().matches("/x"));
}

#[test]
fn exclude_invalid_patterns() {
    for (pattern, component) in [
        ("test/[", "["),
        ("test/**/[", "["),
        ("[a", "[a"),
        ("/x/[]", "[]"),
        ("[]a]", "[]a]"),
        ("[^]", "[^]"),
        ("foo\\", "foo\\"),
        ("a[b-]c", "a[b-]c"),
        ("[a-", "[a-"),
        ("!x/*[", "*["),
        ("[\\", "[\\"),
        ("ok/a\\/b", "a\\"),
    ] {
        match Pattern::parse(pattern) {
            Err(e @ PatternError::Invalid { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&format!("{pattern:?}")), "{msg}");
                assert!(msg.contains(&format!("{component:?}")), "{msg}");
            }
            other => panic!("{pattern:?}: expected an error, got {other:?}"),
        }
        let v = vec!["ok".to_string(), pattern.to_string()];
        assert!(PatternSet::new(&v, false).is_err(), "{pattern:?}");
        assert!(PatternSet::new(&v, true).is_err(), "{pattern:?}");
    }
    let e = Pattern::parse("test/[").unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid pattern \"test/[\": character class is not closed with ']' in \"[\""
    );
    // Valid odd ones.
    for ok in ["]", "a]", "[\\]]", "[!]", "[a-a]", "[z-a]", "\\\\", "a[*]b"] {
        assert!(Pattern::parse(ok).is_ok(), "{ok:?}");
    }
    assert!(Pattern::parse("[]]]").is_err());
    assert!(restic_match("[*]", "/x/*"));
    assert!(!restic_match("[*]", "/x/a"));
    assert!(!restic_match("[z-a]", "/x/m"));
}

#[test]
fn exclude_go_match_direct() {
    // Go path/filepath match_test.go cases (Unix).
    let cases: &[(&str, &str, Result<bool, ()>)] = &[
        ("abc", "abc", Ok(true)),
        ("*", "abc", Ok(true)),
        ("*c", "abc", Ok(true)),
        ("a*", "a", Ok(true)),
        ("a*", "abc", Ok(true)),
        ("a*", "ab/c", Ok(false)),
        ("a*/b", "abc/b", Ok(true)),
        ("a*/b", "a/c/b", Ok(false)),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
        ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
        ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
        ("ab[c]", "abc", Ok(true)),
        ("ab[b-d]", "abc", Ok(true)),
        ("ab[e-g]", "abc", Ok(false)),
        ("ab[^c]", "abc", Ok(false)),
        ("ab[^b-d]", "abc", Ok(false)),
        ("ab[^e-g]", "abc", Ok(true)),
        ("a\\*b", "a*b", Ok(true)),
        ("a\\*b", "ab", Ok(false)),
        ("a?b", "a☺b", Ok(true)),
        ("a[^a]b", "a☺b", Ok(true)),
        ("a???b", "a☺b", Ok(false)),
        ("a[^a][^a][^a]b", "a☺b", Ok(false)),
        ("[a-ζ]*", "α", Ok(true)),
        ("*[a-ζ]", "A", Ok(false)),
        ("a?b", "a/b", Ok(false)),
        ("a*b", "a/b", Ok(false)),
        ("[\\]a]", "]", Ok(true)),
        ("[\\-]", "-", Ok(true)),
        ("[x\\-]", "x", Ok(true)),
        ("[x\\-]", "-", Ok(true)),
        ("[x\\-]", "z", Ok(false)),
        ("[\\-x]", "x", Ok(true)),
        ("[\\-x]", "-", Ok(true)),
        ("[\\-x]", "a", Ok(false)),
        ("[]a]", "]", Err(())),
        ("[-]", "-", Err(())),
        ("[x-]", "x", Err(())),
        ("[x-]", "-", Err(())),
        ("[x-]", "z", Err(())),
        ("[-x]", "x", Err(())),
        ("[-x]", "-", Err(())),
        ("[-x]", "a", Err(())),
        ("\\", "a", Err(())),
        ("[a-b-c]", "a", Err(())),
        ("[", "a", Err(())),
        ("[^", "a", Err(())),
        ("[^bc", "a", Err(())),
        ("a[", "a", Err(())),
        ("a[", "ab", Err(())),
        ("a[", "x", Err(())),
        ("a/b[", "x", Err(())),
        ("*x", "xxx", Ok(true)),
    ];
    for &(p, n, want) in cases {
        let got = go_match(p.as_bytes(), n.as_bytes()).map_err(|_| ());
        assert_eq!(got, want, "filepath.Match({p:?}, {n:?})");
    }
}

#[test]
fn exclude_go_clean() {
    for (input, want) in [
        ("", "."),
        ("abc", "abc"),
        ("abc/def", "abc/def"),
        (".", "."),
        ("..", ".."),
        ("../..", "../.."),
        ("../../abc", "../../abc"),
        ("/abc", "/abc"),
        ("/", "/"),
        ("abc/", "abc"),
        ("/abc/", "/abc"),
        ("abc//def//ghi", "abc/def/ghi"),
        ("//abc", "/abc"),
        ("abc/./def", "abc/def"),
        ("/./abc/def", "/abc/def"),
        ("abc/.", "abc"),
        ("abc/def/ghi/../jkl", "abc/def/jkl"),
        ("abc/def/../ghi/../jkl", "abc/jkl"),
        ("abc/def/..", "abc"),
        ("abc/def/../..", "."),
        ("/abc/def/../..", "/"),
        ("abc/def/../../..", ".."),
        ("/abc/def/../../..", "/"),
        ("abc/def/../../../ghi/jkl/../../../mno", "../../mno"),
        ("/../abc", "/abc"),
        ("abc/./../def", "def"),
        ("abc//./../def", "def"),
    ] {
        assert_eq!(go_clean(input), want, "Clean({input:?})");
    }
}

#[test]
fn exclude_case_insensitive() {
    let ci = set(&["*.JPG", "/Home/USER/Cache", "[A-C]x"], true);
    assert!(ci.matches("/photos/IMG_1.jpg"));
    assert!(ci.matches("/photos/img_1.JpG"));
    assert!(ci.matches("/home/user/cache/x"));
    assert!(ci.matches("/HOME/USER/CACHE"));
    assert!(ci.matches("/q/bX"));
    assert!(!ci.matches("/q/dx"));
    let cs = set(&["*.JPG"], false);
    assert!(!cs.matches("/photos/IMG_1.jpg"));
    assert!(cs.matches("/photos/IMG_1.JPG"));
    // Non-ASCII, Go's simple case mapping (U+0130 lowers to plain 'i').
    let ci = set(&["ÄRGER", "İstanbul"], true);
    assert!(ci.matches("/x/ärger"));
    assert!(ci.matches("/x/ÄrGeR/y"));
    assert!(ci.matches("/x/istanbul"));
    assert!(ci.matches("/x/İSTANBUL"));
    // The original spelling is kept for display.
    assert_eq!(ci.patterns().next().unwrap().as_str(), "ÄRGER");
    // Invalid UTF-8 bytes in a case-insensitive path become U+FFFD.
    let ci = set(&["a?b"], true);
    assert!(ci.matches_bytes(b"/x/A\xffB"));
    assert_eq!(
        &*go_lower(b"A\xff\xe2\x82B"),
        "a\u{fffd}\u{fffd}\u{fffd}b".as_bytes()
    );
    assert!(matches!(go_lower(b"/plain/path"), Cow::Borrowed(_)));
    assert!(matches!(go_lower("/grüße".as_bytes()), Cow::Borrowed(_)));
}

#[test]
fn exclude_extend_keeps_lists_separate() {
    let mut s = set(&["*.go"], false);
    s.extend(set(&["!x.go"], false));
    s.extend(set(&["X.GO"], true));
    assert_eq!(s.len(), 3);
    // Case-sensitive list: "*.go" then "!x.go" -> not matched; the
    // case-insensitive list matches on its own.
    assert!(s.matches("/a/x.go"));
    let mut s = set(&["*.go"], false);
    s.extend(set(&["Y.GO"], true));
    s.extend(set(&["!x.go"], false));
    assert!(
        !s.matches("/a/x.go"),
        "negation joins the case-sensitive list"
    );
    assert!(s.matches("/a/y.go"));
    assert!(s.matches("/a/z.go"));
    let mut s = PatternSet::default();
    s.extend(set(&[], true));
    assert!(s.is_empty());
    s.extend(set(&["/a/b"], true));
    assert!(s.child_may_match("/A"));
    assert!(!s.child_may_match("/c"));
}

#[test]
fn exclude_non_utf8_paths() {
    let s = set(&["*.bin", "/data/?"], false);
    assert!(s.matches_bytes(b"/x/\xff\xfe.bin"));
    assert!(s.matches_bytes(b"/data/\xff/y"));
    assert!(!s.matches_bytes(b"/data/\xff\xfe"));
    use std::os::unix::ffi::OsStrExt;
    let p = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/\xe9t\xe9.bin"));
    assert!(s.matches_path(p));
}

#[test]
fn exclude_deep_paths_spill() {
    let deep: String = (0..200).map(|i| format!("/d{i}")).collect();
    let s = set(&["d150"], false);
    assert!(s.matches(&deep));
    let s = set(&["/d0/**/d199"], false);
    assert!(s.matches(&deep));
    let s = set(&["d200"], false);
    assert!(!s.matches(&deep));
}

/// A literal, allocating port of restic 0.14's `match` and `childMatch`,
/// used as the oracle for the optimised matcher.
mod reference {
    use super::super::Part;

    fn is_root(p: &Part) -> bool {
        *p == Part::Literal(Box::from(&b"/"[..]))
    }

    pub fn matches(parts: &[Part], strs: &[&[u8]]) -> bool {
        if let Some(pos) = parts.iter().position(|p| *p == Part::DoubleStar) {
            let limit = strs.len() as isize - parts.len() as isize + 1;
            let mut i = 0;
            while i <= limit {
                let mut expanded: Vec<Part> = parts[..pos].to_vec();
                for _ in 0..i {
                    expanded.push(Part::Glob(Box::from(&b"*"[..])));
                }
                expanded.extend_from_slice(&parts[pos + 1..]);
                if matches(&expanded, strs) {
                    return true;
                }
                i += 1;
            }
            return false;
        }
        if parts.is_empty() {
            return strs.is_empty();
        }
        if parts.len() <= strs.len() {
            let mut min = 0;
            let mut max = strs.len() - parts.len();
            if is_root(&parts[0]) {
                max = 0;
            } else if strs[0] == b"/" {
                min = 1;
            }
            for off in (min..=max).rev() {
                if parts
                    .iter()
                    .enumerate()
                    .all(|(i, p)| p.matches(strs[off + i]))
                {
                    return true;
                }
            }
        }
        false
    }

    pub fn child_matches(parts: &[Part], strs: &[&[u8]]) -> bool {
        if !is_root(&parts[0]) {
            return true;
        }
        let mut strs = strs;
        if let Some(pos) = parts.iter().position(|p| *p == Part::DoubleStar) {
            if strs.len() >= pos {
                strs = &strs[..pos];
            }
        }
        let l = strs.len().min(parts.len());
        matches(&parts[..l], strs)
    }
}

fn pattern_strategy() -> impl Strategy<Value = String> {
    let comp = prop_oneof![
        Just("a"),
        Just("b"),
        Just("ab"),
        Just("*"),
        Just("**"),
        Just("?"),
        Just("[ab]"),
        Just("[^a]"),
        Just("a*"),
        Just("*b"),
        Just("."),
        Just(".."),
    ];
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(comp, 1..7),
    )
        .prop_map(|(neg, abs, comps)| {
            format!(
                "{}{}{}",
                if neg { "!" } else { "" },
                if abs { "/" } else { "" },
                comps.join("/")
            )
        })
}

fn path_strategy() -> impl Strategy<Value = String> {
    let comp = prop_oneof![Just("a"), Just("b"), Just("ab"), Just("ba"), Just("")];
    (any::<bool>(), prop::collection::vec(comp, 1..10)).prop_map(|(abs, comps)| {
        let p = format!("{}{}", if abs { "/" } else { "" }, comps.join("/"));
        // restic rejects empty paths before matching.
        if p.is_empty() {
            "a".to_string()
        } else {
            p
        }
    })
}

proptest! {
    #[test]
    fn exclude_prop_matches_reference(pattern in pattern_strategy(), path in path_strategy()) {
        let p = Pattern::parse(&pattern).unwrap();
        with_components(path.as_bytes(), |strs| {
            prop_assert_eq!(
                p.match_components(strs),
                reference::matches(&p.parts, strs),
                "Match({:?}, {:?})", pattern, path
            );
            prop_assert_eq!(
                p.child_components(strs),
                reference::child_matches(&p.parts, strs),
                "ChildMatch({:?}, {:?})", pattern, path
            );
            Ok(())
        })?;
    }

    #[test]
    fn exclude_prop_fast_paths_equal_go_match(
        glob in "[ab*?/\\\\\\[\\]^-]{0,6}",
        name in "[ab*/\\[\\]-]{0,6}",
    ) {
        if let Ok(m) = go_match(glob.as_bytes(), name.as_bytes()) {
            if !glob.is_empty() && !glob.contains('/') && glob != "**" {
                prop_assert_eq!(Part::compile(&glob).matches(name.as_bytes()), m);
            }
        }
    }

    #[test]
    fn exclude_prop_never_panics(
        patterns in prop::collection::vec(".{0,12}", 0..4),
        path in prop::collection::vec(any::<u8>(), 0..40),
        ci in any::<bool>(),
    ) {
        if let Ok(s) = PatternSet::new(&patterns, ci) {
            let _ = s.matches_bytes(&path);
            let _ = s.matches_with_child_bytes(&path);
            if let Ok(p) = std::str::from_utf8(&path) {
                let _ = s.matches(p);
                let _ = s.child_may_match(p);
            }
        }
        for p in &patterns {
            let _ = Pattern::parse(p);
            let _ = go_match(p.as_bytes(), &path);
            let _ = expand_vars(p, |_| String::new());
            let _ = ExcludeIfPresent::parse(p);
            let _ = parse_size(p);
        }
        let _ = go_lower(&path);
    }

    #[test]
    fn exclude_prop_never_panics_glob_heavy(
        patterns in prop::collection::vec("[!/a*?\\[\\]\\\\^.-]{1,10}", 1..4),
        path in "[/a*?\\[\\].-]{0,16}",
    ) {
        if let Ok(s) = PatternSet::new(&patterns, false) {
            let _ = s.matches_with_child(&path);
        }
    }
}
