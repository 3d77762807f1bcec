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
//!
//! A [`Channel`] is also a `Stream` of what it receives and a `Sink` of
//! what it sends, so `StreamExt` and `SinkExt` work on it; a [`Router`]
//! too, of `(Peer, message)` pairs. The stream's
//! receive in flight, or the sink's send, is finished by the next `recv`
//! or `send` on the channel, before its own: nothing is lost or reordered
//! by going from one way to the other. A message the sink holds when the
//! channel is dropped is dropped with it, as a `Sink`'s unflushed message
//! is: `flush` or `close` delivers it.

use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use serde::Serialize;
use serde::de::DeserializeOwned;
use zeromq::ZmqMessage;

use crate::Net;
use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, RecvError, Result, SendError};
use crate::remote::zmq::router::{from_peer, to_peer};
use crate::remote::zmq::socket::{Opened, encode};
use crate::zmq::{Kind, Peer};

use super::in_flight::{InFlight, poll_sent, poll_started, start, take};

/// A ZeroMQ socket as an awaitable channel. See the [module docs](self).
pub struct Channel<Out, In> {
    open: Ways,
    _marker: PhantomData<fn(Out) -> In>,
}

/// A socket, with the `Stream`'s receive and the `Sink`'s send in flight
/// (what a channel and a router hold).
struct Ways {
    open: Arc<Opened>,
    receiving: InFlight<Result<ZmqMessage>>,
    sending: InFlight<Result<()>>,
}

impl Ways {
    fn new(open: Opened) -> Ways {
        Ways {
            open: Arc::new(open),
            receiving: Default::default(),
            sending: Default::default(),
        }
    }

    /// The next message; a receive the `Stream` has in flight is finished
    /// here, and its message is this one.
    async fn recv(&self) -> Result<ZmqMessage> {
        match take(&self.receiving) {
            Some(receiving) => receiving.await,
            None => self.open.socket.recv().await,
        }
    }

    /// Sends `m`, after a message the `Sink` has in flight.
    async fn send(&self, m: ZmqMessage) -> Result<()> {
        if let Some(sending) = take(&self.sending) {
            sending.await?;
        }
        self.open.socket.send(m).await
    }

    /// The `Stream`'s step: the next message, `None` once the socket is
    /// closed.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<ZmqMessage>>> {
        let open = &self.open;
        let got = ready!(poll_started(&mut self.receiving, cx, || {
            let open = Arc::clone(open);
            Box::pin(async move { open.socket.recv().await })
        }));
        Poll::Ready(match got {
            Err(e) if e.kind() == ErrorKind::Disconnected => None,
            got => Some(got),
        })
    }

    /// The `Sink`'s `poll_ready` and `poll_flush`: the message before
    /// handed to ZeroMQ.
    fn poll_sent(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        poll_sent(&mut self.sending, cx)
    }

    /// The `Sink`'s `start_send`.
    fn start_send(&mut self, m: ZmqMessage) {
        let open = Arc::clone(&self.open);
        start(
            &mut self.sending,
            Box::pin(async move { open.socket.send(m).await }),
        );
    }
}

impl std::ops::Deref for Ways {
    type Target = Opened;

    fn deref(&self) -> &Opened {
        &self.open
    }
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

    /// Sends `*value` without giving it up (after a message the `Sink`
    /// has in flight).
    pub async fn send_ref(&self, value: &Out) -> Result<()> {
        let payload = encode(self.open.codec, value)?;
        self.open.send(ZmqMessage::from(payload)).await
    }

    /// Waits for the next message. A multipart message (procwire carries
    /// one payload frame per message) or one over the channel's maximum is
    /// an error, and the socket goes on. A receive the `Stream` has in
    /// flight is finished here: its message is this one.
    pub async fn recv(&self) -> Result<In, RecvError> {
        let m = self.open.recv().await.map_err(RecvError::new)?;
        self.open.payload(m).map_err(RecvError::new)
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
        open: Ways::new(Opened::new_async(kind, addr, net, bind).await?),
        _marker: PhantomData,
    })
}

impl<Out, In: DeserializeOwned> futures_core::Stream for Channel<Out, In> {
    type Item = Result<In, RecvError>;

    /// The messages as they come; ends when the socket is closed. A
    /// message that fails to decode is an `Err` item, and the stream goes
    /// on.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let got = ready!(this.open.poll_recv(cx));
        Poll::Ready(got.map(|m| m.and_then(|m| this.open.payload(m)).map_err(RecvError::new)))
    }
}

impl<Out: Serialize, In> futures_sink::Sink<Out> for Channel<Out, In> {
    /// A message whose send failed is dropped: the `Sink` protocol cannot
    /// hand it back (use [`Channel::send`] to get it).
    type Error = Error;

    /// Room once the message before is handed to ZeroMQ.
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().open.poll_sent(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Out) -> Result<()> {
        let this = self.get_mut();
        let payload = encode(this.open.codec, &item)?;
        this.open.start_send(ZmqMessage::from(payload));
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_ready(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_ready(cx)
    }
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
    open: Ways,
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
        let m = self.open.recv().await.map_err(RecvError::new)?;
        from_peer(&self.open, m).map_err(RecvError::new)
    }

    /// Sends `value` to `peer`. A message to a peer that is gone is
    /// dropped, as libzmq's ROUTER drops it: a reply is no delivery receipt.
    pub async fn send(&self, peer: &Peer, value: &Out) -> Result<()> {
        let m = to_peer(&self.open, peer, value)?;
        // Only a peer that is gone fails a ROUTER's send, as on the
        // blocking ROUTER.
        let _ = self.open.send(m).await;
        Ok(())
    }

    /// The address the socket is bound or connected to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.open.endpoint
    }
}

async fn router<Out, In>(addr: &str, net: &Net, bind: bool) -> Result<Router<Out, In>> {
    Ok(Router {
        open: Ways::new(Opened::new_async(Kind::Router, addr, net, bind).await?),
        _marker: PhantomData,
    })
}

impl<Out, In: DeserializeOwned> futures_core::Stream for Router<Out, In> {
    type Item = Result<(Peer, In), RecvError>;

    /// The messages as they come, each with its sender; ends when the
    /// socket is closed.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let got = ready!(this.open.poll_recv(cx));
        Poll::Ready(got.map(|m| {
            m.and_then(|m| from_peer(&this.open, m))
                .map_err(RecvError::new)
        }))
    }
}

impl<Out: Serialize, In> futures_sink::Sink<(Peer, Out)> for Router<Out, In> {
    /// Only encoding fails: a message to a peer that is gone is dropped, as
    /// [`Router::send`] drops it.
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let _ = ready!(self.get_mut().open.poll_sent(cx));
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, (peer, item): (Peer, Out)) -> Result<()> {
        let this = self.get_mut();
        let m = to_peer(&this.open, &peer, &item)?;
        this.open.start_send(m);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_ready(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_ready(cx)
    }
}

/// Binds a ROUTER socket at `addr`.
pub async fn bind_router<Out, In>(addr: &str, net: &Net) -> Result<Router<Out, In>> {
    router(addr, net, true).await
}

/// Connects a ROUTER socket to `addr`.
pub async fn connect_router<Out, In>(addr: &str, net: &Net) -> Result<Router<Out, In>> {
    router(addr, net, false).await
}
