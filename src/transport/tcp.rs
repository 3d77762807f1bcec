//! The TCP specifics of a [`Conn`]: heartbeats heard, silence noticed, and
//! a close that never destroys what was sent.

use std::io;
use std::os::fd::AsFd;
#[cfg(feature = "tcp")]
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use super::Conn;
#[cfg(feature = "tcp")]
use super::Flavor;
use crate::sys::{self, Interest};

/// When the peer of a TCP connection last showed a sign of life, and
/// whether it has been declared gone for its silence.
#[derive(Debug)]
pub(crate) struct Liveness {
    /// The peer's heartbeat interval: silence for three of them ends the
    /// connection.
    pub(crate) interval: Duration,
    /// When bytes last came from the peer ([`sys::coarse_ns`]).
    last_heard: std::sync::atomic::AtomicU64,
    /// The peer ended its sending side: no more heartbeats will come.
    ended: std::sync::atomic::AtomicBool,
    /// The connection was shut down because the peer fell silent.
    pub(super) silent: std::sync::atomic::AtomicBool,
    /// How long closing may wait for what we sent to be acknowledged.
    linger: Duration,
    /// The encrypted session every byte travels in.
    #[cfg(feature = "tcp")]
    pub(super) session: super::Session,
}

impl Conn {
    /// A TCP connection, its handshake done, whose peer sends heartbeats
    /// every `interval`, and whose bytes travel in `session`.
    #[cfg(feature = "tcp")]
    pub(crate) fn tcp(
        fd: OwnedFd,
        interval: Duration,
        linger: Duration,
        session: super::Session,
    ) -> Conn {
        Conn::with(
            fd,
            Flavor::Tcp(Liveness {
                linger,
                interval,
                last_heard: std::sync::atomic::AtomicU64::new(sys::coarse_ns()),
                ended: std::sync::atomic::AtomicBool::new(false),
                silent: std::sync::atomic::AtomicBool::new(false),
                session,
            }),
        )
    }

    /// The session that seals what this end sends (a `tcp://` end).
    #[cfg(feature = "tcp")]
    #[inline]
    pub(crate) fn session(&self) -> Option<&super::Session> {
        self.liveness().map(|l| &l.session)
    }

    /// Whether a TCP connection's session holds bytes that poll(2) cannot
    /// see (what `Select` must count as ready, as a receiver's own buffer).
    pub(crate) fn session_read_ahead(&self) -> bool {
        #[cfg(feature = "tcp")]
        if let Some(l) = self.liveness() {
            return l.session.has_read_ahead();
        }
        false
    }

    /// Reads a TCP connection's plain bytes: opened from its session's
    /// records, every byte that came noted as a sign of life.
    pub(super) fn tcp_read(
        &self,
        l: &Liveness,
        buf: &mut [u8],
        block: bool,
    ) -> io::Result<sys::Received> {
        #[cfg(feature = "tcp")]
        return l
            .session
            .read(self.fd.as_fd(), buf, block, &|got| self.heard(got));
        #[cfg(not(feature = "tcp"))]
        {
            let _ = l;
            let got = sys::recv_bytes(self.fd.as_fd(), buf, !block);
            self.heard(&got);
            got
        }
    }

    /// Notes that bytes (or the end) came from the peer.
    pub(super) fn heard(&self, got: &io::Result<sys::Received>) {
        use std::sync::atomic::Ordering::Relaxed;
        if let (Some(l), Ok(r)) = (self.liveness(), got) {
            l.last_heard.store(sys::coarse_ns(), Relaxed);
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
    #[cfg_attr(not(feature = "tcp"), allow(dead_code))]
    pub(crate) fn check_silence(&self, queued: &mut u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(l) = self.liveness() else {
            return;
        };
        let now = sys::coarse_ns();
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
}

impl Drop for Conn {
    /// A TCP connection closes without destroying what it sent: closing a
    /// socket that still holds unread input sends a reset, and a reset
    /// makes *our* kernel discard what the peer has not yet acknowledged
    /// (`tcp_write_queue_purge`), an answer still in flight among it. So:
    /// stop writing (FIN), drain the input that is there, and close once
    /// everything we sent, FIN included, is acknowledged (`SIOCOUTQ` is 0),
    /// or the peer has finished sending or is gone (no input can come to
    /// turn the close into a reset), or when the linger ([`Options::linger`](crate::Options::linger))
    /// runs out, whichever is first. What the peer sends after that draws a
    /// reset, which tells it that nobody reads here. On loopback, or with
    /// a peer that reads, this returns at once.
    ///
    /// On a tokio runtime's thread (feature `tokio`) the waiting goes to
    /// the runtime's blocking pool, on a duplicate of the descriptor.
    fn drop(&mut self) {
        let Some(l) = self.liveness() else { return };
        if self.shared.is_shared() {
            return;
        }
        let fd = self.fd.as_fd();
        let _ = sys::shutdown(fd, std::net::Shutdown::Write);
        let deadline = Instant::now() + l.linger;
        if acknowledged(fd) {
            return;
        }
        #[cfg(feature = "tokio")]
        if let Ok(rt) = ::tokio::runtime::Handle::try_current()
            && let Ok(dup) = fd.try_clone_to_owned()
        {
            rt.spawn_blocking(move || linger(dup.as_fd(), deadline));
            return;
        }
        linger(fd, deadline);
    }
}

/// Drains the input there is (input left unread at close(2) is what sends
/// the reset) and tells whether closing now loses nothing: everything we
/// sent, FIN included, is acknowledged, or the peer is done sending (its
/// FIN) or gone (a reset), so no input can come that would make our close
/// a reset, and a plain close lets the kernel go on delivering what is
/// queued. (After a reset the count never falls: without that, the close
/// would wait out the whole linger.)
fn acknowledged(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    let mut sink = [0u8; 4096];
    loop {
        match sys::recv_bytes(fd, &mut sink, true) {
            Ok(r) if r.len > 0 => {}
            _ => break,
        }
    }
    match sys::sockio::unsent_bytes(fd) {
        Ok(0) | Err(_) => true,
        Ok(_) => matches!(sys::hung_up(fd), Ok(true)),
    }
}

/// Waits until closing `fd` loses nothing, or `deadline`.
fn linger(fd: std::os::fd::BorrowedFd<'_>, deadline: Instant) {
    loop {
        if acknowledged(fd) {
            return;
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
