//! Endpoints by address, awaited: [`Listener::accept`] and [`connect`] on
//! `unix:` paths, giving awaitable duplexes with the [`Net`]'s options.
//! `tcp://` and ZeroMQ are refused with a clear error for now (their
//! handshakes and heartbeats run on threads of their own: use the blocking
//! `Net::listen`/`connect` inside `spawn_blocking`, then `into_async`).

use std::os::fd::{AsFd, OwnedFd};

use ::tokio::io::Interest as Want;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Duplex, Registered};
use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, Result};
use crate::{Net, sys};

/// A listener whose `accept` is awaited. See the module docs.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> procwire::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let addr = format!("unix:{}", dir.path().join("s").display());
/// let net = procwire::Net::new();
/// let listener = net.listen(&addr)?.into_async()?;
/// let client = procwire::tokio::connect::<String, String>(&addr, &net).await?;
/// let server = listener.accept::<String, String>().await?;
/// client.send("ping".into()).await?;
/// assert_eq!(server.recv().await?, "ping");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Listener {
    inner: crate::Listener,
    ready: Registered,
    turn: ::tokio::sync::Mutex<()>,
}

impl crate::Listener {
    /// This listener, awaited (feature `tokio`; inside a runtime; `unix:`
    /// only, see [`crate::tokio`]'s endpoint notes).
    pub fn into_async(self) -> Result<Listener> {
        let (unix, _) = self.unix();
        let Some(l) = unix else {
            return Err(not_yet(&self.endpoint()));
        };
        let ready = Registered::new(l.as_fd(), Want::READABLE)?;
        Ok(Listener {
            inner: self,
            ready,
            turn: ::tokio::sync::Mutex::new(()),
        })
    }
}

impl Listener {
    /// Awaits the next peer and gives an awaitable channel to it. Tasks
    /// take turns; cancel-safe (a dropped accept took no connection).
    pub async fn accept<Out, In>(&self) -> Result<Duplex<Out, In>>
    where
        Out: Serialize + DeserializeOwned,
        In: Serialize + DeserializeOwned,
    {
        let _turn = self.turn.lock().await;
        let (Some(l), net) = self.inner.unix() else {
            unreachable!("made from a unix listener");
        };
        loop {
            let mut guard = self
                .ready
                .0
                .readable()
                .await
                .map_err(|e| Error::io("waiting for a connection", e))?;
            // The listening socket stays blocking: accept only what is
            // there now (readiness may be stale).
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
                let s = accepted.map_err(|e| Error::io("accepting a connection", e))?;
                return net.options.duplex_from(s)?.into_async();
            }
        }
    }

    /// The address peers connect to.
    pub fn endpoint(&self) -> Endpoint {
        self.inner.endpoint()
    }

    /// Back to the blocking listener.
    pub fn into_blocking(self) -> crate::Listener {
        self.inner
    }
}

/// Connects to `addr` (`unix:`) and gives an awaitable channel, with
/// `net`'s options. A listener whose backlog is full is waited for, not a
/// blocked thread.
pub async fn connect<Out, In>(addr: &str, net: &Net) -> Result<Duplex<Out, In>>
where
    Out: Serialize + DeserializeOwned,
    In: Serialize + DeserializeOwned,
{
    let endpoint: Endpoint = addr.parse()?;
    let Endpoint::Unix(path) = &endpoint else {
        return Err(not_yet(&endpoint));
    };
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

fn not_yet(endpoint: &Endpoint) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!(
            "`{endpoint}`: only unix: endpoints are awaitable yet; for tcp:// call the blocking \
             Net::listen/accept/connect in tokio::task::spawn_blocking and make the channel \
             async with into_async; for ZeroMQ use procwire::zmq"
        ),
    )
}
