//! `zmq+tcp://` and `zmq+ipc://` behind [`listen`](super::listen),
//! [`accept`](super::Listener::accept) and [`connect`](super::connect):
//! ZeroMQ as connections, each an ordinary awaitable duplex, carried by a
//! task on the caller's runtime (no thread). How, and what it costs:
//! [`crate::remote::zmq::endpoints`].

use std::os::fd::OwnedFd;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::Duplex;
use crate::Net;
use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, Result};
use crate::remote::zmq::endpoints::{
    Acceptor as BlockingAcceptor, Life, NewPeer, Parts, dealer, router,
};
use crate::remote::zmq::socket::Opened;
use crate::zmq::Kind;

/// A DEALER connected to `addr`, as an awaitable duplex.
pub(super) async fn connect<Out, In>(addr: &str, net: &Net) -> Result<Duplex<Out, In>>
where
    Out: Serialize + DeserializeOwned,
    In: Serialize + DeserializeOwned,
{
    // (Its carrier is a task of this runtime: nothing waits for it on drop.)
    let open = Opened::new_async(Kind::Dealer, addr, net, false).await?;
    let (ours, carrying) = dealer(open, net)?;
    let duplex = net.options.duplex_from(ours)?.into_async()?;
    tokio::spawn(carrying);
    Ok(duplex)
}

/// A ROUTER bound at an address, handing out its peers (see
/// [`crate::remote::zmq::endpoints`]: they outlive it).
#[derive(Debug)]
pub(super) struct Acceptor {
    endpoint: Endpoint,
    peers: tokio::sync::Mutex<mpsc::Receiver<NewPeer>>,
    /// What the sorter rings for a blocking acceptor, kept for
    /// [`Acceptor::into_blocking`].
    bell: Arc<OwnedFd>,
    life: Arc<Life>,
}

/// Binds a ROUTER at `addr` and starts sorting its messages by peer.
pub(super) async fn listen(addr: &str, net: &Net) -> Result<Acceptor> {
    // The sorter rings it for a blocking acceptor; awaited, the queue
    // wakes this side.
    let bell = Arc::new(
        crate::sys::ready::eventfd().map_err(|e| Error::io("making a listener's eventfd", e))?,
    );
    let life = Arc::new(Life::default());
    let open = Opened::new_async(Kind::Router, addr, net, true).await?;
    let (endpoint, peers, sorting) = router(open, net, Arc::clone(&bell), Arc::clone(&life));
    let ended = Arc::clone(&life);
    tokio::spawn(async move {
        sorting.await;
        ended.ended();
    });
    Ok(Acceptor {
        endpoint,
        peers: tokio::sync::Mutex::new(peers),
        bell,
        life,
    })
}

impl Acceptor {
    /// The next new peer. Cancel-safe: a dropped accept took no peer.
    pub(super) async fn accept<Out, In>(&self, net: &Net) -> Result<Duplex<Out, In>>
    where
        Out: Serialize + DeserializeOwned,
        In: Serialize + DeserializeOwned,
    {
        let (socket, _done) = self.peers.lock().await.recv().await.ok_or_else(|| {
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

    /// A blocking listener's ROUTER, awaited (its sorter goes on where it
    /// runs: on its own thread).
    pub(super) fn from_blocking(blocking: BlockingAcceptor) -> Acceptor {
        let p = blocking.into_parts();
        Acceptor {
            endpoint: p.endpoint,
            peers: tokio::sync::Mutex::new(p.peers),
            bell: p.bell,
            life: p.life,
        }
    }

    /// Back to a blocking acceptor (its sorter goes on on this runtime,
    /// which must outlive the peers).
    pub(super) fn into_blocking(self) -> BlockingAcceptor {
        BlockingAcceptor::from_parts(Parts {
            endpoint: self.endpoint,
            peers: self.peers.into_inner(),
            bell: self.bell,
            life: self.life,
        })
    }
}
