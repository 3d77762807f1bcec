//! `tcp://` endpoints on the runtime: the client's connect, retries and
//! handshake awaited; a listener's handshakes answered by one task (the
//! same state machine as the blocking listener's thread, woken by the
//! reactor); each connection's heartbeats and silence checks in a task of
//! its own. No thread per listener or connection.

use std::future::{Future, poll_fn};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ::tokio::io::Interest as Want;
use ::tokio::io::{AsyncReadExt, AsyncWriteExt};
use ::tokio::sync::mpsc;
use ::tokio::task::JoinHandle;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Duplex, Registered};
use crate::Net;
use crate::endpoint::auth;
use crate::endpoint::handshakes::Handshakes;
use crate::endpoint::tcp::{self, Accepted, Watch};
use crate::endpoint::{Endpoint, HostPort, Key};
use crate::error::{Error, ErrorKind, Result};

/// Completed handshakes waiting for `accept`, as on the blocking listener.
const QUEUE: usize = 128;

/// The key `net` names; one from the environment is read off the runtime
/// thread (it may be a file).
async fn key(net: &Net) -> Result<Option<Key>> {
    if !net.key_from_env() {
        return net.resolve_key();
    }
    let net = net.clone();
    ::tokio::task::spawn_blocking(move || net.resolve_key())
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("reading the key: {e}")))?
}

/// The addresses `hp` names, looked up without blocking the runtime.
async fn resolve(hp: &HostPort) -> Result<Vec<SocketAddr>> {
    tcp::resolved(
        hp,
        ::tokio::net::lookup_host((hp.host.as_str(), hp.port)).await,
    )
}

/// Runs a connection's watcher as a task until the connection is gone.
fn watch(mut w: Watch) {
    ::tokio::spawn(async move {
        while {
            ::tokio::time::sleep(w.tick()).await;
            w.look()
        } {}
    });
}

/// An authenticated stream as an awaitable channel, with its watcher task.
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
    let (duplex, w) = tcp::connection(stream, ok, client, net)?;
    let duplex = duplex.into_async()?;
    watch(w);
    Ok(duplex)
}

/// Connects to `hp` as the blocking `connect` does (deadline per attempt,
/// the options' retries, the handshake under its own deadline), awaited.
pub(super) async fn connect<Out, In>(hp: &HostPort, net: &Net) -> Result<Duplex<Out, In>>
where
    Out: Serialize + DeserializeOwned,
    In: Serialize + DeserializeOwned,
{
    let key = key(net).await?;
    let what = format!("connecting to tcp://{hp}");
    let addrs = resolve(hp).await?;
    for a in &addrs {
        tcp::allowed(a, key.as_ref(), &what)?;
    }
    let mut backoff = net.retry.backoff;
    let mut last = None;
    for attempt in 0..net.retry.attempts.max(1) {
        if attempt > 0 {
            ::tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        for a in &addrs {
            let got =
                ::tokio::time::timeout(net.connect_timeout, ::tokio::net::TcpStream::connect(a))
                    .await
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
            match got {
                Ok(s) => return handshake(s, key.as_ref(), net, &what).await,
                Err(e) => last = Some(e),
            }
        }
    }
    Err(Error::io(
        &what,
        last.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()),
    ))
}

/// The client's handshake, under the handshake deadline; the errors are
/// the blocking client's.
async fn handshake<Out, In>(
    mut s: ::tokio::net::TcpStream,
    key: Option<&Key>,
    net: &Net,
    what: &str,
) -> Result<Duplex<Out, In>>
where
    Out: Serialize + DeserializeOwned,
    In: Serialize + DeserializeOwned,
{
    let io_err = |e| tcp::handshake_error(what, net, e);
    s.set_nodelay(true).map_err(io_err)?;
    let (client, hello) = auth::Client::new(key.map(Key::bytes), tcp::millis(net.heartbeat));
    let exchange = async {
        s.write_all(&tcp::frame(&hello)).await?;
        let mut prefix = [0u8; 4];
        s.read_exact(&mut prefix).await?;
        let mut reply = vec![0u8; tcp::frame_len(prefix)?];
        s.read_exact(&mut reply).await?;
        Ok(reply)
    };
    let reply = ::tokio::time::timeout(net.handshake_timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        .map_err(io_err)?;
    let (ok, confirm) = client
        .finish(&reply)
        .map_err(|r| tcp::reply_error(what, r))?;
    // A fresh connection's buffer takes the confirmation whole; a peer
    // that stopped reading would be caught by the deadline.
    ::tokio::time::timeout(net.handshake_timeout, s.write_all(&tcp::frame(&confirm)))
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        .map_err(io_err)?;
    let s = s.into_std().map_err(io_err)?;
    // procwire's ends are in blocking mode (see `crate::tokio`).
    s.set_nonblocking(false).map_err(io_err)?;
    channel(s, ok, true, net)
}

/// The listening socket and the handshakes under way, as the task drives
/// them (each stream registered with the reactor).
struct Served {
    handshakes: Handshakes<Registered>,
    listening: Registered,
}

/// A `tcp://` listener on the runtime. Dropping it stops its task.
#[derive(Debug)]
pub(super) struct Acceptor {
    local: SocketAddr,
    state: Arc<Mutex<Option<Served>>>,
    queue: ::tokio::sync::Mutex<mpsc::Receiver<Accepted>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.handshakes.fmt(f)
    }
}

/// Whether `reg` has input, its readiness taken (cleared before the try
/// that follows, tokio's edge-triggered protocol); when not, the task is
/// woken once it has.
fn take_ready(reg: &Registered, cx: &mut Context<'_>) -> bool {
    match reg.0.poll_read_ready(cx) {
        Poll::Ready(Ok(mut guard)) => {
            guard.clear_ready();
            true
        }
        // A registration the reactor gave up on: let the try find out.
        Poll::Ready(Err(_)) => true,
        Poll::Pending => false,
    }
}

impl Acceptor {
    /// Binds `hp` and starts the task.
    pub(super) async fn bind(hp: &HostPort, net: &Net) -> Result<Acceptor> {
        let key = key(net).await?;
        let addrs = resolve(hp).await?;
        let handshakes = tcp::bind(hp, &addrs, key.as_ref(), net)?;
        Acceptor::resume(handshakes, Vec::new())
    }

    /// A task for `handshakes` (from a blocking listener, say), with
    /// connections already accepted.
    pub(super) fn resume(handshakes: Handshakes<()>, accepted: Vec<Accepted>) -> Result<Acceptor> {
        let local = handshakes
            .listener()
            .local_addr()
            .map_err(|e| Error::io("starting a tcp:// listener", e))?;
        let listening = Registered::new(handshakes.listener().as_fd(), Want::READABLE)?;
        let handshakes = handshakes.rewait(|s| Registered::new(s.as_fd(), Want::READABLE).ok());
        let (tx, rx) = mpsc::channel(QUEUE);
        for a in accepted {
            let _ = tx.try_send(a);
        }
        let state = Arc::new(Mutex::new(Some(Served {
            handshakes,
            listening,
        })));
        let task = ::tokio::spawn(serve(Arc::clone(&state), tx));
        Ok(Acceptor {
            local,
            state,
            queue: ::tokio::sync::Mutex::new(rx),
            task,
        })
    }

    pub(super) fn endpoint(&self) -> Endpoint {
        tcp::local_endpoint(self.local)
    }

    /// The next connection whose handshake completed, as a channel.
    /// Cancel-safe: a dropped accept took no connection.
    pub(super) async fn accept<Out, In>(&self, net: &Net) -> Result<Duplex<Out, In>>
    where
        Out: Serialize + DeserializeOwned,
        In: Serialize + DeserializeOwned,
    {
        let Some((stream, ok)) = self.queue.lock().await.recv().await else {
            return Err(Error::new(
                ErrorKind::Io,
                "the listener's handshake task is gone (its runtime shut down)",
            ));
        };
        channel(stream, ok, false, net)
    }

    /// Stops the task: the handshakes under way and the connections not
    /// yet taken, for a blocking listener's thread.
    pub(super) fn stop(mut self) -> (Handshakes<()>, Vec<Accepted>) {
        self.task.abort();
        let served = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .expect("present until stopped");
        let queue = self.queue.get_mut();
        let mut accepted = Vec::new();
        while let Ok(a) = queue.try_recv() {
            accepted.push(a);
        }
        (served.handshakes.rewait(|_| Some(())), accepted)
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The handshake task: every round polls the listener and each handshake
/// for input (registering the task's waker with those that have none) and
/// sleeps until the first deadline; it ends when the listener is dropped
/// or stopped.
async fn serve(state: Arc<Mutex<Option<Served>>>, ready: mpsc::Sender<Accepted>) {
    let mut sleep = Box::pin(::tokio::time::sleep(Duration::ZERO));
    poll_fn(|cx| {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(s) = state.as_mut() else {
            return Poll::Ready(());
        };
        loop {
            // A handshake or the listener that had input must be polled
            // again (that is what registers the waker), so a round that
            // took any is followed by another.
            let took = std::cell::Cell::new(false);
            let mut ready_in = |reg: &Registered| {
                let r = take_ready(reg, cx);
                took.set(took.get() | r);
                r
            };
            let accepting = s.handshakes.listening(Instant::now()) && ready_in(&s.listening);
            let go_on = s.handshakes.advance(
                accepting,
                |_, reg| ready_in(reg),
                |stream| Registered::new(stream.as_fd(), Want::READABLE).ok(),
                |stream, ok| {
                    !matches!(
                        ready.try_send((stream, ok)),
                        Err(mpsc::error::TrySendError::Closed(_))
                    )
                },
            );
            if !go_on {
                return Poll::Ready(());
            }
            if took.get() {
                continue;
            }
            if let Some(d) = s.handshakes.deadline() {
                sleep.as_mut().reset(::tokio::time::Instant::from_std(d));
                if Pin::new(&mut sleep).as_mut().poll(cx).is_ready() {
                    continue;
                }
            }
            return Poll::Pending;
        }
    })
    .await;
}
