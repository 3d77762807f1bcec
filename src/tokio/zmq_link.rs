//! `zmq+tcp://` and `zmq+ipc://` behind [`listen`](super::listen),
//! [`accept`](super::Listener::accept) and [`connect`](super::connect):
//! ZeroMQ as connections, each an ordinary awaitable duplex.
//!
//! `connect` opens a DEALER; `listen` binds a ROUTER, and `accept` gives
//! the next peer it has not heard from before (a peer is its routing
//! envelope: a DEALER, or a REQ behind its delimiter), with the peer's
//! messages and this end's replies routed by that envelope. Each duplex is
//! carried by a task on the caller's runtime, between the socket and one
//! end of a stream socket pair (no thread); each message is one ZeroMQ
//! frame holding the codec's payload, as on every procwire ZeroMQ socket,
//! so a peer in another language speaks to it with its DEALER or ROUTER.
//!
//! That carrying costs two hand-overs a message: where speed matters,
//! `procwire::tokio::zmq` awaits the socket itself. A listener holds at
//! most [`BACKLOG`] peers not yet accepted (a message from one more new
//! peer is dropped, as a full backlog refuses a connection); a peer whose
//! messages go unread holds up the others once its duplex's buffer is full
//! (a ROUTER receives from all its peers in one queue). A peer accepted
//! outlives the listener, as a connection does: the ROUTER stays bound
//! until the last one is closed, and drops new peers' messages meanwhile.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use zeromq::ZmqMessage;

use super::Duplex;
use crate::Net;
use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, Result};
use crate::remote::zmq::bridge::{Link, LinkWriter, carry, pair};
use crate::remote::zmq::socket::Opened;
use crate::zmq::Kind;

/// Peers a listener keeps for `accept` at most.
pub(crate) const BACKLOG: usize = 128;

/// A DEALER connected to `addr`, as an awaitable duplex.
pub(super) async fn connect<Out, In>(addr: &str, net: &Net) -> Result<Duplex<Out, In>>
where
    Out: Serialize + DeserializeOwned,
    In: Serialize + DeserializeOwned,
{
    let open = Opened::new_async(Kind::Dealer, addr, net, false).await?;
    let what = || format!("connecting to {addr}");
    let (ours, theirs) = pair().map_err(|e| Error::io(&what(), e))?;
    let (mut link, out) =
        Link::open(theirs, net.options.max_frame_len()).map_err(|e| Error::io(&what(), e))?;
    let duplex = net.options.duplex_from(ours)?.into_async()?;
    tokio::spawn(async move {
        // Its end (the application's duplex closing, the socket failing)
        // closes the pair: the duplex reports the end of stream.
        let _ = carry(&open.socket, Kind::Dealer, &mut link, &out).await;
    });
    Ok(duplex)
}

/// A ROUTER bound at an address, handing out its peers. The task that
/// sorts the ROUTER's messages by peer outlives it while a peer it handed
/// out is open, so that the peer's messages still arrive; meanwhile a new
/// peer's messages are dropped, and the address stays bound until the last
/// one closes.
#[derive(Debug)]
pub(super) struct Acceptor {
    endpoint: Endpoint,
    peers: tokio::sync::Mutex<mpsc::Receiver<crate::Socket>>,
}

/// Binds a ROUTER at `addr` and starts sorting its messages by peer.
pub(super) async fn listen(addr: &str, net: &Net) -> Result<Acceptor> {
    let open = Arc::new(Opened::new_async(Kind::Router, addr, net, true).await?);
    let endpoint = open.endpoint.clone();
    let (found, peers) = mpsc::channel(BACKLOG);
    let max = net.options.max_frame_len();
    tokio::spawn(sort(open, found, max));
    Ok(Acceptor {
        endpoint,
        peers: tokio::sync::Mutex::new(peers),
    })
}

impl Acceptor {
    /// The next new peer. Cancel-safe: a dropped accept took no peer.
    pub(super) async fn accept<Out, In>(&self, net: &Net) -> Result<Duplex<Out, In>>
    where
        Out: Serialize + DeserializeOwned,
        In: Serialize + DeserializeOwned,
    {
        let socket = self.peers.lock().await.recv().await.ok_or_else(|| {
            Error::new(
                ErrorKind::Disconnected,
                "the ZeroMQ listener's socket is closed",
            )
        })?;
        net.options.duplex_from(socket)?.into_async()
    }

    pub(super) fn endpoint(&self) -> Endpoint {
        self.endpoint.clone()
    }
}

/// Sorts the ROUTER's messages by peer: a peer not heard from before gets
/// a stream pair (its end waits for `accept`) and a task that sends what
/// the application writes there back to the peer. Ends once the listener
/// is gone (`found` closed) and so is every peer it handed out.
async fn sort(open: Arc<Opened>, found: mpsc::Sender<crate::Socket>, max: usize) {
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
            // pair is made for it).
            // (Or no listener: the peers it handed out go on; this one is
            // nobody's.)
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
            tokio::spawn(async move {
                reply(&open, &env, link).await;
                let _ = gone.send(env);
            });
            slot.send(ours);
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
