//! Endpoints by address, awaited: [`listen`], [`Listener::accept`] and
//! [`connect`] on `unix:` paths, `tcp://` (its handshakes answered by a
//! task, each connection's heartbeats sent and checked by a task: no
//! thread per listener or connection) and, with feature `zmq`,
//! `zmq+tcp://` and `zmq+ipc://` (a DEALER connects; a ROUTER listens and
//! each peer it hears from is a connection to accept; each carried by a
//! task), giving awaitable duplexes with the [`Net`]'s options.

use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use ::tokio::io::Interest as Want;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Duplex, Registered};
use crate::endpoint::{Endpoint, Inner};
use crate::error::{Error, Result};
use crate::{Net, UnixListener, sys};

/// A listener whose `accept` is awaited. See the module docs.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> procwire::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let addr = format!("unix:{}", dir.path().join("s").display());
/// let net = procwire::Net::new();
/// let listener = procwire::tokio::listen(&addr, &net).await?;
/// let client = procwire::tokio::connect::<String, String>(&addr, &net).await?;
/// let server = listener.accept::<String, String>().await?;
/// client.send("ping".into()).await?;
/// assert_eq!(server.recv().await?, "ping");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Listener {
    kind: Kind,
    net: Net,
}

#[derive(Debug)]
enum Kind {
    Unix {
        listener: UnixListener,
        ready: Registered,
        turn: ::tokio::sync::Mutex<()>,
    },
    #[cfg(feature = "tcp")]
    Tcp(super::tcp::Acceptor),
    #[cfg(feature = "zmq")]
    Zmq(super::zmq_link::Acceptor),
}

impl Kind {
    fn unix(listener: UnixListener) -> Result<Kind> {
        Ok(Kind::Unix {
            ready: Registered::new(listener.as_fd(), Want::READABLE)?,
            listener,
            turn: ::tokio::sync::Mutex::new(()),
        })
    }
}

impl crate::Listener {
    /// This listener, awaited (feature `tokio`; inside a runtime). A
    /// `tcp://` listener's handshake thread stops and its task takes over
    /// the handshakes under way and the connections not yet accepted.
    pub fn into_async(self) -> Result<Listener> {
        let (inner, net) = self.into_parts();
        let kind = match inner {
            Inner::Unix(l) => Kind::unix(l)?,
            #[cfg(feature = "tcp")]
            Inner::Tcp(t) => {
                super::in_runtime()?;
                let (handshakes, accepted) = t.stop()?;
                Kind::Tcp(super::tcp::Acceptor::resume(handshakes, accepted)?)
            }
            #[cfg(feature = "zmq")]
            Inner::Zmq(z) => Kind::Zmq(super::zmq_link::Acceptor::from_blocking(z)),
        };
        Ok(Listener { kind, net })
    }
}

/// Listens at `addr` (`unix:`, `tcp://`, `zmq+tcp://` or `zmq+ipc://`)
/// with `net`'s settings, as [`Net::listen`] does, without blocking the
/// runtime (a `tcp://` key file is read and the host looked up off its
/// threads). On ZeroMQ, see
/// [the module docs](crate::tokio#endpoints-and-children).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> procwire::Result<()> {
/// # #[cfg(feature = "zmq")] {
/// let net = procwire::Net::new();
/// let listener = procwire::tokio::listen("zmq+tcp://127.0.0.1:0", &net).await?;
/// let addr = listener.endpoint().to_string();
/// let a = procwire::tokio::connect::<String, String>(&addr, &net).await?;
/// let b = procwire::tokio::connect::<String, String>(&addr, &net).await?;
/// a.send("from a".into()).await?;
/// b.send("from b".into()).await?;
/// for _ in 0..2 {
///     let peer = listener.accept::<String, String>().await?;
///     let said = peer.recv().await?;
///     peer.send(format!("{said}, answered")).await?;
/// }
/// assert_eq!(a.recv().await?, "from a, answered");
/// assert_eq!(b.recv().await?, "from b, answered");
/// # }
/// # Ok(())
/// # }
/// ```
pub async fn listen(addr: &str, net: &Net) -> Result<Listener> {
    match addr.parse::<Endpoint>()? {
        #[cfg(feature = "tcp")]
        Endpoint::Tcp(hp) => Ok(Listener {
            kind: Kind::Tcp(super::tcp::Acceptor::bind(&hp, net).await?),
            net: net.clone(),
        }),
        #[cfg(feature = "zmq")]
        Endpoint::ZmqTcp(_) | Endpoint::ZmqIpc(_) => Ok(Listener {
            kind: Kind::Zmq(super::zmq_link::listen(addr, net).await?),
            net: net.clone(),
        }),
        // Binding a Unix socket does not wait.
        _ => net.listen(addr)?.into_async(),
    }
}

impl Listener {
    /// Awaits the next peer (on `tcp://`, one that has passed the
    /// handshake) and gives an awaitable channel to it. Tasks take turns;
    /// cancel-safe (a dropped accept took no connection).
    pub async fn accept<Out, In>(&self) -> Result<Duplex<Out, In>>
    where
        Out: Serialize + DeserializeOwned,
        In: Serialize + DeserializeOwned,
    {
        match &self.kind {
            Kind::Unix {
                listener,
                ready,
                turn,
            } => {
                let _turn = turn.lock().await;
                let s = accept_unix(listener, ready).await?;
                self.net.options.duplex_from(s)?.into_async()
            }
            #[cfg(feature = "tcp")]
            Kind::Tcp(t) => t.accept(&self.net).await,
            #[cfg(feature = "zmq")]
            Kind::Zmq(z) => z.accept(&self.net).await,
        }
    }

    /// The peers as they come, as a `Stream` of awaitable channels (what
    /// `accept` gives, in a loop), for `StreamExt`: `take`,
    /// `for_each_concurrent` and the rest. A failed accept is an `Err`
    /// item, and the stream goes on; it never ends. Dropping it (or
    /// leaving it between polls) is as cancelling an `accept`: no
    /// connection is lost.
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> procwire::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let addr = format!("unix:{}", dir.path().join("s").display());
    /// let net = procwire::Net::new();
    /// let listener = procwire::tokio::listen(&addr, &net).await?;
    /// let client = procwire::tokio::connect::<String, String>(&addr, &net).await?;
    /// client.send("hello".into()).await?;
    /// let mut peers = listener.incoming::<String, String>();
    /// let peer = peers.next().await.expect("a listener's stream never ends")?;
    /// assert_eq!(peer.recv().await?, "hello");
    /// # Ok(())
    /// # }
    /// ```
    pub fn incoming<Out, In>(&self) -> Incoming<'_, Out, In>
    where
        Out: Serialize + DeserializeOwned,
        In: Serialize + DeserializeOwned,
    {
        Incoming {
            listener: self,
            next: None,
        }
    }

    /// The address peers connect to.
    pub fn endpoint(&self) -> Endpoint {
        match &self.kind {
            Kind::Unix { listener, .. } => Endpoint::Unix(listener.path().to_path_buf()),
            #[cfg(feature = "tcp")]
            Kind::Tcp(t) => t.endpoint(),
            #[cfg(feature = "zmq")]
            Kind::Zmq(z) => z.endpoint(),
        }
    }

    /// Back to the blocking listener (a `tcp://` one gets its handshake
    /// thread back, with the handshakes under way; a ZeroMQ one's socket
    /// stays on the runtime it was opened on, which must go on running
    /// while it and its peers are in use).
    pub fn into_blocking(self) -> Result<crate::Listener> {
        let inner = match self.kind {
            #[cfg(feature = "zmq")]
            Kind::Zmq(z) => Inner::Zmq(z.into_blocking()),
            Kind::Unix { listener, .. } => Inner::Unix(listener),
            #[cfg(feature = "tcp")]
            Kind::Tcp(t) => {
                let (handshakes, accepted) = t.stop();
                Inner::Tcp(crate::endpoint::tcp::TcpAcceptor::resume(
                    handshakes, accepted,
                )?)
            }
        };
        Ok(crate::Listener::from_parts(inner, self.net))
    }
}

/// The next connection on a Unix listener, awaited.
async fn accept_unix(l: &UnixListener, ready: &Registered) -> Result<crate::Socket> {
    loop {
        let mut guard = ready
            .0
            .readable()
            .await
            .map_err(|e| super::reactor_gone("waiting for a connection", e))?;
        // The listening socket stays blocking: accept only what is there
        // now (readiness may be stale).
        let got = guard.try_io(|fd| {
            let mut ready = [false];
            if sys::poll(
                &[(fd.as_fd(), sys::Interest::Read)],
                Some(std::time::Instant::now()),
                &mut ready,
            )? {
                l.accept()
            } else {
                Err(std::io::ErrorKind::WouldBlock.into())
            }
        });
        if let Ok(accepted) = got {
            return accepted.map_err(|e| Error::io("accepting a connection", e));
        }
    }
}

/// Connects to `addr` (`unix:`, `tcp://`, `zmq+tcp://` or `zmq+ipc://`)
/// and gives an awaitable channel, with `net`'s settings (on `tcp://` its
/// connect deadline, retries, key and handshake deadline, as
/// [`Net::connect`]; on ZeroMQ a DEALER, see
/// [the module docs](crate::tokio#endpoints-and-children)). A
/// Unix listener whose backlog is full is waited for, not a blocked
/// thread.
pub async fn connect<Out, In>(addr: &str, net: &Net) -> Result<Duplex<Out, In>>
where
    Out: Serialize + DeserializeOwned,
    In: Serialize + DeserializeOwned,
{
    let endpoint: Endpoint = addr.parse()?;
    match &endpoint {
        Endpoint::Unix(path) => {
            let what = || format!("connecting to {addr}");
            let s = ::tokio::net::UnixStream::connect(path)
                .await
                .and_then(|s| s.into_std())
                .and_then(|s| {
                    // procwire's ends are in blocking mode (see `crate::tokio`).
                    s.set_nonblocking(false)?;
                    crate::Socket::from_fd(OwnedFd::from(s))
                })
                .map_err(|e| Error::io(&what(), e))?;
            net.options.duplex_from(s)?.into_async()
        }
        #[cfg(feature = "tcp")]
        Endpoint::Tcp(hp) => super::tcp::connect(hp, net).await,
        #[cfg(feature = "zmq")]
        Endpoint::ZmqTcp(_) | Endpoint::ZmqIpc(_) => super::zmq_link::connect(addr, net).await,
        e => Err(crate::endpoint::no_channel(addr, e)),
    }
}

/// The peers of a [`Listener`] as they come: [`Listener::incoming`].
pub struct Incoming<'a, Out, In> {
    listener: &'a Listener,
    /// The accept in flight, kept across polls.
    next: Option<Accepting<'a, Out, In>>,
}

type Accepting<'a, Out, In> = Pin<Box<dyn Future<Output = Result<Duplex<Out, In>>> + Send + 'a>>;

impl<'a, Out, In> futures_core::Stream for Incoming<'a, Out, In>
where
    Out: Serialize + DeserializeOwned + 'a,
    In: Serialize + DeserializeOwned + 'a,
{
    type Item = Result<Duplex<Out, In>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let listener = this.listener;
        let accepting = this.next.get_or_insert_with(|| Box::pin(listener.accept()));
        let got = ready!(accepting.as_mut().poll(cx));
        this.next = None;
        Poll::Ready(Some(got))
    }
}

impl<Out, In> std::fmt::Debug for Incoming<'_, Out, In> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("tokio::Incoming")
            .field("endpoint", &self.listener.endpoint())
            .finish_non_exhaustive()
    }
}
