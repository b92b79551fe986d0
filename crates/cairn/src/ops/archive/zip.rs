//! The streaming zip writer: local headers with data descriptors (no `Seek`), ZIP64
//! per entry and for the end record when needed, raw-byte names for non-UTF-8 ones.

use super::*;

impl<W: Write> Sink for ZipWriter<W> {
    fn entry(&mut self, trees: &Trees, path: &Path, n: &Node) -> Result<()> {
        let name = path.as_os_str().as_bytes();
        let meta = Meta {
            mtime: n.mtime,
            mode: n.unix_mode() & 0o7777,
        };
        let r = match n.node_type {
            NodeType::Dir => self.add_dir(name, &meta),
            NodeType::File => {
                let mut content = dump::content_reader(trees, n);
                self.add_file(name, &meta, n.size, &mut content)
            }
            NodeType::Symlink => self.add_symlink(name, &meta, n.linktarget.as_bytes()),
            _ => return Ok(()),
        };
        r.map_err(|e| Error::io(format!("zip entry {}", path.display()), e))
    }
}

/// An entry's metadata in a zip archive.
pub struct Meta {
    pub mtime: chrono::DateTime<chrono::FixedOffset>,
    /// Permission bits (0o7777).
    pub mode: u32,
}

pub(super) const S_IFREG: u32 = 0o100000;
pub(super) const S_IFDIR: u32 = 0o040000;
pub(super) const S_IFLNK: u32 = 0o120000;
/// Above this announced size a file entry is written as ZIP64 from its local header on
/// (deflate can grow incompressible data slightly; the margin covers it many times).
pub(super) const ZIP64_FILE: u64 = 0xF000_0000;
pub(super) const U32_MAX: u64 = 0xFFFF_FFFF;
/// Version needed: 2.0 (deflate, directories), 4.5 (ZIP64).
pub(super) const V20: u16 = 20;
pub(super) const V45: u16 = 45;
pub(super) const FLAG_DESCRIPTOR: u16 = 1 << 3;
pub(super) const FLAG_UTF8: u16 = 1 << 11;

/// One central-directory record, kept until the end.
pub(super) struct CentralEntry {
    name: Vec<u8>,
    flags: u16,
    method: u16,
    version: u16,
    time: u16,
    date: u16,
    mtime: i64,
    crc: u32,
    csize: u64,
    usize: u64,
    offset: u64,
    external: u32,
    /// Written as ZIP64 in its local header: the central record says so too.
    zip64: bool,
}

/// Counts what goes through.
pub(super) struct Counter<W: Write> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A streaming zip writer: never seeks, so it can write into a socket.
pub struct ZipWriter<W: Write> {
    out: Counter<W>,
    entries: Vec<CentralEntry>,
    /// Files announced at least this large are written as ZIP64 ([`ZIP64_FILE`]).
    zip64_from: u64,
}

/// DOS date and time (local time as recorded, clamped to 1980..=2107).
pub(super) fn dos_time(t: &chrono::DateTime<chrono::FixedOffset>) -> (u16, u16) {
    let y = t.year();
    if y < 1980 {
        return (0, (1 << 5) | 1);
    }
    if y > 2107 {
        return ((23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31);
    }
    let time = (t.hour() << 11) | (t.minute() << 5) | (t.second().min(59) / 2);
    let date = (((y - 1980) as u32) << 9) | (t.month() << 5) | t.day();
    (time as u16, date as u16)
}

pub(super) fn le16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}

pub(super) fn le32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}

pub(super) fn le64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// The extended-timestamp extra field (0x5455) with the modification time.
pub(super) fn ext_time(v: &mut Vec<u8>, mtime: i64) {
    le16(v, 0x5455);
    le16(v, 5);
    v.push(1);
    le32(v, mtime.clamp(0, u32::MAX as i64) as u32);
}

pub(super) fn too_big(what: &str) -> std::io::Error {
    std::io::Error::other(format!("{what} does not fit in a zip entry"))
}

impl<W: Write> ZipWriter<W> {
    pub fn new(out: W) -> ZipWriter<W> {
        ZipWriter {
            out: Counter { inner: out, n: 0 },
            entries: Vec::new(),
            zip64_from: ZIP64_FILE,
        }
    }

    fn flags(name: &[u8]) -> u16 {
        // Valid UTF-8 (ASCII included) is flagged as such; other bytes are written raw,
        // unflagged, for the reader to decode as it can (CP437 for most).
        if std::str::from_utf8(name).is_ok() {
            FLAG_UTF8
        } else {
            0
        }
    }

    /// A local header. `sizes`: `Some((crc, csize, usize))` when known before the data;
    /// `None` with a data descriptor after it (`zip64`: the descriptor has 64-bit sizes).
    fn local_header(&mut self, e: &CentralEntry, known: bool, zip64: bool) -> std::io::Result<()> {
        let mut h = Vec::with_capacity(30 + e.name.len() + 29);
        le32(&mut h, 0x0403_4b50);
        le16(&mut h, e.version);
        le16(&mut h, e.flags);
        le16(&mut h, e.method);
        le16(&mut h, e.time);
        le16(&mut h, e.date);
        let mut extra = Vec::new();
        ext_time(&mut extra, e.mtime);
        if known {
            le32(&mut h, e.crc);
            le32(&mut h, e.csize as u32);
            le32(&mut h, e.usize as u32);
        } else if zip64 {
            le32(&mut h, 0);
            le32(&mut h, u32::MAX);
            le32(&mut h, u32::MAX);
            le16(&mut extra, 0x0001);
            le16(&mut extra, 16);
            le64(&mut extra, 0);
            le64(&mut extra, 0);
        } else {
            le32(&mut h, 0);
            le32(&mut h, 0);
            le32(&mut h, 0);
        }
        le16(&mut h, e.name.len() as u16);
        le16(&mut h, extra.len() as u16);
        h.extend_from_slice(&e.name);
        h.extend_from_slice(&extra);
        self.out.write_all(&h)
    }

    fn central(
        &self,
        name: &[u8],
        meta: &Meta,
        kind: u32,
        method: u16,
    ) -> std::io::Result<CentralEntry> {
        if name.len() > u16::MAX as usize - 1 {
            return Err(too_big("a name this long"));
        }
        let (time, date) = dos_time(&meta.mtime);
        let dir = kind == S_IFDIR;
        Ok(CentralEntry {
            name: name.to_vec(),
            flags: Self::flags(name),
            method,
            version: V20,
            time,
            date,
            mtime: meta.mtime.timestamp(),
            crc: 0,
            csize: 0,
            usize: 0,
            offset: self.out.n,
            zip64: false,
            external: ((kind | (meta.mode & 0o7777)) << 16) | if dir { 0x10 } else { 0 },
        })
    }

    /// A directory entry (`name` without the trailing `/`).
    pub fn add_dir(&mut self, name: &[u8], meta: &Meta) -> std::io::Result<()> {
        let mut with_slash = name.to_vec();
        with_slash.push(b'/');
        let e = self.central(&with_slash, meta, S_IFDIR, 0)?;
        self.local_header(&e, true, false)?;
        self.entries.push(e);
        Ok(())
    }

    /// A symlink: stored, its target as content, the Unix type in the external attributes.
    pub fn add_symlink(&mut self, name: &[u8], meta: &Meta, target: &[u8]) -> std::io::Result<()> {
        let mut e = self.central(name, meta, S_IFLNK, 0)?;
        e.crc = crc32fast::hash(target);
        e.csize = target.len() as u64;
        e.usize = target.len() as u64;
        self.local_header(&e, true, false)?;
        self.out.write_all(target)?;
        self.entries.push(e);
        Ok(())
    }

    /// A regular file of `size` bytes read from `content`, deflated, streamed: its CRC
    /// and sizes follow the data in a descriptor.
    pub fn add_file(
        &mut self,
        name: &[u8],
        meta: &Meta,
        size: u64,
        content: &mut dyn Read,
    ) -> std::io::Result<()> {
        let mut e = self.central(name, meta, S_IFREG, 8)?;
        let zip64 = size >= self.zip64_from;
        e.flags |= FLAG_DESCRIPTOR;
        if zip64 {
            e.version = V45;
            e.zip64 = true;
        }
        self.local_header(&e, false, zip64)?;
        let start = self.out.n;
        let mut crc = crc32fast::Hasher::new();
        let mut total = 0u64;
        let mut enc = flate2::write::DeflateEncoder::new(&mut self.out, level());
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match content.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            crc.update(&buf[..n]);
            total += n as u64;
            enc.write_all(&buf[..n])?;
        }
        enc.finish()?;
        e.crc = crc.finalize();
        e.usize = total;
        e.csize = self.out.n - start;
        if !zip64 && (e.usize > U32_MAX || e.csize > U32_MAX) {
            return Err(too_big("a file larger than its recorded size"));
        }
        let mut d = Vec::with_capacity(24);
        le32(&mut d, 0x0807_4b50);
        le32(&mut d, e.crc);
        if zip64 {
            le64(&mut d, e.csize);
            le64(&mut d, e.usize);
        } else {
            le32(&mut d, e.csize as u32);
            le32(&mut d, e.usize as u32);
        }
        self.out.write_all(&d)?;
        self.entries.push(e);
        Ok(())
    }

    /// Writes the central directory and the end records; returns the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        let cd_start = self.out.n;
        for e in &self.entries {
            let mut extra = Vec::new();
            ext_time(&mut extra, e.mtime);
            let mut z64 = Vec::new();
            let usize32 = if e.zip64 || e.usize >= U32_MAX {
                le64(&mut z64, e.usize);
                u32::MAX
            } else {
                e.usize as u32
            };
            let csize32 = if e.zip64 || e.csize >= U32_MAX {
                le64(&mut z64, e.csize);
                u32::MAX
            } else {
                e.csize as u32
            };
            let offset32 = if e.offset >= U32_MAX {
                le64(&mut z64, e.offset);
                u32::MAX
            } else {
                e.offset as u32
            };
            let version = if z64.is_empty() { e.version } else { V45 };
            if !z64.is_empty() {
                le16(&mut extra, 0x0001);
                le16(&mut extra, z64.len() as u16);
                extra.extend_from_slice(&z64);
            }
            let mut h = Vec::with_capacity(46 + e.name.len() + extra.len());
            le32(&mut h, 0x0201_4b50);
            le16(&mut h, (3 << 8) | V45); // made by: Unix, 4.5
            le16(&mut h, version);
            le16(&mut h, e.flags);
            le16(&mut h, e.method);
            le16(&mut h, e.time);
            le16(&mut h, e.date);
            le32(&mut h, e.crc);
            le32(&mut h, csize32);
            le32(&mut h, usize32);
            le16(&mut h, e.name.len() as u16);
            le16(&mut h, extra.len() as u16);
            le16(&mut h, 0); // comment
            le16(&mut h, 0); // disk
            le16(&mut h, 0); // internal attributes
            le32(&mut h, e.external);
            le32(&mut h, offset32);
            h.extend_from_slice(&e.name);
            h.extend_from_slice(&extra);
            self.out.write_all(&h)?;
        }
        let cd_end = self.out.n;
        let cd_size = cd_end - cd_start;
        let count = self.entries.len() as u64;
        let zip64 = count >= 0xFFFF || cd_size >= U32_MAX || cd_start >= U32_MAX;
        let mut t = Vec::with_capacity(98);
        if zip64 {
            le32(&mut t, 0x0606_4b50);
            le64(&mut t, 44);
            le16(&mut t, (3 << 8) | V45);
            le16(&mut t, V45);
            le32(&mut t, 0);
            le32(&mut t, 0);
            le64(&mut t, count);
            le64(&mut t, count);
            le64(&mut t, cd_size);
            le64(&mut t, cd_start);
            le32(&mut t, 0x0706_4b50);
            le32(&mut t, 0);
            le64(&mut t, cd_end);
            le32(&mut t, 1);
        }
        le32(&mut t, 0x0605_4b50);
        le16(&mut t, 0);
        le16(&mut t, 0);
        let count16 = if zip64 { u16::MAX } else { count as u16 };
        le16(&mut t, count16);
        le16(&mut t, count16);
        le32(&mut t, if zip64 { u32::MAX } else { cd_size as u32 });
        le32(&mut t, if zip64 { u32::MAX } else { cd_start as u32 });
        le16(&mut t, 0);
        self.out.write_all(&t)?;
        self.out.flush()?;
        Ok(self.out.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{python_list, random, sha, unzip_test};
    use super::*;

    fn meta() -> Meta {
        Meta {
            mtime: chrono::DateTime::parse_from_rfc3339("2024-05-06T07:08:10+02:00").unwrap(),
            mode: 0o640,
        }
    }

    #[test]
    fn zip_writer_streams_entries_that_python_and_unzip_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let big = random(7, 700_000);
        let text: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let mut w = ZipWriter::new(Vec::new());
        w.add_dir(b"top", &meta()).unwrap();
        w.add_file(b"top/big.bin", &meta(), big.len() as u64, &mut &big[..])
            .unwrap();
        w.add_file(b"top/text.txt", &meta(), text.len() as u64, &mut &text[..])
            .unwrap();
        w.add_file(b"top/empty", &meta(), 0, &mut &b""[..]).unwrap();
        w.add_file("top/ünï.txt".as_bytes(), &meta(), 2, &mut &b"hi"[..])
            .unwrap();
        w.add_file(b"top/raw-\xff\xfe", &meta(), 3, &mut &b"raw"[..])
            .unwrap();
        w.add_symlink(b"top/link", &meta(), b"text.txt").unwrap();
        let bytes = w.finish().unwrap();
        assert!(
            bytes.len() < big.len() + text.len() / 4,
            "text was deflated"
        );
        let zip = dir.path().join("t.zip");
        std::fs::write(&zip, &bytes).unwrap();
        let list = python_list(&zip);
        let by_name = |n: &[u8]| {
            list.iter()
                .find(|e| e["name"] == hex::encode(n))
                .unwrap_or_else(|| panic!("{:?} not in {list:?}", String::from_utf8_lossy(n)))
                .clone()
        };
        assert_eq!(list.len(), 7);
        assert_eq!(by_name(b"top/big.bin")["sha"], sha(&big));
        assert_eq!(by_name(b"top/text.txt")["sha"], sha(&text));
        assert_eq!(by_name(b"top/text.txt")["size"], text.len());
        assert_eq!(by_name(b"top/empty")["size"], 0);
        assert_eq!(by_name(b"top/big.bin")["mode"], 0o100640);
        assert_eq!(
            by_name(b"top/big.bin")["time"],
            serde_json::json!([2024, 5, 6, 7, 8, 10])
        );
        assert_eq!(by_name(b"top/")["mode"], 0o040640);
        let uni = by_name("top/ünï.txt".as_bytes());
        assert_eq!(uni["utf8"], true);
        assert_eq!(uni["sha"], sha(b"hi"));
        // Not UTF-8: the raw bytes, unflagged.
        let raw = by_name(b"top/raw-\xff\xfe");
        assert_eq!(raw["utf8"], false);
        assert_eq!(raw["sha"], sha(b"raw"));
        let link = by_name(b"top/link");
        assert_eq!(link["mode"], 0o120640);
        assert_eq!(link["sha"], sha(b"text.txt"));
        unzip_test(&zip);
    }

    #[test]
    fn zip64_entries_and_end_records_read_back() {
        let dir = tempfile::tempdir().unwrap();
        // Every file as ZIP64 (the threshold lowered), and more entries than 16 bits count.
        let mut w = ZipWriter::new(Vec::new());
        w.zip64_from = 0;
        let data = random(3, 100_000);
        w.add_file(b"a.bin", &meta(), data.len() as u64, &mut &data[..])
            .unwrap();
        for i in 0..70_000u32 {
            w.add_dir(format!("d{i}").as_bytes(), &meta()).unwrap();
        }
        let bytes = w.finish().unwrap();
        let zip = dir.path().join("z64.zip");
        std::fs::write(&zip, &bytes).unwrap();
        // The ZIP64 end record and its locator are there.
        let find = |sig: &[u8]| bytes.windows(4).rposition(|w| w == sig);
        assert!(find(&0x0606_4b50u32.to_le_bytes()).is_some());
        assert!(find(&0x0706_4b50u32.to_le_bytes()).is_some());
        let list = python_list(&zip);
        assert_eq!(list.len(), 70_001);
        assert_eq!(list[0]["sha"], sha(&data));
        unzip_test(&zip);
    }
}
