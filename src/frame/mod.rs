//! Message boundaries on byte streams: the wire format's framing (section 2).
//!
//! A byte stream (a pipe, a stream socket, later TCP) has no message
//! boundaries, so each message travels as a **frame**: a 4-byte unsigned
//! big-endian length `L`, then `L` payload bytes (see `docs/wire-format.md`).
//! `L = 0` is a valid empty message.
//!
//! This module is pure Rust over [`Read`](std::io::Read) and [`Write`](std::io::Write): no system calls and no
//! `unsafe`, so it can be fuzzed and reused on any stream. The channel layer
//! drives the same two state machines, [`FrameDecoder`] and the outgoing frame
//! buffer, over non-blocking descriptors.
//!
//! Two properties hold on every path:
//! - the length is checked against the maximum frame size **before** anything
//!   is allocated for it, and the receive buffer grows only as bytes actually
//!   arrive, so a lying length prefix costs nothing (the one buffer reserved
//!   at a size the peer announced, a large trailing byte string's own, is
//!   capped by that maximum and only written as bytes arrive: address space,
//!   not memory, until then);
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

mod decoder;
mod outgoing;
mod stream;
#[cfg(test)]
mod tests;

pub(crate) use decoder::Frame;
pub use decoder::{FrameDecoder, HEARTBEAT};
pub(crate) use outgoing::Outgoing;
pub use stream::{FrameReader, FrameWriter};

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
