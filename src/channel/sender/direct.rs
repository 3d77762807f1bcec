//! A large message's send without the frame buffer's copy: its big byte
//! slices go from the caller's memory to the kernel as the codec hands
//! them over.
//!
//! serde lends a serializer each byte slice for the length of one call
//! only, so a frame cannot point into the caller's buffer; but the slice
//! can be written during that call. The frame's length prefix must go
//! first, so the message is encoded twice: once into a counter (no copy,
//! no allocation), then for real, small pieces gathered into a buffer and
//! each slice of [`CHUNK`] bytes or more written with them in one
//! `writev`. Only a blocking send on a byte stream (a pipe or a stream
//! socket; not TCP, whose records are sealed whole) takes this path, and
//! only after a frame of [`large`] bytes or more on the same sender: a
//! small message pays nothing for it.
//!
//! A `Serialize` impl that encodes differently the second time cannot tear
//! the stream: the frame is padded with zeros to the length announced (the
//! receiver gets a decode error for it, and the next frame intact), and
//! the send fails with an `Encode` error.

use std::io::{self, IoSlice, Write};

use super::{Payload, SendCore};
use crate::channel::gate::Wait;
use crate::error::{Error, ErrorKind, Result};
use crate::frame::Outgoing;
use crate::sys;
use crate::transport::{DATAGRAM_SPILL_MAX, INLINE_MAX, Transport};

/// How long a frame must be for this path on `transport`; a frame at least
/// this long also makes the sender's next send try it.
///
/// Into a ring, from 4 KiB: the value is encoded straight into its record,
/// which saves the copy out of the frame buffer. On a byte stream, from 16
/// KiB: below that, copying into the frame buffer and one `write` takes
/// less time than a second encoding and a `writev` of the pieces. Measured
/// in three interleaved runs each of `procwire bench --transports
/// pipe,stream --sizes 4096,16384,32768` with the threshold at 4, 16 and 64
/// KiB: at 4 KiB the buffered frame was 2-8% faster; at 16 and 32 KiB the
/// two were even on pipes and writing in place slightly ahead on stream
/// sockets. Into a ring (`--transports shm --sizes 4096,8192`), in place
/// was 4-22% faster at both sizes.
pub(super) fn large(transport: Transport) -> usize {
    match transport {
        Transport::Shm => 4 << 10,
        // Only a message that travels out of line, in the spill file.
        Transport::Datagram | Transport::SeqPacket => INLINE_MAX + 1,
        _ => 16 << 10,
    }
}
/// A slice at least this long is written from where it is, not copied.
const CHUNK: usize = 2 << 10;

/// Counts what an encoding writes, keeping nothing.
struct Count(usize);

impl Write for Count {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0 += data.len();
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes a frame of a known length as its encoding produces it.
struct Direct<'a> {
    core: &'a SendCore,
    /// Small pieces not yet written (the length prefix first): the frame
    /// buffer, reused.
    pending: &'a mut Vec<u8>,
    /// Bytes of the frame not yet handed over (written or pending).
    room: usize,
    /// Bytes of the frame written.
    went: usize,
    /// Why a write failed, in procwire's terms.
    failed: Option<Error>,
    /// The encoding ran past the length the first pass counted (codecs
    /// report a writer's error in their own words, which would hide it).
    overran: bool,
}

impl Direct<'_> {
    /// Why a write failed (the connection is broken, and says why).
    fn broken(&mut self) -> Error {
        self.failed
            .take()
            .unwrap_or_else(|| Error::new(ErrorKind::Io, "writing a large frame failed"))
    }

    /// Writes the pending pieces, then `data`, whole.
    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        let Direct {
            core,
            pending,
            went,
            failed,
            ..
        } = self;
        let mut bufs = [IoSlice::new(pending), IoSlice::new(data)];
        let mut left = &mut bufs[..];
        IoSlice::advance_slices(&mut left, 0);
        while !left.is_empty() {
            match core.conn.write_vectored(left, true) {
                Ok(n) => {
                    *went += n;
                    IoSlice::advance_slices(&mut left, n);
                }
                Err(e) if sys::would_block(&e) => {
                    if let Err(e) = core.wait_writable(Wait::Block) {
                        *failed = Some(e);
                        return Err(io::Error::other("the wait for room failed"));
                    }
                }
                Err(e) => {
                    *failed = Some(core.write_error(e, Wait::Block));
                    return Err(io::Error::other("the write failed"));
                }
            }
        }
        pending.clear();
        Ok(())
    }
}

impl Write for Direct<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Some(room) = self.room.checked_sub(data.len()) else {
            self.overran = true;
            return Err(io::Error::other(
                "the value encoded to more bytes than it did a moment before",
            ));
        };
        self.room = room;
        if data.len() < CHUNK {
            crate::bytes::extend(self.pending, data);
        } else {
            self.put(data)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn differently() -> Error {
    Error::new(
        ErrorKind::Encode,
        "the value encoded differently the second time (a Serialize impl that is not \
         deterministic)",
    )
}

/// Sends `payload` this way; `None` when it is not worth it (the message
/// is small after all, carries descriptors, or does not encode: the
/// buffered path then sends it, or reports why not).
pub(super) fn send(
    core: &SendCore,
    out: &mut Outgoing,
    wait: Wait,
    payload: &impl Payload,
) -> Option<Result<()>> {
    let mut count = Count(0);
    let (counted, fds) = crate::fd::collecting(0, || payload.write_to(core.codec, &mut count));
    let len = count.0;
    if counted.is_err() || !fds.is_empty() || len < core.large_from || len > core.max_frame {
        return None;
    }
    match core.conn.transport() {
        Transport::Shm => return into_ring(core, wait, payload, len),
        Transport::Datagram | Transport::SeqPacket if len <= DATAGRAM_SPILL_MAX => {
            return Some(into_spill_file(core, wait, payload, len));
        }
        Transport::Datagram | Transport::SeqPacket => return None,
        _ => {}
    }
    let mut w = Direct {
        core,
        pending: out.scratch(),
        room: len,
        went: 0,
        failed: None,
        overran: false,
    };
    w.pending
        .extend_from_slice(&u32::try_from(len).ok()?.to_be_bytes());
    let (encoded, fds) = crate::fd::collecting(0, || payload.write_to(core.codec, &mut w));
    let why = match encoded {
        Ok(()) if w.room == 0 && fds.is_empty() => {
            return Some(w.put(&[]).map_err(|_| w.broken()));
        }
        _ if w.failed.is_some() => return Some(Err(w.broken())),
        Ok(()) => differently(),
        Err(_) if w.overran => differently(),
        Err(e) => e,
    };
    if w.went == 0 {
        return Some(Err(why));
    }
    // Part of the frame went: keep the stream whole, what is pending and
    // then zeros up to the length announced, so the receiver loses this
    // message only.
    let zeros = vec![0u8; w.room.min(CHUNK)];
    while w.room > 0 {
        let n = w.room.min(zeros.len());
        w.room -= n;
        if w.put(&zeros[..n]).is_err() {
            return Some(Err(w.broken()));
        }
    }
    if w.put(&[]).is_err() {
        return Some(Err(w.broken()));
    }
    Some(Err(why.because(
        "part of the frame had gone: it was padded with zeros to its announced length, which \
         the receiver reports as a message that does not decode",
    )))
}

/// A shared-memory send: the message encoded straight into its record in
/// the ring (a value that encodes differently the second time leaves
/// nothing behind: a record is published only whole), or into the ring's
/// spill file if it is too large for the ring. `None` if it is too large
/// for that too (it then travels out of line, copied).
fn into_ring(
    core: &SendCore,
    wait: Wait,
    payload: &impl Payload,
    len: usize,
) -> Option<Result<()>> {
    let attempt = || {
        let fill = |slot: &mut crate::shm::Slot<'_>| fill_in_place(core, payload, slot);
        core.conn.shm_write_with(len, fill, differently)
    };
    with_room(core, wait, attempt)
        .transpose()
        .map(Result::flatten)
}

/// A message socket's send of a message that travels out of line: the
/// value encoded straight into the sender's spill file, then announced
/// (`transport::large`). A value that encodes differently the second time
/// announces nothing.
fn into_spill_file(core: &SendCore, wait: Wait, payload: &impl Payload, len: usize) -> Result<()> {
    let attempt = || {
        let fill = |w: &mut dyn io::Write| fill_in_place(core, payload, w);
        core.conn.spill_with(len, fill, differently)
    };
    with_room(core, wait, attempt).flatten()
}

/// Encodes `payload` in place into `w`, the second encoding of the
/// message: descriptors found now and not in the first are an error.
fn fill_in_place(core: &SendCore, payload: &impl Payload, w: &mut dyn io::Write) -> Result<()> {
    let (r, fds) = crate::fd::collecting(0, || payload.write_to(core.codec, w));
    if fds.is_empty() {
        r
    } else {
        Err(differently())
    }
}

/// Makes `attempt` until it goes (`WouldBlock`: no room), waiting for
/// room between tries as `wait` allows.
fn with_room<R>(
    core: &SendCore,
    wait: Wait,
    mut attempt: impl FnMut() -> io::Result<R>,
) -> Result<R> {
    loop {
        match attempt() {
            Ok(r) => return Ok(r),
            Err(e) if sys::would_block(&e) => {
                if !core.await_room(wait)? {
                    return Err(super::not_now(wait));
                }
            }
            Err(e) => return Err(core.write_error(e, wait)),
        }
    }
}
