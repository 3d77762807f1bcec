//! `zmq+tcp://` and `zmq+ipc://` as endpoints: ZeroMQ as connections, each
//! an ordinary duplex, behind [`Net::connect`] and [`Net::listen`] (here,
//! blocking) and behind `procwire::tokio::{connect, listen}` (awaited).
//!
//! `connect` opens a DEALER; `listen` binds a ROUTER, and `accept` gives
//! the next peer it has not heard from before (a peer is its routing
//! envelope: a DEALER, or a REQ behind its delimiter), with the peer's
//! messages and this end's replies routed by that envelope. A task carries
//! each duplex between the socket and one end of a stream socket pair;
//! each message is one ZeroMQ frame holding the codec's payload, as on
//! every procwire ZeroMQ socket, so a peer in another language speaks to
//! it with its DEALER or ROUTER.
//!
//! That carrying costs two hand-overs a message: where speed matters,
//! [`procwire::zmq`](crate::zmq) sockets are faster. A listener holds at
//! most [`BACKLOG`] peers not yet accepted (a message from one more new
//! peer is dropped, as a full backlog refuses a connection); a peer whose
//! messages go unread holds up the others once its duplex's buffer is full
//! (a ROUTER receives from all its peers in one queue). A peer accepted
//! outlives the listener, as a connection does: the ROUTER stays bound
//! until the last one is closed, and drops new peers' messages meanwhile.
//!
//! The blocking forms run the socket on a runtime of its own, on a thread
//! of its own (`procwire-zmq`): one a connection, one a listener for all
//! its peers. It ends once the connection, or the listener and every peer
//! it handed out, is closed, after letting what was sent be written for up
//! to [`LINGER`](super::driven::LINGER). Dropping a blocking end waits
//! for that (a connection, or the last of a listener and its peers; a peer
//! waits until its carrier has handed what it wrote to the ROUTER), so
//! that a process that exits right after loses nothing it sent.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use zeromq::ZmqMessage;

use super::Kind;
use super::bridge::{Link, LinkWriter, carry, pair};
use super::socket::Opened;
use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, Result};
use crate::sys;
use crate::{Duplex, Net};

/// Peers a listener keeps for `accept` at most.
pub(crate) const BACKLOG: usize = 128;

/// Disconnected once a carrier has ended (its sender, held by the carrying
/// task, dropped).
pub(crate) type Done = std::sync::mpsc::Receiver<()>;

/// A new peer: the application's end of its pair, and its carrier's end.
pub(crate) type NewPeer = (crate::Socket, Done);

/// How far a socket's runtime has got, for the ends that must not count as
/// gone before what was sent on them is written: a connection's carrier
/// writes through the socket, and the socket's own tasks write what it
/// queued only until the socket closes and its runtime ends.
#[derive(Debug, Default)]
pub(crate) struct Life {
    /// A listener's peers whose carriers still run.
    peers: AtomicUsize,
    /// The listener itself is gone.
    listener_gone: AtomicBool,
    /// The socket's tasks have ended (or had their linger): all written.
    ended: Mutex<bool>,
    end: Condvar,
}

impl Life {
    pub(crate) fn ended(&self) {
        *self.ended.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.end.notify_all();
    }

    /// Waits, for up to the linger, for the socket's tasks to end.
    fn wait_end(&self) {
        let ended = self.ended.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = self
            .end
            .wait_timeout_while(ended, super::driven::LINGER, |e| !*e);
    }

    /// For the last of the listener and its peers to go: the socket closes
    /// then, and its tasks write what it queued.
    fn last_gone(&self) -> bool {
        self.listener_gone.load(Ordering::SeqCst) && self.peers.load(Ordering::SeqCst) == 0
    }
}

/// Has `duplex`'s drop wait, after closing its end, for its carrier to end
/// and (the last end of its socket) for the socket's tasks: what was sent
/// on it is written before it counts as gone. For up to the linger each.
/// (`done` is `None` for a connection: its carrier ends with its runtime.)
fn wait_for_carrier<Out, In>(duplex: &Duplex<Out, In>, done: Option<Done>, life: Arc<Life>) {
    duplex.conn().wait_after_close(Box::new(move || {
        if let Some(done) = done {
            let _ = done.recv_timeout(super::driven::LINGER);
        }
        if life.last_gone() {
            life.wait_end();
        }
    }));
}

/// A DEALER (`open`): the application's end of its pair, and the task that
/// carries its messages (to run on the runtime it was opened on).
pub(crate) fn dealer(
    open: Opened,
    net: &Net,
) -> Result<(crate::Socket, impl Future<Output = ()> + Send + 'static)> {
    let what = || format!("connecting to {}", open.endpoint);
    let (ours, theirs) = pair().map_err(|e| Error::io(&what(), e))?;
    let (mut link, out) =
        Link::open(theirs, net.options.max_frame_len()).map_err(|e| Error::io(&what(), e))?;
    // Its end (the application's duplex closing, the socket failing)
    // closes the pair: the duplex reports the end of stream.
    let carrying = async move {
        let _ = carry(&open.socket, Kind::Dealer, &mut link, &out).await;
    };
    Ok((ours, carrying))
}

/// A ROUTER (`open`): where it is, the queue of its new peers' ends, and
/// the task that sorts its messages by peer (to run on the runtime it was
/// opened on), which signals `bell` after each new peer and when it ends.
pub(crate) fn router(
    open: Opened,
    net: &Net,
    bell: Arc<OwnedFd>,
    life: Arc<Life>,
) -> (
    Endpoint,
    mpsc::Receiver<NewPeer>,
    impl Future<Output = ()> + Send + 'static,
) {
    let open = Arc::new(open);
    let endpoint = open.endpoint.clone();
    let (found, peers) = mpsc::channel(BACKLOG);
    let max = net.options.max_frame_len();
    let sorting = async move {
        sort(open, found, max, &bell, &life).await;
        sys::ready::signal(bell.as_fd());
    };
    (endpoint, peers, sorting)
}

/// Sorts the ROUTER's messages by peer: a peer not heard from before gets
/// a stream pair (its end waits for `accept`) and a task that sends what
/// the application writes there back to the peer. Ends once the listener
/// is gone (`found` closed) and so is every peer it handed out.
async fn sort(
    open: Arc<Opened>,
    found: mpsc::Sender<NewPeer>,
    max: usize,
    bell: &OwnedFd,
    life: &Arc<Life>,
) {
    let mut peers: HashMap<Vec<Vec<u8>>, LinkWriter> = HashMap::new();
    // Peers whose duplex the application closed: forgotten (their pair
    // closed), so that a peer gone for good holds no descriptor.
    let (gone, mut forget) = mpsc::unbounded_channel();
    loop {
        let m = tokio::select! {
            m = open.socket.recv() => match m {
                Ok(m) => m,
                Err(_) => return,
            },
            Some(envelope) = forget.recv() => {
                peers.remove(&envelope);
                continue;
            }
            () = found.closed(), if peers.is_empty() => return,
        };
        let mut frames = m.into_vec();
        let Some(payload) = frames.pop() else {
            continue;
        };
        let envelope: Vec<Vec<u8>> = frames.iter().map(|f| f.to_vec()).collect();
        if !peers.contains_key(&envelope) {
            // A full backlog: the new peer's message is dropped (before a
            // pair is made for it). (Or no listener: the peers it handed
            // out go on; this one is nobody's.)
            let Ok(slot) = found.try_reserve() else {
                continue;
            };
            let Ok((ours, theirs)) = pair() else {
                continue;
            };
            let Ok((link, out)) = Link::open(theirs, max) else {
                continue;
            };
            let gone = gone.clone();
            let (open, env) = (Arc::clone(&open), envelope.clone());
            let (ended, done) = std::sync::mpsc::channel::<()>();
            life.peers.fetch_add(1, Ordering::SeqCst);
            let life = Arc::clone(life);
            tokio::spawn(async move {
                reply(&open, &env, link).await;
                life.peers.fetch_sub(1, Ordering::SeqCst);
                drop(ended);
                let _ = gone.send(env);
            });
            slot.send((ours, done));
            sys::ready::signal(bell.as_fd());
            peers.insert(envelope.clone(), out);
        }
        let Some(out) = peers.get(&envelope) else {
            continue;
        };
        if out.put(&payload).await.is_err() {
            // The application closed this peer's duplex: a later message
            // from it is a new peer.
            peers.remove(&envelope);
        }
    }
}

/// Sends what the application writes on a peer's duplex to that peer,
/// behind its envelope, until the application closes it.
async fn reply(open: &Opened, envelope: &[Vec<u8>], mut link: Link) {
    while let Ok(Some(payload)) = link.next().await {
        let mut frames: Vec<bytes::Bytes> = envelope
            .iter()
            .map(|f| bytes::Bytes::copy_from_slice(f))
            .collect();
        frames.push(payload.into());
        if let Ok(m) = ZmqMessage::try_from(frames) {
            // Only a peer that is gone fails a ROUTER's send: the message
            // is dropped, as libzmq's ROUTER drops it.
            let _ = open.socket.send(m).await;
        }
    }
}

/// Runs `start` on a runtime of its own, on a thread of its own: `start`
/// gives what the caller gets and the task to go on with, which runs until
/// it ends; then the runtime's other tasks (the socket's writers) get up
/// to the linger to finish, and `life` hears that they did.
fn on_own_thread<T, S, F>(life: Arc<Life>, start: S) -> Result<T>
where
    T: Send + 'static,
    S: FnOnce() -> F + Send + 'static,
    F: Future<Output = Result<(T, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>)>>,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("procwire-zmq".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(Error::io("starting a ZeroMQ runtime", e)));
                    return;
                }
            };
            rt.block_on(async {
                match start().await {
                    Ok((given, task)) => {
                        let _ = tx.send(Ok(given));
                        task.await;
                        super::driven::tasks_end(super::driven::LINGER).await;
                        life.ended();
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
            rt.shutdown_background();
        })
        .map_err(|e| Error::io("starting a ZeroMQ thread", e))?;
    rx.recv().map_err(|_| {
        Error::new(
            ErrorKind::Io,
            "the ZeroMQ thread ended before the socket opened",
        )
    })?
}

/// Opens a socket on the thread [`on_own_thread`] gave it (where the
/// address policy may block: it may look at the file system and resolve a
/// host).
async fn open(kind: Kind, addr: &str, net: &Net, bind: bool) -> Result<Opened> {
    let zaddr = super::zmq_address(&addr.parse()?, net, bind)?;
    Opened::new(kind, addr, &zaddr, net, bind).await
}

/// [`Net::connect`] to a ZeroMQ address: a DEALER.
pub(crate) fn connect<Out, In>(addr: &str, net: &Net) -> Result<Duplex<Out, In>>
where
    Out: Serialize + DeserializeOwned,
    In: Serialize + DeserializeOwned,
{
    let (a, n) = (addr.to_string(), net.clone());
    // A connection is its socket's only end.
    let life = Arc::new(Life::default());
    life.listener_gone.store(true, Ordering::SeqCst);
    let ours = on_own_thread(Arc::clone(&life), move || async move {
        let (ours, carrying) = dealer(open(Kind::Dealer, &a, &n, false).await?, &n)?;
        Ok((ours, Box::pin(carrying) as _))
    })?;
    let duplex = net.options.duplex_from(ours)?;
    // (Its carrier ends with the runtime, which `life` hears of.)
    wait_for_carrier(&duplex, None, life);
    Ok(duplex)
}

/// What a listener's ROUTER is made of, blocking or awaited.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) endpoint: Endpoint,
    pub(crate) peers: mpsc::Receiver<NewPeer>,
    /// Rung by the sorter (see [`Acceptor`]).
    pub(crate) bell: Arc<OwnedFd>,
    pub(crate) life: Arc<Life>,
}

/// A blocking listener's ROUTER: see the module docs.
#[derive(Debug)]
pub(crate) struct Acceptor {
    endpoint: Endpoint,
    /// (`None` once handed to the awaited listener.)
    peers: Mutex<Option<mpsc::Receiver<NewPeer>>>,
    /// Readable while `peers` may hold a peer or has ended (an eventfd).
    bell: Arc<OwnedFd>,
    life: Arc<Life>,
}

impl Drop for Acceptor {
    /// Stops taking new peers; the last of the listener and its peers to go
    /// waits for the ROUTER to write what it queued.
    fn drop(&mut self) {
        let Some(peers) = self.peers.get_mut().unwrap_or_else(PoisonError::into_inner) else {
            return;
        };
        peers.close();
        // Peers never accepted go now: their carriers end.
        while peers.try_recv().is_ok() {}
        self.life.listener_gone.store(true, Ordering::SeqCst);
        if self.life.last_gone() {
            self.life.wait_end();
        }
    }
}

impl Acceptor {
    /// [`Net::listen`] at a ZeroMQ address: a ROUTER.
    pub(crate) fn bind(addr: &str, net: &Net) -> Result<Acceptor> {
        let bell = Arc::new(
            sys::ready::eventfd().map_err(|e| Error::io("making a listener's eventfd", e))?,
        );
        let life = Arc::new(Life::default());
        let (a, n, b, l) = (
            addr.to_string(),
            net.clone(),
            Arc::clone(&bell),
            Arc::clone(&life),
        );
        let (endpoint, peers) = on_own_thread(Arc::clone(&life), move || async move {
            let opened = open(Kind::Router, &a, &n, true).await?;
            let (endpoint, peers, sorting) = router(opened, &n, b, l);
            Ok(((endpoint, peers), Box::pin(sorting) as _))
        })?;
        Ok(Acceptor {
            endpoint,
            peers: Mutex::new(Some(peers)),
            bell,
            life,
        })
    }

    /// The next new peer, waiting until `deadline` at most.
    pub(crate) fn accept<Out, In>(
        &self,
        net: &Net,
        deadline: Option<Instant>,
    ) -> Result<Duplex<Out, In>>
    where
        Out: Serialize + DeserializeOwned,
        In: Serialize + DeserializeOwned,
    {
        loop {
            {
                let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(peers) = peers.as_mut() else {
                    return Err(Error::new(
                        ErrorKind::Disconnected,
                        "the ZeroMQ listener was made async",
                    ));
                };
                match peers.try_recv() {
                    Ok((s, done)) => {
                        let duplex = net.options.duplex_from(s)?;
                        wait_for_carrier(&duplex, Some(done), Arc::clone(&self.life));
                        return Ok(duplex);
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        return Err(Error::new(
                            ErrorKind::Disconnected,
                            "the ZeroMQ listener's socket is closed",
                        ));
                    }
                    // Quiet only while nothing is queued (under the lock):
                    // the sorter rings after each peer it queues.
                    Err(mpsc::error::TryRecvError::Empty) => sys::ready::drain(self.bell.as_fd()),
                }
            }
            crate::endpoint::wait_for_peer(self.bell.as_fd(), deadline)?;
        }
    }

    pub(crate) fn endpoint(&self) -> Endpoint {
        self.endpoint.clone()
    }

    /// What it is made of, for the awaited listener (the sorter goes on
    /// where it runs).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn into_parts(self) -> Parts {
        let peers = self
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .expect("only into_parts takes it, consuming the acceptor");
        Parts {
            endpoint: self.endpoint.clone(),
            peers,
            bell: Arc::clone(&self.bell),
            life: Arc::clone(&self.life),
        }
    }

    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn from_parts(parts: Parts) -> Acceptor {
        Acceptor {
            endpoint: parts.endpoint,
            peers: Mutex::new(Some(parts.peers)),
            bell: parts.bell,
            life: parts.life,
        }
    }
}
