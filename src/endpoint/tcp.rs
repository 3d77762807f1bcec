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

/// Handshakes in progress at once; beyond this the oldest is dropped.
const MAX_PENDING: usize = 1024;
/// Authenticated connections waiting for `accept`; beyond this new ones
/// are closed.
const QUEUE: usize = 128;

fn nonce() -> io::Result<[u8; 32]> {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).map_err(|e| io::Error::other(format!("no randomness: {e}")))?;
    Ok(n)
}

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
    peer_heartbeat: Duration,
    net: &Net,
) -> Result<Duplex<Out, In>>
where
    Out: Serialize + DeserializeOwned,
    In: Serialize + DeserializeOwned,
{
    // The heartbeat prefix is reserved: `check_max` keeps every maximum
    // frame below it (crate::frame::MAX_FRAME_LIMIT).
    let fd: OwnedFd = stream.into();
    let conn = Arc::new(Conn::tcp(fd, peer_heartbeat, net.options.linger_time()));
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
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => refused(
            what,
            "the server closed the connection during the handshake (it refused our key, \
             or it is not a procwire endpoint)",
        ),
        _ => Error::io(what, e),
    };
    s.set_nodelay(true).map_err(io_err)?;
    s.set_read_timeout(Some(net.handshake_timeout))
        .map_err(io_err)?;
    s.set_write_timeout(Some(net.handshake_timeout))
        .map_err(io_err)?;
    let mut client = auth::Client::new(
        key.map(Key::bytes),
        nonce().map_err(io_err)?,
        millis(net.heartbeat),
    );
    let hello = read_frame(&mut s).map_err(io_err)?;
    let answer = client.answer(&hello).map_err(|r| refused(what, r))?;
    s.write_all(&frame(&answer)).map_err(io_err)?;
    let proof = read_frame(&mut s).map_err(io_err)?;
    let ok = client.verify(&proof).map_err(|r| refused(what, r))?;
    s.set_read_timeout(None).map_err(io_err)?;
    s.set_write_timeout(None).map_err(io_err)?;
    channel(
        s,
        Duration::from_millis(u64::from(ok.peer_heartbeat_ms)),
        net,
    )
}

/// A connection whose handshake is under way.
struct Pending {
    stream: TcpStream,
    server: auth::Server,
    buf: Vec<u8>,
    deadline: Instant,
}

/// What a pending handshake did with the bytes that came.
enum Step {
    More,
    Done(auth::Accepted),
    Drop,
}

impl Pending {
    fn step(&mut self) -> Step {
        // At most two reads: the rest of the prefix, then the payload.
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
                return match self.server.check(&self.buf[4..]) {
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
}

/// A `tcp://` listener (see [`Listener`](crate::Listener)).
#[derive(Debug)]
pub(crate) struct TcpAcceptor {
    local: SocketAddr,
    queue: Mutex<Receiver<(TcpStream, Duration)>>,
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
            Ok((stream, hb)) => channel(stream, hb, net),
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

/// The handshake thread: accepts, says HELLO, checks ANSWERs as their bytes
/// arrive, all connections in one poll(2), each under its deadline.
fn serve(
    listener: TcpListener,
    stop: OwnedFd,
    ready: SyncSender<(TcpStream, Duration)>,
    (key, heartbeat, timeout): (Option<Key>, Duration, Duration),
) {
    let mut pending: Vec<Pending> = Vec::new();
    loop {
        let mut fds = vec![
            (stop.as_fd(), Interest::Read),
            (listener.as_fd(), Interest::Read),
        ];
        fds.extend(pending.iter().map(|p| (p.stream.as_fd(), Interest::Read)));
        let deadline = pending.iter().map(|p| p.deadline).min();
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
        for (mut p, hit) in pending.drain(..).zip(hit[2..].iter().copied()) {
            if !hit {
                if now < p.deadline {
                    keep.push(p);
                }
                continue;
            }
            match p.step() {
                Step::More if now < p.deadline => keep.push(p),
                Step::More | Step::Drop => {}
                Step::Done(ok) => {
                    let hb = Duration::from_millis(u64::from(ok.peer_heartbeat_ms));
                    let sent = (&p.stream).write(&frame(&ok.proof));
                    if sent.is_ok_and(|n| n == 4 + ok.proof.len())
                        && p.stream.set_nonblocking(false).is_ok()
                    {
                        match ready.try_send((p.stream, hb)) {
                            Ok(()) | Err(TrySendError::Full(_)) => {}
                            Err(TrySendError::Disconnected(_)) => return,
                        }
                    }
                }
            }
        }
        pending = keep;
        if hit[1] {
            while let Ok((stream, _)) = listener.accept() {
                let Ok(n) = nonce() else { continue };
                let server = auth::Server::new(key.as_ref().map(Key::bytes), n, millis(heartbeat));
                let hello = frame(&server.hello());
                // A fresh socket's buffer takes the hello whole.
                let ok = stream.set_nonblocking(true).is_ok()
                    && stream.set_nodelay(true).is_ok()
                    && (&stream).write(&hello).is_ok_and(|n| n == hello.len());
                if !ok {
                    continue;
                }
                if pending.len() >= MAX_PENDING {
                    pending.remove(0);
                }
                pending.push(Pending {
                    stream,
                    server,
                    buf: Vec::new(),
                    deadline: Instant::now() + timeout,
                });
            }
        }
    }
}
