//! What this kernel offers procwire, asked directly (for `procwire::doctor`):
//! each probe makes the call procwire relies on, on a throwaway object.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// A pidfd for this process (pidfd_open(2), Linux 5.3).
pub(crate) fn pidfd() -> io::Result<OwnedFd> {
    super::process::pidfd_open(std::process::id())
}

/// A Unix socket that refuses descriptors (`SO_PASSRIGHTS`, Linux 6.16):
/// what `Options::descriptors(false)` asks of its receiving socket.
pub(crate) fn refuse_rights() -> io::Result<()> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
    let (a, _b) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    if super::refuse_rights(a.as_fd())? {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "setsockopt(SO_PASSRIGHTS) is not known to this kernel (Linux 6.16+)",
        ))
    }
}

/// A peer's pidfd from a Unix socket (`SO_PEERPIDFD`, Linux 6.5).
pub(crate) fn peer_pidfd() -> io::Result<()> {
    const SO_PEERPIDFD: libc::c_int = 77;
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
    let (a, _b) = socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `fd`, an int that
    // outlives the call; `a` is open for its duration.
    let rc = unsafe {
        libc::getsockopt(
            a.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&mut fd as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the kernel gave this process a new descriptor that
    // nothing else owns: close it.
    unsafe {
        libc::close(fd);
    }
    Ok(())
}

/// A sealed memfd (memfd_create(2) with `F_ADD_SEALS`, Linux 3.17; the
/// write seal procwire adds, 5.1 for `F_SEAL_FUTURE_WRITE` is not needed).
pub(crate) fn sealed_memfd() -> io::Result<()> {
    super::shm::memfd_with(b"procwire doctor").map(drop)
}

/// close_range(2) (Linux 5.9), on a range that holds no descriptor.
pub(crate) fn close_range() -> io::Result<()> {
    // SAFETY: close_range takes integers only; the range is above every
    // descriptor this process may have (RLIMIT_NOFILE is below it).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            (i32::MAX - 1) as libc::c_uint,
            (i32::MAX - 1) as libc::c_uint,
            0 as libc::c_uint,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A futex wake on a word nobody waits on (futex(2)).
pub(crate) fn futex() -> io::Result<()> {
    let word = std::sync::atomic::AtomicU32::new(0);
    rustix::thread::futex::wake(&word, rustix::thread::futex::Flags::PRIVATE, 1)
        .map(drop)
        .map_err(io::Error::from)
}

/// A read that does not wait from a blocking pipe (`preadv2` with
/// `RWF_NOWAIT`, Linux 5.8 on pipes; before, procwire makes the end
/// non-blocking instead).
pub(crate) fn pipe_nowait() -> io::Result<()> {
    let (r, _w) = rustix::pipe::pipe().map_err(io::Error::from)?;
    let mut buf = [0u8; 1];
    match rustix::io::preadv2(
        &r,
        &mut [io::IoSliceMut::new(&mut buf)],
        u64::MAX,
        rustix::io::ReadWriteFlags::NOWAIT,
    ) {
        Ok(_) | Err(rustix::io::Errno::AGAIN) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Leaves this process's network namespace for a new one (unshare(2)
/// with `CLONE_NEWNET`): for a throwaway child only.
pub(crate) fn unshare_net() -> io::Result<()> {
    // SAFETY: CLONE_NEWNET changes only which network stack this process
    // sees; it unshares no memory, descriptor table or credentials that
    // other code relies on.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
        .map_err(io::Error::from)
}
