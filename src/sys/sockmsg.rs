//! A socket's receive with room for descriptors, made per message.
//!
//! rustix's `recvmsg` also asks for the sender's address and walks its
//! control buffer three times (before the call, in `drain`, and on drop),
//! which cost a 64 B message on a socket some 140 user-space instructions
//! that this receive does not spend (`scripts/instructions`). Here the call
//! asks for no address and looks at the control buffer only when the kernel
//! filled part of it; in the common case, a message that carries no
//! descriptors, that is one comparison.
//!
//! # Safety
//!
//! `recvmsg(2)` is made through `libc::syscall` (not glibc's `recvmsg`,
//! whose cancellation-point bookkeeping costs a call some 30 instructions)
//! with a `msghdr` whose one `iovec` covers exactly the caller's buffer and
//! whose control pointer covers exactly a local buffer aligned for
//! `cmsghdr`; the kernel writes within those bounds and keeps neither
//! pointer. The control messages it wrote are then read with `CMSG_FIRSTHDR`
//! and `CMSG_NXTHDR`, which stay within the `msg_controllen` bytes the
//! kernel reports, and every descriptor number found in an `SCM_RIGHTS`
//! message is wrapped in an `OwnedFd` at once: the kernel installed it in
//! this process's table for us, so nothing else owns it.
//!
//! [`refuse_rights`] passes `setsockopt(2)` a pointer to a local `c_int`
//! and its size, which the kernel only reads during the call.

#![allow(unsafe_code)]

use std::io;
use std::mem::{self, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::{MAX_FDS, Received};

/// Room for one `SCM_RIGHTS` message of [`MAX_FDS`] descriptors, aligned for
/// `cmsghdr`.
#[repr(C, align(8))]
struct Control([MaybeUninit<u8>; rustix::cmsg_space!(ScmRights(MAX_FDS))]);

/// Receives bytes from a socket, adopting every descriptor that came with
/// them into `fds_out` at once (close-on-exec, `MSG_CMSG_CLOEXEC`).
///
/// Truncated control data (`MSG_CTRUNC`) is reported in
/// [`Received::fds_lost`]; the descriptors that did arrive are closed, and the
/// bytes are still returned (on a stream they must not be lost).
///
/// # References
/// - recvmsg(2), unix(7) (`SCM_RIGHTS`), cmsg(3)
#[inline]
pub(crate) fn recv(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds_out: &mut Vec<OwnedFd>,
    nonblocking: bool,
) -> io::Result<Received> {
    // SAFETY: `recv_into` only lets the kernel store bytes into the buffer,
    // never an uninitialized one.
    recv_into(
        fd,
        unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) },
        fds_out,
        nonblocking,
    )
}

/// [`recv`] into memory not yet written: on success the first
/// [`Received::len`] bytes of `buf` are initialized.
pub(crate) fn recv_into(
    fd: BorrowedFd<'_>,
    buf: &mut [MaybeUninit<u8>],
    fds_out: &mut Vec<OwnedFd>,
    nonblocking: bool,
) -> io::Result<Received> {
    let mut flags = libc::MSG_CMSG_CLOEXEC | libc::MSG_TRUNC;
    if nonblocking {
        flags |= libc::MSG_DONTWAIT;
    }
    let mut control = Control([MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid (null name and control, no iovec).
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let bytes = loop {
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = mem::size_of::<Control>() as _;
        msg.msg_flags = 0;
        // SAFETY: see the module's safety paragraph: `iov` covers `buf`,
        // the control pointer covers `control`, both live across the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_recvmsg,
                fd.as_raw_fd(),
                &mut msg as *mut libc::msghdr,
                flags,
            )
        };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let fds_lost = msg.msg_flags & libc::MSG_CTRUNC != 0;
    if msg.msg_controllen > 0 {
        let first_new = fds_out.len();
        adopt(&msg, fds_out);
        if fds_lost {
            // Dropping them closes the descriptors that did arrive.
            fds_out.truncate(first_new);
        }
    }
    Ok(Received {
        len: bytes.min(buf.len()),
        full_len: bytes,
        fds_lost,
    })
}

/// Takes ownership of every descriptor in the `SCM_RIGHTS` messages of
/// `msg`'s control data; other control messages hold none and are passed
/// over.
fn adopt(msg: &libc::msghdr, fds_out: &mut Vec<OwnedFd>) {
    // SAFETY: the kernel wrote `msg_controllen` bytes of control messages
    // at `msg_control`; CMSG_FIRSTHDR/NXTHDR stay within them and return
    // null past the last.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null and points at a header inside the
        // control data.
        let header = unsafe { &*cmsg };
        if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN(0) is arithmetic on a constant.
            let start = unsafe { libc::CMSG_LEN(0) } as usize;
            let count = (header.cmsg_len as usize).saturating_sub(start) / mem::size_of::<i32>();
            // SAFETY: CMSG_DATA points at the `count` descriptor numbers
            // inside this message, perhaps unaligned.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<i32>();
            for i in 0..count {
                // SAFETY: `i < count`, within the message; the number is a
                // descriptor the kernel just installed for this process,
                // owned by nobody else.
                fds_out.push(unsafe { OwnedFd::from_raw_fd(data.add(i).read_unaligned()) });
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
}

/// `SO_PASSRIGHTS` (Linux 6.16, `include/uapi/asm-generic/socket.h`; the
/// same number on every architecture that defines it), which `libc` does
/// not name yet.
const SO_PASSRIGHTS: libc::c_int = 83;

/// Makes a Unix socket refuse descriptors: the kernel then fails a peer's
/// `sendmsg(2)` with `SCM_RIGHTS` to it with `EPERM`, so none can arrive
/// and a receive needs no control buffer. `Ok(false)` on a kernel without
/// the option (before 6.16), where descriptors still arrive.
///
/// # References
/// - socket(7) (`SO_PASSRIGHTS`), unix(7); Linux commit 77cbe1a6d873
///   ("af_unix: Introduce SO_PASSRIGHTS")
pub(crate) fn refuse_rights(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let off: libc::c_int = 0;
    // SAFETY: `off` is a valid c_int for the call's duration, and its size
    // is the length passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PASSRIGHTS,
            (&raw const off).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOPROTOOPT | libc::EINVAL) => Ok(false),
        _ => Err(e),
    }
}
