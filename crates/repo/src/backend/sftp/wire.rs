//! The SFTP v3 wire format (draft-ietf-secsh-filexfer-02): packet and status codes,
//! attributes, and reading and writing packets, bounded.

use crate::error::{Error, Kind, Result};
use std::io::{Read, Write};
use std::time::Duration;

// Packet types (draft-ietf-secsh-filexfer-02, SFTP v3).
pub(super) const FXP_INIT: u8 = 1;
pub(super) const FXP_VERSION: u8 = 2;
pub(super) const FXP_OPEN: u8 = 3;
pub(super) const FXP_CLOSE: u8 = 4;
pub(super) const FXP_READ: u8 = 5;
pub(super) const FXP_WRITE: u8 = 6;
pub(super) const FXP_FSTAT: u8 = 8;
pub(super) const FXP_OPENDIR: u8 = 11;
pub(super) const FXP_READDIR: u8 = 12;
pub(super) const FXP_REMOVE: u8 = 13;
pub(super) const FXP_MKDIR: u8 = 14;
pub(super) const FXP_STAT: u8 = 17;
pub(super) const FXP_RENAME: u8 = 18;
pub(super) const FXP_STATUS: u8 = 101;
pub(super) const FXP_HANDLE: u8 = 102;
pub(super) const FXP_DATA: u8 = 103;
pub(super) const FXP_NAME: u8 = 104;
pub(super) const FXP_ATTRS: u8 = 105;
pub(super) const FXP_EXTENDED: u8 = 200;

pub(super) const FX_OK: u32 = 0;
pub(super) const FX_EOF: u32 = 1;
pub(super) const FX_NO_SUCH_FILE: u32 = 2;
pub(super) const FX_PERMISSION_DENIED: u32 = 3;

pub(super) const OPEN_READ: u32 = 0x1;
pub(super) const OPEN_WRITE: u32 = 0x2;
pub(super) const OPEN_CREAT: u32 = 0x8;
pub(super) const OPEN_TRUNC: u32 = 0x10;

pub(super) const ATTR_SIZE: u32 = 0x1;
pub(super) const ATTR_UIDGID: u32 = 0x2;
pub(super) const ATTR_PERMISSIONS: u32 = 0x4;
pub(super) const ATTR_ACMODTIME: u32 = 0x8;
pub(super) const ATTR_EXTENDED: u32 = 0x8000_0000;

pub(super) fn unexpected(typ: u8, what: &str) -> Error {
    Error::new(
        Kind::Io,
        format!("{what}: unexpected SFTP reply type {typ}"),
    )
}

pub(super) fn status_code(data: &[u8]) -> Result<u32> {
    Reader::new(data).u32()
}

pub(super) fn status_result(data: &[u8], what: &str) -> Result<()> {
    let mut r = Reader::new(data);
    let code = r.u32()?;
    let msg = r
        .string()
        .map(|m| String::from_utf8_lossy(&m).into_owned())
        .unwrap_or_default();
    match code {
        FX_OK => Ok(()),
        FX_EOF => Err(Error::new(
            Kind::Io,
            format!("{what}: unexpected end of file"),
        )),
        FX_NO_SUCH_FILE => Err(Error::not_found(format!("{what}: no such file"))),
        FX_PERMISSION_DENIED => Err(Error::new(
            Kind::Auth,
            format!("{what}: permission denied on the SFTP server"),
        )),
        _ => Err(Error::new(
            Kind::Io,
            format!("{what}: SFTP error {code}: {msg}"),
        )),
    }
}

#[derive(Default, Debug)]
pub(super) struct Attrs {
    pub(super) size: Option<u64>,
    pub(super) perms: Option<u32>,
}

impl Attrs {
    pub(super) fn parse(r: &mut Reader) -> Result<Attrs> {
        let flags = r.u32()?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(r.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            r.u32()?;
            r.u32()?;
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.perms = Some(r.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            r.u32()?;
            r.u32()?;
        }
        if flags & ATTR_EXTENDED != 0 {
            let n = r.u32()?;
            for _ in 0..n {
                r.string()?;
                r.string()?;
            }
        }
        Ok(a)
    }

    pub(super) fn is_file(&self) -> bool {
        self.perms.is_none_or(|p| p & 0o170000 == 0o100000)
    }

    pub(super) fn is_dir(&self) -> bool {
        self.perms.is_some_and(|p| p & 0o170000 == 0o040000)
    }
}

pub(super) struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(b: &'a [u8]) -> Self {
        Reader { b }
    }
    pub(super) fn is_empty(&self) -> bool {
        self.b.is_empty()
    }
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(Error::new(Kind::Io, "malformed SFTP packet (truncated)"));
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    pub(super) fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(super) fn u64(&mut self) -> Result<u64> {
        Ok(((self.u32()? as u64) << 32) | self.u32()? as u64)
    }
    pub(super) fn bytes_ref(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub(super) fn string(&mut self) -> Result<Vec<u8>> {
        Ok(self.bytes_ref()?.to_vec())
    }
}

pub(super) fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_be_bytes());
}
pub(super) fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_be_bytes());
}
pub(super) fn put_str(b: &mut Vec<u8>, s: &[u8]) {
    put_u32(b, s.len() as u32);
    b.extend_from_slice(s);
}

pub(super) fn write_packet(w: &mut impl Write, typ: u8, body: &[u8]) -> std::io::Result<()> {
    let mut head = [0u8; 5];
    head[..4].copy_from_slice(&((body.len() + 1) as u32).to_be_bytes());
    head[4] = typ;
    w.write_all(&head)?;
    w.write_all(body)?;
    w.flush()
}

pub(super) fn read_packet(r: &mut impl Read) -> std::io::Result<(u8, Vec<u8>)> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > 1 << 24 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "bad SFTP packet length",
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    let typ = buf[0];
    buf.remove(0);
    Ok((typ, buf))
}

/// The first packet, with a deadline: a login that hangs must not hang us.
pub(super) fn read_packet_timeout(
    r: &mut std::process::ChildStdout,
    timeout: Duration,
) -> std::io::Result<(u8, Vec<u8>)> {
    use std::os::fd::AsFd;
    let fd = r.as_fd();
    let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
        Ok(n) if n > 0 => read_packet(r),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer from the SFTP server",
        )),
    }
}
