//! Processes: fork, pidfds, waiting, signals, and what a child does between
//! fork and exec.
//!
//! # Safety
//!
//! This module calls `fork`, `_exit`, `prctl`, `close_range`, `fcntl`,
//! `getppid` and `raise` through `libc` where rustix has no wrapper usable
//! between fork and exec. Code that runs in a forked child of a possibly
//! multi-threaded parent ([`exec_prepare`]) makes only async-signal-safe
//! system calls, allocates nothing and takes no lock: it works on a slice
//! prepared before the fork. [`fork`] itself is `unsafe`: its caller
//! guarantees that the child runs only code that is safe after `fork` (in
//! procwire's safe API, by checking that the process has a single thread).

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

fn io(e: rustix::io::Errno) -> io::Error {
    e.into()
}

/// How many threads this process has (entries of `/proc/self/task`).
///
/// # References
/// - proc(5) (`/proc/pid/task`)
pub(crate) fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// What [`fork`] returned in one of the two processes.
pub(crate) enum Forked {
    Parent(u32),
    Child,
}

/// Forks the process.
///
/// # Safety
///
/// In the child only async-signal-safe operations are allowed until it
/// exits, unless the parent had a single thread (then the child is an
/// ordinary copy of it).
///
/// # References
/// - fork(2), signal-safety(7)
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: the caller upholds the rule above.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as u32)),
    }
}

/// Ends the calling process at once: no destructors, no atexit handlers, no
/// stdio flush (the caller flushes what it needs).
///
/// # References
/// - _exit(2)
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// A pidfd for `pid`: a descriptor that becomes readable when the process
/// exits, and that signals the right process even after its pid is reused.
///
/// # References
/// - pidfd_open(2)
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = Pid::from_raw(pid as i32)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid 0"))?;
    rustix::process::pidfd_open(pid, PidfdFlags::empty()).map_err(io)
}

/// Kills and reaps a child of this process that has no pidfd (opening one
/// failed): nothing else could stop or reap it.
///
/// # References
/// - kill(2), waitpid(2)
pub(crate) fn kill_and_reap(pid: u32) {
    let Some(pid) = Pid::from_raw(pid as i32) else {
        return;
    };
    // An unreaped child's pid cannot have been reused.
    let _ = rustix::process::kill_process(pid, Signal::KILL);
    while let Err(rustix::io::Errno::INTR) =
        rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
    {}
}

/// Sends a signal through a pidfd.
///
/// # References
/// - pidfd_send_signal(2)
pub(crate) fn pidfd_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    let sig = Signal::from_named_raw(signal).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown signal {signal}"),
        )
    })?;
    match rustix::process::pidfd_send_signal(pidfd, sig) {
        // The process is gone already (a zombie, or reaped).
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(io(e)),
    }
}

/// The exit status of a child that has exited, without reaping it (`reap`
/// false) or reaping it; `None` while it runs. Only for children of this
/// process.
///
/// # References
/// - waitid(2) with `P_PIDFD`, `WEXITED | WNOHANG` (and `WNOWAIT`)
pub(crate) fn child_status(pidfd: BorrowedFd<'_>, reap: bool) -> io::Result<Option<ExitStatus>> {
    let mut options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
    if !reap {
        options |= WaitIdOptions::NOWAIT;
    }
    loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd), options) {
            Ok(None) => return Ok(None),
            Ok(Some(st)) => {
                if let Some(code) = st.exit_status() {
                    return Ok(Some(ExitStatus::from_raw((code & 0xff) << 8)));
                }
                if let Some(sig) = st.terminating_signal() {
                    let core = if st.dumped() { 0x80 } else { 0 };
                    return Ok(Some(ExitStatus::from_raw(sig | core)));
                }
                // A stop or continue notice (not asked for): not an exit.
                return Ok(None);
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(io(e)),
        }
    }
}

/// The setup of a child between fork and exec (or before it runs a forked
/// closure).
#[derive(Clone, Debug)]
pub(crate) struct ChildSetup {
    /// Descriptors to keep, sorted, without duplicates; all others above 2
    /// are closed (or marked close-on-exec).
    pub keep: Vec<RawFd>,
    /// Kill the child with this signal when its parent thread exits.
    pub death_signal: Option<rustix::process::Signal>,
    /// The parent's pid, to catch a parent that died before `prctl`.
    pub parent: i32,
}

/// Applies a [`ChildSetup`] in the child. With `close` the other descriptors
/// are closed now (a forked closure: no exec will close them); otherwise
/// they are marked close-on-exec, which also spares std's own close-on-exec
/// error pipe, so std still learns whether exec failed.
///
/// Async-signal-safe: system calls only, no allocation, no locks.
///
/// # References
/// - close_range(2) with `CLOSE_RANGE_CLOEXEC` (through `libc`: rustix has
///   no wrapper), fcntl(2), prctl(2) (`PR_SET_PDEATHSIG`), getppid(2),
///   kill(2)
pub(crate) fn child_setup(setup: &ChildSetup, close: bool) -> io::Result<()> {
    let flags = if close { 0 } else { libc::CLOSE_RANGE_CLOEXEC };
    let mut next: RawFd = 3;
    for &fd in &setup.keep {
        if fd > next {
            close_range(next, fd - 1, flags)?;
        }
        // dup2(fd, fd) would leave FD_CLOEXEC set: clear it explicitly
        // (rustix makes the system call directly: async-signal-safe).
        // SAFETY: `fd` is one of the descriptors handed to this child, open
        // for as long as this borrow lasts (nothing here closes it).
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        rustix::io::fcntl_setfd(borrowed, rustix::io::FdFlags::empty()).map_err(io)?;
        next = next.max(fd + 1);
    }
    close_range(next, RawFd::MAX, flags)?;
    if let Some(sig) = setup.death_signal {
        rustix::process::set_parent_process_death_signal(Some(sig)).map_err(io)?;
        // The parent may have died before prctl took effect.
        if rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get()) != setup.parent {
            let _ = rustix::process::kill_process(rustix::process::getpid(), sig);
        }
    }
    Ok(())
}

fn close_range(first: RawFd, last: RawFd, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: close_range takes integers only; the descriptors it closes are
    // owned by nobody in this child (see `child_setup`'s callers).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            last as libc::c_uint,
            flags,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Arranges for `cmd`'s child to run [`child_setup`] between fork and exec.
pub(crate) fn on_exec(cmd: &mut std::process::Command, setup: ChildSetup) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec in the child of a
    // possibly multi-threaded parent: `child_setup` is async-signal-safe and
    // reads `setup`, which was allocated before the fork and is not freed.
    unsafe {
        cmd.pre_exec(move || child_setup(&setup, false));
    }
}

/// The pid of the calling process.
pub(crate) fn getpid() -> i32 {
    rustix::process::getpid().as_raw_nonzero().get()
}
