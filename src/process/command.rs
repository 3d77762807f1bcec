//! Starting any program with channels already connected.

use std::ffi::OsStr;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::{ExitStatus, Output, Stdio};
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
/// std's builder methods (arguments, environment, working directory,
/// stdio) are here under the same names and return procwire's `Command`, so
/// they chain with [`channel`](Command::channel); every way to start the
/// child ([`spawn`](Command::spawn), [`status`](Command::status),
/// [`output`](Command::output)) hands the channels over. procwire adds:
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
    /// The child-setup hook is installed (once: std keeps every hook).
    hooked: bool,
    /// A child was started with the handed descriptors: they are gone.
    handed_over: bool,
    /// Which of stdin, stdout, stderr the caller set (for `output`).
    stdio_set: [bool; 3],
}

impl Command {
    /// A command for `program`, like [`std::process::Command::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// let out = procwire::Command::new("echo").arg("hi").output()?;
    /// assert_eq!(out.stdout, b"hi\n");
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command::from(std::process::Command::new(program))
    }

    /// A two-way channel to the child, with the default options.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut cmd = procwire::Command::new("sh");
    /// // The child finds its channel in PROCWIRE_FD: here it only prints it.
    /// cmd.args(["-c", "echo fd=$PROCWIRE_FD"]);
    /// let _ch = cmd.channel::<String, String>()?;
    /// let out = cmd.output()?;
    /// assert!(String::from_utf8_lossy(&out.stdout).starts_with("fd="));
    /// # Ok::<(), procwire::Error>(())
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::{CodecKind, Options};
    ///
    /// let mut cmd = procwire::Command::new("python3");
    /// cmd.arg("-c").arg("import os; print(os.environ['PROCWIRE_CODEC'])");
    /// let _ch = cmd.channel_with::<String, String>(&Options::new().codec(CodecKind::MsgPack))?;
    /// let out = cmd.output()?;
    /// assert_eq!(out.stdout, b"msgpack\n");
    /// # Ok::<(), procwire::Error>(())
    /// ```
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
    ///
    /// A command without channels or inherited descriptors can be spawned
    /// again, as std's can; one whose descriptors went to a child cannot
    /// (they are closed here now): that is an
    /// [`ErrorKind::InvalidInput`] error, and a new `Command` is the way.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut child = procwire::Command::new("true").spawn()?;
    /// assert!(child.wait()?.success()); // reaped: no zombie
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn spawn(&mut self) -> Result<Child> {
        if self.handed_over {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "this command's channel and descriptors went to the child it started \
                 already; build a new Command for another child",
            ));
        }
        if !self.hooked {
            let mut keep: Vec<RawFd> = self.handed.iter().map(AsRawFd::as_raw_fd).collect();
            keep.sort_unstable();
            keep.dedup();
            sys::process::on_exec(
                &mut self.inner,
                ChildSetup {
                    keep,
                    death_signal: self
                        .die_with_parent
                        .then_some(rustix::process::Signal::KILL),
                    parent: sys::process::getpid(),
                },
            );
            self.hooked = true;
        }
        let spawned = self.inner.spawn();
        // The child has its copies (or failed to start): ours go either way.
        if !self.handed.is_empty() {
            self.handed_over = true;
        }
        self.handed.clear();
        let std_child = spawned
            .map_err(|e| Error::io(&format!("starting {:?}", self.inner.get_program()), e))?;
        let pid = std_child.id();
        let state = match ProcState::new(pid, Origin::Direct) {
            Ok(state) => Arc::new(state),
            Err(e) => {
                let mut std_child = std_child;
                let _ = std_child.kill();
                let _ = std_child.wait();
                return Err(Error::io(
                    &format!("opening a pidfd for child {pid} (it was killed)"),
                    e,
                ));
            }
        };
        let stdio = (std_child.stdin, std_child.stdout, std_child.stderr);
        for conn in self.watchers.drain(..) {
            conn.supervise(Arc::clone(&state) as _);
        }
        let mut child = Child::new(state, self.kill_on_drop);
        (child.stdin, child.stdout, child.stderr) = stdio;
        Ok(child)
    }

    /// Starts the child (channels and all) and waits for it, like
    /// [`std::process::Command::status`].
    pub fn status(&mut self) -> Result<ExitStatus> {
        self.spawn()?.wait()
    }

    /// Starts the child (channels and all) with its stdout and stderr
    /// captured, unless set otherwise, and waits for it, collecting both,
    /// like [`std::process::Command::output`]. Its stdin is the null device
    /// unless set otherwise.
    pub fn output(&mut self) -> Result<Output> {
        use std::io::Read;
        if !self.stdio_set[0] {
            self.inner.stdin(Stdio::null());
        }
        if !self.stdio_set[1] {
            self.inner.stdout(Stdio::piped());
        }
        if !self.stdio_set[2] {
            self.inner.stderr(Stdio::piped());
        }
        let mut child = self.spawn()?;
        let err = child.stderr.take();
        // Both pipes at once: a child that fills one while we read the
        // other would otherwise block for ever.
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut e) = err {
                let _ = e.read_to_end(&mut buf);
            }
            buf
        });
        let mut stdout = Vec::new();
        if let Some(mut o) = child.stdout.take() {
            o.read_to_end(&mut stdout)
                .map_err(|e| Error::io("reading the child's stdout", e))?;
        }
        let stderr = err_reader.join().unwrap_or_default();
        let status = child.wait()?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    /// Adds an argument. See [`std::process::Command::arg`].
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.inner.arg(arg);
        self
    }

    /// Adds arguments. See [`std::process::Command::args`].
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.args(args);
        self
    }

    /// Sets an environment variable. See [`std::process::Command::env`].
    pub fn env(&mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> &mut Command {
        self.inner.env(key, val);
        self
    }

    /// Sets environment variables. See [`std::process::Command::envs`].
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.inner.envs(vars);
        self
    }

    /// Removes an environment variable. See
    /// [`std::process::Command::env_remove`]. (The `PROCWIRE_*` variables
    /// of a channel are set again by [`channel`](Command::channel).)
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Command {
        self.inner.env_remove(key);
        self
    }

    /// Clears the environment. See [`std::process::Command::env_clear`]:
    /// call it before [`channel`](Command::channel), which sets the
    /// `PROCWIRE_*` variables the child needs.
    pub fn env_clear(&mut self) -> &mut Command {
        self.inner.env_clear();
        self
    }

    /// Sets the working directory. See
    /// [`std::process::Command::current_dir`].
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.inner.current_dir(dir);
        self
    }

    /// The child's stdin. See [`std::process::Command::stdin`].
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.inner.stdin(cfg);
        self.stdio_set[0] = true;
        self
    }

    /// The child's stdout. See [`std::process::Command::stdout`].
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.inner.stdout(cfg);
        self.stdio_set[1] = true;
        self
    }

    /// The child's stderr. See [`std::process::Command::stderr`].
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.inner.stderr(cfg);
        self.stdio_set[2] = true;
        self
    }

    /// The program. See [`std::process::Command::get_program`].
    pub fn get_program(&self) -> &OsStr {
        self.inner.get_program()
    }

    /// The arguments. See [`std::process::Command::get_args`].
    pub fn get_args(&self) -> std::process::CommandArgs<'_> {
        self.inner.get_args()
    }

    /// The environment changes. See [`std::process::Command::get_envs`].
    pub fn get_envs(&self) -> std::process::CommandEnvs<'_> {
        self.inner.get_envs()
    }

    /// The working directory, if set. See
    /// [`std::process::Command::get_current_dir`].
    pub fn get_current_dir(&self) -> Option<&Path> {
        self.inner.get_current_dir()
    }

    /// The wrapped std command, for what is not forwarded here (its
    /// `CommandExt` settings, say). Starting it directly bypasses the
    /// hand-over: use [`spawn`](Command::spawn), `status` or `output`.
    pub fn as_std_mut(&mut self) -> &mut std::process::Command {
        &mut self.inner
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
            hooked: false,
            handed_over: false,
            stdio_set: [false; 3],
        }
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
