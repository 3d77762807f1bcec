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
use super::handshakes::Handshakes;
use super::{Endpoint, HostPort, Key, Net};
use crate::Duplex;
use crate::channel::SendCore;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, Interest};
use crate::transport::Conn;

/// Authenticated connections waiting for `accept`; beyond this new ones
/// are closed.
const QUEUE: usize = 128;

pub(crate) fn millis(d: Duration) -> u32 {
    d.as_millis().clamp(1, u128::from(u32::MAX)) as u32
}

fn refused(what: &str, why: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Refused, format!("{what}: {why}"))
}

/// The addresses `hp` names.
pub(crate) fn resolve(hp: &HostPort) -> Result<Vec<SocketAddr>> {
    resolved(hp, (hp.host.as_str(), hp.port).to_socket_addrs())
}

/// What a lookup of `hp` found: an error, or no address, is an error.
pub(crate) fn resolved(
    hp: &HostPort,
    found: io::Result<impl Iterator<Item = SocketAddr>>,
) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = found
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
pub(crate) fn allowed(addr: &SocketAddr, key: Option<&Key>, what: &str) -> Result<()> {
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
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut w = crate::frame::FrameWriter::new(Vec::with_capacity(4 + payload.len()));
    // Our own payloads, at most a few dozen bytes, into memory: cannot fail.
    w.send(payload).expect("a handshake frame fits");
    w.into_inner()
}

/// Reads one handshake frame (blocking, under the stream's timeouts).
fn read_frame(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; frame_len(len)?];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// The length a handshake frame's prefix announces, if it is allowed.
pub(crate) fn frame_len(prefix: [u8; 4]) -> io::Result<usize> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_HANDSHAKE_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a handshake frame of {len} bytes (at most {MAX_HANDSHAKE_FRAME})"),
        ));
    }
    Ok(len)
}

/// Turns an authenticated stream (blocking) into a channel, and the
/// watcher its driver must run.
pub(crate) fn connection<Out, In>(
    stream: TcpStream,
    ok: auth::Accepted,
    client: bool,
    net: &Net,
) -> Result<(Duplex<Out, In>, Watch)>
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
    let watch = Watch {
        send: Arc::downgrade(duplex.sender().core()),
        conn: Arc::downgrade(&conn),
        ours: net.heartbeat,
        tick: (net.heartbeat.min(peer_heartbeat) / 4).max(Duration::from_millis(1)),
        queued: 0,
        next_beat: Instant::now(),
    };
    Ok((duplex, watch))
}

/// Turns an authenticated stream into a channel, with its watcher thread.
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
    let (duplex, mut watch) = connection(stream, ok, client, net)?;
    let spawned = std::thread::Builder::new()
        .name("procwire-heartbeat".into())
        .spawn(move || {
            while {
                std::thread::sleep(watch.tick());
                watch.look()
            } {}
        });
    // Without a thread there are no heartbeats: the peer will call this end
    // silent, which is the truth about it.
    drop(spawned);
    Ok(duplex)
}

/// The watcher of one connection: a heartbeat every `ours`, and a check
/// every quarter of the peer's interval that it has not been silent for
/// 2¾ of them, so that a frozen or vanished peer is reported within three
/// of its intervals. It ends when the connection's last end is dropped.
/// Its driver calls [`look`](Watch::look) every [`tick`](Watch::tick).
#[derive(Debug)]
pub(crate) struct Watch {
    send: Weak<SendCore>,
    conn: Weak<Conn>,
    ours: Duration,
    tick: Duration,
    queued: u64,
    next_beat: Instant,
}

impl Watch {
    /// How long to sleep between looks.
    pub(crate) fn tick(&self) -> Duration {
        self.tick
    }

    /// Sends a heartbeat if one is due and checks the peer's silence,
    /// never blocking; `false` once the connection is gone (stop).
    pub(crate) fn look(&mut self) -> bool {
        let Some(conn) = self.conn.upgrade() else {
            return false;
        };
        if Instant::now() >= self.next_beat {
            if let Some(s) = self.send.upgrade() {
                s.heartbeat();
            }
            self.next_beat = Instant::now() + self.ours;
        }
        conn.check_silence(&mut self.queued);
        true
    }
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

/// What an I/O failure during the client's handshake means.
pub(crate) fn handshake_error(what: &str, net: &Net, e: io::Error) -> Error {
    match e.kind() {
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
                "{what}: the server closed the connection during the handshake without \
                 refusing it (overloaded, or not a procwire endpoint)"
            ),
            e,
        ),
        _ => Error::io(what, e),
    }
}

/// What the server's reply to our HELLO means when it does not complete
/// the handshake.
pub(crate) fn reply_error(what: &str, r: auth::Refused) -> Error {
    match r {
        auth::Refused::ByServer(_) | auth::Refused::KeyMismatch { .. } => refused(what, r),
        r => Error::new(ErrorKind::Decode, format!("{what}: {r}")),
    }
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
    let io_err = |e: io::Error| handshake_error(what, net, e);
    s.set_nodelay(true).map_err(io_err)?;
    s.set_read_timeout(Some(net.handshake_timeout))
        .map_err(io_err)?;
    s.set_write_timeout(Some(net.handshake_timeout))
        .map_err(io_err)?;
    let (client, hello) = auth::Client::new(key.map(Key::bytes), millis(net.heartbeat));
    s.write_all(&frame(&hello)).map_err(io_err)?;
    let reply = read_frame(&mut s).map_err(io_err)?;
    let (ok, confirm) = client.finish(&reply).map_err(|r| reply_error(what, r))?;
    s.write_all(&frame(&confirm)).map_err(io_err)?;
    s.set_read_timeout(None).map_err(io_err)?;
    s.set_write_timeout(None).map_err(io_err)?;
    channel(s, ok, true, net)
}

/// A `tcp://` listener (see [`Listener`](crate::Listener)): its
/// handshakes run in a thread of its own.
#[derive(Debug)]
pub(crate) struct TcpAcceptor {
    local: SocketAddr,
    queue: Mutex<Receiver<Accepted>>,
    /// Dropping it (the write end of a pipe) stops the thread.
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<Handshakes<()>>>,
}

/// A connection whose handshake is complete, waiting for `accept`.
pub(crate) type Accepted = (TcpStream, auth::Accepted);

/// The listening socket for `hp` (non-blocking), its handshakes to be
/// answered with `key`; the key is resolved by the caller (it may read a
/// file).
pub(crate) fn bind(
    hp: &HostPort,
    addrs: &[SocketAddr],
    key: Option<&Key>,
    net: &Net,
) -> Result<Handshakes<()>> {
    let what = format!("listening at tcp://{hp}");
    for a in addrs {
        allowed(a, key, &what)?;
    }
    let listener = TcpListener::bind(addrs).map_err(|e| Error::io(&what, e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io(&what, e))?;
    Ok(Handshakes::new(
        listener,
        key,
        net.heartbeat,
        net.handshake_timeout,
    ))
}

/// The endpoint a listening socket has (with the port the system chose).
pub(crate) fn local_endpoint(local: SocketAddr) -> Endpoint {
    Endpoint::Tcp(HostPort {
        host: local.ip().to_string(),
        port: local.port(),
    })
}

impl TcpAcceptor {
    pub(crate) fn bind(hp: &HostPort, net: &Net) -> Result<TcpAcceptor> {
        let key = net.resolve_key()?;
        let handshakes = bind(hp, &resolve(hp)?, key.as_ref(), net)?;
        TcpAcceptor::resume(handshakes, Vec::new())
    }

    /// A thread for `handshakes`, with connections already accepted.
    pub(crate) fn resume(
        handshakes: Handshakes<()>,
        accepted: Vec<Accepted>,
    ) -> Result<TcpAcceptor> {
        let what = "starting a tcp:// listener's handshake thread";
        let local = handshakes
            .listener()
            .local_addr()
            .map_err(|e| Error::io(what, e))?;
        let (stop_r, stop_w) = sys::pipe().map_err(|e| Error::io(what, e))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        for a in accepted {
            let _ = tx.try_send(a);
        }
        let thread = std::thread::Builder::new()
            .name("procwire-accept".into())
            .spawn(move || serve(handshakes, stop_r, tx))
            .map_err(|e| Error::io(what, e))?;
        Ok(TcpAcceptor {
            local,
            queue: Mutex::new(rx),
            stop: Some(stop_w),
            thread: Some(thread),
        })
    }

    /// Stops the thread: the handshakes under way, and the connections
    /// accepted but not yet taken, for another driver.
    #[cfg(feature = "tokio")]
    pub(crate) fn stop(mut self) -> Result<(Handshakes<()>, Vec<Accepted>)> {
        self.stop.take();
        let thread = self.thread.take().expect("present until stopped");
        let handshakes = thread
            .join()
            .map_err(|_| Error::new(ErrorKind::Io, "the listener's handshake thread panicked"))?;
        let queue = self
            .queue
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok((handshakes, queue.try_iter().collect()))
    }

    pub(crate) fn endpoint(&self) -> Endpoint {
        local_endpoint(self.local)
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

/// The handshake thread: accepts, answers HELLOs and checks CONFIRMs as
/// their bytes arrive, all connections in one poll(2), each under its
/// deadline, until `stop` reads the end of the pipe (or nobody takes
/// connections any more); then hands the handshakes back.
fn serve(mut hs: Handshakes<()>, stop: OwnedFd, ready: SyncSender<Accepted>) -> Handshakes<()> {
    loop {
        let listening = hs.listening(Instant::now());
        let mut fds = vec![(stop.as_fd(), Interest::Read)];
        if listening {
            fds.push((hs.listener().as_fd(), Interest::Read));
        }
        let first = fds.len();
        fds.extend(hs.streams().map(|s| (s.as_fd(), Interest::Read)));
        let mut hit = vec![false; fds.len()];
        if sys::poll(&fds, hs.deadline(), &mut hit).is_err() {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        drop(fds);
        if hit[0] {
            return hs; // the listener was dropped or stopped
        }
        let go_on = hs.advance(
            listening && hit[1],
            |i, ()| hit[first + i],
            |_| Some(()),
            |stream, ok| {
                !matches!(
                    ready.try_send((stream, ok)),
                    Err(TrySendError::Disconnected(_))
                )
            },
        );
        if !go_on {
            return hs;
        }
    }
}
