//! One end of a measured link, raw or procwire, and how two are made.

use super::*;
use procwire::{Shm, SocketPair};

/// Each shared-memory ring's data area: 1 MiB messages travel inline.
pub(super) const RING: usize = 4 << 20;

/// The largest message the rows carry: what the raw ring of `RING` bytes
/// takes ([`procwire::baseline::RawWriter::max_message`]: its record
/// header is 16 bytes).
pub(super) const MAX_SIZE: usize = RING - 16;

/// One end of a measured link, raw or procwire.
pub(super) enum Link {
    /// A byte stream: a pipe pair or a stream socket (tx and rx may be one).
    RawStream { tx: OwnedFd, rx: OwnedFd },
    /// A message socket: one send, one recv per message.
    RawMessage(OwnedFd),
    /// A procwire two-way channel.
    Wire(Duplex<ByteBuf, ByteBuf>),
    /// procwire over two pipes.
    WirePipes(Sender<ByteBuf>, Receiver<ByteBuf>),
    /// Two hand-written shared-memory rings, one each way.
    RawRing(RefCell<RawWriter>, RefCell<RawReader>),
    /// procwire over a ZeroMQ DEALER socket.
    Zmq(procwire::zmq::Channel<ByteBuf, ByteBuf>),
    /// A DEALER socket of the zeromq crate, driven directly.
    RawZmq(tokio::runtime::Runtime, RefCell<zeromq::DealerSocket>),
    /// An awaitable end, procwire's or raw tokio's (`bench --async`).
    Async(Box<super::asynch::AsyncLink>),
    /// RPC calls through a NATS server, procwire's or raw async-nats.
    Nats(Box<super::nats::Rpc>),
    /// procwire's awaitable ZeroMQ DEALER, on a runtime of its own.
    AsyncZmq(
        Box<(
            tokio::runtime::Runtime,
            procwire::tokio::zmq::Channel<ByteBuf, ByteBuf>,
        )>,
    ),
    /// The floor of a typed channel on a pipe pair or a stream socket.
    Lean(RefCell<super::lean::Lean>),
}

impl Inherit for Link {
    fn descriptors(&self, out: &mut Vec<RawFd>) {
        match self {
            Link::RawStream { tx, rx } => {
                tx.descriptors(out);
                rx.descriptors(out);
            }
            Link::RawMessage(fd) => fd.descriptors(out),
            Link::Lean(l) => {
                for fd in l.borrow().fds() {
                    fd.descriptors(out);
                }
            }
            Link::Wire(d) => d.descriptors(out),
            Link::WirePipes(tx, rx) => {
                tx.descriptors(out);
                rx.descriptors(out);
            }
            Link::RawRing(tx, rx) => {
                tx.borrow().descriptors(out);
                rx.borrow().descriptors(out);
            }
            Link::Async(a) => {
                if let Some(l) = &*a.blocking() {
                    l.descriptors(out);
                }
            }
            // Network links are never forked: their peers connect.
            Link::Zmq(_) | Link::RawZmq(..) | Link::AsyncZmq(_) | Link::Nats(_) => {}
        }
    }

    fn handed_over(&self) {
        match self {
            Link::Async(a) => {
                if let Some(l) = &*a.blocking() {
                    l.handed_over();
                }
            }
            Link::Wire(d) => d.handed_over(),
            Link::WirePipes(tx, rx) => {
                tx.handed_over();
                rx.handed_over();
            }
            Link::RawStream { .. }
            | Link::RawMessage(_)
            | Link::Lean(_)
            | Link::RawRing(..)
            | Link::Zmq(_)
            | Link::RawZmq(..)
            | Link::AsyncZmq(_)
            | Link::Nats(_) => {}
        }
    }
}

impl Link {
    /// Two ends of the minimal typed channel (`lean.rs`) on `t`, blocking
    /// or to be awaited. Refused here, before a peer exists, where it does
    /// not run: a peer that refused at its first receive would leave this
    /// end a broken pipe to report instead.
    fn lean_pair(t: Transport) -> Result<(Link, Link)> {
        anyhow::ensure!(
            matches!(t, Transport::Pipe | Transport::Stream),
            "the minimal channel runs on a pipe or a stream socket"
        );
        anyhow::ensure!(
            receive() != Receive::Into,
            "the minimal channel receives owned or borrowed"
        );
        let (a, b) = Link::pair(Side::Raw(t))?;
        let lean = |l| match l {
            Link::RawStream { tx, rx } => {
                Ok(Link::Lean(RefCell::new(super::lean::Lean::new(tx, rx))))
            }
            _ => anyhow::bail!("a raw byte stream"),
        };
        Ok((lean(a)?, lean(b)?))
    }

    /// Two connected ends of `side`.
    pub(super) fn pair(side: Side) -> Result<(Link, Link)> {
        let (t, wire) = match side {
            Side::Wire(t) => (t, true),
            Side::Raw(t) => (t, false),
            Side::Async(t) | Side::RawAsync(t) | Side::AsyncLean(t) => {
                let (a, b) = match side {
                    Side::Async(_) => Link::pair(Side::Wire(t))?,
                    Side::AsyncLean(_) => Link::lean_pair(t)?,
                    _ => Link::pair(Side::Raw(t))?,
                };
                let end = |l| Link::Async(Box::new(super::asynch::AsyncLink::new(l)));
                return Ok((end(a), end(b)));
            }
            Side::Lean(t) => return Link::lean_pair(t),
            Side::Ring(w) => {
                let (tx1, rx1) = raw_ring(RING, w)?;
                let (tx2, rx2) = raw_ring(RING, w)?;
                let end = |tx, rx| Link::RawRing(RefCell::new(tx), RefCell::new(rx));
                return Ok((end(tx1, rx2), end(tx2, rx1)));
            }
        };
        let shm = Shm::new().capacity(RING).wait(t.wait().unwrap_or_default());
        let kind = match t {
            Transport::Stream => Kind::Stream,
            Transport::Dgram => Kind::Datagram,
            _ => Kind::SeqPacket,
        };
        Ok(match (t, wire) {
            (Transport::Pipe, false) => {
                let (r1, w1) = procwire::pipe()?;
                let (r2, w2) = procwire::pipe()?;
                (
                    Link::RawStream {
                        tx: w1.into(),
                        rx: r2.into(),
                    },
                    Link::RawStream {
                        tx: w2.into(),
                        rx: r1.into(),
                    },
                )
            }
            (Transport::Pipe, true) => {
                let (tx1, rx1) = procwire::channel()?;
                let (tx2, rx2) = procwire::channel()?;
                (Link::WirePipes(tx1, rx2), Link::WirePipes(tx2, rx1))
            }
            (Transport::Stream, false) => {
                let (a, b) = procwire::socket_pair(Kind::Stream)?;
                let (a, b): (OwnedFd, OwnedFd) = (a.into(), b.into());
                (
                    Link::RawStream {
                        tx: a.try_clone()?,
                        rx: a,
                    },
                    Link::RawStream {
                        tx: b.try_clone()?,
                        rx: b,
                    },
                )
            }
            (t, true) if t.wait().is_some() => {
                let (a, b) = shm.duplex()?;
                (Link::Wire(a), Link::Wire(b))
            }
            (t, false) if t.wait().is_some() => {
                anyhow::bail!("shared memory has no raw syscalls: compare it with a raw ring")
            }
            (_, false) => {
                let (a, b) = procwire::socket_pair(kind)?;
                (Link::RawMessage(a.into()), Link::RawMessage(b.into()))
            }
            (_, true) => {
                let (a, b) = SocketPair::new(kind).descriptors(!no_fds()).duplex()?;
                (Link::Wire(a), Link::Wire(b))
            }
        })
    }

    pub(super) fn send(&self, msg: &ByteBuf) -> Result<()> {
        match self {
            Link::RawStream { tx, .. } => {
                let mut buf: &[u8] = msg;
                while !buf.is_empty() {
                    let n = rustix::io::write(tx, buf)?;
                    buf = &buf[n..];
                }
            }
            Link::RawMessage(fd) => {
                rustix::net::send(fd, msg, rustix::net::SendFlags::empty())?;
            }
            // By reference, as a program that sends one buffer again would.
            Link::Wire(d) => d.send_ref(msg)?,
            Link::WirePipes(tx, _) => tx.send_ref(msg)?,
            Link::RawRing(tx, _) => tx.borrow_mut().send(msg),
            Link::Zmq(c) => c.send_ref(msg)?,
            Link::Async(a) => a.send(msg)?,
            Link::AsyncZmq(z) => z.0.block_on(z.1.send_ref(msg))?,
            Link::Nats(n) => n.send(msg)?,
            Link::RawZmq(rt, sock) => {
                use zeromq::SocketSend;
                let m = zeromq::ZmqMessage::from(msg.to_vec());
                rt.block_on(sock.borrow_mut().send(m))?;
            }
            Link::Lean(l) => l.borrow_mut().send(msg)?,
        }
        Ok(())
    }

    /// Receives one message of `size` bytes into `buf`.
    pub(super) fn recv(&self, buf: &mut [u8]) -> Result<()> {
        match self {
            Link::RawStream { rx, .. } => {
                let mut at = 0;
                while at < buf.len() {
                    let n = rustix::io::read(rx, &mut buf[at..])?;
                    anyhow::ensure!(n > 0, "end of stream");
                    at += n;
                }
            }
            Link::RawMessage(fd) => {
                rustix::net::recv(fd, buf, rustix::net::RecvFlags::empty())?;
            }
            Link::Wire(d) if receive() == Receive::Borrowed => {
                d.receiver().recv_with(|m| look_at(m, buf))??
            }
            Link::WirePipes(_, rx) if receive() == Receive::Borrowed => {
                rx.recv_with(|m| look_at(m, buf))??
            }
            Link::Wire(d) if receive() == Receive::Into => recv_into(d.receiver(), buf)?,
            Link::WirePipes(_, rx) if receive() == Receive::Into => recv_into(rx, buf)?,
            Link::Wire(d) => {
                let m = d.recv()?;
                anyhow::ensure!(m.len() == buf.len(), "wrong size");
            }
            Link::WirePipes(_, rx) => {
                let m = rx.recv()?;
                anyhow::ensure!(m.len() == buf.len(), "wrong size");
            }
            Link::RawRing(_, rx) => {
                let n = rx.borrow_mut().recv(buf);
                anyhow::ensure!(n == buf.len(), "wrong size");
            }
            Link::Async(a) => a.recv(buf)?,
            Link::Nats(n) => n.recv(buf)?,
            Link::AsyncZmq(z) => {
                let m = z.0.block_on(z.1.recv())?;
                anyhow::ensure!(m.len() == buf.len(), "wrong size");
            }
            Link::Zmq(c) => {
                let m = c.recv()?;
                anyhow::ensure!(m.len() == buf.len(), "wrong size");
            }
            Link::RawZmq(rt, sock) => {
                use zeromq::SocketRecv;
                let m = rt.block_on(sock.borrow_mut().recv())?;
                let frame = m.get(0).context("an empty ZeroMQ message")?;
                anyhow::ensure!(frame.len() == buf.len(), "wrong size");
                buf.copy_from_slice(frame);
            }
            // (Never into one buffer: refused as it was made, `lean_pair`.)
            Link::Lean(l) => l
                .borrow_mut()
                .recv(buf.len(), receive() == Receive::Borrowed)?,
        }
        Ok(())
    }
}

/// How procwire's blocking ends receive a `ByteBuf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receive {
    /// `recv`: a new `ByteBuf` per message.
    Owned = 0,
    /// `recv_with` (`bench --borrow`): looked at in the receive buffer.
    Borrowed = 1,
    /// `recv_into` (`bench --into`): into one `ByteBuf` kept across
    /// messages, as raw reads into one buffer.
    Into = 2,
}

/// How procwire receives: set before any peer is forked, so that peers
/// receive the same way.
static RECEIVE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

pub(super) fn set_receive(how: Receive) {
    RECEIVE.store(how as u8, std::sync::atomic::Ordering::Relaxed);
}

pub(super) fn receive() -> Receive {
    match RECEIVE.load(std::sync::atomic::Ordering::Relaxed) {
        1 => Receive::Borrowed,
        2 => Receive::Into,
        _ => Receive::Owned,
    }
}

thread_local! {
    /// The buffer `Receive::Into` receives into, one per thread (each
    /// thread of a run is one end).
    pub(super) static PLACE: RefCell<ByteBuf> = RefCell::new(ByteBuf::default());
}

/// Receives into this thread's [`PLACE`] and checks the size.
fn recv_into(rx: &procwire::Receiver<ByteBuf>, buf: &[u8]) -> Result<()> {
    PLACE.with_borrow_mut(|place| {
        rx.recv_into(place)?;
        anyhow::ensure!(place.len() == buf.len(), "wrong size");
        Ok(())
    })
}

/// Whether procwire's socket channels carry no descriptors (`bench
/// --no-fds`), set like [`RECEIVE`].
static NO_FDS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(super) fn set_no_fds(on: bool) {
    NO_FDS.store(on, std::sync::atomic::Ordering::Relaxed);
}

fn no_fds() -> bool {
    NO_FDS.load(std::sync::atomic::Ordering::Relaxed)
}

/// A borrowed `ByteBuf`, looked at where it arrived: the raw baseline's
/// bytes land in the caller's buffer with one copy from the kernel, and
/// these in procwire's receive buffer with one, so neither is copied again.
pub(super) fn look_at(m: procwire::Received<'_>, buf: &[u8]) -> Result<()> {
    let bytes: &[u8] = m.decode()?;
    anyhow::ensure!(bytes.len() == buf.len(), "wrong size");
    Ok(())
}
