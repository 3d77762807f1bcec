//! ROUTER sockets: every message with the peer that sent it ([`Peer`]),
//! and replies to a chosen peer.

use super::*;

impl<Out, In> std::fmt::Debug for Router<Out, In> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("zmq::Router")
            .field("endpoint", &self.open.endpoint)
            .finish_non_exhaustive()
    }
}

/// Who sent a message to a ROUTER: its identity and envelope, to reply to.
///
/// # Examples
///
/// ```
/// use procwire::zmq::{self, Kind};
///
/// let net = procwire::Net::new();
/// let router = zmq::bind_router::<u8, u8>("zmq+tcp://127.0.0.1:0", &net)?;
/// let dealer = zmq::connect::<u8, u8>(Kind::Dealer, &router.endpoint().to_string(), &net)?;
/// dealer.send(1).map_err(|e| e.into_error())?;
/// let (peer, _) = router.recv()?;
/// assert!(!peer.identity().is_empty()); // who to answer
/// router.send(&peer, &2)?;
/// assert_eq!(dealer.recv()?, 2);
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    envelope: Vec<Vec<u8>>,
}

impl Peer {
    /// The peer's routing identity (chosen by ZeroMQ unless the peer set
    /// one).
    pub fn identity(&self) -> &[u8] {
        self.envelope.first().map_or(&[], Vec::as_slice)
    }
}

/// A ROUTER socket: receives `(Peer, In)`, replies to a chosen peer.
///
/// # Examples
///
/// ```
/// use procwire::zmq::{self, Kind};
///
/// let net = procwire::Net::new();
/// let router = zmq::bind_router::<String, String>("zmq+tcp://127.0.0.1:0", &net)?;
/// let req = zmq::connect::<String, String>(Kind::Req, &router.endpoint().to_string(), &net)?;
/// let asker = std::thread::spawn(move || req.request("ping".into()));
/// let (peer, msg) = router.recv()?;
/// router.send(&peer, &format!("{msg}: pong"))?; // back to whoever asked
/// assert_eq!(asker.join().unwrap()?, "ping: pong");
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct Router<Out, In> {
    pub(super) open: Opened,
    pub(super) driven: Driven,
    pub(super) _marker: std::marker::PhantomData<fn(Out) -> In>,
}

impl<Out: Serialize, In: DeserializeOwned> Router<Out, In> {
    /// Waits for the next message and who sent it.
    pub fn recv(&self) -> Result<(Peer, In), RecvError> {
        self.take(None).map_err(RecvError::new)
    }

    /// Like [`recv`](Router::recv), for at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<(Peer, In), RecvTimeoutError> {
        self.take(Some(timeout)).map_err(RecvTimeoutError::new)
    }

    fn take(&self, timeout: Option<Duration>) -> Result<(Peer, In)> {
        let m = self.driven.run(receive(&self.open.socket, timeout))??;
        from_peer(&self.open, m)
    }

    /// Sends `value` to `peer`. A message to a peer that is gone is
    /// dropped, as libzmq's ROUTER drops it: a reply is no delivery receipt.
    pub fn send(&self, peer: &Peer, value: &Out) -> Result<()> {
        let m = to_peer(&self.open, peer, value)?;
        // Only a peer that is gone fails a ROUTER's send.
        let _ = self.driven.run(self.open.socket.send(m))?;
        Ok(())
    }

    /// The address the socket is bound or connected to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.open.endpoint
    }
}

/// A ROUTER's message: the envelope (who sent it) and the payload decoded.
pub(crate) fn from_peer<In: DeserializeOwned>(open: &Opened, m: ZmqMessage) -> Result<(Peer, In)> {
    let mut frames = m.into_vec();
    let payload = frames.pop().ok_or_else(|| {
        Error::new(
            ErrorKind::Decode,
            "a ROUTER message without a payload frame",
        )
    })?;
    let value = decode(open.codec, open.max, &payload)?;
    let envelope = frames.into_iter().map(|f| f.to_vec()).collect();
    Ok((Peer { envelope }, value))
}

/// `value` encoded behind `peer`'s envelope: a ROUTER's message to it.
pub(crate) fn to_peer<Out: Serialize>(
    open: &Opened,
    peer: &Peer,
    value: &Out,
) -> Result<ZmqMessage> {
    let mut frames: Vec<bytes::Bytes> = peer
        .envelope
        .iter()
        .map(|f| bytes::Bytes::copy_from_slice(f))
        .collect();
    frames.push(encode(open.codec, value)?.into());
    ZmqMessage::try_from(frames)
        .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("an empty message: {e:?}")))
}
