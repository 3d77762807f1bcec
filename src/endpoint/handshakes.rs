//! The server side of `tcp://` handshakes, as a state machine that waits
//! on nothing itself: the blocking listener drives it from one thread and
//! poll(2), the async one (`procwire::tokio`) from one task and the
//! runtime's reactor. Either way every connection is answered as its
//! bytes arrive, each under its deadline, and a flood of idle or hostile
//! connections never holds up a real one.

use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::Key;
use super::auth::{self, MAX_HANDSHAKE_FRAME};
use super::tcp::{frame, millis};
use crate::sys;

/// Handshakes in progress at once, at most (see `pending_cap`).
const MAX_PENDING: usize = 1024;
/// How many of them one source address may hold.
const PER_SOURCE: usize = 32;

/// How many handshakes may be under way at once: well below this
/// process's descriptor limit, so that a flood cannot take every
/// descriptor (and `accept` itself keeps working).
fn pending_cap() -> usize {
    (sys::fd_limit() / 4).clamp(16, MAX_PENDING)
}

/// A connection whose handshake is under way: reading the client's HELLO,
/// then (after the reply) its CONFIRM. `W` is what its driver waits on
/// (nothing for poll(2), a reactor registration for tokio).
pub(crate) struct Pending<W> {
    stream: TcpStream,
    peer: IpAddr,
    buf: Vec<u8>,
    replied: Option<auth::Replied>,
    deadline: Instant,
    waiter: W,
}

/// What a pending handshake did with the bytes that came.
enum Step {
    More,
    Done(auth::Accepted),
    Drop,
}

impl<W> Pending<W> {
    /// Reads what there is of the next handshake frame; a whole one goes
    /// to `server` (the HELLO) or to the reply's state (the CONFIRM).
    fn step(&mut self, server: &auth::Server) -> Step {
        loop {
            let want = if self.buf.len() < 4 {
                4
            } else {
                let len = u32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
                if len > MAX_HANDSHAKE_FRAME {
                    // A 1 GiB claim before authentication: nothing allocated.
                    return Step::Drop;
                }
                4 + len
            };
            if self.buf.len() == want {
                let msg = std::mem::take(&mut self.buf);
                let msg = &msg[4..];
                let Some(replied) = self.replied.take() else {
                    match server.answer(msg) {
                        Ok((reply, replied)) => {
                            // A fresh socket's buffer takes the reply whole.
                            let reply = frame(&reply);
                            if !(&self.stream).write(&reply).is_ok_and(|n| n == reply.len()) {
                                return Step::Drop;
                            }
                            self.replied = Some(replied);
                            continue;
                        }
                        Err((_, refusal)) => {
                            // An explicit refusal tells a client with the
                            // wrong key (or none) to stop trying.
                            if let Some(r) = refusal {
                                let _ = (&self.stream).write(&frame(&r));
                            }
                            return Step::Drop;
                        }
                    }
                };
                return match replied.confirm(msg) {
                    Ok(ok) => Step::Done(ok),
                    Err(_) => Step::Drop,
                };
            }
            let mut chunk = [0u8; 4 + MAX_HANDSHAKE_FRAME];
            match self.stream.read(&mut chunk[..want - self.buf.len()]) {
                Ok(0) => return Step::Drop,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::More,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Step::Drop,
            }
        }
    }

    /// Whether the client has sent nothing yet: the first to go when the
    /// listener is full.
    fn silent(&self) -> bool {
        self.buf.is_empty() && self.replied.is_none()
    }
}

/// A listening socket and the handshakes under way on it.
pub(crate) struct Handshakes<W> {
    listener: TcpListener,
    server: auth::Server,
    timeout: Duration,
    cap: usize,
    pending: Vec<Pending<W>>,
    /// Out of descriptors: no accepting until then, instead of spinning on
    /// a listener that stays readable.
    paused_until: Option<Instant>,
    pause: Duration,
}

impl<W> std::fmt::Debug for Handshakes<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshakes")
            .field("listener", &self.listener)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<W> Handshakes<W> {
    /// Handshakes on `listener` (non-blocking), answered with `key` and
    /// our `heartbeat`, each given `timeout` to complete.
    pub(crate) fn new(
        listener: TcpListener,
        key: Option<&Key>,
        heartbeat: Duration,
        timeout: Duration,
    ) -> Handshakes<W> {
        Handshakes {
            listener,
            server: auth::Server::new(key.map(Key::bytes), millis(heartbeat)),
            timeout,
            cap: pending_cap(),
            pending: Vec::new(),
            paused_until: None,
            pause: Duration::from_millis(10),
        }
    }

    pub(crate) fn listener(&self) -> &TcpListener {
        &self.listener
    }

    /// Whether new connections are taken now (not paused for want of
    /// descriptors).
    pub(crate) fn listening(&self, now: Instant) -> bool {
        self.paused_until.is_none_or(|t| now >= t)
    }

    /// The connections under way, in the order `advance` asks about them.
    pub(crate) fn streams(&self) -> impl Iterator<Item = &TcpStream> {
        self.pending.iter().map(|p| &p.stream)
    }

    /// When the driver must look again even if nothing is ready: the
    /// first handshake deadline, or the end of a pause.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.pending
            .iter()
            .map(|p| p.deadline)
            .chain(self.paused_until)
            .min()
    }

    /// The same handshakes for another driver, each with what `waiter`
    /// makes for its stream (one it cannot make for is dropped).
    #[cfg(feature = "tokio")]
    pub(crate) fn rewait<V>(
        self,
        mut waiter: impl FnMut(&TcpStream) -> Option<V>,
    ) -> Handshakes<V> {
        let pending = self
            .pending
            .into_iter()
            .filter_map(|p| {
                let waiter = waiter(&p.stream)?;
                Some(Pending {
                    stream: p.stream,
                    peer: p.peer,
                    buf: p.buf,
                    replied: p.replied,
                    deadline: p.deadline,
                    waiter,
                })
            })
            .collect();
        Handshakes {
            listener: self.listener,
            server: self.server,
            timeout: self.timeout,
            cap: self.cap,
            pending,
            paused_until: self.paused_until,
            pause: self.pause,
        }
    }

    /// One round after a wait: the handshakes `ready` says have input (by
    /// their place in [`streams`](Handshakes::streams), and their waiter)
    /// take it, those past their deadline go, and when `accepting`, every
    /// connection the listener holds joins them with what `waiter` makes.
    /// Each completed handshake goes to `done`, with its stream back in
    /// blocking mode; `done` returning `false` (nobody takes connections
    /// any more) stops the round, and so does this, returning `false`.
    pub(crate) fn advance(
        &mut self,
        accepting: bool,
        mut ready: impl FnMut(usize, &W) -> bool,
        mut waiter: impl FnMut(&TcpStream) -> Option<W>,
        mut done: impl FnMut(TcpStream, auth::Accepted) -> bool,
    ) -> bool {
        let now = Instant::now();
        let mut keep = Vec::with_capacity(self.pending.len());
        for (i, mut p) in self.pending.drain(..).enumerate() {
            if !ready(i, &p.waiter) {
                if now < p.deadline {
                    keep.push(p);
                }
                continue;
            }
            match p.step(&self.server) {
                Step::More if now < p.deadline => keep.push(p),
                Step::More | Step::Drop => {}
                Step::Done(ok) => {
                    if p.stream.set_nonblocking(false).is_ok() && !done(p.stream, ok) {
                        return false;
                    }
                }
            }
        }
        self.pending = keep;
        if accepting {
            self.accept_all(&mut waiter);
        }
        true
    }

    /// Takes every connection the listener holds.
    fn accept_all(&mut self, waiter: &mut impl FnMut(&TcpStream) -> Option<W>) {
        self.paused_until = None;
        loop {
            let (stream, from) = match self.listener.accept() {
                Ok(got) => got,
                Err(e) if sys::is_out_of_fds(&e) => {
                    self.paused_until = Some(Instant::now() + self.pause);
                    self.pause = (self.pause * 2).min(Duration::from_secs(1));
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(_) => return,
            };
            self.pause = Duration::from_millis(10);
            if !(stream.set_nonblocking(true).is_ok() && stream.set_nodelay(true).is_ok()) {
                continue;
            }
            if !make_room(&mut self.pending, from.ip(), self.cap) {
                continue;
            }
            let Some(w) = waiter(&stream) else { continue };
            self.pending.push(Pending {
                stream,
                peer: from.ip(),
                buf: Vec::new(),
                replied: None,
                deadline: Instant::now() + self.timeout,
                waiter: w,
            });
        }
    }
}

/// Makes room for a handshake from `from`: when its source holds its
/// share, or the listener is full, the connection that goes is one that
/// has sent nothing yet (the oldest such), from that source if it is the
/// one over its share; a connection that has spoken is never dropped for a
/// newcomer. `false`: no room (the newcomer goes).
fn make_room<W>(pending: &mut Vec<Pending<W>>, from: IpAddr, cap: usize) -> bool {
    let same = pending.iter().filter(|p| p.peer == from).count();
    let victim = if same >= PER_SOURCE {
        pending.iter().position(|p| p.peer == from && p.silent())
    } else if pending.len() >= cap {
        pending.iter().position(Pending::silent)
    } else {
        return true;
    };
    match victim {
        Some(i) => {
            pending.remove(i);
            true
        }
        None => false,
    }
}
