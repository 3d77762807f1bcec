//! Iterating over a receiver's messages until a clean end of stream.

use std::fmt;

use serde::de::DeserializeOwned;

use super::Receiver;
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
        next_item(self.rx, &mut self.done)
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
        next_item(&self.rx, &mut self.done)
    }
}

impl<T> fmt::Debug for IntoIter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntoIter").field("rx", &self.rx).finish()
    }
}

fn next_item<T: DeserializeOwned>(
    rx: &Receiver<T>,
    done: &mut bool,
) -> Option<Result<T, RecvError>> {
    match rx.recv() {
        Ok(v) => Some(Ok(v)),
        Err(e) if e.kind() == ErrorKind::Disconnected => {
            *done = true;
            None
        }
        Err(e) => {
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
