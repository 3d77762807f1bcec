//! The one place where the kinds of connection differ.
//!
//! A channel holds a [`Conn`]: a descriptor and its `Flavor`, an enum whose
//! variants hold the state only their kind has (a shared-memory end's
//! rings, a TCP connection's heartbeat record and session), as
//! crossbeam-channel's flavors do. Every difference between the kinds is a
//! `match` on it in this module, with the shared-memory and TCP specifics
//! in `shm.rs` and `tcp.rs` and large datagrams in `large.rs`; the channel
//! code above sees only [`Transport`], the flavor's name, and is the same
//! for all.
//! Channel I/O with a deadline, or on an end that supervises a child, never
//! blocks in the kernel: it tries, and on `WouldBlock` waits in poll(2) with
//! the deadline and the child's pidfd. Sockets get `MSG_DONTWAIT` per call,
//! pipes `RWF_NOWAIT`. A wait without deadline or child sleeps in the system call
//! itself, as the raw syscalls do (`read`,
//! `write`).

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, FdKind, Interest, SockType};

mod large;
#[cfg(feature = "tcp")]
mod session;
mod shm;
mod tcp;

/// A process a channel end can watch, so that its death ends every wait on
/// the end: the process layer's child handle implements it. (Declared here
/// so that this layer does not look up into the process layer.)
pub(crate) trait Watched: Send + Sync + std::fmt::Debug {
    /// A descriptor that turns readable when the process has exited.
    fn pidfd(&self) -> BorrowedFd<'_>;
    /// Its exit status, waiting for it until `deadline`.
    fn exit_status(
        &self,
        deadline: Option<Instant>,
    ) -> io::Result<Option<std::process::ExitStatus>>;
    /// The error for a wait that its exit ended.
    fn exited_error(&self, status: Option<std::process::ExitStatus>) -> Error;
    /// "child 123 exited with status 3", for the end-of-stream errors.
    fn fate(&self, status: std::process::ExitStatus) -> String;
}

pub(crate) use large::{
    INLINE_MAX, MARKER as OUT_OF_LINE_MARKER, Mapped as SpillMapping,
    SPILL_HEADER as ANNOUNCEMENT_MAX, SPILL_MAX as DATAGRAM_SPILL_MAX,
    receive as receive_out_of_line,
};
#[cfg(feature = "tcp")]
pub(crate) use session::Session;
pub(crate) use shm::RingParts;
use shm::{ShmRings, ring};
use tcp::Liveness;

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
    #[cfg_attr(not(feature = "tcp"), allow(dead_code))]
    Tcp,
}

impl Transport {
    fn of(flavor: &Flavor) -> Transport {
        match flavor {
            Flavor::Pipe => Transport::Pipe,
            Flavor::Stream => Transport::Stream,
            Flavor::Datagram => Transport::Datagram,
            Flavor::SeqPacket => Transport::SeqPacket,
            Flavor::Shm(_) => Transport::Shm,
            Flavor::Tcp(_) => Transport::Tcp,
        }
    }

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

/// What a channel's descriptor is, with the state that only that kind of
/// connection has (crossbeam-channel's flavors): code that needs a ring or
/// a session matches its variant, so no other kind carries an empty slot
/// for it.
#[derive(Debug)]
enum Flavor {
    Pipe,
    Stream,
    Datagram,
    SeqPacket,
    /// Shared-memory rings; the descriptor is a SEQPACKET socket that only
    /// tells each side whether the other is still there.
    Shm(ShmRings),
    /// A TCP connection: frames as on a stream, plus heartbeat frames that
    /// tell each side the other is alive, in an encrypted session.
    #[cfg_attr(not(feature = "tcp"), allow(dead_code))]
    Tcp(Liveness),
}

/// A descriptor a channel reads or writes, with its flavor.
#[derive(Debug)]
pub(crate) struct Conn {
    fd: OwnedFd,
    flavor: Flavor,
    /// The process at the other end, once the channel supervises it.
    peer: OnceLock<Arc<dyn Watched>>,
    /// Whether a copy of this end went elsewhere (see [`crate::ends`]).
    shared: crate::ends::Shared,
    /// A pipe end made `O_NONBLOCK` for an async end: its tries are plain
    /// reads and writes, whose `EAGAIN` means "no data" or "no room". An
    /// `RWF_NOWAIT` try may also give up where it would merely have to wait
    /// inside the kernel (the pipe's lock, on kernels that honour the flag
    /// there): harmless before a level-triggered poll, a lost wake-up under
    /// an edge-triggered reactor that saw no change.
    plain_nonblocking: std::sync::atomic::AtomicBool,
    /// Whether this end refuses descriptors ([`Conn::refuse_descriptors`]).
    refusal: Refusal,
    /// A message socket's spill file for large messages (`large`), made
    /// at the first.
    spill: std::sync::Mutex<Option<large::Spill>>,
    /// Waited for once the descriptor is closed (declared after `fd`, so
    /// dropped after it).
    after: After,
}

/// What an end waits for once its descriptor is closed: the carrier of a
/// bridged end (a ZeroMQ endpoint's thread), which must get the messages
/// sent on it out before the end counts as gone.
#[derive(Default)]
struct After(std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl std::fmt::Debug for After {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("After")
    }
}

impl Drop for After {
    fn drop(&mut self) {
        let wait = self
            .0
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(wait) = wait {
            // Not on a runtime's thread: the waiting goes to a thread of
            // its own there.
            #[cfg(feature = "tokio")]
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("procwire-after".into())
                    .spawn(wait);
                return;
            }
            wait();
        }
    }
}

/// Whether a Unix socket end takes descriptors
/// ([`Options::descriptors`](crate::Options::descriptors)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// Descriptors travel both ways (the default): a receive is recvmsg(2)
    /// with a control buffer.
    Off,
    /// The kernel refuses descriptors sent to this socket (`SO_PASSRIGHTS`
    /// off): a receive is recv(2), and none are sent from here either.
    Kernel,
    /// A kernel without `SO_PASSRIGHTS`: a receive stays recvmsg(2), and a
    /// message that comes with descriptors fails (they are closed); none
    /// are sent from here.
    Checked,
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
        let flavor = match sys::fd_kind(fd.as_fd()).map_err(|e| Error::io(ctx, e))? {
            FdKind::Pipe => Flavor::Pipe,
            FdKind::Socket(SockType::Stream) => Flavor::Stream,
            FdKind::Socket(SockType::Datagram) => Flavor::Datagram,
            FdKind::Socket(SockType::SeqPacket) => Flavor::SeqPacket,
            FdKind::Other => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "a channel needs a pipe or a Unix socket; this descriptor is neither",
                ));
            }
        };
        let transport = Transport::of(&flavor);
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
            // Both ends of a pipe stay blocking: a send or receive without
            // deadline sleeps in write(2) or read(2), and the others pass
            // RWF_NOWAIT per call (`sys::pipe_write`, `sys::read_nowait`).
            Transport::Pipe if usage == Use::Send => {
                // Its writes trust the disposition read now (`sys::signal`).
                sys::signal::note_sigpipe_disposition();
                sys::set_nonblocking(fd.as_fd(), false)
            }
            Transport::Pipe => sys::set_nonblocking(fd.as_fd(), false),
            // (A SEQPACKET socket needs no credentials to tell an empty
            // message from its end of stream: procwire never sends an empty
            // datagram, see `large`.)
            Transport::SeqPacket | Transport::Datagram => Ok(()),
            Transport::Stream | Transport::Shm | Transport::Tcp => Ok(()),
        }
        .map_err(|e| Error::io("preparing the channel's descriptor", e))?;
        Ok(Conn::with(fd, flavor))
    }

    /// The fields every kind of connection starts with.
    fn with(fd: OwnedFd, flavor: Flavor) -> Conn {
        let shared = crate::ends::Shared::register(fd.as_fd());
        Conn {
            fd,
            flavor,
            peer: OnceLock::new(),
            shared,
            plain_nonblocking: std::sync::atomic::AtomicBool::new(false),
            refusal: Refusal::Off,
            spill: std::sync::Mutex::new(None),
            after: After::default(),
        }
    }

    /// Has the end's drop call `wait` once its descriptor is closed (see
    /// [`After`]).
    #[cfg_attr(not(feature = "zmq"), allow(dead_code))]
    pub(crate) fn wait_after_close(&self, wait: Box<dyn FnOnce() + Send>) {
        *self
            .after
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(wait);
    }

    /// Makes this end carry no descriptors: a socket it receives on refuses
    /// them in the kernel where it can (`SO_PASSRIGHTS`, Linux 6.16), so
    /// that its receives need no control buffer; sends of descriptors from
    /// it are refused. Pipes, shared memory and TCP carry none already
    /// (shared memory's own side socket keeps passing its memfds).
    pub(crate) fn refuse_descriptors(&mut self, usage: Use) -> Result<()> {
        if !matches!(
            self.flavor,
            Flavor::Stream | Flavor::Datagram | Flavor::SeqPacket
        ) {
            return Ok(());
        }
        self.refusal = Refusal::Checked;
        if usage != Use::Send
            && sys::refuse_rights(self.fd.as_fd())
                .map_err(|e| Error::io("refusing descriptors on the socket", e))?
        {
            self.refusal = Refusal::Kernel;
        }
        Ok(())
    }

    /// Readies this end for an async runtime: a pipe end turns `O_NONBLOCK`
    /// and is tried with plain reads and writes from now on (see
    /// `plain_nonblocking`); its blocking paths wait in poll(2) instead of
    /// the read or write itself, as before Linux 5.8. Sockets and shared
    /// memory need nothing.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn for_async(&self) -> io::Result<()> {
        if matches!(self.flavor, Flavor::Pipe) {
            sys::set_nonblocking(self.fd.as_fd(), true)?;
            self.plain_nonblocking
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    fn plain(&self) -> bool {
        self.plain_nonblocking
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The rings, if this is a shared-memory end.
    fn rings(&self) -> Option<&ShmRings> {
        match &self.flavor {
            Flavor::Shm(s) => Some(s),
            _ => None,
        }
    }

    /// The heartbeat record and session, if this is a TCP connection.
    #[inline]
    fn liveness(&self) -> Option<&Liveness> {
        match &self.flavor {
            Flavor::Tcp(l) => Some(l),
            _ => None,
        }
    }

    /// Every descriptor this end needs, for a fork hand-over: the side
    /// socket, and the memfds behind its mappings.
    pub(crate) fn descriptors(&self, out: &mut Vec<std::os::fd::RawFd>) {
        use std::os::fd::AsRawFd;
        // (An epoll instance shared with a forked child reports for both;
        // each process uses only its own end's.)
        out.push(self.fd.as_raw_fd());
        if let Some(s) = self.rings() {
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
        if let Some(rx) = self.rings().and_then(|s| s.rx.as_ref()) {
            ring(rx).close();
        }
    }

    pub(crate) fn transport(&self) -> Transport {
        Transport::of(&self.flavor)
    }

    /// Writes, without blocking unless `block` and the transport can: a
    /// Unix socket that supervises no child then sleeps in sendmsg(2)
    /// itself until the kernel took all of it, one system call where
    /// try, poll, send would be several for a message larger than the
    /// socket's buffer (the raw baseline's single blocking write).
    ///
    /// Descriptors go with the first byte. A ring never sleeps in a write,
    /// nor does TCP (its waits also watch the peer's heartbeat).
    #[inline]
    pub(crate) fn write(
        &self,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
        block: bool,
    ) -> io::Result<usize> {
        let nonblocking = !(block && self.peer.get().is_none());
        let bufs = [IoSlice::new(bytes)];
        match &self.flavor {
            Flavor::Shm(rings) => self.shm_write(rings, bytes),
            Flavor::Pipe => sys::pipe_write(self.fd.as_fd(), &bufs, nonblocking && !self.plain()),
            Flavor::Datagram | Flavor::SeqPacket if large::must_go_out_of_line(bytes) => {
                self.send_out_of_line(bytes, fds)
            }
            Flavor::Datagram | Flavor::SeqPacket => {
                match sys::send(self.fd.as_fd(), &bufs, fds, nonblocking) {
                    // More than the socket's buffer lets one datagram hold.
                    Err(e) if sys::is_msgsize(&e) => self.send_out_of_line(bytes, fds),
                    r => r,
                }
            }
            Flavor::Stream => sys::send(self.fd.as_fd(), &bufs, fds, nonblocking),
            Flavor::Tcp(_) => sys::send(self.fd.as_fd(), &bufs, fds, true),
        }
    }

    /// Sends a message that one datagram cannot carry as it is, in a memfd
    /// of its own (`large`): not from an end that carries no descriptors.
    #[cold]
    fn send_out_of_line(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
        if self.refusal != Refusal::Off && !bytes.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a message of {} travels out of line, in a memfd (over {} on a \
                     datagram socket, or starting with the out-of-line marker), which a channel \
                     built with Options::descriptors(false) cannot carry; use a stream socket \
                     or allow descriptors",
                    crate::error::human(bytes.len() as u64),
                    crate::error::human(large::INLINE_MAX as u64)
                ),
            ));
        }
        large::send(self.fd.as_fd(), bytes, fds, &self.spill)
    }

    /// A large message (over the inline limit, up to the spill file's
    /// largest) on a message socket, encoded by `fill` straight into the
    /// sender's spill file and announced (`large::send_with`, whose
    /// results these are). Never blocks: `WouldBlock` when the socket has
    /// no room for the announcement.
    pub(crate) fn spill_with(
        &self,
        len: usize,
        fill: impl FnOnce(&mut dyn io::Write) -> Result<()>,
        differently: impl FnOnce() -> Error,
    ) -> io::Result<Result<()>> {
        if !matches!(self.flavor, Flavor::Datagram | Flavor::SeqPacket) || !self.carries_fds() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "only a message socket that carries descriptors has a spill file",
            ));
        }
        large::send_with(self.fd.as_fd(), &self.spill, len, fill, differently)
    }

    /// Writes the start of `bufs` on a byte stream (a frame written in
    /// pieces from where they lie: `channel::sender::direct`), blocking as
    /// [`write`](Conn::write) does.
    pub(crate) fn write_vectored(&self, bufs: &[IoSlice<'_>], block: bool) -> io::Result<usize> {
        let nonblocking = !(block && self.peer.get().is_none());
        match &self.flavor {
            Flavor::Pipe => sys::pipe_write(self.fd.as_fd(), bufs, nonblocking && !self.plain()),
            Flavor::Stream => sys::send(self.fd.as_fd(), bufs, &[], nonblocking),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "only a pipe or a stream socket takes a frame in pieces",
            )),
        }
    }

    /// Reads, adopting any descriptors that came along. Without blocking,
    /// unless `block` and the transport can: a socket that supervises no
    /// child then sleeps in recvmsg(2) itself, one system call instead of
    /// try, poll, read.
    #[inline]
    pub(crate) fn read(
        &self,
        buf: &mut [u8],
        fds: &mut Vec<OwnedFd>,
        block: bool,
    ) -> io::Result<sys::Received> {
        let block = block && self.peer.get().is_none();
        match &self.flavor {
            // A pipe's read end stays blocking (see `new`).
            Flavor::Pipe if block || self.plain() => {
                sys::read(self.fd.as_fd(), buf).map(sys::Received::plain)
            }
            Flavor::Pipe => sys::read_nowait(self.fd.as_fd(), buf).map(sys::Received::plain),
            Flavor::Stream | Flavor::Datagram | Flavor::SeqPacket => match self.refusal {
                Refusal::Kernel => sys::recv_refusing(
                    self.fd.as_fd(),
                    buf,
                    !block,
                    !matches!(self.flavor, Flavor::Stream),
                ),
                Refusal::Off => sys::recv(self.fd.as_fd(), buf, fds, !block),
                Refusal::Checked => {
                    sys::recv(self.fd.as_fd(), buf, fds, !block).map(|r| self.refused(r, fds))
                }
            },
            Flavor::Tcp(l) => self.tcp_read(l, buf, block),
            // (The channel layer takes a ring's records with `shm_read`.)
            Flavor::Shm(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a shared-memory end holds records, not bytes: it is read with shm_read",
            )),
        }
    }

    /// [`read`](Conn::read) of at most `max` bytes into `v`'s spare
    /// capacity, appended to `v`: a large message's bytes read straight
    /// into the allocation that becomes its buffer. Pipes and stream
    /// sockets only.
    pub(crate) fn read_spare(
        &self,
        v: &mut Vec<u8>,
        max: usize,
        fds: &mut Vec<OwnedFd>,
        block: bool,
    ) -> io::Result<sys::Received> {
        let block = block && self.peer.get().is_none();
        let from = match &self.flavor {
            Flavor::Pipe => sys::Source::Pipe {
                nowait: !block && !self.plain(),
            },
            Flavor::Stream => sys::Source::Socket {
                fds,
                nonblocking: !block,
            },
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "only a pipe or a stream socket reads into a message's own buffer",
                ));
            }
        };
        let r = sys::read_spare(self.fd.as_fd(), v, max, from)?;
        Ok(self.refused(r, fds))
    }

    /// What a receive on an end that refuses descriptors but could not
    /// have the kernel refuse them ([`Refusal::Checked`]) makes of
    /// descriptors that came anyway: closed, and counted as lost, which
    /// fails the message they came with.
    #[inline]
    fn refused(&self, mut r: sys::Received, fds: &mut Vec<OwnedFd>) -> sys::Received {
        if self.refusal == Refusal::Checked && !fds.is_empty() {
            fds.clear();
            r.fds_lost = true;
        }
        r
    }

    /// Whether descriptors can travel on this transport.
    pub(crate) fn carries_fds(&self) -> bool {
        self.refusal == Refusal::Off
            && !matches!(
                self.transport(),
                Transport::Pipe | Transport::Shm | Transport::Tcp
            )
    }

    /// Why [`carries_fds`](Conn::carries_fds) says no.
    pub(crate) fn why_no_fds(&self) -> &'static str {
        if self.refusal == Refusal::Off {
            "descriptors can only travel over Unix sockets, not over a pipe"
        } else {
            "this channel carries no descriptors (built with Options::descriptors(false))"
        }
    }

    /// Watches `peer`: waits on this channel end from now on also end when
    /// it exits. A channel watches one process; later calls are ignored.
    pub(crate) fn supervise(&self, peer: Arc<dyn Watched>) {
        let _ = self.peer.set(peer);
    }

    pub(crate) fn peer(&self) -> Option<&Arc<dyn Watched>> {
        self.peer.get()
    }

    /// Waits until the descriptor is ready, the deadline passes, or the
    /// supervised peer exits, whichever comes first. Readiness wins over the
    /// peer's exit, so that what it sent before dying is read first.
    pub(crate) fn wait(&self, interest: Interest, deadline: Option<Instant>) -> io::Result<Waited> {
        if let Flavor::Shm(rings) = &self.flavor {
            return self.shm_wait(rings, interest, deadline);
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

    /// After end-of-stream or a failed send: `e`, told what became of the
    /// supervised peer if it is gone by `within` (its exit status attached).
    /// Unchanged without supervision, if the peer still runs (it closed its
    /// end and lives on), or if `e` already carries a status.
    pub(crate) fn add_peer_fate(&self, e: Error, within: Duration) -> Error {
        if let Some(l) = self
            .liveness()
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
            Ok(Some(status)) => e.because(&peer.fate(status)).with_status(Some(status)),
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
        if let Some(tx) = self.rings().and_then(|s| s.tx.as_ref()) {
            ring(tx).close();
            return;
        }
        if matches!(
            self.transport(),
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
            self.transport(),
            Transport::Stream | Transport::SeqPacket | Transport::Tcp
        ) {
            let _ = sys::shutdown(self.fd.as_fd(), std::net::Shutdown::Both);
        }
    }

    /// Whether this socket's own writing direction is shut down while its
    /// peer is still there (a send then fails with `EPIPE` although nobody
    /// closed the other end): the peer's close would have hung it up.
    /// A shared-memory end's ring closed by this end says so itself.
    pub(crate) fn own_write_shut(&self) -> bool {
        if let Some(tx) = self.rings().and_then(|s| s.tx.as_ref()) {
            return ring(tx).closed();
        }
        matches!(
            self.transport(),
            Transport::Stream | Transport::SeqPacket | Transport::Tcp
        ) && matches!(sys::hung_up(self.fd.as_fd()), Ok(false))
    }

    /// A copy of the descriptor, for `into_fd`: this end is marked shared
    /// first, so that dropping it shuts nothing down.
    pub(crate) fn take_fd(&self) -> Result<OwnedFd> {
        if self.transport() == Transport::Shm {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "a shared-memory end is two rings and a side socket, not one descriptor; \
                 send it inside a message instead",
            ));
        }
        self.mark_shared();
        // The descriptor lives on elsewhere: nothing to wait for here.
        drop(
            self.after
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
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
        if matches!(self.transport(), Transport::Pipe | Transport::Shm) {
            return Ok(());
        }
        sys::set_send_buffer(self.fd.as_fd(), bytes)
            .map_err(|e| Error::io("setting the socket's send buffer", e))
    }
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    /// An end that refuses descriptors on a kernel without `SO_PASSRIGHTS`
    /// ([`Refusal::Checked`], which this kernel may not need): descriptors
    /// that come anyway fail the message they came with and are closed,
    /// and the next message arrives.
    #[test]
    fn descriptors_that_come_to_a_checked_refusal_fail_their_message() {
        for (kind, first, second) in [
            (crate::Kind::SeqPacket, &[3u8, 1, 2, 3][..], &[1u8, 9][..]),
            (
                crate::Kind::Stream,
                &[0, 0, 0, 4, 3, 1, 2, 3][..],
                &[0, 0, 0, 2, 1, 9][..],
            ),
        ] {
            let (a, b) = crate::socket_pair(kind).unwrap();
            let (a, b): (OwnedFd, OwnedFd) = (a.into(), b.into());
            let mut conn = Conn::new(a, Use::Recv).unwrap();
            conn.refusal = Refusal::Checked;
            let rx = crate::Options::new()
                .receiver_on::<Vec<u8>>(Arc::new(conn))
                .unwrap();
            let before = open_fds();
            let null = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
            sys::send(b.as_fd(), &[IoSlice::new(first)], &[null.as_fd()], false).unwrap();
            drop(null);
            sys::send(b.as_fd(), &[IoSlice::new(second)], &[], false).unwrap();
            let err = rx.recv().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Truncated, "{kind:?}: {err}");
            assert_eq!(rx.recv().unwrap(), vec![9], "{kind:?}");
            assert_eq!(open_fds(), before, "{kind:?}: the descriptor was closed");
        }
    }
}
