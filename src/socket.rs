//! Unix sockets: socket pairs (the lesson's `Socket.pair`), listeners and
//! connections by path, credentials, and descriptor passing.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::sys::{self, FdKind, SockType};

/// The kind of a Unix socket.
///
/// # Examples
///
/// ```
/// use procwire::{Kind, socket_pair};
///
/// for kind in Kind::ALL {
///     let (a, b) = socket_pair(kind)?;
///     a.send(b"hi")?;
///     let mut buf = [0u8; 2];
///     assert_eq!(b.recv(&mut buf)?, 2);
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// `SOCK_STREAM`: a two-way byte stream with no message boundaries.
    Stream,
    /// `SOCK_DGRAM`: two-way messages, each delivered whole. Has no
    /// end-of-file: a peer that closes is noticed only when sending.
    Datagram,
    /// `SOCK_SEQPACKET`: two-way messages, each delivered whole and in
    /// order, with end-of-file when the peer closes.
    SeqPacket,
}

impl Kind {
    fn sys(self) -> SockType {
        match self {
            Kind::Stream => SockType::Stream,
            Kind::Datagram => SockType::Datagram,
            Kind::SeqPacket => SockType::SeqPacket,
        }
    }

    /// Every kind, for code that tries them all.
    pub const ALL: [Kind; 3] = [Kind::Stream, Kind::Datagram, Kind::SeqPacket];
}

/// Creates a connected pair of Unix sockets of `kind`, close-on-exec from
/// birth. Unlike a pipe, both ends read and write.
///
/// # Examples
///
/// ```
/// use procwire::{Kind, socket_pair};
///
/// let (child, parent) = socket_pair(Kind::Datagram)?;
/// parent.send(b"Heavy lifting")?;
/// let mut buf = [0; 1000];
/// let n = child.recv(&mut buf)?;
/// assert_eq!(&buf[..n], b"Heavy lifting");
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # References
/// - socketpair(2), unix(7)
#[doc(alias = "socketpair")]
pub fn socket_pair(kind: Kind) -> io::Result<(Socket, Socket)> {
    let (a, b) = sys::socketpair(kind.sys())?;
    Ok((Socket { fd: a, kind }, Socket { fd: b, kind }))
}

/// A connected Unix socket: one end of a [`socket_pair`], or a connection
/// made with [`Socket::connect`] or accepted by a [`UnixListener`].
///
/// On a [`Kind::Stream`] socket, [`Read`] and [`Write`] move bytes. On the
/// message kinds, [`send`](Socket::send) and [`recv`](Socket::recv) move one
/// whole message each (and `Read`/`Write` do the same). Every send uses
/// `MSG_NOSIGNAL`: a closed peer is an error, never `SIGPIPE`.
///
/// # Examples
///
/// ```
/// use procwire::{Kind, socket_pair};
///
/// let (a, b) = socket_pair(Kind::SeqPacket)?;
/// a.send(b"one message")?;
/// let mut buf = [0u8; 64];
/// let n = b.recv(&mut buf)?;
/// assert_eq!(&buf[..n], b"one message");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Socket {
    fd: OwnedFd,
    kind: Kind,
}

impl Socket {
    /// Adopts a descriptor that is a Unix socket of a supported kind.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::OwnedFd;
    ///
    /// let (a, _b) = procwire::socket_pair(procwire::Kind::Datagram)?;
    /// let a = procwire::Socket::from_fd(OwnedFd::from(a))?; // its kind is read back
    /// assert_eq!(a.kind(), procwire::Kind::Datagram);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_fd(fd: OwnedFd) -> io::Result<Socket> {
        let kind = match sys::fd_kind(fd.as_fd())? {
            FdKind::Socket(SockType::Stream) => Kind::Stream,
            FdKind::Socket(SockType::Datagram) => Kind::Datagram,
            FdKind::Socket(SockType::SeqPacket) => Kind::SeqPacket,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a stream, datagram or seqpacket socket",
                ));
            }
        };
        Ok(Socket { fd, kind })
    }

    /// Connects to a [`UnixListener`] at `path`.
    ///
    /// # References
    /// - connect(2), unix(7)
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("s");
    /// let listener = procwire::UnixListener::bind(&path)?;
    /// let client = procwire::Socket::connect(&path)?;
    /// let server = listener.accept()?;
    /// client.send(b"hi")?;
    /// let mut buf = [0u8; 2];
    /// assert_eq!(server.recv(&mut buf)?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect(path: impl AsRef<Path>) -> io::Result<Socket> {
        Ok(Socket {
            fd: sys::unix_connect(path.as_ref())?,
            kind: Kind::Stream,
        })
    }

    /// The socket's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Sends bytes: on a message socket one whole message, which fails with
    /// `EMSGSIZE` (`io::ErrorKind` `Other`, raw error 90) if one datagram
    /// cannot carry it; on a stream socket as many bytes as fit.
    ///
    /// # References
    /// - send(2) with `MSG_NOSIGNAL`
    pub fn send(&self, bytes: &[u8]) -> io::Result<usize> {
        sys::send(self.fd.as_fd(), &[IoSlice::new(bytes)], &[], false)
    }

    /// Receives bytes: on a message socket one whole message. A message longer
    /// than `buf` is an error (`MSG_TRUNC`), never silently cut; the message
    /// is consumed.
    ///
    /// # References
    /// - recv(2) with `MSG_TRUNC`
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let (n, fds) = self.recv_with_fds(buf)?;
        drop(fds);
        Ok(n)
    }

    /// Sends bytes with open descriptors attached (`SCM_RIGHTS`); the peer
    /// receives copies. At most 253 descriptors per call.
    ///
    /// # References
    /// - sendmsg(2), unix(7)
    pub fn send_with_fds(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
        sys::send(self.fd.as_fd(), &[IoSlice::new(bytes)], fds, false)
    }

    /// Receives bytes and the descriptors that came with them, each owned
    /// (and close-on-exec) the moment it arrives. Truncated control data
    /// (`MSG_CTRUNC`, also when `RLIMIT_NOFILE` is reached) is an error, and
    /// the descriptors that did arrive are closed. On a stream socket the
    /// bytes received with them are consumed too: use a channel, which keeps
    /// its stream in step and fails only the message concerned.
    ///
    /// # References
    /// - recvmsg(2), unix(7), cmsg(3)
    pub fn recv_with_fds(&self, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
        let mut fds = Vec::new();
        let r = sys::recv(self.fd.as_fd(), buf, &mut fds, false)?;
        if r.fds_lost {
            return Err(io::Error::other(format!(
                "descriptors sent with the message were cut off (MSG_CTRUNC: the receive \
                 buffer or RLIMIT_NOFILE); the {} bytes that came with them are dropped",
                r.len
            )));
        }
        if r.full_len > r.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a message of {} bytes did not fit the {}-byte buffer (MSG_TRUNC); it was discarded",
                    r.full_len, r.len
                ),
            ));
        }
        Ok((r.len, fds))
    }

    /// Shuts down one or both directions. `Shutdown::Write` is "close the
    /// writer" on a two-way socket: the peer reads end-of-file, and can still
    /// send back.
    ///
    /// # References
    /// - shutdown(2)
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        sys::shutdown(self.fd.as_fd(), how)
    }

    /// The process id, user id and group id of the peer (`SO_PEERCRED`), as
    /// they were when it connected or created the pair.
    ///
    /// # References
    /// - unix(7) (`SO_PEERCRED`)
    pub fn peer_cred(&self) -> io::Result<PeerCred> {
        let (pid, uid, gid) = sys::peer_cred(self.fd.as_fd())?;
        Ok(PeerCred { pid, uid, gid })
    }

    /// The largest message one datagram can carry on this socket (its
    /// `SO_SNDBUF` less the kernel's overhead); `None` on a stream socket.
    pub fn max_message(&self) -> io::Result<Option<usize>> {
        match self.kind {
            Kind::Stream => Ok(None),
            Kind::Datagram | Kind::SeqPacket => sys::max_datagram(self.fd.as_fd()).map(Some),
        }
    }

    /// Duplicates the socket (close-on-exec).
    pub fn try_clone(&self) -> io::Result<Socket> {
        Ok(Socket {
            fd: self.fd.try_clone()?,
            kind: self.kind,
        })
    }
}

/// Who is at the other end of a Unix socket.
///
/// # Examples
///
/// ```
/// let (a, _b) = procwire::socket_pair(procwire::Kind::Stream)?;
/// let cred = a.peer_cred()?;
/// assert_eq!(cred.pid, std::process::id());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id.
    pub pid: u32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<Socket> for OwnedFd {
    fn from(s: Socket) -> OwnedFd {
        s.fd
    }
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("fd", &self.fd)
            .field("kind", &self.kind)
            .finish()
    }
}

/// A listening Unix stream socket bound to a path.
///
/// The socket file is created owner-only (mode `0600`). A file left behind by
/// a listener that died is detected (connecting to it is refused) and
/// replaced; a live listener makes [`bind`](UnixListener::bind) fail with
/// `AddrInUse`. Paths longer than 107 bytes are an error, never truncated.
/// Dropping the listener removes its socket file.
///
/// # Examples
///
/// ```
/// use procwire::{Socket, UnixListener};
/// use std::io::{Read, Write};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("procwire.sock");
/// let listener = UnixListener::bind(&path)?;
/// let mut client = Socket::connect(&path)?;
/// let mut server = listener.accept()?;
/// client.write_all(b"hi")?;
/// let mut buf = [0; 2];
/// server.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"hi");
/// assert_eq!(server.peer_cred()?.pid, std::process::id());
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct UnixListener {
    fd: OwnedFd,
    path: PathBuf,
    id: Option<(u64, u64)>,
}

impl UnixListener {
    /// Binds and listens at `path`.
    ///
    /// # References
    /// - bind(2), listen(2), unix(7)
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let listener = procwire::UnixListener::bind(dir.path().join("s"))?;
    /// assert!(listener.path().ends_with("s"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let path = path.as_ref().to_path_buf();
        let fd = sys::unix_listen(&path, 128)?;
        let id = sys::file_id(&path).ok();
        Ok(UnixListener { fd, path, id })
    }

    /// Waits for a connection.
    ///
    /// # References
    /// - accept4(2)
    pub fn accept(&self) -> io::Result<Socket> {
        Ok(Socket {
            fd: sys::accept(self.fd.as_fd())?,
            kind: Kind::Stream,
        })
    }

    /// The path the listener is bound to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UnixListener {
    fn drop(&mut self) {
        // Remove the file only if it is still ours: another listener may
        // have replaced it since.
        if self.id.is_some() && sys::file_id(&self.path).ok() == self.id {
            let _ = sys::unlink(&self.path);
        }
    }
}

impl AsFd for UnixListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("fd", &self.fd)
            .field("path", &self.path)
            .finish()
    }
}
