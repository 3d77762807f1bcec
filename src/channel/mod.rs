//! Typed channels over any transport: [`Sender`], [`Receiver`], [`Duplex`].
//!
//! The same three types work over a pipe, a socket pair of any kind, a Unix
//! socket connected by path, and a descriptor inherited from a parent. Make
//! them with [`channel`] and [`duplex`], or with [`Options`] to choose the
//! transport, the codec and the maximum frame size.

mod duplex;
mod gate;
mod hello;
mod receiver;
mod select;
mod sender;
#[cfg(feature = "tcp")]
pub(crate) use sender::SendCore;

use std::os::fd::OwnedFd;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use duplex::Duplex;
pub use hello::WireName;
pub use receiver::{IntoIter, Iter, Receiver};
pub use select::Select;
pub use sender::Sender;

use crate::codec::CodecKind;
use crate::error::Result;
use crate::frame::{DEFAULT_MAX_FRAME, check_max};
use crate::socket::Kind;
use crate::sys;
use crate::transport::{Conn, Use};

/// A one-way typed channel over a new pipe, with the default options
/// (postcard, 64 MiB frames).
///
/// # Examples
///
/// ```
/// let (tx, rx) = procwire::channel::<(u32, String)>()?;
/// tx.send((1, "one".into()))?;
/// assert_eq!(rx.recv()?, (1, "one".to_string()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn channel<T: Serialize + DeserializeOwned>() -> Result<(Sender<T>, Receiver<T>)> {
    Options::new().channel()
}

/// A two-way typed channel over a new stream socket pair, with the default
/// options. The first end sends `A` and receives `B`; the second the reverse.
pub fn duplex<A, B>() -> Result<(Duplex<A, B>, Duplex<B, A>)>
where
    A: Serialize + DeserializeOwned,
    B: Serialize + DeserializeOwned,
{
    Options::new().duplex(Kind::Stream)
}

/// How to build a channel: codec, maximum frame size, socket buffer.
///
/// # Examples
///
/// ```
/// use procwire::{CodecKind, Kind, Options};
///
/// let opts = Options::new().codec(CodecKind::Json).max_frame(1 << 20);
/// let (a, b) = opts.duplex::<String, String>(Kind::SeqPacket)?;
/// a.send("ping".into())?;
/// assert_eq!(b.recv()?, "ping");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    codec: CodecKind,
    max_frame: usize,
    send_buffer: Option<usize>,
    shm_capacity: usize,
    shm_wait: crate::ShmWait,
    linger: std::time::Duration,
    pub(crate) net: crate::endpoint::Net,
}

/// How long dropping an end may wait, by default, for the peer to take what
/// was accepted: see [`Options::linger`].
pub const DEFAULT_LINGER: std::time::Duration = std::time::Duration::from_secs(5);

impl Default for Options {
    fn default() -> Options {
        Options::new()
    }
}

impl Options {
    /// Postcard, 64 MiB frames, the kernel's socket buffers.
    pub fn new() -> Options {
        Options {
            codec: CodecKind::Postcard,
            max_frame: DEFAULT_MAX_FRAME,
            send_buffer: None,
            shm_capacity: 1 << 20,
            shm_wait: crate::ShmWait::Adaptive,
            linger: DEFAULT_LINGER,
            net: crate::endpoint::Net::default(),
        }
    }

    /// The data area of each shared-memory ring (default 1 MiB, rounded up
    /// to a power of two between 4 KiB and 1 GiB). A message may be at most
    /// half of it.
    pub fn shm_capacity(mut self, bytes: usize) -> Options {
        self.shm_capacity = bytes;
        self
    }

    /// How this process's shared-memory ends wait for their peer (default
    /// [`ShmWait::Adaptive`](crate::ShmWait::Adaptive)). An end that
    /// travels to another process inside a message waits adaptively there.
    pub fn shm_wait(mut self, wait: crate::ShmWait) -> Options {
        self.shm_wait = wait;
        self
    }

    fn shm_ring(&self) -> Result<(crate::shm::Writer, crate::shm::Reader)> {
        use crate::shm;
        let ctx = "creating a shared-memory ring";
        let cap = shm::capacity_for(self.shm_capacity);
        let region = crate::sys::shm::Region::create(shm::region_len(cap))
            .map_err(|e| crate::Error::io(ctx, e))?;
        shm::init(&region, cap);
        let fd = region
            .fd()
            .try_clone()
            .map_err(|e| crate::Error::io(ctx, e))?;
        let other = crate::sys::shm::Region::open(fd, shm::region_len(cap))
            .map_err(|e| crate::Error::io(ctx, e))?;
        // The reader trusts only what it checked itself.
        let checked = shm::check_header(&other).map_err(|e| {
            crate::Error::new(crate::ErrorKind::InvalidInput, format!("{ctx}: {e:?}"))
        })?;
        let efds = shm::Efds::new().map_err(|e| crate::Error::io(ctx, e))?;
        let copies = efds.try_clone().map_err(|e| crate::Error::io(ctx, e))?;
        Ok((
            shm::Writer::new(region, cap, self.shm_wait, copies),
            shm::Reader::new(other, checked, self.shm_wait, efds),
        ))
    }

    fn shm_conns(
        &self,
        a: (Option<crate::shm::Writer>, Option<crate::shm::Reader>),
        b: (Option<crate::shm::Writer>, Option<crate::shm::Reader>),
    ) -> Result<(Arc<Conn>, Arc<Conn>)> {
        check_max(self.max_frame)?;
        let (sa, sb) = sys::socketpair(sys::SockType::SeqPacket)
            .map_err(|e| crate::Error::io("creating the shared-memory side socket", e))?;
        let ctx = "preparing a shared-memory end";
        Ok((
            Arc::new(Conn::shm(sa, a.0, a.1).map_err(|e| crate::Error::io(ctx, e))?),
            Arc::new(Conn::shm(sb, b.0, b.1).map_err(|e| crate::Error::io(ctx, e))?),
        ))
    }

    /// A one-way channel over a shared-memory ring: the fastest way between
    /// two processes of one machine. Hand the ends to a child with
    /// [`fork`](crate::fork), or inside a message over a socket channel;
    /// descriptors do not travel over shared memory.
    ///
    /// Ends are noticed as on sockets: a receiver that drops its end fails
    /// the next send, and a sender that drops its end ends the receiver's
    /// stream after the last message. A peer process that is *killed* is
    /// noticed through a side socket: at once by a waiting end, and by a
    /// sender within a millisecond (a message sent in that window is lost,
    /// like one in a socket buffer when its reader dies).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = procwire::Options::new().shm_channel::<String>()?;
    /// tx.send("through shared memory".into())?;
    /// drop(tx);
    /// assert_eq!(rx.recv()?, "through shared memory");
    /// assert!(rx.recv().unwrap_err().is_disconnected());
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn shm_channel<T: Serialize + DeserializeOwned>(&self) -> Result<(Sender<T>, Receiver<T>)> {
        let (w, r) = self.shm_ring()?;
        let (a, b) = self.shm_conns((Some(w), None), (None, Some(r)))?;
        Ok((self.sender_on(a), self.receiver_on(b)?))
    }

    /// A two-way channel over two shared-memory rings.
    pub fn shm_duplex<A, B>(&self) -> Result<(Duplex<A, B>, Duplex<B, A>)>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
    {
        let (w1, r1) = self.shm_ring()?;
        let (w2, r2) = self.shm_ring()?;
        let (a, b) = self.shm_conns((Some(w1), Some(r2)), (Some(w2), Some(r1)))?;
        Ok((
            Duplex::from_halves(self.sender_on(Arc::clone(&a)), self.receiver_on(a)?),
            Duplex::from_halves(self.sender_on(Arc::clone(&b)), self.receiver_on(b)?),
        ))
    }

    /// How long dropping a sender may wait for the peer to take the rest of
    /// a frame that [`try_send`](Sender::try_send) or a timed send accepted
    /// in part (default [`DEFAULT_LINGER`], 5 s); and, over `tcp://`, how
    /// long closing may wait for the peer to acknowledge what was sent.
    ///
    /// A drop never waits longer. When the linger runs out with a frame
    /// still half-written, the connection is shut down in both directions
    /// (on a socket; a pipe can only be closed), so the peer reads a
    /// truncated-frame error ([`ErrorKind::UnexpectedEof`]), never a short
    /// message taken for a whole one. `Duration::ZERO` gives up at once.
    /// A peer that reads returns the drop at once, whatever the linger.
    ///
    /// [`ErrorKind::UnexpectedEof`]: crate::ErrorKind::UnexpectedEof
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let opts = procwire::Options::new().linger(Duration::from_millis(500));
    /// let (tx, rx) = opts.channel::<u32>()?;
    /// tx.send(1)?;
    /// drop(tx); // the frame is whole: returns at once
    /// assert_eq!(rx.recv()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn linger(mut self, linger: std::time::Duration) -> Options {
        self.linger = linger;
        self
    }

    #[cfg_attr(not(feature = "tcp"), allow(dead_code))]
    pub(crate) fn linger_time(&self) -> std::time::Duration {
        self.linger
    }

    /// The codec for payloads.
    pub fn codec(mut self, codec: CodecKind) -> Options {
        self.codec = codec;
        self
    }

    /// The largest payload accepted, on send and on receive (at most
    /// `0xFFFF_FFFE`, one below the reserved prefix `0xFFFF_FFFF`; checked when a channel
    /// is built).
    pub fn max_frame(mut self, bytes: usize) -> Options {
        self.max_frame = bytes;
        self
    }

    /// `SO_SNDBUF` for socket channels built with these options. On a
    /// datagram or seqpacket socket it bounds the largest message (the
    /// kernel doubles the value and caps it at `net.core.wmem_max`).
    pub fn send_buffer(mut self, bytes: usize) -> Options {
        self.send_buffer = Some(bytes);
        self
    }

    pub(crate) fn codec_kind(&self) -> CodecKind {
        self.codec
    }

    pub(crate) fn max_frame_len(&self) -> usize {
        self.max_frame
    }

    fn conn(&self, fd: OwnedFd, usage: Use) -> Result<Arc<Conn>> {
        check_max(self.max_frame)?;
        let conn = Conn::new(fd, usage)?;
        if let Some(bytes) = self.send_buffer {
            conn.set_send_buffer(bytes)?;
        }
        Ok(Arc::new(conn))
    }

    pub(crate) fn sender_on<T: Serialize>(&self, conn: Arc<Conn>) -> Sender<T> {
        Sender::from_core(Arc::new(sender::SendCore::new(
            conn,
            self.codec,
            self.max_frame,
            self.linger,
        )))
    }

    pub(crate) fn receiver_on<T: DeserializeOwned>(&self, conn: Arc<Conn>) -> Result<Receiver<T>> {
        Ok(Receiver::from_core(Arc::new(receiver::RecvCore::new(
            conn,
            self.codec,
            self.max_frame,
            self.send_buffer,
        )?)))
    }

    pub(crate) fn duplex_on<Out: Serialize, In: DeserializeOwned>(
        &self,
        conn: Arc<Conn>,
    ) -> Result<Duplex<Out, In>> {
        Ok(Duplex::from_halves(
            self.sender_on(Arc::clone(&conn)),
            self.receiver_on(conn)?,
        ))
    }

    /// A one-way channel over a new pipe.
    pub fn channel<T: Serialize + DeserializeOwned>(&self) -> Result<(Sender<T>, Receiver<T>)> {
        let (r, w) = sys::pipe().map_err(|e| crate::Error::io("creating a pipe", e))?;
        Ok((self.sender(w)?, self.receiver(r)?))
    }

    /// A one-way channel over a new socket pair of `kind`.
    pub fn socket_channel<T: Serialize + DeserializeOwned>(
        &self,
        kind: Kind,
    ) -> Result<(Sender<T>, Receiver<T>)> {
        let (a, b) = crate::socket::socket_pair(kind)
            .map_err(|e| crate::Error::io("creating a socket pair", e))?;
        Ok((self.sender(a)?, self.receiver(b)?))
    }

    /// A two-way channel over a new socket pair of `kind`.
    pub fn duplex<A, B>(&self, kind: Kind) -> Result<(Duplex<A, B>, Duplex<B, A>)>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
    {
        let (a, b) = crate::socket::socket_pair(kind)
            .map_err(|e| crate::Error::io("creating a socket pair", e))?;
        Ok((self.duplex_from(a)?, self.duplex_from(b)?))
    }

    /// A sender over an existing descriptor: a pipe's write end or a Unix
    /// socket ([`PipeWriter`](crate::PipeWriter), [`Socket`](crate::Socket),
    /// or any `OwnedFd`). A pipe's write end becomes non-blocking (a read
    /// end, given to [`receiver`](Options::receiver), blocking).
    pub fn sender<T: Serialize>(&self, fd: impl Into<OwnedFd>) -> Result<Sender<T>> {
        Ok(self.sender_on(self.conn(fd.into(), Use::Send)?))
    }

    /// A receiver over an existing descriptor: a pipe's read end or a Unix
    /// socket.
    pub fn receiver<T: DeserializeOwned>(&self, fd: impl Into<OwnedFd>) -> Result<Receiver<T>> {
        self.receiver_on(self.conn(fd.into(), Use::Recv)?)
    }

    /// A two-way channel over an existing Unix socket (of any kind).
    pub fn duplex_from<Out, In>(&self, socket: impl Into<OwnedFd>) -> Result<Duplex<Out, In>>
    where
        Out: Serialize,
        In: DeserializeOwned,
    {
        let conn = self.conn(socket.into(), Use::Both)?;
        Ok(Duplex::from_halves(
            self.sender_on(Arc::clone(&conn)),
            self.receiver_on(conn)?,
        ))
    }
}
