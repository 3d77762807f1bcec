//! Adopting a descriptor inherited from the parent process by number.
//!
//! # Safety
//!
//! [`adopt`] turns a raw descriptor number into an `OwnedFd`. It first checks
//! with `fcntl(F_GETFD)` that the number refers to an open descriptor, and
//! lets the caller inspect it through a `BorrowedFd` before taking ownership,
//! so a wrong number (stdin, say) is refused without being closed. Its caller
//! (the once-per-process `PROCWIRE_FD` constructor) guarantees that no other
//! owner of that number exists in this process: the number was handed over by
//! the parent for procwire's exclusive use, and adoption happens at most once.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Takes ownership of the inherited descriptor `raw` if `check` accepts it.
///
/// # References
/// - fcntl(2) with `F_GETFD`
pub(crate) fn adopt(
    raw: RawFd,
    check: impl FnOnce(BorrowedFd<'_>) -> io::Result<()>,
) -> io::Result<OwnedFd> {
    if raw < 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor number {raw} is negative"),
        ));
    }
    // SAFETY: F_GETFD only reads the descriptor table entry for `raw`.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is open (checked above) and stays open for the borrow,
    // which ends before this function returns.
    check(unsafe { BorrowedFd::borrow_raw(raw) })?;
    // SAFETY: `raw` is open and, per the module contract, owned by nobody
    // else in this process.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Arranges for `fd` (close-on-exec in this process) to survive the `exec`
/// of `cmd`'s child: its `FD_CLOEXEC` flag is cleared in the child only,
/// between fork and exec. Other threads of this process never see an
/// inheritable copy, so a program they start concurrently cannot pick it up.
///
/// # References
/// - fcntl(2) with `F_GETFD` / `F_SETFD`, execve(2) ("file descriptors marked
///   close-on-exec are closed")
pub(crate) fn keep_across_exec(cmd: &mut std::process::Command, fd: BorrowedFd<'_>) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let raw = fd.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: it makes two fcntl(2) calls on an
    // integer and allocates nothing. `raw` stays open in the parent until the
    // caller has spawned the child (it holds the `OwnedFd` until then).
    unsafe {
        cmd.pre_exec(move || {
            let flags = libc::fcntl(raw, libc::F_GETFD);
            if flags == -1 || libc::fcntl(raw, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
