//! Finding frames in a byte stream that arrives in arbitrary pieces.

use std::ops::Range;

use super::{HEADER_LEN, check_max};
use crate::error::{Error, ErrorKind, Result, human};

/// The receive buffer's first size; it grows by doubling, only as data arrives.
pub(super) const INITIAL_BUFFER: usize = 8 << 10;

/// How far the buffer grows for reading ahead: a buffer filled to its end
/// with whole frames (and perhaps the start of one more) says more messages
/// were waiting, and it doubles, up to a pipe's default capacity, so that
/// a reader that falls behind takes what is queued in fewer reads (and
/// moves the partial frame at the buffer's end to its start less often). A
/// reader that keeps up stays at [`INITIAL_BUFFER`], and so does one that
/// receives one large frame at a time.
pub(super) const READ_AHEAD: usize = 64 << 10;

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
/// [`filled`](FrameDecoder::filled) (or let [`FrameReader`](super::FrameReader) do it), take
/// frames out with [`next_payload`](FrameDecoder::next_payload). Partial input is
/// kept between calls, so a reader with a deadline can give up and resume.
///
/// A frame longer than the maximum is reported once as
/// [`ErrorKind::FrameTooLarge`] and its bytes are skipped as they arrive, so
/// the stream stays in step and the next frame decodes normally.
///
/// # Examples
///
/// ```
/// use procwire::frame::FrameDecoder;
///
/// let mut d = FrameDecoder::new(1024)?;
/// let input = b"\0\0\0\x02hi\0\0"; // a frame, then half a prefix
/// let spare = d.spare();
/// spare[..input.len()].copy_from_slice(input);
/// d.filled(input.len());
/// assert_eq!(d.next_payload()?, Some(&b"hi"[..]));
/// assert_eq!(d.next_payload()?, None); // more input needed
/// # Ok::<(), procwire::Error>(())
/// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::frame::FrameDecoder;
    ///
    /// let mut d = FrameDecoder::new(1 << 20)?;
    /// d.spare()[..6].copy_from_slice(&[0, 0, 0, 2, b'h', b'i']);
    /// d.filled(6);
    /// assert_eq!(d.next_payload()?, Some(&b"hi"[..]));
    /// assert_eq!(d.next_payload()?, None); // more input needed
    /// # Ok::<(), procwire::Error>(())
    /// ```
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

    /// The next complete frame, if the buffer holds one. Inlined: one
    /// small frame after another is the common case, and it needs a few
    /// comparisons only.
    #[inline]
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>> {
        let avail = self.end - self.start;
        if self.skip == 0 && !self.heartbeats && avail >= HEADER_LEN {
            let len = self.claimed_len();
            let total = HEADER_LEN as u64 + len;
            if len <= self.max as u64 && avail as u64 >= total {
                let (at, total) = (self.start, total as usize);
                self.start += total;
                return Ok(Some(Frame {
                    range: at + HEADER_LEN..at + total,
                    stream_start: self.base + at as u64,
                    stream_end: self.base + (at + total) as u64,
                }));
            }
        }
        self.next_frame_slow()
    }

    /// [`next_frame`](FrameDecoder::next_frame) past its common case: bytes
    /// to skip, heartbeats, a frame too large or not all there.
    #[inline(never)]
    fn next_frame_slow(&mut self) -> Result<Option<Frame>> {
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

    /// The frame being assembled, if its length prefix is buffered and
    /// its payload is not all there: its length, and the payload bytes
    /// buffered so far.
    pub(crate) fn partial(&self) -> Option<(usize, &[u8])> {
        let avail = self.end - self.start;
        if self.skip > 0 || self.heartbeats || avail < HEADER_LEN {
            return None;
        }
        let len = self.claimed_len();
        if len > self.max as u64 || avail as u64 >= HEADER_LEN as u64 + len {
            return None;
        }
        Some((len as usize, &self.buf[self.start + HEADER_LEN..self.end]))
    }

    /// Takes the [`partial`](FrameDecoder::partial) frame of payload length
    /// `len`, whose remaining bytes were read elsewhere: the next byte
    /// to arrive is the one after it. The frame's `range` covers the payload
    /// bytes that were buffered here (valid until the next
    /// [`spare`](FrameDecoder::spare)).
    pub(crate) fn take_partial(&mut self, len: usize) -> Frame {
        let stream_start = self.base + self.start as u64;
        let stream_end = stream_start + (HEADER_LEN + len) as u64;
        let range = self.start + HEADER_LEN..self.end;
        self.base = stream_end;
        self.start = 0;
        self.end = 0;
        Frame {
            range,
            stream_start,
            stream_end,
        }
    }

    #[inline]
    pub(crate) fn payload(&self, frame: &Frame) -> &[u8] {
        &self.buf[frame.range.clone()]
    }

    #[inline]
    fn claimed_len(&self) -> u64 {
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[self.start..self.start + HEADER_LEN]);
        u64::from(u32::from_be_bytes(h))
    }

    /// Room to read more input into. Call [`filled`](FrameDecoder::filled)
    /// with the number of bytes stored.
    ///
    /// The buffer only grows when the frame being assembled needs it, or
    /// (up to 64 KiB) when input filled it with whole frames and more, and
    /// then at most doubles, so its size stays within twice the bytes that
    /// really arrived (plus 8 KiB), whatever a length prefix claims.
    #[inline]
    pub fn spare(&mut self) -> &mut [u8] {
        // Everything taken, nothing to skip, the buffer (allocated) not
        // filled to its end: the whole buffer is free (a frame assembled
        // here only ever needs a new one).
        if self.start == self.end && self.skip == 0 && self.end < self.buf.len() {
            self.base += self.start as u64;
            self.start = 0;
            self.end = 0;
            return &mut self.buf[..];
        }
        self.spare_for_more()
    }

    /// [`spare`](FrameDecoder::spare) when part of a frame is buffered, or
    /// the buffer was filled to its end (and may read ahead).
    fn spare_for_more(&mut self) -> &mut [u8] {
        if self.end == self.buf.len()
            && self.start > 0
            && self.skip == 0
            && self.buf.len() < READ_AHEAD
        {
            // Filled to its end, whole frames taken from it: read ahead.
            // All of it really arrived, so doubling keeps it within twice
            // what arrived. (A large frame that fills it from its start is
            // not a backlog.)
            self.buf.resize((self.buf.len() * 2).min(READ_AHEAD), 0);
        }
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
    #[inline]
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The stream offset of the next byte to arrive.
    pub(crate) fn stream_offset(&self) -> u64 {
        self.base + self.end as u64
    }

    /// Whether [`next_frame`](FrameDecoder::next_frame) has anything to do:
    /// a length prefix at least is buffered, or bytes of an oversized frame
    /// are still to be skipped.
    #[inline]
    pub(crate) fn may_have_frame(&self) -> bool {
        self.end - self.start >= HEADER_LEN || self.skip > 0
    }

    /// Whether the decoder holds nothing of a frame: an end of stream here is
    /// clean.
    pub fn at_boundary(&self) -> bool {
        self.start == self.end && self.skip == 0
    }

    /// Whether a complete frame is buffered (so a reader need not wait).
    #[inline]
    pub(crate) fn has_frame(&self) -> bool {
        let avail = self.end - self.start;
        if self.skip > 0 || avail < HEADER_LEN {
            return false;
        }
        let len = self.claimed_len();
        len > self.max as u64 || avail as u64 >= HEADER_LEN as u64 + len
    }

    /// The error for an end of stream that is not at a frame boundary.
    /// `read_elsewhere`: bytes of the frame read past the decoder (into a
    /// byte string's own buffer), which arrived too.
    pub(crate) fn eof_error(&self, read_elsewhere: u64) -> Error {
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
                human(avail - HEADER_LEN as u64 + read_elsewhere),
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
