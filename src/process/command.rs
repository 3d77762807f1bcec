//! Starting any program with channels already connected.

use std::ffi::OsStr;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::child::{Child, Origin, ProcState};
use crate::error::{Error, ErrorKind, Result};
use crate::handover::child_env;
use crate::socket::Kind;
use crate::sys::{self, process::ChildSetup};
use crate::transport::Conn;
use crate::{Duplex, Options};

/// A [`std::process::Command`] that also hands channels to the child.
///
/// Everything std's builder offers (arguments, environment, working
/// directory, stdio) is there through `Deref`; procwire adds:
///
/// - [`channel`](Command::channel): a two-way channel whose other end the
///   child finds through `PROCWIRE_FD` (see `docs/wire-format.md`);
/// - [`inherit`](Command::inherit): any other descriptor, kept at its number;
/// - **exactly these descriptors are inherited.** The child has 0, 1, 2 and
///   what was handed to it, nothing else, even if other code in this process
///   opened descriptors without close-on-exec: between fork and exec every
///   other descriptor is marked close-on-exec (`close_range`);
/// - the child dies with its parent (`PR_SET_PDEATHSIG`, `SIGKILL`) unless
///   [`die_with_parent(false)`](Command::die_with_parent). Linux ties this to
///   the *thread* that spawned the child: if that thread exits while the
///   process lives on, the child is killed too. Spawn long-lived children
///   from a long-lived thread;
/// - the returned [`Child`] kills and reaps the process when dropped, unless
///   told otherwise, and the channel watches it: a dead child is an error
///   on the channel, never a hang.
///
/// # Examples
///
/// ```
/// let mut cmd = procwire::Command::new("python3");
/// cmd.arg("-c").arg("import os; print(os.environ['PROCWIRE_VERSION'])");
/// let channel = cmd.channel::<String, String>()?;
/// let mut child = cmd.spawn()?;
/// assert!(child.wait()?.success());
/// # drop(channel);
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct Command {
    inner: std::process::Command,
    /// The child's ends, open here until the spawn.
    handed: Vec<OwnedFd>,
    /// The parent's ends of channels, to supervise the child once it runs.
    watchers: Vec<Arc<Conn>>,
    has_channel: bool,
    kill_on_drop: bool,
    die_with_parent: bool,
}

impl Command {
    /// A command for `program`, like [`std::process::Command::new`].
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command::from(std::process::Command::new(program))
    }

    /// A two-way channel to the child, with the default options.
    pub fn channel<Out, In>(&mut self) -> Result<Duplex<Out, In>>
    where
        Out: Serialize,
        In: DeserializeOwned,
    {
        self.channel_with(&Options::new())
    }

    /// A two-way channel to the child with `options` (its codec is announced
    /// to the child in `PROCWIRE_CODEC`). One per command: `PROCWIRE_FD`
    /// names one descriptor; send more channels over it.
    pub fn channel_with<Out, In>(&mut self, options: &Options) -> Result<Duplex<Out, In>>
    where
        Out: Serialize,
        In: DeserializeOwned,
    {
        if self.has_channel {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "this command already has its PROCWIRE_FD channel; pass further channels \
                 over it (send_with_fds) or with `inherit`",
            ));
        }
        let (ours, theirs) = crate::socket_pair(Kind::Stream)
            .map_err(|e| Error::io("creating the child's socket pair", e))?;
        let channel = options.duplex_from::<Out, In>(ours)?;
        for (k, v) in child_env(theirs.as_fd().as_raw_fd(), options.codec_kind()) {
            self.inner.env(k, v);
        }
        self.handed.push(theirs.into());
        self.watchers.push(Arc::clone(channel.conn()));
        self.has_channel = true;
        Ok(channel)
    }

    /// Hands `fd` to the child at the same number, which this returns (tell
    /// the child, e.g. in an argument). It is closed here once the child has
    /// started.
    pub fn inherit(&mut self, fd: impl Into<OwnedFd>) -> RawFd {
        let fd = fd.into();
        let raw = fd.as_raw_fd();
        self.handed.push(fd);
        raw
    }

    /// Whether dropping the [`Child`] kills the process (default `true`).
    pub fn kill_on_drop(&mut self, kill: bool) -> &mut Command {
        self.kill_on_drop = kill;
        self
    }

    /// Whether the child is killed when the spawning thread exits (default
    /// `true`).
    pub fn die_with_parent(&mut self, die: bool) -> &mut Command {
        self.die_with_parent = die;
        self
    }

    /// Starts the child. The handed descriptors are closed in this process
    /// afterwards, so end-of-file arrives when the child exits.
    pub fn spawn(&mut self) -> Result<Child> {
        let mut keep: Vec<RawFd> = self.handed.iter().map(AsRawFd::as_raw_fd).collect();
        keep.sort_unstable();
        keep.dedup();
        sys::process::on_exec(
            &mut self.inner,
            ChildSetup {
                keep,
                death_signal: self.die_with_parent.then_some(libc::SIGKILL),
                parent: sys::process::getpid(),
            },
        );
        let spawned = self.inner.spawn();
        // The child has its copies (or failed to start): ours go either way.
        self.handed.clear();
        let std_child = spawned
            .map_err(|e| Error::io(&format!("starting {:?}", self.inner.get_program()), e))?;
        let pid = std_child.id();
        let stdio = (std_child.stdin, std_child.stdout, std_child.stderr);
        let state = ProcState::new(pid, Origin::Direct)
            .map(Arc::new)
            .map_err(|e| Error::io(&format!("opening a pidfd for child {pid}"), e))?;
        for conn in self.watchers.drain(..) {
            conn.supervise(Arc::clone(&state));
        }
        let mut child = Child::new(state, self.kill_on_drop);
        (child.stdin, child.stdout, child.stderr) = stdio;
        Ok(child)
    }
}

impl From<std::process::Command> for Command {
    fn from(inner: std::process::Command) -> Command {
        Command {
            inner,
            handed: Vec::new(),
            watchers: Vec::new(),
            has_channel: false,
            kill_on_drop: true,
            die_with_parent: true,
        }
    }
}

impl Deref for Command {
    type Target = std::process::Command;

    fn deref(&self) -> &std::process::Command {
        &self.inner
    }
}

impl DerefMut for Command {
    fn deref_mut(&mut self) -> &mut std::process::Command {
        &mut self.inner
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("inner", &self.inner)
            .field("handed", &self.handed)
            .field("kill_on_drop", &self.kill_on_drop)
            .field("die_with_parent", &self.die_with_parent)
            .finish()
    }
}
