//! Messages too large for one datagram, on SEQPACKET and DGRAM sockets
//! (wire format section 3): the payload goes out of line, in a memfd that
//! travels with a 12- or 13-byte announcement, so the message still arrives
//! as one atomic datagram, whole or not at all, whatever its size. The same
//! mechanism carries a shared-memory ring's oversized messages over its side
//! socket (`shm.rs`).
//!
//! An empty message travels as an announcement too (version 3), one with
//! length 0 and no memfd: a SEQPACKET socket reads an empty datagram and its
//! end of stream alike, so a procwire sender never sends an empty datagram,
//! and the receiver needs no credentials on every message to tell them
//! apart.
//!
//! Up to [`SPILL_MAX`] bytes (version 4), the memfd is the sender's *spill
//! file* ([`Spill`]): sealed against resizing only, written again for the
//! next large message once its receivers have counted, in the file's first
//! word, every message spilled into it as read. Its pages are allocated
//! once, where a fresh memfd per message allocated, and at its close freed,
//! a megabyte of pages each time (most of a 1 MiB SEQPACKET message's
//! time, by `perf`). Both ends map it: the sender encodes into its
//! mapping, and the receiver keeps a mapping of the file it last read from
//! while the same file keeps coming. The file still goes with every
//! announcement: a message needs nothing its receiver kept from another,
//! so a receiving end sent to another process, or shared by two, reads it
//! as any other.

use std::cmp::Ordering as CmpOrdering;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use crate::codec::{self, split::Pieces};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::Slot;
use crate::sys;
use crate::sys::shm::Region;

/// The first eight bytes of an announcement: `0xFF` then `pwmemfd`.
pub(crate) const MARKER: [u8; 8] = *b"\xFFpwmemfd";
/// The announcement: the marker, then the payload's length (u32, big-endian).
const HEADER: usize = MARKER.len() + 4;
/// A spill announcement: [`HEADER`], then [`KIND_SPILL`]: the longest
/// announcement.
pub(crate) const SPILL_HEADER: usize = HEADER + 1;
/// The kind byte of an announcement whose memfd is a spill file.
const KIND_SPILL: u8 = 1;
/// Where a spill file's payload starts: after the count of messages read
/// (u64, little-endian, at offset 0) and the rest of a cache line.
const SPILL_AT: usize = 64;
/// The largest message that goes in a spill file; a larger one gets a
/// sealed memfd of its own, so that a spill file never holds more than
/// this much memory between messages.
pub(crate) const SPILL_MAX: usize = 64 << 20;
/// The smallest spill file's payload area.
const SPILL_MIN: usize = 512 << 10;
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

/// A message socket sender's spill file, mapped: the size of its payload
/// area, how many messages went into it, and the process that made it (a
/// forked child that inherited the end makes its own rather than write
/// into its parent's).
#[derive(Debug)]
pub(crate) struct Spill {
    region: Region,
    capacity: usize,
    spilled: u64,
    pid: rustix::process::Pid,
}

impl Spill {
    /// The spill file to write a `len`-byte message into: the one in
    /// `slot` if it is this process's, large enough, and every message
    /// spilled into it has been read; a new one otherwise.
    fn ready(slot: &mut Option<Spill>, len: usize) -> io::Result<&mut Spill> {
        let pid = rustix::process::getpid();
        let reusable = |s: &Spill| {
            s.pid == pid
                && s.capacity >= len
                && s.region.u64_at(0).load(Ordering::Acquire) == s.spilled
        };
        if !slot.as_ref().is_some_and(reusable) {
            let capacity = len.next_power_of_two().clamp(SPILL_MIN, SPILL_MAX);
            *slot = Some(Spill {
                region: Region::create_named("procwire-spill", SPILL_AT + capacity)?,
                capacity,
                spilled: 0,
                pid,
            });
        }
        Ok(slot.as_mut().expect("filled above"))
    }

    /// Sends the announcement of the `len`-byte message just written into
    /// this file, the file first among the descriptors and `fds` after
    /// it, and counts the message once it went (a send that found no room
    /// is made again, writing the file again).
    fn announce(&mut self, fd: BorrowedFd<'_>, len: u32, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let mut header = [0u8; SPILL_HEADER];
        header[..HEADER].copy_from_slice(&announcement(len));
        header[HEADER] = KIND_SPILL;
        let all = led_by(self.region.fd().as_fd(), fds);
        let sent = sys::send(fd, &[IoSlice::new(&header)], &all, true)?;
        debug_assert_eq!(sent, SPILL_HEADER, "a datagram is sent whole");
        self.spilled += 1;
        Ok(())
    }
}

/// A receiver's mapping of the spill file it read from last, kept while
/// the sender goes on sending that file (known by its device and inode:
/// the mapping holds the file open, so they cannot be another's).
#[derive(Debug)]
pub(crate) struct Mapped {
    id: (u64, u64),
    region: Region,
}

/// The mapping of the spill file `memfd`: the one in `cache` if it is that
/// file, otherwise a new one, which replaces it (only if sealed against
/// resizing, and between [`SPILL_AT`] and `SPILL_AT + SPILL_MAX` bytes).
fn mapped(cache: &mut Option<Mapped>, memfd: OwnedFd) -> io::Result<&Region> {
    sys::shm::check_spill_seals(&memfd)?;
    let st = rustix::fs::fstat(&memfd)?;
    let id = (st.st_dev, st.st_ino);
    if !cache
        .as_ref()
        .is_some_and(|m| m.id == id && m.region.len() as i64 == st.st_size)
    {
        let size = usize::try_from(st.st_size)
            .ok()
            .filter(|s| (SPILL_AT..=SPILL_AT + SPILL_MAX).contains(s))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the spill file has {} bytes, not {SPILL_AT} to {}",
                        st.st_size,
                        SPILL_AT + SPILL_MAX
                    ),
                )
            })?;
        *cache = Some(Mapped {
            id,
            region: Region::open(memfd, size)?,
        });
    }
    Ok(&cache.as_ref().expect("filled above").region)
}

/// The descriptors of a message out of line: its memfd first, then the
/// message's own.
fn led_by<'a>(memfd: BorrowedFd<'a>, fds: &[BorrowedFd<'a>]) -> Vec<BorrowedFd<'a>> {
    std::iter::once(memfd).chain(fds.iter().copied()).collect()
}

/// The 12 bytes that announce a `len`-byte message out of line.
fn announcement(len: u32) -> [u8; HEADER] {
    let mut header = [0u8; HEADER];
    header[..MARKER.len()].copy_from_slice(&MARKER);
    header[MARKER.len()..].copy_from_slice(&len.to_be_bytes());
    header
}

/// The spill file lock's content (a poisoned lock only means a send
/// panicked: the file's count still says whether it may be written).
fn spill_slot(spill: &Mutex<Option<Spill>>) -> std::sync::MutexGuard<'_, Option<Spill>> {
    spill.lock().unwrap_or_else(|p| p.into_inner())
}

/// Encodes a `len`-byte message (over the inline limit, at most
/// [`SPILL_MAX`]) straight into the spill file in `spill` with `fill`,
/// which writes to the payload's start, then sends its announcement: the
/// payload goes from the caller's memory into the file, with no frame
/// buffer between. `Ok(Err)` if the value does not encode, or encodes to
/// other than `len` bytes (`differently`): nothing is announced, and the
/// bytes written are no message's. An error from the send (`WouldBlock`
/// when the socket has no room) leaves nothing announced either.
pub(crate) fn send_with(
    fd: BorrowedFd<'_>,
    spill: &Mutex<Option<Spill>>,
    len: usize,
    fill: impl FnOnce(&mut dyn io::Write) -> Result<()>,
    differently: impl FnOnce() -> Error,
) -> io::Result<Result<()>> {
    let announced = u32::try_from(len)
        .ok()
        .filter(|_| len <= SPILL_MAX)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a spill file's message"))?;
    let mut slot = spill_slot(spill);
    let file = Spill::ready(&mut slot, len)?;
    let mut w = Slot::new(&file.region, SPILL_AT, len);
    match (fill(&mut w), w.written()) {
        (Ok(()), CmpOrdering::Equal) => {}
        (Ok(()), _) | (Err(_), CmpOrdering::Greater) => return Ok(Err(differently())),
        (Err(e), _) => return Ok(Err(e)),
    }
    file.announce(fd, announced, &[])?;
    Ok(Ok(()))
}

/// Sends `payload` out of line on the message socket `fd`: a memfd holding
/// it (the spill file in `spill` up to [`SPILL_MAX`], a sealed one of its
/// own above) goes first among the descriptors, the message's own after it.
pub(crate) fn send(
    fd: BorrowedFd<'_>,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
    spill: &Mutex<Option<Spill>>,
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
    if (1..=SPILL_MAX).contains(&payload.len()) {
        let mut slot = spill_slot(spill);
        let file = Spill::ready(&mut slot, payload.len())?;
        file.region.write(SPILL_AT, payload);
        file.announce(fd, len, fds)?;
        return Ok(payload.len());
    }
    // The empty message needs no memfd: its announcement is all of it.
    let memfd = (len > 0)
        .then(|| sys::shm::memfd_with(payload))
        .transpose()?;
    // (The empty message allocates nothing: no list of descriptors unless
    // a memfd leads it.)
    let all: Vec<BorrowedFd<'_>>;
    let all = match &memfd {
        Some(m) => {
            all = led_by(m.as_fd(), fds);
            &all[..]
        }
        None => fds,
    };
    let sent = sys::send(fd, &[IoSlice::new(&announcement(len))], all, true)?;
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
    cache: &mut Option<Mapped>,
) -> Result<(Option<Pieces>, usize, Vec<OwnedFd>)> {
    let bad = |what: String| {
        Error::new(
            ErrorKind::Decode,
            format!("a malformed out-of-line message (wire format section 3): {what}"),
        )
    };
    let spilled = match announcement.get(HEADER..) {
        Some([]) => false,
        Some([KIND_SPILL]) => true,
        _ => {
            return Err(bad(format!(
                "a datagram that starts with the marker must be {HEADER} bytes, or \
                 {SPILL_HEADER} ending in {KIND_SPILL}; this one has {} ({:02X?})",
                announcement.len(),
                &announcement[..announcement.len().min(16)]
            )));
        }
    };
    let len = u32::from_be_bytes(
        announcement[MARKER.len()..HEADER]
            .try_into()
            .expect("4 bytes"),
    );
    let len = len as usize;
    if len == 0 && !spilled {
        return Ok((None, 0, fds));
    }
    if fds.is_empty() {
        return Err(bad("the announcement came without its memfd".into()));
    }
    let memfd = fds.remove(0);
    let too_large = || {
        Error::too_large(
            len as u64,
            max,
            "the message was discarded; raise the receiver's `max_frame`",
        )
    };
    let read = if spilled {
        let region = mapped(cache, memfd).map_err(|e| bad(e.to_string()))?;
        let read = if len > max {
            Err(too_large())
        } else if region.len() < SPILL_AT + len {
            Err(bad(format!(
                "the spill file has {} bytes, fewer than the {} announced",
                region.len(),
                SPILL_AT + len
            )))
        } else {
            Ok(crate::shm::copy_out(region, SPILL_AT, len, out, split))
        };
        // Read (or refused): the sender may write the file again once
        // every message in it is counted.
        region.u64_at(0).fetch_add(1, Ordering::Release);
        read
    } else if len > max {
        Err(too_large())
    } else {
        read_memfd(&memfd, len, out, split).map_err(|e| bad(e.to_string()))
    };
    Ok((read?, len, fds))
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
