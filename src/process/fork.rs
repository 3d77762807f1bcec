//! The lesson's `fork do … end`: a closure in a child process.
//!
//! # Safety
//!
//! Besides `sys`, this is the one module with `unsafe`: the public
//! [`fork_unchecked`] must be an `unsafe fn` (its caller promises what the
//! compiler cannot check), and [`fork`] calls it after checking, by counting
//! this process's threads, that the promise holds.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use super::child::{Child, Origin, ProcState};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, process::ChildSetup, process::Forked};
use crate::{Duplex, PipeReader, PipeWriter, Receiver, Sender, Socket};

/// Things that can be handed to a child process: their descriptors stay
/// open in the child, every other descriptor is closed there.
///
/// Implemented for channel ends, pipe ends, sockets, `OwnedFd`, and
/// tuples, `Vec`s and `Option`s of them.
///
/// # Examples
///
/// ```
/// use procwire::{Duplex, fork};
///
/// // A tuple of ends: each stays open in the child, everything else closes.
/// let (parent, child_end) = procwire::duplex::<String, String>()?;
/// let (log_tx, log_rx) = procwire::channel::<String>()?;
/// let mut child = fork((child_end, log_tx), |(ch, log): (Duplex<String, String>, _)| {
///     let job = ch.recv().unwrap();
///     log.send(format!("got {job}")).unwrap();
///     ch.send(format!("{job} accomplished!")).unwrap();
/// })?;
/// assert_eq!(parent.request("Heavy lifting".into())?, "Heavy lifting accomplished!");
/// assert_eq!(log_rx.recv()?, "got Heavy lifting");
/// child.wait()?;
/// # Ok::<(), procwire::Error>(())
/// ```
pub trait Inherit {
    /// Appends the descriptors this value needs in the child.
    fn descriptors(&self, out: &mut Vec<RawFd>);

    /// Called in the parent once the child has its copies, before this
    /// value is dropped there. Channel ends use it so that dropping the
    /// parent's copy does not shut the socket down under the child.
    fn handed_over(&self) {}
}

macro_rules! inherit_fd {
    ($($t:ty),*) => {$(
        impl Inherit for $t {
            fn descriptors(&self, out: &mut Vec<RawFd>) {
                out.push(self.as_fd().as_raw_fd());
            }
        }
    )*};
}

inherit_fd!(OwnedFd, PipeReader, PipeWriter, Socket);

impl<T> Inherit for Sender<T> {
    fn descriptors(&self, out: &mut Vec<RawFd>) {
        self.core().conn().descriptors(out);
    }

    fn handed_over(&self) {
        self.core().conn().mark_shared();
    }
}

impl<T> Inherit for Receiver<T> {
    fn descriptors(&self, out: &mut Vec<RawFd>) {
        self.core().conn().descriptors(out);
    }

    fn handed_over(&self) {
        self.core().conn().mark_shared();
    }
}

impl<A, B> Inherit for Duplex<A, B> {
    fn descriptors(&self, out: &mut Vec<RawFd>) {
        self.conn().descriptors(out);
    }

    fn handed_over(&self) {
        self.conn().mark_shared();
    }
}

impl Inherit for () {
    fn descriptors(&self, _: &mut Vec<RawFd>) {}
}

impl<T: Inherit> Inherit for Vec<T> {
    fn descriptors(&self, out: &mut Vec<RawFd>) {
        self.iter().for_each(|t| t.descriptors(out));
    }

    fn handed_over(&self) {
        self.iter().for_each(Inherit::handed_over);
    }
}

impl<T: Inherit> Inherit for Option<T> {
    fn descriptors(&self, out: &mut Vec<RawFd>) {
        if let Some(t) = self {
            t.descriptors(out);
        }
    }

    fn handed_over(&self) {
        if let Some(t) = self {
            t.handed_over();
        }
    }
}

macro_rules! inherit_tuple {
    ($($name:ident),+) => {
        impl<$($name: Inherit),+> Inherit for ($($name,)+) {
            #[allow(non_snake_case)]
            fn descriptors(&self, out: &mut Vec<RawFd>) {
                let ($($name,)+) = self;
                $($name.descriptors(out);)+
            }

            #[allow(non_snake_case)]
            fn handed_over(&self) {
                let ($($name,)+) = self;
                $($name.handed_over();)+
            }
        }
    };
}

inherit_tuple!(A);
inherit_tuple!(A, B);
inherit_tuple!(A, B, C);
inherit_tuple!(A, B, C, D);

/// Runs `body` in a new child process that gets `ends`; returns the
/// [`Child`] here.
///
/// The lesson's `fork do … end`, without its hazards: in the child every
/// descriptor but 0, 1, 2 and those of `ends` is closed, and in the parent
/// `ends` is dropped, so unused ends are closed on both sides and end-of-file
/// always arrives. The child dies with the parent thread
/// (`PR_SET_PDEATHSIG`); it exits with status 0 when `body` returns and 101
/// if it panics. The `Child` kills and reaps it if dropped unwaited.
///
/// Only a single-threaded process can fork safely (the child would inherit
/// locks held by threads that do not exist in it): with more than one
/// thread this returns an [`ErrorKind::Unsupported`] error. Multi-threaded
/// programs use [`Command`](crate::Command), or [`task`](crate::task),
/// which forks from the fork server that [`init`](crate::init) (or
/// `init_before_main!`) starts while the program is still single-threaded;
/// [`fork_unchecked`] is for callers who know the rule.
///
/// # Examples
///
/// ```no_run
/// // In a single-threaded program:
/// let (parent, child_end) = procwire::duplex::<String, String>()?;
/// let mut child = procwire::fork(child_end, |ch| {
///     for job in ch.iter() {
///         ch.send(format!("{} accomplished!", job.unwrap())).unwrap();
///     }
/// })?;
/// parent.supervise(&child);
/// assert_eq!(parent.request("Heavy lifting".into())?, "Heavy lifting accomplished!");
/// drop(parent);
/// assert!(child.wait()?.success());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn fork<E: Inherit>(ends: E, body: impl FnOnce(E)) -> Result<Child> {
    let threads = sys::process::thread_count()
        .map_err(|e| Error::io("counting this process's threads", e))?;
    if threads > 1 {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "fork refused: this process has {threads} threads, and a forked child may \
                 only run async-signal-safe code then; use procwire::Command instead"
            ),
        ));
    }
    // SAFETY: the process has a single thread, so the child is a full copy.
    #[allow(unsafe_code)]
    unsafe {
        fork_unchecked(ends, body)
    }
}

/// [`fork`] without the single-thread check.
///
/// # Safety
///
/// If this process has more than one thread, `body` (and everything it
/// calls, including allocation and stdio) must be async-signal-safe: another
/// thread may have held a lock, such as the allocator's, at the moment of
/// the fork, and it stays locked forever in the child. See signal-safety(7).
#[allow(unsafe_code)]
pub unsafe fn fork_unchecked<E: Inherit>(ends: E, body: impl FnOnce(E)) -> Result<Child> {
    let mut keep = Vec::new();
    ends.descriptors(&mut keep);
    keep.sort_unstable();
    keep.dedup();
    let setup = ChildSetup {
        keep,
        death_signal: Some(rustix::process::Signal::KILL),
        parent: sys::process::getpid(),
    };
    // SAFETY: the caller upholds fork's rule (see above).
    match unsafe { sys::process::fork() }.map_err(|e| Error::io("forking", e))? {
        Forked::Child => {
            let code = match sys::process::child_setup(&setup, true) {
                Ok(()) => {
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(ends))) {
                        Ok(()) => 0,
                        Err(_) => 101,
                    }
                }
                Err(_) => 127,
            };
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            sys::process::exit_now(code)
        }
        Forked::Parent(pid) => {
            ends.handed_over();
            drop(ends);
            let state = ProcState::new(pid, Origin::Direct)
                .map(Arc::new)
                .map_err(|e| {
                    sys::process::kill_and_reap(pid);
                    Error::io(
                        &format!("opening a pidfd for child {pid} (it was killed)"),
                        e,
                    )
                })?;
            Ok(Child::new(state, true))
        }
    }
}
