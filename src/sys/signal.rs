//! The SIGPIPE guard for pipe writes.
//!
//! # Safety
//!
//! This module calls `sigaction`, `pthread_sigmask`, `sigpending` and
//! `sigtimedwait` through `libc`, because rustix offers no stable wrapper for
//! them. Every call gets pointers to initialised, properly aligned `sigset_t`
//! and `sigaction` values that live on the caller's stack for the whole call;
//! none of them retains a pointer past its return. The signal mask is changed
//! only for the calling thread and restored before the guard returns.

#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

/// `SIGPIPE`'s disposition was "ignore" when procwire last looked: when it
/// made a pipe's write end. Until it has looked, every write is guarded.
static IGNORED: AtomicBool = AtomicBool::new(false);

/// Reads `SIGPIPE`'s disposition for the pipe writes that follow: called
/// whenever procwire makes or adopts a pipe's write end, so that a write
/// costs no `sigaction` query of its own.
pub(crate) fn note_sigpipe_disposition() {
    IGNORED.store(sigpipe_ignored(), Ordering::Relaxed);
}

/// Whether `SIGPIPE`'s disposition is "ignore" (as the Rust runtime sets it
/// before `main`, unless told otherwise).
fn sigpipe_ignored() -> bool {
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null `act` only queries; `old` is valid for writes.
    let rc = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), old.as_mut_ptr()) };
    // SAFETY: `old` was zero-initialised and, on success, filled by the kernel.
    rc == 0 && unsafe { old.assume_init() }.sa_sigaction == libc::SIG_IGN
}

fn sigpipe_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: `set` is valid for writes; sigemptyset initialises it.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
        set.assume_init()
    }
}

/// Runs `write` (a write to a pipe) so that a closed reader comes back as
/// `EPIPE` instead of killing the process with `SIGPIPE`, whatever the
/// process's disposition for `SIGPIPE` is.
///
/// While `SIGPIPE` is ignored (as read when the last pipe write end was
/// made: [`note_sigpipe_disposition`]), the write is all; otherwise the
/// signal is blocked in this thread for the duration
/// of the write; a `SIGPIPE` the write raised is then taken off the thread's
/// pending set (`sigtimedwait` with a zero timeout) before the old mask is
/// restored, and one that was already pending is left alone. This is the
/// technique signal(7) and pipe(7) leave to applications that may not change
/// a process-wide disposition.
///
/// # References
/// - sigaction(2), pthread_sigmask(3), sigpending(2), sigtimedwait(2), pipe(7)
#[inline]
pub(crate) fn without_sigpipe<T>(write: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    if IGNORED.load(Ordering::Relaxed) {
        return write();
    }
    with_sigpipe_blocked(write)
}

/// [`without_sigpipe`] while SIGPIPE is not ignored.
#[inline(never)]
fn with_sigpipe_blocked<T>(write: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let set = sigpipe_set();
    let mut old = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: `set` is initialised, `old` is valid for writes.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, old.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: pthread_sigmask succeeded, so it filled `old`.
    let old = unsafe { old.assume_init() };
    let mut pending = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: `pending` is valid for writes; sigismember reads initialised sets.
    let was_pending = unsafe {
        libc::sigpending(pending.as_mut_ptr()) == 0
            && libc::sigismember(pending.as_ptr(), libc::SIGPIPE) == 1
    };
    let result = write();
    if matches!(&result, Err(e) if e.kind() == io::ErrorKind::BrokenPipe) && !was_pending {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `set` and `zero` are initialised; a null info pointer is allowed.
        unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) };
    }
    // SAFETY: `old` is the mask saved above; a null old-set pointer is allowed.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    result
}
