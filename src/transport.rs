//! The one place where the kinds of connection differ.
//!
//! A channel holds a [`Conn`]: a descriptor and the [`Transport`] it is. Every
//! difference between a pipe, a stream socket and a message socket is a
//! `match` in this file; the channel code above it is the same for all.
//! Channel I/O never blocks in the kernel: it tries, and on `WouldBlock` waits
//! in poll(2) with the caller's deadline. Sockets get `MSG_DONTWAIT` per call;
//! a pipe has no such flag, so a pipe end owned by a channel is `O_NONBLOCK`.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::process::ProcState;
use crate::shm;
use crate::sys::{self, FdKind, Interest, SockType};

/// What a channel's descriptor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Pipe,
    Stream,
    Datagram,
    SeqPacket,
    /// Shared-memory rings; the descriptor is a SEQPACKET socket that only
    /// tells each side whether the other is still there.
    Shm,
    /// A TCP connection: frames as on a stream, plus heartbeat frames that
    /// tell each side the other is alive.
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    Tcp,
}

impl Transport {
    /// Byte streams carry length-prefixed frames; message sockets carry one
    /// payload per datagram.
    pub(crate) fn framed(self) -> bool {
        matches!(self, Transport::Pipe | Transport::Stream | Transport::Tcp)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Transport::Pipe => "pipe",
            Transport::Stream => "stream socket",
            Transport::Datagram => "datagram socket",
            Transport::SeqPacket => "seqpacket socket",
            Transport::Shm => "shared-memory ring",
            Transport::Tcp => "TCP connection",
        }
    }
}

/// A descriptor a channel reads or writes, with its transport.
#[derive(Debug)]
pub(crate) struct Conn {
    fd: OwnedFd,
    transport: Transport,
    /// The process at the other end, once the channel supervises it.
    peer: OnceLock<Arc<ProcState>>,
    /// Whether a copy of this end went elsewhere (see [`crate::ends`]).
    shared: crate::ends::Shared,
    /// The rings of a shared-memory channel.
    shm: Option<ShmRings>,
    /// When a shared-memory writer last checked that its reader lives
    /// (nanoseconds since `epoch`).
    checked_alive: std::sync::atomic::AtomicU64,
    epoch: Instant,
    /// A TCP connection's record of when the peer was last heard from.
    liveness: Option<Liveness>,
}

/// When the peer of a TCP connection last showed a sign of life, and
/// whether it has been declared gone for its silence.
#[derive(Debug)]
pub(crate) struct Liveness {
    /// The peer's heartbeat interval: silence for three of them ends the
    /// connection.
    pub(crate) interval: Duration,
    /// Nanoseconds since the connection's epoch.
    last_heard: std::sync::atomic::AtomicU64,
    /// The peer ended its sending side: no more heartbeats will come.
    ended: std::sync::atomic::AtomicBool,
    /// The connection was shut down because the peer fell silent.
    silent: std::sync::atomic::AtomicBool,
    /// How long closing may wait for what we sent to be acknowledged.
    linger: Duration,
}

/// One ring of a shared-memory end as it travels: a copy of its memfd and
/// of its two readiness eventfds.
pub(crate) type RingParts = (OwnedFd, shm::Efds);

/// A shared-memory end as it travels: its writing and reading rings, and
/// their capacity.
pub(crate) type ShmParts = (Option<RingParts>, Option<RingParts>, usize);

/// A shared-memory end's rings: one to write, one to read (either may be
/// absent on a one-way channel).
#[derive(Debug)]
struct ShmRings {
    tx: Option<std::sync::Mutex<shm::Writer>>,
    rx: Option<std::sync::Mutex<shm::Reader>>,
    /// The writing ring's `space` eventfd (a copy, reachable without the
    /// lock): the sender's readiness descriptor.
    tx_space: Option<OwnedFd>,
    /// The receiver's readiness descriptor: an epoll instance over the
    /// reading ring's `data` eventfd and the side socket's hang-up, so that
    /// a vanished writer wakes a poller too.
    rx_ready: Option<OwnedFd>,
}

fn ring<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn ring_error(e: shm::RingError) -> io::Error {
    match e {
        shm::RingError::Corrupt(why) => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the shared-memory ring is corrupt: {why}"),
        ),
        // The sender reports EMSGSIZE as FrameTooLarge, with the ring's limit.
        shm::RingError::TooLarge { .. } => rustix::io::Errno::MSGSIZE.into(),
        shm::RingError::ReaderGone => io::ErrorKind::BrokenPipe.into(),
    }
}

/// What a wait for readiness ended with.
#[derive(Debug)]
pub(crate) enum Waited {
    Ready,
    TimedOut,
    /// The supervised peer process is gone and the descriptor is not ready.
    PeerExited(Error),
}

/// Which way a channel end will use its descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Use {
    Send,
    Recv,
    Both,
}

impl Conn {
    /// Adopts `fd` for a channel, checking that it is a pipe or Unix socket
    /// open in the direction the channel needs.
    pub(crate) fn new(fd: OwnedFd, usage: Use) -> Result<Conn> {
        let ctx = "inspecting the channel's descriptor";
        let transport = match sys::fd_kind(fd.as_fd()).map_err(|e| Error::io(ctx, e))? {
            FdKind::Pipe => Transport::Pipe,
            FdKind::Socket(SockType::Stream) => Transport::Stream,
            FdKind::Socket(SockType::Datagram) => Transport::Datagram,
            FdKind::Socket(SockType::SeqPacket) => Transport::SeqPacket,
            FdKind::Other => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "a channel needs a pipe or a Unix socket; this descriptor is neither",
                ));
            }
        };
        let (readable, writable) = sys::access_mode(fd.as_fd()).map_err(|e| Error::io(ctx, e))?;
        let ok = match usage {
            Use::Send => writable,
            Use::Recv => readable,
            Use::Both => readable && writable && transport != Transport::Pipe,
        };
        if !ok {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "this {} end cannot be used to {}",
                    transport.name(),
                    match usage {
                        Use::Send => "send",
                        Use::Recv => "receive",
                        Use::Both => "send and receive (a two-way channel needs a socket)",
                    }
                ),
            ));
        }
        match transport {
            // Only a write end needs O_NONBLOCK (try_send and deadlines must
            // not block inside write(2)); a read end stays blocking, so that
            // a plain recv is one read(2), and waits with a deadline poll
            // first.
            Transport::Pipe => sys::set_nonblocking(fd.as_fd(), usage == Use::Send),
            // Only SEQPACKET needs credentials: they tell an empty message
            // from end-of-file, which a datagram socket does not have.
            Transport::SeqPacket => sys::enable_passcred(fd.as_fd()),
            Transport::Datagram => Ok(()),
            Transport::Stream | Transport::Shm | Transport::Tcp => Ok(()),
        }
        .map_err(|e| Error::io("preparing the channel's descriptor", e))?;
        Ok(Conn::with(fd, transport))
    }

    /// The fields every kind of connection starts with.
    fn with(fd: OwnedFd, transport: Transport) -> Conn {
        let shared = crate::ends::Shared::register(fd.as_fd());
        Conn {
            fd,
            transport,
            peer: OnceLock::new(),
            shared,
            shm: None,
            checked_alive: std::sync::atomic::AtomicU64::new(0),
            epoch: Instant::now(),
            liveness: None,
        }
    }

    /// A TCP connection (already authenticated) whose peer sends heartbeats
    /// every `interval`.
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    pub(crate) fn tcp(fd: OwnedFd, interval: Duration, linger: Duration) -> Conn {
        let mut conn = Conn::with(fd, Transport::Tcp);
        conn.liveness = Some(Liveness {
            linger,
            interval,
            last_heard: std::sync::atomic::AtomicU64::new(0),
            ended: std::sync::atomic::AtomicBool::new(false),
            silent: std::sync::atomic::AtomicBool::new(false),
        });
        conn
    }

    /// Notes that bytes (or the end) came from the peer.
    fn heard(&self, got: &io::Result<sys::Received>) {
        use std::sync::atomic::Ordering::Relaxed;
        if let (Some(l), Ok(r)) = (&self.liveness, got) {
            l.last_heard
                .store(self.epoch.elapsed().as_nanos() as u64, Relaxed);
            if r.len == 0 {
                l.ended.store(true, Relaxed);
            }
        }
    }

    /// For a TCP connection's watcher, every quarter of the peer's
    /// heartbeat interval: whether the peer has been silent for 2¾
    /// intervals (so that, checked that often, silence is reported within
    /// three), counting bytes that wait unread in the socket (`queued`, the
    /// watcher's last reading of them) as a sign of life. A silent peer is
    /// declared gone: the connection is shut down, which wakes every wait
    /// on it, and its errors say why.
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    pub(crate) fn check_silence(&self, queued: &mut u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(l) = &self.liveness else {
            return;
        };
        let now = self.epoch.elapsed().as_nanos() as u64;
        // The peer shut down its sending side (or the connection broke):
        // no heartbeat will come, whether or not anyone reads here.
        if matches!(sys::hung_up(self.fd.as_fd()), Ok(true)) {
            l.ended.store(true, Relaxed);
        }
        let inq = sys::unread_bytes(self.fd.as_fd()).unwrap_or(0);
        if inq != *queued {
            *queued = inq;
            l.last_heard.store(now, Relaxed);
        }
        if l.ended.load(Relaxed) || l.silent.load(Relaxed) {
            return;
        }
        let quiet = Duration::from_nanos(now.saturating_sub(l.last_heard.load(Relaxed)));
        if quiet >= l.interval * 11 / 4 {
            l.silent.store(true, Relaxed);
            let _ = sys::shutdown(self.fd.as_fd(), std::net::Shutdown::Both);
        }
    }

    /// A shared-memory end: `side` is this end of a SEQPACKET socket pair
    /// whose other end the peer holds.
    pub(crate) fn shm(
        side: OwnedFd,
        tx: Option<shm::Writer>,
        rx: Option<shm::Reader>,
    ) -> io::Result<Conn> {
        let mut conn = Conn::with(side, Transport::Shm);
        let tx_space = match &tx {
            Some(w) => Some(w.efds().space.try_clone()?),
            None => None,
        };
        let rx_ready = match &rx {
            Some(r) => Some(sys::ready::either(r.efds().data.as_fd(), conn.fd.as_fd())?),
            None => None,
        };
        conn.shm = Some(ShmRings {
            tx: tx.map(std::sync::Mutex::new),
            rx: rx.map(std::sync::Mutex::new),
            tx_space,
            rx_ready,
        });
        Ok(conn)
    }

    /// A receiver found nothing and will wait in poll(2) or epoll: from now
    /// on its readiness descriptor turns readable when a message comes.
    /// `true` if one is there already. Nothing to do but on shared memory,
    /// whose descriptor is otherwise never signalled.
    pub(crate) fn arm_read(&self) -> bool {
        match self.shm.as_ref().and_then(|s| s.rx.as_ref()) {
            Some(rx) => ring(rx).arm(),
            None => false,
        }
    }

    /// A sender found the ring full and will wait in poll(2) or epoll: its
    /// readiness descriptor turns writable when room comes.
    pub(crate) fn arm_write(&self) -> bool {
        match self.shm.as_ref().and_then(|s| s.tx.as_ref()) {
            Some(tx) => ring(tx).arm(),
            None => false,
        }
    }

    /// What a receiver's `as_fd` gives: the descriptor that turns readable
    /// when a message (or the end) is there. The socket or pipe itself, or
    /// for shared memory its epoll instance (see [`ShmRings`]).
    pub(crate) fn recv_ready_fd(&self) -> BorrowedFd<'_> {
        match self.shm.as_ref().and_then(|s| s.rx_ready.as_ref()) {
            Some(ep) => ep.as_fd(),
            None => self.fd.as_fd(),
        }
    }

    /// What a sender's `as_fd` gives: the descriptor that turns writable
    /// when there is room. For shared memory, the writing ring's `space`
    /// eventfd.
    pub(crate) fn send_ready_fd(&self) -> BorrowedFd<'_> {
        match self.shm.as_ref().and_then(|s| s.tx_space.as_ref()) {
            Some(space) => space.as_fd(),
            None => self.fd.as_fd(),
        }
    }

    /// Whether the peer still holds its end of the side socket (shared
    /// memory has no end-of-file of its own).
    fn peer_alive(&self) -> bool {
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
        self.transport == Transport::Shm && !self.peer_alive()
    }

    /// The largest message a ring carries inline.
    fn message_limit_inline(&self) -> usize {
        self.shm_tx().map_or(0, |tx| ring(tx).max_message())
    }

    /// Whether a shared-memory reader's process is gone, checked at most
    /// once a millisecond.
    fn reader_died(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.epoch.elapsed().as_nanos() as u64;
        if now.saturating_sub(self.checked_alive.load(Relaxed)) < 1_000_000 {
            return false;
        }
        self.checked_alive.store(now, Relaxed);
        !self.peer_alive()
    }

    /// Takes the next shared-memory message into `out`; `Ok(None)` if none
    /// is there, `Err(UnexpectedEof)`-free: the caller decides about ends.
    pub(crate) fn shm_read(&self, out: &mut Vec<u8>, limit: usize) -> io::Result<Option<usize>> {
        let rx = self.shm_rx()?;
        let record = ring(rx).try_read(out).map_err(ring_error)?;
        match record {
            None => Ok(None),
            Some(shm::Record::Inline(len)) => Ok(Some(len)),
            Some(shm::Record::OutOfLine(len)) => {
                self.receive_out_of_line(out, len, limit).map(Some)
            }
        }
    }

    /// The payload of an out-of-line record: the memfd the writer sent over
    /// the side socket just before publishing it, read (only if sealed and
    /// exactly `len` bytes long) into `out`.
    fn receive_out_of_line(
        &self,
        out: &mut Vec<u8>,
        len: usize,
        limit: usize,
    ) -> io::Result<usize> {
        let mut fds = Vec::new();
        let mut byte = [0u8; 1];
        let got = sys::recv(self.fd.as_fd(), &mut byte, &mut fds, true);
        let fd = match got {
            Ok(_) => fds.pop(),
            Err(e) if sys::would_block(&e) => None,
            Err(e) => return Err(e),
        };
        let fd = fd.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the shared-memory ring announced an out-of-line message that did not come",
            )
        })?;
        if len > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("an out-of-line message of {len} bytes exceeds the {limit}-byte limit"),
            ));
        }
        if out.len() < len {
            out.resize(len, 0);
        }
        sys::shm::read_memfd(&fd, &mut out[..len])?;
        Ok(len)
    }

    /// Sends a message too large for the ring: a sealed memfd over the side
    /// socket, then a payload-less record that announces it.
    fn write_out_of_line(&self, bytes: &[u8]) -> io::Result<usize> {
        let mut tx = ring(self.shm_tx()?);
        let len = u32::try_from(bytes.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a message over 4 GiB"))?;
        // The record must fit before the memfd goes: the reader takes a
        // memfd only for a record it has seen.
        if !tx.has_room(8) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let memfd = sys::shm::memfd_with(bytes)?;
        let fds = [memfd.as_fd()];
        sys::send(self.fd.as_fd(), &[IoSlice::new(&[0])], &fds, true)?;
        match tx.try_write_out_of_line(len) {
            Ok(true) => Ok(bytes.len()),
            Ok(false) => Err(io::Error::other("the ring lost room it had")),
            Err(e) => Err(ring_error(e)),
        }
    }

    /// Whether a shared-memory message waits, or the ring's end does (for
    /// `Select`, before it arms the ring's readiness descriptor).
    pub(crate) fn shm_ready(&self) -> bool {
        self.shm
            .as_ref()
            .and_then(|s| s.rx.as_ref())
            .is_some_and(|rx| {
                let rx = ring(rx);
                rx.has_message() || rx.writer_closed()
            })
    }

    /// Whether the shared-memory writer said it is done (a writer that died
    /// without saying so is noticed by the wait).
    pub(crate) fn shm_writer_closed(&self) -> bool {
        self.shm
            .as_ref()
            .and_then(|s| s.rx.as_ref())
            .is_some_and(|rx| ring(rx).writer_closed())
    }

    fn shm_rx(&self) -> io::Result<&std::sync::Mutex<shm::Reader>> {
        self.shm
            .as_ref()
            .and_then(|s| s.rx.as_ref())
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "this end does not receive"))
    }

    fn shm_tx(&self) -> io::Result<&std::sync::Mutex<shm::Writer>> {
        self.shm
            .as_ref()
            .and_then(|s| s.tx.as_ref())
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "this end does not send"))
    }

    /// For sending a shared-memory end in a message: copies of the memfds
    /// of its writing and reading rings, and the rings' capacity.
    pub(crate) fn shm_parts(&self) -> io::Result<Option<ShmParts>> {
        let Some(s) = &self.shm else { return Ok(None) };
        let mut cap = 0;
        let tx = match &s.tx {
            Some(tx) => {
                let w = ring(tx);
                cap = w.region().len() - shm::DATA;
                Some((w.region().fd().try_clone()?, w.efds().try_clone()?))
            }
            None => None,
        };
        let rx = match &s.rx {
            Some(rx) => {
                let r = ring(rx);
                cap = r.region().len() - shm::DATA;
                Some((r.region().fd().try_clone()?, r.efds().try_clone()?))
            }
            None => None,
        };
        Ok(Some((tx, rx, cap)))
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
        let open = |(fd, efds): RingParts| -> io::Result<(sys::shm::Region, usize, shm::Efds)> {
            let region = sys::shm::Region::open(fd, len)?;
            let checked = shm::check_header(&region)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")))?;
            Ok((region, checked, efds))
        };
        let tx = tx
            .map(open)
            .transpose()?
            .map(|(r, c, e)| shm::Writer::new(r, c, shm::ShmWait::Adaptive, e));
        let rx = rx
            .map(open)
            .transpose()?
            .map(|(r, c, e)| shm::Reader::new(r, c, shm::ShmWait::Adaptive, e));
        Conn::shm(side, tx, rx)
    }

    /// Every descriptor this end needs, for a fork hand-over: the side
    /// socket, and the memfds behind its mappings.
    pub(crate) fn descriptors(&self, out: &mut Vec<std::os::fd::RawFd>) {
        use std::os::fd::AsRawFd;
        // (An epoll instance shared with a forked child reports for both;
        // each process uses only its own end's.)
        out.push(self.fd.as_raw_fd());
        if let Some(s) = &self.shm {
            if let Some(tx) = &s.tx {
                let w = ring(tx);
                out.push(w.region().fd().as_raw_fd());
                out.extend([w.efds().data.as_raw_fd(), w.efds().space.as_raw_fd()]);
            }
            if let Some(rx) = &s.rx {
                let r = ring(rx);
                out.push(r.region().fd().as_raw_fd());
                out.extend([r.efds().data.as_raw_fd(), r.efds().space.as_raw_fd()]);
            }
            out.extend(s.tx_space.iter().map(AsRawFd::as_raw_fd));
            out.extend(s.rx_ready.iter().map(AsRawFd::as_raw_fd));
        }
    }

    /// This end stops reading: a shared-memory writer learns it at once.
    pub(crate) fn close_read(&self) {
        if self.shared.is_shared() {
            return;
        }
        if let Some(rx) = self.shm.as_ref().and_then(|s| s.rx.as_ref()) {
            ring(rx).close();
        }
    }

    pub(crate) fn transport(&self) -> Transport {
        self.transport
    }

    /// Writes without blocking; descriptors go with the first byte.
    pub(crate) fn write(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
        let bufs = [IoSlice::new(bytes)];
        match self.transport {
            Transport::Shm if bytes.len() > self.message_limit_inline() => {
                self.write_out_of_line(bytes)
            }
            Transport::Shm => match ring(self.shm_tx()?).try_write(bytes) {
                // A reader that closed is seen at once (a flag in the ring);
                // one that was killed, through the side socket: checked at
                // most once a millisecond, since it costs a system call.
                Ok(true) if self.reader_died() => Err(io::ErrorKind::BrokenPipe.into()),
                Ok(true) => Ok(bytes.len()),
                Ok(false) if !self.peer_alive() => Err(io::ErrorKind::BrokenPipe.into()),
                Ok(false) => Err(io::ErrorKind::WouldBlock.into()),
                Err(e) => Err(ring_error(e)),
            },
            Transport::Pipe => sys::pipe_write(self.fd.as_fd(), &bufs),
            Transport::Stream | Transport::Datagram | Transport::SeqPacket | Transport::Tcp => {
                sys::send(self.fd.as_fd(), &bufs, fds, true)
            }
        }
    }

    /// Reads, adopting any descriptors that came along. Without blocking,
    /// unless `block` and the transport can: a socket that supervises no
    /// child then sleeps in recvmsg(2) itself, one system call instead of
    /// try, poll, read.
    pub(crate) fn read_maybe_blocking(
        &self,
        buf: &mut [u8],
        fds: &mut Vec<OwnedFd>,
        block: bool,
    ) -> io::Result<sys::Received> {
        if block && self.peer.get().is_none() {
            match self.transport {
                Transport::Tcp => {
                    let got = sys::recv_bytes(self.fd.as_fd(), buf, false);
                    self.heard(&got);
                    return got;
                }
                Transport::Stream | Transport::Datagram | Transport::SeqPacket => {
                    return sys::recv(self.fd.as_fd(), buf, fds, false);
                }
                Transport::Pipe => {
                    return sys::read(self.fd.as_fd(), buf).map(sys::Received::plain);
                }
                Transport::Shm => {}
            }
        }
        self.read(buf, fds)
    }

    /// Reads a pipe's (blocking) read end without blocking: only once poll
    /// says bytes or the end are there. (Two processes reading one pipe
    /// could still race for them; procwire gives each reader its own.)
    fn pipe_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut ready = [false];
        if !sys::poll(
            &[(self.fd.as_fd(), Interest::Read)],
            Some(Instant::now()),
            &mut ready,
        )? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        sys::read(self.fd.as_fd(), buf)
    }

    /// Reads without blocking, adopting any descriptors that came along.
    pub(crate) fn read(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<sys::Received> {
        match self.transport {
            Transport::Pipe => self.pipe_read(buf).map(sys::Received::plain),
            Transport::Stream | Transport::Datagram | Transport::SeqPacket => {
                sys::recv(self.fd.as_fd(), buf, fds, true)
            }
            Transport::Tcp => {
                let got = sys::recv_bytes(self.fd.as_fd(), buf, true);
                self.heard(&got);
                got
            }
            Transport::Shm => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "shared memory is read with shm_read",
            )),
        }
    }

    /// The most one message may carry on this transport, if it has a limit
    /// of its own.
    pub(crate) fn message_limit(&self) -> Option<usize> {
        match self.transport {
            Transport::Datagram | Transport::SeqPacket => sys::max_datagram(self.fd.as_fd()).ok(),
            // Larger messages travel out of line: no limit of its own.
            Transport::Shm => None,
            Transport::Pipe | Transport::Stream | Transport::Tcp => None,
        }
    }

    /// Whether descriptors can travel on this transport.
    pub(crate) fn carries_fds(&self) -> bool {
        !matches!(
            self.transport,
            Transport::Pipe | Transport::Shm | Transport::Tcp
        )
    }

    /// Watches `peer`: waits on this channel end from now on also end when
    /// it exits. A channel watches one process; later calls are ignored.
    pub(crate) fn supervise(&self, peer: Arc<ProcState>) {
        let _ = self.peer.set(peer);
    }

    pub(crate) fn peer(&self) -> Option<&Arc<ProcState>> {
        self.peer.get()
    }

    /// Waits until the descriptor is ready, the deadline passes, or the
    /// supervised peer exits, whichever comes first. Readiness wins over the
    /// peer's exit, so that what it sent before dying is read first.
    pub(crate) fn wait(&self, interest: Interest, deadline: Option<Instant>) -> io::Result<Waited> {
        if self.transport == Transport::Shm {
            return self.shm_wait(interest, deadline);
        }
        let Some(peer) = self.peer.get() else {
            let mut ready = [false];
            let hit = sys::poll(&[(self.fd.as_fd(), interest)], deadline, &mut ready)?;
            return Ok(if hit { Waited::Ready } else { Waited::TimedOut });
        };
        let mut ready = [false, false];
        let fds = [(self.fd.as_fd(), interest), (peer.pidfd(), Interest::Read)];
        if !sys::poll(&fds, deadline, &mut ready)? {
            return Ok(Waited::TimedOut);
        }
        if ready[0] || !ready[1] {
            return Ok(Waited::Ready);
        }
        let status = peer.exit_status(Some(Instant::now() + Duration::from_secs(5)))?;
        Ok(Waited::PeerExited(peer.exited_error(status)))
    }

    fn shm_wait(&self, interest: Interest, deadline: Option<Instant>) -> io::Result<Waited> {
        let alive = || self.peer_alive();
        let waited = match interest {
            // A ring's frames are never left half-written: nothing to
            // write while waiting to read.
            Interest::Read | Interest::Either => ring(self.shm_rx()?).wait(deadline, &alive),
            Interest::Write => ring(self.shm_tx()?).wait(deadline, &alive),
            // (each end keeps its own spin budget)
        };
        Ok(match waited {
            shm::Waited::Ready => Waited::Ready,
            shm::Waited::TimedOut => Waited::TimedOut,
            shm::Waited::PeerGone => match self.peer.get() {
                Some(peer) => {
                    let status = peer.exit_status(Some(Instant::now() + Duration::from_secs(5)))?;
                    Waited::PeerExited(peer.exited_error(status))
                }
                None => Waited::PeerExited(Error::disconnected(
                    "the process at the other end of the shared-memory ring is gone",
                )),
            },
        })
    }

    /// After end-of-stream or a failed send: `e`, told what became of the
    /// supervised peer if it is gone by `within` (its exit status attached).
    /// Unchanged without supervision, if the peer still runs (it closed its
    /// end and lives on), or if `e` already carries a status.
    pub(crate) fn add_peer_fate(&self, e: Error, within: Duration) -> Error {
        if let Some(l) = self
            .liveness
            .as_ref()
            .filter(|l| l.silent.load(std::sync::atomic::Ordering::Relaxed))
        {
            return e.because(&format!(
                "no sign of life from the peer for {:?} (its heartbeat interval is {:?}): it \
                 is frozen or gone, or the network between us is down",
                l.interval * 11 / 4,
                l.interval
            ));
        }
        let Some(peer) = self.peer.get().filter(|_| e.exit_status().is_none()) else {
            return e;
        };
        match peer.exit_status(Some(Instant::now() + within)) {
            Ok(Some(status)) => e
                .because(&format!(
                    "child {} {}",
                    peer.pid(),
                    crate::process::describe(status)
                ))
                .with_status(Some(status)),
            _ => e,
        }
    }

    /// Ends our writing direction so the peer reads end-of-stream, even when
    /// a copy of this descriptor lives on elsewhere. Pipes need nothing: the
    /// close does it.
    pub(crate) fn shutdown_write(&self) {
        // shutdown(2) acts on the socket, not on this descriptor (and a ring's
        // close flag on the ring): once a copy went to another process, that
        // copy must keep working.
        if self.shared.is_shared() {
            return;
        }
        if let Some(tx) = self.shm.as_ref().and_then(|s| s.tx.as_ref()) {
            ring(tx).close();
            return;
        }
        if matches!(
            self.transport,
            Transport::Stream | Transport::SeqPacket | Transport::Tcp
        ) {
            let _ = sys::shutdown(self.fd.as_fd(), std::net::Shutdown::Write);
        }
    }

    /// Gives up on a half-written frame: shuts the socket down both ways,
    /// even if copies of it live elsewhere (a stream with half a frame in it
    /// is of no use to them either), so the peer's read ends inside the
    /// frame and reports it. A pipe can only be closed.
    pub(crate) fn abort(&self) {
        if matches!(
            self.transport,
            Transport::Stream | Transport::SeqPacket | Transport::Tcp
        ) {
            let _ = sys::shutdown(self.fd.as_fd(), std::net::Shutdown::Both);
        }
    }

    /// Whether this socket's own writing direction is shut down while its
    /// peer is still there (a send then fails with `EPIPE` although nobody
    /// closed the other end): the peer's close would have hung it up.
    pub(crate) fn own_write_shut(&self) -> bool {
        matches!(self.transport, Transport::Stream | Transport::SeqPacket)
            && matches!(sys::hung_up(self.fd.as_fd()), Ok(false))
    }

    /// A copy of the descriptor, for `into_fd`: this end is marked shared
    /// first, so that dropping it shuts nothing down.
    pub(crate) fn take_fd(&self) -> Result<OwnedFd> {
        if self.transport == Transport::Shm {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "a shared-memory end is two rings and a side socket, not one descriptor; \
                 send it inside a message instead",
            ));
        }
        self.mark_shared();
        self.fd
            .try_clone()
            .map_err(|e| Error::io("copying the end's descriptor", e))
    }

    /// Records that a copy of this end was sent to another process.
    pub(crate) fn mark_shared(&self) {
        self.shared.mark();
    }

    /// Sets the socket's send buffer (message sockets: the largest datagram).
    pub(crate) fn set_send_buffer(&self, bytes: usize) -> Result<()> {
        if matches!(self.transport, Transport::Pipe | Transport::Shm) {
            return Ok(());
        }
        sys::set_send_buffer(self.fd.as_fd(), bytes)
            .map_err(|e| Error::io("setting the socket's send buffer", e))
    }
}

impl Drop for Conn {
    /// A TCP connection closes without destroying what it sent: closing a
    /// socket that still holds unread input sends a reset, and a reset
    /// makes *our* kernel discard what the peer has not yet acknowledged
    /// (`tcp_write_queue_purge`), an answer still in flight among it. So:
    /// stop writing (FIN), drain the input that is there, and close once
    /// everything we sent, FIN included, is acknowledged (`SIOCOUTQ` is 0),
    /// or when the linger ([`Options::linger`](crate::Options::linger))
    /// runs out, whichever is first. What the peer sends after that draws a
    /// reset, which tells it that nobody reads here. On loopback, or with
    /// a peer that reads, this returns at once.
    fn drop(&mut self) {
        let Some(l) = &self.liveness else { return };
        if self.shared.is_shared() {
            return;
        }
        let fd = self.fd.as_fd();
        let _ = sys::shutdown(fd, std::net::Shutdown::Write);
        let deadline = Instant::now() + l.linger;
        let mut sink = [0u8; 4096];
        loop {
            // Drain: input left unread at close(2) is what sends the reset.
            loop {
                match sys::recv_bytes(fd, &mut sink, true) {
                    Ok(r) if r.len > 0 => {}
                    _ => break,
                }
            }
            match sys::sockio::unsent_bytes(fd) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            // Acknowledgements make no descriptor ready: look again within
            // a millisecond, or at once when input comes.
            let mut ready = [false];
            let tick = (now + Duration::from_millis(1)).min(deadline);
            if sys::poll(&[(fd, Interest::Read)], Some(tick), &mut ready).is_err() {
                return;
            }
        }
    }
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
