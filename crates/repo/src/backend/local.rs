//! The local filesystem backend, with restic's on-disk layout (`data/` split into 256
//! subdirectories by the first two hex digits of the pack id).
//!
//! Writes go to a temporary file in the target directory, are fsynced, renamed into place
//! and the directory is fsynced, so a file that exists is complete.

use super::{Backend, FileInfo, FileType};
use crate::error::{Error, Kind, Result};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend { root: root.into() }
    }

    fn path(&self, t: FileType, name: &str) -> PathBuf {
        match t {
            FileType::Config => self.root.join("config"),
            FileType::Pack => {
                let prefix = name.get(..2).unwrap_or("00");
                self.root.join("data").join(prefix).join(name)
            }
            _ => self.root.join(t.dir()).join(name),
        }
    }
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

impl Backend for LocalBackend {
    /// Two pack writes in flight: each ends with fsyncs that wait for the disk, and the
    /// backup's workers keep chunking and compressing meanwhile instead of waiting.
    fn connections(&self) -> usize {
        2
    }
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> Result<()> {
        if self.has_config()? {
            return Err(Error::new(
                Kind::Invalid,
                format!(
                    "{}: a repository already exists here (config file present)",
                    self.location()
                ),
            ));
        }
        let mk = |p: &Path| fs::create_dir_all(p).map_err(|e| Error::io(p.display(), e));
        mk(&self.root)?;
        for t in FileType::ALL {
            if t != FileType::Config {
                mk(&self.root.join(t.dir()))?;
            }
        }
        for i in 0..=255u8 {
            mk(&self.root.join("data").join(format!("{i:02x}")))?;
        }
        Ok(())
    }

    fn has_config(&self) -> Result<bool> {
        let p = self.root.join("config");
        match fs::symlink_metadata(&p) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(p.display(), e)),
        }
    }

    fn list(&self, t: FileType) -> Result<Vec<FileInfo>> {
        if t == FileType::Config {
            return Ok(Vec::new());
        }
        let base = self.root.join(t.dir());
        let mut dirs = vec![base.clone()];
        if t == FileType::Pack {
            dirs.clear();
            match fs::read_dir(&base) {
                Ok(rd) => {
                    for e in rd {
                        let e = e.map_err(|e| Error::io(base.display(), e))?;
                        if e.file_type().map(|f| f.is_dir()).unwrap_or(false) {
                            dirs.push(e.path());
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(Error::io(base.display(), e)),
            }
        }
        let mut out = Vec::new();
        for dir in dirs {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(dir.display(), e)),
            };
            for e in rd {
                let e = e.map_err(|e| Error::io(dir.display(), e))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || name.contains(".tmp") {
                    continue;
                }
                let meta = e
                    .metadata()
                    .map_err(|err| Error::io(e.path().display(), err))?;
                if meta.is_file() {
                    out.push(FileInfo {
                        name,
                        size: meta.len(),
                    });
                }
            }
        }
        Ok(out)
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        let p = self.path(t, name);
        fs::read(&p).map_err(|e| Error::io(p.display(), e))
    }

    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_range_into(t, name, offset, len, &mut buf)?;
        Ok(buf)
    }

    fn read_range_into(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let p = self.path(t, name);
        let mut f = fs::File::open(&p).map_err(|e| Error::io(p.display(), e))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io(p.display(), e))?;
        buf.clear();
        buf.resize(len as usize, 0);
        f.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupt(format!(
                    "{}: file is shorter than expected (wanted {len} bytes at offset {offset})",
                    p.display()
                ))
            } else {
                Error::io(p.display(), e)
            }
        })
    }

    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        let p = self.path(t, name);
        let dir = p.parent().unwrap_or(&self.root).to_path_buf();
        if t == FileType::Pack {
            fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
        }
        let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
        let result = (|| -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            drop(f);
            // Stored files are immutable: make them read-only, as restic does.
            let mut perm = fs::metadata(&tmp)?.permissions();
            perm.set_readonly(true);
            fs::set_permissions(&tmp, perm)?;
            fs::rename(&tmp, &p)?;
            fsync_dir(&dir)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(format!("writing {}", p.display()), e));
        }
        Ok(())
    }

    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        let p = self.path(t, name);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(p.display(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn local_backend_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let be = super::LocalBackend::new(dir.path().join("repo"));
        crate::backend::conformance::run(&be);
    }
}
