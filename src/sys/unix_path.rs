//! Unix sockets by path: listen, accept, connect.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{FileType, Mode};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use super::{MAX_UNIX_PATH, io as errno_io, retry};

fn unix_addr(path: &Path) -> io::Result<SocketAddrUnix> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() > MAX_UNIX_PATH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "socket path {} is {} bytes; Unix sockets allow at most {MAX_UNIX_PATH} \
                 (use a shorter path, e.g. under /tmp or a relative one)",
                path.display(),
                bytes.len()
            ),
        ));
    }
    SocketAddrUnix::new(path).map_err(errno_io)
}

fn unix_socket() -> io::Result<OwnedFd> {
    rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(errno_io)
}

/// Binds a listening Unix stream socket at `path`, readable and writable by
/// its owner only. A socket file left behind by a dead listener (connecting
/// to it is refused) is removed first; a live one is `AddrInUse`.
///
/// # References
/// - socket(2), bind(2), listen(2), chmod(2), unlink(2), unix(7)
pub(crate) fn unix_listen(path: &Path, backlog: i32) -> io::Result<OwnedFd> {
    let addr = unix_addr(path)?;
    let fd = unix_socket()?;
    match rustix::net::bind(&fd, &addr) {
        Ok(()) => {}
        Err(Errno::ADDRINUSE) => {
            let probe = unix_socket()?;
            match retry(|| rustix::net::connect(&probe, &addr)) {
                Ok(()) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("{} has a live listener", path.display()),
                    ));
                }
                Err(e) if e.raw_os_error() == Some(Errno::CONNREFUSED.raw_os_error()) => {
                    // Connecting to a file that is not a socket is refused
                    // too: remove only a socket file.
                    let st = rustix::fs::lstat(path).map_err(errno_io)?;
                    if FileType::from_raw_mode(st.st_mode) != FileType::Socket {
                        return Err(io::Error::new(
                            io::ErrorKind::AddrInUse,
                            format!("{} exists and is not a socket", path.display()),
                        ));
                    }
                    rustix::fs::unlink(path).map_err(errno_io)?;
                    rustix::net::bind(&fd, &addr).map_err(errno_io)?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(errno_io(e)),
    }
    // Nobody can connect before listen(2), so tightening the mode here leaves
    // no window in which another user could get in.
    rustix::fs::chmod(path, Mode::from_raw_mode(0o600)).map_err(errno_io)?;
    rustix::net::listen(&fd, backlog).map_err(errno_io)?;
    Ok(fd)
}

/// Accepts one connection, close-on-exec from birth.
///
/// # References
/// - accept4(2)
pub(crate) fn accept(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    retry(|| rustix::net::accept_with(fd, SocketFlags::CLOEXEC))
}

/// Connects a new close-on-exec Unix stream socket to `path`.
///
/// # References
/// - socket(2), connect(2), unix(7)
pub(crate) fn unix_connect(path: &Path) -> io::Result<OwnedFd> {
    let addr = unix_addr(path)?;
    let fd = unix_socket()?;
    retry(|| rustix::net::connect(&fd, &addr))?;
    Ok(fd)
}
