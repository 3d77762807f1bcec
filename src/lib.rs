//! Processes that talk: pipes, socket pairs and typed channels, done right.
//!
//! procwire grows from the classic lesson "Processes Can Communicate": a pipe
//! is a one-way byte stream, a socket pair a two-way one, and a parent and
//! its child talk through the ends they share. procwire makes each of those a
//! typed, tested API and removes the ways they hang, leak and lose data.
//!
//! # Hello, world
//!
//! ```
//! let (tx, rx) = procwire::channel::<String>()?;
//! tx.send("Hello, world".to_string())?;
//! drop(tx); // close the writer: the reader's loop ends at end-of-stream
//! for message in &rx {
//!     println!("{}", message?);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A two-way channel, the lesson's "Heavy lifting" / "accomplished!" (here
//! between threads; [`Command`], [`fork`] and [`task`] put the other end in
//! a child process):
//!
//! ```
//! let (parent, child) = procwire::duplex::<String, String>()?;
//! std::thread::spawn(move || {
//!     for job in child.iter() {
//!         child.send(format!("{} accomplished!", job.unwrap())).unwrap();
//!     }
//! });
//! assert_eq!(parent.request("Heavy lifting".into())?, "Heavy lifting accomplished!");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is here
//!
//! | layer | items |
//! |---|---|
//! | primitives | [`pipe`] → [`PipeReader`] / [`PipeWriter`]; [`socket_pair`] → [`Socket`] of a [`Kind`]; [`UnixListener`] and [`Socket::connect`] by path; descriptors with [`Socket::send_with_fds`] |
//! | framing | [`frame`]: wire format v4 over any `Read`/`Write` |
//! | codecs | [`codec`]: postcard (default), MessagePack, JSON, raw |
//! | channels | [`channel`], [`duplex`], one builder per transport ([`Pipe`], [`SocketPair`], [`Shm`], [`Net`]) with the [`Options`] every channel has → [`Sender`], [`Receiver`], [`Duplex`]; [`Select`] (see [Making channels](#making-channels)) |
//! | shared memory | [`Shm`]: the same channels over a ring in a sealed memfd, the fastest way between two local processes |
//! | processes | [`Command`] starts any program with a channel (`PROCWIRE_FD`), [`fork`] runs a closure in a child, [`task`] runs a function in a child (fork server via [`init`], or re-exec), [`Child`] owns the process; [`from_env`] is the child's end |
//! | request/reply | [`rpc`]: many calls in flight on one channel; [`Pool`]: worker processes, crash-isolated |
//! | descriptors in messages | [`Fd`], and channel ends inside messages ([`fd`]) |
//! | endpoints by address | [`listen`] / [`connect`] ([`endpoint`]): `unix:PATH`; with feature `tcp`, authenticated `tcp://HOST:PORT` with heartbeats |
//! | async (feature `tokio`) | `tokio`: every channel end awaitable (`recv().await`, `send(v).await`, `Stream`/`Sink`), on the runtime's reactor, cancel-safe, with supervision; async RPC and pool, `AsyncRead`/`AsyncWrite` pipes and stream sockets, `Child::wait_async`; see [Async](#async) |
//! | across machines | `zmq` (feature `zmq`): channels over ZeroMQ REQ/REP, PUSH/PULL, DEALER/ROUTER; `Pool::remote` and `remote::pool` (feature `remote` = `tcp` + `zmq`): the same pool, with workers that connect from anywhere; `nats` (feature `nats`): channels over a NATS subject on JetStream (no silent loss), RPC services in a queue group, a durable pool (`nats::pool`, `Pool::nats`) |
//! | diagnosis | [`doctor`]: what this machine offers procwire (pidfds, sealed memfds, `close_range`, limits), and what a missing piece costs; the CLI's `procwire doctor`, `tap`, `cat` and `call` |
//! | hostile conditions (feature `unstable`, not covered by semver) | `fuzz`: entry points for fuzzing every decoder; `testing::SignalStorm` |
//!
//! Every descriptor procwire creates is close-on-exec from birth, every
//! system call lives in one private `sys` module, and every error says what
//! happened ([`Error::kind`]).
//!
//! # Which channel do I want?
//!
//! | you need | use | because |
//! |---|---|---|
//! | one way, a stream of messages to one reader | [`channel`] (a pipe) | the lesson's pipe; the cheapest to set up; no descriptors in messages |
//! | two ways, request and reply | [`duplex`] (a stream socket) | one socket both ways; any message size; descriptors can travel |
//! | messages that stay whole even with several writer *processes* | `SocketPair::new(Kind::SeqPacket).duplex()` | each message is one atomic datagram (a large one travels in a memfd, the sender's spill file), and the end of the stream is still reported |
//! | the lowest latency between two local processes | `Shm::new().duplex()` | a ring in shared memory: no system call per message while both sides are busy |
//! | a child process born connected | [`Command::channel`] (any program), [`fork`] (a closure), [`task`] (a function) | the child finds its end through `PROCWIRE_FD`, and its death is an error on the channel |
//! | many workers, one queue | [`Pool`] | crash-isolated worker processes, results in order or as they come |
//! | a peer in Python or Ruby | any of the above with [`CodecKind::MsgPack`] | the wire format is documented, with reference peers |
//! | an unrelated process on this machine | [`listen`] / [`connect`] with `unix:PATH` | a socket file, owner-only |
//! | another machine | `tcp://HOST:PORT` (feature `tcp`) | authenticated, with heartbeats that report a vanished peer |
//! | wait on several at once | [`Select`], or each end's descriptor ([`AsFd`](std::os::fd::AsFd)) with your own poll or event loop | every end, shared memory included, has a descriptor that turns ready |
//!
//! # Making channels
//!
//! One scheme for every transport: a free function for the common case,
//! and a builder per kind of transport for the rest, each holding only the
//! settings that apply to it. Every builder also takes the three settings
//! every channel has ([`Options`]: `codec`, `max_frame`, `linger`), one by
//! one or all at once with `options(…)`. Each builder ends in `channel()`
//! (one way: [`Sender`] and [`Receiver`]) or `duplex()` (two ways: two
//! [`Duplex`] ends), or `listen`/`connect` for endpoints by address.
//!
//! | transport | common case | builder, with its own settings | ends |
//! |---|---|---|---|
//! | pipe | [`channel()`](channel) | [`Pipe::new()`](Pipe::new) | `channel()` |
//! | socket pair | [`duplex()`](duplex) (stream) | [`SocketPair::new(kind)`](SocketPair::new): `send_buffer` | `channel()`, `duplex()` |
//! | shared memory | — | [`Shm::new()`](Shm::new): `capacity`, `wait` | `channel()`, `duplex()` |
//! | by address (`unix:`, `tcp://`) | [`listen(addr)`](listen), [`connect(addr)`](connect) | [`Net::new()`](Net::new): `key`, `heartbeat`, `retry`, timeouts | `listen(addr)` → [`Listener`], `connect(addr)` |
//! | ZeroMQ (feature `zmq`) | — | `zmq::bind(kind, addr, &net)`, `zmq::connect(…)` with a [`Net`] | `zmq::Channel` |
//! | a descriptor you hold | — | [`Options::new()`](Options::new) | `sender_from(fd)`, `receiver_from(fd)`, `duplex_from(fd)` |
//! | a child process | [`Command::channel`], [`task`], [`fork`] | [`Command::channel_with`] and [`Task::options`] take an [`Options`] | a [`Duplex`] |
//! | the child's side | [`from_env`] | — | a [`Duplex`] |
//!
//! ```
//! use procwire::{CodecKind, Kind, Shm, SocketPair};
//!
//! let (tx, rx) = procwire::channel::<u32>()?; // a pipe
//! let (a, b) = SocketPair::new(Kind::SeqPacket).codec(CodecKind::MsgPack).duplex::<String, String>()?;
//! let (c, d) = Shm::new().capacity(4 << 20).duplex::<Vec<u8>, Vec<u8>>()?;
//! # let _ = (tx, rx, a, b, c, d);
//! # Ok::<(), procwire::Error>(())
//! ```
//!
//! # Errors
//!
//! Channel operations fail with crossbeam-channel's error types, the same
//! on every kind of end (pipe, sockets, shared memory, `tcp://`, ZeroMQ);
//! each also has an `Other` variant holding the one opaque [`Error`] for
//! the failures a process boundary adds, and every send error gives the
//! message back:
//!
//! | operation | error | variants |
//! |---|---|---|
//! | `send`, `send_with_fds` | [`SendError<T>`] | `Disconnected(T, Error)`, `Other(T, Error)` |
//! | `try_send` | [`TrySendError<T>`] | `Full(T)`, `Disconnected(T, Error)`, `Other(T, Error)` |
//! | `send_timeout`, `send_deadline` | [`SendTimeoutError<T>`] | `Timeout(T)`, `Disconnected(T, Error)`, `Other(T, Error)` |
//! | `recv`, `recv_into`, `recv_with_fds`, `recv_with`, `recv_raw`, iterators | [`RecvError`] | `Disconnected(Error)`, `Other(Error)` |
//! | `try_recv`, `try_recv_into` | [`TryRecvError`] | `Empty`, `Disconnected(Error)`, `Other(Error)` |
//! | `recv_timeout`, `recv_deadline`, `recv_into_timeout` | [`RecvTimeoutError`] | `Timeout`, `Disconnected(Error)`, `Other(Error)` |
//! | everything else (building channels, processes, RPC, pools, endpoints) | [`Error`] | [`Error::kind`] |
//!
//! `Disconnected` holds an [`Error`] that says how the peer went, with its
//! exit status or signal where procwire knows it ([`Error::exit_status`]).
//! Every type converts into [`Error`] and `std::io::Error`, so `?` works in
//! functions returning [`Result`], and answers `kind()` and
//! `is_disconnected()` like an [`Error`].
//!
//! # Large messages without copies
//!
//! A message is copied once on each side of the kernel (or of a
//! shared-memory ring), as plain `write` and `read` calls copy it:
//! [`Receiver::recv_with`] hands over a [`Received`] view that decodes into
//! borrowing types (`&[u8]` for a [`ByteBuf`], `&str`) in the receive
//! buffer, and a large blocking send writes the value's large byte slices
//! from the caller's memory (on a pipe or stream socket, after a frame of
//! 16 KiB or more) or encodes it straight into the ring (from 4 KiB). A
//! plain [`Receiver::recv`] of a large postcard message that ends in a byte
//! string (a [`ByteBuf`], a `#[serde(with = "procwire::bytes")]` field, a
//! `String`), at any depth, reads that string straight into the buffer the
//! returned value owns: no more copies than `recv_with`. Any other value
//! is decoded out of the receive buffer, one copy more. (Which string that
//! is, is read off the message's first bytes; a value whose bytes only look
//! like one, such as a large `Vec<u8>`, is decoded a second time from the
//! whole message, so a `Deserialize` impl with side effects may see a first,
//! partial run. A message that carries descriptors is always decoded once.)
//!
//! [`Receiver::recv_into`] decodes into a value the caller keeps, reusing
//! what it holds (a [`ByteBuf`], `String` or `Vec` takes the new contents
//! in its own allocation): a loop that receives owned messages into one
//! value allocates nothing once that value has grown to the largest, as a
//! loop of plain `read`s into one buffer allocates nothing.
//!
//! # Async
//!
//! With feature `tokio`, any channel end becomes awaitable: `into_async()`
//! on a [`Sender`], [`Receiver`] or [`Duplex`] made by any builder (inside
//! a tokio runtime) gives its counterpart in `procwire::tokio`, and
//! `into_blocking()` goes back. The lesson's "Heavy lifting", awaited:
//!
//! ```
//! # #[cfg(feature = "tokio")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> procwire::Result<()> {
//! let (boss, worker) = procwire::duplex::<String, String>()?;
//! let (boss, worker) = (boss.into_async()?, worker.into_async()?);
//! tokio::spawn(async move {
//!     while let Ok(job) = worker.recv().await {
//!         worker.send(format!("{job} accomplished!")).await.unwrap();
//!     }
//! });
//! assert_eq!(boss.request("Heavy lifting".into()).await?, "Heavy lifting accomplished!");
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "tokio"))]
//! # fn main() {}
//! ```
//!
//! Senders and duplexes are `Sink`s, receivers and duplexes `Stream`s
//! (`SinkExt`, `StreamExt`), an awaitable duplex splits into a sender and
//! a receiver for two tasks, and its `hello` is awaited too.
//! What a cancelled (dropped) future leaves behind is in the module's docs
//! (`procwire::tokio`, "Cancellation"): never a torn frame, never a lost
//! message that was taken off the transport. Also awaitable: RPC
//! (`procwire::tokio::rpc`: many calls in flight on one channel without a
//! task per call, a concurrent `serve` with a bound), the byte primitives
//! as `AsyncRead`/`AsyncWrite` (`into_async` on a `PipeReader`,
//! `PipeWriter` or stream `Socket`), and a child's exit
//! (`Child::wait_async`), and the worker pool (`procwire::tokio::Pool`:
//! `call(..).await`, `submit` whose handle is a future, `map` as a
//! `Stream`), `unix:`, `tcp://` and ZeroMQ endpoints
//! (`procwire::tokio::listen`, `accept`, `procwire::tokio::connect`: a
//! listener's handshakes and each connection's heartbeats are tasks, a
//! ZeroMQ listener is a ROUTER whose peers are accepted, no thread), a
//! child's channel
//! (`Command::channel_async`, `task(..).spawn_async()`), and ZeroMQ
//! (`procwire::tokio::zmq`: the `zeromq` socket on your runtime, no
//! bridge).
//!
//! # Hazards, and what procwire does about them
//!
//! **The forgotten writer.** A pipe's reader sees end-of-file only when
//! *every* copy of the write end is closed. Keep one open by mistake (in the
//! parent after handing it to a child, or in a child that inherited it) and
//! the reader waits forever. procwire's ends are close-on-exec, so programs
//! you start do not inherit them by accident; dropping a channel end closes
//! it; dropping the last [`Sender`] on a socket also shuts down its writing
//! direction, which the peer sees even if a copy leaked. A copy that left
//! on purpose is spared: once the descriptor went in an accepted message
//! (an end inside it, or `send_with_fds`), into another procwire end built
//! on a copy, or out with [`Sender::into_fd`], no end of this process shuts
//! that socket down. For every wait you
//! cannot rule out, use a deadline: [`Receiver::recv_timeout`].
//!
//! **Both sides writing into full buffers.** A pipe buffer holds 64 KiB on
//! Linux and a socket a few hundred; if parent and child both write more than
//! that before either reads, both block forever. Read and write from
//! different threads ([`Duplex::split`]), keep requests and replies small
//! enough to fit, or use [`Sender::try_send`] / [`Sender::send_timeout`],
//! which give the message back instead of blocking. A [`Duplex`] that
//! receives while its own frame is still half-written keeps writing it as
//! it waits, so two ends that both sent too much still get through; and
//! dropping an end waits at most [`Options::linger`] for the peer to take
//! the rest of a frame.
//!
//! **Zombies.** A child that exits stays in the process table until its
//! parent waits for it. A procwire [`Child`] is reaped by
//! [`Child::wait`], or killed and reaped when dropped; children of the fork
//! server are reaped by the server. (A `std::process::Child` you start
//! yourself is yours to wait for.)
//!
//! **A dead child.** A child can die without a word. A channel that
//! supervises it ([`Command::channel`] does; [`Duplex::supervise`] for
//! others) ends every wait when the child exits, with its exit status or
//! signal in the error, also on a datagram socket where the kernel never
//! reports an end of stream.
//!
//! **fork in a threaded program.** After `fork` only async-signal-safe code
//! may run in the child of a multi-threaded process. [`fork`] refuses then;
//! [`task`] starts functions through the fork server instead.
//!
//! **Several writers on one pipe.** The kernel keeps a write whole only up to
//! `PIPE_BUF` (4 KiB on Linux). Frames from several *processes* sharing one
//! pipe interleave once they are larger, and the stream is corrupt. Within one
//! process, clones of a [`Sender`] never interleave (each frame is written
//! under a lock); across processes, give each writer its own channel, or use a
//! datagram or seqpacket socket, whose messages are atomic.
//!
//! **A peer on another machine.** Over `tcp://` nobody can watch the peer's
//! process: each side sends heartbeats, and a peer that sends nothing for
//! three of its intervals (frozen, vanished, or cut off) ends the channel
//! with an error that says so. TCP reports a closed peer only when a later
//! segment draws its reset, so the first message after the peer left may
//! be accepted and lost: confirm delivery with a reply where it matters.
//! Traffic is encrypted and authenticated with a shared key (see
//! [`endpoint`]).
//!
//! **`SIGPIPE`.** Writing to a pipe whose reader is gone kills a process
//! whose `SIGPIPE` disposition is the default. procwire's writes report
//! `BrokenPipe` ([`ErrorKind::Disconnected`] on channels) instead, whatever the
//! disposition, without changing it. So that a write costs no extra system
//! call, procwire reads the disposition when it makes or adopts a pipe's
//! write end ([`pipe`], [`channel`], [`Pipe`], `from_fd`), not before each
//! write: a program that restores `SIGPIPE`'s default action (Rust ignores
//! it before `main`) must do so before it makes its pipes, as it would at
//! the start of `main`.
//!
//! **Hostile peers.** Everything read from another process is untrusted: a
//! length is checked before anything is allocated for it, nesting is bounded,
//! a datagram that does not fit is reported, not cut. See [`frame`] and
//! [`codec`].

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_debug_implementations)]

// procwire is built and tested on Linux: pidfds, memfd seals, SO_PEERCRED,
// close_range, eventfd and futexes are Linux calls. Say so at once rather
// than with a hundred unresolved names.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "procwire supports Linux only (it relies on pidfd, memfd seals, eventfd, futex and \
     close_range); every system call lives in its `sys` module, where another Unix would start"
);

mod awaited;
#[cfg(feature = "nats")]
mod background;
#[cfg(feature = "baseline")]
#[cfg_attr(docsrs, doc(cfg(feature = "baseline")))]
pub mod baseline;
pub mod bytes;
mod channel;
pub mod codec;
pub mod doctor;
pub mod endpoint;
mod ends;
mod error;
pub mod fd;
pub mod frame;
#[cfg(feature = "unstable")]
#[cfg_attr(docsrs, doc(cfg(feature = "unstable")))]
pub mod fuzz;
mod handover;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;
mod pipe;
pub mod pool;
mod process;
#[cfg(any(feature = "tcp", feature = "zmq"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "tcp", feature = "zmq"))))]
pub mod remote;
pub mod rpc;
mod shm;
mod socket;
mod sys;
#[cfg(feature = "unstable")]
#[cfg_attr(docsrs, doc(cfg(feature = "unstable")))]
pub mod testing;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;
mod transport;

pub use bytes::ByteBuf;
pub use channel::{
    DEFAULT_LINGER, Duplex, IntoIter, Iter, Options, Pipe, Received, Receiver, Select, Sender, Shm,
    SocketPair, TryIter, WireName, channel, duplex,
};
pub use codec::{Codec, CodecKind};
pub use endpoint::{Endpoint, Key, Listener, Net, Retry, connect, listen};
pub use error::{
    Error, ErrorKind, RecvError, RecvTimeoutError, Result, SendError, SendTimeoutError,
    TryRecvError, TrySendError,
};
pub use fd::Fd;
pub use handover::{
    ENV_CODEC, ENV_FD, ENV_VERSION, WIRE_VERSION, child_env, from_env, socket_from_env,
};
pub use pipe::{PipeReader, PipeWriter, pipe};
pub use pool::{Pool, PoolBuilder, TaskHandle};
pub use process::{
    Child, Command, ENV_ENTRY, How, Inherit, Killer, Signal, Task, fork, fork_unchecked, init, task,
};
#[cfg(feature = "zmq")]
#[cfg_attr(docsrs, doc(cfg(feature = "zmq")))]
pub use remote::zmq;
pub use shm::ShmWait;
pub use socket::{Kind, PeerCred, Socket, UnixListener, socket_pair};

/// Whether a descriptor has close-on-exec set: the property every descriptor
/// procwire creates has from birth. For tests and diagnostics (feature
/// `unstable`: not covered by semver).
#[cfg(feature = "unstable")]
#[cfg_attr(docsrs, doc(cfg(feature = "unstable")))]
pub fn is_cloexec(fd: impl std::os::fd::AsFd) -> std::io::Result<bool> {
    sys::is_cloexec(fd.as_fd())
}
