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
