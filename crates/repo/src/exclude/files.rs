//! Pattern files (`--exclude-file`, `--iexclude-file`, restore's include files): read,
//! decoded and their environment variables expanded as restic does.

use super::PatternError;
use std::borrow::Cow;
use std::path::Path;

/// Reads an exclude file like restic: one pattern per line, `#` comments,
/// blank lines skipped, surrounding whitespace trimmed, `$VAR`/`${VAR}`
/// expanded from the environment (unset variables become empty, `$$` is a
/// literal `$`). A UTF-8 BOM is skipped and UTF-16 files with a BOM are
/// decoded, like restic's `textfile.Read`.
pub fn read_pattern_file(path: &Path) -> Result<Vec<String>, PatternError> {
    let data = std::fs::read(path).map_err(|source| PatternError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_pattern_file(&data, path, getenv_or_dollar)
}

/// Reads several exclude files, concatenating their patterns in order.
pub fn read_pattern_files<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<String>, PatternError> {
    let mut out = Vec::new();
    for p in paths {
        out.extend(read_pattern_file(p.as_ref())?);
    }
    Ok(out)
}

/// restic's `getenvOrDollar`.
pub(super) fn getenv_or_dollar(name: &str) -> String {
    if name == "$" {
        return "$".to_string();
    }
    if name.is_empty() || name.contains(['=', '\0']) {
        return String::new();
    }
    std::env::var_os(name)
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// restic's `textfile.Decode`: strips a UTF-8 BOM, decodes UTF-16 with BOM.
pub(super) fn decode_text(data: &[u8]) -> Cow<'_, [u8]> {
    if let Some(rest) = data.strip_prefix(b"\xEF\xBB\xBF") {
        return Cow::Borrowed(rest);
    }
    let big_endian = match data {
        [0xFE, 0xFF, ..] => true,
        [0xFF, 0xFE, ..] => false,
        _ => return Cow::Borrowed(data),
    };
    let units = data[2..].chunks(2).map(|c| match c {
        [a, b] if big_endian => u16::from_be_bytes([*a, *b]),
        [a, b] => u16::from_le_bytes([*a, *b]),
        // A lone trailing byte decodes as U+FFFD.
        _ => 0xDC00,
    });
    let text: String = char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    Cow::Owned(text.into_bytes())
}

pub(super) fn parse_pattern_file(
    data: &[u8],
    path: &Path,
    lookup: impl Fn(&str) -> String,
) -> Result<Vec<String>, PatternError> {
    let data = decode_text(data);
    let mut out = Vec::new();
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        let line = std::str::from_utf8(line).map_err(|_| PatternError::NotUtf8 {
            path: path.to_path_buf(),
            line: i + 1,
        })?;
        // Go's strings.TrimSpace and Rust's trim use the same White_Space set.
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(expand_vars(line, &lookup));
    }
    Ok(out)
}

/// Go's `os.Expand`.
pub(super) fn expand_vars(s: &str, mapping: impl Fn(&str) -> String) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut expanded = false;
    let mut i = 0;
    let mut j = 0;
    while j < b.len() {
        if b[j] == b'$' && j + 1 < b.len() {
            expanded = true;
            out.push_str(&s[i..j]);
            let (name, w) = shell_name(&s[j + 1..]);
            if name.is_empty() && w > 0 {
                // Invalid syntax ("${" or "${}"): eat the characters.
            } else if name.is_empty() {
                // '$' not followed by a name: keep it.
                out.push('$');
            } else {
                out.push_str(&mapping(name));
            }
            j += w;
            i = j + 1;
        }
        j += 1;
    }
    if !expanded {
        return s.to_string();
    }
    out.push_str(&s[i..]);
    out
}

pub(super) fn is_shell_special(c: u8) -> bool {
    matches!(
        c,
        b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
    )
}

/// Go's `getShellName`: the variable name at the start of `s` (non-empty)
/// and the number of bytes it takes.
pub(super) fn shell_name(s: &str) -> (&str, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_shell_special(b[1]) && b[2] == b'}' {
            return (&s[1..2], 3);
        }
        return match b.iter().skip(1).position(|&c| c == b'}') {
            Some(0) => ("", 2),
            Some(p) => (&s[1..p + 1], p + 2),
            None => ("", 1),
        };
    }
    if is_shell_special(b[0]) {
        return (&s[..1], 1);
    }
    let n = b
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    (&s[..n], n)
}
