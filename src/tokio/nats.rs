//! NATS, awaited (features `tokio` and `nats`): the same channels and RPC
//! services as [`crate::nats`], the same subjects, streams and payloads,
//! with the client's connection on *your* runtime (no thread of
//! procwire's) and each step awaited.
//!
//! Cancellation: a `recv` dropped at any point loses no message: one taken
//! from the server whose acknowledgement was not yet confirmed is kept by
//! the receiver and handed over by its next `recv` (a receiver dropped
//! with one lets the server deliver it again after 30 s). A `send` dropped
//! before it resolves may or may not have been stored, as one that times
//! out. A `call` dropped leaves nothing behind.
//!
//! A [`Sender`] is also a `Sink` and a [`Receiver`] a `Stream`. The
//! sink's send in flight is finished by the next `send`, before its own (a
//! message the sink holds when the sender is dropped is dropped with it:
//! `flush` or `close` delivers it); a receive the stream left in flight is
//! dropped by the next `recv`, which loses nothing, as above.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> procwire::Result<()> {
//! use procwire::tokio::nats;
//! let net = procwire::Net::new();
//! let tx = nats::sender::<String>("nats://127.0.0.1:4222/jobs", &net).await?;
//! let rx = nats::receiver::<String>("nats://127.0.0.1:4222/jobs", &net).await?;
//! tx.send("Heavy lifting".into()).await?;
//! assert_eq!(rx.recv().await?, "Heavy lifting");
//! # Ok(())
//! # }
//! ```

use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_nats::jetstream;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Net;
use crate::error::{Error, ErrorKind, RecvError, Result, SendError};
use crate::nats::channel::{self, Pull};
use crate::nats::connect::{Conn, debug_by_addr};
use crate::nats::rpc;

use super::in_flight::{InFlight, poll_sent, poll_started, start, take};

/// Bounds a step of opening an end by the connect deadline.
async fn opening<T>(conn: &Conn, net: &Net, step: impl Future<Output = Result<T>>) -> Result<T> {
    ::tokio::time::timeout(net.connect_timeout, step)
        .await
        .unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Timeout,
                format!("opening {}: the server did not answer in time", conn.addr),
            ))
        })
}

/// The sending end of a channel over a NATS subject, awaited; also a
/// `Sink` of messages (`SinkExt`).
pub struct Sender<T> {
    inner: Arc<Publishing>,
    timeout: Duration,
    /// The `Sink`'s send in flight: the next `send` finishes it first.
    sending: InFlight<Result<()>>,
    _marker: PhantomData<fn(T)>,
}

/// A sender's connection, shared with its sink's send in flight.
struct Publishing {
    conn: Conn,
    js: jetstream::Context,
}

impl Publishing {
    /// Publishes `payload`, resolving once the server has stored it, or
    /// after `timeout` with an error.
    async fn publish(&self, payload: Vec<u8>, timeout: Duration) -> Result<()> {
        ::tokio::time::timeout(timeout, channel::publish(&self.conn, &self.js, payload))
            .await
            .unwrap_or_else(|_| Err(channel::not_confirmed(&self.conn, timeout)))
    }
}

debug_by_addr!("tokio::nats::Sender", Sender<T>, inner.conn);

/// The sending end of the channel at `addr`, as [`crate::nats::sender`].
pub async fn sender<T: Serialize>(addr: &str, net: &Net) -> Result<Sender<T>> {
    let conn = Conn::open_async(addr, net).await?;
    let js = conn.jetstream();
    opening(&conn, net, channel::open_stream(&conn, &js)).await?;
    Ok(Sender {
        inner: Arc::new(Publishing { conn, js }),
        timeout: channel::SEND_TIMEOUT,
        sending: Default::default(),
        _marker: PhantomData,
    })
}

impl<T: Serialize> Sender<T> {
    /// How long a send waits for the server to store a message (10 s
    /// unless set).
    pub fn timeout(mut self, timeout: Duration) -> Sender<T> {
        self.timeout = timeout.min(crate::channel::gate::LONGEST);
        self
    }

    /// Sends `value`, resolving once the server has stored it; on failure
    /// it comes back in the error.
    pub async fn send(&self, value: T) -> Result<(), SendError<T>> {
        match self.send_ref(&value).await {
            Ok(()) => Ok(()),
            Err(e) => Err(SendError::new(value, e)),
        }
    }

    /// Sends `*value` without giving it up (after a message the `Sink`
    /// has in flight).
    pub async fn send_ref(&self, value: &T) -> Result<()> {
        let payload = self.inner.conn.encode(value)?;
        if let Some(sending) = take(&self.sending) {
            sending.await?;
        }
        self.inner.publish(payload, self.timeout).await
    }
}

impl<T: Serialize> futures_sink::Sink<T> for Sender<T> {
    /// A message whose send failed is dropped: the `Sink` protocol cannot
    /// hand it back (use [`Sender::send`] to get it).
    type Error = Error;

    /// Room once the message before is stored by the server.
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        poll_sent(&mut self.get_mut().sending, cx)
    }

    fn start_send(self: Pin<&mut Self>, item: T) -> Result<()> {
        let this = self.get_mut();
        let payload = this.inner.conn.encode(&item)?;
        let (inner, timeout) = (Arc::clone(&this.inner), this.timeout);
        start(
            &mut this.sending,
            Box::pin(async move { inner.publish(payload, timeout).await }),
        );
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_ready(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_ready(cx)
    }
}

/// The receiving end of a channel over a NATS subject, awaited; also a
/// `Stream` of the messages (`StreamExt`).
pub struct Receiver<T> {
    inner: Arc<Pulling>,
    /// The `Stream`'s receive in flight, kept across polls. (Behind a lock
    /// only so that the receiver stays `Sync`: `poll_next` reaches it
    /// through `&mut`.)
    next: InFlight<Result<bytes::Bytes>>,
    _marker: PhantomData<fn() -> T>,
}

/// A receiver's connection and consumer, shared with its stream's receive
/// in flight.
struct Pulling {
    conn: Conn,
    pull: Pull,
}

impl Pulling {
    /// The next message's payload, waiting as long as it takes.
    async fn next(&self) -> Result<bytes::Bytes> {
        loop {
            if let Some(payload) = self.pull.next(&self.conn, Duration::from_secs(5)).await? {
                return Ok(payload);
            }
        }
    }
}

debug_by_addr!("tokio::nats::Receiver", Receiver<T>, inner.conn);

/// The receiving end of the channel at `addr`, as [`crate::nats::receiver`].
pub async fn receiver<T: DeserializeOwned>(addr: &str, net: &Net) -> Result<Receiver<T>> {
    let conn = Conn::open_async(addr, net).await?;
    let js = conn.jetstream();
    let consumer = opening(&conn, net, async {
        let stream = channel::open_stream(&conn, &js).await?;
        channel::open_consumer(&conn, &stream).await
    })
    .await?;
    Ok(Receiver {
        inner: Arc::new(Pulling {
            conn,
            pull: Pull::new(consumer),
        }),
        next: Default::default(),
        _marker: PhantomData,
    })
}

impl<T: DeserializeOwned> Receiver<T> {
    /// Waits for the next message (timeouts through `tokio::time`).
    /// Cancel-safe: see the [module docs](self). A receive the `Stream`
    /// left in flight is dropped first (which loses nothing, as any
    /// cancelled receive).
    pub async fn recv(&self) -> Result<T, RecvError> {
        drop(take(&self.next));
        let payload = self.inner.next().await.map_err(RecvError::new)?;
        self.inner.conn.decode(&payload).map_err(RecvError::new)
    }
}

impl<T: DeserializeOwned> futures_core::Stream for Receiver<T> {
    type Item = Result<T, RecvError>;

    /// The messages as they come; a message that fails to decode is an
    /// `Err` item, and the stream goes on. It ends only if the connection
    /// does.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let inner = &this.inner;
        let got = ready!(poll_started(&mut this.next, cx, || {
            let inner = Arc::clone(inner);
            Box::pin(async move { inner.next().await })
        }));
        Poll::Ready(
            match got.and_then(|payload| this.inner.conn.decode(&payload)) {
                Ok(v) => Some(Ok(v)),
                Err(e) if e.kind() == ErrorKind::Disconnected => None,
                Err(e) => Some(Err(RecvError::new(e))),
            },
        )
    }
}

/// The calling side of a service on a subject, awaited: any number of
/// calls in flight (each its own NATS request).
pub struct Client<Req, Resp> {
    conn: Conn,
    timeout: Duration,
    _marker: PhantomData<fn(Req) -> Resp>,
}

debug_by_addr!("tokio::nats::Client", Client<Req, Resp>);

impl<Req: Serialize, Resp: DeserializeOwned> Client<Req, Resp> {
    /// A client of the service at `addr`; calls wait 30 s for their reply
    /// unless [`timeout`](Client::timeout) says otherwise.
    pub async fn connect(addr: &str, net: &Net) -> Result<Client<Req, Resp>> {
        Ok(Client {
            conn: Conn::open_async(addr, net).await?,
            timeout: Duration::from_secs(30),
            _marker: PhantomData,
        })
    }

    /// The deadline of each call.
    pub fn timeout(mut self, timeout: Duration) -> Client<Req, Resp> {
        self.timeout = timeout.min(crate::channel::gate::LONGEST);
        self
    }

    /// Calls the service, as [`crate::nats::Client::call`].
    pub async fn call(&self, req: Req) -> Result<Resp> {
        let payload = self.conn.encode(&req)?;
        let answer = rpc::call(&self.conn, payload, self.timeout).await?;
        rpc::reply(&self.conn, &answer)
    }
}

/// Serves the calls on `addr` in the subject's queue group, one at a time,
/// as [`crate::nats::serve`]: until the connection is lost for good (an
/// error), or the future is dropped (an abort, a `select!`).
pub async fn serve<Req, Resp, E>(
    addr: &str,
    net: &Net,
    handler: impl FnMut(Req) -> std::result::Result<Resp, E>,
) -> Result<()>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    E: std::fmt::Display,
{
    let conn = Conn::open_async(addr, net).await?;
    rpc::serve_on(&conn, net, handler, None::<fn() -> bool>).await
}
