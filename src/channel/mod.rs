//! Typed channels over any transport: [`Sender`], [`Receiver`], [`Duplex`].
//!
//! The same three types work over a pipe, a socket pair of any kind, a Unix
//! socket connected by path, and a descriptor inherited from a parent. Make
//! them with [`channel`] and [`duplex`], or with a transport's builder
//! ([`Pipe`], [`SocketPair`], [`Shm`]) and its [`Options`].

mod build;
mod duplex;
pub(crate) mod gate;
pub(crate) mod hello;
mod receiver;
mod select;
mod sender;
#[cfg(any(feature = "tcp", feature = "tokio"))]
pub(crate) use sender::SendCore;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) use build::channel_settings;
pub use build::{DEFAULT_LINGER, Options, Pipe, Shm, SocketPair};
pub use duplex::Duplex;
pub(crate) use gate::Wait;
pub use hello::WireName;
pub use receiver::{IntoIter, Iter, Received, Receiver, TryIter};
pub use select::Select;
pub use sender::Sender;

use crate::error::Result;
use crate::socket::Kind;

/// A one-way typed channel over a new pipe, with the default options
/// (postcard, 64 MiB frames).
///
/// # Examples
///
/// ```
/// let (tx, rx) = procwire::channel::<(u32, String)>()?;
/// tx.send((1, "one".into()))?;
/// assert_eq!(rx.recv()?, (1, "one".to_string()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn channel<T: Serialize + DeserializeOwned>() -> Result<(Sender<T>, Receiver<T>)> {
    Pipe::new().channel()
}

/// A two-way typed channel over a new stream socket pair, with the default
/// options. The first end sends `A` and receives `B`; the second the reverse.
///
/// # Examples
///
/// ```
/// let (parent, child) = procwire::duplex::<String, usize>()?;
/// parent.send("Heavy lifting".into())?;
/// child.send(child.recv()?.len())?;
/// assert_eq!(parent.recv()?, 13);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn duplex<A, B>() -> Result<(Duplex<A, B>, Duplex<B, A>)>
where
    A: Serialize + DeserializeOwned,
    B: Serialize + DeserializeOwned,
{
    SocketPair::new(Kind::Stream).duplex()
}
