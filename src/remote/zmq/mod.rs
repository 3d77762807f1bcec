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
//! How it works: each socket has a tokio runtime of its own (current-thread).
//! A `send` or `recv` drives it on the caller's thread, so a message goes
//! between the caller and the kernel with no other thread in between, as
//! with the `zeromq` crate driven by hand; between calls a thread of the
//! socket's (`procwire-zmq`) drives it, so that peers are accepted and what
//! was sent is written while the application does something else, and
//! hands it back when a call comes (only after 1 ms without calls: calls
//! in quick succession never wait for it). A blocking call made on a thread
//! of a tokio runtime, where driving another runtime would panic, runs on a
//! thread of its own instead. Deadlines (`recv_timeout`) are the runtime's
//! timers. For [`Select`](crate::Select), `try_recv` or [`rpc`](crate::rpc),
//! [`Channel::duplex`] turns the socket into an ordinary procwire channel:
//! a task carries its messages to and from one end of a stream socket pair
//! (two hand-overs a message more, from then on). Dropping a socket lets
//! what was sent on it be written, for up to 5 seconds.
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

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use zeromq::ZmqMessage;

pub(crate) mod bridge;
mod driven;
pub(crate) mod endpoints;
pub(crate) mod router;
pub(crate) mod socket;
pub use router::{Peer, Router};

use bridge::{Link, carry};
use driven::Driven;
use socket::{Opened, Socket, decode, encode};

use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, RecvError, RecvTimeoutError, Result, SendError};
use crate::{Duplex, Net, Options};

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
    // Dropped in this order: the bridge's channel first (its end of stream
    // ends the bridge), then the socket, then the runtime, which lets what
    // was sent be written.
    bridged: OnceLock<Box<Bridged<Out, In>>>,
    open: Arc<Opened>,
    kind: Kind,
    /// The options the bridge's channel is made with.
    options: Options,
    driven: Driven,
}

/// A channel's bridge (made by [`Channel::duplex`]) and what its task left
/// behind.
struct Bridged<Out, In> {
    duplex: Duplex<Out, In>,
    bridge: Arc<Bridge>,
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
        match self.send_ref(&value) {
            Ok(()) => Ok(()),
            Err(e) => Err(SendError::new(value, e)),
        }
    }

    /// Sends `*value` without giving it up.
    pub fn send_ref(&self, value: &Out) -> Result<()> {
        if let Some(b) = self.bridged.get() {
            return b.duplex.send_ref(value).map_err(|e| b.bridge.explain(e));
        }
        let payload = encode(self.open.codec, value)?;
        self.driven
            .run(self.open.socket.send(ZmqMessage::from(payload)))?
    }

    /// Waits for the next message. A multipart message (procwire carries
    /// one payload frame per message) or one over the channel's maximum is
    /// an error, and the socket goes on.
    pub fn recv(&self) -> Result<In, RecvError> {
        if let Some(b) = self.bridged.get() {
            return b
                .duplex
                .recv()
                .map_err(|e| RecvError::new(b.bridge.explain(e.into_error())));
        }
        self.take(None).map_err(RecvError::new)
    }

    /// Waits at most `timeout` for the next message.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<In, RecvTimeoutError> {
        if let Some(b) = self.bridged.get() {
            return b
                .duplex
                .recv_timeout(timeout)
                .map_err(|e| RecvTimeoutError::new(b.bridge.explain(e.into_error())));
        }
        self.take(Some(timeout)).map_err(RecvTimeoutError::new)
    }

    /// The next message off the socket, on this thread.
    fn take(&self, timeout: Option<Duration>) -> Result<In> {
        let m = self.driven.run(receive(&self.open.socket, timeout))??;
        self.open.payload(m)
    }

    /// Sends `value` and waits for the next message (a REQ's turn).
    pub fn request(&self, value: Out) -> Result<In> {
        self.send(value)?;
        Ok(self.recv()?)
    }

    /// The address the socket is bound or connected to (with the port the
    /// system chose, if it was 0).
    pub fn endpoint(&self) -> &Endpoint {
        &self.open.endpoint
    }

    /// The socket as an ordinary procwire channel (for [`rpc`](crate::rpc),
    /// [`Select`](crate::Select), `try_recv`, descriptors' errors): made on
    /// the first call, by a task on the socket's runtime that carries its
    /// messages to and from a stream socket pair. From then on every
    /// message of this channel goes that way, two hand-overs more than a
    /// plain `send` or `recv` makes; errors the duplex returns lack the
    /// bridge's explanation, which this channel's own methods add.
    ///
    /// # Errors
    ///
    /// If the socket pair cannot be made (descriptors exhausted).
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::zmq::{self, Kind};
    /// use std::time::Duration;
    ///
    /// let net = procwire::Net::new();
    /// let pull = zmq::bind::<(), u32>(Kind::Pull, "zmq+tcp://127.0.0.1:0", &net)?;
    /// let push = zmq::connect::<u32, ()>(Kind::Push, &pull.endpoint().to_string(), &net)?;
    /// let mut sel = procwire::Select::new();
    /// let i = sel.recv(pull.duplex()?.receiver());
    /// push.send(7).map_err(|e| e.into_error())?;
    /// assert_eq!(sel.ready_timeout(Duration::from_secs(10))?, i);
    /// assert_eq!(pull.recv_timeout(Duration::from_secs(10))?, 7);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn duplex(&self) -> Result<&Duplex<Out, In>> {
        if let Some(b) = self.bridged.get() {
            return Ok(&b.duplex);
        }
        let made = self.bridge()?;
        // Two threads may both have made one: the first to land is kept,
        // the other's end of stream ends its task.
        Ok(&self.bridged.get_or_init(|| Box::new(made)).duplex)
    }

    fn bridge(&self) -> Result<Bridged<Out, In>> {
        let what = "bridging a ZeroMQ socket to a procwire channel";
        let (ours, theirs) = bridge::pair().map_err(|e| Error::io(what, e))?;
        let duplex: Duplex<Out, In> = self.options.duplex_from(ours)?;
        let bridge = Arc::new(Bridge::default());
        let (report, open, kind) = (Arc::clone(&bridge), Arc::clone(&self.open), self.kind);
        let max = self.options.max_frame_len();
        self.driven.spawn(async move {
            let keep = |why: String| {
                *report
                    .error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
            };
            match Link::open(theirs, max) {
                Ok((mut link, out)) => {
                    if let Err(why) = carry(&open.socket, kind, &mut link, &out).await {
                        keep(why);
                    }
                    // Only now does the application see the end: its error
                    // can say why.
                    drop((link, out));
                }
                Err(e) => keep(format!("{what}: {e}")),
            }
        });
        Ok(Bridged { duplex, bridge })
    }
}

/// The next message off `socket`, within `timeout` if one is given.
async fn receive(socket: &Socket, timeout: Option<Duration>) -> Result<ZmqMessage> {
    match timeout {
        None => socket.recv().await,
        Some(t) => tokio::time::timeout(t, socket.recv()).await.map_err(|_| {
            Error::new(
                ErrorKind::Timeout,
                format!("no ZeroMQ message came within {t:?}"),
            )
        })?,
    }
}

impl<Out, In> std::fmt::Debug for Channel<Out, In> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("zmq::Channel")
            .field("endpoint", &self.open.endpoint)
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
    let (open, driven) = opened(Kind::Router, addr, net, bind)?;
    Ok(Router {
        open,
        driven,
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
    let (open, driven) = opened(kind, addr, net, bind)?;
    Ok(Channel {
        bridged: OnceLock::new(),
        open: Arc::new(open),
        kind,
        options: net.options.clone(),
        driven,
    })
}

/// A socket of `kind` opened on a runtime of its own (the policy checked
/// on this thread first).
fn opened(kind: Kind, addr: &str, net: &Net, bind: bool) -> Result<(Opened, Driven)> {
    let endpoint: Endpoint = addr.parse()?;
    let zaddr = zmq_address(&endpoint, net, bind)?;
    let linger = match kind {
        Kind::Pull => Duration::ZERO,
        _ => driven::LINGER,
    };
    let driven = Driven::new(linger)?;
    let open = driven.run(Opened::new(kind, addr, &zaddr, net, bind))??;
    Ok((open, driven))
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

pub(crate) fn parse_zmq_endpoint(s: &str) -> Option<Endpoint> {
    if let Some(rest) = s.strip_prefix("tcp://") {
        format!("zmq+tcp://{rest}").parse().ok()
    } else {
        s.strip_prefix("ipc://")
            .and_then(|p| format!("zmq+ipc://{p}").parse().ok())
    }
}
