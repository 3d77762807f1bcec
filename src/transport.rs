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
use crate::sys::{self, FdKind, Interest, SockType};

/// What a channel's descriptor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Pipe,
    Stream,
    Datagram,
    SeqPacket,
}

impl Transport {
    /// Byte streams carry length-prefixed frames; message sockets carry one
    /// payload per datagram.
    pub(crate) fn framed(self) -> bool {
        matches!(self, Transport::Pipe | Transport::Stream)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Transport::Pipe => "pipe",
            Transport::Stream => "stream socket",
            Transport::Datagram => "datagram socket",
            Transport::SeqPacket => "seqpacket socket",
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
    /// A copy of this end was sent to another process.
    shared: std::sync::atomic::AtomicBool,
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
            Transport::Pipe => sys::set_nonblocking(fd.as_fd(), true),
            Transport::Datagram | Transport::SeqPacket => sys::enable_passcred(fd.as_fd()),
            Transport::Stream => Ok(()),
        }
        .map_err(|e| Error::io("preparing the channel's descriptor", e))?;
        Ok(Conn {
            fd,
            transport,
            peer: OnceLock::new(),
            shared: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub(crate) fn transport(&self) -> Transport {
        self.transport
    }

    /// Writes without blocking; descriptors go with the first byte.
    pub(crate) fn write(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
        let bufs = [IoSlice::new(bytes)];
        match self.transport {
            Transport::Pipe => sys::pipe_write(self.fd.as_fd(), &bufs),
            Transport::Stream | Transport::Datagram | Transport::SeqPacket => {
                sys::send(self.fd.as_fd(), &bufs, fds, true)
            }
        }
    }

    /// Reads without blocking, adopting any descriptors that came along.
    pub(crate) fn read(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<sys::Received> {
        match self.transport {
            Transport::Pipe => sys::read(self.fd.as_fd(), buf).map(|len| sys::Received {
                len,
                full_len: len,
                fds_lost: false,
            }),
            Transport::Stream | Transport::Datagram | Transport::SeqPacket => {
                sys::recv(self.fd.as_fd(), buf, fds, true)
            }
        }
    }

    /// The next datagram's length (message sockets only).
    pub(crate) fn peek(&self) -> io::Result<sys::Peek> {
        sys::peek_datagram(self.fd.as_fd(), true)
    }

    /// The most one message may carry on this transport, if it has a limit
    /// of its own.
    pub(crate) fn message_limit(&self) -> Option<usize> {
        match self.transport {
            Transport::Datagram | Transport::SeqPacket => sys::max_datagram(self.fd.as_fd()).ok(),
            Transport::Pipe | Transport::Stream => None,
        }
    }

    /// Whether descriptors can travel on this transport.
    pub(crate) fn carries_fds(&self) -> bool {
        self.transport != Transport::Pipe
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

    /// After end-of-stream or a failed send: what became of the supervised
    /// peer, if it is gone by `within`. `None` without supervision, or if it
    /// still runs (it closed its end and lives on).
    pub(crate) fn peer_fate(
        &self,
        within: Duration,
    ) -> Option<(Option<std::process::ExitStatus>, String)> {
        let peer = self.peer.get()?;
        let status = peer.exit_status(Some(Instant::now() + within)).ok()??;
        Some((
            Some(status),
            format!("child {} {}", peer.pid(), crate::process::describe(status)),
        ))
    }

    /// Ends our writing direction so the peer reads end-of-stream, even when
    /// a copy of this descriptor lives on elsewhere. Pipes need nothing: the
    /// close does it.
    pub(crate) fn shutdown_write(&self) {
        // shutdown(2) acts on the socket, not on this descriptor: once a copy
        // went to another process, that copy must keep working.
        if self.shared.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        if matches!(self.transport, Transport::Stream | Transport::SeqPacket) {
            let _ = sys::shutdown(self.fd.as_fd(), std::net::Shutdown::Write);
        }
    }

    /// Records that a copy of this end was sent to another process.
    pub(crate) fn mark_shared(&self) {
        self.shared
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets the socket's send buffer (message sockets: the largest datagram).
    pub(crate) fn set_send_buffer(&self, bytes: usize) -> Result<()> {
        if self.transport == Transport::Pipe {
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
