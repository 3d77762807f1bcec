//! ZeroMQ sockets, awaited (features `tokio` and `zmq`): the `zeromq`
//! crate's socket lives on *your* runtime and each `send`/`recv` awaits it
//! directly, with the channel's codec: no bridge task, no stream pair, no
//! runtime or thread of procwire's. The same kinds, addresses, loopback
//! policy and errors as the blocking [`crate::zmq`].
//!
//! ```
//! use procwire::zmq::Kind;
//! use procwire::tokio::zmq;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> procwire::Result<()> {
//! let net = procwire::Net::new();
//! let rep = zmq::bind::<String, String>(Kind::Rep, "zmq+tcp://127.0.0.1:0", &net).await?;
//! let req = zmq::connect::<String, String>(Kind::Req, &rep.endpoint().to_string(), &net).await?;
//! let server = tokio::spawn(async move {
//!     let job = rep.recv().await?;
//!     rep.send(format!("{job} accomplished!")).await.map_err(|e| e.into_error())
//! });
//! assert_eq!(req.request("Heavy lifting".into()).await?, "Heavy lifting accomplished!");
//! server.await.expect("no panic")?;
//! # Ok(())
//! # }
//! ```
//!
//! Cancellation: a `recv` dropped while it waits took no message; a `send`
//! dropped before it resolves may or may not have handed its message to
//! ZeroMQ (a message is one ZeroMQ frame: never torn either way). Tasks
//! sharing a socket take turns; a DEALER's or ROUTER's sends and receives
//! go on at once.

use std::marker::PhantomData;

use ::tokio::sync::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeromq::{SocketRecv, SocketSend, ZmqError, ZmqMessage};

use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, RecvError, Result, SendError};
use crate::remote::zmq::bridge::{Zsock, peer_failed, single};
use crate::remote::zmq::{parse_zmq_endpoint, zmq_address, zmq_error};
use crate::zmq::{Kind, Peer};
use crate::{CodecKind, Net};

/// The socket, as its sends and receives are awaited.
enum Socket {
    /// REQ and REP take turns, PUSH only sends, PULL only receives: one
    /// lock.
    Whole(Mutex<Zsock>),
    /// A DEALER or ROUTER sends and receives at once.
    Split {
        tx: Mutex<Box<dyn SocketSend + Send>>,
        rx: Mutex<Box<dyn SocketRecv + Send>>,
    },
}

fn z(e: ZmqError) -> Error {
    match e {
        ZmqError::NoMessage => Error::new(ErrorKind::Disconnected, "the ZeroMQ socket is closed"),
        e => zmq_error("ZeroMQ", e),
    }
}

impl Socket {
    async fn open(kind: Kind, addr: &str, net: &Net, bind: bool) -> Result<(Socket, Endpoint)> {
        let endpoint: Endpoint = addr.parse()?;
        // The policy looks the host up, and an ipc bind looks at the file
        // system: off the runtime's threads.
        let zaddr = {
            let (endpoint, net) = (endpoint.clone(), net.clone());
            ::tokio::task::spawn_blocking(move || zmq_address(&endpoint, &net, bind))
                .await
                .map_err(|e| Error::new(ErrorKind::Io, format!("checking {addr}: {e}")))??
        };
        let what = format!(
            "{} ZeroMQ {kind:?} at {addr}",
            if bind { "binding" } else { "connecting" }
        );
        let mut sock = Zsock::new(kind);
        let bound = ::tokio::time::timeout(net.connect_timeout, sock.bind_or_connect(&zaddr, bind))
            .await
            .map_err(|_| Error::new(ErrorKind::Timeout, format!("{what}: timed out")))?
            .map_err(|e| zmq_error(&what, e))?;
        let endpoint = bound
            .and_then(|b| parse_zmq_endpoint(&b))
            .unwrap_or(endpoint);
        let socket = match sock {
            Zsock::Dealer(s) => {
                let (tx, rx) = s.split();
                Socket::Split {
                    tx: Mutex::new(Box::new(tx)),
                    rx: Mutex::new(Box::new(rx)),
                }
            }
            Zsock::Router(s) => {
                let (tx, rx) = s.split();
                Socket::Split {
                    tx: Mutex::new(Box::new(tx)),
                    rx: Mutex::new(Box::new(rx)),
                }
            }
            whole => Socket::Whole(Mutex::new(whole)),
        };
        Ok((socket, endpoint))
    }

    async fn send(&self, m: ZmqMessage) -> Result<()> {
        match self {
            Socket::Split { tx, .. } => tx.lock().await.send(m).await.map_err(z),
            Socket::Whole(s) => match &mut *s.lock().await {
                Zsock::Req(s) => s.send(m).await.map_err(z),
                Zsock::Rep(s) => s.send(m).await.map_err(z),
                Zsock::Push(s) => s.send(m).await.map_err(z),
                Zsock::Pull(_) => Err(Error::new(
                    ErrorKind::Unsupported,
                    "a PULL socket cannot send",
                )),
                Zsock::Dealer(_) | Zsock::Router(_) => unreachable!("split when opened"),
            },
        }
    }

    /// The next message; a peer's failure (it died mid-frame, sent
    /// garbage) is skipped as the blocking socket skips it, except on a
    /// REQ, whose one peer it is.
    async fn recv(&self) -> Result<ZmqMessage> {
        loop {
            let got = match self {
                Socket::Split { rx, .. } => rx.lock().await.recv().await,
                Socket::Whole(s) => match &mut *s.lock().await {
                    Zsock::Req(s) => return s.recv().await.map_err(z),
                    Zsock::Rep(s) => s.recv().await,
                    Zsock::Pull(s) => s.recv().await,
                    Zsock::Push(_) => {
                        return Err(Error::new(
                            ErrorKind::Unsupported,
                            "a PUSH socket cannot receive",
                        ));
                    }
                    Zsock::Dealer(_) | Zsock::Router(_) => unreachable!("split when opened"),
                },
            };
            match got {
                Ok(m) => return Ok(m),
                Err(e) if peer_failed(&e) => continue,
                Err(e) => return Err(z(e)),
            }
        }
    }
}

/// A socket opened, with the channel settings its messages go by: what a
/// [`Channel`] and a [`Router`] both hold.
struct Opened {
    socket: Socket,
    codec: CodecKind,
    max: usize,
    endpoint: Endpoint,
}

impl Opened {
    async fn new(kind: Kind, addr: &str, net: &Net, bind: bool) -> Result<Opened> {
        let (socket, endpoint) = Socket::open(kind, addr, net, bind).await?;
        Ok(Opened {
            socket,
            codec: net.options.codec_kind(),
            max: net.options.max_frame_len(),
            endpoint,
        })
    }
}

/// Encodes `value` with `codec`, as one ZeroMQ frame.
fn encode<T: Serialize>(codec: CodecKind, value: &T) -> Result<Vec<u8>> {
    let mut payload = Vec::new();
    codec.encode(value, &mut payload)?;
    Ok(payload)
}

/// A payload within the channel's maximum, decoded.
fn decode<T: DeserializeOwned>(codec: CodecKind, max: usize, payload: &[u8]) -> Result<T> {
    if payload.len() > max {
        return Err(Error::new(
            ErrorKind::FrameTooLarge,
            format!(
                "a ZeroMQ message of {} bytes, over this channel's maximum of {max}",
                payload.len()
            ),
        ));
    }
    codec.decode(payload)
}

/// A ZeroMQ socket as an awaitable channel. See the [module docs](self).
pub struct Channel<Out, In> {
    open: Opened,
    _marker: PhantomData<fn(Out) -> In>,
}

impl<Out, In> std::fmt::Debug for Channel<Out, In> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("tokio::zmq::Channel")
            .field("endpoint", &self.open.endpoint)
            .finish_non_exhaustive()
    }
}

impl<Out: Serialize, In: DeserializeOwned> Channel<Out, In> {
    /// Sends one message (one frame); on failure it comes back in the
    /// error.
    pub async fn send(&self, value: Out) -> Result<(), SendError<Out>> {
        match self.send_ref(&value).await {
            Ok(()) => Ok(()),
            Err(e) => Err(SendError::new(value, e)),
        }
    }

    /// Sends `*value` without giving it up.
    pub async fn send_ref(&self, value: &Out) -> Result<()> {
        let payload = encode(self.open.codec, value)?;
        self.open.socket.send(ZmqMessage::from(payload)).await
    }

    /// Waits for the next message. A multipart message (procwire carries
    /// one payload frame per message) or one over the channel's maximum is
    /// an error, and the socket goes on.
    pub async fn recv(&self) -> Result<In, RecvError> {
        let m = self.open.socket.recv().await.map_err(RecvError::new)?;
        let payload =
            single(m).map_err(|why| RecvError::new(Error::new(ErrorKind::Decode, why)))?;
        decode(self.open.codec, self.open.max, &payload).map_err(RecvError::new)
    }

    /// Sends `value` and waits for the next message (a REQ's turn).
    pub async fn request(&self, value: Out) -> Result<In> {
        self.send(value).await.map_err(SendError::into_error)?;
        Ok(self.recv().await?)
    }

    /// The address the socket is bound or connected to (with the port the
    /// system chose, if it was 0).
    pub fn endpoint(&self) -> &Endpoint {
        &self.open.endpoint
    }
}

async fn open<Out, In>(kind: Kind, addr: &str, net: &Net, bind: bool) -> Result<Channel<Out, In>> {
    if kind == Kind::Router {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "a ROUTER gives each message with its sender: use zmq::bind_router or connect_router",
        ));
    }
    Ok(Channel {
        open: Opened::new(kind, addr, net, bind).await?,
        _marker: PhantomData,
    })
}

/// Binds a socket of `kind` (not ROUTER) at `addr` (`zmq+tcp://` on
/// loopback, or `zmq+ipc://`), as [`crate::zmq::bind`].
pub async fn bind<Out, In>(kind: Kind, addr: &str, net: &Net) -> Result<Channel<Out, In>> {
    open(kind, addr, net, true).await
}

/// Connects a socket of `kind` (not ROUTER) to `addr`.
pub async fn connect<Out, In>(kind: Kind, addr: &str, net: &Net) -> Result<Channel<Out, In>> {
    open(kind, addr, net, false).await
}

/// A ROUTER socket, awaited: receives `(Peer, In)`, replies to a chosen
/// peer.
pub struct Router<Out, In> {
    open: Opened,
    _marker: PhantomData<fn(Out) -> In>,
}

impl<Out, In> std::fmt::Debug for Router<Out, In> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("tokio::zmq::Router")
            .field("endpoint", &self.open.endpoint)
            .finish_non_exhaustive()
    }
}

impl<Out: Serialize, In: DeserializeOwned> Router<Out, In> {
    /// Waits for the next message and who sent it.
    pub async fn recv(&self) -> Result<(Peer, In), RecvError> {
        let m = self.open.socket.recv().await.map_err(RecvError::new)?;
        let mut frames = m.into_vec();
        let payload = frames.pop().ok_or_else(|| {
            RecvError::new(Error::new(
                ErrorKind::Decode,
                "a ROUTER message without a payload frame",
            ))
        })?;
        let value = decode(self.open.codec, self.open.max, &payload).map_err(RecvError::new)?;
        let envelope = frames.into_iter().map(|f| f.to_vec()).collect();
        Ok((Peer::new(envelope), value))
    }

    /// Sends `value` to `peer`. A message to a peer that is gone is
    /// dropped, as libzmq's ROUTER drops it: a reply is no delivery receipt.
    pub async fn send(&self, peer: &Peer, value: &Out) -> Result<()> {
        let mut frames: Vec<bytes::Bytes> = peer
            .envelope()
            .iter()
            .map(|f| bytes::Bytes::copy_from_slice(f))
            .collect();
        frames.push(encode(self.open.codec, value)?.into());
        let m = ZmqMessage::try_from(frames)
            .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("an empty message: {e:?}")))?;
        // Only a peer that is gone fails a ROUTER's send, as on the
        // blocking ROUTER.
        let _ = self.open.socket.send(m).await;
        Ok(())
    }

    /// The address the socket is bound or connected to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.open.endpoint
    }
}

async fn router<Out, In>(addr: &str, net: &Net, bind: bool) -> Result<Router<Out, In>> {
    Ok(Router {
        open: Opened::new(Kind::Router, addr, net, bind).await?,
        _marker: PhantomData,
    })
}

/// Binds a ROUTER socket at `addr`.
pub async fn bind_router<Out, In>(addr: &str, net: &Net) -> Result<Router<Out, In>> {
    router(addr, net, true).await
}

/// Connects a ROUTER socket to `addr`.
pub async fn connect_router<Out, In>(addr: &str, net: &Net) -> Result<Router<Out, In>> {
    router(addr, net, false).await
}
