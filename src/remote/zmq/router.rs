//! ROUTER sockets: every message with the peer that sent it ([`Peer`]),
//! and replies to a chosen peer.

use super::*;

impl<Out, In> std::fmt::Debug for Router<Out, In> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("zmq::Router")
            .field("endpoint", &self.endpoint)
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
    /// The peer of a message whose frames before the payload are
    /// `envelope`.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn new(envelope: Vec<Vec<u8>>) -> Peer {
        Peer { envelope }
    }

    /// The frames before the payload.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn envelope(&self) -> &[Vec<u8>] {
        &self.envelope
    }

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
    pub(super) duplex: Duplex<ByteBuf, ByteBuf>,
    pub(super) codec: CodecKind,
    pub(super) endpoint: Endpoint,
    pub(super) bridge: Arc<Bridge>,
    pub(super) _held: Held,
    pub(super) _marker: std::marker::PhantomData<fn(Out) -> In>,
}

/// The link's framing of a ROUTER message: frame count, then each frame as
/// a 4-byte big-endian length and its bytes (the last is the payload).
pub(super) fn pack(frames: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + frames.iter().map(|f| 4 + f.len()).sum::<usize>());
    out.extend_from_slice(&(frames.len() as u32).to_be_bytes());
    for f in frames {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

pub(super) fn unpack(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut take = |n: usize| -> Option<&[u8]> {
        let (a, b) = (bytes.len() >= n).then(|| bytes.split_at(n))?;
        bytes = b;
        Some(a)
    };
    let count = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
    let mut frames = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let len = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
        frames.push(take(len)?);
    }
    Some(frames)
}

impl<Out: Serialize, In: DeserializeOwned> Router<Out, In> {
    /// Waits for the next message and who sent it.
    pub fn recv(&self) -> Result<(Peer, In), RecvError> {
        let raw = self
            .duplex
            .recv()
            .map_err(|e| RecvError::new(self.bridge.explain(e.into_error())))?;
        self.unwrap(raw).map_err(RecvError::new)
    }

    /// Like [`recv`](Router::recv), for at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<(Peer, In), RecvTimeoutError> {
        let raw = self
            .duplex
            .recv_timeout(timeout)
            .map_err(|e| RecvTimeoutError::new(self.bridge.explain(e.into_error())))?;
        self.unwrap(raw).map_err(RecvTimeoutError::new)
    }

    fn unwrap(&self, raw: ByteBuf) -> Result<(Peer, In)> {
        let frames = unpack(&raw).ok_or_else(|| {
            Error::new(
                ErrorKind::Decode,
                "a garbled message from the ROUTER bridge",
            )
        })?;
        let (payload, envelope) = frames.split_last().ok_or_else(|| {
            Error::new(
                ErrorKind::Decode,
                "a ROUTER message without a payload frame",
            )
        })?;
        let value = self.codec.decode(payload)?;
        Ok((
            Peer {
                envelope: envelope.iter().map(|f| f.to_vec()).collect(),
            },
            value,
        ))
    }

    /// Sends `value` to `peer`. A message to a peer that is gone is
    /// dropped, as libzmq's ROUTER drops it: a reply is no delivery receipt.
    pub fn send(&self, peer: &Peer, value: &Out) -> Result<()> {
        let mut payload = Vec::new();
        self.codec.encode(value, &mut payload)?;
        let mut frames: Vec<&[u8]> = peer.envelope.iter().map(Vec::as_slice).collect();
        frames.push(&payload);
        self.duplex
            .send(ByteBuf::from(pack(&frames)))
            .map_err(|e| self.bridge.explain(e.into_error()))
    }

    /// The address the socket is bound or connected to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}
