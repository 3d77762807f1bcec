//! Every system call procwire makes, in one place.
//!
//! The rest of the crate talks to the kernel only through these functions.
//! They are thin, safe wrappers over [`rustix`]; the leaf modules that need
//! `libc` where rustix has no wrapper, or none cheap enough for every
//! message ([`signal`] for the SIGPIPE guard, [`inherit`] for adopting an
//! inherited descriptor, `sockmsg` for a socket's receive, `spare` for
//! reads into memory not yet written, and a few more), hold the crate's
//! only `unsafe` code, each with a `# Safety` paragraph.
//! Another Unix port replaces this module and nothing else.
//!
//! Each wrapper names its man page under `# References`.

mod clock;
pub(crate) mod inherit;
pub(crate) mod lock;
mod poll;
pub(crate) mod probe;
pub(crate) mod process;
#[cfg(feature = "tokio")]
pub(crate) mod reactor;
pub(crate) mod ready;
pub(crate) mod shm;
pub(crate) mod signal;
pub(crate) mod sockio;
mod sockmsg;
mod spare;
#[cfg(feature = "unstable")]
pub(crate) mod storm;
mod unix_path;

pub(crate) use clock::coarse_ns;
pub(crate) use poll::{Interest, hung_up, poll};
pub(crate) use sockmsg::{recv, refuse_rights};
pub(crate) use spare::{Source, pread_spare, read_spare};
pub(crate) use unix_path::{accept, unix_connect, unix_listen};

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{FileType, OFlags};
use rustix::io::{Errno, FdFlags, ReadWriteFlags};
use rustix::net::{
    AddressFamily, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, Shutdown,
    SocketFlags, SocketType,
};

/// The most descriptors one `SCM_RIGHTS` message may carry (`SCM_MAX_FD` in
/// the Linux kernel's `include/net/scm.h`).
pub(crate) const MAX_FDS: usize = 253;

/// Bytes a Unix datagram costs beyond its payload when the kernel checks it
/// against the sender's `SO_SNDBUF` (`unix_dgram_sendmsg`: `len >
/// sk_sndbuf - 32` fails with `EMSGSIZE`).
const DGRAM_OVERHEAD: usize = 32;

/// The longest `sun_path` Linux accepts, without its terminating NUL
/// (`sizeof(sockaddr_un.sun_path) - 1`, see unix(7)).
pub(crate) const MAX_UNIX_PATH: usize = 107;

fn io(e: Errno) -> io::Error {
    e.into()
}

/// Creates a pipe whose two ends are close-on-exec from birth.
///
/// # References
/// - pipe2(2)
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    signal::note_sigpipe_disposition();
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(io)
}

/// The three socket types procwire uses, as the kernel names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SockType {
    Stream,
    Datagram,
    SeqPacket,
}

impl SockType {
    fn raw(self) -> SocketType {
        match self {
            SockType::Stream => SocketType::STREAM,
            SockType::Datagram => SocketType::DGRAM,
            SockType::SeqPacket => SocketType::SEQPACKET,
        }
    }
}

/// Creates a connected pair of Unix sockets, close-on-exec from birth.
///
/// # References
/// - socketpair(2), unix(7)
pub(crate) fn socketpair(ty: SockType) -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::net::socketpair(AddressFamily::UNIX, ty.raw(), SocketFlags::CLOEXEC, None).map_err(io)
}

/// What kind of file `fd` is, as procwire cares about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FdKind {
    Pipe,
    Socket(SockType),
    /// Anything else: a regular file, a tty, an unknown socket type.
    Other,
}

/// Classifies an open descriptor.
///
/// # References
/// - fstat(2), getsockopt(2) with `SO_TYPE`
pub(crate) fn fd_kind(fd: BorrowedFd<'_>) -> io::Result<FdKind> {
    let st = rustix::fs::fstat(fd).map_err(io)?;
    Ok(match FileType::from_raw_mode(st.st_mode) {
        FileType::Fifo => FdKind::Pipe,
        FileType::Socket => {
            let ty = rustix::net::sockopt::socket_type(fd).map_err(io)?;
            if ty == SocketType::STREAM {
                FdKind::Socket(SockType::Stream)
            } else if ty == SocketType::DGRAM {
                FdKind::Socket(SockType::Datagram)
            } else if ty == SocketType::SEQPACKET {
                FdKind::Socket(SockType::SeqPacket)
            } else {
                FdKind::Other
            }
        }
        _ => FdKind::Other,
    })
}

/// Sets or clears `O_NONBLOCK` on the open file description.
///
/// # References
/// - fcntl(2) with `F_GETFL` / `F_SETFL`
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd).map_err(io)?;
    let new = if on {
        flags | OFlags::NONBLOCK
    } else {
        flags - OFlags::NONBLOCK
    };
    if new != flags {
        rustix::fs::fcntl_setfl(fd, new).map_err(io)?;
    }
    Ok(())
}

/// Whether the descriptor was opened for reading and for writing.
///
/// # References
/// - fcntl(2) with `F_GETFL`
pub(crate) fn access_mode(fd: BorrowedFd<'_>) -> io::Result<(bool, bool)> {
    let mode = rustix::fs::fcntl_getfl(fd).map_err(io)? & OFlags::RWMODE;
    Ok((mode != OFlags::WRONLY, mode != OFlags::RDONLY))
}

/// Sets `FD_CLOEXEC`, so that the descriptor does not leak into programs this
/// process executes.
///
/// # References
/// - fcntl(2) with `F_SETFD`
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = rustix::io::fcntl_getfd(fd).map_err(io)?;
    rustix::io::fcntl_setfd(fd, flags | FdFlags::CLOEXEC).map_err(io)
}

/// Whether `FD_CLOEXEC` is set.
///
/// # References
/// - fcntl(2) with `F_GETFD`
#[cfg(feature = "unstable")]
pub(crate) fn is_cloexec(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(rustix::io::fcntl_getfd(fd)
        .map_err(io)?
        .contains(FdFlags::CLOEXEC))
}

/// Reads from any descriptor (a pipe, a stream socket).
///
/// # References
/// - read(2)
#[inline]
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    retry(|| rustix::io::read(fd, &mut *buf))
}

/// Whether this kernel refused `RWF_NOWAIT` on a pipe (before Linux 5.8).
static NOWAIT_UNSUPPORTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

pub(super) fn nowait_refused(e: &io::Error) -> bool {
    use std::sync::atomic::Ordering;
    let refused = e.raw_os_error() == Some(Errno::OPNOTSUPP.raw_os_error());
    if refused {
        NOWAIT_UNSUPPORTED.store(true, Ordering::Relaxed);
    }
    refused
}

pub(super) fn nowait_supported() -> bool {
    !NOWAIT_UNSUPPORTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Reads what a pipe holds now, without blocking even on a blocking read
/// end: `preadv2` with `RWF_NOWAIT`, one system call (Linux 5.8 and later
/// support it on pipes; before, the kernel refuses the flag, and a `poll`
/// first says whether the read would block).
///
/// # References
/// - preadv2(2) (`RWF_NOWAIT`), poll(2)
pub(crate) fn read_nowait(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    if nowait_supported() {
        let mut iov = [IoSliceMut::new(&mut *buf)];
        // u64::MAX: the current position, as read(2) uses (a pipe has none).
        match retry(|| rustix::io::preadv2(fd, &mut iov, u64::MAX, ReadWriteFlags::NOWAIT)) {
            Err(e) if nowait_refused(&e) => {}
            r => return r,
        }
    }
    readable_now(fd)?;
    read(fd, buf)
}

/// `Err(WouldBlock)` unless `fd` is readable now: how a read without
/// waiting is made on a kernel that refuses `RWF_NOWAIT` on a pipe.
pub(super) fn readable_now(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut ready = [false];
    if !poll(
        &[(fd, Interest::Read)],
        Some(std::time::Instant::now()),
        &mut ready,
    )? {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    Ok(())
}

/// Writes to a pipe without letting `SIGPIPE` kill the process: a closed
/// reader is reported as `EPIPE` (`io::ErrorKind::BrokenPipe`). With
/// `nonblocking`, takes only what fits now (`pwritev2` with `RWF_NOWAIT`;
/// a kernel that refuses the flag gets the end `O_NONBLOCK` instead, for
/// good); otherwise waits in the kernel as write(2) does.
///
/// # References
/// - writev(2), pwritev2(2) (`RWF_NOWAIT`), pipe(7) ("If all file
///   descriptors referring to the read end of a pipe have been closed,
///   then a write(2) will cause a SIGPIPE signal")
#[inline]
pub(crate) fn pipe_write(
    fd: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    nonblocking: bool,
) -> io::Result<usize> {
    signal::without_sigpipe(|| {
        if nonblocking && nowait_supported() {
            match retry(|| rustix::io::pwritev2(fd, bufs, u64::MAX, ReadWriteFlags::NOWAIT)) {
                Err(e) if nowait_refused(&e) => {}
                r => return r,
            }
        }
        if nonblocking {
            set_nonblocking(fd, true)?;
        }
        // One buffer (a whole small frame) is write(2), as a plain program's
        // is: the kernel then copies no iovec array in.
        if let [one] = bufs {
            return retry(|| rustix::io::write(fd, one));
        }
        retry(|| rustix::io::writev(fd, bufs))
    })
}

/// Sends bytes on a socket, with descriptors attached when `fds` is not empty.
/// `MSG_NOSIGNAL` is always set: a closed peer is `EPIPE`, never a signal.
///
/// # References
/// - sendmsg(2), unix(7) (`SCM_RIGHTS`)
pub(crate) fn send(
    fd: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> io::Result<usize> {
    let mut flags = SendFlags::NOSIGNAL;
    if nonblocking {
        flags |= SendFlags::DONTWAIT;
    }
    if fds.is_empty() {
        if let [one] = bufs {
            return retry(|| rustix::net::send(fd, one, flags));
        }
        let mut control = SendAncillaryBuffer::default();
        return retry(|| rustix::net::sendmsg(fd, bufs, &mut control, flags));
    }
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} descriptors in one message; the kernel allows at most {MAX_FDS}",
                fds.len()
            ),
        ));
    }
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other(
            "descriptors do not fit the control buffer",
        ));
    }
    retry(|| rustix::net::sendmsg(fd, bufs, &mut control, flags)).map_err(|e| {
        if e.raw_os_error() == Some(libc::EPERM) {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the receiving socket refuses descriptors (EPERM: it has SO_PASSRIGHTS off, as \
                 an end built with Options::descriptors(false) has, or a security module forbids \
                 passing them); nothing of the message was sent",
            )
        } else {
            e
        }
    })
}

/// The outcome of one [`recv`].
#[derive(Debug)]
pub(crate) struct Received {
    /// Bytes stored into the buffer.
    pub len: usize,
    /// The message's real length, which exceeds `len` when it was cut
    /// (`MSG_TRUNC`). Equal to `len` on stream sockets.
    pub full_len: usize,
    /// Descriptors came with the bytes but did not all fit (`MSG_CTRUNC`,
    /// also when `RLIMIT_NOFILE` is reached); those that arrived are closed.
    pub fds_lost: bool,
}

impl Received {
    /// `len` bytes read from a byte stream with no ancillary data (a pipe).
    pub(crate) fn plain(len: usize) -> Received {
        Received {
            len,
            full_len: len,
            fds_lost: false,
        }
    }
}

/// Receives bytes from a socket that carries neither descriptors nor
/// credentials (TCP, where `MSG_TRUNC` would discard the data).
///
/// # References
/// - recv(2), tcp(7)
#[cfg_attr(not(any(feature = "tcp", feature = "tokio")), allow(dead_code))]
pub(crate) fn recv_bytes(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    nonblocking: bool,
) -> io::Result<Received> {
    let flags = if nonblocking {
        RecvFlags::DONTWAIT
    } else {
        RecvFlags::empty()
    };
    let n = retry(|| rustix::net::recv(fd, &mut *buf, flags).map(|(n, _)| n))?;
    Ok(Received::plain(n))
}

/// Receives from a Unix socket that refuses descriptors
/// ([`refuse_rights`](sockmsg::refuse_rights)): recv(2), no control
/// buffer, as a plain program's receive. On a datagram socket `MSG_TRUNC`
/// gives the real length of a datagram longer than `buf`.
///
/// # References
/// - recv(2) (`MSG_TRUNC`: "UNIX datagram as well as sequenced-packet
///   (since Linux 3.4) sockets: return the real length")
#[inline]
pub(crate) fn recv_refusing(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    nonblocking: bool,
    datagram: bool,
) -> io::Result<Received> {
    let mut flags = RecvFlags::empty();
    if nonblocking {
        flags |= RecvFlags::DONTWAIT;
    }
    if datagram {
        flags |= RecvFlags::TRUNC;
    }
    let (len, full_len) = retry(|| rustix::net::recv(fd, &mut *buf, flags))?;
    Ok(Received {
        len,
        full_len,
        fds_lost: false,
    })
}

/// The largest datagram this socket can send: its `SO_SNDBUF` less the
/// kernel's per-datagram charge.
///
/// # References
/// - getsockopt(2) with `SO_SNDBUF`, socket(7)
pub(crate) fn max_datagram(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let sndbuf = rustix::net::sockopt::socket_send_buffer_size(fd).map_err(io)?;
    Ok(sndbuf.saturating_sub(DGRAM_OVERHEAD))
}

/// Sets `SO_SNDBUF` (the kernel doubles the value and caps it at
/// `net.core.wmem_max`; a value past what its `int` holds is capped here
/// too, not refused).
///
/// # References
/// - setsockopt(2) with `SO_SNDBUF`, socket(7)
pub(crate) fn set_send_buffer(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    let bytes = bytes.min(i32::MAX as usize / 2);
    rustix::net::sockopt::set_socket_send_buffer_size(fd, bytes).map_err(io)
}

/// How many bytes wait unread in a socket's receive queue.
///
/// # References
/// - ioctl(2) with `FIONREAD` (`SIOCINQ`, tcp(7), unix(7))
#[cfg_attr(not(feature = "tcp"), allow(dead_code))]
pub(crate) fn unread_bytes(fd: BorrowedFd<'_>) -> io::Result<u64> {
    rustix::io::ioctl_fionread(fd).map_err(io)
}

/// Shuts down one or both directions of a socket.
///
/// # References
/// - shutdown(2)
pub(crate) fn shutdown(fd: BorrowedFd<'_>, how: std::net::Shutdown) -> io::Result<()> {
    let how = match how {
        std::net::Shutdown::Read => Shutdown::Read,
        std::net::Shutdown::Write => Shutdown::Write,
        std::net::Shutdown::Both => Shutdown::Both,
    };
    match rustix::net::shutdown(fd, how) {
        // The peer is gone already: the direction is as shut as it gets.
        Ok(()) | Err(Errno::NOTCONN) => Ok(()),
        Err(e) => Err(io(e)),
    }
}

/// The credentials of the process at the other end of a connected Unix socket,
/// as they were when it connected (or created the pair).
///
/// # References
/// - getsockopt(2) with `SO_PEERCRED`, unix(7)
pub(crate) fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<(u32, u32, u32)> {
    let c = rustix::net::sockopt::socket_peercred(fd).map_err(io)?;
    Ok((
        c.pid.as_raw_nonzero().get() as u32,
        c.uid.as_raw(),
        c.gid.as_raw(),
    ))
}

/// The device and inode of a path, to recognise the socket file one created.
///
/// # References
/// - stat(2)
pub(crate) fn file_id(path: &Path) -> io::Result<(u64, u64)> {
    let st = rustix::fs::stat(path).map_err(io)?;
    Ok((st.st_dev, st.st_ino))
}

/// The device and inode of an open descriptor: the identity of the socket
/// (or pipe) behind it, the same in every copy.
///
/// # References
/// - fstat(2)
pub(crate) fn fd_id(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd).map_err(io)?;
    Ok((st.st_dev, st.st_ino))
}

/// Removes a file.
///
/// # References
/// - unlink(2)
pub(crate) fn unlink(path: &Path) -> io::Result<()> {
    rustix::fs::unlink(path).map_err(io)
}

/// Runs a system call again when a signal interrupted it (`EINTR`), so that a
/// caller never sees `Interrupted`.
#[inline]
pub(super) fn retry<T>(mut f: impl FnMut() -> Result<T, Errno>) -> io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            other => return other.map_err(io),
        }
    }
}

/// Whether an error means "the operation would block".
pub(crate) fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Whether an error means the other end is gone.
pub(crate) fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::NotConnected
    )
}

/// Whether an error is `EMSGSIZE`: a datagram bigger than the socket allows.
pub(crate) fn is_msgsize(e: &io::Error) -> bool {
    e.raw_os_error() == Some(Errno::MSGSIZE.raw_os_error())
}

/// Whether `e` says this process (or the system) is out of descriptors.
#[cfg_attr(not(feature = "tcp"), allow(dead_code))]
pub(crate) fn is_out_of_fds(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(c) if c == Errno::MFILE.raw_os_error() || c == Errno::NFILE.raw_os_error()
    )
}

/// This process's soft limit on open descriptors.
#[cfg_attr(not(feature = "tcp"), allow(dead_code))]
pub(crate) fn fd_limit() -> usize {
    fd_limits().0
}

/// This process's soft and hard limits on open descriptors (`usize::MAX`
/// for none).
///
/// # References
/// - getrlimit(2) (`RLIMIT_NOFILE`)
pub(crate) fn fd_limits() -> (usize, usize) {
    let l = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let n = |v: Option<u64>| v.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    (n(l.current), n(l.maximum))
}

/// The hard limit on open descriptors ("unlimited" or a number), if the
/// soft one can be raised towards it: what an out-of-descriptors message
/// tells the user.
pub(crate) fn fd_hard_limit_above(soft: usize, hard: usize) -> Option<String> {
    match hard {
        h if h <= soft => None,
        usize::MAX => Some("unlimited".into()),
        h => Some(h.to_string()),
    }
}

/// Whether `e` says this process has as many descriptors open as
/// `RLIMIT_NOFILE` lets it (`EMFILE`).
pub(crate) fn is_at_fd_limit(e: &io::Error) -> bool {
    e.raw_os_error() == Some(Errno::MFILE.raw_os_error())
}
