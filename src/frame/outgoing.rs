//! The outgoing frame buffer: one message encoded once, written in as many
//! pieces as the kernel takes.

use std::io::{self, Write};

use super::decoder::INITIAL_BUFFER;
use super::{HEADER_LEN, HEARTBEAT};
use crate::error::{Error, Result};

/// One outgoing message, encoded once and written in as many pieces as the
/// kernel takes. Reused for every message: no allocation once warm.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    buf: Vec<u8>,
    /// Where sealing writes (then swapped with `buf`): reused.
    #[cfg_attr(not(feature = "tcp"), allow(dead_code))]
    sealed: Vec<u8>,
    /// How many records sealing made of the pending frame.
    #[cfg_attr(not(feature = "tcp"), allow(dead_code))]
    records: u64,
    sent: usize,
    header: bool,
    /// Set once a message is fully encoded: a codec that panics half-way
    /// must not leave half an encoding to be sent as a frame.
    ready: bool,
}

impl Outgoing {
    /// Encodes the next message with `fill`, behind a length prefix when
    /// `header` is set (byte streams) and bare otherwise (one datagram).
    /// Must not be called while a frame is still pending. (Inlined into the
    /// send, as the compiler does in some builds of the crate and not in
    /// others: some 17 instructions a message, by `scripts/instructions`.)
    #[inline]
    pub(crate) fn encode(
        &mut self,
        header: bool,
        max: usize,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        debug_assert!(!self.is_pending());
        if self.buf.capacity() == 0 {
            // Small messages whose encoding grows a little (a varint gaining
            // a byte) must not reallocate: start with room for many.
            self.buf.reserve(INITIAL_BUFFER);
        }
        self.buf.clear();
        self.sent = 0;
        self.ready = false;
        self.header = header;
        if header {
            self.buf.extend_from_slice(&[0; HEADER_LEN]);
        }
        let filled = fill(&mut self.buf);
        let len = self.buf.len() - self.hdr();
        if let Err(e) = filled {
            self.buf.clear();
            return Err(e);
        }
        if len > max {
            self.buf.clear();
            return Err(Error::too_large(
                len as u64,
                max,
                "raise the sender's and the receiver's `max_frame`, or split the message",
            ));
        }
        if header {
            self.buf[..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
        }
        self.ready = true;
        Ok(())
    }

    /// The frame buffer, emptied, for a frame written as it is encoded (a
    /// large message's direct path): reused, so that path allocates
    /// nothing either. Must not be called while a frame is still pending.
    pub(crate) fn scratch(&mut self) -> &mut Vec<u8> {
        debug_assert!(!self.is_pending());
        self.buf.clear();
        self.sent = 0;
        self.ready = false;
        &mut self.buf
    }

    /// Makes the pending frame a heartbeat: the prefix [`HEARTBEAT`] alone.
    /// Must not be called while a frame is still pending.
    pub(crate) fn heartbeat(&mut self) {
        debug_assert!(!self.is_pending());
        self.buf.clear();
        self.buf.extend_from_slice(&HEARTBEAT.to_be_bytes());
        self.sent = 0;
        self.header = true;
        self.ready = true;
    }

    /// Replaces the encoded frame with what `seal` makes of it (the
    /// records of an encrypted session). Before any of it is written.
    #[cfg_attr(not(feature = "tcp"), allow(dead_code))]
    pub(crate) fn seal(
        &mut self,
        seal: impl FnOnce(&[u8], &mut Vec<u8>) -> io::Result<u64>,
    ) -> io::Result<()> {
        debug_assert_eq!(self.sent, 0);
        self.sealed.clear();
        match seal(&self.buf, &mut self.sealed) {
            Ok(records) => self.records = records,
            Err(e) => {
                self.discard();
                return Err(e);
            }
        }
        std::mem::swap(&mut self.buf, &mut self.sealed);
        Ok(())
    }

    /// How many records sealing made of the pending frame.
    #[cfg_attr(not(feature = "tcp"), allow(dead_code))]
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    fn hdr(&self) -> usize {
        if self.header { HEADER_LEN } else { 0 }
    }

    /// The whole frame's length, written or not.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// The bytes not yet accepted by the kernel.
    #[inline]
    pub(crate) fn remaining(&self) -> &[u8] {
        &self.buf[self.sent..]
    }

    /// Records that `n` more bytes were written.
    #[inline]
    pub(crate) fn advance(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.buf.len());
        if self.sent == self.buf.len() {
            self.discard();
        }
    }

    /// Whether part of a frame is still waiting to be written.
    /// An empty datagram has no bytes, yet must still be written once: a
    /// message is pending from its encoding until its write completes.
    pub(crate) fn is_pending(&self) -> bool {
        self.ready
    }

    /// Whether any byte of the pending frame has been written.
    pub(crate) fn started(&self) -> bool {
        self.sent > 0
    }

    /// Forgets the pending frame (nothing of it was written).
    pub(crate) fn discard(&mut self) {
        self.buf.clear();
        self.sent = 0;
        self.ready = false;
        self.records = 0;
    }

    /// Writes the pending bytes to `w` until done. `WouldBlock` comes back
    /// with the progress kept, so the caller can wait and call again.
    pub(crate) fn write_to<W: Write + ?Sized>(&mut self, w: &mut W) -> io::Result<()> {
        while self.is_pending() {
            match w.write(self.remaining()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.advance(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
