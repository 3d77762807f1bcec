//! Awaitable channel ends, on tokio (feature `tokio`).
//!
//! An async end wraps a blocking one and drives it with its non-blocking
//! steps: [`try_recv`](crate::Receiver::try_recv) and
//! [`try_send`](crate::Sender::try_send), and between them the end's
//! readiness descriptor (the socket or pipe itself; for shared memory the
//! descriptor a `try_*` that found nothing arms) registered with tokio's
//! reactor through [`AsyncFd`]. No thread per channel, no timer polling:
//! a task that waits sleeps in the runtime's epoll like any tokio socket,
//! and one that finds another thread sending (a blocking clone of its
//! sender, which holds the channel while it waits for room) or receiving
//! sleeps until that thread leaves the channel, which wakes it.
//! Every transport works the same way (pipes, the three socket kinds, Unix
//! paths, `tcp://`, shared memory), with the channel's codec and
//! descriptors in messages, and a supervised child's death ends a pending
//! `recv().await` or `send().await` with its exit status or signal, as it
//! ends a blocking wait.
//!
//! An end converts from a blocking one inside a runtime
//! ([`Receiver::new`], or [`crate::Receiver::into_async`]) and back
//! ([`Receiver::into_blocking`]). It stays with that runtime's reactor, as
//! tokio's own sockets do: once the runtime shuts down, a wait on the end
//! fails with an error that says so (never a hang, and never a supervised
//! child's death that did not happen), and `into_blocking()` then
//! `into_async()` inside another runtime move it there, nothing lost.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> procwire::Result<()> {
//! let (boss, worker) = procwire::duplex::<String, String>()?;
//! let (boss, worker) = (boss.into_async()?, worker.into_async()?);
//! let job = tokio::spawn(async move {
//!     let task = worker.recv().await?;
//!     worker.send(format!("{task} accomplished!")).await?;
//!     Ok::<(), procwire::Error>(())
//! });
//! boss.send("Heavy lifting".to_string()).await?;
//! assert_eq!(boss.recv().await?, "Heavy lifting accomplished!");
//! job.await.expect("no panic")?;
//! # Ok(())
//! # }
//! ```
//!
//! # Cancellation
//!
//! Dropping a future of this module at any await point never tears a frame
//! and never loses a message that was taken off the transport:
//!
//! | future dropped while… | what happened |
//! |---|---|
//! | `recv()` or `recv_with(f)` waits | nothing was taken (`f` has not run): the next `recv` gets the next message (bytes of a frame that arrived in part stay buffered for it) |
//! | `send(v)` waits for room | nothing of `v` was written; `v` is dropped |
//! | `send(v)` writes the rest of its frame | the frame stays pending; the next `send`, `flush` or `close` finishes it first (never a frame torn or interleaved) |
//! | `flush()` waits | as above |
//! | `SinkExt::send(v)` or `feed(v)` waits | either `v` was not handed over yet (it goes with the future) or it is in the sink's buffer, and the next write on the end sends it first (or it is dropped with the end); never half a frame |
//! | `hello()` waits | our hello may have gone and the peer's be unread: drop the channel |
//! | `request(v)` waits for its reply | `v` may have gone: its reply, when it comes, is the next receive's ([`rpc::Client`] matches replies to calls) |
//!
//! Any number of tasks may share an end (`&self` methods): they take turns
//! per direction, fairly, and a turn given up by a dropped future passes on.
//! The `poll_*` methods and the `Stream`/`Sink` impls serve one task at a
//! time, as tokio's own `poll_*` methods do.
//!
//! A `send` resolves once its whole frame is written, as a blocking send
//! returns (a peer that waits for the last bytes of a frame must get them
//! even if this end's next step is a receive elsewhere); on failure the
//! value comes back in the error. A frame left half-written by a dropped
//! future is written before the next frame, by `flush().await`, or when
//! the sender is dropped (then on tokio's blocking pool, within the
//! channel's linger, never on the runtime thread).
//!
//! A sender and a duplex are also a `Sink`, and a duplex a `Stream`, so
//! `SinkExt` and `StreamExt` work on them (`rx.forward(tx)` is an echo; a
//! duplex [splits](Duplex::split) into a sender and a receiver for two
//! tasks). The `Sink` buffers one message: `start_send` keeps it, and the
//! next write on the end (the sink's `poll_ready` or `poll_flush`, a
//! `send`, a `flush`, from any task) sends it first, so messages leave in
//! the order they were handed over, whichever way. One still buffered when
//! the end is dropped is dropped with it, as a `Sink`'s unflushed message
//! is: `flush` or `close` delivers it. `SinkExt::close` (which `forward`
//! calls when its stream ends) then ends the writing direction, as
//! dropping the last sender does: the peer reads the end of the stream
//! while a duplex still receives its answers (a pipe's reader sees the end
//! when the write end is dropped, as with tokio's own pipe).
//!
//! # Endpoints and children
//!
//! [`listen`], [`Listener::accept`] (or [`Listener::incoming`], a stream
//! of peers) and [`connect`] open `unix:`,
//! `tcp://` and (feature `zmq`) `zmq+tcp://` and `zmq+ipc://` endpoints on
//! the runtime. A `tcp://` endpoint keeps every
//! promise of the blocking one ([`crate::endpoint`]: the key policy, the
//! authenticated and encrypted session, connect and handshake deadlines,
//! retries, heartbeats and the bound on reporting a silent peer), with no
//! thread: one task answers a listener's handshakes (a flood of idle
//! connections holds up no real one) and one task per connection sends
//! its heartbeats and checks the peer's. A blocking [`crate::Listener`]
//! turns async and back ([`crate::Listener::into_async`],
//! [`Listener::into_blocking`]) keeping the handshakes under way and the
//! connections not yet accepted. A `tcp://` end dropped while the peer has
//! not acknowledged what it sent lingers (as a blocking one does) on the
//! blocking pool. On ZeroMQ, `connect` is a DEALER and a listener a
//! ROUTER whose every peer is a connection to accept, each carried to its
//! duplex by a task (two hand-overs a message), as the blocking ones are
//! by a thread (and a listener turns blocking and back: its ROUTER stays
//! on the runtime it was opened on); the sockets themselves,
//! of every kind and without that carrying, are awaited through [`zmq`]:
//! the `zeromq` crate's socket on your runtime, with no thread of
//! procwire's.
//!
//! [`Command::channel_async`](crate::Command::channel_async) and
//! [`Task::spawn_async`](crate::Task::spawn_async) hand out awaitable
//! channels to a child directly; supervision starts when the child does.

use std::future::poll_fn;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use ::tokio::io::Interest as Want;
use ::tokio::io::unix::AsyncFd;
use serde::Serialize;
use serde::de::DeserializeOwned;

mod endpoint;
#[cfg(any(feature = "zmq", feature = "nats"))]
mod in_flight;
mod io;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;
mod pool;
pub mod rpc;
#[cfg(feature = "tcp")]
mod tcp;
mod turn;
#[cfg(feature = "zmq")]
#[cfg_attr(docsrs, doc(cfg(feature = "zmq")))]
pub mod zmq;
#[cfg(feature = "zmq")]
mod zmq_link;
pub use endpoint::{Incoming, Listener, connect, listen};
pub use io::{PipeReader, PipeWriter, Socket};
pub use pool::{Map, Pool};

use crate::channel::Wait;
use crate::error::{Error, ErrorKind, RecvError, Result, SendError};
use crate::transport::{Conn, Transport};

/// A descriptor registered with the runtime: a duplicate of the end's own,
/// so that two ends on one socket (a duplex) or an end whose descriptor is
/// also watched elsewhere register without clashing.
#[derive(Debug)]
struct Registered(AsyncFd<OwnedFd>);

/// An error unless called inside a tokio runtime.
fn in_runtime() -> Result<()> {
    match ::tokio::runtime::Handle::try_current() {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::new(
            ErrorKind::InvalidInput,
            "an async procwire end is made inside a tokio runtime (with its I/O driver \
             enabled): call this from async code or inside `Runtime::enter`",
        )),
    }
}

/// A readiness wait that failed: tokio fails one only when the reactor the
/// descriptor is registered with has shut down, its runtime dropped while
/// the end lives on.
fn reactor_gone(doing: &str, e: std::io::Error) -> Error {
    Error::io(
        &format!(
            "{doing}: the tokio runtime this end was made async on has shut down, and an async \
             end stays with its runtime's reactor (call `into_blocking()`, then `into_async()` \
             inside the runtime that goes on)"
        ),
        e,
    )
}

impl Registered {
    /// A duplicate of `fd`, registered.
    fn new(fd: BorrowedFd<'_>, want: Want) -> Result<Registered> {
        let dup = fd
            .try_clone_to_owned()
            .map_err(|e| Error::io("duplicating a descriptor for the tokio reactor", e))?;
        Registered::own(dup, want)
    }

    /// `fd` itself, registered.
    fn own(fd: OwnedFd, want: Want) -> Result<Registered> {
        in_runtime()?;
        crate::sys::reactor::register(fd, want)
            .map(Registered)
            .map_err(|e| Error::io("registering a descriptor with the tokio reactor", e))
    }
}

/// What an async end waits on: its readiness descriptors, and the pidfd of
/// the child it supervises; and the turns its tasks take.
///
/// tokio's `poll_*_ready` wakes one task per registration and direction
/// (the last that polled), so each direction has registrations of its own
/// (duplicates of the descriptor: a duplex's receive, which also waits for
/// room to finish a frame of ours, never takes a sender's wake-up), and
/// tasks take turns per direction (`reading`, `writing`: fair, and
/// cancel-safe) so that one task at a time waits on each.
#[derive(Debug)]
struct Waker {
    /// The receiving side's descriptor; also for room when the receive
    /// side writes (a duplex on one socket).
    read: Option<Registered>,
    /// Whether `read` also reports room.
    room: bool,
    write: Option<Registered>,
    /// The child's pidfd, once per direction, registered when a wait first
    /// asks (the child may be attached after the end turned async: a
    /// `Command`'s channel is made before the spawn).
    peer: [std::sync::OnceLock<Registered>; 2],
    conn: Arc<Conn>,
    reading: turn::Turn,
    writing: turn::Turn,
}

const READ: usize = 0;
const WRITE: usize = 1;

impl Waker {
    fn new(
        conn: &Arc<Conn>,
        read: Option<BorrowedFd<'_>>,
        write: Option<BorrowedFd<'_>>,
    ) -> Result<Waker> {
        in_runtime()?;
        conn.for_async()
            .map_err(|e| Error::io("preparing a pipe end for the runtime", e))?;
        let room = matches!((read, write), (Some(r), Some(w)) if r.as_raw_fd() == w.as_raw_fd());
        let read_want = if room {
            Want::READABLE | Want::WRITABLE
        } else {
            Want::READABLE
        };
        Ok(Waker {
            read: read.map(|fd| Registered::new(fd, read_want)).transpose()?,
            room,
            write: write
                .map(|fd| Registered::new(fd, Want::WRITABLE))
                .transpose()?,
            peer: Default::default(),
            conn: Arc::clone(conn),
            reading: turn::Turn::default(),
            writing: turn::Turn::default(),
        })
    }

    /// Waits for room to send after a try found none: `Ready(Ok)` to try
    /// again.
    fn poll_room(&self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let Some(Registered(fd)) = &self.write else {
            return Poll::Ready(Err(Error::new(
                ErrorKind::Unsupported,
                "this end does not send",
            )));
        };
        match fd.poll_write_ready(cx) {
            // Cleared before the next try: readiness that comes after it
            // wakes this task again (tokio's edge-triggered protocol).
            Poll::Ready(Ok(mut guard)) => {
                guard.clear_ready();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(reactor_gone("waiting for a channel", e))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether the supervised child has exited (its pidfd is readable),
    /// asked by the `dir` side. Only the pidfd's readiness: a reactor that
    /// shut down (the end outlived the runtime it was made async on) says
    /// nothing of the child, and the channel's own wait reports it.
    fn peer_gone(&self, cx: &mut Context<'_>, dir: usize) -> bool {
        matches!(self.poll_peer(cx, dir), Poll::Ready(Ok(())))
    }

    /// The supervised child's pidfd polled for readiness by the `dir`
    /// side: `Pending` while it runs, and while no child is supervised or
    /// no descriptor is left to register its pidfd (the wait still ends
    /// when the child's end of the channel closes with it).
    fn poll_peer(&self, cx: &mut Context<'_>, dir: usize) -> Poll<std::io::Result<()>> {
        let Some(p) = self.conn.peer() else {
            return Poll::Pending;
        };
        let registered = match self.peer[dir].get() {
            Some(r) => r,
            None => match Registered::new(p.pidfd(), Want::READABLE) {
                // One task waits per direction (the turns): no race to set.
                Ok(r) => self.peer[dir].get_or_init(|| r),
                Err(_) => return Poll::Pending,
            },
        };
        registered.0.poll_read_ready(cx).map_ok(drop)
    }

    /// After an end of stream or a broken pipe on a supervised end, waits
    /// a moment on the reactor (not the thread) for the child's exit, and
    /// names it in the error, as a blocking end does (its step took no
    /// time for it). Cancel-safe: the end of stream stays for the next
    /// step.
    async fn with_fate<R>(&self, r: Result<R>, dir: usize) -> Result<R> {
        let e = match r {
            Err(e)
                if e.exit_status().is_none()
                    && self.conn.peer().is_some()
                    && matches!(
                        e.kind(),
                        ErrorKind::Disconnected | ErrorKind::UnexpectedEof | ErrorKind::Io
                    ) =>
            {
                e
            }
            other => return other,
        };
        // A death mid-frame: the pidfd turns readable just after the dying
        // process's descriptors close.
        let within = match e.kind() {
            ErrorKind::UnexpectedEof => std::time::Duration::from_secs(1),
            _ => std::time::Duration::from_millis(100),
        };
        let _ = ::tokio::time::timeout(
            within,
            // (Over at once when the reactor has shut down: nothing more
            // can be learnt.)
            poll_fn(|cx| self.poll_peer(cx, dir).map(drop)),
        )
        .await;
        Err(self.conn.add_peer_fate(e, std::time::Duration::ZERO))
    }

    /// The error a wait that the child's exit ended gets.
    fn peer_exited(&self) -> Error {
        match self.conn.peer() {
            Some(p) => match p.exit_status(Some(Instant::now())) {
                Ok(status) => p.exited_error(status),
                Err(e) => Error::io("reading the exit status of the supervised child", e),
            },
            None => Error::new(ErrorKind::PeerExited, "the supervised child exited"),
        }
    }
}

/// The receiving end of a channel, awaitable. See the [module docs](self).
pub struct Receiver<T> {
    inner: crate::Receiver<T>,
    /// Shared with the sender of a split duplex.
    waker: Arc<Waker>,
    done: bool,
}

impl<T: DeserializeOwned> Receiver<T> {
    /// Makes `rx` awaitable; inside a tokio runtime.
    pub fn new(rx: crate::Receiver<T>) -> Result<Receiver<T>> {
        let waker = Arc::new(Waker::new(rx.core().conn(), Some(rx.as_fd()), None)?);
        Ok(Receiver {
            inner: rx,
            waker,
            done: false,
        })
    }

    /// Waits for the next message: the async [`recv`](crate::Receiver::recv).
    /// Cancel-safe: a dropped `recv` took nothing.
    pub async fn recv(&self) -> Result<T, RecvError> {
        let _turn = self.waker.reading.lock().await;
        let take = || self.inner.recv_wait(Wait::Never);
        let r = poll_fn(|cx| poll_take(&self.waker, cx, &self.inner, &take, None)).await;
        self.waker.with_fate(r, READ).await.map_err(RecvError::new)
    }

    /// Awaits the next message and the descriptors sent with it, as
    /// [`crate::Receiver::recv_with_fds`]. Cancel-safe.
    pub async fn recv_with_fds(&self) -> Result<(T, Vec<OwnedFd>), RecvError> {
        let _turn = self.waker.reading.lock().await;
        let take = || self.inner.recv_with_fds_wait(Wait::Never);
        let r = poll_fn(|cx| poll_take(&self.waker, cx, &self.inner, &take, None)).await;
        self.waker.with_fate(r, READ).await.map_err(RecvError::new)
    }

    /// Awaits the next message and hands `f` a view of it in the receive
    /// buffer, as [`crate::Receiver::recv_with`]: nothing is allocated for
    /// the message, however large. What `f` returns is returned.
    /// Cancel-safe: `f` runs in the poll that takes the message, and a
    /// dropped `recv_with` took nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (tx, rx) = procwire::channel::<(u32, String)>()?;
    /// let rx = rx.into_async()?;
    /// tx.send((7, "a long text".to_string()))?;
    /// // The text is looked at where it arrived: no String is made.
    /// let len = rx
    ///     .recv_with(|m| m.decode::<(u32, &str)>().map(|(_, s)| s.len()))
    ///     .await??;
    /// assert_eq!(len, 11);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_with<R>(
        &self,
        f: impl FnOnce(crate::Received<'_>) -> R,
    ) -> Result<R, RecvError> {
        let _turn = self.waker.reading.lock().await;
        let f = Lent::new(f);
        let take = || self.inner.recv_with_wait(Wait::Never, |m| f.run(m));
        let r = poll_fn(|cx| poll_take(&self.waker, cx, &self.inner, &take, None)).await;
        self.waker.with_fate(r, READ).await.map_err(RecvError::new)
    }

    /// Awaits the next message and decodes it into `*place`, reusing what
    /// it holds, as [`crate::Receiver::recv_into`]. Cancel-safe: the
    /// message is taken and decoded in one poll, and a dropped `recv_into`
    /// took nothing and left `place` as it was.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use procwire::ByteBuf;
    ///
    /// let (tx, rx) = procwire::channel::<ByteBuf>()?;
    /// let rx = rx.into_async()?;
    /// let mut buf = ByteBuf::from(Vec::with_capacity(4096));
    /// for n in [4096, 10] {
    ///     tx.send(ByteBuf::from(vec![1u8; n]))?;
    ///     rx.recv_into(&mut buf).await?;
    ///     assert_eq!(buf.len(), n);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_into(&self, place: &mut T) -> Result<(), RecvError> {
        let _turn = self.waker.reading.lock().await;
        let place = std::cell::RefCell::new(place);
        let take = || {
            self.inner
                .recv_into_wait(Wait::Never, &mut place.borrow_mut())
        };
        let r = poll_fn(|cx| poll_take(&self.waker, cx, &self.inner, &take, None)).await;
        self.waker.with_fate(r, READ).await.map_err(RecvError::new)
    }

    /// Takes a message if a complete one is there, without waiting.
    pub fn try_recv(&self) -> Result<T, crate::TryRecvError> {
        self.inner.try_recv()
    }

    /// Watches `child`, as [`crate::Receiver::supervise`]: its exit ends a
    /// pending `recv().await` with its exit status. Channels of
    /// [`Command::channel_async`](crate::Command::channel_async) watch
    /// their child already.
    pub fn supervise(&self, child: &crate::Child) {
        self.inner.supervise(child);
    }

    /// The next message, or `Pending` with this task woken when one may be
    /// there. For one task at a time, as tokio's own `poll_*` methods (the
    /// runtime wakes the last task that polled); [`recv`](Receiver::recv)
    /// lets any number of tasks take turns.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<T, RecvError>> {
        let take = || self.inner.recv_wait(Wait::Never);
        poll_take(&self.waker, cx, &self.inner, &take, None).map_err(RecvError::new)
    }

    /// Back to a blocking receiver.
    pub fn into_blocking(self) -> crate::Receiver<T> {
        self.inner
    }
}

/// The closure of a borrowing receive, lent to each try of it: a try that
/// finds nothing leaves it for the next, and the one that takes a message
/// runs it (after which the receive is over: no try comes again).
struct Lent<F>(std::cell::Cell<Option<F>>);

impl<F> Lent<F> {
    fn new(f: F) -> Lent<F> {
        Lent(std::cell::Cell::new(Some(f)))
    }

    fn run<R>(&self, m: crate::Received<'_>) -> R
    where
        F: FnOnce(crate::Received<'_>) -> R,
    {
        let f = self
            .0
            .take()
            .expect("a borrowing receive takes one message, then stops trying");
        f(m)
    }
}

/// The receive step shared by receivers and duplexes, tokio's
/// edge-triggered protocol: on a descriptor, wait for readiness first
/// (tokio keeps it from the last event), try, and on "nothing yet" clear
/// it and wait again, so that a stale readiness costs one try, not two;
/// on shared memory, or with a message already buffered in the end, try
/// first (the try costs no system call, and on shared memory arms the
/// descriptor, which turns readable only for what comes after). A duplex
/// meanwhile finishes a frame of ours that the peer may be waiting for
/// (`flush`), so it also wakes for room.
fn poll_take<T: DeserializeOwned, R>(
    waker: &Waker,
    cx: &mut Context<'_>,
    rx: &crate::Receiver<T>,
    take: &dyn Fn() -> Result<R>,
    flush: Option<&dyn Fn() -> Result<bool>>,
) -> Poll<Result<R>> {
    let try_first = waker.conn.transport() == Transport::Shm;
    loop {
        let writing = match flush {
            Some(f) => match f() {
                Ok(done) => !done,
                Err(e) => return Poll::Ready(Err(e)),
            },
            None => false,
        };
        let tried = try_first || rx.core().buffered();
        if tried {
            match take() {
                Err(e) if e.kind() == ErrorKind::Empty => {}
                other => return Poll::Ready(other),
            }
        }
        if waker.peer_gone(cx, READ) {
            // What it sent before dying is read first (the blocking wait's
            // rule: readiness wins over the exit).
            return Poll::Ready(match take() {
                Err(e) if e.kind() == ErrorKind::Empty => Err(waker.peer_exited()),
                other => other,
            });
        }
        let Some(Registered(fd)) = &waker.read else {
            unreachable!("a receiving end registers its descriptor");
        };
        let room = writing
            && waker.room
            && match fd.poll_write_ready(cx) {
                Poll::Ready(Ok(mut guard)) => {
                    guard.clear_ready();
                    true
                }
                Poll::Ready(Err(_)) => true,
                Poll::Pending => false,
            };
        let mut guard = match fd.poll_read_ready(cx) {
            Poll::Ready(Ok(guard)) => guard,
            Poll::Ready(Err(e)) => {
                return Poll::Ready(Err(reactor_gone("waiting for a channel", e)));
            }
            Poll::Pending if room => continue,
            Poll::Pending => {
                // Another thread receiving here leaves no readiness behind:
                // a message it read ahead means "look again now"; the gate
                // it still holds, "look again when it leaves" (its leaving
                // wakes this task).
                if rx.core().buffered()
                    || (rx.core().busy() && rx.core().wake_when_free(cx.waker()))
                {
                    cx.waker().wake_by_ref();
                }
                return Poll::Pending;
            }
        };
        if tried {
            // Readiness that came after the try: try again.
            guard.clear_ready();
            continue;
        }
        match take() {
            // Cleared only now: readiness that comes after the try is kept
            // (tokio's tick), and wakes this task again.
            Err(e) if e.kind() == ErrorKind::Empty => guard.clear_ready(),
            other => {
                // A read that found the descriptor empty spent the
                // readiness too: the next receive waits for new readiness
                // instead of trying a read that finds nothing.
                if other.is_ok() && rx.core().drained() {
                    guard.clear_ready();
                }
                return Poll::Ready(other);
            }
        }
    }
}

impl<T: DeserializeOwned> futures_core::Stream for Receiver<T> {
    type Item = Result<T, RecvError>;

    /// Messages until a clean end of stream, as [`crate::Receiver::iter`].
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let item = ready!(this.poll_recv(cx));
        Poll::Ready(stream_item(item, &mut this.done))
    }
}

fn stream_item<T>(item: Result<T, RecvError>, done: &mut bool) -> Option<Result<T, RecvError>> {
    match item {
        Ok(v) => Some(Ok(v)),
        Err(e) if e.kind() == ErrorKind::Disconnected => {
            *done = true;
            None
        }
        Err(e) => {
            // OS errors repeat; the stream's own errors are reported once.
            *done |= e.kind() == ErrorKind::Io;
            Some(Err(e))
        }
    }
}

/// A blocking sender held by an async end. Dropped with a frame still
/// half-written (a send or flush cancelled mid-frame), it leaves the
/// blocking drop's linger to tokio's blocking pool, never to a runtime
/// thread.
struct Held<T>(Option<crate::Sender<T>>);

impl<T> Held<T> {
    fn get(&self) -> &crate::Sender<T> {
        self.0.as_ref().expect("present until taken")
    }

    fn take(mut self) -> crate::Sender<T> {
        self.0.take().expect("present until taken")
    }
}

impl<T> Drop for Held<T> {
    fn drop(&mut self) {
        let Some(tx) = self.0.take() else {
            return;
        };
        if tx.core().has_pending()
            && let Ok(rt) = ::tokio::runtime::Handle::try_current()
        {
            // The last hold on the sending core goes there.
            let core = Arc::clone(tx.core());
            drop(tx);
            rt.spawn_blocking(move || drop(core));
        }
    }
}

/// The sending end of a channel, awaitable. See the [module docs](self).
pub struct Sender<T> {
    inner: Held<T>,
    /// Shared with the receiver of a split duplex.
    waker: Arc<Waker>,
    /// The [`Sink`](futures_sink::Sink)'s one-message buffer.
    slot: Slot<T>,
}

impl<T: Serialize> Sender<T> {
    /// Makes `tx` awaitable; inside a tokio runtime.
    pub fn new(tx: crate::Sender<T>) -> Result<Sender<T>> {
        let waker = Arc::new(Waker::new(tx.core().conn(), None, Some(tx.as_fd()))?);
        Ok(Sender {
            inner: Held(Some(tx)),
            waker,
            slot: Slot::new(),
        })
    }

    fn tx(&self) -> &crate::Sender<T> {
        self.inner.get()
    }

    /// Sends `value`, waiting while the channel is full; resolves once its
    /// whole frame is written (see the module docs). On failure the value
    /// comes back in the error. Dropped while it waits for room, it wrote
    /// nothing; dropped after its frame started, the frame is finished
    /// before the next one.
    pub async fn send(&self, value: T) -> Result<(), SendError<T>> {
        send_whole(self.tx(), &self.waker, &self.slot, &value, &[])
            .await
            .map_err(|e| SendError::new(value, e))
    }

    /// Sends `*value` without giving it up, waiting while the channel is
    /// full: one buffer sent again and again without a copy per message.
    /// Cancel-safe as [`send`](Sender::send).
    pub async fn send_ref(&self, value: &T) -> Result<()> {
        send_whole(self.tx(), &self.waker, &self.slot, value, &[]).await
    }

    /// Sends `value` with descriptors attached (Unix sockets only), as
    /// [`crate::Sender::send_with_fds`].
    pub async fn send_with_fds(
        &self,
        value: T,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), SendError<T>> {
        send_whole(self.tx(), &self.waker, &self.slot, &value, fds)
            .await
            .map_err(|e| SendError::new(value, e))
    }

    /// Writes the rest of a frame the kernel took in part, and a message
    /// the [`Sink`](futures_sink::Sink) buffers (as `SinkExt::flush`,
    /// which this method's name hides).
    pub async fn flush(&self) -> Result<()> {
        flush_all(self.tx(), &self.waker, &self.slot).await
    }

    /// Sends `value` if there is room now, as [`crate::Sender::try_send`]
    /// (after a message the [`Sink`](futures_sink::Sink) buffers, which
    /// goes first: if there is no room for that one, `value` comes back in
    /// [`TrySendError::Full`](crate::TrySendError::Full)).
    pub fn try_send(&self, value: T) -> Result<(), crate::TrySendError<T>> {
        try_send(self.tx(), &self.slot, value)
    }

    /// Watches `child`, as [`crate::Sender::supervise`]: its exit ends a
    /// pending `send().await` with its exit status.
    pub fn supervise(&self, child: &crate::Child) {
        self.tx().supervise(child);
    }

    /// Back to a blocking sender (a message the [`Sink`](futures_sink::Sink)
    /// still buffers is sent first, waiting as a blocking send does).
    pub fn into_blocking(self) -> Result<crate::Sender<T>, SendError<T>> {
        let tx = self.inner.take();
        if let Some(v) = self.slot.into_inner() {
            tx.send(v)?;
        }
        Ok(tx)
    }
}

/// Runs `step`, a non-blocking send step (`None`: no room), until it is
/// done, waiting for room by tokio's protocol. A step can also find the
/// sending gate held by another thread (a send in progress there, which
/// makes no readiness event when it ends): then the task leaves its waker
/// at the gate, woken when that send ends; and after registering for room
/// it looks once more, in case the gate was released between the step and
/// the registration.
fn poll_room<R>(
    tx: &crate::channel::SendCore,
    waker: &Waker,
    cx: &mut Context<'_>,
    mut step: impl FnMut() -> Option<Result<R>>,
) -> Poll<Result<R>> {
    loop {
        if let Some(done) = step() {
            return Poll::Ready(done);
        }
        if tx.busy() {
            // A send in another thread: its end wakes this task.
            if tx.wake_when_free(cx.waker()) {
                continue;
            }
            return Poll::Pending;
        }
        if waker.peer_gone(cx, WRITE) {
            return Poll::Ready(Err(waker.peer_exited()));
        }
        match waker.poll_room(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {
                if let Some(done) = step() {
                    return Poll::Ready(done);
                }
                if tx.busy() && tx.wake_when_free(cx.waker()) {
                    cx.waker().wake_by_ref();
                }
                return Poll::Pending;
            }
        }
    }
}

/// A whole send: the writing turn, the frame accepted when there is room,
/// then written to its end (a frame the kernel took in part is finished
/// here, as a blocking send does: a peer waiting for its last bytes would
/// otherwise wait for ever if this end's next step is a receive on another
/// descriptor). Dropped on the way, it leaves a half-written frame
/// pending, finished before the next one.
async fn send_whole<T: Serialize>(
    tx: &crate::Sender<T>,
    waker: &Waker,
    slot: &Slot<T>,
    value: &T,
    fds: &[BorrowedFd<'_>],
) -> Result<()> {
    send_whole_by(tx, waker, slot, || tx.try_send_ref(value, fds)).await
}

/// [`send_whole`] of what `try_send` sends: a non-blocking send of one
/// frame, `ErrorKind::Full` when there is no room. A message the end's
/// `Sink` buffers goes first.
async fn send_whole_by<T: Serialize>(
    tx: &crate::Sender<T>,
    waker: &Waker,
    slot: &Slot<T>,
    try_send: impl Fn() -> Result<()>,
) -> Result<()> {
    let _turn = waker.writing.lock().await;
    let sent = async {
        poll_fn(|cx| {
            ready!(slot.poll_send(tx, waker, cx))?;
            poll_give(tx.core(), waker, cx, &try_send)
        })
        .await?;
        if tx.core().has_pending() {
            poll_fn(|cx| poll_flush(tx, waker, cx)).await?;
        }
        Ok(())
    }
    .await;
    waker.with_fate(sent, WRITE).await
}

/// Sends `*value` when there is room.
fn poll_give_ref<T: Serialize>(
    tx: &crate::Sender<T>,
    waker: &Waker,
    cx: &mut Context<'_>,
    value: &T,
    fds: &[BorrowedFd<'_>],
) -> Poll<Result<()>> {
    poll_give(tx.core(), waker, cx, &|| tx.try_send_ref(value, fds))
}

/// Sends what `try_send` sends when there is room.
fn poll_give(
    core: &crate::channel::SendCore,
    waker: &Waker,
    cx: &mut Context<'_>,
    try_send: &dyn Fn() -> Result<()>,
) -> Poll<Result<()>> {
    poll_room(core, waker, cx, || match try_send() {
        Err(e) if e.kind() == ErrorKind::Full => None,
        other => Some(other),
    })
}

/// An end's `try_send`: the message its `Sink` buffers first.
fn try_send<T: Serialize>(
    tx: &crate::Sender<T>,
    slot: &Slot<T>,
    value: T,
) -> Result<(), crate::TrySendError<T>> {
    match slot.try_send_now(tx) {
        Err(e) => Err(crate::TrySendError::new(value, e)),
        Ok(()) => tx.try_send(value),
    }
}

/// An end's `flush`: the message its `Sink` buffers, then the rest of a
/// frame the kernel took in part.
async fn flush_all<T: Serialize>(
    tx: &crate::Sender<T>,
    waker: &Waker,
    slot: &Slot<T>,
) -> Result<()> {
    let _turn = waker.writing.lock().await;
    poll_fn(|cx| poll_flush_all(tx, waker, slot, cx)).await
}

/// The step of an end's `flush` and of its `Sink`'s `poll_flush`.
fn poll_flush_all<T: Serialize>(
    tx: &crate::Sender<T>,
    waker: &Waker,
    slot: &Slot<T>,
    cx: &mut Context<'_>,
) -> Poll<Result<()>> {
    ready!(slot.poll_send(tx, waker, cx))?;
    poll_flush(tx, waker, cx)
}

/// Finishes a frame the kernel took in part.
fn poll_flush<T>(tx: &crate::Sender<T>, waker: &Waker, cx: &mut Context<'_>) -> Poll<Result<()>> {
    poll_finish(tx, waker, cx, crate::channel::SendCore::flush)
}

/// Finishes a frame the kernel took in part with `finish` (the send gate's
/// `flush` or `close`), once there is room and no other thread is sending.
fn poll_finish<T>(
    tx: &crate::Sender<T>,
    waker: &Waker,
    cx: &mut Context<'_>,
    finish: fn(&crate::channel::SendCore, Wait) -> Result<()>,
) -> Poll<Result<()>> {
    poll_room(tx.core(), waker, cx, || {
        match finish(tx.core(), Wait::Never) {
            Err(e) if e.kind() == ErrorKind::Full => None,
            other => Some(other),
        }
    })
}

/// A [`Sink`](futures_sink::Sink)'s one-message buffer: `start_send` fills
/// it, and whatever writes on the end next (the sink's `poll_ready` or
/// `poll_flush`, a `send`, a `flush`, from any task) sends its message
/// first, so that messages leave in the order they were handed over,
/// whichever way.
struct Slot<T> {
    /// Whether `value` holds a message: a send looks here, not at the lock.
    full: AtomicBool,
    value: std::sync::Mutex<Option<T>>,
}

impl<T> Slot<T> {
    fn new() -> Slot<T> {
        Slot {
            full: AtomicBool::new(false),
            value: std::sync::Mutex::new(None),
        }
    }

    fn put(&mut self, item: T) {
        let value = self.value.get_mut().unwrap_or_else(PoisonError::into_inner);
        debug_assert!(value.is_none(), "start_send without poll_ready");
        *value = Some(item);
        *self.full.get_mut() = true;
    }

    fn into_inner(self) -> Option<T> {
        self.value
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends the buffered message, if any, if there is room now
    /// (`ErrorKind::Full` if there is none: it stays).
    fn try_send_now(&self, tx: &crate::Sender<T>) -> Result<()>
    where
        T: Serialize,
    {
        if !self.full.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut value = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(v) = value.as_ref() else {
            return Ok(());
        };
        let sent = tx.try_send_ref(v, &[]);
        if !matches!(&sent, Err(e) if e.kind() == ErrorKind::Full) {
            *value = None;
            self.full.store(false, Ordering::Release);
        }
        sent
    }

    /// Sends the buffered message, if any, once there is room; failed, it
    /// is dropped (the `Sink` protocol cannot hand it back). Dropped while
    /// it waits, the message stays. (The empty buffer's check inlined into
    /// every send; the rest out of line.)
    #[inline]
    fn poll_send(
        &self,
        tx: &crate::Sender<T>,
        waker: &Waker,
        cx: &mut Context<'_>,
    ) -> Poll<Result<()>>
    where
        T: Serialize,
    {
        if !self.full.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        self.poll_send_held(tx, waker, cx)
    }

    #[cold]
    fn poll_send_held(
        &self,
        tx: &crate::Sender<T>,
        waker: &Waker,
        cx: &mut Context<'_>,
    ) -> Poll<Result<()>>
    where
        T: Serialize,
    {
        let mut value = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(v) = value.as_ref() else {
            return Poll::Ready(Ok(()));
        };
        let done = ready!(poll_give_ref(tx, waker, cx, v, &[]));
        *value = None;
        self.full.store(false, Ordering::Release);
        Poll::Ready(done)
    }
}

// The buffered message is never pinned.
impl<T> Unpin for Sender<T> {}
impl<Out, In> Unpin for Duplex<Out, In> {}

/// The `Sink` of an end that sends `$item`, written once for the sender and
/// the duplex: `sink_parts` lends its blocking sender, its waker and its
/// one-message buffer.
macro_rules! sink {
    ([$($g:tt)*] $t:ty, $item:ident) => {
        impl<$($g)*> futures_sink::Sink<$item> for $t {
            /// A message the sink held when its send failed is dropped: the
            /// [`Sink`](futures_sink::Sink) protocol has no way to hand it
            /// back (use `send` to get it).
            type Error = Error;

            /// Room for one message: the one buffered before is sent first.
            fn poll_ready(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Result<(), Self::Error>> {
                let (tx, waker, slot) = self.get_mut().sink_parts();
                slot.poll_send(tx, waker, cx)
            }

            fn start_send(self: Pin<&mut Self>, item: $item) -> Result<(), Self::Error> {
                let (_, _, slot) = self.get_mut().sink_parts();
                slot.put(item);
                Ok(())
            }

            fn poll_flush(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Result<(), Self::Error>> {
                let (tx, waker, slot) = self.get_mut().sink_parts();
                poll_flush_all(tx, waker, slot, cx)
            }

            /// Sends what is buffered, then ends the writing direction as
            /// dropping the last sender does: the peer reads the end of the
            /// stream (on a socket, `tcp://` or shared memory; a pipe ends
            /// when its write end is dropped), while a duplex still
            /// receives. A send after it is an error.
            fn poll_close(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Result<(), Self::Error>> {
                let (tx, waker, slot) = self.get_mut().sink_parts();
                ready!(slot.poll_send(tx, waker, cx))?;
                poll_finish(tx, waker, cx, crate::channel::SendCore::close)
            }
        }
    };
}
sink!([T: Serialize] Sender<T>, T);
sink!([Out: Serialize, In] Duplex<Out, In>, Out);

impl<T> Sender<T> {
    fn sink_parts(&mut self) -> (&crate::Sender<T>, &Waker, &mut Slot<T>) {
        (self.inner.get(), &self.waker, &mut self.slot)
    }
}

impl<Out, In> Duplex<Out, In> {
    fn sink_parts(&mut self) -> (&crate::Sender<Out>, &Waker, &mut Slot<Out>) {
        (self.tx.get(), &self.rx.waker, &mut self.slot)
    }
}

/// A two-way channel, awaitable. See the [module docs](self).
pub struct Duplex<Out, In> {
    tx: Held<Out>,
    rx: Receiver<In>,
    /// The [`Sink`](futures_sink::Sink)'s one-message buffer.
    slot: Slot<Out>,
}

impl<Out: Serialize, In: DeserializeOwned> Duplex<Out, In> {
    /// Makes `d` awaitable; inside a tokio runtime.
    pub fn new(d: crate::Duplex<Out, In>) -> Result<Duplex<Out, In>> {
        let (tx, rx) = d.split();
        let waker = Waker::new(rx.core().conn(), Some(rx.as_fd()), Some(tx.as_fd()))?;
        Ok(Duplex {
            tx: Held(Some(tx)),
            rx: Receiver {
                inner: rx,
                waker: Arc::new(waker),
                done: false,
            },
            slot: Slot::new(),
        })
    }

    /// Sends, waiting while the channel is full. See [`Sender::send`].
    pub async fn send(&self, value: Out) -> Result<(), SendError<Out>> {
        send_whole(self.tx.get(), &self.rx.waker, &self.slot, &value, &[])
            .await
            .map_err(|e| SendError::new(value, e))
    }

    /// Sends `*value` without giving it up. See [`Sender::send_ref`].
    pub async fn send_ref(&self, value: &Out) -> Result<()> {
        send_whole(self.tx.get(), &self.rx.waker, &self.slot, value, &[]).await
    }

    /// Waits for the next message, meanwhile finishing a frame of ours the
    /// kernel took in part (the peer may wait for it before it answers).
    /// Cancel-safe.
    pub async fn recv(&self) -> Result<In, RecvError> {
        let _turn = self.rx.waker.reading.lock().await;
        let take = || self.rx.inner.recv_wait(Wait::Never);
        let r = poll_fn(|cx| self.poll_take(cx, &take)).await;
        self.with_fate(r).await
    }

    /// Awaits the next message and hands `f` a view of it in the receive
    /// buffer; see [`Receiver::recv_with`]. Meanwhile it finishes a frame
    /// of ours the kernel took in part. Cancel-safe.
    pub async fn recv_with<R>(
        &self,
        f: impl FnOnce(crate::Received<'_>) -> R,
    ) -> Result<R, RecvError> {
        let _turn = self.rx.waker.reading.lock().await;
        let f = Lent::new(f);
        let take = || self.rx.inner.recv_with_wait(Wait::Never, |m| f.run(m));
        let r = poll_fn(|cx| self.poll_take(cx, &take)).await;
        self.with_fate(r).await
    }

    /// Awaits the next message into `*place`, as
    /// [`Receiver::recv_into`]; meanwhile it finishes a frame of ours the
    /// kernel took in part. Cancel-safe.
    pub async fn recv_into(&self, place: &mut In) -> Result<(), RecvError> {
        let _turn = self.rx.waker.reading.lock().await;
        let place = std::cell::RefCell::new(place);
        let take = || {
            self.rx
                .inner
                .recv_into_wait(Wait::Never, &mut place.borrow_mut())
        };
        let r = poll_fn(|cx| self.poll_take(cx, &take)).await;
        self.with_fate(r).await
    }

    /// The next message, or `Pending`; see [`recv`](Duplex::recv). For one
    /// task at a time, as [`Receiver::poll_recv`].
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<In, RecvError>> {
        let take = || self.rx.inner.recv_wait(Wait::Never);
        self.poll_take(cx, &take)
    }

    /// A receive step of this duplex: meanwhile it finishes a frame of
    /// ours the kernel took in part (the peer may wait for it).
    fn poll_take<R>(
        &self,
        cx: &mut Context<'_>,
        take: &dyn Fn() -> Result<R>,
    ) -> Poll<Result<R, RecvError>> {
        let core = self.tx.get().core();
        let flush = || {
            if core.has_pending() {
                core.flush_some()
            } else {
                Ok(true)
            }
        };
        poll_take(&self.rx.waker, cx, &self.rx.inner, take, Some(&flush)).map_err(RecvError::new)
    }

    /// Sends `value` with descriptors attached. See
    /// [`Sender::send_with_fds`].
    pub async fn send_with_fds(
        &self,
        value: Out,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), SendError<Out>> {
        send_whole(self.tx.get(), &self.rx.waker, &self.slot, &value, fds)
            .await
            .map_err(|e| SendError::new(value, e))
    }

    /// Awaits a message and its descriptors. See
    /// [`Receiver::recv_with_fds`].
    pub async fn recv_with_fds(&self) -> Result<(In, Vec<OwnedFd>), RecvError> {
        let _turn = self.rx.waker.reading.lock().await;
        let take = || self.rx.inner.recv_with_fds_wait(Wait::Never);
        let r = poll_fn(|cx| self.poll_take(cx, &take)).await;
        self.with_fate(r).await
    }

    async fn with_fate<R>(&self, r: Result<R, RecvError>) -> Result<R, RecvError> {
        let r = r.map_err(RecvError::into_error);
        self.rx
            .waker
            .with_fate(r, READ)
            .await
            .map_err(RecvError::new)
    }

    /// Sends `request` and waits for one reply, as
    /// [`crate::Duplex::request`]: a send, then a receive. So a request
    /// dropped after its send (by a timeout around it, or a `select!`)
    /// leaves its reply to be taken by the next receive, and requests of
    /// two tasks at once may take each other's replies. For calls that may
    /// be cancelled or run side by side, use [`rpc::Client`], whose
    /// replies carry their call's id.
    pub async fn request(&self, request: Out) -> Result<In> {
        self.send(request).await?;
        Ok(self.recv().await?)
    }

    /// Exchanges a hello with the peer and checks it:
    /// [`crate::Duplex::hello`], awaited. The peer may be a blocking end,
    /// an async one, or another language's (`docs/wire-format.md` §7).
    /// Not cancel-safe: dropped after our hello went, the peer's stays
    /// unread, to be taken for a message.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> procwire::Result<()> {
    /// let (a, b) = procwire::duplex::<String, u64>()?;
    /// let peer = std::thread::spawn(move || b.hello_as("u64", "string").map(|()| b));
    /// let a = a.into_async()?;
    /// a.hello().await?;
    /// # let _b = peer.join().unwrap()?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn hello(&self) -> Result<()>
    where
        Out: crate::WireName,
        In: crate::WireName,
    {
        self.hello_as(Out::WIRE_NAME, In::WIRE_NAME).await
    }

    /// [`hello`](Duplex::hello) with the names given here, as
    /// [`crate::Duplex::hello_as`].
    pub async fn hello_as(&self, sends: &str, receives: &str) -> Result<()> {
        use crate::channel::hello::Hello;
        let codec = self.rx.inner.codec();
        let (ours, bytes) = Hello::ours(sends, receives, codec)?;
        let tx = self.tx.get();
        send_whole_by(tx, &self.rx.waker, &self.slot, || {
            tx.send_bytes_waiting(&bytes, Wait::Never)
        })
        .await?;
        let _turn = self.rx.waker.reading.lock().await;
        let take = || {
            self.rx
                .inner
                .recv_raw_wait(Wait::Never, |b| codec.decode::<Hello>(b))?
        };
        let r = poll_fn(|cx| self.poll_take(cx, &take)).await;
        let theirs = self.with_fate(r).await?;
        ours.check(&theirs)
    }

    /// Writes the rest of a frame the kernel took in part, and a message
    /// the [`Sink`](futures_sink::Sink) buffers (as `SinkExt::flush`,
    /// which this method's name hides).
    pub async fn flush(&self) -> Result<()> {
        flush_all(self.tx.get(), &self.rx.waker, &self.slot).await
    }

    /// Sends `value` if there is room now; see [`Sender::try_send`].
    pub fn try_send(&self, value: Out) -> Result<(), crate::TrySendError<Out>> {
        try_send(self.tx.get(), &self.slot, value)
    }

    /// Takes a message if a complete one is there; see
    /// [`Receiver::try_recv`].
    pub fn try_recv(&self) -> Result<In, crate::TryRecvError> {
        self.rx.try_recv()
    }

    /// Watches `child` in both directions, as
    /// [`crate::Duplex::supervise`]: its exit ends a pending
    /// `recv().await` or `send().await` with its exit status. Channels of
    /// [`Command::channel_async`](crate::Command::channel_async) watch
    /// their child already.
    pub fn supervise(&self, child: &crate::Child) {
        self.rx.supervise(child);
    }

    /// Back to a blocking duplex (a message the
    /// [`Sink`](futures_sink::Sink) still buffers is sent first, waiting as
    /// a blocking send does).
    pub fn into_blocking(self) -> Result<crate::Duplex<Out, In>, SendError<Out>> {
        let tx = self.tx.take();
        if let Some(v) = self.slot.into_inner() {
            tx.send(v)?;
        }
        Ok(crate::Duplex::from_halves(tx, self.rx.inner))
    }

    /// Separates the halves, for two tasks, a reader and a writer:
    /// [`crate::Duplex::split`], awaitable. They share this duplex's
    /// registrations with the runtime (nothing new is registered, so it
    /// cannot fail), and a message the [`Sink`](futures_sink::Sink)
    /// buffers goes with the sender. Dropping the [`Sender`] half-closes
    /// the socket, as the blocking split's does. The receiver no longer
    /// writes the rest of a frame of the sender's while it waits: the
    /// sender's next send, [`flush`](Sender::flush) or drop does.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> procwire::Result<()> {
    /// let (parent, child) = procwire::duplex::<String, String>()?;
    /// let (tx, rx) = parent.into_async()?.split();
    /// let child = child.into_async()?;
    /// let echo = tokio::spawn(async move {
    ///     let job = child.recv().await?;
    ///     child.send(job).await.map_err(|e| e.into_error())
    /// });
    /// let writer = tokio::spawn(async move { tx.send("ping".into()).await.map(|()| tx) });
    /// assert_eq!(rx.recv().await?, "ping");
    /// writer.await.expect("no panic").map_err(|e| e.into_error())?;
    /// echo.await.expect("no panic")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn split(self) -> (Sender<Out>, Receiver<In>) {
        let tx = Sender {
            inner: self.tx,
            waker: Arc::clone(&self.rx.waker),
            slot: self.slot,
        };
        (tx, self.rx)
    }
}

impl<Out: Serialize, In: DeserializeOwned> futures_core::Stream for Duplex<Out, In> {
    type Item = Result<In, RecvError>;

    /// Messages until a clean end of stream, as [`crate::Receiver::iter`];
    /// meanwhile it writes the rest of a frame of ours the kernel took in
    /// part, as [`recv`](Duplex::recv) does.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.rx.done {
            return Poll::Ready(None);
        }
        let item = ready!(this.poll_recv(cx));
        Poll::Ready(stream_item(item, &mut this.rx.done))
    }
}

impl<Out, In> AsFd for Duplex<Out, In> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.rx.inner.as_fd()
    }
}

macro_rules! debug_as {
    ($name:literal, $t:ty $(, $p:ident)*) => {
        impl<$($p),*> std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct($name).finish_non_exhaustive()
            }
        }
    };
}
debug_as!("tokio::Receiver", Receiver<T>, T);
debug_as!("tokio::Sender", Sender<T>, T);
debug_as!("tokio::Duplex", Duplex<Out, In>, Out, In);

impl<T: DeserializeOwned> crate::Receiver<T> {
    /// This receiver, awaitable (feature `tokio`; inside a runtime).
    pub fn into_async(self) -> Result<Receiver<T>> {
        Receiver::new(self)
    }
}

impl<T: Serialize> crate::Sender<T> {
    /// This sender, awaitable (feature `tokio`; inside a runtime).
    pub fn into_async(self) -> Result<Sender<T>> {
        Sender::new(self)
    }
}

impl<Out: Serialize, In: DeserializeOwned> crate::Duplex<Out, In> {
    /// This duplex, awaitable (feature `tokio`; inside a runtime).
    pub fn into_async(self) -> Result<Duplex<Out, In>> {
        Duplex::new(self)
    }
}
