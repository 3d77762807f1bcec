//! A pool whose workers live anywhere: they connect to it over `tcp://`
//! (authenticated) or ZeroMQ (`zmq+tcp://`, `zmq+ipc://`), join and leave
//! at any time, and each task is answered exactly once.
//!
//! It is a [`Pool`] like any other (the same scheduler,
//! `call`, `submit`, `map`, `run`), whose workers arrive instead of being
//! started: [`Pool::remote`](crate::Pool::remote). Workers run [`work`] or
//! [`work_with`], `procwire worker`, or any program that follows the flow
//! below.
//!
//! ```
//! use procwire::remote::pool::{WorkerOptions, work_with};
//!
//! # fn main() -> procwire::Result<()> {
//! let net = procwire::Net::new().no_key(); // loopback only without a key
//! let pool = procwire::Pool::<u64, u64>::remote("tcp://127.0.0.1:0", &net)?.build()?;
//! let at = pool.endpoint().expect("a remote pool has one").to_string();
//! let worker = std::thread::spawn(move || {
//!     let wo = WorkerOptions { net: procwire::Net::new().no_key(), ..WorkerOptions::default() };
//!     work_with(&at, &wo, |n: u64| Ok::<_, String>(n * n))
//! });
//! let squares: Vec<u64> = pool.map(0..10).collect::<procwire::Result<_>>()?;
//! assert_eq!(squares[9], 81);
//! pool.shutdown()?; // says bye: the worker returns
//! worker.join().unwrap()?;
//! # Ok(())
//! # }
//! ```
//!
//! # The flow (language-neutral)
//!
//! Every message is a MessagePack array of three: `[kind, id, data]`, with
//! `kind` a string, `id` an unsigned integer and `data` binary ([`Flow`]
//! in Rust). `PAYLOAD` and `RESULT` are encoded with the codec of the
//! pool's [`Net`] options (postcard unless set; `work_with` uses the
//! worker's, so set both alike, MessagePack for workers in other
//! languages, raw for bytes as they are):
//!
//! | from | message | meaning |
//! |---|---|---|
//! | worker | `["ready", BEAT_MS, b""]` | I take tasks; I beat every `BEAT_MS` while I hold one |
//! | pool | `["task", ID, PAYLOAD]` | run this |
//! | worker | `["done", ID, RESULT]` | the answer (and I am ready again) |
//! | worker | `["failed", ID, WHY]` | the task failed, `WHY` in UTF-8 (and I am ready again) |
//! | worker | `["beat", 0, b""]` | still working |
//! | pool | `["bye", 0, b""]` | all done: exit |
//!
//! Over `tcp://` the messages travel as procwire frames on an authenticated
//! connection; over ZeroMQ, one frame each, the pool a ROUTER and each
//! worker a DEALER (any program with a ZeroMQ binding can be a worker:
//! `tests/python/zmq_worker.py` is one in 30 lines of pyzmq).
//!
//! A worker is gone when its `tcp://` connection ends or falls silent (see
//! [`crate::endpoint`]), or, on ZeroMQ, when it holds a task and has sent
//! nothing for three of its beats. Its task goes to another worker. So a
//! task may *run* twice (its first worker may have been frozen, not dead,
//! and answer later), but it is *answered* once: an answer counts only from
//! the worker that holds the task, with the id the pool gave it there;
//! any other is dropped ([`Stats::stray_answers`](crate::pool::Stats)).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::de::{self, DeserializeOwned};
use serde::{Deserialize, Serialize};

use super::zmq::{self, Peer, Router};
use crate::endpoint::{Endpoint, Listener};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::{Link, Message, Worker};
use crate::{ByteBuf, CodecKind, Duplex, Net, Pool, PoolBuilder};

mod demux;
mod worker;
use demux::Demux;
pub use worker::{WorkerOptions, work, work_with};

/// One message of the flow (see the [module docs](self)), on the wire the
/// MessagePack array `[kind, id, data]`.
///
/// # Examples
///
/// ```
/// use procwire::remote::pool::Flow;
///
/// // The flow is MessagePack arrays: what a Python worker sends as ready.
/// let mut ready = Vec::new();
/// procwire::CodecKind::MsgPack.encode(&Flow::Ready { beat_ms: 1000 }, &mut ready)?;
/// assert_eq!(ready[..8], [0x93, 0xa5, b'r', b'e', b'a', b'd', b'y', 0xcd]); // ["ready", 1000, b""]
/// let back: Flow = procwire::CodecKind::MsgPack.decode(&ready)?;
/// assert_eq!(back, Flow::Ready { beat_ms: 1000 });
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Flow {
    /// `["ready", BEAT_MS, b""]`: the worker takes tasks, and beats every
    /// `beat_ms` while it holds one.
    Ready {
        /// Its beat, in milliseconds.
        beat_ms: u64,
    },
    /// `["task", ID, PAYLOAD]`: run this.
    Task {
        /// The task's id, chosen by the pool.
        id: u64,
        /// The task, in the pool's codec.
        payload: ByteBuf,
    },
    /// `["done", ID, RESULT]`: the answer; the worker is ready again.
    Done {
        /// The id of the task it answers.
        id: u64,
        /// The answer, in the pool's codec.
        result: ByteBuf,
    },
    /// `["failed", ID, WHY]`: the task failed; the worker is ready again.
    Failed {
        /// The id of the task.
        id: u64,
        /// Why, in UTF-8.
        why: String,
    },
    /// `["beat", 0, b""]`: still working.
    Beat,
    /// `["bye", 0, b""]`: all done, exit.
    Bye,
    /// A kind this version does not know (a later version's): ignored.
    Unknown {
        /// The kind it named.
        kind: String,
    },
}

impl Serialize for Flow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let empty: &[u8] = &[];
        let (kind, id, data): (&str, u64, &[u8]) = match self {
            Flow::Ready { beat_ms } => ("ready", *beat_ms, empty),
            Flow::Task { id, payload } => ("task", *id, payload),
            Flow::Done { id, result } => ("done", *id, result),
            Flow::Failed { id, why } => ("failed", *id, why.as_bytes()),
            Flow::Beat => ("beat", 0, empty),
            Flow::Bye => ("bye", 0, empty),
            Flow::Unknown { kind } => (kind, 0, empty),
        };
        (kind, id, Bin(data)).serialize(s)
    }
}

/// A byte string, as `ByteBuf` writes one.
struct Bin<'a>(&'a [u8]);

impl Serialize for Bin<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de> Deserialize<'de> for Flow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Flow, D::Error> {
        let (kind, id, data) = <(String, u64, ByteBuf)>::deserialize(d)?;
        Ok(match kind.as_str() {
            "ready" => Flow::Ready { beat_ms: id },
            "task" => Flow::Task { id, payload: data },
            "done" => Flow::Done { id, result: data },
            "failed" => Flow::Failed {
                id,
                why: String::from_utf8(data.into_vec())
                    .map_err(|_| de::Error::custom("a failure's reason is not UTF-8"))?,
            },
            "beat" => Flow::Beat,
            "bye" => Flow::Bye,
            _ => Flow::Unknown { kind },
        })
    }
}

/// How often waiting threads look whether the pool is finished.
const FLOW: Duration = Duration::from_millis(100);

impl<Req: Message + Clone, Resp: Message> Pool<Req, Resp> {
    /// A pool whose workers connect to it at `addr`: `tcp://`
    /// (authenticated, see [`crate::endpoint`]), `zmq+tcp://` or
    /// `zmq+ipc://`; bound at once, so that [`Pool::endpoint`] tells
    /// workers where to go (with the port the system chose for port 0).
    /// Tasks are encoded with `net`'s codec. A worker lost while holding a
    /// task gives it to another (retries are unlimited unless set).
    ///
    /// # Examples
    ///
    /// ```
    /// let net = procwire::Net::new().no_key();
    /// let pool = procwire::Pool::<u64, u64>::remote("zmq+tcp://127.0.0.1:0", &net)?.build()?;
    /// let at = pool.endpoint().expect("where workers connect").to_string();
    /// assert!(at.starts_with("zmq+tcp://127.0.0.1:"));
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn remote(addr: &str, net: &Net) -> Result<PoolBuilder<Req, Resp>> {
        let endpoint: Endpoint = addr.parse()?;
        let codec = net.options.codec_kind();
        let flow_net = net.clone().codec(CodecKind::MsgPack);
        let stray = Arc::new(AtomicU64::new(0));
        let closed = Arc::new(AtomicBool::new(false));
        let (arrivals, endpoint) = match &endpoint {
            Endpoint::Tcp(_) => {
                let listener = flow_net.listen(addr)?;
                let at = listener.endpoint();
                (Arrivals::Tcp(Box::new(Mutex::new(listener))), at)
            }
            Endpoint::ZmqTcp(_) | Endpoint::ZmqIpc(_) => {
                let router: Arc<Router<Flow, Flow>> = Arc::new(zmq::bind_router(addr, &flow_net)?);
                let at = router.endpoint().clone();
                (Arrivals::Zmq(Demux::start(router, Arc::clone(&stray))?), at)
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "a remote pool listens at tcp://, zmq+tcp:// or zmq+ipc://",
                ));
            }
        };
        let link = RemoteLink {
            arrivals,
            closed,
            codec,
            stray,
            joined: AtomicU64::new(0),
        };
        Ok(Pool::remote_with(Arc::new(link), endpoint))
    }
}

/// Where workers come from.
enum Arrivals {
    Tcp(Box<Mutex<Listener>>),
    Zmq(Arc<Demux>),
}

struct RemoteLink {
    arrivals: Arrivals,
    closed: Arc<AtomicBool>,
    codec: CodecKind,
    stray: Arc<AtomicU64>,
    joined: AtomicU64,
}

impl<Req: Message, Resp: Message> Link<Req, Resp> for RemoteLink {
    fn start(&self) -> Result<Box<dyn Worker<Req, Resp>>> {
        let stopped = || Error::new(ErrorKind::Cancelled, "the pool takes no more workers");
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return Err(stopped());
            }
            let number = self.joined.load(Ordering::Relaxed) + 1;
            let conn = match &self.arrivals {
                Arrivals::Tcp(l) => {
                    let l = l.lock().unwrap_or_else(PoisonError::into_inner);
                    match l.accept_timeout::<Flow, Flow>(FLOW) {
                        Ok(ch) => Conn::Tcp(ch),
                        // A timeout, or a client that failed its
                        // handshake: wait for the next.
                        Err(_) => continue,
                    }
                }
                Arrivals::Zmq(d) => match d
                    .arrived
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .recv_timeout(FLOW)
                {
                    Ok(z) => Conn::Zmq(z),
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return Err(stopped()),
                },
            };
            self.joined.store(number, Ordering::Relaxed);
            return Ok(Box::new(RemoteWorker {
                conn,
                number,
                codec: self.codec,
                stray: Arc::clone(&self.stray),
                sent: VecDeque::new(),
                next: 0,
                _types: std::marker::PhantomData,
            }));
        }
    }

    fn arrives(&self) -> bool {
        true
    }

    fn close(&self) {
        if !self.closed.swap(true, Ordering::SeqCst)
            && let Arrivals::Zmq(d) = &self.arrivals
        {
            d.stop();
        }
    }

    fn stray_answers(&self) -> u64 {
        self.stray.load(Ordering::Relaxed)
    }
}

/// A ZeroMQ worker's side of the ROUTER: its messages, demultiplexed.
struct ZmqConn {
    router: Arc<Router<Flow, Flow>>,
    peer: Peer,
    inbox: mpsc::Receiver<Flow>,
    /// Weak: a connection waiting in the demultiplexer's arrivals must not
    /// keep the demultiplexer (and its ROUTER, whose drop sends what was
    /// queued, byes included) alive.
    demux: std::sync::Weak<Demux>,
    beat: Duration,
    heard: Instant,
}

enum Conn {
    Tcp(Duplex<Flow, Flow>),
    Zmq(ZmqConn),
}

struct RemoteWorker<Req, Resp> {
    conn: Conn,
    number: u64,
    codec: CodecKind,
    stray: Arc<AtomicU64>,
    /// Ids of the tasks this worker holds, oldest first.
    sent: VecDeque<u64>,
    next: u64,
    _types: std::marker::PhantomData<fn(Req) -> Resp>,
}

/// What one message meant to the worker's pool side.
enum Heard {
    Answer(std::result::Result<ByteBuf, String>),
    Nothing,
}

impl<Req, Resp> RemoteWorker<Req, Resp> {
    fn heard(&mut self, m: Flow) -> Heard {
        if let Conn::Zmq(z) = &mut self.conn {
            z.heard = Instant::now();
            if let Flow::Ready { beat_ms } = m
                && beat_ms > 0
            {
                z.beat = Duration::from_millis(beat_ms);
            }
        }
        let (id, answer) = match m {
            Flow::Done { id, result } => (id, Ok(result)),
            Flow::Failed { id, why } => (id, Err(why)),
            _ => return Heard::Nothing,
        };
        if self.sent.front() == Some(&id) {
            self.sent.pop_front();
            Heard::Answer(answer)
        } else {
            // Not the task this worker holds: a late answer, or a forgery.
            self.stray.fetch_add(1, Ordering::Relaxed);
            Heard::Nothing
        }
    }

    fn send_flow(&self, m: &Flow) -> Result<()> {
        match &self.conn {
            Conn::Tcp(ch) => ch.send_ref(m),
            Conn::Zmq(z) => z.router.send(&z.peer, m),
        }
    }
}

impl<Req: Message, Resp: Message> Worker<Req, Resp> for RemoteWorker<Req, Resp> {
    fn send(&mut self, req: &Req) -> Result<()> {
        let mut payload = Vec::new();
        self.codec.encode(req, &mut payload)?;
        self.next += 1;
        let id = self.next;
        self.send_flow(&Flow::Task {
            id,
            payload: ByteBuf::from(payload),
        })?;
        self.sent.push_back(id);
        Ok(())
    }

    fn recv(&mut self, deadline: Option<Instant>) -> Result<Resp> {
        loop {
            let got = match &self.conn {
                Conn::Tcp(ch) => ch
                    .receiver()
                    .recv_wait(crate::channel::Wait::until(deadline)),
                Conn::Zmq(z) => {
                    // ZeroMQ tells a slow worker from a dead one only by
                    // its beats.
                    let silent_at = z.heard + z.beat * 3;
                    let until = deadline.map_or(silent_at, |d| d.min(silent_at));
                    match z
                        .inbox
                        .recv_timeout(until.saturating_duration_since(Instant::now()))
                    {
                        Ok(m) => Ok(m),
                        Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= silent_at => {
                            Err(Error::disconnected(&format!(
                                "it sent nothing for three of its beats ({:?} each)",
                                z.beat
                            )))
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::new(
                            ErrorKind::Timeout,
                            "no answer before the deadline",
                        )),
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            Err(Error::disconnected("the pool let it go"))
                        }
                    }
                }
            };
            match self.heard(got?) {
                Heard::Answer(Ok(bytes)) => return self.codec.decode(&bytes),
                Heard::Answer(Err(why)) => return Err(Error::new(ErrorKind::Remote, why)),
                Heard::Nothing => {}
            }
        }
    }

    fn alive(&mut self) -> bool {
        loop {
            let got = match &self.conn {
                Conn::Tcp(ch) => match ch.try_recv() {
                    Ok(m) => m,
                    Err(e) => return e.is_empty(),
                },
                Conn::Zmq(z) => match z.inbox.try_recv() {
                    Ok(m) => m,
                    Err(mpsc::TryRecvError::Empty) => return true,
                    Err(mpsc::TryRecvError::Disconnected) => return false,
                },
            };
            let _ = self.heard(got);
        }
    }

    fn name(&self) -> String {
        match &self.conn {
            Conn::Tcp(_) => format!("remote worker {} (tcp://)", self.number),
            Conn::Zmq(z) => format!(
                "remote worker {} (ZeroMQ identity {})",
                self.number,
                z.peer
                    .identity()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            ),
        }
    }

    fn killer(&self) -> Box<dyn Fn() + Send + Sync> {
        match &self.conn {
            Conn::Tcp(ch) => {
                let conn = Arc::clone(ch.conn());
                Box::new(move || conn.abort())
            }
            Conn::Zmq(z) => {
                let (demux, id) = (z.demux.clone(), z.peer.identity().to_vec());
                Box::new(move || {
                    if let Some(d) = demux.upgrade() {
                        d.forget(&id);
                    }
                })
            }
        }
    }

    fn retire(self: Box<Self>, kill: bool) {
        if !kill {
            let _ = self.send_flow(&Flow::Bye);
        }
        if let Conn::Zmq(z) = &self.conn
            && let Some(d) = z.demux.upgrade()
        {
            d.forget(z.peer.identity());
            if !kill {
                d.said_bye(z.peer.identity());
            }
        }
    }
}
