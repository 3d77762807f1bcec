//! A message looked at where it arrived: the borrowing receive.

use std::fmt;
use std::os::fd::OwnedFd;

use serde::Deserialize;

use super::Receiver;
use crate::channel::gate::Wait;
use crate::codec::CodecKind;
use crate::error::{RecvError, Result};

/// A received message in the receiver's own buffer, handed to the closure
/// of [`Receiver::recv_with`]: decode it into types that borrow from it
/// (`&str`, `&[u8]` for a [`ByteBuf`](crate::ByteBuf), `Cow`), or read its payload
/// bytes, without allocating anything for the message. The buffer is the
/// next receive's, so the view lives only as long as the closure runs.
pub struct Received<'a> {
    payload: &'a [u8],
    codec: CodecKind,
    fds: Vec<OwnedFd>,
}

impl<'a> Received<'a> {
    /// The payload as it arrived: the codec's encoding of the message.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Decodes the message with the channel's codec into `B`, which may
    /// borrow from the buffer (`B` need not be the channel's `T`: any type
    /// the payload decodes into). A payload that does not decode is an
    /// [`ErrorKind::Decode`](crate::ErrorKind::Decode) error; the channel
    /// goes on with the next message either way.
    pub fn decode<B: Deserialize<'a>>(&self) -> Result<B> {
        self.codec.decode(self.payload)
    }

    /// The descriptors sent with the message (empty if none were), owned
    /// and close-on-exec; those not taken are closed when the view is.
    pub fn take_fds(&mut self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.fds)
    }
}

impl fmt::Debug for Received<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Received")
            .field("len", &self.payload.len())
            .field("codec", &self.codec)
            .field("fds", &self.fds.len())
            .finish()
    }
}

impl<T> Receiver<T> {
    /// Waits for the next message and hands `f` a view of it in the
    /// receive buffer ([`Received`]): nothing is allocated for the message,
    /// however large (except that a message sent out of line over a
    /// datagram socket is first read out of its memfd, and that a large one
    /// a timed-out [`recv`](Receiver::recv) had begun to read into its byte
    /// string's own buffer is put back together). What `f` returns is
    /// returned.
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::ByteBuf;
    ///
    /// let (tx, rx) = procwire::channel::<(u32, String)>()?;
    /// tx.send((7, "a long text".to_string()))?;
    /// // The text is looked at where it arrived: no String is made.
    /// let len = rx.recv_with(|m| m.decode::<(u32, &str)>().map(|(_, s)| s.len()))??;
    /// assert_eq!(len, 11);
    ///
    /// let (tx, rx) = procwire::channel::<ByteBuf>()?;
    /// // 1 MiB does not fit the pipe: the send finishes in a thread as
    /// // the receive takes it.
    /// let sending = std::thread::spawn(move || tx.send(ByteBuf::from(vec![1u8; 1 << 20])));
    /// let sum: u64 = rx.recv_with(|m| {
    ///     let bytes: &[u8] = m.decode()?; // a ByteBuf, borrowed
    ///     Ok::<_, procwire::Error>(bytes.iter().map(|&b| u64::from(b)).sum())
    /// })??;
    /// assert_eq!(sum, 1 << 20);
    /// sending.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_with<R>(&self, f: impl FnOnce(Received<'_>) -> R) -> Result<R, RecvError> {
        self.recv_with_wait(Wait::Block, f).map_err(RecvError::new)
    }

    pub(crate) fn recv_with_wait<R>(
        &self,
        wait: Wait,
        f: impl FnOnce(Received<'_>) -> R,
    ) -> Result<R> {
        let codec = self.core.codec;
        self.core.recv(
            wait,
            |payload, fds| {
                Ok(f(Received {
                    payload,
                    codec,
                    fds,
                }))
            },
            super::one_piece(),
        )
    }
}
