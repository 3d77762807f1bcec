//! What went wrong, said plainly.
//!
//! Every fallible channel and frame operation returns [`Error`], one opaque
//! type with a [`kind`](Error::kind) to match on and a message that says what
//! happened and what to do. A failed send also hands the message back
//! ([`SendError`]), so nothing is lost by trying.

use std::fmt;
use std::io;

mod channel;
pub use channel::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

/// A `Result` whose error is procwire's [`Error`].
///
/// # Examples
///
/// ```
/// fn ask(ch: &procwire::Duplex<u32, u32>) -> procwire::Result<u32> {
///     ch.send(6)?; // every channel error converts into procwire::Error
///     Ok(ch.recv()? * 7)
/// }
/// let (a, b) = procwire::duplex::<u32, u32>()?;
/// b.send(1)?;
/// assert_eq!(ask(&a)?, 7);
/// # Ok::<(), procwire::Error>(())
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The kinds of [`Error`]; match on them, the message is for people.
///
/// # Examples
///
/// ```
/// use procwire::ErrorKind;
///
/// let (_tx, rx) = procwire::channel::<u8>()?;
/// match rx.try_recv() {
///     Err(e) if e.kind() == ErrorKind::Empty => {} // nothing yet: do something else
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The other end is gone: it closed its end, shut down its writing
    /// direction, or exited. On receive this is the clean end of the stream,
    /// after every message that was sent has been delivered.
    Disconnected,
    /// `try_send` found the OS buffer full; nothing was written.
    Full,
    /// `try_recv` found no complete message yet.
    Empty,
    /// A `*_timeout` operation reached its deadline; for a send, nothing was
    /// written.
    Timeout,
    /// A message is longer than the limit in force (the configured maximum
    /// frame size, or the most one datagram can carry).
    FrameTooLarge,
    /// A datagram or its attached descriptors did not fit the receive buffer
    /// (`MSG_TRUNC`, `MSG_CTRUNC`); the cut message was discarded.
    Truncated,
    /// The peer closed the stream in the middle of a frame.
    UnexpectedEof,
    /// A payload could not be decoded into the expected type.
    Decode,
    /// A value could not be encoded by the channel's codec.
    Encode,
    /// The operation is not possible on this transport (for example sending
    /// descriptors over a pipe).
    Unsupported,
    /// The process at the other end exited or was killed;
    /// [`Error::exit_status`] says how.
    PeerExited,
    /// The remote handler of a call returned an error (its message is in
    /// this error's).
    Remote,
    /// The task was cancelled, or its pool shut down before running it.
    Cancelled,
    /// A socket path is in use by a live listener.
    AddrInUse,
    /// A connection was refused by policy: a failed authentication, a
    /// missing key, or an address that is not allowed without one.
    Refused,
    /// A bad argument or environment: a path too long, an unknown codec name,
    /// a `PROCWIRE_FD` that is not an open stream socket.
    InvalidInput,
    /// Any other operating-system error; see [`Error::io_error`].
    Io,
}

/// The error of every procwire operation but a failed send (which is a
/// [`SendError`] carrying the message back).
///
/// # Examples
///
/// ```
/// let (tx, rx) = procwire::channel::<u8>()?;
/// drop(tx);
/// let e = rx.recv().unwrap_err();
/// assert_eq!(e.kind(), procwire::ErrorKind::Disconnected);
/// println!("{e}"); // says what happened
/// let io: std::io::Error = e.into(); // for code that speaks io::Result
/// assert_eq!(io.kind(), std::io::ErrorKind::BrokenPipe);
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct Error(Box<Inner>);

/// Behind one pointer, so that a `Result` of a small value stays small: the
/// success path of every send and receive moves it.
struct Inner {
    kind: ErrorKind,
    /// Borrowed for the fixed messages of the common, expected errors (a
    /// `try_recv` that finds nothing: no allocation for the text).
    message: std::borrow::Cow<'static, str>,
    source: Option<io::Error>,
    status: Option<std::process::ExitStatus>,
}

impl Error {
    /// An error of `kind` saying `message`: for code that plugs into
    /// procwire, such as a pool's own [`Worker`](crate::pool::Worker).
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::{Error, ErrorKind};
    ///
    /// let e = Error::new(ErrorKind::Remote, "the task failed: no such file");
    /// assert_eq!(e.kind(), ErrorKind::Remote);
    /// assert_eq!(e.to_string(), "the task failed: no such file");
    /// ```
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error(Box::new(Inner {
            kind,
            message: std::borrow::Cow::Owned(message.into()),
            source: None,
            status: None,
        }))
    }

    /// An error of `kind` with a fixed message (not copied).
    pub(crate) fn fixed(kind: ErrorKind, message: &'static str) -> Error {
        Error(Box::new(Inner {
            kind,
            message: std::borrow::Cow::Borrowed(message),
            source: None,
            status: None,
        }))
    }

    /// Wraps an OS error, choosing the kind from it and prefixing `context`
    /// (what procwire was doing).
    pub(crate) fn io(context: &str, e: io::Error) -> Error {
        let kind = match e.kind() {
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::NotConnected => ErrorKind::Disconnected,
            io::ErrorKind::AddrInUse => ErrorKind::AddrInUse,
            io::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
            io::ErrorKind::UnexpectedEof => ErrorKind::UnexpectedEof,
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Io,
        };
        let message = if crate::sys::is_at_fd_limit(&e) {
            // Which limit, and how far it can go: the OS says only "too many".
            let (soft, hard) = crate::sys::fd_limits();
            let raise = crate::sys::fd_hard_limit_above(soft, hard)
                .map(|h| {
                    format!(
                        "; the hard limit is {h}: raise the soft one with `ulimit -n` or setrlimit"
                    )
                })
                .unwrap_or_default();
            format!(
                "{context} (this process is at its RLIMIT_NOFILE of {soft} open descriptors{raise})"
            )
        } else {
            context.to_owned()
        };
        Error(Box::new(Inner {
            kind,
            message: std::borrow::Cow::Owned(message),
            source: Some(e),
            status: None,
        }))
    }

    /// Wraps an OS error under a kind chosen by the caller.
    pub(crate) fn io_as(kind: ErrorKind, context: &str, e: io::Error) -> Error {
        Error(Box::new(Inner {
            kind,
            message: std::borrow::Cow::Owned(context.to_owned()),
            source: Some(e),
            status: None,
        }))
    }

    /// This error, with the exit status of the process it is about
    /// ([`exit_status`](Error::exit_status)).
    pub fn with_exit_status(self, status: std::process::ExitStatus) -> Error {
        self.with_status(Some(status))
    }

    /// Attaches the exit status of the peer process.
    pub(crate) fn with_status(mut self, status: Option<std::process::ExitStatus>) -> Error {
        if status.is_some() {
            self.0.status = status;
        }
        self
    }

    /// Adds to the message what happened to the peer process.
    pub(crate) fn because(mut self, why: &str) -> Error {
        self.0.message = format!("{}: {why}", self.0.message).into();
        self
    }

    pub(crate) fn disconnected(what: &str) -> Error {
        Error::new(ErrorKind::Disconnected, what)
    }

    pub(crate) fn too_large(len: u64, max: usize, hint: &str) -> Error {
        Error::new(
            ErrorKind::FrameTooLarge,
            format!(
                "frame of {} exceeds the {} limit; {hint}",
                human(len),
                human(max as u64)
            ),
        )
    }

    /// A copy of this error for another waiter (the OS error underneath is
    /// kept as its kind and message).
    pub(crate) fn duplicate(&self) -> Error {
        Error(Box::new(Inner {
            kind: self.0.kind,
            message: self.0.message.clone(),
            source: self
                .0
                .source
                .as_ref()
                .map(|e| io::Error::new(e.kind(), e.to_string())),
            status: self.0.status,
        }))
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The operating-system error underneath, if there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        self.0.source.as_ref()
    }

    /// How the peer process ended, when the channel watches it (see
    /// [`Duplex::supervise`](crate::Duplex::supervise)) and it has.
    pub fn exit_status(&self) -> Option<std::process::ExitStatus> {
        self.0.status
    }

    /// Whether the peer is gone ([`ErrorKind::Disconnected`]).
    pub fn is_disconnected(&self) -> bool {
        self.0.kind == ErrorKind::Disconnected
    }

    /// Whether a deadline passed ([`ErrorKind::Timeout`]).
    pub fn is_timeout(&self) -> bool {
        self.0.kind == ErrorKind::Timeout
    }
}

/// `1536` -> `"1.5 KiB"`: sizes in messages are read by people.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.0.kind)
            .field("message", &self.0.message);
        if let Some(s) = &self.0.source {
            d.field("source", s);
        }
        if let Some(s) = &self.0.status {
            d.field("status", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)?;
        if let Some(s) = &self.0.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

/// The OS error's text is part of this error's `Display` already, so it is
/// not also offered as `source()`: a report that walks the chain (anyhow's
/// `{:#}`) would say it twice. [`Error::io_error`] gives it.
impl std::error::Error for Error {}

/// An OS error from code around procwire's calls, so that `?` works in
/// functions returning [`Result`].
impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::io("an I/O operation", e)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match e.0.kind {
            ErrorKind::Disconnected | ErrorKind::PeerExited => io::ErrorKind::BrokenPipe,
            ErrorKind::Remote => io::ErrorKind::Other,
            ErrorKind::Cancelled => io::ErrorKind::Interrupted,
            ErrorKind::Full | ErrorKind::Empty => io::ErrorKind::WouldBlock,
            ErrorKind::Timeout => io::ErrorKind::TimedOut,
            ErrorKind::FrameTooLarge | ErrorKind::Truncated | ErrorKind::Decode => {
                io::ErrorKind::InvalidData
            }
            ErrorKind::UnexpectedEof => io::ErrorKind::UnexpectedEof,
            ErrorKind::Encode | ErrorKind::InvalidInput => io::ErrorKind::InvalidInput,
            ErrorKind::Unsupported => io::ErrorKind::Unsupported,
            ErrorKind::AddrInUse => io::ErrorKind::AddrInUse,
            ErrorKind::Refused => io::ErrorKind::PermissionDenied,
            ErrorKind::Io => match &e.0.source {
                Some(s) => s.kind(),
                None => io::ErrorKind::Other,
            },
        };
        io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_one_pointer_so_results_stay_small() {
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn sizes_read_like_a_person_wrote_them() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(64 << 20), "64 MiB");
        assert_eq!(human(4 << 30), "4 GiB");
    }

    #[test]
    fn too_large_message_names_sizes_and_the_fix() {
        let e = Error::too_large(3 << 30, 64 << 20, "raise it with `max_frame`");
        assert_eq!(e.kind(), ErrorKind::FrameTooLarge);
        assert_eq!(
            e.to_string(),
            "frame of 3 GiB exceeds the 64 MiB limit; raise it with `max_frame`"
        );
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::InvalidData);
    }
}
