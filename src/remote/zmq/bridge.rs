//! The task that carries one ZeroMQ socket's messages to and from the
//! procwire channel the application holds (the other end of a stream
//! socket pair), and the socket itself, by kind.

use bytes::Bytes;
use zeromq::{Socket as _, SocketRecv, SocketSend, ZmqMessage};

use super::Kind;
use super::router::{pack, unpack};
use crate::frame::FrameDecoder;

/// The socket itself, by kind.
pub(crate) enum Zsock {
    Req(zeromq::ReqSocket),
    Rep(zeromq::RepSocket),
    Push(zeromq::PushSocket),
    Pull(zeromq::PullSocket),
    Dealer(zeromq::DealerSocket),
    Router(zeromq::RouterSocket),
}

impl Zsock {
    pub(crate) fn new(kind: Kind) -> Zsock {
        match kind {
            Kind::Req => Zsock::Req(zeromq::ReqSocket::new()),
            Kind::Rep => Zsock::Rep(zeromq::RepSocket::new()),
            Kind::Push => Zsock::Push(zeromq::PushSocket::new()),
            Kind::Pull => Zsock::Pull(zeromq::PullSocket::new()),
            Kind::Dealer => Zsock::Dealer(zeromq::DealerSocket::new()),
            Kind::Router => Zsock::Router(zeromq::RouterSocket::new()),
        }
    }

    pub(crate) async fn bind_or_connect(
        &mut self,
        addr: &str,
        bind: bool,
    ) -> zeromq::ZmqResult<Option<String>> {
        macro_rules! go {
            ($s:expr) => {
                if bind {
                    $s.bind(addr).await.map(|e| Some(e.to_string()))
                } else {
                    $s.connect(addr).await.map(|()| None)
                }
            };
        }
        match self {
            Zsock::Req(s) => go!(s),
            Zsock::Rep(s) => go!(s),
            Zsock::Push(s) => go!(s),
            Zsock::Pull(s) => go!(s),
            Zsock::Dealer(s) => go!(s),
            Zsock::Router(s) => go!(s),
        }
    }
}

impl Zsock {
    /// A socket created inside the runtime (the crate spawns tasks).
    pub(super) fn new_in(rt: &tokio::runtime::Runtime, kind: Kind) -> Zsock {
        let _guard = rt.enter();
        Zsock::new(kind)
    }
}

/// The bridge's end of the stream pair: procwire frames in.
pub(super) struct Link {
    rx: tokio::net::unix::OwnedReadHalf,
    frames: FrameDecoder,
}

/// The bridge's end of the stream pair: procwire frames out.
pub(super) struct LinkWriter {
    tx: tokio::sync::Mutex<tokio::net::unix::OwnedWriteHalf>,
}

impl Link {
    pub(super) fn new(stream: tokio::net::UnixStream, max: usize) -> (Link, LinkWriter) {
        let (rx, tx) = stream.into_split();
        (
            Link {
                rx,
                frames: FrameDecoder::new(max).expect("max_frame was checked by the channel"),
            },
            LinkWriter {
                tx: tokio::sync::Mutex::new(tx),
            },
        )
    }

    /// The next payload the application sent; `None` when it closed its
    /// end. Cancel-safe: bytes read stay in the decoder.
    async fn next(&mut self) -> std::result::Result<Option<Vec<u8>>, String> {
        loop {
            match self.frames.next_payload() {
                Ok(Some(p)) => return Ok(Some(p.to_vec())),
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
            self.rx.readable().await.map_err(|e| e.to_string())?;
            match self.rx.try_read(self.frames.spare()) {
                Ok(0) => {
                    return match self.frames.at_boundary() {
                        true => Ok(None),
                        false => Err("the application's end closed mid-frame".into()),
                    };
                }
                Ok(n) => self.frames.filled(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

impl LinkWriter {
    /// Hands one payload to the application, as a frame.
    async fn put(&self, payload: &[u8]) -> std::result::Result<(), String> {
        use tokio::io::AsyncWriteExt;
        let mut tx = self.tx.lock().await;
        let gone = |e: std::io::Error| format!("the application's end is gone: {e}");
        tx.write_all(&(payload.len() as u32).to_be_bytes())
            .await
            .map_err(gone)?;
        tx.write_all(payload).await.map_err(gone)
    }
}

/// One payload frame out of a ZeroMQ message: a single frame, or an empty
/// delimiter and a frame (what a REP or ROUTER peer sends to a DEALER).
pub(crate) fn single(m: ZmqMessage) -> std::result::Result<Bytes, String> {
    let mut frames = m.into_vec();
    if frames.len() == 2 && frames[0].is_empty() {
        frames.remove(0);
    }
    match frames.len() {
        1 => Ok(frames.pop().expect("one frame")),
        n => Err(format!(
            "a peer sent a multipart message of {n} frames; procwire carries one payload frame \
             per message"
        )),
    }
}

/// An error of one peer (it died mid-frame, sent garbage, its connection
/// broke): the socket lives on with its other peers.
pub(crate) fn peer_failed(e: &zeromq::ZmqError) -> bool {
    matches!(e, zeromq::ZmqError::Codec(_) | zeromq::ZmqError::Network(_))
}

fn msg(p: Vec<u8>) -> ZmqMessage {
    ZmqMessage::from(p)
}

/// The application closed its end, so what comes in has nowhere to go: but
/// what it sent before closing (a pool's byes) still goes out, so the
/// inbound half waits for the outbound half to reach the end of stream.
async fn closed_while_sending() -> std::result::Result<(), String> {
    std::future::pending().await
}

/// Carries messages between the socket and the application's channel
/// until the application closes its end (or something fails: the reason
/// is kept for the application's next error).
pub(super) async fn carry(
    sock: Zsock,
    link: &mut Link,
    out: &LinkWriter,
) -> std::result::Result<(), String> {
    let z = |e: zeromq::ZmqError| format!("ZeroMQ: {e}");
    match sock {
        Zsock::Req(mut s) => loop {
            let Some(p) = link.next().await? else {
                return Ok(());
            };
            s.send(msg(p)).await.map_err(z)?;
            tokio::select! {
                m = s.recv() => out.put(&single(m.map_err(z)?)?).await?,
                p = link.next() => return match p? {
                    None => Ok(()),
                    Some(_) => Err("a REQ sent again before its reply came".into()),
                },
            }
        },
        Zsock::Rep(mut s) => loop {
            tokio::select! {
                m = s.recv() => match m {
                    Ok(m) => out.put(&single(m)?).await?,
                    Err(e) if peer_failed(&e) => continue,
                    Err(e) => return Err(z(e)),
                },
                p = link.next() => return match p? {
                    None => Ok(()),
                    Some(_) => Err("a REP sent a reply before a request came".into()),
                },
            }
            let Some(p) = link.next().await? else {
                return Ok(());
            };
            s.send(msg(p)).await.map_err(z)?;
        },
        Zsock::Push(mut s) => loop {
            let Some(p) = link.next().await? else {
                return Ok(());
            };
            s.send(msg(p)).await.map_err(z)?;
        },
        Zsock::Pull(mut s) => loop {
            tokio::select! {
                m = s.recv() => match m {
                    Ok(m) => out.put(&single(m)?).await?,
                    Err(e) if peer_failed(&e) => {}
                    Err(e) => return Err(z(e)),
                },
                p = link.next() => return match p? {
                    None => Ok(()),
                    Some(_) => Err("a PULL socket cannot send".into()),
                },
            }
        },
        Zsock::Dealer(s) => {
            let (mut tx, mut rx) = s.split();
            let inbound = async {
                loop {
                    match rx.recv().await {
                        Ok(m) => {
                            if out.put(&single(m)?).await.is_err() {
                                return closed_while_sending().await;
                            }
                        }
                        Err(e) if peer_failed(&e) => {}
                        Err(e) => return Err(z(e)),
                    }
                }
            };
            let outbound = async {
                while let Some(p) = link.next().await? {
                    tx.send(msg(p)).await.map_err(z)?;
                }
                Ok::<(), String>(())
            };
            tokio::select! {
                r = inbound => r,
                r = outbound => r,
            }
        }
        Zsock::Router(s) => {
            let (mut tx, mut rx) = s.split();
            let inbound = async {
                loop {
                    let m = match rx.recv().await {
                        Ok(m) => m.into_vec(),
                        Err(e) if peer_failed(&e) => continue,
                        Err(e) => return Err(z(e)),
                    };
                    let frames: Vec<&[u8]> = m.iter().map(|b| b.as_ref()).collect();
                    if out.put(&pack(&frames)).await.is_err() {
                        return closed_while_sending().await;
                    }
                }
            };
            let outbound = async {
                while let Some(p) = link.next().await? {
                    let frames = unpack(&p).ok_or("a garbled ROUTER message from procwire")?;
                    let m = ZmqMessage::try_from(
                        frames
                            .iter()
                            .map(|f| Bytes::copy_from_slice(f))
                            .collect::<Vec<_>>(),
                    )
                    .map_err(|e| format!("an empty ROUTER message: {e:?}"))?;
                    // Only a peer that is gone fails a ROUTER's send: the
                    // message is dropped, as libzmq's ROUTER drops it.
                    let _ = tx.send(m).await;
                }
                Ok::<(), String>(())
            };
            tokio::select! {
                r = inbound => r,
                r = outbound => r,
            }
        }
    }
}
