//! Message boundaries on byte streams: wire format v1 framing.
//!
//! A byte stream (a pipe, a stream socket, later TCP) has no message
//! boundaries, so each message travels as a **frame**: a 4-byte unsigned
//! big-endian length `L`, then `L` payload bytes (see `docs/wire-format.md`).
//! `L = 0` is a valid empty message.
//!
//! This module is pure Rust over [`Read`] and [`Write`]: no system calls and no
//! `unsafe`, so it can be fuzzed and reused on any stream. The channel layer
//! drives the same two state machines, [`FrameDecoder`] and the outgoing frame
//! buffer, over non-blocking descriptors.
//!
//! Two properties hold on every path:
//! - the length is checked against the maximum frame size **before** anything
//!   is allocated for it, and the receive buffer grows only as bytes actually
//!   arrive, so a lying length prefix costs nothing;
//! - a frame goes out in one `write` once the buffers are warm, and no
//!   allocation happens per message.
//!
//! # Examples
//!
//! ```
//! use procwire::frame::{FrameReader, FrameWriter};
//!
//! let mut wire = Vec::new();
//! let mut w = FrameWriter::new(&mut wire);
//! w.send(b"hello")?;
//! w.send(b"")?;
//! assert_eq!(wire, b"\0\0\0\x05hello\0\0\0\0");
//!
//! let mut r = FrameReader::new(&wire[..]);
//! assert_eq!(r.recv()?, Some(&b"hello"[..]));
//! assert_eq!(r.recv()?, Some(&b""[..]));
//! assert_eq!(r.recv()?, None); // clean end of stream
//! # Ok::<(), procwire::Error>(())
//! ```

use std::io::{self, Read, Write};
use std::ops::Range;

use crate::error::{Error, ErrorKind, Result, human};

/// Bytes in a frame's length prefix.
pub const HEADER_LEN: usize = 4;

/// The default maximum payload length: 64 MiB.
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// The largest maximum frame size: one below every reserved length prefix.
/// A 4-byte prefix expresses up to `u32::MAX`, and `u32::MAX` itself is
/// reserved ([`HEARTBEAT`] on `tcp://`; `docs/wire-format.md` lists the
/// reserved values), so no payload may claim it on any transport.
pub const MAX_FRAME_LIMIT: usize = HEARTBEAT as usize - 1;

/// The receive buffer's first size; it grows by doubling, only as data arrives.
const INITIAL_BUFFER: usize = 8 << 10;

/// Checks a configured maximum frame size.
pub(crate) fn check_max(max: usize) -> Result<usize> {
    if max > MAX_FRAME_LIMIT {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "maximum frame size {} exceeds the largest a 4-byte length can carry below \
                 the reserved prefix 0xFFFF_FFFF ({})",
                human(max as u64),
                human(MAX_FRAME_LIMIT as u64)
            ),
        ));
    }
    Ok(max)
}

/// One outgoing message, encoded once and written in as many pieces as the
/// kernel takes. Reused for every message: no allocation once warm.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    buf: Vec<u8>,
    sent: usize,
    header: bool,
    /// Set once a message is fully encoded: a codec that panics half-way
    /// must not leave half an encoding to be sent as a frame.
    ready: bool,
}

impl Outgoing {
    /// Encodes the next message with `fill`, behind a length prefix when
    /// `header` is set (byte streams) and bare otherwise (one datagram).
    /// Must not be called while a frame is still pending.
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

    fn hdr(&self) -> usize {
        if self.header { HEADER_LEN } else { 0 }
    }

    /// The bytes not yet accepted by the kernel.
    pub(crate) fn remaining(&self) -> &[u8] {
        &self.buf[self.sent..]
    }

    /// The payload of the current message (without the prefix).
    pub(crate) fn payload(&self) -> &[u8] {
        &self.buf[self.hdr()..]
    }

    /// Records that `n` more bytes were written.
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

/// A complete frame found in a [`FrameDecoder`]'s buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The payload's place in the decoder's buffer.
    pub range: Range<usize>,
    /// Where the frame (its length prefix) starts in the whole stream.
    pub stream_start: u64,
    /// Where the frame ends in the whole stream.
    pub stream_end: u64,
}

/// Finds frames in a byte stream fed to it in arbitrary pieces.
///
/// Feed it with [`spare`](FrameDecoder::spare) and
/// [`filled`](FrameDecoder::filled) (or let [`FrameReader`] do it), take
/// frames out with [`next_payload`](FrameDecoder::next_payload). Partial input is
/// kept between calls, so a reader with a deadline can give up and resume.
///
/// A frame longer than the maximum is reported once as
/// [`ErrorKind::FrameTooLarge`] and its bytes are skipped as they arrive, so
/// the stream stays in step and the next frame decodes normally.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Bytes of an oversized frame still to be thrown away.
    skip: u64,
    max: usize,
    /// Take frames whose prefix is [`HEARTBEAT`] as heartbeats and drop
    /// them (`tcp://` connections only).
    heartbeats: bool,
}

/// On `tcp://` connections only: a length prefix of `0xFFFF_FFFF`, with no
/// payload, is a heartbeat, not a message.
pub const HEARTBEAT: u32 = u32::MAX;

impl FrameDecoder {
    /// A decoder that accepts payloads of at most `max_frame` bytes.
    pub fn new(max_frame: usize) -> Result<FrameDecoder> {
        Ok(FrameDecoder {
            buf: Vec::new(),
            start: 0,
            end: 0,
            base: 0,
            skip: 0,
            max: check_max(max_frame)?,
            heartbeats: false,
        })
    }

    /// Drops heartbeat frames ([`HEARTBEAT`]) instead of reporting them as
    /// too large: the framing of `tcp://` connections.
    pub fn with_heartbeats(mut self) -> FrameDecoder {
        self.heartbeats = true;
        self
    }

    /// The next complete frame's payload, if the buffer holds one.
    ///
    /// `Ok(None)` means more input is needed.
    pub fn next_payload(&mut self) -> Result<Option<&[u8]>> {
        Ok(self.next_frame()?.map(|f| &self.buf[f.range]))
    }

    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>> {
        if self.skip > 0 {
            let drop = self.skip.min((self.end - self.start) as u64) as usize;
            self.start += drop;
            self.skip -= drop as u64;
            if self.skip > 0 {
                return Ok(None);
            }
        }
        let mut avail = self.end - self.start;
        if avail < HEADER_LEN {
            return Ok(None);
        }
        let mut len = self.claimed_len();
        while self.heartbeats && len == u64::from(HEARTBEAT) {
            self.start += HEADER_LEN;
            avail -= HEADER_LEN;
            if avail < HEADER_LEN {
                return Ok(None);
            }
            len = self.claimed_len();
        }
        if len > self.max as u64 {
            self.start += HEADER_LEN;
            self.skip = len;
            return Err(Error::too_large(
                len,
                self.max,
                "the frame is skipped; raise the receiver's `max_frame` to accept it",
            ));
        }
        let total = HEADER_LEN + len as usize;
        if avail < total {
            return Ok(None);
        }
        let at = self.start;
        self.start += total;
        Ok(Some(Frame {
            range: at + HEADER_LEN..at + total,
            stream_start: self.base + at as u64,
            stream_end: self.base + (at + total) as u64,
        }))
    }

    pub(crate) fn payload(&self, frame: &Frame) -> &[u8] {
        &self.buf[frame.range.clone()]
    }

    fn claimed_len(&self) -> u64 {
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[self.start..self.start + HEADER_LEN]);
        u64::from(u32::from_be_bytes(h))
    }

    /// Room to read more input into. Call [`filled`](FrameDecoder::filled)
    /// with the number of bytes stored.
    ///
    /// The buffer only grows when the frame being assembled needs it, and
    /// then at most doubles, so its size stays within twice the bytes that
    /// really arrived (plus 8 KiB), whatever a length prefix claims.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.base += self.start as u64;
            self.start = 0;
            self.end = 0;
        }
        let avail = self.end - self.start;
        let want = if self.skip > 0 {
            1
        } else if avail >= HEADER_LEN {
            (HEADER_LEN as u64 + self.claimed_len()).min(HEADER_LEN as u64 + self.max as u64)
                as usize
                - avail
        } else {
            HEADER_LEN - avail
        }
        .max(1);
        if self.buf.len() - self.end < want && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() == self.end {
            let grown = (self.buf.len() * 2).max(INITIAL_BUFFER);
            self.buf
                .resize(grown.min(self.end + want.max(INITIAL_BUFFER)), 0);
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were stored at the start of the last
    /// [`spare`](FrameDecoder::spare).
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The stream offset of the next byte to arrive.
    pub(crate) fn stream_offset(&self) -> u64 {
        self.base + self.end as u64
    }

    /// Whether the decoder holds nothing of a frame: an end of stream here is
    /// clean.
    pub fn at_boundary(&self) -> bool {
        self.start == self.end && self.skip == 0
    }

    /// Whether a complete frame is buffered (so a reader need not wait).
    pub(crate) fn has_frame(&self) -> bool {
        let avail = self.end - self.start;
        if self.skip > 0 || avail < HEADER_LEN {
            return false;
        }
        let len = self.claimed_len();
        len > self.max as u64 || avail as u64 >= HEADER_LEN as u64 + len
    }

    /// The error for an end of stream that is not at a frame boundary.
    pub(crate) fn eof_error(&self) -> Error {
        let avail = (self.end - self.start) as u64;
        let msg = if self.skip > 0 {
            format!(
                "peer closed the stream with {} of an oversized frame unsent",
                human(self.skip)
            )
        } else if avail < HEADER_LEN as u64 {
            format!("peer closed the stream after {avail} of the 4 bytes of a length prefix")
        } else {
            format!(
                "peer closed the stream in the middle of a frame: {} of {} arrived",
                human(avail - HEADER_LEN as u64),
                human(self.claimed_len())
            )
        };
        Error::new(ErrorKind::UnexpectedEof, msg)
    }

    /// Drops any partial frame (after an end of stream inside it).
    pub(crate) fn reset(&mut self) {
        self.base += self.end as u64;
        self.start = 0;
        self.end = 0;
        self.skip = 0;
    }

    /// The bytes of the receive buffer currently allocated (for tests that
    /// bound memory).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

/// Writes frames to any [`Write`]: one `write` call per frame when the writer
/// takes it whole.
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: W,
    out: Outgoing,
    max: usize,
}

impl<W: Write> FrameWriter<W> {
    /// A writer with the default 64 MiB maximum.
    pub fn new(inner: W) -> FrameWriter<W> {
        FrameWriter {
            inner,
            out: Outgoing::default(),
            max: DEFAULT_MAX_FRAME,
        }
    }

    /// A writer with another maximum payload length.
    pub fn with_max_frame(inner: W, max_frame: usize) -> Result<FrameWriter<W>> {
        Ok(FrameWriter {
            max: check_max(max_frame)?,
            ..FrameWriter::new(inner)
        })
    }

    /// Writes one frame carrying `payload`.
    ///
    /// If the writer fails part-way the error comes back and the rest of the
    /// frame is kept: the next `send` or [`flush`](FrameWriter::flush)
    /// finishes it first, so frames never interleave or tear.
    pub fn send(&mut self, payload: &[u8]) -> Result<()> {
        self.flush_pending()?;
        self.out.encode(true, self.max, |b| {
            b.extend_from_slice(payload);
            Ok(())
        })?;
        self.flush_pending()
    }

    fn flush_pending(&mut self) -> Result<()> {
        self.out
            .write_to(&mut self.inner)
            .map_err(|e| Error::io("writing a frame", e))
    }

    /// Finishes a frame left pending by an error, then flushes the writer.
    pub fn flush(&mut self) -> Result<()> {
        self.flush_pending()?;
        self.inner
            .flush()
            .map_err(|e| Error::io("flushing the frame writer", e))
    }

    /// The writer underneath.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The writer underneath, mutably (writing to it directly breaks framing).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Gives the writer back.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Reads frames from any [`Read`].
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    dec: FrameDecoder,
}

impl<R: Read> FrameReader<R> {
    /// A reader with the default 64 MiB maximum.
    pub fn new(inner: R) -> FrameReader<R> {
        FrameReader {
            inner,
            dec: FrameDecoder::new(DEFAULT_MAX_FRAME).expect("the default maximum is valid"),
        }
    }

    /// A reader with another maximum payload length.
    pub fn with_max_frame(inner: R, max_frame: usize) -> Result<FrameReader<R>> {
        Ok(FrameReader {
            inner,
            dec: FrameDecoder::new(max_frame)?,
        })
    }

    /// The next frame's payload; `Ok(None)` at a clean end of stream.
    ///
    /// A stream that ends inside a frame is [`ErrorKind::UnexpectedEof`]. If
    /// the reader returns `WouldBlock` or an error, the partial frame is kept
    /// and the next call continues it.
    pub fn recv(&mut self) -> Result<Option<&[u8]>> {
        loop {
            if let Some(f) = self.dec.next_frame()? {
                return Ok(Some(self.dec.payload(&f)));
            }
            let n = match self.inner.read(self.dec.spare()) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("reading a frame", e)),
            };
            if n == 0 {
                if self.dec.at_boundary() {
                    return Ok(None);
                }
                return Err(self.dec.eof_error());
            }
            self.dec.filled(n);
        }
    }

    /// The decoder, to inspect its buffer.
    pub fn decoder(&self) -> &FrameDecoder {
        &self.dec
    }

    /// Gives the reader back (buffered input is lost).
    pub fn into_inner(self) -> R {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most `chunk` bytes per call and counts calls.
    struct Chunky {
        data: Vec<u8>,
        chunk: usize,
        calls: usize,
    }

    impl Write for Chunky {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            let n = b.len().min(self.chunk);
            self.data.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A reader that hands out at most `chunk` bytes per call.
    struct Dribble<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl Read for Dribble<'_> {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            let n = b.len().min(self.chunk).min(self.data.len());
            b[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn one_write_call_per_frame() {
        let mut w = FrameWriter::new(Chunky {
            data: Vec::new(),
            chunk: usize::MAX,
            calls: 0,
        });
        for i in 0..100u32 {
            w.send(&i.to_le_bytes()).unwrap();
        }
        assert_eq!(w.get_ref().calls, 100);
    }

    #[test]
    fn short_writes_and_one_byte_reads_keep_frames_whole() {
        let msgs: Vec<Vec<u8>> = (0..50).map(|i| vec![i as u8; i * 37]).collect();
        let mut w = FrameWriter::new(Chunky {
            data: Vec::new(),
            chunk: 3,
            calls: 0,
        });
        for m in &msgs {
            w.send(m).unwrap();
        }
        let wire = w.into_inner().data;
        let mut r = FrameReader::new(Dribble {
            data: &wire,
            chunk: 1,
        });
        for m in &msgs {
            assert_eq!(r.recv().unwrap().unwrap(), &m[..]);
        }
        assert!(r.recv().unwrap().is_none());
    }

    #[test]
    fn a_4_gib_length_prefix_is_refused_before_allocating() {
        let wire = [0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let mut r = FrameReader::new(&wire[..]);
        let e = r.recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::FrameTooLarge);
        assert!(
            e.to_string().contains("4.0 GiB exceeds the 64 MiB limit"),
            "{e}"
        );
        assert!(r.decoder().buffer_capacity() <= INITIAL_BUFFER);
    }

    #[test]
    fn a_lying_length_costs_only_what_arrives() {
        // Claims 60 MiB, delivers 1 KiB, then the stream ends.
        let mut wire = (60u32 << 20).to_be_bytes().to_vec();
        wire.extend(std::iter::repeat_n(7u8, 1024));
        let mut r = FrameReader::new(Dribble {
            data: &wire,
            chunk: 100,
        });
        let e = r.recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
        assert!(r.decoder().buffer_capacity() <= 2 * INITIAL_BUFFER);
    }

    #[test]
    fn an_oversized_frame_is_skipped_and_the_next_one_decodes() {
        let mut wire = Vec::new();
        let mut w = FrameWriter::new(&mut wire);
        w.send(&[1; 100]).unwrap();
        w.send(b"ok").unwrap();
        let mut r = FrameReader::with_max_frame(&wire[..], 10).unwrap();
        assert_eq!(r.recv().unwrap_err().kind(), ErrorKind::FrameTooLarge);
        assert_eq!(r.recv().unwrap(), Some(&b"ok"[..]));
        assert_eq!(r.recv().unwrap(), None);
    }

    #[test]
    fn a_frame_cut_at_every_offset_is_unexpected_eof() {
        let mut wire = Vec::new();
        FrameWriter::new(&mut wire).send(b"hello, world").unwrap();
        for cut in 1..wire.len() {
            let mut r = FrameReader::new(&wire[..cut]);
            let e = r.recv().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "cut at {cut}");
        }
    }

    #[test]
    fn a_codec_that_panics_leaves_nothing_to_send() {
        let mut out = Outgoing::default();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = out.encode(true, 100, |b| {
                b.extend_from_slice(b"half");
                panic!("a Serialize impl panicked");
            });
        }));
        assert!(r.is_err());
        assert!(!out.is_pending());
        let mut wire = Vec::new();
        out.write_to(&mut wire).unwrap();
        assert!(wire.is_empty());
    }

    #[test]
    fn the_sender_refuses_frames_over_its_maximum() {
        let mut w = FrameWriter::with_max_frame(Vec::new(), 4).unwrap();
        assert_eq!(
            w.send(b"12345").unwrap_err().kind(),
            ErrorKind::FrameTooLarge
        );
        w.send(b"1234").unwrap();
        assert_eq!(w.get_ref().len(), 8);
        assert!(FrameWriter::with_max_frame(Vec::new(), usize::MAX).is_err());
    }
}
