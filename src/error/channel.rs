//! The errors of channel operations, with crossbeam-channel's names and
//! shapes: [`SendError`], [`TrySendError`], [`SendTimeoutError`],
//! [`RecvError`], [`TryRecvError`], [`RecvTimeoutError`].
//!
//! A process boundary has more to say than a thread boundary, so each type
//! also has `Other`, holding the one opaque [`Error`] (a frame too large, a
//! payload that does not decode, an OS error), and `Disconnected` holds an
//! [`Error`] too, with the peer's exit status or signal where it is known
//! ([`Error::exit_status`]). Every send error holds the message. Each type
//! converts into [`Error`] (so `?` works in functions returning
//! [`procwire::Result`](crate::Result)) and into `std::io::Error`, and
//! answers [`kind`](TrySendError::kind) like an [`Error`].

use std::fmt;
use std::io;

use super::{Error, ErrorKind};

/// Whether an error from below means the peer is gone.
fn gone(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Disconnected | ErrorKind::PeerExited)
}

macro_rules! common {
    ($t:ident $(<$g:ident>)?, $what:literal) => {
        impl$(<$g>)? $t$(<$g>)? {
            /// Why it failed, in [`ErrorKind`] terms.
            pub fn kind(&self) -> ErrorKind {
                self.as_error().map_or(self.plain_kind(), Error::kind)
            }

            /// Whether the other end is gone (closed, or its process exited).
            pub fn is_disconnected(&self) -> bool {
                matches!(self.kind(), ErrorKind::Disconnected | ErrorKind::PeerExited)
            }

            /// The exit status of the peer process, where it is known.
            pub fn exit_status(&self) -> Option<std::process::ExitStatus> {
                self.as_error().and_then(Error::exit_status)
            }

            /// The same as one [`Error`] (the message, if any, is dropped).
            pub fn into_error(self) -> Error {
                let kind = self.plain_kind();
                match self.into_error_opt() {
                    Some(e) => e,
                    None => Error::new(kind, $what),
                }
            }
        }

        impl$(<$g>)? fmt::Display for $t$(<$g>)? {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.as_error() {
                    Some(e) => fmt::Display::fmt(e, f),
                    None => f.write_str($what),
                }
            }
        }

        impl$(<$g>)? std::error::Error for $t$(<$g>)? {}

        impl$(<$g>)? From<$t$(<$g>)?> for Error {
            fn from(e: $t$(<$g>)?) -> Error {
                e.into_error()
            }
        }

        impl$(<$g>)? From<$t$(<$g>)?> for io::Error {
            fn from(e: $t$(<$g>)?) -> io::Error {
                e.into_error().into()
            }
        }
    };
}

/// A [`send`](crate::Sender::send) that failed; the message comes back.
///
/// # Examples
///
/// ```
/// use procwire::SendError;
///
/// let (tx, rx) = procwire::channel::<String>()?;
/// drop(rx);
/// match tx.send("anyone?".into()) {
///     Err(SendError::Disconnected(msg, _)) => assert_eq!(msg, "anyone?"),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), procwire::Error>(())
/// ```
pub enum SendError<T> {
    /// The receiver is gone; the error says how (and the peer's exit status
    /// where known).
    Disconnected(T, Error),
    /// Any other failure: a frame too large, an encoding error, an OS error.
    Other(T, Error),
}

/// A [`try_send`](crate::Sender::try_send) that failed; the message comes
/// back.
///
/// # Examples
///
/// ```
/// use procwire::TrySendError;
///
/// let (tx, _rx) = procwire::channel::<Vec<u8>>()?;
/// loop {
///     match tx.try_send(vec![0; 4096]) {
///         Ok(()) => continue,
///         Err(TrySendError::Full(_msg)) => break, // the pipe buffer is full
///         Err(e) => return Err(e.into()),
///     }
/// }
/// # Ok::<(), procwire::Error>(())
/// ```
pub enum TrySendError<T> {
    /// The buffer is full now; nothing was written.
    Full(T),
    /// The receiver is gone.
    Disconnected(T, Error),
    /// Any other failure.
    Other(T, Error),
}

/// A [`send_timeout`](crate::Sender::send_timeout) that failed; the
/// message comes back.
///
/// # Examples
///
/// ```
/// use procwire::SendTimeoutError;
/// use std::time::Duration;
///
/// let (tx, _rx) = procwire::channel::<Vec<u8>>()?;
/// let e = loop {
///     if let Err(e) = tx.send_timeout(vec![0; 4096], Duration::from_millis(10)) {
///         break e;
///     }
/// };
/// assert!(matches!(e, SendTimeoutError::Timeout(_)));
/// # Ok::<(), procwire::Error>(())
/// ```
pub enum SendTimeoutError<T> {
    /// No room came before the deadline; nothing was written.
    Timeout(T),
    /// The receiver is gone.
    Disconnected(T, Error),
    /// Any other failure.
    Other(T, Error),
}

/// A [`recv`](crate::Receiver::recv) that failed.
///
/// # Examples
///
/// ```
/// use procwire::RecvError;
///
/// let (tx, rx) = procwire::channel::<u8>()?;
/// drop(tx);
/// assert!(matches!(rx.recv(), Err(RecvError::Disconnected(_))));
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Debug)]
pub enum RecvError {
    /// The sender is gone and everything it sent was received (or its
    /// process exited; the error says how).
    Disconnected(Error),
    /// Any other failure: a payload that does not decode, a peer that died
    /// in the middle of a frame, an OS error.
    Other(Error),
}

/// A [`try_recv`](crate::Receiver::try_recv) that failed.
///
/// # Examples
///
/// ```
/// use procwire::TryRecvError;
///
/// let (_tx, rx) = procwire::channel::<u8>()?;
/// assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Debug)]
pub enum TryRecvError {
    /// No complete message yet.
    Empty,
    /// The sender is gone and everything it sent was received.
    Disconnected(Error),
    /// Any other failure.
    Other(Error),
}

/// A [`recv_timeout`](crate::Receiver::recv_timeout) that failed.
///
/// # Examples
///
/// ```
/// use procwire::RecvTimeoutError;
/// use std::time::Duration;
///
/// let (_tx, rx) = procwire::channel::<u8>()?;
/// let e = rx.recv_timeout(Duration::from_millis(10)).unwrap_err();
/// assert!(matches!(e, RecvTimeoutError::Timeout));
/// assert!(e.is_timeout());
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Debug)]
pub enum RecvTimeoutError {
    /// No complete message before the deadline (a partial one is kept).
    Timeout,
    /// The sender is gone and everything it sent was received.
    Disconnected(Error),
    /// Any other failure.
    Other(Error),
}

impl<T> SendError<T> {
    pub(crate) fn new(value: T, e: Error) -> SendError<T> {
        if gone(&e) {
            SendError::Disconnected(value, e)
        } else {
            SendError::Other(value, e)
        }
    }

    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        self.into_parts().0
    }

    /// The message and why it was not sent.
    pub fn into_parts(self) -> (T, Error) {
        match self {
            SendError::Disconnected(v, e) | SendError::Other(v, e) => (v, e),
        }
    }

    /// Why the send failed.
    pub fn error(&self) -> &Error {
        match self {
            SendError::Disconnected(_, e) | SendError::Other(_, e) => e,
        }
    }

    fn as_error(&self) -> Option<&Error> {
        Some(self.error())
    }

    fn into_error_opt(self) -> Option<Error> {
        Some(self.into_parts().1)
    }

    fn plain_kind(&self) -> ErrorKind {
        ErrorKind::Io
    }
}
common!(SendError<T>, "message not sent");

/// The methods of a send error whose first variant (`Full`, `Timeout`)
/// holds only the message.
macro_rules! send_with_unit {
    ($t:ident, $unit:ident, $kind:ident, $is:ident, $is_doc:literal, $what:literal) => {
        impl<T> $t<T> {
            pub(crate) fn new(value: T, e: Error) -> $t<T> {
                match e.kind() {
                    ErrorKind::$kind => $t::$unit(value),
                    _ if gone(&e) => $t::Disconnected(value, e),
                    _ => $t::Other(value, e),
                }
            }

            /// The message that was not sent.
            pub fn into_inner(self) -> T {
                match self {
                    $t::$unit(v) | $t::Disconnected(v, _) | $t::Other(v, _) => v,
                }
            }

            #[doc = $is_doc]
            pub fn $is(&self) -> bool {
                matches!(self, $t::$unit(_))
            }

            fn as_error(&self) -> Option<&Error> {
                match self {
                    $t::$unit(_) => None,
                    $t::Disconnected(_, e) | $t::Other(_, e) => Some(e),
                }
            }

            fn into_error_opt(self) -> Option<Error> {
                match self {
                    $t::$unit(_) => None,
                    $t::Disconnected(_, e) | $t::Other(_, e) => Some(e),
                }
            }

            fn plain_kind(&self) -> ErrorKind {
                ErrorKind::$kind
            }
        }
        common!($t<T>, $what);
    };
}

send_with_unit!(
    TrySendError,
    Full,
    Full,
    is_full,
    "Whether the buffer was full: try again later.",
    "the channel is full (the receiver has not read what was sent); nothing was written"
);
send_with_unit!(
    SendTimeoutError,
    Timeout,
    Timeout,
    is_timeout,
    "Whether the deadline passed with no room.",
    "the receiver did not make room before the deadline; nothing was written"
);

impl RecvError {
    pub(crate) fn new(e: Error) -> RecvError {
        if gone(&e) {
            RecvError::Disconnected(e)
        } else {
            RecvError::Other(e)
        }
    }

    fn as_error(&self) -> Option<&Error> {
        match self {
            RecvError::Disconnected(e) | RecvError::Other(e) => Some(e),
        }
    }

    fn into_error_opt(self) -> Option<Error> {
        match self {
            RecvError::Disconnected(e) | RecvError::Other(e) => Some(e),
        }
    }

    fn plain_kind(&self) -> ErrorKind {
        ErrorKind::Io
    }
}
common!(RecvError, "receive failed");

/// The methods of a receive error whose first variant (`Empty`,
/// `Timeout`) holds nothing.
macro_rules! recv_with_unit {
    ($t:ident, $unit:ident, $kind:ident, $is:ident, $is_doc:literal, $what:literal) => {
        impl $t {
            pub(crate) fn new(e: Error) -> $t {
                match e.kind() {
                    ErrorKind::$kind => $t::$unit,
                    _ if gone(&e) => $t::Disconnected(e),
                    _ => $t::Other(e),
                }
            }

            #[doc = $is_doc]
            pub fn $is(&self) -> bool {
                matches!(self, $t::$unit)
            }

            fn as_error(&self) -> Option<&Error> {
                match self {
                    $t::$unit => None,
                    $t::Disconnected(e) | $t::Other(e) => Some(e),
                }
            }

            fn into_error_opt(self) -> Option<Error> {
                match self {
                    $t::$unit => None,
                    $t::Disconnected(e) | $t::Other(e) => Some(e),
                }
            }

            fn plain_kind(&self) -> ErrorKind {
                ErrorKind::$kind
            }
        }
        common!($t, $what);
    };
}

recv_with_unit!(
    TryRecvError,
    Empty,
    Empty,
    is_empty,
    "Whether no complete message was there yet.",
    "no complete message has arrived yet"
);
recv_with_unit!(
    RecvTimeoutError,
    Timeout,
    Timeout,
    is_timeout,
    "Whether the deadline passed with no complete message.",
    "no complete message arrived before the deadline"
);

macro_rules! debug_send {
    ($($t:ident: $($v:ident($($f:ident),*)),*;)*) => {$(
        impl<T> fmt::Debug for $t<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // The message may not be Debug: show why, not what.
                match self {$(
                    $t::$v(_ $(, $f)*) => {
                        let mut d = f.debug_tuple(stringify!($v));
                        d.field(&"..");
                        $(d.field($f);)*
                        d.finish()
                    }
                )*}
            }
        }
    )*};
}

debug_send! {
    SendError: Disconnected(e), Other(e);
    TrySendError: Full(), Disconnected(e), Other(e);
    SendTimeoutError: Timeout(), Disconnected(e), Other(e);
}
