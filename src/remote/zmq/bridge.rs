//! The task that carries one ZeroMQ socket's messages to and from the
//! procwire channel the application holds (the other end of a stream
//! socket pair), and the socket itself, by kind.

use bytes::Bytes;
use zeromq::{Socket as _, ZmqMessage};

use super::Kind;
use super::socket::Socket;
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

/// The bridge's end of the stream pair: procwire frames in.
pub(crate) struct Link {
    rx: tokio::net::unix::OwnedReadHalf,
    frames: FrameDecoder,
}

/// The bridge's end of the stream pair: procwire frames out.
pub(crate) struct LinkWriter {
    tx: tokio::sync::Mutex<tokio::net::unix::OwnedWriteHalf>,
}

impl Link {
    /// The bridge's end of a [`pair`], on the runtime this runs on, for
    /// frames of at most `max` bytes.
    pub(crate) fn open(
        theirs: std::os::unix::net::UnixStream,
        max: usize,
    ) -> std::io::Result<(Link, LinkWriter)> {
        Ok(Link::new(tokio::net::UnixStream::from_std(theirs)?, max))
    }

    fn new(stream: tokio::net::UnixStream, max: usize) -> (Link, LinkWriter) {
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
    pub(crate) async fn next(&mut self) -> std::result::Result<Option<Vec<u8>>, String> {
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
    pub(crate) async fn put(&self, payload: &[u8]) -> std::result::Result<(), String> {
        use tokio::io::AsyncWriteExt;
        let mut tx = self.tx.lock().await;
        let gone = |e: std::io::Error| format!("the application's end is gone: {e}");
        tx.write_all(&(payload.len() as u32).to_be_bytes())
            .await
            .map_err(gone)?;
        tx.write_all(payload).await.map_err(gone)
    }
}

/// A stream socket pair for a bridge: the application's end (a procwire
/// socket, for a channel made with `Options::duplex_from`) and the
/// bridge's (non-blocking, for [`Link::open`]).
pub(crate) fn pair() -> std::io::Result<(crate::Socket, std::os::unix::net::UnixStream)> {
    let (ours, theirs) = crate::socket::socket_pair(crate::Kind::Stream)?;
    let theirs = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(theirs));
    theirs.set_nonblocking(true)?;
    Ok((ours, theirs))
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

/// Carries messages between the socket (of `kind`, not ROUTER) and the
/// application's channel until the application closes its end (or
/// something fails: the reason is kept for the application's next error).
/// The socket is shared with the channel's own calls, which take turns
/// with this task for each send and receive.
pub(crate) async fn carry(
    socket: &Socket,
    kind: Kind,
    link: &mut Link,
    out: &LinkWriter,
) -> std::result::Result<(), String> {
    let z = |e: crate::Error| e.to_string();
    match kind {
        Kind::Req => loop {
            let Some(p) = link.next().await? else {
                return Ok(());
            };
            socket.send(msg(p)).await.map_err(z)?;
            tokio::select! {
                m = socket.recv() => out.put(&single(m.map_err(z)?)?).await?,
                p = link.next() => return match p? {
                    None => Ok(()),
                    Some(_) => Err("a REQ sent again before its reply came".into()),
                },
            }
        },
        Kind::Rep => loop {
            tokio::select! {
                m = socket.recv() => out.put(&single(m.map_err(z)?)?).await?,
                p = link.next() => return match p? {
                    None => Ok(()),
                    Some(_) => Err("a REP sent a reply before a request came".into()),
                },
            }
            let Some(p) = link.next().await? else {
                return Ok(());
            };
            socket.send(msg(p)).await.map_err(z)?;
        },
        Kind::Push => loop {
            let Some(p) = link.next().await? else {
                return Ok(());
            };
            socket.send(msg(p)).await.map_err(z)?;
        },
        Kind::Pull => loop {
            tokio::select! {
                m = socket.recv() => out.put(&single(m.map_err(z)?)?).await?,
                p = link.next() => return match p? {
                    None => Ok(()),
                    Some(_) => Err("a PULL socket cannot send".into()),
                },
            }
        },
        Kind::Dealer => {
            let inbound = async {
                loop {
                    let m = socket.recv().await.map_err(z)?;
                    if out.put(&single(m)?).await.is_err() {
                        return closed_while_sending().await;
                    }
                }
            };
            let outbound = async {
                while let Some(p) = link.next().await? {
                    socket.send(msg(p)).await.map_err(z)?;
                }
                Ok::<(), String>(())
            };
            tokio::select! {
                r = inbound => r,
                r = outbound => r,
            }
        }
        Kind::Router => Err("a ROUTER is not bridged: it has no duplex".into()),
    }
}
