//! The shared-memory specifics of a [`Conn`]: its rings, their readiness
//! descriptors, out-of-line messages, and how a ring's peer is watched.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::{Conn, Flavor, Waited};
use crate::channel::gate::{Gate, Pass, Wait};
use crate::error::Error;
use crate::shm;
use crate::sys::{self, Interest};

/// One ring of a shared-memory end as it travels: copies of its memfd, of
/// its two readiness eventfds and of this end's spill file, if it has one
/// (opaque to the layers above).
pub(crate) struct RingParts {
    pub(crate) memfd: OwnedFd,
    pub(crate) data: OwnedFd,
    pub(crate) space: OwnedFd,
    pub(crate) spill: Option<OwnedFd>,
}

fn ring_parts(
    region: &sys::shm::Region,
    efds: &shm::Efds,
    spill: Option<&sys::shm::Region>,
) -> io::Result<RingParts> {
    let efds = efds.try_clone()?;
    Ok(RingParts {
        memfd: region.fd().try_clone()?,
        data: efds.data,
        space: efds.space,
        spill: spill.map(|s| s.fd().try_clone()).transpose()?,
    })
}

/// A shared-memory end as it travels: its writing and reading rings, and
/// their capacity.
pub(crate) type ShmParts = (Option<RingParts>, Option<RingParts>, usize);

/// A shared-memory end's rings: one to write, one to read (either may be
/// absent on a one-way channel).
#[derive(Debug)]
pub(super) struct ShmRings {
    pub(super) tx: Option<Gate<shm::Writer>>,
    pub(super) rx: Option<Gate<shm::Reader>>,
    /// The writing ring's `space` eventfd (a copy, reachable without the
    /// lock): the sender's readiness descriptor.
    pub(super) tx_space: Option<OwnedFd>,
    /// The receiver's readiness descriptor: an epoll instance over the
    /// reading ring's `data` eventfd and the side socket's hang-up, so that
    /// a vanished writer wakes a poller too.
    pub(super) rx_ready: Option<OwnedFd>,
    /// When the writer last checked that its reader lives
    /// ([`sys::coarse_ns`]).
    checked_alive: std::sync::atomic::AtomicU64,
}

/// Takes a ring's lock: the gate every channel end uses (one word taken by
/// a compare-and-swap; `std::sync::Mutex`, with its poisoning, cost a
/// message some 30 more instructions at each ring). No ring operation
/// calls out of this module while it holds one, so a thread never finds
/// the lock held by itself.
#[inline]
pub(super) fn ring<T>(m: &Gate<T>) -> Pass<'_, T> {
    m.enter(Wait::Block)
        .expect("a shared-memory ring is never locked twice by one thread")
}

pub(super) fn ring_error(e: shm::RingError) -> io::Error {
    match e {
        shm::RingError::Corrupt(why) => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the shared-memory ring is corrupt: {why}"),
        ),
        // The sender reports EMSGSIZE as FrameTooLarge, with the ring's limit.
        shm::RingError::TooLarge { .. } => rustix::io::Errno::MSGSIZE.into(),
        shm::RingError::ReaderGone => io::ErrorKind::BrokenPipe.into(),
        // Closed here (`Conn::shutdown_write`): the channel names the
        // cause (`Conn::own_write_shut`).
        shm::RingError::Closed => io::ErrorKind::BrokenPipe.into(),
    }
}

impl Conn {
    /// A shared-memory end: `side` is this end of a SEQPACKET socket pair
    /// whose other end the peer holds.
    pub(crate) fn shm(
        side: OwnedFd,
        tx: Option<shm::Writer>,
        rx: Option<shm::Reader>,
    ) -> io::Result<Conn> {
        let tx_space = match &tx {
            Some(w) => Some(w.efds().space.try_clone()?),
            None => None,
        };
        let rx_ready = match &rx {
            Some(r) => Some(sys::ready::either(r.efds().data.as_fd(), side.as_fd())?),
            None => None,
        };
        let rings = ShmRings {
            tx: tx.map(Gate::new),
            rx: rx.map(Gate::new),
            tx_space,
            rx_ready,
            checked_alive: std::sync::atomic::AtomicU64::new(0),
        };
        Ok(Conn::with(side, Flavor::Shm(rings)))
    }

    /// A receiver found nothing and will wait in poll(2) or epoll: from now
    /// on its readiness descriptor turns readable when a message comes.
    /// `true` if one is there already. Nothing to do but on shared memory,
    /// whose descriptor is otherwise never signalled.
    pub(crate) fn arm_read(&self) -> bool {
        match self.rings().and_then(|s| s.rx.as_ref()) {
            Some(rx) => ring(rx).arm(),
            None => false,
        }
    }

    /// A sender found the ring full and will wait in poll(2) or epoll: its
    /// readiness descriptor turns writable when room comes.
    pub(crate) fn arm_write(&self) -> bool {
        match self.rings().and_then(|s| s.tx.as_ref()) {
            Some(tx) => ring(tx).arm(),
            None => false,
        }
    }

    /// What a receiver's `as_fd` gives: the descriptor that turns readable
    /// when a message (or the end) is there. The socket or pipe itself, or
    /// for shared memory its epoll instance (see [`ShmRings`]).
    pub(crate) fn recv_ready_fd(&self) -> BorrowedFd<'_> {
        match self.rings().and_then(|s| s.rx_ready.as_ref()) {
            Some(ep) => ep.as_fd(),
            None => self.fd.as_fd(),
        }
    }

    /// What a sender's `as_fd` gives: the descriptor that turns writable
    /// when there is room. For shared memory, the writing ring's `space`
    /// eventfd.
    pub(crate) fn send_ready_fd(&self) -> BorrowedFd<'_> {
        match self.rings().and_then(|s| s.tx_space.as_ref()) {
            Some(space) => space.as_fd(),
            None => self.fd.as_fd(),
        }
    }

    /// Whether the peer still holds its end of the side socket (shared
    /// memory has no end-of-file of its own).
    pub(super) fn peer_alive(&self) -> bool {
        // The side socket carries out-of-line memfds too: only a hang-up
        // means the peer is gone.
        !matches!(sys::hung_up(self.fd.as_fd()), Ok(true))
            && self.peer.get().is_none_or(|p| {
                let mut ready = [false];
                !matches!(
                    sys::poll(
                        &[(p.pidfd(), Interest::Read)],
                        Some(Instant::now()),
                        &mut ready
                    ),
                    Ok(true)
                )
            })
    }

    /// Whether the process at the other end of a shared-memory end is gone
    /// (see `peer_alive`).
    pub(crate) fn shm_peer_gone(&self) -> bool {
        self.rings().is_some() && !self.peer_alive()
    }

    /// Whether a shared-memory reader's process is gone, checked at most
    /// once a millisecond (on the coarse clock: once a tick, 1 to 4 ms).
    pub(super) fn reader_died(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(s) = self.rings() else { return false };
        let now = sys::coarse_ns();
        if now.saturating_sub(s.checked_alive.load(Relaxed)) < 1_000_000 {
            return false;
        }
        s.checked_alive.store(now, Relaxed);
        !self.peer_alive()
    }

    /// Takes the next shared-memory message into `out` (as
    /// [`Record::Inline`](shm::Record::Inline), or with `split` perhaps as a
    /// [`Record::Split`](shm::Record::Split)); `Ok(None)` if none is there,
    /// `Err(UnexpectedEof)`-free: the caller decides about ends.
    pub(crate) fn shm_read(
        &self,
        out: &mut Vec<u8>,
        limit: usize,
        split: bool,
    ) -> io::Result<Option<shm::Record>> {
        let mut rx = ring(self.shm_rx()?);
        let record = rx.try_read(out, split).map_err(ring_error)?;
        match record {
            Some(shm::Record::OutOfLine(len, outside)) => {
                let read = self.receive_out_of_line(&mut rx, out, len, limit, split, outside);
                if outside != shm::Outside::Once {
                    // Read or refused, the writer may write the file again.
                    rx.spill_read();
                }
                read.map(Some)
            }
            other => Ok(other),
        }
    }

    /// The payload of an out-of-line record (`outside` says where): the
    /// memfd the writer sent over the side socket just before publishing
    /// it, read (only if sealed and exactly `len` bytes long) into `out`,
    /// or in two pieces ([`read_memfd`](super::large::read_memfd)); or the
    /// start of the writer's spill file, which such a memfd may have
    /// become.
    fn receive_out_of_line(
        &self,
        rx: &mut shm::Reader,
        out: &mut Vec<u8>,
        len: usize,
        limit: usize,
        split: bool,
        outside: shm::Outside,
    ) -> io::Result<shm::Record> {
        let once = match outside {
            shm::Outside::Once => Some(self.side_memfd()?),
            shm::Outside::NewSpill => {
                // The old spill file is done with: the writer moved on (and
                // if the new one is refused, no later message is read from
                // the old).
                rx.set_spill(None);
                let fd = self.side_memfd()?;
                rx.set_spill(Some(sys::shm::Region::open_whole(fd, shm::SPILL_MAX)?));
                None
            }
            shm::Outside::Spill => None,
        };
        if len > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("an out-of-line message of {len} bytes exceeds the {limit}-byte limit"),
            ));
        }
        match once {
            Some(fd) => Ok(match super::large::read_memfd(&fd, len, out, split)? {
                Some(pieces) => shm::Record::Split(pieces),
                None => shm::Record::Inline(len),
            }),
            None => rx.read_spill(len, out, split).map_err(ring_error),
        }
    }

    /// The memfd the writer sent over the side socket with an out-of-line
    /// record.
    fn side_memfd(&self) -> io::Result<OwnedFd> {
        let mut fds = Vec::new();
        let mut byte = [0u8; 1];
        let got = sys::recv(self.fd.as_fd(), &mut byte, &mut fds, true);
        let fd = match got {
            Ok(_) => fds.pop(),
            Err(e) if sys::would_block(&e) => None,
            Err(e) => return Err(e),
        };
        fd.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the shared-memory ring announced an out-of-line message that did not come",
            )
        })
    }

    /// Writes one message into the ring (or out of line, if larger than the
    /// ring carries inline).
    ///
    /// (It keeps its own copy-in beside `shm_write_with`'s, with the same
    /// outcomes: going through that method's closure and `io::Write` costs
    /// a 64 B message about 125 instructions more, by
    /// `scripts/instructions`.)
    pub(super) fn shm_write(&self, rings: &ShmRings, bytes: &[u8]) -> io::Result<usize> {
        let Some(tx) = &rings.tx else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "this end does not send",
            ));
        };
        let mut w = ring(tx);
        if bytes.len() > w.max_message() {
            drop(w);
            return self.write_out_of_line(bytes);
        }
        // A reader that closed is seen at once (a flag in the ring); one
        // that was killed, through the side socket: checked at most once a
        // millisecond, since it costs a system call, and before the message
        // is published, never after: a reader that takes it and closes at
        // once has it, and the send succeeded.
        if self.reader_died() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        match w.try_write(bytes) {
            Ok(true) => Ok(bytes.len()),
            Ok(false) if !self.peer_alive() => Err(io::ErrorKind::BrokenPipe.into()),
            Ok(false) => Err(io::ErrorKind::WouldBlock.into()),
            Err(e) => Err(ring_error(e)),
        }
    }

    /// Writes a message of `len` bytes that `fill` encodes in place in the
    /// ring (no copy before the ring: `channel::sender::direct`).
    /// `Ok(Some(r))` once `fill` ran: the message is published only if `r`
    /// is `Ok` and `fill` wrote exactly `len` bytes (else `Ok(Some(Err))`,
    /// nothing published, with `differently`'s error when the length was
    /// not kept). A message too large for the ring goes into a spill file
    /// (`shm`) the same way; `Ok(None)` if it is too large for that too (it
    /// travels out of line, copied). `WouldBlock` while the ring is full.
    pub(crate) fn shm_write_with(
        &self,
        len: usize,
        fill: impl FnOnce(&mut shm::Slot<'_>) -> crate::Result<()>,
        differently: impl FnOnce() -> Error,
    ) -> io::Result<Option<crate::Result<()>>> {
        let Some(tx) = self.rings().and_then(|r| r.tx.as_ref()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "this end does not send",
            ));
        };
        use std::cmp::Ordering::{Equal, Greater};
        let mut w = ring(tx);
        if len > shm::SPILL_MAX {
            return Ok(None);
        }
        if self.reader_died() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if len > w.max_message() {
            return Ok(Some(match self.spill(&mut w, len, fill)? {
                (Ok(()), Equal) => Ok(()),
                (Ok(()), _) | (Err(_), Greater) => Err(differently()),
                (Err(e), _) => Err(e),
            }));
        }
        match w.try_write_with(len, fill) {
            Ok(Some((Ok(()), Equal))) => Ok(Some(Ok(()))),
            Ok(Some((Ok(()), _) | (Err(_), Greater))) => Ok(Some(Err(differently()))),
            Ok(Some((Err(e), _))) => Ok(Some(Err(e))),
            Ok(None) if !self.peer_alive() => Err(io::ErrorKind::BrokenPipe.into()),
            Ok(None) => Err(io::ErrorKind::WouldBlock.into()),
            Err(e) => Err(ring_error(e)),
        }
    }

    /// Sends a message too large for the ring: into the spill file (see
    /// [`spill`](Conn::spill)), or above the spill limit in a sealed memfd
    /// of its own; then a payload-less record announces it.
    pub(super) fn write_out_of_line(&self, bytes: &[u8]) -> io::Result<usize> {
        let mut tx = ring(self.shm_tx()?);
        if bytes.len() <= shm::SPILL_MAX {
            let copy = |slot: &mut shm::Slot<'_>| io::Write::write_all(slot, bytes);
            let (copied, _) = self.spill(&mut tx, bytes.len(), copy)?;
            return copied.map(|()| bytes.len());
        }
        let len = u32::try_from(bytes.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a message over 4 GiB"))?;
        // The record must fit before the memfd goes: the reader takes a
        // memfd only for a record it has seen.
        if !tx.has_room(8) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let memfd = sys::shm::memfd_with(bytes)?;
        self.publish_out_of_line(&mut tx, len, shm::Outside::Once, None, Some(memfd))
    }

    /// Writes a message of `len` bytes (at most [`shm::SPILL_MAX`]) that
    /// `fill` writes in place into a spill file, once the ring has room for
    /// the record that announces it, and publishes that record if `fill`
    /// returned `Ok` having written exactly `len` bytes. What `fill`
    /// returned and wrote comes back either way.
    fn spill<E>(
        &self,
        tx: &mut shm::Writer,
        len: usize,
        fill: impl FnOnce(&mut shm::Slot<'_>) -> Result<(), E>,
    ) -> io::Result<(Result<(), E>, std::cmp::Ordering)> {
        // The record must fit before a new spill file's memfd goes: the
        // reader takes a memfd only for a record it has seen.
        if !tx.has_room(8) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let (outside, new_spill, filled) = tx.spill_with(len, fill)?;
        if let (Ok(()), std::cmp::Ordering::Equal) = &filled {
            self.publish_out_of_line(tx, len as u32, outside, new_spill, None)?;
        }
        Ok(filled)
    }

    /// Publishes the record of a message written out of line, once the
    /// ring has room for it, after the memfd it needs, if any, has gone
    /// over the side socket: a new spill file's, or a one-off's.
    fn publish_out_of_line(
        &self,
        tx: &mut shm::Writer,
        len: u32,
        outside: shm::Outside,
        new_spill: Option<sys::shm::Region>,
        once: Option<OwnedFd>,
    ) -> io::Result<usize> {
        // (The ring refuses the record of a closed writer; its file must
        // not go to the reader first.)
        if tx.closed() {
            return Err(ring_error(shm::RingError::Closed));
        }
        if let Some(fd) = new_spill.as_ref().map(|r| r.fd()).or(once.as_ref()) {
            sys::send(self.fd.as_fd(), &[IoSlice::new(&[0])], &[fd.as_fd()], true)?;
        }
        match tx.try_write_out_of_line(len, outside, new_spill) {
            Ok(true) => Ok(len as usize),
            Ok(false) => Err(io::Error::other("the ring lost room it had")),
            Err(e) => Err(ring_error(e)),
        }
    }

    /// Whether a shared-memory message waits, or the ring's end does (for
    /// `Select`, before it arms the ring's readiness descriptor).
    pub(crate) fn shm_ready(&self) -> bool {
        self.rings().and_then(|s| s.rx.as_ref()).is_some_and(|rx| {
            let rx = ring(rx);
            rx.has_message() || rx.writer_closed()
        })
    }

    /// Whether the shared-memory writer said it is done (a writer that died
    /// without saying so is noticed by the wait).
    pub(crate) fn shm_writer_closed(&self) -> bool {
        self.rings()
            .and_then(|s| s.rx.as_ref())
            .is_some_and(|rx| ring(rx).writer_closed())
    }

    pub(super) fn shm_rx(&self) -> io::Result<&Gate<shm::Reader>> {
        self.rings()
            .and_then(|s| s.rx.as_ref())
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "this end does not receive"))
    }

    pub(super) fn shm_tx(&self) -> io::Result<&Gate<shm::Writer>> {
        self.rings()
            .and_then(|s| s.tx.as_ref())
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "this end does not send"))
    }

    /// For sending a shared-memory end in a message: copies of the memfds
    /// of its writing and reading rings, and the rings' capacity.
    pub(crate) fn shm_parts(&self) -> io::Result<Option<ShmParts>> {
        let Some(s) = self.rings() else {
            return Ok(None);
        };
        fn parts(
            region: &sys::shm::Region,
            efds: &shm::Efds,
            spill: Option<&sys::shm::Region>,
        ) -> io::Result<(usize, RingParts)> {
            Ok((region.len() - shm::DATA, ring_parts(region, efds, spill)?))
        }
        let tx = s.tx.as_ref().map(|tx| {
            let w = ring(tx);
            parts(w.region(), w.efds(), w.spill())
        });
        let rx = s.rx.as_ref().map(|rx| {
            let r = ring(rx);
            parts(r.region(), r.efds(), r.spill())
        });
        let (tx, rx) = (tx.transpose()?, rx.transpose()?);
        // Both rings of an end have the same capacity.
        let cap = rx.as_ref().or(tx.as_ref()).map_or(0, |(cap, _)| *cap);
        Ok(Some((tx.map(|(_, p)| p), rx.map(|(_, p)| p), cap)))
    }

    /// A shared-memory end received in a message: maps the rings, checking
    /// their seals, size and header.
    pub(crate) fn from_shm_parts(
        side: OwnedFd,
        tx: Option<RingParts>,
        rx: Option<RingParts>,
        cap: usize,
    ) -> io::Result<Conn> {
        let cap = shm::capacity_for(cap);
        let len = shm::region_len(cap);
        type Opened = (sys::shm::Region, usize, shm::Efds, Option<sys::shm::Region>);
        let open = |p: RingParts| -> io::Result<Opened> {
            let efds = shm::Efds {
                data: p.data,
                space: p.space,
            };
            let region = sys::shm::Region::open(p.memfd, len)?;
            let checked = shm::check_header(&region)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")))?;
            let spill = p
                .spill
                .map(|fd| sys::shm::Region::open_whole(fd, shm::SPILL_MAX))
                .transpose()?;
            Ok((region, checked, efds, spill))
        };
        let tx = tx.map(open).transpose()?.map(|(r, c, e, spill)| {
            let mut w = shm::Writer::new(r, c, shm::ShmWait::Adaptive, e);
            w.set_spill(spill);
            w
        });
        let rx = rx.map(open).transpose()?.map(|(r, c, e, spill)| {
            let mut r = shm::Reader::new(r, c, shm::ShmWait::Adaptive, e);
            r.set_spill(spill);
            r
        });
        Conn::shm(side, tx, rx)
    }

    pub(super) fn shm_wait(
        &self,
        rings: &ShmRings,
        interest: Interest,
        deadline: Option<Instant>,
    ) -> io::Result<Waited> {
        let alive = || self.peer_alive();
        let missing = || io::Error::new(io::ErrorKind::InvalidInput, "this end has no such ring");
        let waited = match interest {
            // A ring's frames are never left half-written: nothing to
            // write while waiting to read. (Each ring keeps its own spin
            // budget.)
            Interest::Read | Interest::Either => {
                ring(rings.rx.as_ref().ok_or_else(missing)?).wait(deadline, &alive)
            }
            Interest::Write => ring(rings.tx.as_ref().ok_or_else(missing)?).wait(deadline, &alive),
        };
        Ok(match waited {
            shm::Waited::Ready => Waited::Ready,
            shm::Waited::TimedOut => Waited::TimedOut,
            shm::Waited::PeerGone => Waited::PeerExited(self.shm_gone(Duration::from_secs(5))?),
        })
    }

    /// Why the process at the other end of a shared-memory end is gone: a
    /// supervised child whose exit status came within `within` is
    /// `PeerExited` with it (as every transport's wait reports the death);
    /// otherwise `Disconnected`, the side socket's hang-up (a child may
    /// close its end and live on).
    pub(crate) fn shm_gone(&self, within: Duration) -> io::Result<Error> {
        if let Some(peer) = self.peer.get()
            && let Some(status) = peer.exit_status(Some(Instant::now() + within))?
        {
            return Ok(peer.exited_error(Some(status)));
        }
        Ok(Error::disconnected(
            "the process at the other end of the shared-memory ring is gone",
        ))
    }
}
