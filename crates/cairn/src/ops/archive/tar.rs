//! The `.tar.gz` side of a download: `cairn_repo::dump`'s tar writer as a [`Sink`].

use super::*;

pub(super) struct Tar<W: Write>(pub(super) TarWriter<flate2::write::GzEncoder<W>>);

impl<W: Write> Sink for Tar<W> {
    fn entry(&mut self, trees: &Trees, path: &Path, node: &Node) -> Result<()> {
        self.0.entry(trees, path, node)
    }
}
