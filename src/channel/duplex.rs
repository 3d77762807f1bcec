//! A two-way channel over one socket.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Receiver, Sender};
use crate::error::{Result, SendError};

/// Both ends of a conversation on one socket: sends `Out`, receives `In`.
///
/// The lesson's socket pair, typed. [`split`](Duplex::split) gives the two
/// halves to two threads; dropping the sending half shuts down the writing
/// direction, so "close the writer" works here too: the peer's receiver
/// ends, and it can still reply.
///
/// # Examples
///
/// ```
/// let (parent, child) = procwire::duplex::<String, String>()?;
/// parent.send("Heavy lifting".into())?;
/// let job = child.recv()?;
/// child.send(format!("{job} accomplished!"))?;
/// assert_eq!(parent.recv()?, "Heavy lifting accomplished!");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Duplex<Out, In> {
    tx: Sender<Out>,
    rx: Receiver<In>,
}

impl<Out: Serialize, In: DeserializeOwned> Duplex<Out, In> {
    pub(crate) fn from_halves(tx: Sender<Out>, rx: Receiver<In>) -> Duplex<Out, In> {
        Duplex { tx, rx }
    }

    /// Sends, waiting while the buffer is full. See [`Sender::send`].
    pub fn send(&self, value: Out) -> Result<(), SendError<Out>> {
        self.tx.send(value)
    }

    /// Sends if there is room now. See [`Sender::try_send`].
    pub fn try_send(&self, value: Out) -> Result<(), SendError<Out>> {
        self.tx.try_send(value)
    }

    /// Sends, waiting at most `timeout`. See [`Sender::send_timeout`].
    pub fn send_timeout(&self, value: Out, timeout: Duration) -> Result<(), SendError<Out>> {
        self.tx.send_timeout(value, timeout)
    }

    /// Sends with descriptors attached. See [`Sender::send_with_fds`].
    pub fn send_with_fds(&self, value: Out, fds: &[BorrowedFd<'_>]) -> Result<(), SendError<Out>> {
        self.tx.send_with_fds(value, fds)
    }

    /// Writes the rest of a partly written frame. See [`Sender::flush`].
    pub fn flush(&self) -> Result<()> {
        self.tx.flush()
    }

    /// A reply cannot come to a request still half in our buffer: finish it
    /// before waiting to receive.
    fn flush_before_waiting(&self) -> Result<()> {
        if self.tx.core().has_pending() {
            self.tx.flush()?;
        }
        Ok(())
    }

    /// Waits for the next message. See [`Receiver::recv`].
    pub fn recv(&self) -> Result<In> {
        self.flush_before_waiting()?;
        self.rx.recv()
    }

    /// Takes a message if one is complete. See [`Receiver::try_recv`].
    pub fn try_recv(&self) -> Result<In> {
        self.rx.try_recv()
    }

    /// Waits at most `timeout`. See [`Receiver::recv_timeout`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<In> {
        let deadline = Instant::now() + timeout;
        self.flush_before_waiting()?;
        self.rx.recv_deadline(deadline)
    }

    /// Waits for a message and its descriptors. See
    /// [`Receiver::recv_with_fds`].
    pub fn recv_with_fds(&self) -> Result<(In, Vec<OwnedFd>)> {
        self.flush_before_waiting()?;
        self.rx.recv_with_fds()
    }

    /// Sends `request` and waits for one reply: the lesson's "Heavy
    /// lifting" / "accomplished!" exchange.
    pub fn request(&self, request: Out) -> Result<In> {
        self.send(request)?;
        self.recv()
    }

    /// The messages received, until a clean end of stream. See
    /// [`Receiver::iter`].
    pub fn iter(&self) -> super::Iter<'_, In> {
        self.rx.iter()
    }
}

impl<Out, In> Duplex<Out, In> {
    /// The sending half.
    pub fn sender(&self) -> &Sender<Out> {
        &self.tx
    }

    /// The receiving half.
    pub fn receiver(&self) -> &Receiver<In> {
        &self.rx
    }

    /// Watches `child` in both directions; see [`Receiver::supervise`].
    pub fn supervise(&self, child: &crate::Child) {
        self.rx.supervise(child);
    }

    pub(crate) fn conn(&self) -> &std::sync::Arc<crate::transport::Conn> {
        self.rx.core().conn()
    }

    /// Separates the halves, to use them from different threads. Dropping the
    /// [`Sender`] (all its clones) half-closes the socket.
    pub fn split(self) -> (Sender<Out>, Receiver<In>) {
        (self.tx, self.rx)
    }
}

impl<Out, In> AsFd for Duplex<Out, In> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }
}

impl<Out, In> fmt::Debug for Duplex<Out, In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Duplex")
            .field("tx", &self.tx)
            .field("rx", &self.rx)
            .finish()
    }
}
