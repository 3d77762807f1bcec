//! Reads into a `Vec`'s spare capacity: memory nobody has written yet.
//!
//! A large message read straight into the allocation that becomes its
//! buffer is written once, by the kernel; zeroing that allocation first
//! would be a pass over a megabyte the raw baseline does not make.
//!
//! # Safety
//!
//! Each read hands the kernel exactly the spare capacity it may fill (a
//! pointer and a length from `Vec::spare_capacity_mut`), and the kernel
//! reports how many bytes it stored there; only after that does
//! [`read_spare`] extend the vector's length, by no more than those bytes
//! and no more than the room given.

#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::{Received, nowait_refused, nowait_supported, readable_now, retry, sockmsg};

/// Where [`read_spare`] reads from.
pub(crate) enum Source<'a> {
    /// A pipe's read end; `nowait`: take only what it holds now.
    Pipe { nowait: bool },
    /// A stream socket, whose descriptors land in `fds`.
    Socket {
        fds: &'a mut Vec<OwnedFd>,
        nonblocking: bool,
    },
}

/// Reads at most `max` bytes into `v`'s spare capacity and appends them to
/// `v`.
///
/// # References
/// - read(2), preadv2(2) (`RWF_NOWAIT`), recvmsg(2)
pub(crate) fn read_spare(
    fd: BorrowedFd<'_>,
    v: &mut Vec<u8>,
    max: usize,
    from: Source<'_>,
) -> io::Result<Received> {
    let spare = v.spare_capacity_mut();
    let room = max.min(spare.len());
    let buf = &mut spare[..room];
    let r = match from {
        Source::Pipe { nowait: false } => read(fd, buf).map(Received::plain)?,
        Source::Pipe { nowait: true } => read_nowait(fd, buf).map(Received::plain)?,
        Source::Socket { fds, nonblocking } => sockmsg::recv_into(fd, buf, fds, nonblocking)?,
    };
    let stored = r.len.min(room);
    // SAFETY: the kernel stored `stored` bytes at the start of the spare
    // capacity (see the module's safety paragraph).
    unsafe { v.set_len(v.len() + stored) };
    Ok(r)
}

fn read(fd: BorrowedFd<'_>, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    retry(|| rustix::io::read(fd, &mut *buf).map(|(stored, _)| stored.len()))
}

/// As `sys::read_nowait`: `preadv2` with `RWF_NOWAIT` where the kernel
/// takes it on a pipe, else a `poll` first.
fn read_nowait(fd: BorrowedFd<'_>, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    if nowait_supported() {
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        loop {
            // SAFETY: `iov` covers exactly `buf`, which lives across the
            // call; offset -1 reads at the current position, as read(2).
            let r = unsafe { libc::preadv2(fd.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT) };
            if r >= 0 {
                return Ok(r as usize);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                _ if nowait_refused(&e) => break,
                _ => return Err(e),
            }
        }
    }
    readable_now(fd)?;
    read(fd, buf)
}

/// Reads `len` bytes of a file from offset `at` into `v`'s spare capacity
/// (reserved here) and appends them to `v`: a large message's byte string
/// out of a memfd, into the buffer it will own.
///
/// # References
/// - pread(2)
pub(crate) fn pread_spare(
    fd: BorrowedFd<'_>,
    at: usize,
    len: usize,
    v: &mut Vec<u8>,
) -> io::Result<()> {
    v.reserve(len);
    let mut done = 0;
    while done < len {
        let spare = &mut v.spare_capacity_mut()[..len - done];
        let offset = (at + done) as u64;
        let n = retry(|| rustix::io::pread(fd, &mut *spare, offset).map(|(got, _)| got.len()))?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let n = n.min(len - done);
        // SAFETY: the kernel stored `n` bytes at the start of the spare
        // capacity (see the module's safety paragraph).
        unsafe { v.set_len(v.len() + n) };
        done += n;
    }
    Ok(())
}
