//! Socket queue sizes that rustix has no wrapper for.
//!
//! # Safety
//!
//! `ioctl(TIOCOUTQ)` (`SIOCOUTQ`) is called through `libc` on a descriptor
//! borrowed for the whole call, with a pointer to an initialised `c_int` on
//! the caller's stack, which the kernel fills and does not keep.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// How many bytes this socket has sent that its peer has not yet
/// acknowledged, or not sent at all (on TCP: `write_seq - snd_una`, which
/// counts a FIN too).
///
/// # References
/// - ioctl(2) with `SIOCOUTQ`, tcp(7)
#[doc(alias = "SIOCOUTQ")]
#[cfg_attr(not(feature = "tcp"), allow(dead_code))]
pub(crate) fn unsent_bytes(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: `fd` is open for the call; TIOCOUTQ writes one c_int to `&mut n`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as u64)
}
