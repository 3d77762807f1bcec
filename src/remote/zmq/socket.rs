//! A ZeroMQ socket as procwire's channels await it: the blocking
//! [`Channel`](super::Channel) and [`Router`](super::Router) on the
//! socket's own runtime ([`super::driven`]), the awaitable ones in
//! `procwire::tokio::zmq` on the caller's. One implementation of each
//! kind's sends and receives, with the channel's codec and limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use zeromq::{SocketRecv, SocketSend, ZmqError, ZmqMessage};

use super::bridge::{Zsock, peer_failed};
use super::{Kind, parse_zmq_endpoint, zmq_error};
use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, Result};
use crate::{CodecKind, Net};

/// The socket, as its sends and receives are awaited.
pub(crate) struct Socket {
    halves: Halves,
    runtime: Lifeline,
}

/// The `zeromq` socket, whole or in its two halves.
enum Halves {
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

/// Whether the runtime a socket was opened on still runs. The `zeromq`
/// crate's tasks for the socket (its connections' readers and writers)
/// live there and end with it, after which a receive would wait for ever
/// and a send fail for a reason it cannot name. A task of that runtime
/// that never ends sets `closed` as it is dropped: a runtime that shuts
/// down drops its tasks.
struct Lifeline {
    closed: Arc<AtomicBool>,
    task: tokio::task::AbortHandle,
}

impl Lifeline {
    /// On the runtime the socket lives on.
    fn new() -> Lifeline {
        struct Close(Arc<AtomicBool>);
        impl Drop for Close {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let closed = Arc::new(AtomicBool::new(false));
        let held = Close(Arc::clone(&closed));
        let task = tokio::spawn(async move {
            let _held = held;
            std::future::pending::<()>().await
        });
        Lifeline {
            closed,
            task: task.abort_handle(),
        }
    }

    /// An error once the runtime has shut down. (Checked as a send or a
    /// receive starts: racing each against the closing cost the round
    /// trip some 3%, and only one awaited on another runtime while this
    /// one shuts down would see the difference.)
    fn check(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::new(
                ErrorKind::Io,
                "the tokio runtime this ZeroMQ socket was opened on has shut down, and the \
                 socket's connections with it: open the socket again on the runtime that goes on",
            ));
        }
        Ok(())
    }
}

impl Drop for Lifeline {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Socket {
    /// Opens a socket of `kind` at `zaddr` (the address in the `zeromq`
    /// crate's syntax, after procwire's policy: `zmq_address`), within
    /// the net's connect timeout. Runs on the runtime the socket is to
    /// live on: the crate spawns its tasks there.
    async fn open(
        kind: Kind,
        addr: &str,
        zaddr: &str,
        net: &Net,
        bind: bool,
    ) -> Result<(Socket, Option<Endpoint>)> {
        let what = format!(
            "{} ZeroMQ {kind:?} at {addr}",
            if bind { "binding" } else { "connecting" }
        );
        let mut sock = Zsock::new(kind);
        let bound = tokio::time::timeout(net.connect_timeout, sock.bind_or_connect(zaddr, bind))
            .await
            .map_err(|_| Error::new(ErrorKind::Timeout, format!("{what}: timed out")))?
            .map_err(|e| zmq_error(&what, e))?;
        let endpoint = bound.and_then(|b| parse_zmq_endpoint(&b));
        let halves = match sock {
            Zsock::Dealer(s) => {
                let (tx, rx) = s.split();
                Halves::Split {
                    tx: Mutex::new(Box::new(tx)),
                    rx: Mutex::new(Box::new(rx)),
                }
            }
            Zsock::Router(s) => {
                let (tx, rx) = s.split();
                Halves::Split {
                    tx: Mutex::new(Box::new(tx)),
                    rx: Mutex::new(Box::new(rx)),
                }
            }
            whole => Halves::Whole(Mutex::new(whole)),
        };
        let socket = Socket {
            halves,
            runtime: Lifeline::new(),
        };
        Ok((socket, endpoint))
    }

    /// Sends one message (the runtime's end is an error: [`Lifeline`]).
    pub(crate) async fn send(&self, m: ZmqMessage) -> Result<()> {
        self.runtime.check()?;
        match &self.halves {
            Halves::Split { tx, .. } => tx.lock().await.send(m).await.map_err(z),
            Halves::Whole(s) => match &mut *s.lock().await {
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

    /// The next message (the runtime's end is an error: [`Lifeline`]). A
    /// peer's failure (it died mid-frame, sent garbage) is skipped, as
    /// libzmq skips it, except on a REQ, whose one peer it is.
    /// Cancel-safe: a receive dropped while it waits took no message.
    pub(crate) async fn recv(&self) -> Result<ZmqMessage> {
        self.runtime.check()?;
        loop {
            let got = match &self.halves {
                Halves::Split { rx, .. } => rx.lock().await.recv().await,
                Halves::Whole(s) => match &mut *s.lock().await {
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

/// A socket opened, with the channel settings its messages go by: what
/// every channel and router over ZeroMQ holds.
pub(crate) struct Opened {
    pub(crate) socket: Socket,
    pub(crate) codec: CodecKind,
    pub(crate) max: usize,
    pub(crate) endpoint: Endpoint,
}

impl Opened {
    /// Opens the socket on the runtime this runs on. `zaddr` is
    /// `addr` after procwire's policy (`zmq_address`, which may look at
    /// the file system and resolve a host: the caller runs it where that
    /// may block).
    pub(crate) async fn new(
        kind: Kind,
        addr: &str,
        zaddr: &str,
        net: &Net,
        bind: bool,
    ) -> Result<Opened> {
        let endpoint: Endpoint = addr.parse()?;
        let (socket, bound) = Socket::open(kind, addr, zaddr, net, bind).await?;
        Ok(Opened {
            socket,
            codec: net.options.codec_kind(),
            max: net.options.max_frame_len(),
            endpoint: bound.unwrap_or(endpoint),
        })
    }

    /// [`Opened::new`] on a runtime's thread: the policy runs on its
    /// blocking pool.
    #[cfg(feature = "tokio")]
    pub(crate) async fn new_async(kind: Kind, addr: &str, net: &Net, bind: bool) -> Result<Opened> {
        let endpoint: Endpoint = addr.parse()?;
        let zaddr = {
            let net = net.clone();
            tokio::task::spawn_blocking(move || super::zmq_address(&endpoint, &net, bind))
                .await
                .map_err(|e| Error::new(ErrorKind::Io, format!("checking {addr}: {e}")))??
        };
        Opened::new(kind, addr, &zaddr, net, bind).await
    }
}

impl Opened {
    /// A message's one payload frame, decoded: a multipart message
    /// (procwire carries one payload frame per message) or one over the
    /// maximum is an error.
    pub(crate) fn payload<In: DeserializeOwned>(&self, m: ZmqMessage) -> Result<In> {
        let payload = super::bridge::single(m).map_err(|why| Error::new(ErrorKind::Decode, why))?;
        decode(self.codec, self.max, &payload)
    }
}

/// Encodes `value` with `codec`, as one ZeroMQ frame.
pub(crate) fn encode<T: Serialize + ?Sized>(codec: CodecKind, value: &T) -> Result<Vec<u8>> {
    let mut payload = Vec::new();
    codec.encode(value, &mut payload)?;
    Ok(payload)
}

/// A payload within the channel's maximum, decoded.
pub(crate) fn decode<T: DeserializeOwned>(
    codec: CodecKind,
    max: usize,
    payload: &[u8],
) -> Result<T> {
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
