//! The floor of a typed channel on a byte stream (`__roundtrips lean`): a
//! `ByteBuf` encoded with postcard behind a 4-byte length into a reused
//! buffer and written in one `write`; read in one `read` into a reused
//! buffer, its length parsed and its payload decoded, owned or borrowed.
//! Nothing else: no gate, no descriptors, no half-written frame kept for
//! later, no deadline, no error in procwire's terms. What a channel must
//! cost at least, for procwire's layers to be read against
//! (`docs/performance.md`): its instructions (`scripts/instructions`) and
//! its time against raw (the bench's `typed floor:` line). The rows'
//! ratios still compare with plain system calls. The framing ([`Frames`])
//! also serves the same channel awaited on tokio (`asynch.rs`).

use std::ops::Range;
use std::os::fd::OwnedFd;

use anyhow::{Result, ensure};
use procwire::ByteBuf;

/// The largest frame it takes: a length prefix claiming more is an error,
/// not an allocation.
const MAX_FRAME: usize = 64 << 20;

/// The minimal channel's framing, without its descriptors: frames encoded
/// into one reused buffer, and read into another. (Each step inlined into
/// its caller, as a channel written in one piece would be: calls of their
/// own add some 100 instructions a message to the floor.)
pub(super) struct Frames {
    out: Vec<u8>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Frames {
    pub(super) fn new() -> Frames {
        Frames {
            out: Vec::with_capacity(8 << 10),
            buf: vec![0; 8 << 10],
            start: 0,
            end: 0,
        }
    }

    /// `msg` framed: its 4-byte big-endian length, then its postcard
    /// encoding.
    #[inline(always)]
    pub(super) fn encode(&mut self, msg: &ByteBuf) -> Result<&[u8]> {
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(&[0; 4]);
        // (Through `io::Write`, which appends a byte string with one copy;
        // `postcard::to_extend` goes byte by byte.)
        postcard::to_io(msg, &mut *out)?;
        let len = u32::try_from(out.len() - 4)?;
        out[..4].copy_from_slice(&len.to_be_bytes());
        Ok(out)
    }

    /// The next whole frame's payload, if one is buffered.
    #[inline(always)]
    fn next(&mut self) -> Result<Option<Range<usize>>> {
        let avail = self.end - self.start;
        if avail >= 4 {
            let len = self.claimed()?;
            if avail >= 4 + len {
                let at = self.start + 4;
                self.start = at + len;
                return Ok(Some(at..at + len));
            }
        }
        Ok(None)
    }

    /// The length the buffered frame's prefix claims.
    #[inline(always)]
    fn claimed(&self) -> Result<usize> {
        let head = &self.buf[self.start..self.start + 4];
        let len = u32::from_be_bytes(head.try_into()?) as usize;
        ensure!(len <= MAX_FRAME, "a frame of {len} bytes");
        Ok(len)
    }

    /// Where the next read goes, room made for at least the rest of the
    /// frame begun (or for a length prefix).
    #[inline(always)]
    pub(super) fn room(&mut self) -> Result<&mut [u8]> {
        let avail = self.end - self.start;
        let need = if avail >= 4 { 4 + self.claimed()? } else { 4 };
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.buf.len() - self.start < need {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, avail);
        }
        if self.buf.len() < self.start + need {
            self.buf.resize(self.start + need, 0);
        }
        Ok(&mut self.buf[self.end..])
    }

    /// A read put `n` bytes into [`room`](Frames::room).
    #[inline(always)]
    pub(super) fn filled(&mut self, n: usize) -> Result<()> {
        ensure!(n > 0, "end of stream");
        self.end += n;
        Ok(())
    }

    /// The next frame's payload decoded (owned, or its bytes borrowed
    /// when `borrow`), if a whole one is buffered: its length.
    #[inline(always)]
    pub(super) fn take(&mut self, borrow: bool) -> Result<Option<usize>> {
        let Some(r) = self.next()? else {
            return Ok(None);
        };
        let p = &self.buf[r];
        Ok(Some(if borrow {
            postcard::from_bytes::<&[u8]>(p)?.len()
        } else {
            postcard::from_bytes::<ByteBuf>(p)?.len()
        }))
    }
}

/// The minimal channel on a pipe pair or a stream socket, blocking.
pub(super) struct Lean {
    tx: OwnedFd,
    rx: OwnedFd,
    frames: Frames,
}

impl Lean {
    pub(super) fn new(tx: OwnedFd, rx: OwnedFd) -> Lean {
        Lean {
            tx,
            rx,
            frames: Frames::new(),
        }
    }

    pub(super) fn fds(&self) -> [&OwnedFd; 2] {
        [&self.tx, &self.rx]
    }

    /// Its descriptors and framing, for an awaited channel.
    pub(super) fn into_parts(self) -> (OwnedFd, OwnedFd, Frames) {
        (self.tx, self.rx, self.frames)
    }

    #[inline(always)]
    pub(super) fn send(&mut self, msg: &ByteBuf) -> Result<()> {
        let out = self.frames.encode(msg)?;
        let mut at = 0;
        while at < out.len() {
            at += rustix::io::write(&self.tx, &out[at..])?;
        }
        Ok(())
    }

    /// Receives an owned `ByteBuf` (the borrowed bytes when `borrow`),
    /// checking its length.
    #[inline(always)]
    pub(super) fn recv(&mut self, size: usize, borrow: bool) -> Result<()> {
        let got = loop {
            if let Some(got) = self.frames.take(borrow)? {
                break got;
            }
            let n = rustix::io::read(&self.rx, self.frames.room()?)?;
            self.frames.filled(n)?;
        };
        ensure!(got == size, "wrong size");
        Ok(())
    }
}
