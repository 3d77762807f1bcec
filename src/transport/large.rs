//! Messages too large for one datagram, on SEQPACKET and DGRAM sockets
//! (wire format section 3): the payload goes out of line, in a sealed memfd
//! that travels with a 12-byte announcement, so the message still arrives
//! as one atomic datagram, whole or not at all, whatever its size. The same
//! mechanism carries a shared-memory ring's oversized messages over its side
//! socket (`shm.rs`).
//!
//! An empty message travels as an announcement too (version 3), one with
//! length 0 and no memfd: a SEQPACKET socket reads an empty datagram and its
//! end of stream alike, so a procwire sender never sends an empty datagram,
//! and the receiver needs no credentials on every message to tell them
//! apart.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::codec::{self, split::Pieces};
use crate::error::{Error, ErrorKind, Result};
use crate::sys;

/// The first eight bytes of an announcement: `0xFF` then `pwmemfd`.
pub(crate) const MARKER: [u8; 8] = *b"\xFFpwmemfd";
/// The announcement: the marker, then the payload's length (u32, big-endian).
const HEADER: usize = MARKER.len() + 4;
/// The largest payload sent inline: a procwire receiver's datagram buffer
/// holds this much (plus one byte to tell a longer datagram by MSG_TRUNC).
pub(crate) const INLINE_MAX: usize = 256 << 10;

/// Whether `payload` must travel as an announcement: too large for the
/// inline limit, starting with the marker (so that a datagram that starts
/// with it is always an announcement), or empty (an empty datagram is a
/// SEQPACKET socket's end of stream).
pub(crate) fn must_go_out_of_line(payload: &[u8]) -> bool {
    payload.len() > INLINE_MAX || payload.starts_with(&MARKER) || payload.is_empty()
}

/// Sends `payload` out of line on the message socket `fd`: a sealed memfd
/// holding it goes first among the descriptors, the message's own after it.
pub(crate) fn send(
    fd: BorrowedFd<'_>,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    if fds.len() >= sys::MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a message too large for one datagram carries its payload in a descriptor of its \
                 own, so it may carry at most {} descriptors, not {}",
                sys::MAX_FDS - 1,
                fds.len()
            ),
        ));
    }
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l != u32::MAX)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a message over 4 GiB"))?;
    let mut header = [0u8; HEADER];
    header[..MARKER.len()].copy_from_slice(&MARKER);
    header[MARKER.len()..].copy_from_slice(&len.to_be_bytes());
    // The empty message needs no memfd: its announcement is all of it.
    let memfd = (len > 0)
        .then(|| sys::shm::memfd_with(payload))
        .transpose()?;
    // (The empty message allocates nothing: no list of descriptors unless
    // a memfd leads it.)
    let all: Vec<BorrowedFd<'_>>;
    let all = match &memfd {
        Some(m) => {
            all = std::iter::once(m.as_fd())
                .chain(fds.iter().copied())
                .collect();
            &all[..]
        }
        None => fds,
    };
    let sent = sys::send(fd, &[IoSlice::new(&header)], all, true)?;
    debug_assert_eq!(sent, HEADER, "a datagram is sent whole");
    Ok(payload.len())
}

/// The payload an announcement stands for, read from its memfd (only if
/// sealed and exactly as long as announced, and at most `max` bytes: checked
/// before anything is allocated for it) into `out`, and the message's own
/// descriptors. Length 0 is the empty message, which comes without a memfd.
/// With `split`, a large payload that ends in a byte string may come in two
/// pieces ([`read_memfd`]).
pub(crate) fn receive(
    announcement: &[u8],
    mut fds: Vec<OwnedFd>,
    max: usize,
    out: &mut Vec<u8>,
    split: bool,
) -> Result<(Option<Pieces>, usize, Vec<OwnedFd>)> {
    let bad = |what: String| {
        Error::new(
            ErrorKind::Decode,
            format!("a malformed out-of-line message (wire format section 3): {what}"),
        )
    };
    let Ok(len) = <[u8; 4]>::try_from(&announcement[MARKER.len().min(announcement.len())..]) else {
        return Err(bad(format!(
            "a datagram that starts with the marker must be {HEADER} bytes, not {}",
            announcement.len()
        )));
    };
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 {
        return Ok((None, 0, fds));
    }
    if fds.is_empty() {
        return Err(bad("the announcement came without its memfd".into()));
    }
    let memfd = fds.remove(0);
    if len > max {
        return Err(Error::too_large(
            len as u64,
            max,
            "the message was discarded; raise the receiver's `max_frame`",
        ));
    }
    let pieces = read_memfd(&memfd, len, out, split).map_err(|e| bad(e.to_string()))?;
    Ok((pieces, len, fds))
}

/// Reads the `len`-byte payload of a memfd received from a peer (only if
/// sealed and exactly that long) into `out`, or, with `split`, a large
/// one that ends in a byte string as [`Pieces`]: its first bytes into
/// `out`, the string into a buffer of its own (`codec::split`).
pub(crate) fn read_memfd(
    memfd: &OwnedFd,
    len: usize,
    out: &mut Vec<u8>,
    split: bool,
) -> io::Result<Option<Pieces>> {
    sys::shm::check_memfd(memfd, len)?;
    let mut first = [0u8; codec::split::FIRST];
    let first = &mut first[..len.min(codec::split::FIRST)];
    let guessed = if split && len >= codec::split::TAIL_MIN {
        sys::shm::pread_exact(memfd, 0, first)?;
        codec::split::guess(first, len)
    } else {
        None
    };
    let head = guessed.map_or(len, |(_, tail_at)| tail_at);
    if out.len() < head {
        out.resize(head, 0);
    }
    sys::shm::pread_exact(memfd, 0, &mut out[..head])?;
    let Some((claim_at, tail_at)) = guessed else {
        return Ok(None);
    };
    let mut tail = Vec::new();
    sys::pread_spare(memfd.as_fd(), tail_at, len - tail_at, &mut tail)?;
    Ok(Some(Pieces {
        head: tail_at,
        claim_at,
        tail,
    }))
}
