//! The async rows (`bench --async`): procwire's awaitable ends against raw
//! tokio I/O on the same descriptors (tokio's `UnixStream`, `pipe`, and
//! `UnixDatagram`, which also carries a connected SEQPACKET socket's
//! send/recv), each operation awaited on a current-thread runtime of the
//! process that does it.

use std::cell::{OnceCell, RefCell};

use procwire::tokio as aio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::link::{PLACE, look_at, receive};
use super::*;

/// Receives one message on procwire's awaitable end `$rx` (a receiver or
/// a duplex) as the blocking rows receive (`--borrow`, `--into`), checking
/// its size against `$buf`.
macro_rules! typed_recv {
    ($rx:expr, $buf:expr) => {
        match receive() {
            Receive::Borrowed => $rx.recv_with(|m| look_at(m, $buf)).await??,
            Receive::Into => {
                let mut place = PLACE.take();
                let got = $rx.recv_into(&mut place).await.map(|()| place.len());
                PLACE.set(place);
                anyhow::ensure!(got? == $buf.len(), "wrong size");
            }
            Receive::Owned => {
                let m = $rx.recv().await?;
                anyhow::ensure!(m.len() == $buf.len(), "wrong size");
            }
        }
    };
}

/// One end of an async link: the blocking end it was made from until its
/// first use, then the runtime and the awaitable end (a runtime does not
/// survive the fork that gives the peer its end).
pub(super) struct AsyncLink {
    blocking: RefCell<Option<Link>>,
    live: OnceCell<Live>,
}

struct Live {
    rt: tokio::runtime::Runtime,
    ends: Ends,
}

enum Ends {
    Wire(aio::Duplex<ByteBuf, ByteBuf>),
    Pipes(Box<(aio::Sender<ByteBuf>, aio::Receiver<ByteBuf>)>),
    // Taken out for each operation (an owned stream is what tokio's
    // read and write take), and put back.
    Stream(Slot<tokio::net::UnixStream>),
    Pipe(
        Slot<tokio::net::unix::pipe::Sender>,
        Slot<tokio::net::unix::pipe::Receiver>,
    ),
    Message(tokio::net::UnixDatagram),
    /// The minimal typed channel (`lean.rs`) on a raw byte stream (`Pipe`
    /// or `Stream`).
    Lean(Box<Ends>, Slot<super::lean::Frames>),
}

impl Ends {
    /// A raw byte stream: a pipe pair, or a stream socket (`tx` a
    /// duplicate of `rx`).
    fn byte_stream(tx: OwnedFd, rx: OwnedFd) -> Result<Ends> {
        if is_pipe(&rx)? {
            return Ok(Ends::Pipe(
                Slot::new(tokio::net::unix::pipe::Sender::from_owned_fd(tx)?),
                Slot::new(tokio::net::unix::pipe::Receiver::from_owned_fd(rx)?),
            ));
        }
        drop(tx);
        let s = std::os::unix::net::UnixStream::from(rx);
        s.set_nonblocking(true)?;
        Ok(Ends::Stream(Slot::new(tokio::net::UnixStream::from_std(
            s,
        )?)))
    }

    /// Writes all of `bytes` to a raw byte stream.
    async fn write_all(&self, bytes: &[u8]) -> Result<()> {
        match self {
            Ends::Stream(s) => s.with(async |s| s.write_all(bytes).await).await??,
            Ends::Pipe(tx, _) => tx.with(async |tx| tx.write_all(bytes).await).await??,
            _ => anyhow::bail!("not a raw byte stream"),
        }
        Ok(())
    }

    /// One read from a raw byte stream into `buf`.
    async fn read(&self, buf: &mut [u8]) -> Result<usize> {
        Ok(match self {
            Ends::Stream(s) => s.with(async |s| s.read(buf).await).await??,
            Ends::Pipe(_, rx) => rx.with(async |rx| rx.read(buf).await).await??,
            _ => anyhow::bail!("not a raw byte stream"),
        })
    }
}

impl AsyncLink {
    pub(super) fn new(blocking: Link) -> AsyncLink {
        AsyncLink {
            blocking: RefCell::new(Some(blocking)),
            live: OnceCell::new(),
        }
    }

    /// The blocking end, before its first use.
    pub(super) fn blocking(&self) -> std::cell::Ref<'_, Option<Link>> {
        self.blocking.borrow()
    }

    fn live(&self) -> Result<&Live> {
        if let Some(live) = self.live.get() {
            return Ok(live);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let blocking = self.blocking.borrow_mut().take().context("already used")?;
        let ends = {
            let _in = rt.enter();
            match blocking {
                Link::Wire(d) => Ends::Wire(d.into_async()?),
                Link::WirePipes(tx, rx) => {
                    Ends::Pipes(Box::new((tx.into_async()?, rx.into_async()?)))
                }
                Link::RawStream { tx, rx } => Ends::byte_stream(tx, rx)?,
                Link::Lean(l) => {
                    let (tx, rx, frames) = l.into_inner().into_parts();
                    Ends::Lean(Box::new(Ends::byte_stream(tx, rx)?), Slot::new(frames))
                }
                Link::RawMessage(fd) => {
                    let s = std::os::unix::net::UnixDatagram::from(fd);
                    s.set_nonblocking(true)?;
                    Ends::Message(tokio::net::UnixDatagram::from_std(s)?)
                }
                _ => anyhow::bail!("no async form of this link"),
            }
        };
        Ok(self.live.get_or_init(|| Live { rt, ends }))
    }

    pub(super) fn send(&self, msg: &ByteBuf) -> Result<()> {
        let live = self.live()?;
        live.rt.block_on(async {
            match &live.ends {
                Ends::Wire(d) => d.send_ref(msg).await?,
                Ends::Pipes(p) => p.0.send_ref(msg).await?,
                Ends::Stream(_) | Ends::Pipe(..) => live.ends.write_all(msg).await?,
                Ends::Lean(io, frames) => {
                    frames
                        .with(async |f| io.write_all(f.encode(msg)?).await)
                        .await??
                }
                Ends::Message(s) => {
                    s.send(msg).await?;
                }
            }
            Ok(())
        })
    }

    pub(super) fn recv(&self, buf: &mut [u8]) -> Result<()> {
        let live = self.live()?;
        live.rt.block_on(async {
            match &live.ends {
                Ends::Wire(d) => typed_recv!(d, buf),
                Ends::Pipes(p) => typed_recv!(p.1, buf),
                Ends::Stream(s) => {
                    s.with(async |s| s.read_exact(buf).await).await??;
                }
                Ends::Pipe(_, rx) => {
                    rx.with(async |rx| rx.read_exact(buf).await).await??;
                }
                Ends::Message(s) => {
                    let n = s.recv(buf).await?;
                    anyhow::ensure!(n == buf.len(), "wrong size");
                }
                // Owned or borrowed, as the rows receive.
                Ends::Lean(io, frames) => {
                    // (Never into one buffer: refused as it was made.)
                    let borrow = receive() == Receive::Borrowed;
                    let got = frames
                        .with(async |f| {
                            loop {
                                if let Some(got) = f.take(borrow)? {
                                    break anyhow::Ok(got);
                                }
                                let n = io.read(f.room()?).await?;
                                f.filled(n)?;
                            }
                        })
                        .await??;
                    anyhow::ensure!(got == buf.len(), "wrong size");
                }
            }
            Ok(())
        })
    }
}

/// A value lent out for one awaited operation at a time.
struct Slot<S>(std::cell::Cell<Option<S>>);

impl<S> Slot<S> {
    fn new(s: S) -> Slot<S> {
        Slot(std::cell::Cell::new(Some(s)))
    }

    async fn with<R>(&self, f: impl AsyncFnOnce(&mut S) -> R) -> Result<R> {
        let mut s = self.0.take().context("in use")?;
        let r = f(&mut s).await;
        self.0.set(Some(s));
        Ok(r)
    }
}

fn is_pipe(fd: &OwnedFd) -> Result<bool> {
    let st = rustix::fs::fstat(fd)?;
    Ok(rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Fifo)
}

/// The transports with an async row, and the raw tokio baseline of each:
/// the same descriptor kind, except shared memory, against a stream
/// socket (the "≤ 0.8x raw tokio `UnixStream`"), and ZeroMQ,
/// against the zeromq crate's socket driven directly.
pub(super) fn raw_of(t: Transport) -> Option<Transport> {
    match t {
        Transport::Pipe | Transport::Stream | Transport::Seqpacket | Transport::Dgram => Some(t),
        Transport::Shm => Some(Transport::Stream),
        Transport::Zmq | Transport::Nats => Some(t),
        _ => None,
    }
}
