//! Previews of a file: the start of a text file, or a whole image of a known type.

use super::*;

/// A text preview shows at most this much of the file.
pub const PREVIEW_TEXT_MAX: usize = 256 << 10;
/// An image is previewed whole or not at all (a cut image shows nothing useful).
pub const PREVIEW_IMAGE_MAX: u64 = 4 << 20;

/// What a preview shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviewKind {
    /// UTF-8 text (`data` may end in the middle of the file).
    Text,
    /// An image of this MIME type, whole.
    Image(&'static str),
}

#[derive(Debug)]
pub struct Preview {
    pub kind: PreviewKind,
    pub data: Vec<u8>,
    /// The file is longer than `data`.
    pub truncated: bool,
    pub size: u64,
}

/// The image type of `data`'s first bytes.
pub fn sniff_image(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Whether `data` (possibly cut anywhere) is text: no NUL, valid UTF-8 except for a
/// character cut at the end.
pub fn is_text(data: &[u8], cut: bool) -> bool {
    if data.contains(&0) {
        return false;
    }
    match std::str::from_utf8(data) {
        Ok(_) => true,
        Err(e) => cut && e.error_len().is_none(),
    }
}

/// The first [`PREVIEW_TEXT_MAX`] bytes of a text file, or a whole image up to
/// [`PREVIEW_IMAGE_MAX`]; anything else is refused.
pub fn preview(open: &Open, snap: &Snapshot, path: &SnapPath) -> Result<Preview> {
    let index = open.index()?;
    let trees = open.trees(&index);
    let n = match lookup(&trees, snap.tree, path)? {
        Found::Node(n) if n.node_type == NodeType::File => n,
        _ => {
            return Err(Error::invalid(format!(
                "{} is not a file: only files have a preview",
                path.display()
            )))
        }
    };
    let mut data = Vec::new();
    let mut ids = n.content.iter().flatten();
    let mut limit = PREVIEW_TEXT_MAX;
    let mut sniffed = None;
    while data.len() < limit {
        let Some(id) = ids.next() else { break };
        data.extend(open.repo.load_blob(&index, BlobType::Data, id)?);
        if sniffed.is_none() {
            sniffed = Some(sniff_image(&data));
            if let Some(Some(_)) = sniffed {
                if n.size > PREVIEW_IMAGE_MAX {
                    return Err(Error::new(
                        Kind::Unsupported,
                        format!(
                            "{} is an image of {} bytes, too large to preview (at most {PREVIEW_IMAGE_MAX}): download it",
                            path.display(),
                            n.size
                        ),
                    ));
                }
                limit = PREVIEW_IMAGE_MAX as usize;
            }
        }
    }
    let image = sniffed.flatten();
    if let Some(mime) = image {
        return Ok(Preview {
            kind: PreviewKind::Image(mime),
            size: n.size,
            truncated: (data.len() as u64) < n.size,
            data,
        });
    }
    let truncated = data.len() > PREVIEW_TEXT_MAX || (data.len() as u64) < n.size;
    data.truncate(PREVIEW_TEXT_MAX);
    if !is_text(&data, truncated) {
        return Err(Error::new(
            Kind::Unsupported,
            format!(
                "{} is neither text nor an image (PNG, JPEG, GIF, WebP): download it to look inside",
                path.display()
            ),
        ));
    }
    Ok(Preview {
        kind: PreviewKind::Text,
        data,
        truncated,
        size: n.size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_know_text_from_binary_and_images_by_their_magic() {
        assert!(is_text("héllo\n".as_bytes(), false));
        // A character cut at the end of a truncated preview is still text...
        let cut = &"é".as_bytes()[..1];
        assert!(is_text(cut, true));
        // ...but not in a whole file, and NUL or invalid UTF-8 in the middle never is.
        assert!(!is_text(cut, false));
        assert!(!is_text(b"a\0b", true));
        assert!(!is_text(b"\xff\xfeabc", true));
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_image(b"<svg onload=alert(1)>"), None);
    }
}
