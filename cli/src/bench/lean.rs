//! The floor of a typed channel on a byte stream (`__roundtrips lean`): a
//! `ByteBuf` encoded with postcard behind a 4-byte length into a reused
//! buffer and written in one `write`; read in one `read` into a reused
//! buffer, its length parsed and its payload decoded, owned or borrowed.
//! Nothing else: no gate, no descriptors, no half-written frame kept for
//! later, no deadline, no error in procwire's terms. What a channel must
//! cost at least, for procwire's layers to be read against
//! (`docs/performance.md`): its instructions (`scripts/instructions`) and
//! its time against raw (the bench's `typed floor:` line). The rows'
//! ratios still compare with plain system calls.

use std::os::fd::OwnedFd;

use anyhow::{Result, ensure};
use procwire::ByteBuf;

/// The largest frame it takes: a length prefix claiming more is an error,
/// not an allocation.
const MAX_FRAME: usize = 64 << 20;

pub(super) struct Lean {
    tx: OwnedFd,
    rx: OwnedFd,
    out: Vec<u8>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Lean {
    pub(super) fn new(tx: OwnedFd, rx: OwnedFd) -> Lean {
        Lean {
            tx,
            rx,
            out: Vec::with_capacity(8 << 10),
            buf: vec![0; 8 << 10],
            start: 0,
            end: 0,
        }
    }

    pub(super) fn fds(&self) -> [&OwnedFd; 2] {
        [&self.tx, &self.rx]
    }

    pub(super) fn send(&mut self, msg: &ByteBuf) -> Result<()> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.extend_from_slice(&[0; 4]);
        let mut out = postcard::to_extend(msg, out)?;
        let len = u32::try_from(out.len() - 4)?;
        out[..4].copy_from_slice(&len.to_be_bytes());
        let mut at = 0;
        while at < out.len() {
            at += rustix::io::write(&self.tx, &out[at..])?;
        }
        self.out = out;
        Ok(())
    }

    /// The next frame's payload, handed to `f`.
    fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        loop {
            let avail = self.end - self.start;
            let mut need = 4;
            if avail >= 4 {
                let head = &self.buf[self.start..self.start + 4];
                let len = u32::from_be_bytes(head.try_into()?) as usize;
                ensure!(len <= MAX_FRAME, "a frame of {len} bytes");
                if avail >= 4 + len {
                    let at = self.start + 4;
                    self.start = at + len;
                    return Ok(f(&self.buf[at..at + len]));
                }
                need += len;
            }
            if self.start == self.end {
                (self.start, self.end) = (0, 0);
            } else if self.buf.len() - self.start < need {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, avail);
            }
            if self.buf.len() < self.start + need {
                self.buf.resize(self.start + need, 0);
            }
            let n = rustix::io::read(&self.rx, &mut self.buf[self.end..])?;
            ensure!(n > 0, "end of stream");
            self.end += n;
        }
    }

    /// Receives an owned `ByteBuf` (the borrowed bytes when `borrow`),
    /// checking its length.
    pub(super) fn recv(&mut self, size: usize, borrow: bool) -> Result<()> {
        let got = if borrow {
            self.recv_with(|p| postcard::from_bytes::<&[u8]>(p).map(<[u8]>::len))??
        } else {
            self.recv_with(|p| postcard::from_bytes::<ByteBuf>(p).map(|m| m.len()))??
        };
        ensure!(got == size, "wrong size");
        Ok(())
    }
}
