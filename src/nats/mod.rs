//! Channels and RPC services on a NATS server (feature `nats`): the same
//! typed messages and codecs as every procwire channel, carried by an
//! existing messaging engine that clusters, persists and authenticates,
//! so that senders, receivers, clients and servers come and go on any
//! machine that reaches it.
//!
//! Addresses are `nats://HOST:PORT/SUBJECT`. Credentials never go on a
//! command line: they come from a file named by an environment variable,
//! [`PROCWIRE_NATS_CREDS`](CREDS_FILE) (a `.creds` file: user JWT and nkey
//! seed), [`PROCWIRE_NATS_TOKEN_FILE`](TOKEN_FILE) (a token) or
//! [`PROCWIRE_NATS_USER_FILE`](USER_FILE) (`USER:PASSWORD`), each refused
//! if its group or others may read it. A server that requires TLS gets it
//! (the system's roots, plus [`PROCWIRE_NATS_CA_FILE`](CA_FILE) if set).
//! Wrong or missing credentials are [`ErrorKind::Refused`](crate::ErrorKind::Refused),
//! with the server's answer in the message.
//!
//! # Channels: no silent loss
//!
//! Core NATS delivers at most once: nothing is kept for a receiver that
//! is absent, slow or reconnecting. procwire's channels over a subject
//! are therefore carried on JetStream (the server must run with it,
//! `nats-server -js`): [`Sender::send`] returns once the server has
//! stored the message; [`Receiver::recv`] takes the next stored message,
//! has its acknowledgement confirmed by the server, and only then hands
//! it over. Messages sent while no receiver runs wait for one; every
//! receiver of a subject shares one durable consumer, so each message
//! goes to one of them, in order when there is one; a receiver that dies
//! between taking a message and its acknowledgement lets it go again to
//! another after 30 s. A channel has no end of stream: senders and
//! receivers are independent processes; `Disconnected` means the server
//! stopped answering (a receive waits through the client's reconnects,
//! and gives up when an answer is overdue by 5 s). A message above the
//! server's `max_payload` is refused before it is sent, with both sizes in
//! the error ([`ErrorKind::FrameTooLarge`](crate::ErrorKind::FrameTooLarge));
//! it is not split.
//!
//! ```no_run
//! # fn main() -> procwire::Result<()> {
//! let net = procwire::Net::new();
//! let tx = procwire::nats::sender::<String>("nats://127.0.0.1:4222/jobs", &net)?;
//! let rx = procwire::nats::receiver::<String>("nats://127.0.0.1:4222/jobs", &net)?;
//! tx.send("Heavy lifting".into())?;
//! assert_eq!(rx.recv()?, "Heavy lifting");
//! # Ok(())
//! # }
//! ```
//!
//! # RPC services that scale out
//!
//! [`serve`] joins the subject's queue group: start the same service on N
//! machines and they share the calls. [`Client::call`] is a NATS request
//! under a deadline: a server killed mid-call gives the caller
//! [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) by then, never a
//! lost reply without an error; no server at all is
//! [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) at once.
//!
//! ```no_run
//! # fn main() -> procwire::Result<()> {
//! let net = procwire::Net::new();
//! std::thread::spawn(move || {
//!     procwire::nats::serve("nats://127.0.0.1:4222/lesson", &net, |job: String| {
//!         Ok::<_, String>(format!("{job} accomplished!"))
//!     }, || false)
//! });
//! let client = procwire::nats::Client::<String, String>::connect(
//!     "nats://127.0.0.1:4222/lesson", &procwire::Net::new())?;
//! assert_eq!(client.call("Heavy lifting".into())?, "Heavy lifting accomplished!");
//! # Ok(())
//! # }
//! ```
//!
//! # A durable pool
//!
//! [`pool`] keeps a pool's tasks and answers on JetStream, so that the
//! process that feeds it can die and be run again, workers join from any
//! machine, and a worker that dies or freezes has its task given to
//! another: [`pool::DurablePool`] (publish each task once, collect the
//! answers; `resume` continues a run), [`pool::work`] and
//! [`pool::work_with`] (a worker), and [`Pool::nats`](crate::Pool::nats),
//! the one pool engine (`call`, `submit`, `map`) on it. On the command
//! line: `procwire pool --listen nats://HOST:PORT/NAME [--resume]` and
//! `procwire worker --connect nats://HOST:PORT/NAME -- CMD`.
//!
//! Awaited ends (features `nats` and `tokio`) are in `procwire::tokio::nats`:
//! the same steps, on the caller's runtime.
//!
//! The subjects, streams, consumers and payloads are in the wire format
//! (`docs/wire-format.md`, "NATS"), so a client in any language can be a
//! peer. The connections of channels and clients run on procwire's
//! background runtime (one thread, `procwire-net`, while any NATS or
//! ZeroMQ end lives), each call on the caller's thread; [`serve`] runs its
//! connection on its own thread, between calls.

pub(crate) mod channel;
pub(crate) mod connect;
mod engine;
pub mod pool;
pub(crate) mod rpc;

pub use channel::{Receiver, Sender, receiver, sender};
pub use connect::{CA_FILE, CREDS_FILE, TOKEN_FILE, USER_FILE};
pub use rpc::{Client, serve};
