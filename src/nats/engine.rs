//! The durable pool as a backend of procwire's one pool engine
//! ([`Pool::nats`](crate::Pool::nats)): the engine's workers are slots,
//! each holding one task at a time in the run's task stream; the workers
//! that compute are [`work`](super::pool::work) processes anywhere (or
//! `procwire worker --connect nats://…`), and JetStream gives a task whose
//! worker died or froze to another.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::pool::{Answer, DurablePool, PoolOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::{Link, Message, PoolBuilder, Worker};
use crate::{CodecKind, Net, Pool};

/// A task's answer as it comes: the bytes, or why the task failed.
type Outcome = std::result::Result<Vec<u8>, String>;
type Routes = Mutex<HashMap<u64, mpsc::Sender<Outcome>>>;

/// What the slots share: the run, where each task's answer goes, and the
/// thread that collects answers.
struct Shared {
    pool: DurablePool,
    routes: Routes,
    next: AtomicU64,
    closed: AtomicBool,
    stray: AtomicU64,
}

impl Shared {
    /// Collects answers until the link closes, each to its slot.
    fn collect(self: Arc<Shared>) {
        while !self.closed.load(Ordering::SeqCst) {
            match self.pool.next_answer(Duration::from_millis(100)) {
                Ok(Some(Answer { task, result })) => {
                    let to = self
                        .routes
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&task);
                    match to {
                        Some(to) => drop(to.send(result)),
                        None => {
                            self.stray.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok(None) => {}
                // The server is out of reach: the slots' deadlines (and
                // the client's reconnects) take it from here.
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

struct NatsLink<Req, Resp> {
    shared: Arc<Shared>,
    codec: CodecKind,
    slots: AtomicU64,
    _types: std::marker::PhantomData<fn(Req) -> Resp>,
}

/// One slot of the engine: the tasks it gave the run, oldest first, and
/// where their answers come.
struct Slot<Req, Resp> {
    shared: Arc<Shared>,
    codec: CodecKind,
    number: u64,
    held: std::collections::VecDeque<(u64, mpsc::Receiver<Outcome>)>,
    _types: std::marker::PhantomData<fn(Req) -> Resp>,
}

impl<Req: Message, Resp: Message> Link<Req, Resp> for NatsLink<Req, Resp> {
    fn start(&self) -> Result<Box<dyn Worker<Req, Resp>>> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::Cancelled,
                "the pool takes no more workers",
            ));
        }
        Ok(Box::new(Slot {
            shared: Arc::clone(&self.shared),
            codec: self.codec,
            number: self.slots.fetch_add(1, Ordering::Relaxed) + 1,
            held: std::collections::VecDeque::new(),
            _types: std::marker::PhantomData,
        }))
    }

    fn close(&self) {
        if !self.shared.closed.swap(true, Ordering::SeqCst) {
            // The run's streams go, and with them its workers.
            let _ = self.shared.pool.finish();
        }
    }

    fn stray_answers(&self) -> u64 {
        self.shared.stray.load(Ordering::Relaxed)
    }
}

impl<Req: Message, Resp: Message> Worker<Req, Resp> for Slot<Req, Resp> {
    fn send(&mut self, req: &Req) -> Result<()> {
        let mut payload = Vec::new();
        self.codec.encode(req, &mut payload)?;
        let n = self.shared.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel();
        self.shared
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(n, tx);
        if let Err(e) = self.shared.pool.submit(n, &payload) {
            self.shared
                .routes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&n);
            return Err(e);
        }
        self.held.push_back((n, rx));
        Ok(())
    }

    fn recv(&mut self, deadline: Option<Instant>) -> Result<Resp> {
        let Some((n, rx)) = self.held.front() else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "no task is waiting for an answer",
            ));
        };
        let got = match deadline {
            None => rx.recv().map_err(|_| None),
            Some(d) => rx
                .recv_timeout(d.saturating_duration_since(Instant::now()))
                .map_err(|e| Some(e == mpsc::RecvTimeoutError::Timeout)),
        };
        let n = *n;
        let answer = match got {
            Ok(a) => a,
            Err(Some(true)) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("task {n}: no answer from the NATS workers in time"),
                ));
            }
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Disconnected,
                    "the pool's answers stopped",
                ));
            }
        };
        self.held.pop_front();
        match answer {
            Ok(bytes) => self.codec.decode(&bytes),
            Err(why) => Err(Error::new(ErrorKind::Remote, why)),
        }
    }

    fn alive(&mut self) -> bool {
        !self.shared.closed.load(Ordering::SeqCst)
    }

    fn name(&self) -> String {
        format!("NATS slot {}", self.number)
    }

    fn killer(&self) -> Box<dyn Fn() + Send + Sync> {
        Box::new(|| {})
    }

    fn retire(self: Box<Self>, _kill: bool) {
        // Its tasks stay in the run: a worker answers them; the answers
        // count as stray if nobody waits for them any more.
        let mut routes = self
            .shared
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (n, _) in &self.held {
            routes.remove(n);
        }
    }
}

impl<Req: Message + Clone, Resp: Message> Pool<Req, Resp> {
    /// A pool on the NATS server of `addr` (`nats://HOST:PORT/NAME`, feature
    /// `nats`): the same engine and API as every pool (`call`, `submit`,
    /// `map`, `run`), its tasks kept by JetStream and computed by workers
    /// anywhere that run [`nats::pool::work`](super::pool::work) (or
    /// `procwire worker --connect nats://…`); a worker that dies or
    /// freezes has its task given to another by the server. The builder's
    /// [`workers`](PoolBuilder::workers) is how many tasks are in the run
    /// at once (64 unless set). Requests and answers use `net`'s codec
    /// (the workers' must match); the run under `NAME` must not exist
    /// (this API does not resume: the CLI's `--resume` does), and ends,
    /// its streams deleted, at [`shutdown`](Pool::shutdown).
    pub fn nats(addr: &str, net: &Net, opts: &PoolOptions) -> Result<PoolBuilder<Req, Resp>> {
        let mut opts = opts.clone();
        opts.resume = false;
        let pool = DurablePool::open(addr, net, &opts)?;
        let shared = Arc::new(Shared {
            pool,
            routes: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            stray: AtomicU64::new(0),
        });
        {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("procwire-nats-answers".into())
                .spawn(move || shared.collect())
                .map_err(|e| Error::io("starting the pool's answer thread", e))?;
        }
        let link: NatsLink<Req, Resp> = NatsLink {
            shared,
            codec: net.options.codec_kind(),
            slots: AtomicU64::new(0),
            _types: std::marker::PhantomData,
        };
        let endpoint: crate::Endpoint = addr.parse()?;
        Ok(Pool::remote_with(Arc::new(link), endpoint).workers(64))
    }
}
