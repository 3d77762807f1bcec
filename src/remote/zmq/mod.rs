//! procwire channels over ZeroMQ sockets (REQ/REP, PUSH/PULL,
//! DEALER/ROUTER), through the pure-Rust `zeromq` crate, which speaks
//! ZMTP 3 and interoperates with libzmq (pyzmq, czmq, …).
//!
//! Each message is one ZeroMQ frame holding one wire-format payload (the
//! channel's codec: MessagePack for peers in other languages). A ROUTER
//! also sees the envelope (the peer's identity, and the empty delimiter a
//! REQ peer adds) as a [`Peer`] to reply to.
//!
//! ```
//! use procwire::zmq::{self, Kind};
//! # fn main() -> procwire::Result<()> {
//! let net = procwire::Net::new();
//! let rep = zmq::bind::<String, String>(Kind::Rep, "zmq+tcp://127.0.0.1:0", &net)?;
//! let addr = rep.endpoint().to_string();
//! let server = std::thread::spawn(move || -> procwire::Result<()> {
//!     let job = rep.recv()?;
//!     rep.send(format!("{job} accomplished!"))?; // a failed send hands the String back
//!     Ok(())
//! });
//! let req = zmq::connect::<String, String>(Kind::Req, &addr, &net)?;
//! assert_eq!(req.request("Heavy lifting".into())?, "Heavy lifting accomplished!");
//! server.join().unwrap()?;
//! # Ok(())
//! # }
//! ```
//!
//! How it works: a socket lives on procwire's background runtime (one
//! worker thread, `procwire-net`, for every ZeroMQ socket and NATS client
//! of the process); a task
//! carries messages between it and one end of a stream socket pair whose
//! other end is an ordinary procwire channel. So everything a channel does
//! (deadlines, `try_recv`, codecs, [`Select`](crate::Select)) works here.
//!
//! Two limits of the `zeromq` crate:
//! - it reserves memory for whatever frame length a peer declares, before
//!   the bytes arrive, so anyone who reaches a ZeroMQ port can make this
//!   process allocate without bound. procwire therefore binds ZeroMQ only
//!   to loopback or `ipc` unless [`Net::force_public_zmq`](crate::Net::force_public_zmq)
//!   says otherwise; across machines, prefer `tcp://` (authenticated, with
//!   frames checked against `max_frame` before any allocation), or tunnel.
//! - it fails to bind to an `ipc` path where a stale socket file is left
//!   (libzmq removes it). procwire removes a stale one first, and refuses a
//!   path where a live listener answers, or that is not a socket.
//!
//! Sending on a closed socket, a multipart message where one frame was
//! expected, or a peer that breaks the REQ/REP turn-taking ends the channel
//! with an error that says which.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) mod bridge;
mod router;
pub use router::{Peer, Router};

use bridge::{Link, Zsock, carry};

use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, RecvError, RecvTimeoutError, Result, SendError};
use crate::{ByteBuf, CodecKind, Duplex, Kind as SocketKind, Net, Options};

/// A ZeroMQ socket type.
///
/// # Examples
///
/// ```
/// use procwire::zmq::{self, Kind};
///
/// let net = procwire::Net::new();
/// let pull = zmq::bind::<(), u32>(Kind::Pull, "zmq+tcp://127.0.0.1:0", &net)?;
/// let push = zmq::connect::<u32, ()>(Kind::Push, &pull.endpoint().to_string(), &net)?;
/// push.send(7).map_err(|e| e.into_error())?;
/// assert_eq!(pull.recv()?, 7);
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// Sends a request, then receives its reply, in turn.
    Req,
    /// Receives a request, then sends its reply, in turn.
    Rep,
    /// Sends only, round-robin to its PULL peers.
    Push,
    /// Receives only, fairly from its PUSH peers.
    Pull,
    /// Sends and receives freely (to ROUTER peers).
    Dealer,
    /// Use [`bind_router`] / [`connect_router`]: every message comes with
    /// the [`Peer`] that sent it.
    Router,
}

/// How long dropping a socket waits for what was sent on it to be handed
/// to ZeroMQ.
const LINGER: Duration = Duration::from_secs(5);

/// A socket's hold on the runtime and its bridge task. Dropped after the
/// channel (whose end of stream ends the task): waits up to [`LINGER`] for
/// the task to hand over what was sent, then lets the runtime go if this
/// was its last socket.
#[derive(Debug)]
struct Held {
    rt: Option<Arc<tokio::runtime::Runtime>>,
    done: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let done = self
            .done
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = done.recv_timeout(LINGER);
        if let Some(rt) = self.rt.take() {
            crate::background::release(rt);
        }
    }
}

pub(crate) fn zmq_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("{what}: {e}"))
}

/// A procwire channel over a ZeroMQ socket.
///
/// `recv` on a PUSH socket and `send` on a PULL socket are errors; REQ and
/// REP must take turns (a REQ sends, then receives).
///
/// # Examples
///
/// ```
/// use procwire::zmq::{self, Kind};
///
/// let net = procwire::Net::new();
/// let rep = zmq::bind::<u32, u32>(Kind::Rep, "zmq+tcp://127.0.0.1:0", &net)?;
/// let req = zmq::connect::<u32, u32>(Kind::Req, &rep.endpoint().to_string(), &net)?;
/// let server = std::thread::spawn(move || rep.send(rep.recv().unwrap() * 2).unwrap());
/// assert_eq!(req.request(21)?, 42);
/// server.join().unwrap();
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct Channel<Out, In> {
    // Dropped in this order: the channel's end of stream ends the bridge.
    duplex: Duplex<Out, In>,
    endpoint: Endpoint,
    bridge: Arc<Bridge>,
    _held: Held,
}

/// What the task that carries a socket's messages left behind.
#[derive(Debug, Default)]
struct Bridge {
    error: Mutex<Option<String>>,
}

impl Bridge {
    fn explain(&self, e: Error) -> Error {
        let why = self
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match why {
            Some(w) if e.is_disconnected() => e.because(&w),
            _ => e,
        }
    }
}

impl<Out: Serialize + DeserializeOwned, In: Serialize + DeserializeOwned> Channel<Out, In> {
    /// Sends one message (one frame). On failure the message comes back
    /// inside the error, as from [`Sender::send`](crate::Sender::send).
    pub fn send(&self, value: Out) -> Result<(), SendError<Out>> {
        self.duplex.send(value).map_err(|e| {
            let (value, why) = e.into_parts();
            SendError::new(value, self.bridge.explain(why))
        })
    }

    /// Waits for the next message.
    pub fn recv(&self) -> Result<In, RecvError> {
        self.duplex
            .recv()
            .map_err(|e| RecvError::new(self.bridge.explain(e.into_error())))
    }

    /// Waits at most `timeout` for the next message.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<In, RecvTimeoutError> {
        self.duplex
            .recv_timeout(timeout)
            .map_err(|e| RecvTimeoutError::new(self.bridge.explain(e.into_error())))
    }

    /// Sends `value` and waits for the next message (a REQ's turn).
    pub fn request(&self, value: Out) -> Result<In> {
        self.send(value)?;
        Ok(self.recv()?)
    }

    /// The address the socket is bound or connected to (with the port the
    /// system chose, if it was 0).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The underlying channel (for [`rpc`](crate::rpc) or
    /// [`Select`](crate::Select)); errors it returns lack the bridge's
    /// explanation.
    pub fn duplex(&self) -> &Duplex<Out, In> {
        &self.duplex
    }
}

impl<Out, In> std::fmt::Debug for Channel<Out, In> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("zmq::Channel")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Binds a socket of `kind` (not ROUTER) at `addr` (`zmq+tcp://` on
/// loopback, or `zmq+ipc://`).
///
/// # Examples
///
/// ```
/// use procwire::zmq::{self, Kind};
///
/// // Only loopback and ipc, unless Net::force_public_zmq says otherwise.
/// let e = zmq::bind::<(), ()>(Kind::Pull, "zmq+tcp://0.0.0.0:0", &procwire::Net::new()).unwrap_err();
/// assert_eq!(e.kind(), procwire::ErrorKind::Refused);
/// ```
pub fn bind<Out, In>(kind: Kind, addr: &str, net: &Net) -> Result<Channel<Out, In>>
where
    Out: Serialize + DeserializeOwned,
    In: Serialize + DeserializeOwned,
{
    open(kind, addr, net, true)
}

/// Connects a socket of `kind` (not ROUTER) to `addr`.
pub fn connect<Out, In>(kind: Kind, addr: &str, net: &Net) -> Result<Channel<Out, In>>
where
    Out: Serialize + DeserializeOwned,
    In: Serialize + DeserializeOwned,
{
    open(kind, addr, net, false)
}

/// Binds a ROUTER socket at `addr`.
pub fn bind_router<Out: Serialize, In: DeserializeOwned>(
    addr: &str,
    net: &Net,
) -> Result<Router<Out, In>> {
    router(addr, net, true)
}

/// Connects a ROUTER socket to `addr`.
pub fn connect_router<Out: Serialize, In: DeserializeOwned>(
    addr: &str,
    net: &Net,
) -> Result<Router<Out, In>> {
    router(addr, net, false)
}

fn router<Out, In>(addr: &str, net: &Net, bind: bool) -> Result<Router<Out, In>> {
    let raw = net.options.clone().codec(CodecKind::Raw);
    let s = start(Kind::Router, addr, &raw, net, bind)?;
    Ok(Router {
        duplex: s.duplex,
        codec: net.options.codec_kind(),
        endpoint: s.endpoint,
        bridge: s.bridge,
        _held: s.held,
        _marker: std::marker::PhantomData,
    })
}

fn open<Out, In>(kind: Kind, addr: &str, net: &Net, bind: bool) -> Result<Channel<Out, In>>
where
    Out: Serialize + DeserializeOwned,
    In: Serialize + DeserializeOwned,
{
    if kind == Kind::Router {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "a ROUTER gives each message with its sender: use zmq::bind_router or connect_router",
        ));
    }
    let s = start(kind, addr, &net.options, net, bind)?;
    Ok(Channel {
        duplex: s.duplex,
        endpoint: s.endpoint,
        bridge: s.bridge,
        _held: s.held,
    })
}

/// The address in the `zeromq` crate's syntax, after procwire's policy:
/// loopback only unless forced; a stale `ipc` socket file removed.
pub(crate) fn zmq_address(endpoint: &Endpoint, net: &Net, bind: bool) -> Result<String> {
    match endpoint {
        Endpoint::ZmqTcp(hp) => {
            if bind && !net.public_zmq {
                let loopback =
                    std::net::ToSocketAddrs::to_socket_addrs(&(hp.host.as_str(), hp.port))
                        .map_err(|e| Error::io(&format!("resolving {hp}"), e))?
                        .all(|a| a.ip().is_loopback());
                if !loopback {
                    return Err(Error::new(
                        ErrorKind::Refused,
                        format!(
                            "binding ZeroMQ to {hp}, which is not loopback: the zeromq crate \
                             allocates whatever frame length a peer declares, so procwire binds \
                             ZeroMQ to loopback or ipc only, unless Net::force_public_zmq"
                        ),
                    ));
                }
            }
            Ok(format!("tcp://{hp}"))
        }
        Endpoint::ZmqIpc(path) => {
            if bind {
                remove_stale(path)?;
            }
            Ok(format!("ipc://{}", path.display()))
        }
        e => Err(Error::new(
            ErrorKind::InvalidInput,
            format!("`{e}` is not a ZeroMQ endpoint (zmq+tcp:// or zmq+ipc://)"),
        )),
    }
}

/// Removes a socket file nobody listens on (what libzmq does before an
/// `ipc` bind); a live one is `AddrInUse`, anything else is left alone.
fn remove_stale(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(Error::new(
            ErrorKind::AddrInUse,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(Error::new(
            ErrorKind::AddrInUse,
            format!("a live listener answers at {}", path.display()),
        )),
        Err(_) => std::fs::remove_file(path)
            .map_err(|e| Error::io(&format!("removing the stale socket {}", path.display()), e)),
    }
}

/// A socket opened and its bridge running.
struct Started<Out, In> {
    duplex: Duplex<Out, In>,
    endpoint: Endpoint,
    bridge: Arc<Bridge>,
    held: Held,
}

/// Opens the socket on the runtime and starts the task that carries its
/// messages to the procwire channel it returns.
fn start<Out, In>(
    kind: Kind,
    addr: &str,
    link_opts: &Options,
    net: &Net,
    bind: bool,
) -> Result<Started<Out, In>>
where
    Out: Serialize + DeserializeOwned,
    In: Serialize + DeserializeOwned,
{
    let endpoint: Endpoint = addr.parse()?;
    let zaddr = zmq_address(&endpoint, net, bind)?;
    let rt = crate::background::runtime()?;
    let what = format!(
        "{} ZeroMQ {kind:?} at {addr}",
        if bind { "binding" } else { "connecting" }
    );
    let mut sock = Zsock::new_in(&rt, kind);
    let (ours, theirs) =
        crate::socket::socket_pair(SocketKind::Stream).map_err(|e| Error::io(&what, e))?;
    let duplex: Duplex<Out, In> = link_opts.duplex_from(ours)?;
    let theirs = std::os::unix::net::UnixStream::from(OwnedFd::from(theirs));
    theirs
        .set_nonblocking(true)
        .map_err(|e| Error::io(&what, e))?;
    let bridge = Arc::new(Bridge::default());
    let report = Arc::clone(&bridge);
    let max = link_opts.max_frame_len();
    let link = {
        let _guard = rt.enter();
        tokio::net::UnixStream::from_std(theirs).map_err(|e| Error::io(&what, e))?
    };
    let (done_tx, done) = std::sync::mpsc::channel();
    // The bind or connect runs on procwire's runtime, its outcome comes
    // back over a plain channel: `Runtime::block_on` would panic when the
    // caller is itself inside a tokio runtime.
    let (bound_tx, bound_rx) = std::sync::mpsc::sync_channel(1);
    let limit = net.connect_timeout;
    rt.spawn(async move {
        let bound = tokio::time::timeout(limit, sock.bind_or_connect(&zaddr, bind)).await;
        let ok = matches!(bound, Ok(Ok(_)));
        let _ = bound_tx.send(bound.map(|r| r.map_err(|e| e.to_string())));
        if !ok {
            return;
        }
        let (mut link, out) = Link::new(link, max);
        if let Err(why) = carry(sock, &mut link, &out).await {
            *report
                .error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
        }
        // Only now does the application see the end: its error can say why.
        drop((link, out));
        let _ = done_tx.send(());
    });
    let bound = bound_rx
        .recv_timeout(limit + Duration::from_secs(5))
        .map_err(|_| Error::new(ErrorKind::Timeout, format!("{what}: timed out")))?
        .map_err(|_| Error::new(ErrorKind::Timeout, format!("{what}: timed out")))?
        .map_err(|e| zmq_error(&what, e))?;
    let endpoint = match bound {
        Some(b) => parse_zmq_endpoint(&b).unwrap_or(endpoint),
        None => endpoint,
    };
    let held = Held {
        rt: Some(rt),
        done: Mutex::new(done),
    };
    Ok(Started {
        duplex,
        endpoint,
        bridge,
        held,
    })
}

pub(crate) fn parse_zmq_endpoint(s: &str) -> Option<Endpoint> {
    if let Some(rest) = s.strip_prefix("tcp://") {
        format!("zmq+tcp://{rest}").parse().ok()
    } else {
        s.strip_prefix("ipc://")
            .and_then(|p| format!("zmq+ipc://{p}").parse().ok())
    }
}
