//! A pool whose workers live anywhere: they connect to it over `tcp://`
//! (authenticated) or ZeroMQ (`zmq+tcp://`, `zmq+ipc://`), join and leave
//! at any time, and each task is answered exactly once, in input order.
//!
//! # The flow (language-neutral)
//!
//! Every message is a MessagePack array of three: `[kind, id, data]`, with
//! `kind` a string, `id` an unsigned integer and `data` binary:
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
//! and answer later), but it is *answered* once: later answers to a task
//! already answered are dropped.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::zmq::{self, Peer, Router};
use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, Result};
use crate::{ByteBuf, CodecKind, Duplex, Net, Receiver, Sender};

mod worker;
pub use worker::{WorkerOptions, work, work_with};

/// One message of the flow: `[kind, id, data]`.
pub type Wire = (String, u64, ByteBuf);

fn wire(kind: &str, id: u64, data: Vec<u8>) -> Wire {
    (kind.to_string(), id, ByteBuf::from(data))
}

/// Who a worker is, to the pool.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum WorkerId {
    Tcp(u64),
    Zmq(Vec<u8>),
}

/// How the pool reaches a worker.
enum To {
    Tcp(Sender<Wire>),
    Zmq(Arc<Router<Wire, Wire>>, Peer),
}

impl To {
    fn send(&self, m: &Wire) -> Result<()> {
        match self {
            To::Tcp(tx) => tx.send_ref(m),
            To::Zmq(r, peer) => r.send(peer, m),
        }
    }
}

enum Event {
    Joined(WorkerId, To),
    Said(WorkerId, Wire),
    Gone(WorkerId, String),
}

/// The transport's threads: they turn connections and messages into
/// [`Event`]s, until `stop`.
struct Backend {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    router: Option<Arc<Router<Wire, Wire>>>,
}

/// A pool that remote workers connect to.
pub struct RemotePool {
    endpoint: Endpoint,
    events: Mutex<mpsc::Receiver<Event>>,
    backend: Backend,
    codec: CodecKind,
}

impl std::fmt::Debug for RemotePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemotePool")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// What became of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The worker's answer.
    Done(Vec<u8>),
    /// The worker reported the task failed, and why.
    Failed(String),
}

/// Counts of a finished [`RemotePool::run`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Tasks in all.
    pub tasks: u64,
    /// Tasks that failed.
    pub failed: u64,
    /// Tasks given to another worker because theirs vanished.
    pub reassigned: u64,
    /// Answers dropped because their task had been answered already.
    pub duplicates: u64,
}

const FLOW: Duration = Duration::from_millis(100);

impl RemotePool {
    /// Listens for workers at `addr`: `tcp://` (authenticated, see
    /// [`crate::endpoint`]), `zmq+tcp://` or `zmq+ipc://`.
    pub fn listen(addr: &str, net: &Net) -> Result<RemotePool> {
        let endpoint: Endpoint = addr.parse()?;
        let net = net.clone().codec(CodecKind::MsgPack);
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let (endpoint, backend) = match &endpoint {
            Endpoint::Tcp(_) => tcp_backend(addr, &net, tx, Arc::clone(&stop))?,
            Endpoint::ZmqTcp(_) | Endpoint::ZmqIpc(_) => {
                zmq_backend(addr, &net, tx, Arc::clone(&stop))?
            }
            Endpoint::Unix(_) => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "a remote pool listens at tcp://, zmq+tcp:// or zmq+ipc://",
                ));
            }
        };
        Ok(RemotePool {
            endpoint,
            events: Mutex::new(rx),
            backend,
            codec: CodecKind::MsgPack,
        })
    }

    /// Where workers connect.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Runs every task of `tasks` on the workers that connect, calling
    /// `each(index, outcome)` once per task: in input order (index 0, 1,
    /// …) when `ordered`, else as answers come. Pulls tasks only as workers
    /// become free, so `tasks` may be endless or slow (stdin). Returns when
    /// every task has been answered; then tells the workers to exit.
    pub fn run(
        &self,
        tasks: impl IntoIterator<Item = Vec<u8>> + Send + 'static,
        ordered: bool,
        mut each: impl FnMut(u64, Outcome),
    ) -> Result<Summary> {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let feed = Feed::start(tasks);
        let mut s = State::default();
        let mut ready_out: BTreeMap<u64, Outcome> = BTreeMap::new();
        let mut next_out = 0u64;
        let mut emit = |s: &mut State, id: u64, o: Outcome| {
            if matches!(o, Outcome::Failed(_)) {
                s.summary.failed += 1;
            }
            if !ordered {
                each(id, o);
                return;
            }
            ready_out.insert(id, o);
            while let Some(o) = ready_out.remove(&next_out) {
                each(next_out, o);
                next_out += 1;
            }
        };
        loop {
            s.dispatch(&feed);
            if feed.finished() && s.pending.is_empty() && s.queue.is_empty() {
                break;
            }
            match events.recv_timeout(FLOW) {
                Ok(Event::Joined(w, to)) => {
                    // A worker that comes back (reconnected, or given up as
                    // silent) starts afresh: what it held goes to others.
                    s.gone(&w);
                    s.workers.insert(w, Remote::new(to));
                }
                Ok(Event::Said(w, (kind, id, data))) => {
                    let answer = match kind.as_str() {
                        "done" => Some(Outcome::Done(data.into_vec())),
                        "failed" => {
                            Some(Outcome::Failed(String::from_utf8_lossy(&data).into_owned()))
                        }
                        _ => None,
                    };
                    s.heard(&w, &kind, id);
                    if let Some(o) = answer {
                        if s.pending.remove(&id).is_some() {
                            emit(&mut s, id, o);
                        } else {
                            s.summary.duplicates += 1;
                        }
                    }
                }
                Ok(Event::Gone(w, _why)) => s.gone(&w),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Error::new(
                        ErrorKind::Io,
                        "the pool's listener threads are gone",
                    ));
                }
            }
            s.reap_silent();
        }
        s.summary.tasks = feed.count();
        for r in s.workers.values() {
            let _ = r.to.send(&wire("bye", 0, Vec::new()));
        }
        Ok(s.summary)
    }

    /// Typed: encodes each task with MessagePack, runs them, and decodes
    /// the answers, in input order. A task that failed is an
    /// [`ErrorKind::Remote`] error in its place.
    pub fn map<Req, Resp>(&self, tasks: Vec<Req>) -> Result<Vec<Result<Resp>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let mut encoded = Vec::with_capacity(tasks.len());
        for t in &tasks {
            let mut b = Vec::new();
            self.codec.encode(t, &mut b)?;
            encoded.push(b);
        }
        let mut out = Vec::with_capacity(tasks.len());
        let codec = self.codec;
        self.run(encoded, true, |_, o| {
            out.push(match o {
                Outcome::Done(b) => codec.decode(&b),
                Outcome::Failed(why) => Err(Error::new(ErrorKind::Remote, why)),
            })
        })?;
        Ok(out)
    }
}

impl Drop for RemotePool {
    fn drop(&mut self) {
        self.backend.stop.store(true, Ordering::SeqCst);
        for t in self.backend.threads.drain(..) {
            let _ = t.join();
        }
        self.backend.router.take();
    }
}

/// A worker as the pool sees it.
struct Remote {
    to: To,
    ready: bool,
    holding: Option<u64>,
    heard: Instant,
    beat: Duration,
    /// Given up as silent (ZeroMQ): gets no task until it speaks again.
    lost: bool,
}

impl Remote {
    fn new(to: To) -> Remote {
        Remote {
            to,
            ready: false,
            holding: None,
            heard: Instant::now(),
            beat: Duration::from_secs(1),
            lost: false,
        }
    }
}

#[derive(Default)]
struct State {
    workers: HashMap<WorkerId, Remote>,
    /// Unanswered tasks: id -> payload (kept to give to another worker).
    pending: HashMap<u64, Vec<u8>>,
    /// Tasks to dispatch (given back ones first).
    queue: VecDeque<u64>,
    summary: Summary,
}

impl State {
    fn heard(&mut self, w: &WorkerId, kind: &str, id: u64) {
        let Some(r) = self.workers.get_mut(w) else {
            return;
        };
        // A ZeroMQ worker given up as silent that speaks again (it was
        // frozen, not dead) is back.
        r.lost = false;
        r.heard = Instant::now();
        match kind {
            "ready" => {
                r.ready = true;
                if id > 0 {
                    r.beat = Duration::from_millis(id);
                }
            }
            "done" | "failed" => {
                if r.holding == Some(id) {
                    r.holding = None;
                }
                r.ready = true;
            }
            _ => {}
        }
    }

    /// Gives tasks to ready workers: given-back tasks first, then new ones.
    fn dispatch(&mut self, feed: &Feed) {
        let ready: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, r)| r.ready && r.holding.is_none() && !r.lost)
            .map(|(w, _)| w.clone())
            .collect();
        for w in ready {
            let id = match self.queue.pop_front() {
                Some(id) => id,
                None => match feed.take() {
                    Some((id, payload)) => {
                        self.pending.insert(id, payload);
                        id
                    }
                    None => return,
                },
            };
            let Some(payload) = self.pending.get(&id) else {
                continue; // answered meanwhile
            };
            let r = self.workers.get_mut(&w).expect("listed above");
            match r.to.send(&wire("task", id, payload.clone())) {
                Ok(()) => {
                    r.holding = Some(id);
                    r.ready = false;
                    r.heard = Instant::now();
                }
                Err(_) => {
                    self.queue.push_front(id);
                    self.gone(&w);
                }
            }
        }
    }

    /// A worker left (or, on ZeroMQ, fell silent): its task goes back to
    /// the front of the queue. A TCP worker is forgotten (its connection is
    /// gone); a ZeroMQ one is kept, marked lost, so that if it speaks again
    /// it works again and hears `bye` at the end.
    fn gone(&mut self, w: &WorkerId) {
        let held = match w {
            WorkerId::Tcp(_) => self.workers.remove(w).and_then(|r| r.holding),
            WorkerId::Zmq(_) => self.workers.get_mut(w).and_then(|r| {
                r.lost = true;
                r.ready = false;
                r.holding.take()
            }),
        };
        if let Some(id) = held
            && self.pending.contains_key(&id)
        {
            self.queue.push_front(id);
            self.summary.reassigned += 1;
        }
    }

    /// ZeroMQ workers holding a task and silent for three beats are gone
    /// (TCP connections notice silence themselves).
    fn reap_silent(&mut self) {
        let silent: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(w, r)| {
                matches!(w, WorkerId::Zmq(_))
                    && !r.lost
                    && r.holding.is_some()
                    && r.heard.elapsed() > r.beat * 3
            })
            .map(|(w, _)| w.clone())
            .collect();
        for w in silent {
            self.gone(&w);
        }
    }
}

/// The tasks, read on a thread of their own (stdin may block), a bounded
/// number ahead.
struct Feed {
    state: Arc<(Mutex<FeedState>, Condvar)>,
}

#[derive(Default)]
struct FeedState {
    buffered: VecDeque<(u64, Vec<u8>)>,
    read: u64,
    done: bool,
}

const READ_AHEAD: usize = 256;

impl Feed {
    fn start(tasks: impl IntoIterator<Item = Vec<u8>> + Send + 'static) -> Feed {
        let state = Arc::new((Mutex::new(FeedState::default()), Condvar::new()));
        let st = Arc::clone(&state);
        std::thread::spawn(move || {
            let (lock, cv) = &*st;
            for t in tasks {
                let mut s = lock.lock().unwrap_or_else(PoisonError::into_inner);
                while s.buffered.len() >= READ_AHEAD {
                    s = cv.wait(s).unwrap_or_else(PoisonError::into_inner);
                }
                let id = s.read;
                s.read += 1;
                s.buffered.push_back((id, t));
            }
            lock.lock().unwrap_or_else(PoisonError::into_inner).done = true;
        });
        Feed { state }
    }

    fn take(&self) -> Option<(u64, Vec<u8>)> {
        let (lock, cv) = &*self.state;
        let got = lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .buffered
            .pop_front();
        cv.notify_all();
        got
    }

    fn finished(&self) -> bool {
        let s = self.state.0.lock().unwrap_or_else(PoisonError::into_inner);
        s.done && s.buffered.is_empty()
    }

    fn count(&self) -> u64 {
        self.state
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .read
    }
}

fn tcp_backend(
    addr: &str,
    net: &Net,
    events: mpsc::Sender<Event>,
    stop: Arc<AtomicBool>,
) -> Result<(Endpoint, Backend)> {
    let listener = net.listen(addr)?;
    let endpoint = listener.endpoint();
    let st = Arc::clone(&stop);
    let acceptor = std::thread::spawn(move || {
        let mut next = 0u64;
        while !st.load(Ordering::SeqCst) {
            let ch: Duplex<Wire, Wire> = match listener.accept_timeout(FLOW) {
                Ok(ch) => ch,
                Err(_) => continue,
            };
            next += 1;
            let id = WorkerId::Tcp(next);
            let (tx, rx): (Sender<Wire>, Receiver<Wire>) = ch.split();
            if events.send(Event::Joined(id.clone(), To::Tcp(tx))).is_err() {
                return;
            }
            let ev = events.clone();
            let st = Arc::clone(&st);
            std::thread::spawn(move || {
                loop {
                    match rx.recv_timeout(FLOW) {
                        Ok(m) => {
                            if ev.send(Event::Said(id.clone(), m)).is_err() {
                                return;
                            }
                        }
                        Err(e) if e.is_timeout() => {
                            if st.load(Ordering::SeqCst) {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = ev.send(Event::Gone(id, e.to_string()));
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok((
        endpoint,
        Backend {
            stop,
            threads: vec![acceptor],
            router: None,
        },
    ))
}

fn zmq_backend(
    addr: &str,
    net: &Net,
    events: mpsc::Sender<Event>,
    stop: Arc<AtomicBool>,
) -> Result<(Endpoint, Backend)> {
    let router: Arc<Router<Wire, Wire>> = Arc::new(zmq::bind_router(addr, net)?);
    let endpoint = router.endpoint().clone();
    let (r, st) = (Arc::clone(&router), Arc::clone(&stop));
    let reader = std::thread::spawn(move || {
        let mut known = std::collections::HashSet::new();
        while !st.load(Ordering::SeqCst) {
            let (peer, m) = match r.recv_timeout(FLOW) {
                Ok(got) => got,
                Err(e) if e.is_timeout() => continue,
                // Somebody sent something that is not the flow: ignore it.
                Err(e) if e.kind() == ErrorKind::Decode => continue,
                Err(_) => return,
            };
            let id = WorkerId::Zmq(peer.identity().to_vec());
            // A worker is known from its first message (or again, after it
            // was given up as silent and speaks once more).
            if m.0 == "ready" || known.insert(id.clone()) {
                known.insert(id.clone());
                let to = To::Zmq(Arc::clone(&r), peer);
                if events.send(Event::Joined(id.clone(), to)).is_err() {
                    return;
                }
            }
            if events.send(Event::Said(id, m)).is_err() {
                return;
            }
        }
    });
    Ok((
        endpoint,
        Backend {
            stop,
            threads: vec![reader],
            router: Some(router),
        },
    ))
}
