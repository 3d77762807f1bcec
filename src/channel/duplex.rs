//! A two-way channel over one socket.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::gate::Wait;
use super::hello::WireName;
use super::{Received, Receiver, Sender};
use crate::error::{
    RecvError, RecvTimeoutError, Result, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

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

    /// Sends `*value` without giving it up. See [`Sender::send_ref`].
    pub fn send_ref(&self, value: &Out) -> Result<()> {
        self.tx.send_ref(value)
    }

    /// Sends if there is room now. See [`Sender::try_send`].
    pub fn try_send(&self, value: Out) -> Result<(), TrySendError<Out>> {
        self.tx.try_send(value)
    }

    /// Sends, waiting at most `timeout`. See [`Sender::send_timeout`].
    pub fn send_timeout(&self, value: Out, timeout: Duration) -> Result<(), SendTimeoutError<Out>> {
        self.tx.send_timeout(value, timeout)
    }

    /// Sends, waiting until `deadline` at most. See [`Sender::send_deadline`].
    pub fn send_deadline(
        &self,
        value: Out,
        deadline: Instant,
    ) -> Result<(), SendTimeoutError<Out>> {
        self.tx.send_deadline(value, deadline)
    }

    /// Sends with descriptors attached. See [`Sender::send_with_fds`].
    pub fn send_with_fds(&self, value: Out, fds: &[BorrowedFd<'_>]) -> Result<(), SendError<Out>> {
        self.tx.send_with_fds(value, fds)
    }

    /// Writes the rest of a partly written frame. See [`Sender::flush`].
    pub fn flush(&self) -> Result<()> {
        self.tx.flush()
    }

    /// Waits at most `timeout` for the rest of a partly written frame. See
    /// [`Sender::flush_timeout`].
    pub fn flush_timeout(&self, timeout: Duration) -> Result<()> {
        self.tx.flush_timeout(timeout)
    }

    /// Receives with `wait`, writing our own half-written frame meanwhile:
    /// the peer may need all of it before it reads on or answers, and it
    /// may itself be waiting with a half-written frame of its own, so a
    /// receive waits for readable *or* writable and never flushes without
    /// the caller's deadline.
    fn recv_writing<R>(&self, wait: Wait, take: impl Fn(Wait) -> Result<R>) -> Result<R> {
        let core = self.tx.core();
        while core.has_pending() && !core.flush_some()? {
            match take(Wait::Never) {
                Err(e) if e.kind() == crate::ErrorKind::Empty => {}
                other => return other,
            }
            if wait.expired() {
                return Err(crate::Error::new(
                    crate::ErrorKind::Timeout,
                    "no complete message arrived before the deadline (and our own frame is \
                     still being written)",
                ));
            }
            self.rx.wait_either(wait.deadline())?;
        }
        take(wait)
    }

    /// Waits for the next message. See [`Receiver::recv`].
    pub fn recv(&self) -> Result<In, RecvError> {
        self.recv_writing(Wait::Block, |w| self.rx.recv_wait(w))
            .map_err(RecvError::new)
    }

    /// Takes a message if one is complete. See [`Receiver::try_recv`].
    pub fn try_recv(&self) -> Result<In, TryRecvError> {
        self.rx.try_recv()
    }

    /// Waits at most `timeout`. See [`Receiver::recv_timeout`]. Returns by
    /// the deadline, also while a frame this end sent is still being
    /// written (it goes on writing it while it waits).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<In, RecvTimeoutError> {
        self.recv_writing(Wait::within(timeout), |w| self.rx.recv_wait(w))
            .map_err(RecvTimeoutError::new)
    }

    /// [`recv_timeout`](Duplex::recv_timeout) with an instant. See
    /// [`Receiver::recv_deadline`].
    pub fn recv_deadline(&self, deadline: Instant) -> Result<In, RecvTimeoutError> {
        self.recv_writing(Wait::Until(deadline), |w| self.rx.recv_wait(w))
            .map_err(RecvTimeoutError::new)
    }

    /// Waits for the next message and decodes it into `*place`, reusing
    /// what it holds. See [`Receiver::recv_into`].
    pub fn recv_into(&self, place: &mut In) -> Result<(), RecvError> {
        self.recv_into_writing(Wait::Block, place)
            .map_err(RecvError::new)
    }

    /// [`recv_into`](Duplex::recv_into) if a message is complete. See
    /// [`Receiver::try_recv_into`].
    pub fn try_recv_into(&self, place: &mut In) -> Result<(), TryRecvError> {
        self.rx.try_recv_into(place)
    }

    /// [`recv_into`](Duplex::recv_into), waiting at most `timeout`, as
    /// [`recv_timeout`](Duplex::recv_timeout) does.
    pub fn recv_into_timeout(
        &self,
        place: &mut In,
        timeout: Duration,
    ) -> Result<(), RecvTimeoutError> {
        self.recv_into_writing(Wait::within(timeout), place)
            .map_err(RecvTimeoutError::new)
    }

    fn recv_into_writing(&self, wait: Wait, place: &mut In) -> Result<()> {
        let place = std::cell::RefCell::new(place);
        self.recv_writing(wait, |w| self.rx.recv_into_wait(w, &mut place.borrow_mut()))
    }

    /// Waits for the next message and hands it to `f` where it arrived,
    /// undecoded: `f` decodes it, borrowing strings and byte strings from
    /// the receive buffer. See [`Receiver::recv_with`].
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = procwire::duplex::<String, String>()?;
    /// a.send("Heavy lifting".into())?;
    /// let job_len = b.recv_with(|m| m.decode::<&str>().map(str::len))??;
    /// assert_eq!(job_len, 13);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_with<R>(&self, f: impl FnOnce(Received<'_>) -> R) -> Result<R, RecvError> {
        // Only a receive that takes a message calls `f`, and that one ends
        // the wait.
        let f = std::cell::Cell::new(Some(f));
        self.recv_writing(Wait::Block, |w| {
            self.rx
                .recv_with_wait(w, |m| f.take().expect("called by one receive only")(m))
        })
        .map_err(RecvError::new)
    }

    /// Waits for a message and its descriptors. See
    /// [`Receiver::recv_with_fds`].
    pub fn recv_with_fds(&self) -> Result<(In, Vec<OwnedFd>), RecvError> {
        self.recv_writing(Wait::Block, |w| self.rx.recv_with_fds_wait(w))
            .map_err(RecvError::new)
    }

    /// Sends `request` and waits for one reply: the lesson's "Heavy
    /// lifting" / "accomplished!" exchange. It waits as [`recv`](Duplex::recv)
    /// does: until the reply, the peer's end or (supervised) its death. For a
    /// deadline, use [`rpc`](crate::rpc) (`Client::call_timeout`): its
    /// replies carry the call's id, where on a plain duplex a reply that
    /// came after its deadline would be taken for the next request's.
    pub fn request(&self, request: Out) -> Result<In> {
        self.send(request)?;
        Ok(self.recv()?)
    }

    /// Exchanges a hello with the peer and checks it: both speak the same
    /// wire format version, and what each sends is what the other expects
    /// to receive. A mismatched peer is refused at once
    /// ([`ErrorKind::InvalidInput`], naming both sides' types) instead of
    /// failing on the first decode.
    ///
    /// Both ends must call it (or [`hello_as`](Duplex::hello_as)), as their
    /// first exchange. The types are named by [`WireName`]: names the
    /// program declares, the same in every language and compiler version
    /// (`docs/wire-format.md` §7 lists the standard ones), so a peer in
    /// Python or Ruby sends its own.
    ///
    /// [`ErrorKind::InvalidInput`]: crate::ErrorKind::InvalidInput
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::WireName;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Job { what: String }
    /// impl WireName for Job {
    ///     const WIRE_NAME: &'static str = "lesson.Job";
    /// }
    ///
    /// let (parent, child) = procwire::duplex::<Job, String>()?;
    /// let peer = std::thread::spawn(move || child.hello().map(|()| child));
    /// parent.hello()?;
    /// let _child = peer.join().unwrap()?;
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn hello(&self) -> Result<()>
    where
        Out: WireName,
        In: WireName,
    {
        self.hello_as(Out::WIRE_NAME, In::WIRE_NAME)
    }

    /// [`hello`](Duplex::hello) with the names given here: for types that
    /// have no [`WireName`] (a `Vec<Job>`, say), or names decided at run
    /// time.
    ///
    /// ```
    /// let (a, b) = procwire::duplex::<Vec<u32>, String>()?;
    /// let peer = std::thread::spawn(move || b.hello_as("string", "[u32]").map(|()| b));
    /// a.hello_as("[u32]", "string")?;
    /// # peer.join().unwrap()?;
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn hello_as(&self, sends: &str, receives: &str) -> Result<()> {
        self.hello_waiting(sends, receives, Wait::Block)
    }

    /// [`hello`](Duplex::hello) within `timeout`: it returns by then, with
    /// an [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) error if the
    /// peer has not said its hello (a program that does not speak procwire,
    /// waiting for something else). After a timeout the peer's hello may
    /// still come, to be taken for a message: drop the channel.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (a, _silent) = procwire::duplex::<String, String>()?;
    /// let e = a.hello_timeout(Duration::from_millis(50)).unwrap_err();
    /// assert_eq!(e.kind(), procwire::ErrorKind::Timeout);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn hello_timeout(&self, timeout: Duration) -> Result<()>
    where
        Out: WireName,
        In: WireName,
    {
        self.hello_as_timeout(Out::WIRE_NAME, In::WIRE_NAME, timeout)
    }

    /// [`hello_as`](Duplex::hello_as) within `timeout`, as
    /// [`hello_timeout`](Duplex::hello_timeout).
    pub fn hello_as_timeout(&self, sends: &str, receives: &str, timeout: Duration) -> Result<()> {
        self.hello_waiting(sends, receives, Wait::within(timeout))
    }

    fn hello_waiting(&self, sends: &str, receives: &str, wait: Wait) -> Result<()> {
        let codec = self.rx.codec();
        let (ours, bytes) = super::hello::Hello::ours(sends, receives, codec)?;
        self.tx.send_bytes_waiting(&bytes, wait)?;
        self.tx.core().flush(wait)?;
        let theirs: super::hello::Hello =
            self.recv_writing(wait, |w| self.rx.recv_raw_wait(w, |b| codec.decode(b)))??;
        ours.check(&theirs)
    }

    /// The messages received, until a clean end of stream. See
    /// [`Receiver::iter`].
    pub fn iter(&self) -> super::Iter<'_, In> {
        self.rx.iter()
    }

    /// The messages there now, taken without waiting. See
    /// [`Receiver::try_iter`].
    pub fn try_iter(&self) -> super::TryIter<'_, In> {
        self.rx.try_iter()
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
    ///
    /// # Examples
    ///
    /// ```
    /// let (parent, child) = procwire::duplex::<String, String>()?;
    /// let (tx, rx) = parent.split(); // a sender and a receiver, for two threads
    /// let echo = std::thread::spawn(move || child.send(child.recv().unwrap()).unwrap());
    /// tx.send("ping".into())?;
    /// assert_eq!(rx.recv()?, "ping");
    /// echo.join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
