//! The byte-stream primitives, awaitable: [`PipeReader`], [`PipeWriter`]
//! and a stream [`Socket`](crate::Socket) as tokio's `AsyncRead` /
//! `AsyncWrite`; and a child's exit, awaited.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::process::ExitStatus;
use std::task::{Context, Poll, ready};

use ::tokio::io::unix::AsyncFd;
use ::tokio::io::{AsyncRead, AsyncWrite, Interest as Want, ReadBuf};

use super::Registered;
use crate::error::{Error, ErrorKind, Result};
use crate::sys;

/// How the descriptor is read and written without blocking (it stays in
/// blocking mode, as procwire's ends are: another holder may rely on it).
#[derive(Clone, Copy, Debug)]
enum Way {
    Pipe,
    Socket,
}

/// One registered descriptor and how to use it.
#[derive(Debug)]
struct Io {
    fd: AsyncFd<OwnedFd>,
    way: Way,
}

impl Io {
    fn new(fd: OwnedFd, want: Want, way: Way) -> Result<Io> {
        super::in_runtime()?;
        // A pipe is read and written plainly, O_NONBLOCK (see
        // `Conn::for_async`): an `EAGAIN` that does not mean "no data" or
        // "no room" would wait for an edge that never comes.
        if let Way::Pipe = way {
            sys::set_nonblocking(fd.as_fd(), true)
                .map_err(|e| Error::io("preparing a pipe end for the runtime", e))?;
        }
        let Registered(fd) = Registered::own(fd, want)?;
        Ok(Io { fd, way })
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx)).map_err(|e| gone("reading", e))?;
            let unfilled = buf.initialize_unfilled();
            let read = guard.try_io(|fd| match self.way {
                Way::Pipe => sys::read(fd.as_fd(), unfilled),
                Way::Socket => sys::recv_bytes(fd.as_fd(), unfilled, true).map(|r| r.len),
            });
            match read {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Would block: readiness cleared, wait again.
                Err(_) => {}
            }
        }
    }

    fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let bufs = [io::IoSlice::new(data)];
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx)).map_err(|e| gone("writing", e))?;
            let wrote = guard.try_io(|fd| match self.way {
                Way::Pipe => sys::pipe_write(fd.as_fd(), &bufs, false),
                Way::Socket => sys::send(fd.as_fd(), &bufs, &[], true),
            });
            if let Ok(r) = wrote {
                return Poll::Ready(r);
            }
        }
    }
}

/// A readiness wait that failed: the runtime is gone (see
/// `super::reactor_gone`), said in an `io::Error` for tokio's traits.
fn gone(doing: &str, e: io::Error) -> io::Error {
    io::Error::other(super::reactor_gone(doing, e))
}

macro_rules! async_end {
    ($(#[$doc:meta])* $name:ident, $from:ty, $want:expr, $way:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name(Io);

        impl $name {
            /// Makes `end` awaitable; inside a tokio runtime.
            pub fn new(end: $from) -> Result<$name> {
                Io::new(OwnedFd::from(end), $want, $way).map($name)
            }

            /// Back to a blocking end (its descriptor is checked again, as
            /// `from_fd` does, and in blocking mode again).
            pub fn into_blocking(self) -> Result<$from> {
                let fd = self.0.fd.into_inner();
                sys::set_nonblocking(fd.as_fd(), false)
                    .and_then(|()| <$from>::from_fd(fd))
                    .map_err(|e| Error::io("taking the descriptor back", e))
            }
        }

        impl AsFd for $name {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.0.fd.get_ref().as_fd()
            }
        }
    };
}

async_end!(
    /// A pipe's read end, as tokio's `AsyncRead` (end of file when every
    /// write end is closed).
    PipeReader,
    crate::PipeReader,
    Want::READABLE,
    Way::Pipe
);
async_end!(
    /// A pipe's write end, as tokio's `AsyncWrite` (a write with no reader
    /// is `BrokenPipe`, never `SIGPIPE`, as on the blocking end).
    PipeWriter,
    crate::PipeWriter,
    Want::WRITABLE,
    Way::Pipe
);
async_end!(
    /// A stream socket (a [`Kind::Stream`](crate::Kind::Stream) pair end, or
    /// one connected by path), as tokio's `AsyncRead` and `AsyncWrite`;
    /// `shutdown` half-closes it.
    Socket,
    crate::Socket,
    Want::READABLE | Want::WRITABLE,
    Way::Socket
);

macro_rules! async_read {
    ($($t:ty),*) => {$(
        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                self.0.poll_read(cx, buf)
            }
        }
    )*};
}
async_read!(PipeReader, Socket);

/// `AsyncWrite` for an end whose `poll_shutdown` is `$shutdown(&self)`.
macro_rules! async_write {
    ($t:ty, $shutdown:expr) => {
        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                data: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.0.poll_write(cx, data)
            }

            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                let shutdown: fn(&$t) -> io::Result<()> = $shutdown;
                Poll::Ready(shutdown(&self))
            }
        }
    };
}
// A pipe has nothing to shut down: the reader sees the end when every
// write end is closed (drop this one).
async_write!(PipeWriter, |_| Ok(()));
// A socket's writing direction is shut down: the peer reads the end.
async_write!(Socket, |s| sys::shutdown(
    s.as_fd(),
    std::net::Shutdown::Write
));

impl crate::PipeReader {
    /// This read end, awaitable (feature `tokio`; inside a runtime).
    pub fn into_async(self) -> Result<PipeReader> {
        PipeReader::new(self)
    }
}

impl crate::PipeWriter {
    /// This write end, awaitable (feature `tokio`; inside a runtime).
    pub fn into_async(self) -> Result<PipeWriter> {
        PipeWriter::new(self)
    }
}

impl crate::Socket {
    /// This stream socket, awaitable (feature `tokio`; inside a runtime). A
    /// datagram or seqpacket socket is refused: it carries messages, not a
    /// byte stream (use a channel).
    pub fn into_async(self) -> Result<Socket> {
        if self.kind() != crate::Kind::Stream {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "a {:?} socket carries messages, not a byte stream: make a channel of it \
                     (SocketPair, Options::duplex_from) and await that",
                    self.kind()
                ),
            ));
        }
        Socket::new(self)
    }
}

impl crate::Child {
    /// Waits for the process to exit and reaps it, awaiting its pidfd on
    /// the runtime's reactor (feature `tokio`): no thread waits.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> procwire::Result<()> {
    /// let mut child = procwire::Command::new("sh").args(["-c", "exit 3"]).spawn()?;
    /// assert_eq!(child.wait_async().await?.code(), Some(3));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_async(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        let pidfd = Registered::new(self.state().pidfd(), Want::READABLE)?;
        std::future::poll_fn(|cx| pidfd.0.poll_read_ready(cx).map(|r| r.map(drop)))
            .await
            .map_err(|e| Error::io(&format!("waiting for child {}", self.id()), e))?;
        // It has exited: the wait takes no time.
        self.wait()
    }
}

impl crate::Command {
    /// [`channel`](crate::Command::channel), awaitable (feature `tokio`;
    /// inside a runtime). The child's supervision starts at `spawn`, as on
    /// a blocking channel: its exit then ends any wait on the channel.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> procwire::Result<()> {
    /// let mut cmd = procwire::Command::new("sh");
    /// cmd.args(["-c", "exit 7"]);
    /// let ch = cmd.channel_async::<String, String>()?;
    /// let mut child = cmd.spawn()?;
    /// let e = ch.recv().await.unwrap_err(); // it exited without a word
    /// assert!(e.is_disconnected(), "{e}");
    /// assert_eq!(child.wait_async().await?.code(), Some(7));
    /// # Ok(())
    /// # }
    /// ```
    pub fn channel_async<Out, In>(&mut self) -> Result<super::Duplex<Out, In>>
    where
        Out: serde::Serialize,
        In: serde::de::DeserializeOwned,
    {
        self.channel()?.into_async()
    }
}

impl<A, Out, In> crate::Task<A, Out, In>
where
    A: serde::Serialize + serde::de::DeserializeOwned,
    Out: serde::Serialize + serde::de::DeserializeOwned,
    In: serde::Serialize + serde::de::DeserializeOwned,
{
    /// [`spawn`](crate::Task::spawn), with the channel awaitable (feature
    /// `tokio`; inside a runtime). The child is started on the calling
    /// thread, as `tokio::process::Command::spawn` starts one (a fork, or
    /// a short request to the task server).
    pub fn spawn_async(self) -> Result<(crate::Child, super::Duplex<In, Out>)> {
        let (child, ch) = self.spawn()?;
        Ok((child, ch.into_async()?))
    }
}
