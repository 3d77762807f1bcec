//! A child process owned by its handle: waited for, killed, never a zombie.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, Interest};

/// Who reaps the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A child of this process: procwire waits for it here.
    Direct,
    /// A child of the fork server, which reaps it and forwards its status.
    Server,
}

/// A process's exit status once known: shared with whoever reports it (the
/// fork server's reader thread), which so never holds the pidfd.
pub(crate) type StatusCell = crate::awaited::Awaited<ExitStatus>;

/// What procwire knows of a process; shared by its [`Child`] and by the
/// channels that watch it.
pub(crate) struct ProcState {
    pid: u32,
    pidfd: OwnedFd,
    origin: Origin,
    cell: std::sync::Arc<StatusCell>,
}

impl fmt::Debug for ProcState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcState")
            .field("pid", &self.pid)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl ProcState {
    pub(crate) fn new(pid: u32, origin: Origin) -> io::Result<ProcState> {
        Ok(ProcState::with_pidfd(
            pid,
            sys::process::pidfd_open(pid)?,
            origin,
        ))
    }

    /// For a process whose pidfd was opened elsewhere (by the fork server).
    pub(crate) fn with_pidfd(pid: u32, pidfd: OwnedFd, origin: Origin) -> ProcState {
        ProcState {
            pid,
            pidfd,
            origin,
            cell: std::sync::Arc::default(),
        }
    }

    /// Where the fork server's status report goes.
    pub(crate) fn status_cell(&self) -> &std::sync::Arc<StatusCell> {
        &self.cell
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    fn cached(&self) -> Option<ExitStatus> {
        self.cell.wait_with(Some(Instant::now()), |s| *s)
    }

    /// Whether the process has exited (its pidfd is readable).
    fn has_exited(&self, deadline: Option<Instant>) -> io::Result<bool> {
        let mut ready = [false];
        sys::poll(
            &[(self.pidfd.as_fd(), Interest::Read)],
            deadline,
            &mut ready,
        )
    }

    /// The exit status once the process has exited, waiting until
    /// `deadline` at most; `None` if it still runs then.
    pub(crate) fn exit_status(&self, deadline: Option<Instant>) -> io::Result<Option<ExitStatus>> {
        if let Some(s) = self.cached() {
            return Ok(Some(s));
        }
        if !self.has_exited(deadline)? {
            return Ok(None);
        }
        match self.origin {
            Origin::Direct => {
                let status = sys::process::child_status(self.pidfd.as_fd(), false)?;
                if let Some(s) = status {
                    self.cell.set(s);
                }
                Ok(status.or_else(|| self.cached()))
            }
            Origin::Server => {
                // The server reaps it and reports the status right after.
                let limit = deadline
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(30))
                    .max(Instant::now() + Duration::from_millis(500));
                // Or it is gone, and the status with it: an error, at once.
                match self.cell.wait_with(Some(limit), |s| {
                    s.map(Some)
                        .or_else(|| super::server::gone().then_some(None))
                }) {
                    Some(Some(status)) => Ok(Some(status)),
                    Some(None) => Err(io::Error::other(format!(
                        "the fork server exited before it reported how child {} ended",
                        self.pid
                    ))),
                    None => Ok(None),
                }
            }
        }
    }

    /// Removes the process from the process table (direct children only;
    /// the server reaps its own).
    fn reap(&self) -> io::Result<()> {
        if self.origin == Origin::Direct {
            sys::process::child_status(self.pidfd.as_fd(), true)?;
        }
        Ok(())
    }

    pub(crate) fn signal(&self, signal: i32) -> io::Result<()> {
        sys::process::pidfd_signal(self.pidfd.as_fd(), signal)
    }

    /// The error for a peer process that is gone.
    pub(crate) fn exited_error(&self, status: Option<ExitStatus>) -> Error {
        let what = match status {
            Some(s) => describe(s),
            None => "exited".to_string(),
        };
        Error::new(ErrorKind::PeerExited, format!("child {} {what}", self.pid)).with_status(status)
    }
}

impl crate::transport::Watched for ProcState {
    fn pidfd(&self) -> BorrowedFd<'_> {
        ProcState::pidfd(self)
    }

    fn exit_status(&self, deadline: Option<Instant>) -> io::Result<Option<ExitStatus>> {
        ProcState::exit_status(self, deadline)
    }

    fn exited_error(&self, status: Option<ExitStatus>) -> Error {
        ProcState::exited_error(self, status)
    }

    fn fate(&self, status: ExitStatus) -> String {
        format!("child {} {}", self.pid, describe(status))
    }
}

/// "exited with status 3", "was killed by signal 9 (SIGKILL)".
pub(crate) fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    if let Some(sig) = status.signal() {
        let core = if status.core_dumped() {
            ", core dumped"
        } else {
            ""
        };
        return format!("was killed by signal {sig} ({}{core})", signal_name(sig));
    }
    format!("ended with wait status {}", status.into_raw())
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => "signal",
    }
}

/// A running (or finished) child process.
///
/// The handle owns the process: [`wait`](Child::wait) reaps it, and dropping
/// a handle whose process was not waited for kills it with `SIGKILL` and
/// reaps it (turn that off with [`kill_on_drop`](Child::kill_on_drop); the
/// process is then reaped in the background when it exits). Either way no
/// zombie is left. Signals go through a pidfd, so they can never reach
/// another process that reused the pid.
///
/// A `Child` is also a descriptor that becomes readable when the process
/// exits, for [`Select`](crate::Select).
///
/// # Examples
///
/// ```
/// let mut cmd = procwire::Command::new("sh");
/// cmd.args(["-c", "exit 3"]);
/// let mut child = cmd.spawn()?;
/// assert_eq!(child.wait()?.code(), Some(3)); // reaped: no zombie
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct Child {
    state: std::sync::Arc<ProcState>,
    kill_on_drop: bool,
    reaped: Option<ExitStatus>,
    /// Someone else waits for the process now (see `detach`).
    detached: bool,
    /// The child's stdin, if it was piped (as in std).
    pub stdin: Option<std::process::ChildStdin>,
    /// The child's stdout, if it was piped.
    pub stdout: Option<std::process::ChildStdout>,
    /// The child's stderr, if it was piped.
    pub stderr: Option<std::process::ChildStderr>,
}

impl Child {
    pub(crate) fn new(state: std::sync::Arc<ProcState>, kill_on_drop: bool) -> Child {
        Child {
            state,
            kill_on_drop,
            reaped: None,
            detached: false,
            stdin: None,
            stdout: None,
            stderr: None,
        }
    }

    pub(crate) fn state(&self) -> &std::sync::Arc<ProcState> {
        &self.state
    }

    /// Gives up the handle's duties: the caller waits for the process
    /// through the returned state (the fork server does, for its children).
    pub(crate) fn detach(mut self) -> std::sync::Arc<ProcState> {
        self.detached = true;
        std::sync::Arc::clone(&self.state)
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.state.pid
    }

    /// Waits for the process to exit and reaps it.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        match self.wait_until(None)? {
            Some(s) => Ok(s),
            None => Err(Error::new(
                ErrorKind::Io,
                format!("the exit status of child {} never arrived", self.id()),
            )),
        }
    }

    /// Waits at most `timeout`; `Ok(None)` if the process still runs.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        self.wait_until(crate::channel::gate::deadline_after(timeout))
    }

    /// The exit status if the process has exited (and reaps it), without
    /// waiting.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.wait_until(Some(Instant::now()))
    }

    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<Option<ExitStatus>> {
        if let Some(s) = self.reaped {
            return Ok(Some(s));
        }
        let ctx = || format!("waiting for child {}", self.id());
        let status = self
            .state
            .exit_status(deadline)
            .map_err(|e| Error::io(&ctx(), e))?;
        if let Some(s) = status {
            self.state.reap().map_err(|e| Error::io(&ctx(), e))?;
            self.reaped = Some(s);
        }
        Ok(status)
    }

    /// Kills the process with `SIGKILL` (it still has to be waited for; a
    /// dropped handle does that).
    pub fn kill(&mut self) -> Result<()> {
        self.signal(crate::Signal::Kill)
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: crate::Signal) -> Result<()> {
        self.state
            .signal(signal.as_raw())
            .map_err(|e| Error::io(&format!("signalling child {}", self.id()), e))
    }

    /// A handle that kills the process from anywhere (another thread, a
    /// pool's abort) while this `Child` stays where it is. Like every
    /// signal from procwire it goes through the pidfd: it can never reach
    /// another process that reused the pid.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut child = procwire::Command::new("sleep").arg("60").spawn()?;
    /// let killer = child.killer();
    /// std::thread::spawn(move || killer.kill()).join().unwrap()?;
    /// assert!(child.wait()?.code().is_none()); // killed by a signal
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn killer(&self) -> Killer {
        Killer(std::sync::Arc::clone(&self.state))
    }

    /// Whether dropping the handle kills the process (the default) or lets
    /// it run on (it is reaped in the background when it exits).
    pub fn kill_on_drop(&mut self, kill: bool) -> &mut Child {
        self.kill_on_drop = kill;
        self
    }
}

/// Kills one child process from anywhere: see [`Child::killer`].
///
/// # Examples
///
/// ```
/// let mut child = procwire::Command::new("sleep").arg("60").spawn()?;
/// let killer = child.killer(); // Clone + Send: for another thread
/// killer.kill()?;
/// assert!(child.wait()?.signal().is_some());
/// # use std::os::unix::process::ExitStatusExt;
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Killer(std::sync::Arc<ProcState>);

impl Killer {
    /// Sends `SIGKILL` (the [`Child`] still reaps the process).
    pub fn kill(&self) -> Result<()> {
        self.0
            .signal(crate::Signal::Kill.as_raw())
            .map_err(|e| Error::io(&format!("killing child {}", self.0.pid), e))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.reaped.is_some() || self.detached {
            return;
        }
        if self.kill_on_drop {
            let _ = self.kill();
            let _ = self.wait();
        } else if self.state.origin == Origin::Direct {
            let state = std::sync::Arc::clone(&self.state);
            let spawned = std::thread::Builder::new()
                .name(format!("procwire-reap-{}", state.pid))
                .spawn(move || {
                    if let Ok(Some(_)) = state.exit_status(None) {
                        let _ = state.reap();
                    }
                });
            if spawned.is_err() {
                // No thread to wait with: kill rather than leave a zombie.
                let _ = self.kill();
                let _ = self.wait();
            }
        }
    }
}

impl AsFd for Child {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.state.pidfd.as_fd()
    }
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.state.pid)
            .field("origin", &self.state.origin)
            .field("reaped", &self.reaped)
            .finish()
    }
}
