//! A storm of signals at one thread, for tests of the retry paths: a no-op
//! `SIGALRM` handler installed **without** `SA_RESTART` (so every blocking
//! system call it lands in fails with `EINTR`) and a POSIX timer that sends
//! the signal to the calling thread only.
//!
//! # Safety
//!
//! `sigaction`, `timer_create`, `timer_settime` and `timer_delete` come from
//! `libc` (rustix has no wrapper). The `sigaction` and `sigevent` values are
//! zero-initialised, filled field by field, and live on the stack for the
//! whole call; the handler only increments an atomic counter, which is
//! async-signal-safe. The timer is deleted and the old disposition restored
//! when the storm is dropped.

#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static DELIVERED: AtomicU64 = AtomicU64::new(0);

extern "C" fn count(_: libc::c_int) {
    DELIVERED.fetch_add(1, Ordering::Relaxed);
}

/// A running storm; dropping it ends it.
#[derive(Debug)]
pub(crate) struct Storm {
    timer: libc::timer_t,
    old: libc::sigaction,
}

// SAFETY: the timer id is a plain handle the kernel keeps per process; it
// may be deleted from any thread.
unsafe impl Send for Storm {}

/// Signals delivered by any storm so far.
pub(crate) fn delivered() -> u64 {
    DELIVERED.load(Ordering::Relaxed)
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    }
}

/// Starts sending `SIGALRM` to the calling thread every `every`.
///
/// # References
/// - sigaction(2) (no `SA_RESTART`), timer_create(2) (`SIGEV_THREAD_ID`),
///   timer_settime(2), signal(7) ("Interruption of system calls")
pub(crate) fn start(every: Duration) -> io::Result<Storm> {
    let mut act = MaybeUninit::<libc::sigaction>::zeroed();
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: both are zeroed (a valid empty sigaction), `act` gets its
    // handler and an empty mask before use; `old` is written by the kernel.
    unsafe {
        let a = act.as_mut_ptr();
        (*a).sa_sigaction = count as extern "C" fn(libc::c_int) as usize;
        (*a).sa_flags = 0;
        libc::sigemptyset(&mut (*a).sa_mask);
        check(libc::sigaction(libc::SIGALRM, a, old.as_mut_ptr()))?;
    }
    // SAFETY: sigaction succeeded and filled `old`.
    let old = unsafe { old.assume_init() };
    let mut sev = MaybeUninit::<libc::sigevent>::zeroed();
    let tid = rustix::thread::gettid().as_raw_nonzero().get();
    // SAFETY: `sev` is zeroed (all-zero is a valid sigevent) and three of its
    // fields set; `timer` is written by the kernel on success.
    let timer = unsafe {
        let s = sev.as_mut_ptr();
        (*s).sigev_notify = libc::SIGEV_THREAD_ID;
        (*s).sigev_signo = libc::SIGALRM;
        (*s).sigev_notify_thread_id = tid;
        let mut timer = MaybeUninit::<libc::timer_t>::zeroed();
        if let Err(e) = check(libc::timer_create(
            libc::CLOCK_MONOTONIC,
            s,
            timer.as_mut_ptr(),
        )) {
            libc::sigaction(libc::SIGALRM, &old, std::ptr::null_mut());
            return Err(e);
        }
        timer.assume_init()
    };
    let storm = Storm { timer, old };
    let spec = libc::itimerspec {
        it_interval: timespec(every),
        it_value: timespec(every),
    };
    // SAFETY: `timer` was created above; `spec` is initialised.
    check(unsafe { libc::timer_settime(storm.timer, 0, &spec, std::ptr::null_mut()) })?;
    Ok(storm)
}

impl Drop for Storm {
    fn drop(&mut self) {
        // SAFETY: the timer exists until here; `old` is the disposition saved
        // when the storm started.
        unsafe {
            libc::timer_delete(self.timer);
            libc::sigaction(libc::SIGALRM, &self.old, std::ptr::null_mut());
        }
    }
}
