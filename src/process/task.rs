//! One entry-point API for three ways to start a child: fork, the fork
//! server, and re-executing this program. How the child finds the function
//! (and why that is sound) is `entry.rs`.
//!
//! # Safety
//!
//! The one `unsafe` here removes `PROCWIRE_ENTRY` from the environment
//! while the process has one thread (see `reexec_entry`).

#![allow(unsafe_code)]

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::child::Child;
use super::entry::{Trampoline, fingerprint, from_offset, offset, run_trampoline, trampoline};
use super::server;
use crate::codec::CodecKind;
use crate::error::{Error, ErrorKind, Result};
use crate::{Duplex, Kind, Options};

/// The variable that makes a re-executed program run a task instead of
/// `main` (see [`init`]).
pub const ENV_ENTRY: &str = "PROCWIRE_ENTRY";

static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// How a [`Task`] starts its child.
///
/// # Examples
///
/// ```no_run
/// use procwire::{Duplex, How, task};
///
/// fn double(n: u32, ch: Duplex<u32, ()>) {
///     ch.send(n * 2).unwrap();
/// }
/// # fn main() -> procwire::Result<()> {
/// procwire::init()?;
/// // Through the fork server, whatever threads this process has.
/// let (mut child, ch) = task(double, 21).via(How::Server).spawn()?;
/// assert_eq!(ch.recv()?, 42);
/// child.wait()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum How {
    /// The fork server if [`init`] started one, else re-exec.
    #[default]
    Auto,
    /// [`fork`](crate::fork) this process: fastest, single-threaded
    /// processes only.
    Fork,
    /// Ask the fork server started by [`init`]: fork's speed from any
    /// process, however many threads it has.
    Server,
    /// Start this program again (`current_exe()`), which must call
    /// [`init`] first in `main`.
    Reexec,
}

/// A function to run in a child process, with its argument: see [`task`].
///
/// # Examples
///
/// ```no_run
/// use procwire::{Duplex, task};
///
/// fn greet(name: String, ch: Duplex<String, ()>) {
///     ch.send(format!("hello, {name}")).unwrap();
/// }
/// # fn main() -> procwire::Result<()> {
/// procwire::init()?;
/// let (mut child, ch) = task(greet, "lesson".to_string()).spawn()?;
/// assert_eq!(ch.recv()?, "hello, lesson");
/// assert!(child.wait()?.success());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Task<A, Out, In> {
    f: fn(A, Duplex<Out, In>),
    arg: A,
    how: How,
    options: Options,
}

/// Prepares `f(arg, channel)` to run in a child process; [`Task::spawn`]
/// starts it and returns the [`Child`] and the other end of `channel`.
///
/// `f` must be a plain function (not a closure: its address is what
/// travels), `arg` is serialized with postcard and sent as the channel's
/// first message. The child exits with status 0 when `f` returns, 101 if it
/// panics. Whichever way it was started ([`How`]), the child dies with its
/// parent, is reaped, and the returned channel supervises it.
///
/// # Examples
///
/// ```no_run
/// use procwire::{Duplex, How};
///
/// fn worker(greeting: String, ch: Duplex<String, String>) {
///     for job in ch.iter() {
///         ch.send(format!("{greeting}: {} accomplished!", job.unwrap())).unwrap();
///     }
/// }
///
/// fn main() -> Result<(), procwire::Error> {
///     procwire::init()?; // first thing: starts the fork server
///     let (mut child, ch) = procwire::task(worker, "ok".to_string()).spawn()?;
///     assert_eq!(ch.request("Heavy lifting".into())?, "ok: Heavy lifting accomplished!");
///     drop(ch);
///     assert!(child.wait()?.success());
///     Ok(())
/// }
/// ```
pub fn task<A, Out, In>(f: fn(A, Duplex<Out, In>), arg: A) -> Task<A, Out, In> {
    Task {
        f,
        arg,
        how: How::Auto,
        options: Options::new(),
    }
}

impl<A, Out, In> Task<A, Out, In>
where
    A: Serialize + DeserializeOwned,
    Out: Serialize + DeserializeOwned,
    In: Serialize + DeserializeOwned,
{
    /// Chooses how to start the child.
    pub fn via(mut self, how: How) -> Self {
        self.how = how;
        self
    }

    /// The channel's options (codec, maximum frame size).
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Starts the child.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use procwire::{Duplex, task};
    ///
    /// fn worker(_: (), ch: Duplex<String, String>) {
    ///     for job in ch.iter() {
    ///         ch.send(format!("{} accomplished!", job.unwrap())).unwrap();
    ///     }
    /// }
    /// # fn main() -> procwire::Result<()> {
    /// procwire::init()?;
    /// let (mut child, ch) = task(worker, ()).spawn()?;
    /// assert_eq!(ch.request("Heavy lifting".into())?, "Heavy lifting accomplished!");
    /// drop(ch); // its loop ends: it exits
    /// assert!(child.wait()?.success());
    /// # Ok(())
    /// # }
    /// ```
    pub fn spawn(self) -> Result<(Child, Duplex<In, Out>)> {
        let how = match self.how {
            How::Auto if server::running() => How::Server,
            How::Auto => How::Reexec,
            other => other,
        };
        let mut arg = Vec::new();
        CodecKind::Postcard.encode(&self.arg, &mut arg)?;
        let tramp: Trampoline = trampoline::<A, Out, In>;
        let f = self.f as usize;
        let max = self.options.max_frame_len();
        let codec = self.options.codec_kind();
        let pair = || {
            let (ours, theirs) = crate::socket_pair(Kind::Stream)
                .map_err(|e| Error::io("creating the task's socket pair", e))?;
            Ok::<_, Error>((
                self.options.duplex_from::<In, Out>(ours)?,
                OwnedFd::from(theirs),
            ))
        };
        let (child, parent) = match how {
            How::Fork => {
                let (parent, theirs) = pair()?;
                let child = crate::fork(theirs, move |fd| {
                    crate::sys::process::exit_now(tramp(f, fd, codec, max));
                })?;
                (child, parent)
            }
            How::Server => {
                let (parent, theirs) = pair()?;
                let state = server::spawn(tramp as usize, f, codec, max, theirs)?;
                (Child::new(state, true), parent)
            }
            How::Reexec => {
                if !INITIALIZED.load(Ordering::SeqCst) {
                    return Err(not_initialized());
                }
                let exe = std::env::current_exe()
                    .map_err(|e| Error::io("finding this program to re-execute", e))?;
                let mut cmd = crate::Command::new(exe);
                cmd.env(
                    ENV_ENTRY,
                    format!(
                        "{} {} {} {max}",
                        offset(tramp as usize),
                        offset(f),
                        fingerprint()
                    ),
                );
                let parent = cmd.channel_with::<In, Out>(&self.options)?;
                (cmd.spawn()?, parent)
            }
            How::Auto => unreachable!("resolved above"),
        };
        parent.supervise(&child);
        // Every child reads its argument as the channel's first message, a
        // forked one too: one path for all three.
        parent.sender().send_bytes(&arg)?;
        Ok((child, parent))
    }
}

fn not_initialized() -> Error {
    Error::new(
        ErrorKind::Unsupported,
        "procwire::init() was not called: call it first in main (before any thread \
         exists), or use procwire::init_before_main!() in a test binary",
    )
}

/// Prepares this process for tasks; call it first in `main`, before any
/// thread exists.
///
/// - In a program started by [`How::Reexec`] (the variable `PROCWIRE_ENTRY`
///   is set), it runs the task and exits: `main` goes no further.
/// - Otherwise it starts the fork server: a small single-threaded process,
///   forked now while this process has one thread, that forks the children
///   of [`How::Server`] tasks for it, reaps them and reports their exit
///   status. The server exits when this process exits.
///
/// In a test binary, whose `main` is the test harness's, use
/// [`init_before_main!`](crate::init_before_main) instead.
pub fn init() -> Result<()> {
    if let Ok(spec) = std::env::var(ENV_ENTRY) {
        run_reexec_entry(&spec);
    }
    if INITIALIZED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    server::start()
}

/// Runs the task named by `PROCWIRE_ENTRY` and exits.
fn run_reexec_entry(spec: &str) -> ! {
    let code = match reexec_entry(spec) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("procwire: cannot run the task in this re-executed process: {e}");
            127
        }
    };
    use std::io::Write;
    let _ = std::io::stdout().flush();
    crate::sys::process::exit_now(code)
}

fn reexec_entry(spec: &str) -> Result<i32> {
    let bad = || {
        Error::new(
            ErrorKind::InvalidInput,
            format!("{ENV_ENTRY}={spec:?} is malformed"),
        )
    };
    let parts: Vec<i64> = spec
        .split_whitespace()
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    let [tramp, f, print, max] = parts[..] else {
        return Err(bad());
    };
    if print as isize != fingerprint() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{ENV_ENTRY} was made by another build of this program"),
        ));
    }
    // SAFETY: the variable is ours (see the module docs): it was made by
    // this same binary, as the fingerprint shows.
    // Removing it keeps programs this task starts from seeing it.
    unsafe { std::env::remove_var(ENV_ENTRY) };
    let (fd, codec) = crate::handover::take_env()?;
    let max = usize::try_from(max).map_err(|_| bad())?;
    Ok(run_trampoline(
        from_offset(tramp as isize),
        from_offset(f as isize),
        fd,
        codec,
        max,
    ))
}

/// Calls [`init`] before `main` runs, from the program's `.init_array`: for
/// test binaries (whose `main` belongs to the test harness, which starts
/// threads), and for programs that cannot edit `main`. Use it once, at the
/// top level of the binary's crate (in each integration-test file that
/// starts tasks).
///
/// ```no_run
/// procwire::init_before_main!();
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! init_before_main {
    () => {
        #[used]
        #[allow(unsafe_code)]
        #[unsafe(link_section = ".init_array")]
        static __PROCWIRE_INIT: extern "C" fn() = {
            extern "C" fn __procwire_init() {
                if let Err(e) = $crate::init() {
                    eprintln!("procwire::init: {e}");
                }
            }
            __procwire_init
        };
    };
}
