//! Iterating over a receiver's messages until a clean end of stream, or
//! over those that are there now.

use std::fmt;

use serde::de::DeserializeOwned;

use super::Receiver;
use crate::channel::Wait;
use crate::error::{ErrorKind, RecvError};

/// Messages from a [`Receiver`], until a clean end of stream.
///
/// # Examples
///
/// ```
/// let (tx, rx) = procwire::channel::<u8>()?;
/// for i in 0..3 {
///     tx.send(i)?;
/// }
/// drop(tx);
/// let mut sum = 0;
/// for m in &rx {
///     sum += m?;
/// }
/// assert_eq!(sum, 3);
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct Iter<'a, T> {
    rx: &'a Receiver<T>,
    done: bool,
}

impl<'a, T> Iter<'a, T> {
    pub(super) fn new(rx: &'a Receiver<T>) -> Iter<'a, T> {
        Iter { rx, done: false }
    }
}

impl<T: DeserializeOwned> Iterator for Iter<'_, T> {
    type Item = Result<T, RecvError>;

    fn next(&mut self) -> Option<Result<T, RecvError>> {
        if self.done {
            return None;
        }
        next_item(self.rx, Wait::Block, &mut self.done)
    }
}

impl<T> fmt::Debug for Iter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").field("rx", self.rx).finish()
    }
}

/// Owns a [`Receiver`] and yields its messages.
///
/// # Examples
///
/// ```
/// let (tx, rx) = procwire::channel::<u8>()?;
/// tx.send(7)?;
/// drop(tx);
/// let all: Vec<u8> = rx.into_iter().collect::<Result<_, _>>()?;
/// assert_eq!(all, [7]);
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct IntoIter<T> {
    rx: Receiver<T>,
    done: bool,
}

impl<T: DeserializeOwned> Iterator for IntoIter<T> {
    type Item = Result<T, RecvError>;

    fn next(&mut self) -> Option<Result<T, RecvError>> {
        if self.done {
            return None;
        }
        next_item(&self.rx, Wait::Block, &mut self.done)
    }
}

/// The messages a [`Receiver`] has now, taken without waiting: `None` at
/// the first receive that finds no complete message, or at a clean end of
/// stream, as std's and crossbeam-channel's `try_iter`. Errors are `Err`
/// items, as in [`Iter`]. A `None` for want of a message is not the end:
/// asked again later, it may yield more.
///
/// # Examples
///
/// ```
/// let (tx, rx) = procwire::channel::<u8>()?;
/// tx.send(1)?;
/// tx.send(2)?;
/// let now: Vec<u8> = rx.try_iter().collect::<Result<_, _>>()?;
/// assert_eq!(now, [1, 2]);
/// assert!(rx.try_iter().next().is_none()); // nothing more yet
/// tx.send(3)?;
/// assert_eq!(rx.try_iter().next().transpose()?, Some(3));
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct TryIter<'a, T> {
    rx: &'a Receiver<T>,
    done: bool,
}

impl<'a, T> TryIter<'a, T> {
    pub(super) fn new(rx: &'a Receiver<T>) -> TryIter<'a, T> {
        TryIter { rx, done: false }
    }
}

impl<T: DeserializeOwned> Iterator for TryIter<'_, T> {
    type Item = Result<T, RecvError>;

    fn next(&mut self) -> Option<Result<T, RecvError>> {
        if self.done {
            return None;
        }
        next_item(self.rx, Wait::Never, &mut self.done)
    }
}

impl<T> fmt::Debug for TryIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TryIter").field("rx", self.rx).finish()
    }
}

impl<T> fmt::Debug for IntoIter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntoIter").field("rx", &self.rx).finish()
    }
}

/// The next item of an iterator whose receives wait as `wait` says: `None`
/// at a clean end of stream (and from then on), or when a receive that
/// does not wait finds nothing.
fn next_item<T: DeserializeOwned>(
    rx: &Receiver<T>,
    wait: Wait,
    done: &mut bool,
) -> Option<Result<T, RecvError>> {
    match rx.recv_wait(wait) {
        Ok(v) => Some(Ok(v)),
        // (Only a receive that does not wait finds nothing.)
        Err(e) if e.kind() == ErrorKind::Empty => None,
        Err(e) => {
            let e = RecvError::new(e);
            if e.kind() == ErrorKind::Disconnected {
                *done = true;
                return None;
            }
            // OS errors repeat; the stream errors are reported once.
            if e.kind() == ErrorKind::Io {
                *done = true;
            }
            Some(Err(e))
        }
    }
}

impl<'a, T: DeserializeOwned> IntoIterator for &'a Receiver<T> {
    type Item = Result<T, RecvError>;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T: DeserializeOwned> IntoIterator for Receiver<T> {
    type Item = Result<T, RecvError>;
    type IntoIter = IntoIter<T>;

    fn into_iter(self) -> IntoIter<T> {
        IntoIter {
            rx: self,
            done: false,
        }
    }
}
