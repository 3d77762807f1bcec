//! The child's side of the hand-over contract: finding the channel a parent
//! left in the environment.
//!
//! A parent that starts a child with a channel sets three variables (see
//! `docs/wire-format.md`):
//!
//! | variable | value |
//! |---|---|
//! | `PROCWIRE_FD` | the number of an inherited `SOCK_STREAM` Unix socket |
//! | `PROCWIRE_CODEC` | `postcard`, `msgpack`, `json` or `raw` |
//! | `PROCWIRE_VERSION` | `4`; a peer refuses any other value |
//!
//! Any language can honour it; in Rust, [`from_env`] does. The parent's side
//! is [`Command::channel`](crate::Command::channel).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::CodecKind;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, FdKind, SockType};
use crate::{Duplex, Options};

/// The variable naming the inherited socket's descriptor number.
pub const ENV_FD: &str = "PROCWIRE_FD";
/// The variable naming the codec.
pub const ENV_CODEC: &str = "PROCWIRE_CODEC";
/// The variable naming the wire format version.
pub const ENV_VERSION: &str = "PROCWIRE_VERSION";
/// The wire format version this build speaks.
pub const WIRE_VERSION: u32 = 4;

static TAKEN: AtomicBool = AtomicBool::new(false);

fn var(name: &str) -> Result<String> {
    std::env::var(name).map_err(|_| {
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{name} is not set (or not UTF-8): this process was not started with a \
                 procwire channel"
            ),
        )
    })
}

/// The channel the parent handed this process, as a [`Duplex`].
///
/// Succeeds once per process: the descriptor has one owner. Checks that
/// `PROCWIRE_VERSION` is `3`, that `PROCWIRE_CODEC` names a known codec, and
/// that `PROCWIRE_FD` is an open stream socket, and sets close-on-exec on it
/// so that it does not leak into programs this child starts.
///
/// # Examples
///
/// ```no_run
/// // The child's side, in a program a procwire parent started with
/// // `Command::channel`: one call, and the channel is there.
/// fn main() -> procwire::Result<()> {
///     let ch = procwire::from_env::<String, String>()?;
///     for job in ch.iter() {
///         ch.send(format!("{} accomplished!", job?))?;
///     }
///     Ok(())
/// }
/// ```
pub fn from_env<Out, In>() -> Result<Duplex<Out, In>>
where
    Out: Serialize,
    In: DeserializeOwned,
{
    let (fd, codec) = take_env()?;
    Options::new().codec(codec).duplex_from(fd)
}

/// The socket the parent handed this process, raw (a stream, SEQPACKET or
/// datagram Unix socket), and the codec its messages are in: for tools
/// that relay a channel byte for byte (`procwire tap`) rather than speak
/// on it. Succeeds once per process, and not after [`from_env`].
pub fn socket_from_env() -> Result<(crate::Socket, CodecKind)> {
    let (fd, codec) = take_env_as(|kind| match kind {
        FdKind::Socket(_) => Ok(()),
        other => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "it is {other:?}, not a socket (a shared-memory channel has no socket to                  relay)"
            ),
        )),
    })?;
    let socket =
        crate::Socket::from_fd(fd).map_err(|e| Error::io_as(ErrorKind::InvalidInput, ENV_FD, e))?;
    Ok((socket, codec))
}

/// Checks the `PROCWIRE_*` variables and adopts the descriptor (once).
pub(crate) fn take_env() -> Result<(std::os::fd::OwnedFd, CodecKind)> {
    take_env_as(|kind| match kind {
        FdKind::Socket(SockType::Stream) => Ok(()),
        other => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("it is {other:?}, not a stream socket"),
        )),
    })
}

/// [`take_env`], with `accept` judging what the descriptor is.
fn take_env_as(
    accept: impl FnOnce(FdKind) -> std::io::Result<()>,
) -> Result<(std::os::fd::OwnedFd, CodecKind)> {
    let version = var(ENV_VERSION)?;
    if version != WIRE_VERSION.to_string() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{ENV_VERSION}={version:?}, but this build speaks wire format version \
                 {WIRE_VERSION} only"
            ),
        ));
    }
    let codec: CodecKind = var(ENV_CODEC)?.parse()?;
    let raw = var(ENV_FD)?;
    let number: RawFd = raw.trim().parse().map_err(|_| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("{ENV_FD}={raw:?} is not a descriptor number"),
        )
    })?;
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("the {ENV_FD} channel was already taken by an earlier from_env call"),
        ));
    }
    let fd = sys::inherit::adopt(number, |fd| {
        accept(sys::fd_kind(fd)?)?;
        sys::set_cloexec(fd)
    })
    .map_err(|e| {
        TAKEN.store(false, Ordering::SeqCst);
        Error::io_as(
            ErrorKind::InvalidInput,
            &format!("{ENV_FD}={number} is not usable"),
            e,
        )
    })?;
    Ok((fd, codec))
}

/// The variables to give a child whose channel is its descriptor `fd`, for
/// parents that start children themselves.
pub fn child_env(fd: RawFd, codec: CodecKind) -> [(&'static str, String); 3] {
    [
        (ENV_FD, fd.to_string()),
        (ENV_CODEC, codec.name().to_string()),
        (ENV_VERSION, WIRE_VERSION.to_string()),
    ]
}
