//! `tcp://` endpoints: a listener whose handshakes run in one thread of
//! their own (so that idle or hostile connections never hold up a real
//! one), a client with connect and handshake deadlines and retries, and a
//! watcher thread per connection that sends heartbeats and notices a
//! silent peer.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::auth::{self, MAX_HANDSHAKE_FRAME};
use super::{Endpoint, HostPort, Key, Net};
use crate::Duplex;
use crate::channel::SendCore;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, Interest};
use crate::transport::Conn;

/// Handshakes in progress at once, at most (see `pending_cap`).
const MAX_PENDING: usize = 1024;
/// Authenticated connections waiting for `accept`; beyond this new ones
/// are closed.
const QUEUE: usize = 128;

fn millis(d: Duration) -> u32 {
    d.as_millis().clamp(1, u128::from(u32::MAX)) as u32
}

fn refused(what: &str, why: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Refused, format!("{what}: {why}"))
}

/// The addresses `hp` names.
fn resolve(hp: &HostPort) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (hp.host.as_str(), hp.port)
        .to_socket_addrs()
        .map_err(|e| Error::io(&format!("resolving {hp}"), e))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{hp} resolves to no address"),
        ));
    }
    Ok(addrs)
}

/// The policy: without a key, only loopback.
fn allowed(addr: &SocketAddr, key: Option<&Key>, what: &str) -> Result<()> {
    if key.is_none() && !addr.ip().is_loopback() {
        return Err(refused(
            what,
            format!(
                "{addr} is not loopback and there is no key: set PROCWIRE_KEY_FILE \
                 (or PROCWIRE_KEY) on both sides, or tunnel to a loopback address"
            ),
        ));
    }
    Ok(())
}

/// One handshake frame, framed as every other (wire format section 2).
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut w = crate::frame::FrameWriter::new(Vec::with_capacity(4 + payload.len()));
    // Our own payloads, at most a few dozen bytes, into memory: cannot fail.
    w.send(payload).expect("a handshake frame fits");
    w.into_inner()
}

/// Reads one handshake frame (blocking, under the stream's timeouts).
fn read_frame(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_HANDSHAKE_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a handshake frame of {len} bytes (at most {MAX_HANDSHAKE_FRAME})"),
        ));
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// Turns an authenticated stream into a channel, with its watcher.
fn channel<Out, In>(
    stream: TcpStream,
    ok: auth::Accepted,
    client: bool,
    net: &Net,
) -> Result<Duplex<Out, In>>
where
    Out: Serialize + DeserializeOwned,
    In: Serialize + DeserializeOwned,
{
    // The heartbeat prefix is reserved: `check_max` keeps every maximum
    // frame below it (crate::frame::MAX_FRAME_LIMIT).
    let fd: OwnedFd = stream.into();
    let peer_heartbeat = Duration::from_millis(u64::from(ok.peer_heartbeat_ms));
    let session = crate::transport::Session::new(ok.session.0, client);
    let conn = Arc::new(Conn::tcp(
        fd,
        peer_heartbeat,
        net.options.linger_time(),
        session,
    ));
    let duplex: Duplex<Out, In> = net.options.duplex_on(Arc::clone(&conn))?;
    watch(
        Arc::downgrade(duplex.sender().core()),
        Arc::downgrade(&conn),
        net.heartbeat,
        peer_heartbeat,
    );
    Ok(duplex)
}

/// The watcher of one connection: a heartbeat every `ours`, and a check
/// every quarter of the peer's interval that it has not been silent for
/// 2¾ of them, so that a frozen or vanished peer is reported within three
/// of its intervals. It ends when the connection's last end is dropped.
fn watch(send: Weak<SendCore>, conn: Weak<Conn>, ours: Duration, theirs: Duration) {
    let tick = (ours.min(theirs) / 4).max(Duration::from_millis(1));
    let spawned = std::thread::Builder::new()
        .name("procwire-heartbeat".into())
        .spawn(move || {
            let mut queued = 0;
            let mut next_beat = Instant::now();
            loop {
                std::thread::sleep(tick);
                let Some(conn) = conn.upgrade() else { return };
                if Instant::now() >= next_beat {
                    if let Some(s) = send.upgrade() {
                        s.heartbeat();
                    }
                    next_beat = Instant::now() + ours;
                }
                conn.check_silence(&mut queued);
            }
        });
    // Without a thread there are no heartbeats: the peer will call this end
    // silent, which is the truth about it.
    drop(spawned);
}

/// Connects to `hp`: TCP with a deadline and the options' retries, then the
/// handshake with its own deadline.
pub(crate) fn connect_tcp<Out, In>(hp: &HostPort, net: &Net) -> Result<Duplex<Out, In>>
where
    Out: Serialize + DeserializeOwned,
    In: Serialize + DeserializeOwned,
{
    let key = net.resolve_key()?;
    let what = format!("connecting to tcp://{hp}");
    let addrs = resolve(hp)?;
    for a in &addrs {
        allowed(a, key.as_ref(), &what)?;
    }
    let mut backoff = net.retry.backoff;
    let mut last = None;
    for attempt in 0..net.retry.attempts.max(1) {
        if attempt > 0 {
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        for a in &addrs {
            match TcpStream::connect_timeout(a, net.connect_timeout) {
                Ok(s) => return handshake_client(s, key.as_ref(), net, &what),
                Err(e) => last = Some(e),
            }
        }
    }
    Err(Error::io(
        &what,
        last.unwrap_or_else(|| io::ErrorKind::NotFound.into()),
    ))
}

/// The client's handshake. Only the server's explicit refusal is
/// [`ErrorKind::Refused`], which a caller should not retry; a connection
/// dropped or cut during the handshake (a server under a flood, say) is an
/// I/O error, and a reply that does not decrypt (not the key's server)
/// [`ErrorKind::Decode`]: worth another attempt.
fn handshake_client<Out, In>(
    mut s: TcpStream,
    key: Option<&Key>,
    net: &Net,
    what: &str,
) -> Result<Duplex<Out, In>>
where
    Out: Serialize + DeserializeOwned,
    In: Serialize + DeserializeOwned,
{
    let io_err = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::new(
            ErrorKind::Timeout,
            format!(
                "{what}: the server did not complete the handshake within {:?}",
                net.handshake_timeout
            ),
        ),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => Error::io_as(
            ErrorKind::Disconnected,
            &format!(
                "{what}: the server closed the connection during the handshake without                  refusing it (overloaded, or not a procwire endpoint)"
            ),
            e,
        ),
        _ => Error::io(what, e),
    };
    s.set_nodelay(true).map_err(io_err)?;
    s.set_read_timeout(Some(net.handshake_timeout))
        .map_err(io_err)?;
    s.set_write_timeout(Some(net.handshake_timeout))
        .map_err(io_err)?;
    let (client, hello) = auth::Client::new(key.map(Key::bytes), millis(net.heartbeat));
    s.write_all(&frame(&hello)).map_err(io_err)?;
    let reply = read_frame(&mut s).map_err(io_err)?;
    let (ok, confirm) = client.finish(&reply).map_err(|r| match r {
        auth::Refused::ByServer(_) | auth::Refused::KeyMismatch { .. } => refused(what, r),
        r => Error::new(ErrorKind::Decode, format!("{what}: {r}")),
    })?;
    s.write_all(&frame(&confirm)).map_err(io_err)?;
    s.set_read_timeout(None).map_err(io_err)?;
    s.set_write_timeout(None).map_err(io_err)?;
    channel(s, ok, true, net)
}

/// A connection whose handshake is under way: reading the client's HELLO,
/// then (after the reply) its CONFIRM.
struct Pending {
    stream: TcpStream,
    peer: std::net::IpAddr,
    buf: Vec<u8>,
    replied: Option<auth::Replied>,
    deadline: Instant,
}

/// What a pending handshake did with the bytes that came.
enum Step {
    More,
    Done(auth::Accepted),
    Drop,
}

impl Pending {
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

/// A `tcp://` listener (see [`Listener`](crate::Listener)).
#[derive(Debug)]
pub(crate) struct TcpAcceptor {
    local: SocketAddr,
    queue: Mutex<Receiver<(TcpStream, auth::Accepted)>>,
    /// Dropping it (the write end of a pipe) stops the thread.
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl TcpAcceptor {
    pub(crate) fn bind(hp: &HostPort, net: &Net) -> Result<TcpAcceptor> {
        let key = net.resolve_key()?;
        let what = format!("listening at tcp://{hp}");
        let addrs = resolve(hp)?;
        for a in &addrs {
            allowed(a, key.as_ref(), &what)?;
        }
        let listener = TcpListener::bind(&addrs[..]).map_err(|e| Error::io(&what, e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io(&what, e))?;
        let local = listener.local_addr().map_err(|e| Error::io(&what, e))?;
        let (stop_r, stop_w) = sys::pipe().map_err(|e| Error::io(&what, e))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let settings = (key, net.heartbeat, net.handshake_timeout);
        let thread = std::thread::Builder::new()
            .name("procwire-accept".into())
            .spawn(move || serve(listener, stop_r, tx, settings))
            .map_err(|e| Error::io(&what, e))?;
        Ok(TcpAcceptor {
            local,
            queue: Mutex::new(rx),
            stop: Some(stop_w),
            thread: Some(thread),
        })
    }

    pub(crate) fn endpoint(&self) -> Endpoint {
        Endpoint::Tcp(HostPort {
            host: self.local.ip().to_string(),
            port: self.local.port(),
        })
    }

    pub(crate) fn accept<Out, In>(
        &self,
        net: &Net,
        deadline: Option<Instant>,
    ) -> Result<Duplex<Out, In>>
    where
        Out: Serialize + DeserializeOwned,
        In: Serialize + DeserializeOwned,
    {
        let queue = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let got = match deadline {
            None => queue.recv().map_err(|_| None),
            Some(d) => queue
                .recv_timeout(d.saturating_duration_since(Instant::now()))
                .map_err(|e| Some(e == std::sync::mpsc::RecvTimeoutError::Timeout)),
        };
        match got {
            Ok((stream, ok)) => channel(stream, ok, false, net),
            Err(Some(true)) => Err(Error::new(
                ErrorKind::Timeout,
                "no peer completed the handshake before the deadline",
            )),
            Err(_) => Err(Error::new(
                ErrorKind::Io,
                "the listener's handshake thread is gone",
            )),
        }
    }
}

impl Drop for TcpAcceptor {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How many handshakes may be under way at once: well below this
/// process's descriptor limit, so that a flood cannot take every
/// descriptor (and `accept` itself keeps working).
fn pending_cap() -> usize {
    (sys::fd_limit() / 4).clamp(16, MAX_PENDING)
}

/// How many of them one source address may hold.
const PER_SOURCE: usize = 32;

/// Makes room for a handshake from `from`: when its source holds its
/// share, or the listener is full, the connection that goes is one that
/// has sent nothing yet (the oldest such), from that source if it is the
/// one over its share; a connection that has spoken is never dropped for a
/// newcomer. `false`: no room (the newcomer goes).
fn make_room(pending: &mut Vec<Pending>, from: std::net::IpAddr, cap: usize) -> bool {
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

/// The handshake thread: accepts, answers HELLOs and checks CONFIRMs as
/// their bytes arrive, all connections in one poll(2), each under its
/// deadline.
fn serve(
    listener: TcpListener,
    stop: OwnedFd,
    ready: SyncSender<(TcpStream, auth::Accepted)>,
    (key, heartbeat, timeout): (Option<Key>, Duration, Duration),
) {
    let server = auth::Server::new(key.as_ref().map(Key::bytes), millis(heartbeat));
    let cap = pending_cap();
    let mut pending: Vec<Pending> = Vec::new();
    // Out of descriptors: stop accepting for a while instead of spinning
    // on a listener that stays readable.
    let mut paused_until: Option<Instant> = None;
    let mut pause = Duration::from_millis(10);
    loop {
        let now = Instant::now();
        let listening = paused_until.is_none_or(|t| now >= t);
        let mut fds = vec![(stop.as_fd(), Interest::Read)];
        if listening {
            fds.push((listener.as_fd(), Interest::Read));
        }
        let first = fds.len();
        fds.extend(pending.iter().map(|p| (p.stream.as_fd(), Interest::Read)));
        let deadline = pending.iter().map(|p| p.deadline).chain(paused_until).min();
        let mut hit = vec![false; fds.len()];
        if sys::poll(&fds, deadline, &mut hit).is_err() {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        drop(fds);
        if hit[0] {
            return; // the listener was dropped
        }
        let now = Instant::now();
        let mut keep = Vec::with_capacity(pending.len());
        for (mut p, hit) in pending.drain(..).zip(hit[first..].iter().copied()) {
            if !hit {
                if now < p.deadline {
                    keep.push(p);
                }
                continue;
            }
            match p.step(&server) {
                Step::More if now < p.deadline => keep.push(p),
                Step::More | Step::Drop => {}
                Step::Done(ok) => {
                    if p.stream.set_nonblocking(false).is_ok() {
                        match ready.try_send((p.stream, ok)) {
                            Ok(()) | Err(TrySendError::Full(_)) => {}
                            Err(TrySendError::Disconnected(_)) => return,
                        }
                    }
                }
            }
        }
        pending = keep;
        if listening && hit[1] {
            paused_until = None;
            loop {
                let (stream, from) = match listener.accept() {
                    Ok(got) => got,
                    Err(e) if sys::is_out_of_fds(&e) => {
                        paused_until = Some(Instant::now() + pause);
                        pause = (pause * 2).min(Duration::from_secs(1));
                        break;
                    }
                    Err(_) => break,
                };
                pause = Duration::from_millis(10);
                if !(stream.set_nonblocking(true).is_ok() && stream.set_nodelay(true).is_ok()) {
                    continue;
                }
                if !make_room(&mut pending, from.ip(), cap) {
                    continue;
                }
                pending.push(Pending {
                    stream,
                    peer: from.ip(),
                    buf: Vec::new(),
                    replied: None,
                    deadline: Instant::now() + timeout,
                });
            }
        }
    }
}
