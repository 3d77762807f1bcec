//! How channels are made: [`Options`] (what every channel has: codec,
//! maximum frame, linger) and one builder per kind of transport, each with
//! only the settings that apply to it: [`Pipe`], [`SocketPair`], [`Shm`],
//! and [`Net`](crate::Net) for endpoints by address.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Duplex, Receiver, Sender, receiver, sender};
use crate::codec::CodecKind;
use crate::error::Result;
use crate::frame::{DEFAULT_MAX_FRAME, check_max};
use crate::socket::Kind;
use crate::sys;
use crate::transport::{Conn, Use};

/// What every channel has, whatever carries it: the codec, the maximum
/// frame size and the linger. Each transport's builder ([`Pipe`],
/// [`SocketPair`], [`Shm`], [`Net`](crate::Net)) takes these through the
/// same three methods, or all at once with its `options` method; APIs that
/// make the transport themselves ([`Command::channel_with`], the pool,
/// [`task`]) take an `Options`. On a descriptor you already hold, an
/// `Options` builds the ends directly ([`sender_from`](Options::sender_from),
/// [`receiver_from`](Options::receiver_from),
/// [`duplex_from`](Options::duplex_from)).
///
/// [`Command::channel_with`]: crate::Command::channel_with
/// [`task`]: crate::task
///
/// # Examples
///
/// ```
/// use procwire::{CodecKind, Kind, Options, SocketPair};
///
/// let opts = Options::new().codec(CodecKind::Json).max_frame(1 << 20);
/// let (a, b) = SocketPair::new(Kind::SeqPacket).options(opts).duplex::<String, String>()?;
/// a.send("ping".into())?;
/// assert_eq!(b.recv()?, "ping");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    codec: CodecKind,
    max_frame: usize,
    linger: Duration,
    /// Set by [`SocketPair::send_buffer`].
    send_buffer: Option<usize>,
    descriptors: bool,
}

/// How long dropping an end may wait, by default, for the peer to take what
/// was accepted: see [`Options::linger`].
pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);

impl Default for Options {
    fn default() -> Options {
        Options::new()
    }
}

impl Options {
    /// Postcard, 64 MiB frames, a linger of [`DEFAULT_LINGER`].
    ///
    /// # Examples
    ///
    /// ```
    /// let opts = procwire::Options::new();
    /// assert_eq!(opts.codec_kind(), procwire::CodecKind::Postcard);
    /// assert_eq!(opts.max_frame_len(), 64 << 20);
    /// ```
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = procwire::Pipe::new().max_frame(1024).channel::<String>()?;
    /// tx.send("short".into())?;
    /// assert_eq!(rx.recv()?, "short");
    /// assert!(tx.send("x".repeat(2000)).is_err()); // over the maximum frame: refused
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn new() -> Options {
        Options {
            codec: CodecKind::Postcard,
            max_frame: DEFAULT_MAX_FRAME,
            linger: DEFAULT_LINGER,
            send_buffer: None,
            descriptors: true,
        }
    }

    /// The codec for payloads (default [`CodecKind::Postcard`]; use
    /// [`CodecKind::MsgPack`] for peers in other languages).
    pub fn codec(mut self, codec: CodecKind) -> Options {
        self.codec = codec;
        self
    }

    /// The largest payload accepted, on send and on receive (default 64
    /// MiB; at most `0xFFFF_FFFE`, one below the reserved prefix
    /// `0xFFFF_FFFF`; checked when a channel is built).
    pub fn max_frame(mut self, bytes: usize) -> Options {
        self.max_frame = bytes;
        self
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
    /// let (tx, rx) = procwire::Pipe::new().linger(Duration::from_millis(500)).channel::<u32>()?;
    /// tx.send(1)?;
    /// drop(tx); // the frame is whole: returns at once
    /// assert_eq!(rx.recv()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn linger(mut self, linger: Duration) -> Options {
        self.linger = linger.min(super::gate::LONGEST);
        self
    }

    /// Whether descriptors ([`Fd`](crate::Fd)s and channel ends inside
    /// messages, [`send_with_fds`](Sender::send_with_fds)) may travel on the
    /// channel (default `true`; only Unix sockets carry them).
    ///
    /// With `false`, a channel that sends none receives each message with
    /// recv(2) or read(2), as a plain program would, instead of recvmsg(2)
    /// with room for descriptors: on Linux 6.18 here recvmsg(2) costs some
    /// 250 ns a message more (`docs/performance.md`). The receiving socket
    /// refuses descriptors in the kernel (`SO_PASSRIGHTS`, Linux 6.16 and
    /// later), so a peer that sends some anyway gets `EPERM` from its
    /// sendmsg(2) (a procwire peer: an error that says why), and none is
    /// ever lost unseen. On an older kernel the receive stays recvmsg(2) and
    /// a message that comes with descriptors fails with
    /// [`ErrorKind::Truncated`](crate::ErrorKind::Truncated), its
    /// descriptors closed. Sending a descriptor from such an end is an
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) error, and
    /// so is a message that a datagram socket would carry out of line in a
    /// memfd (over 256 KiB): use a stream socket for those. Pipes, shared
    /// memory and TCP carry no descriptors either way. The refusal belongs
    /// to this end's socket: the other end (a spawned child's, or one that
    /// travelled inside a message) receives with recvmsg(2) unless it is
    /// built with `descriptors(false)` too, and its sends of descriptors
    /// to this end fail as a foreign peer's do.
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::{ErrorKind, Fd, Kind, SocketPair};
    ///
    /// let (tx, rx) = SocketPair::new(Kind::SeqPacket)
    ///     .descriptors(false)
    ///     .channel::<Vec<u8>>()?;
    /// tx.send(b"no descriptors here".to_vec())?;
    /// assert_eq!(rx.recv()?, b"no descriptors here");
    ///
    /// let (ftx, _frx) = SocketPair::new(Kind::Stream).descriptors(false).channel::<Fd>()?;
    /// let null = std::os::fd::OwnedFd::from(std::fs::File::open("/dev/null")?);
    /// let err = ftx.send(Fd::from(null)).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Unsupported);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn descriptors(mut self, carried: bool) -> Options {
        self.descriptors = carried;
        self
    }

    /// The codec these options encode with.
    pub fn codec_kind(&self) -> CodecKind {
        self.codec
    }

    /// The maximum frame size these options set.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame
    }

    #[cfg_attr(not(feature = "tcp"), allow(dead_code))]
    pub(crate) fn linger_time(&self) -> Duration {
        self.linger
    }

    /// A sender over a descriptor you hold: a pipe's write end or a Unix
    /// socket of any kind ([`PipeWriter`](crate::PipeWriter),
    /// [`Socket`](crate::Socket), or any `OwnedFd`). A pipe's write end
    /// becomes non-blocking (a read end, given to
    /// [`receiver_from`](Options::receiver_from), blocking).
    ///
    /// # Examples
    ///
    /// ```
    /// let (r, w) = procwire::pipe()?;
    /// let opts = procwire::Options::new();
    /// let (tx, rx) = (opts.sender_from::<u32>(w)?, opts.receiver_from::<u32>(r)?);
    /// tx.send(7)?;
    /// assert_eq!(rx.recv()?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sender_from<T: Serialize>(&self, fd: impl Into<OwnedFd>) -> Result<Sender<T>> {
        Ok(self.sender_on(self.conn(fd.into(), Use::Send)?))
    }

    /// A receiver over a descriptor you hold: a pipe's read end or a Unix
    /// socket (see [`sender_from`](Options::sender_from)).
    pub fn receiver_from<T: DeserializeOwned>(
        &self,
        fd: impl Into<OwnedFd>,
    ) -> Result<Receiver<T>> {
        self.receiver_on(self.conn(fd.into(), Use::Recv)?)
    }

    /// A two-way channel over a Unix socket you hold (of any kind).
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::{Kind, Options, socket_pair};
    ///
    /// let (a, b) = socket_pair(Kind::SeqPacket)?;
    /// let opts = Options::new();
    /// let a = opts.duplex_from::<String, u32>(a)?;
    /// let b = opts.duplex_from::<u32, String>(b)?;
    /// a.send("four".into())?;
    /// b.send(b.recv()?.len() as u32)?;
    /// assert_eq!(a.recv()?, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn duplex_from<Out, In>(&self, socket: impl Into<OwnedFd>) -> Result<Duplex<Out, In>>
    where
        Out: Serialize,
        In: DeserializeOwned,
    {
        self.duplex_on(self.conn(socket.into(), Use::Both)?)
    }

    fn conn(&self, fd: OwnedFd, usage: Use) -> Result<Arc<Conn>> {
        check_max(self.max_frame)?;
        let mut conn = Conn::new(fd, usage)?;
        if !self.descriptors {
            conn.refuse_descriptors(usage)?;
        }
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
}

/// The three settings every channel has, on a transport's builder that
/// keeps them in its `options` field.
macro_rules! channel_settings {
    ($builder:ty) => {
        /// The codec for payloads ([`Options::codec`](crate::Options::codec)).
        pub fn codec(mut self, codec: $crate::CodecKind) -> $builder {
            self.options = self.options.codec(codec);
            self
        }

        /// The largest payload accepted
        /// ([`Options::max_frame`](crate::Options::max_frame)).
        pub fn max_frame(mut self, bytes: usize) -> $builder {
            self.options = self.options.max_frame(bytes);
            self
        }

        /// How long dropping an end may wait for the peer to take what was
        /// accepted ([`Options::linger`](crate::Options::linger)).
        pub fn linger(mut self, linger: std::time::Duration) -> $builder {
            self.options = self.options.linger(linger);
            self
        }

        /// Whether descriptors may travel
        /// ([`Options::descriptors`](crate::Options::descriptors)).
        pub fn descriptors(mut self, carried: bool) -> $builder {
            self.options = self.options.descriptors(carried);
            self
        }

        /// All at once: codec, maximum frame, linger and descriptors.
        pub fn options(mut self, options: $crate::Options) -> $builder {
            self.options = options;
            self
        }
    };
}
pub(crate) use channel_settings;

/// Channels over a pipe: one way, the lesson's first primitive.
/// [`channel`](crate::channel) is `Pipe::new().channel()`.
///
/// # Examples
///
/// ```
/// use procwire::{CodecKind, Pipe};
///
/// let (tx, rx) = Pipe::new().codec(CodecKind::Json).channel::<Vec<u32>>()?;
/// tx.send(vec![1, 2, 3])?;
/// assert_eq!(rx.recv()?, [1, 2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Pipe {
    options: Options,
}

impl Pipe {
    /// A pipe with the default [`Options`].
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::{Kind, SocketPair};
    ///
    /// let (a, b) = SocketPair::new(Kind::SeqPacket).duplex::<u32, u32>()?;
    /// a.send(1)?;
    /// b.send(b.recv()? + 1)?;
    /// assert_eq!(a.recv()?, 2);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn new() -> Pipe {
        Pipe::default()
    }

    channel_settings!(Pipe);

    /// A one-way channel over a new pipe.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = procwire::Pipe::new().channel::<String>()?;
    /// tx.send("down the pipe".into())?;
    /// drop(tx); // every writer gone: the reader's stream ends
    /// assert_eq!(rx.iter().collect::<Result<Vec<_>, _>>()?, ["down the pipe"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn channel<T: Serialize + DeserializeOwned>(&self) -> Result<(Sender<T>, Receiver<T>)> {
        let (r, w) = sys::pipe().map_err(|e| crate::Error::io("creating a pipe", e))?;
        Ok((self.options.sender_from(w)?, self.options.receiver_from(r)?))
    }
}

/// Channels over a new socket pair of a [`Kind`]: stream (any message
/// size, descriptors travel), seqpacket (each message one atomic datagram,
/// with an end of stream) or datagram. [`duplex`](crate::duplex) is
/// `SocketPair::new(Kind::Stream).duplex()`.
///
/// On seqpacket and datagram sockets a message over 256 KiB travels out of
/// line, whole, in the sender's spill file: a memfd written again for each
/// such message once the receiver has read the ones before, so that its
/// pages are allocated once (up to 64 MiB; a larger message takes a sealed
/// memfd of its own, whose pages the kernel allocates and frees for it).
/// Both ends keep the file mapped, so a megabyte takes about half as long
/// as over a stream socket (`docs/performance.md`). The spill file stays
/// open (a descriptor at each end) until the ends close.
///
/// # Examples
///
/// ```
/// use procwire::{Kind, SocketPair};
///
/// let (tx, rx) = SocketPair::new(Kind::Datagram).send_buffer(1 << 20).channel::<String>()?;
/// tx.send("one whole datagram".into())?;
/// assert_eq!(rx.recv()?, "one whole datagram");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct SocketPair {
    kind: Kind,
    options: Options,
}

impl SocketPair {
    /// A socket pair of `kind` with the default [`Options`] and the
    /// kernel's socket buffers.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = procwire::Shm::new().capacity(64 << 10).channel::<Vec<u32>>()?;
    /// tx.send(vec![1, 2, 3])?;
    /// assert_eq!(rx.recv()?, [1, 2, 3]);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = procwire::Shm::new().capacity(4 << 20); // 4 MiB rings
    /// let (a, b) = shm.duplex::<u32, u32>()?;
    /// a.send(1)?;
    /// assert_eq!(b.recv()?, 1);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn new(kind: Kind) -> SocketPair {
        SocketPair {
            kind,
            options: Options::new(),
        }
    }

    channel_settings!(SocketPair);

    /// `SO_SNDBUF` for both sockets: how much the kernel holds before a
    /// send waits (it doubles the value and caps it at
    /// `net.core.wmem_max`).
    pub fn send_buffer(mut self, bytes: usize) -> SocketPair {
        self.options.send_buffer = Some(bytes);
        self
    }

    fn pair(&self) -> Result<(crate::Socket, crate::Socket)> {
        crate::socket::socket_pair(self.kind)
            .map_err(|e| crate::Error::io("creating a socket pair", e))
    }

    /// A one-way channel over a new socket pair.
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::{Kind, SocketPair};
    ///
    /// let (tx, rx) = SocketPair::new(Kind::Stream).channel::<procwire::Fd>()?;
    /// let file = tempfile::tempfile()?;
    /// tx.send(procwire::Fd::from(std::os::fd::OwnedFd::from(file)))?; // descriptors travel
    /// let _file: std::fs::File = rx.recv()?.into_inner().into();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn channel<T: Serialize + DeserializeOwned>(&self) -> Result<(Sender<T>, Receiver<T>)> {
        let (a, b) = self.pair()?;
        Ok((self.options.sender_from(a)?, self.options.receiver_from(b)?))
    }

    /// A two-way channel over a new socket pair. The first end sends `A`
    /// and receives `B`; the second the reverse.
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::{CodecKind, Kind, SocketPair};
    ///
    /// let (a, b) = SocketPair::new(Kind::Datagram).codec(CodecKind::MsgPack).duplex::<String, u64>()?;
    /// a.send("x".repeat(1 << 20))?; // larger than a datagram: out of line, still whole
    /// b.send(b.recv()?.len() as u64)?;
    /// assert_eq!(a.recv()?, 1 << 20);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn duplex<A, B>(&self) -> Result<(Duplex<A, B>, Duplex<B, A>)>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
    {
        let (a, b) = self.pair()?;
        Ok((self.options.duplex_from(a)?, self.options.duplex_from(b)?))
    }
}

/// Channels over a ring in shared memory (a sealed memfd): the fastest way
/// between two processes of one machine, with no system call per message
/// while both sides are busy. Hand the ends to a child with
/// [`fork`](crate::fork), or inside a message over a socket channel;
/// descriptors do not travel over shared memory.
///
/// Ends are noticed as on sockets: a receiver that drops its end fails the
/// next send, and a sender that drops its end ends the receiver's stream
/// after the last message. A peer process that is *killed* is noticed
/// through a side socket: at once by a waiting end, and by a sender within
/// a millisecond (a message sent in that window is lost, like one in a
/// socket buffer when its reader dies). A message larger than half the ring
/// travels out of line, in the writer's *spill file*: a second shared
/// memfd, made for the first such message and written again for the next
/// ones (a larger one, or one sent while the reader has not yet read the
/// last, gets a new file). Up to 64 MiB; a larger message goes in a sealed
/// memfd of its own, whose pages are allocated and freed for it, several
/// times slower. A spill file keeps the memory of the largest message it
/// held, and a descriptor in each process, until the channel closes.
///
/// # Examples
///
/// ```
/// let (tx, rx) = procwire::Shm::new().channel::<String>()?;
/// tx.send("through shared memory".into())?;
/// drop(tx);
/// assert_eq!(rx.recv()?, "through shared memory");
/// assert!(rx.recv().unwrap_err().is_disconnected());
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Shm {
    capacity: usize,
    wait: crate::ShmWait,
    options: Options,
}

impl Default for Shm {
    fn default() -> Shm {
        Shm::new()
    }
}

impl Shm {
    /// Rings of 1 MiB, adaptive waiting, the default [`Options`].
    pub fn new() -> Shm {
        Shm {
            capacity: 1 << 20,
            wait: crate::ShmWait::Adaptive,
            options: Options::new(),
        }
    }

    channel_settings!(Shm);

    /// The data area of each ring (default 1 MiB, rounded up to a power of
    /// two between 4 KiB and 1 GiB). Messages up to half of it travel in
    /// the ring; larger ones out of line, in a spill file (see [`Shm`]).
    pub fn capacity(mut self, bytes: usize) -> Shm {
        self.capacity = bytes;
        self
    }

    /// How this process's ends wait for their peer (default
    /// [`ShmWait::Adaptive`](crate::ShmWait::Adaptive)). An end that
    /// travels to another process inside a message waits adaptively there.
    pub fn wait(mut self, wait: crate::ShmWait) -> Shm {
        self.wait = wait;
        self
    }

    fn ring(&self) -> Result<(crate::shm::Writer, crate::shm::Reader)> {
        use crate::shm;
        let ctx = "creating a shared-memory ring";
        let cap = shm::capacity_for(self.capacity);
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
            shm::Writer::new(region, cap, self.wait, copies),
            shm::Reader::new(other, checked, self.wait, efds),
        ))
    }

    fn conns(
        &self,
        a: (Option<crate::shm::Writer>, Option<crate::shm::Reader>),
        b: (Option<crate::shm::Writer>, Option<crate::shm::Reader>),
    ) -> Result<(Arc<Conn>, Arc<Conn>)> {
        check_max(self.options.max_frame)?;
        let (sa, sb) = sys::socketpair(sys::SockType::SeqPacket)
            .map_err(|e| crate::Error::io("creating the shared-memory side socket", e))?;
        let ctx = "preparing a shared-memory end";
        Ok((
            Arc::new(Conn::shm(sa, a.0, a.1).map_err(|e| crate::Error::io(ctx, e))?),
            Arc::new(Conn::shm(sb, b.0, b.1).map_err(|e| crate::Error::io(ctx, e))?),
        ))
    }

    /// A one-way channel over one ring.
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::{Shm, ShmWait};
    ///
    /// let (tx, rx) = Shm::new().wait(ShmWait::Futex).channel::<u64>()?;
    /// let reader = std::thread::spawn(move || rx.iter().map(|r| r.unwrap()).sum::<u64>());
    /// for n in 1..=100 {
    ///     tx.send(n)?;
    /// }
    /// drop(tx);
    /// assert_eq!(reader.join().unwrap(), 5050);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn channel<T: Serialize + DeserializeOwned>(&self) -> Result<(Sender<T>, Receiver<T>)> {
        let (w, r) = self.ring()?;
        let (a, b) = self.conns((Some(w), None), (None, Some(r)))?;
        Ok((self.options.sender_on(a), self.options.receiver_on(b)?))
    }

    /// A two-way channel over two rings.
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::{Shm, ShmWait};
    ///
    /// let (a, b) = Shm::new().capacity(64 << 10).wait(ShmWait::Futex).duplex::<u32, u32>()?;
    /// a.send(20)?;
    /// b.send(b.recv()? + 1)?;
    /// assert_eq!(a.recv()?, 21);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn duplex<A, B>(&self) -> Result<(Duplex<A, B>, Duplex<B, A>)>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
    {
        let (w1, r1) = self.ring()?;
        let (w2, r2) = self.ring()?;
        let (a, b) = self.conns((Some(w1), Some(r2)), (Some(w2), Some(r1)))?;
        Ok((self.options.duplex_on(a)?, self.options.duplex_on(b)?))
    }
}
