//! The sending end of a channel.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::gate::{Gate, Wait};
use crate::codec::CodecKind;
use crate::error::{Error, ErrorKind, Result, SendError, SendTimeoutError, TrySendError};
use crate::frame::Outgoing;
use crate::sys::{self, Interest};
use crate::transport::{Conn, Transport, Waited};

mod direct;
mod payload;
use payload::{Encoded, Payload, Value};

/// The sending end of a typed channel.
///
/// `Sender` is `Clone` and `Send`: clones share one descriptor, and a frame
/// is written whole before another thread's frame begins, so frames never
/// interleave. Backpressure is the OS buffer's: [`send`](Sender::send) waits
/// while it is full, [`try_send`](Sender::try_send) returns
/// [`TrySendError::Full`](crate::TrySendError::Full), and procwire queues
/// nothing of its own.
///
/// Dropping the last clone finishes any frame still pending, then (on a
/// stream or seqpacket socket) shuts down the writing direction, so the peer
/// reads end-of-stream even if a copy of the descriptor leaked into another
/// process, unless this end was itself sent in a message
/// ([`fd`](crate::fd)): then the copy that went must keep working, and only
/// closing every copy ends the stream.
///
/// # Examples
///
/// ```
/// let (tx, rx) = procwire::channel::<String>()?;
/// let tx2 = tx.clone();
/// std::thread::spawn(move || tx2.send("from a thread".into()).unwrap())
///     .join()
///     .unwrap();
/// tx.send("from here".into())?;
/// drop(tx); // the last clone: the reader's loop ends
/// let got = rx.iter().collect::<Result<Vec<_>, _>>()?;
/// assert_eq!(got, ["from a thread", "from here"]);
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct Sender<T> {
    core: Arc<SendCore>,
    _marker: PhantomData<fn(T)>,
}

pub(crate) struct SendCore {
    conn: Arc<Conn>,
    codec: CodecKind,
    max_frame: usize,
    linger: Duration,
    out: Gate<Outgoing>,
    /// Whether `out` holds a half-written frame, readable without taking
    /// the gate (a duplex's receive asks before every wait). Written only
    /// by the gate's holder.
    pending: AtomicBool,
    /// Whether the last frame was large (`large_from` bytes or more): the
    /// next blocking send then tries to write its big slices without a copy.
    large: AtomicBool,
    /// Where a frame on this transport counts as large
    /// ([`direct::large`]).
    large_from: usize,
}

impl SendCore {
    pub(crate) fn new(
        conn: Arc<Conn>,
        codec: CodecKind,
        max_frame: usize,
        linger: Duration,
    ) -> SendCore {
        SendCore {
            codec,
            max_frame,
            linger,
            out: Gate::new(Outgoing::default()),
            pending: AtomicBool::new(false),
            large: AtomicBool::new(false),
            large_from: direct::large(conn.transport()),
            conn,
        }
    }

    fn context(&self) -> String {
        format!("sending on a {}", self.conn.transport().name())
    }

    /// Encodes `payload` and writes one frame, attaching `fds` to its first
    /// write.
    fn send(&self, wait: Wait, fds: &[BorrowedFd<'_>], payload: &impl Payload) -> Result<()> {
        let Some(mut pass) = self.out.enter(wait) else {
            return Err(self.not_entered(wait));
        };
        let out = &mut *pass;
        // A frame that a `try_send` or timeout left half-written goes first.
        if out.is_pending() {
            self.finish(out, wait)?;
        }
        if fds.is_empty()
            && self.large.load(Ordering::Relaxed)
            && match self.conn.transport() {
                Transport::Pipe | Transport::Stream => matches!(wait, Wait::Block),
                Transport::Shm => true,
                Transport::Datagram | Transport::SeqPacket => self.conn.carries_fds(),
                Transport::Tcp => false,
            }
            && let Some(sent) = direct::send(self, out, wait, payload)
        {
            return sent;
        }
        // `Fd`s and channel ends inside the message join the list after `fds`.
        let framed = self.conn.transport().framed();
        let codec = self.codec;
        let (encoded, typed) = crate::fd::collecting(fds.len(), || {
            out.encode(framed, self.max_frame, |buf| payload.fill(codec, buf))
        });
        encoded?;
        self.large
            .store(out.len() >= self.large_from, Ordering::Relaxed);
        if (!fds.is_empty() || !typed.is_empty()) && !self.conn.carries_fds() {
            out.discard();
            return Err(Error::new(ErrorKind::Unsupported, self.conn.why_no_fds()));
        }
        self.seal(out)?;
        let all: Vec<BorrowedFd<'_>>;
        let fds = if typed.is_empty() {
            fds
        } else {
            all = fds
                .iter()
                .copied()
                .chain(typed.iter().map(AsFd::as_fd))
                .collect();
            &all
        };
        if self.pump(out, wait, fds)? || out.started() {
            // Accepted (the rest of a frame the kernel took in part is
            // written before the next frame, by `flush`, or when the sender
            // drops). The descriptors in it have left: ends of ours on the
            // same sockets must no longer shut them down.
            for fd in fds {
                crate::ends::departed(*fd);
            }
            return Ok(());
        }
        self.unsend(out);
        Err(not_now(wait))
    }

    /// Seals the encoded frame, on a connection with an encrypted session.
    #[inline(always)]
    fn seal(&self, out: &mut Outgoing) -> Result<()> {
        #[cfg(feature = "tcp")]
        if let Some(s) = self.conn.session() {
            return out
                .seal(|plain, sealed| s.seal(plain, sealed))
                .map_err(|e| Error::io(&self.context(), e));
        }
        let _ = out;
        Ok(())
    }

    /// Forgets a frame nothing of which was written (and gives the session
    /// back the counters its records took).
    fn unsend(&self, out: &mut Outgoing) {
        #[cfg(feature = "tcp")]
        if let Some(s) = self.conn.session()
            && !out.started()
        {
            s.unseal(out.records());
        }
        out.discard();
        self.pending.store(false, Ordering::Relaxed);
    }

    /// Writes the rest of a pending frame.
    fn finish(&self, out: &mut Outgoing, wait: Wait) -> Result<()> {
        if self.pump(out, wait, &[])? {
            Ok(())
        } else {
            Err(not_now(wait))
        }
    }

    /// Writes the pending frame, `fds` with its first bytes. `Ok(false)` when
    /// the wait ran out first; the progress made is kept.
    #[inline(always)]
    fn pump(&self, out: &mut Outgoing, wait: Wait, mut fds: &[BorrowedFd<'_>]) -> Result<bool> {
        let block = matches!(wait, Wait::Block);
        while out.is_pending() {
            match self.conn.write(out.remaining(), fds, block) {
                Ok(n) => {
                    fds = &[];
                    out.advance(n);
                }
                Err(e) if sys::would_block(&e) => {
                    if !self.await_room(wait)? {
                        self.pending.store(true, Ordering::Relaxed);
                        return Ok(false);
                    }
                }
                Err(e) => {
                    out.discard();
                    self.pending.store(false, Ordering::Relaxed);
                    return Err(self.write_error(e, wait));
                }
            }
        }
        self.pending.store(false, Ordering::Relaxed);
        Ok(true)
    }

    /// After a write found no room: waits for it as `wait` allows.
    /// `Ok(true)` to try again, `Ok(false)` when the time to wait is over.
    /// A try_send that finds no room is followed by a wait on the readiness
    /// descriptor: it arms it (shared memory; nothing to do elsewhere), and
    /// if room came meanwhile, says to try once more.
    fn await_room(&self, wait: Wait) -> Result<bool> {
        if wait.expired() {
            return Ok(matches!(wait, Wait::Never) && self.conn.arm_write());
        }
        self.wait_writable(wait)?;
        Ok(true)
    }

    /// Why the sender's gate could not be taken: busy past the wait, or
    /// held by this very thread, which is encoding a message for this
    /// channel right now.
    fn not_entered(&self, wait: Wait) -> Error {
        if self.out.held_here() {
            return Error::new(
                ErrorKind::InvalidInput,
                "a send on this channel from inside the encoding of a message for the same \
                 channel (a Serialize impl that sends): it would wait for itself forever; \
                 send before or after, or on another channel",
            );
        }
        not_now(wait)
    }

    fn wait_writable(&self, wait: Wait) -> Result<()> {
        match self.conn.wait(Interest::Write, wait.deadline()) {
            Ok(Waited::Ready | Waited::TimedOut) => Ok(()),
            Ok(Waited::PeerExited(e)) => Err(e),
            Err(e) => Err(Error::io(&self.context(), e)),
        }
    }

    fn write_error(&self, e: io::Error, wait: Wait) -> Error {
        if sys::is_disconnect(&e) && self.conn.own_write_shut() {
            return Error::io(
                "this end was shut down for writing, in this process or another holding a \
                 copy of it (an async end's `SinkExt::close` does that, and so does dropping \
                 the last procwire sender on a socket unless the descriptor left in a \
                 message or by `into_fd`); the receiver may well be there still",
                e,
            );
        }
        if sys::is_disconnect(&e) {
            // Shared memory learns that its reader died from the side
            // socket and the supervised child's pidfd, and a wait for room
            // reports the child's exit as `PeerExited`: a try that finds
            // it says the same.
            if self.conn.transport() == Transport::Shm
                && let Ok(gone) = self.conn.shm_gone(Duration::ZERO)
                && gone.kind() == ErrorKind::PeerExited
            {
                return gone;
            }
            let err = Error::io("the receiver is gone", e);
            return self
                .conn
                .add_peer_fate(err, wait.fate_within(std::time::Duration::from_millis(100)));
        }
        Error::io(&self.context(), e)
    }

    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// Writes a heartbeat frame if no other frame is being written (one
    /// being written says as much) and the socket has room now; a heartbeat
    /// the kernel takes in part is finished before the next frame.
    #[cfg_attr(not(feature = "tcp"), allow(dead_code))]
    pub(crate) fn heartbeat(&self) {
        let Some(mut pass) = self.out.enter(Wait::Never) else {
            return;
        };
        let out = &mut *pass;
        if out.is_pending() {
            let _ = self.pump(out, Wait::Never, &[]);
            return;
        }
        out.heartbeat();
        if self.seal(out).is_err() {
            return;
        }
        if matches!(self.pump(out, Wait::Never, &[]), Ok(false)) && !out.started() {
            self.unsend(out);
        }
    }

    pub(crate) fn flush(&self, wait: Wait) -> Result<()> {
        self.finish_then(wait, || ())
    }

    /// Writes the rest of a pending frame, then ends the writing direction
    /// as the last sender's drop does ([`Conn::shutdown_write`]): the peer
    /// reads the end of the stream. Nothing is cut short: the gate is held
    /// meanwhile, so a clone's frame in progress is finished first.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn close(&self, wait: Wait) -> Result<()> {
        self.finish_then(wait, || self.conn.shutdown_write())
    }

    /// Enters the gate, writes the rest of a pending frame, then `then`.
    fn finish_then(&self, wait: Wait, then: impl FnOnce()) -> Result<()> {
        let Some(mut pass) = self.out.enter(wait) else {
            return Err(self.not_entered(wait));
        };
        self.finish(&mut pass, wait)?;
        then();
        Ok(())
    }

    /// Whether another thread is sending on this channel right now.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn busy(&self) -> bool {
        self.out.busy()
    }

    /// For a task that found another thread sending: `waker` is woken
    /// when that send ends; `true` if it has ended already.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn wake_when_free(&self, waker: &std::task::Waker) -> bool {
        self.out.wake_when_free(waker)
    }

    /// Whether a frame is half-written and nobody is writing it now (a
    /// sender busy in another thread finishes its own frame).
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// One step of a receive that must not wait while our own frame is
    /// stuck half-written (the peer may be waiting for it before it reads
    /// or answers): writes what the socket takes now. `Ok(true)` once
    /// nothing is pending.
    pub(crate) fn flush_some(&self) -> Result<bool> {
        match self.flush(Wait::Never) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::Full => Ok(!self.has_pending()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for SendCore {
    fn drop(&mut self) {
        // The message was accepted, so it should arrive: finish it, within
        // the linger (an error here means the peer is gone and nobody can
        // read it anyway). If the peer does not take it in time, shut the
        // connection down: it reads a truncated frame, an error, rather
        // than waiting on us forever or taking a later frame's bytes for
        // the rest of this one.
        let _ = self.flush(Wait::within(self.linger));
        if self.has_pending() {
            self.conn.abort();
        }
        self.conn.shutdown_write();
    }
}

fn not_now(wait: Wait) -> Error {
    match wait {
        Wait::Never => Error::fixed(
            ErrorKind::Full,
            "the channel is full (the receiver has not read what was sent); nothing was written",
        ),
        Wait::Until(_) | Wait::Block => Error::fixed(
            ErrorKind::Timeout,
            "the receiver did not make room before the deadline; nothing was written",
        ),
    }
}

impl<T: Serialize> Sender<T> {
    pub(crate) fn from_core(core: Arc<SendCore>) -> Sender<T> {
        Sender {
            core,
            _marker: PhantomData,
        }
    }

    /// Sends `value`; on failure hands it back inside the error `wrap`
    /// makes (each method's own error type).
    fn send_as<E>(
        &self,
        value: T,
        wait: Wait,
        fds: &[BorrowedFd<'_>],
        wrap: fn(T, Error) -> E,
    ) -> Result<(), E> {
        match self.core.send(wait, fds, &Value(&value)) {
            Ok(()) => Ok(()),
            Err(e) => Err(wrap(value, e)),
        }
    }

    /// Sends `value`, waiting while the OS buffer is full.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = procwire::channel::<String>()?;
    /// tx.send("hello".to_string())?;
    /// assert_eq!(rx.recv()?, "hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_as(value, Wait::Block, &[], SendError::new)
    }

    /// Sends `*value`, waiting while the OS buffer is full: [`send`] without
    /// giving the value up, so one buffer can be sent again and again
    /// without a copy of it per message.
    ///
    /// [`send`]: Sender::send
    ///
    /// ```
    /// use procwire::ByteBuf;
    ///
    /// let (tx, rx) = procwire::channel::<ByteBuf>()?;
    /// let block = ByteBuf::from(vec![7u8; 4096]);
    /// tx.send_ref(&block)?;
    /// tx.send_ref(&block)?;
    /// assert_eq!(rx.recv()?, block);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_ref(&self, value: &T) -> Result<()> {
        self.core.send(Wait::Block, &[], &Value(value))
    }

    /// Sends `*value` if there is room now: an async `send_ref`'s step
    /// (`ErrorKind::Full` when there is none, nothing written).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn try_send_ref(&self, value: &T, fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.core.send(Wait::Never, fds, &Value(value))
    }

    /// Sends `value` if the OS buffer has room now; otherwise hands it back
    /// in [`TrySendError::Full`](crate::TrySendError::Full), nothing written.
    ///
    /// If the kernel takes only part of the frame, the message counts as sent
    /// and the rest is written before the next frame (or by
    /// [`flush`](Sender::flush), or when the sender drops), so the receiver
    /// never sees half a message.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.send_as(value, Wait::Never, &[], TrySendError::new)
    }

    /// Sends `value`, waiting at most `timeout` for room; on
    /// [`SendTimeoutError::Timeout`](crate::SendTimeoutError::Timeout) nothing
    /// was written and the value comes back.
    ///
    /// What a timed send of a large frame guarantees: it returns by the
    /// deadline (plus scheduling slack), whatever the peer does. `Ok` means
    /// the message was *accepted*: at least its first bytes are in the
    /// kernel, and the rest follows before any later frame, written by
    /// the next send on this channel, by [`flush`](Sender::flush) or
    /// [`flush_timeout`](Sender::flush_timeout), by a receive on the same
    /// [`Duplex`](crate::Duplex) (which writes it while it waits), or when
    /// the last sender drops (within [`Options::linger`](crate::Options::linger);
    /// after that the peer reads a truncated-frame error, never a short
    /// message). It is not a delivery confirmation: a reply is.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_as(value, Wait::within(timeout), &[], SendTimeoutError::new)
    }

    /// Like [`send_timeout`](Sender::send_timeout) with an instant.
    pub fn send_deadline(&self, value: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
        self.send_as(value, Wait::Until(deadline), &[], SendTimeoutError::new)
    }

    /// Sends `value` with open descriptors attached (`SCM_RIGHTS`). The
    /// receiver gets its own copies of them from
    /// [`Receiver::recv_with_fds`](crate::Receiver::recv_with_fds); the
    /// caller keeps its own. At most 253 at once; over a pipe this is an
    /// [`ErrorKind::Unsupported`] error.
    pub fn send_with_fds(&self, value: T, fds: &[BorrowedFd<'_>]) -> Result<(), SendError<T>> {
        self.send_as(value, Wait::Block, fds, SendError::new)
    }
}

impl<T> Sender<T> {
    /// Sends `bytes` as one frame, bypassing the codec (the argument of a
    /// task, already encoded).
    pub(crate) fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.send_bytes_waiting(bytes, Wait::Block)
    }

    /// [`send_bytes`](Sender::send_bytes), waiting for room as `wait`
    /// says.
    pub(crate) fn send_bytes_waiting(&self, bytes: &[u8], wait: Wait) -> Result<()> {
        self.core.send(wait, &[], &Encoded(bytes))
    }

    /// Writes the rest of a frame that [`try_send`](Sender::try_send) or
    /// [`send_timeout`](Sender::send_timeout) left partly written.
    pub fn flush(&self) -> Result<()> {
        self.core.flush(Wait::Block)
    }

    /// [`flush`](Sender::flush), waiting at most `timeout`;
    /// [`ErrorKind::Timeout`] if the frame is still not whole by then (the
    /// progress made is kept).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (tx, rx) = procwire::channel::<u8>()?;
    /// tx.try_send(1)?;
    /// tx.flush_timeout(Duration::from_secs(1))?; // nothing pending: at once
    /// assert_eq!(rx.recv()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flush_timeout(&self, timeout: Duration) -> Result<()> {
        self.core.flush(Wait::within(timeout))
    }

    /// The codec this sender encodes with.
    pub fn codec(&self) -> CodecKind {
        self.core.codec
    }

    /// The maximum frame size (payload bytes) this sender accepts.
    pub fn max_frame(&self) -> usize {
        self.core.max_frame
    }

    /// The largest message this sender accepts: the maximum frame size, on
    /// every transport (a message too large for one datagram, or for half a
    /// shared-memory ring, travels out of line).
    pub fn max_message(&self) -> usize {
        self.core.max_frame
    }

    pub(crate) fn core(&self) -> &Arc<SendCore> {
        &self.core
    }

    /// Takes the descriptor out of this sender, for use outside procwire
    /// (or to hand over by a route procwire cannot see), finishing a frame
    /// still half-written first. Unlike dropping, it leaves the socket's
    /// writing direction open: the returned descriptor (a copy; this end's
    /// own is closed) goes on working. Other clones of this sender stay
    /// usable, and no longer shut the socket down when they drop.
    ///
    /// A shared-memory end has no one descriptor to give:
    /// [`ErrorKind::Unsupported`].
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::{Kind, Options, SocketPair};
    ///
    /// let (tx, rx) = SocketPair::new(Kind::Stream).channel::<u32>()?;
    /// let fd = tx.into_fd()?;
    /// let tx = Options::new().sender_from::<u32>(fd)?; // the same socket, still open
    /// tx.send(5)?;
    /// assert_eq!(rx.recv()?, 5);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn into_fd(self) -> Result<std::os::fd::OwnedFd> {
        self.core.flush(Wait::Block)?;
        self.core.conn.take_fd()
    }

    /// Watches `child`: a send waiting for room ends when the child exits,
    /// with an [`ErrorKind::PeerExited`] error carrying its exit status.
    pub fn supervise(&self, child: &crate::Child) {
        self.core.conn.supervise(Arc::clone(child.state()) as _);
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        Sender {
            core: Arc::clone(&self.core),
            _marker: PhantomData,
        }
    }
}

/// The descriptor that turns writable when there is room, for poll(2),
/// epoll or an async runtime: follow up with [`try_send`](Sender::try_send)
/// until [`Full`](crate::TrySendError::Full), then wait again. On a pipe or socket this
/// is the descriptor itself; on shared memory, an eventfd that turns
/// writable when the reader makes room after a `try_send` found the ring
/// full (which arms it), or when the reader leaves. (A reader *process*
/// that dies is noticed by the next send, not by this descriptor.)
impl<T> AsFd for Sender<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.core.conn.send_ready_fd()
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("transport", &self.core.conn.transport().name())
            .field("codec", &self.core.codec)
            .finish_non_exhaustive()
    }
}
