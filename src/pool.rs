//! A pool of worker processes: the lesson's request/reply, scaled up.
//!
//! ```no_run
//! use procwire::Pool;
//!
//! fn square(n: u64) -> u64 {
//!     n * n
//! }
//!
//! fn main() -> procwire::Result<()> {
//!     procwire::init()?; // first in main: the fork server starts workers fast
//!     let pool = Pool::builder(square).workers(2).build()?;
//!     let squares: Vec<u64> = pool.map(0..10).collect::<procwire::Result<_>>()?;
//!     assert_eq!(squares[9], 81);
//!     pool.shutdown()?;
//!     Ok(())
//! }
//! ```
//!
//! Each worker is a child process serving [RPC](crate::rpc) calls; one
//! thread here drives each worker, taking tasks from a bounded queue. A
//! worker that crashes (panics, aborts, exits, is killed) fails only the
//! task it was running, with an error naming its pid and exit status or
//! signal, and is replaced; no other task is lost or run twice.
//!
//! # Compared with Python's pools
//!
//! | `multiprocessing.Pool` / `ProcessPoolExecutor` | procwire |
//! |---|---|
//! | `map` | [`Pool::map`]: lazy, ordered, at most `max_in_flight` tasks ahead |
//! | `imap` | [`Pool::map`] (it is already lazy) |
//! | `imap_unordered` | [`Pool::map_unordered`] |
//! | `apply`, `submit(...).result()` | [`Pool::call`]: runs on an idle worker from the calling thread |
//! | `apply_async`, `submit` | [`Pool::submit`] → [`TaskHandle`]; [`Pool::try_submit`] never blocks |
//! | `initializer` | [`PoolBuilder::initializer`] (function workers) |
//! | `maxtasksperchild` | [`PoolBuilder::max_tasks_per_worker`] |
//! | `BrokenProcessPool` | none: a dead worker fails its own task ([`ErrorKind::PeerExited`]) and is replaced; the pool stays usable |
//! | `Future.cancel` | [`TaskHandle::cancel`]: a task not yet started is never run |
//! | `timeout` of `get`/`result` | [`TaskHandle::wait_timeout`]; and [`PoolBuilder::task_timeout`] kills a worker stuck on a task |
//! | `close` + `join`, `shutdown(wait=True)` | [`Pool::shutdown`]: finishes what was submitted |
//! | `terminate`, `shutdown(cancel_futures=True)` | [`Pool::abort`]: kills the workers now (also on drop) |
//! | a killed worker hangs `Pool` forever (CPython issue 96062) | supervision: a worker's death ends the wait at once |
//! | chunksize | none: procwire's per-task overhead is one RPC round trip |

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::awaited::Awaited;
use crate::error::{Error, ErrorKind, Result};
use crate::process::ProcState;
use crate::process::{describe, fn_offset, handler_at, init_fn_at};
use crate::rpc::{self, Client, ServerEnd};
use crate::{Child, Command, How, Options, task};

/// What a pool's messages must be.
pub trait Message: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> Message for T {}

type Factory = Arc<dyn Fn() -> Command + Send + Sync>;

enum Source<Req, Resp> {
    Function {
        handler: fn(Req) -> Resp,
        init: Option<fn()>,
        how: How,
    },
    Command(Factory),
}

impl<Req, Resp> Clone for Source<Req, Resp> {
    fn clone(&self) -> Self {
        match self {
            Source::Function { handler, init, how } => Source::Function {
                handler: *handler,
                init: *init,
                how: *how,
            },
            Source::Command(f) => Source::Command(Arc::clone(f)),
        }
    }
}

/// Configures a [`Pool`]; made by [`Pool::builder`] or [`Pool::command`].
pub struct PoolBuilder<Req, Resp> {
    source: Source<Req, Resp>,
    workers: usize,
    max_in_flight: Option<usize>,
    task_timeout: Option<Duration>,
    max_tasks_per_worker: Option<u64>,
    retries: u32,
    options: Options,
}

impl<Req: Message + Clone, Resp: Message> PoolBuilder<Req, Resp> {
    /// How many workers (default: the number of CPUs).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// How function workers start (default [`How::Auto`]: the fork server
    /// if [`init`](crate::init) started one, else re-exec).
    pub fn via(mut self, how: How) -> Self {
        if let Source::Function { how: h, .. } = &mut self.source {
            *h = how;
        }
        self
    }

    /// The most tasks submitted and not yet finished (default: twice the
    /// workers). `submit` waits, and `try_submit` fails with
    /// [`ErrorKind::Full`], beyond it.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n.max(1));
        self
    }

    /// A task running longer than this fails with [`ErrorKind::Timeout`]
    /// and its worker is killed and replaced.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Replaces each worker after it has run `n` tasks (multiprocessing's
    /// `maxtasksperchild`).
    pub fn max_tasks_per_worker(mut self, n: u64) -> Self {
        self.max_tasks_per_worker = Some(n.max(1));
        self
    }

    /// Runs a task again, on a fresh worker, up to `n` more times when its
    /// worker crashed or timed out on it (default 0). A handler's own error
    /// is never retried.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Runs `init` once in each function worker before its first task.
    pub fn initializer(mut self, init: fn()) -> Self {
        if let Source::Function { init: i, .. } = &mut self.source {
            *i = Some(init);
        }
        self
    }

    /// The channel options (codec: use MessagePack for workers in other
    /// languages).
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Starts the workers.
    ///
    /// [`How::Fork`] is refused: a pool starts replacement workers from its
    /// own threads, where forking is unsafe. Use the fork server (call
    /// [`init`](crate::init); the default) or [`How::Reexec`].
    pub fn build(self) -> Result<Pool<Req, Resp>> {
        if let Source::Function { how: How::Fork, .. } = self.source {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "a pool cannot fork its workers: it replaces them from its own threads, where \
                 fork is unsafe; use the fork server (procwire::init(), the default) or How::Reexec",
            ));
        }
        let workers = self.workers;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                unfinished: 0,
                capacity: self.max_in_flight.unwrap_or(workers * 2),
                closed: false,
            }),
            has_job: Condvar::new(),
            has_room: Condvar::new(),
            aborted: AtomicBool::new(false),
            slots: Mutex::new(Slots {
                free: Vec::new(),
                waiting: 0,
            }),
            slot_free: Condvar::new(),
            live: Mutex::new(HashMap::new()),
            config: Config {
                source: self.source,
                task_timeout: self.task_timeout,
                max_tasks: self.max_tasks_per_worker,
                retries: self.retries,
                options: self.options,
            },
        });
        // Start every worker now, so that a worker that cannot start is an
        // error here rather than on the first task.
        for _ in 0..workers {
            let worker = shared.start_worker()?;
            lock(&shared.slots).free.push(Some(worker));
        }
        let mut drivers = Vec::new();
        for n in 0..workers {
            let shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("procwire-pool-{n}"))
                .spawn(move || drive(&shared))
                .map_err(|e| Error::io("starting a pool driver thread", e))?;
            drivers.push(handle);
        }
        Ok(Pool {
            shared,
            drivers,
            next_index: Mutex::new(0),
        })
    }
}

impl<Req, Resp> fmt::Debug for PoolBuilder<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("workers", &self.workers)
            .field("max_in_flight", &self.max_in_flight)
            .field("task_timeout", &self.task_timeout)
            .field("max_tasks_per_worker", &self.max_tasks_per_worker)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

struct Config<Req, Resp> {
    source: Source<Req, Resp>,
    task_timeout: Option<Duration>,
    max_tasks: Option<u64>,
    retries: u32,
    options: Options,
}

struct Job<Req, Resp> {
    req: Req,
    slot: Arc<Slot<Resp>>,
    attempts: u32,
}

struct Queue<Req, Resp> {
    jobs: VecDeque<Job<Req, Resp>>,
    /// Submitted and not yet finished (queued or running).
    unfinished: usize,
    capacity: usize,
    closed: bool,
}

struct Shared<Req, Resp> {
    queue: Mutex<Queue<Req, Resp>>,
    has_job: Condvar,
    has_room: Condvar,
    aborted: AtomicBool,
    /// Worker slots not in use: a worker, or `None` for a slot whose worker
    /// must be (re)started. There are always `workers` slots in all, here or
    /// checked out by a driver or by a caller of [`Pool::call`].
    slots: Mutex<Slots<Req, Resp>>,
    slot_free: Condvar,
    /// Every live worker, to kill on abort and to list.
    live: Mutex<HashMap<u32, Arc<ProcState>>>,
    config: Config<Req, Resp>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where a task's result lands.
struct Slot<Resp> {
    index: u64,
    result: Awaited<Result<Resp>>,
    /// Tells an unordered `map` which task finished.
    notify: Option<mpsc::Sender<u64>>,
}

impl<Resp> Slot<Resp> {
    fn fill(&self, r: Result<Resp>) {
        self.result.set(r);
        if let Some(n) = &self.notify {
            let _ = n.send(self.index);
        }
    }
}

/// The arguments of a function worker.
#[derive(Serialize, Deserialize)]
struct WorkerArg {
    handler: isize,
    init: Option<isize>,
}

/// A function worker's life: initialize, then serve calls until the pool
/// closes the channel.
fn worker_main<Req: Message, Resp: Message>(arg: WorkerArg, end: ServerEnd<Req, Resp>) {
    if let Some(init) = arg.init {
        init_fn_at(init)();
    }
    let handler = handler_at::<Req, Resp>(arg.handler);
    let _ = rpc::serve(end, |req| Ok::<_, String>(handler(req)));
}

struct Worker<Req, Resp> {
    client: Client<Req, Resp>,
    child: Child,
    tasks: u64,
}

/// The free worker slots, and how many threads wait for one (a wake-up
/// costs a futex call: skipped when nobody waits).
struct Slots<Req, Resp> {
    free: Vec<Option<Worker<Req, Resp>>>,
    waiting: usize,
}

/// How one attempt at a task went.
enum Attempt<Resp> {
    /// A result (the worker's own error included); the worker is fine.
    Done(Result<Resp>),
    /// The worker died or hung on the task; it is gone. A retry may help.
    Lost(Error),
}

impl<Req: Message + Clone, Resp: Message> Shared<Req, Resp> {
    fn start_worker(&self) -> Result<Worker<Req, Resp>> {
        let (child, end) = match &self.config.source {
            Source::Function { handler, init, how } => {
                let arg = WorkerArg {
                    handler: fn_offset(*handler as usize),
                    init: init.map(|f| fn_offset(f as usize)),
                };
                task(worker_main::<Req, Resp>, arg)
                    .via(*how)
                    .options(self.config.options.clone())
                    .spawn()?
            }
            Source::Command(factory) => {
                let mut cmd = factory();
                let end = cmd.channel_with(&self.config.options)?;
                (cmd.spawn()?, end)
            }
        };
        lock(&self.live).insert(child.id(), Arc::clone(child.state()));
        Ok(Worker {
            client: Client::new(end),
            child,
            tasks: 0,
        })
    }

    /// Ends a worker: closes its channel (it exits) and reaps it, killing
    /// it first when `kill`, or when it does not exit within a second.
    fn retire(&self, worker: Worker<Req, Resp>, kill: bool) {
        let Worker {
            client, mut child, ..
        } = worker;
        lock(&self.live).remove(&child.id());
        drop(client);
        if kill {
            let _ = child.kill();
        }
        if let Ok(None) = child.wait_timeout(Duration::from_secs(1)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Takes a worker slot, waiting for one when `block`. `None` if none is
    /// free (not blocking) or the pool was aborted.
    fn checkout(&self, block: bool) -> Option<Option<Worker<Req, Resp>>> {
        let mut slots = lock(&self.slots);
        loop {
            if self.aborted.load(Ordering::SeqCst) {
                return None;
            }
            if let Some(slot) = slots.free.pop() {
                return Some(slot);
            }
            if !block {
                return None;
            }
            slots.waiting += 1;
            slots = self
                .slot_free
                .wait(slots)
                .unwrap_or_else(PoisonError::into_inner);
            slots.waiting -= 1;
        }
    }

    fn checkin(&self, slot: Option<Worker<Req, Resp>>) {
        let mut slots = lock(&self.slots);
        slots.free.push(slot);
        if slots.waiting > 0 {
            self.slot_free.notify_one();
        }
    }

    /// A slot's worker, ready for a task: started if the slot is empty,
    /// replaced if it died while idle (a task must not pay for a death it
    /// did not cause).
    fn ready(&self, slot: Option<Worker<Req, Resp>>) -> Result<Worker<Req, Resp>> {
        match slot {
            Some(mut w) => {
                if matches!(w.child.try_wait(), Ok(None)) {
                    return Ok(w);
                }
                let _ = w.child.wait();
                lock(&self.live).remove(&w.child.id());
                self.start_worker()
            }
            None => self.start_worker(),
        }
    }

    /// Runs `req` on a slot's worker, then gives the slot back.
    fn attempt(&self, slot: Option<Worker<Req, Resp>>, req: Req) -> Attempt<Resp> {
        let mut w = match self.ready(slot) {
            Ok(w) => w,
            Err(e) => {
                self.checkin(None);
                return Attempt::Done(Err(e));
            }
        };
        let result = match self.config.task_timeout {
            Some(t) => w.client.call_timeout(req, t),
            None => w.client.call(req),
        };
        match result {
            Ok(resp) => {
                w.tasks += 1;
                if self.config.max_tasks.is_some_and(|m| w.tasks >= m) {
                    self.retire(w, false);
                    self.checkin(None);
                } else {
                    self.checkin(Some(w));
                }
                Attempt::Done(Ok(resp))
            }
            Err(e) if e.kind() == ErrorKind::Remote => {
                self.checkin(Some(w));
                Attempt::Done(Err(e))
            }
            Err(e) => {
                // The worker crashed or hung on this task: name it, replace it.
                let pid = w.child.id();
                self.retire(w, true);
                self.checkin(None);
                let died = matches!(
                    e.kind(),
                    ErrorKind::PeerExited | ErrorKind::Disconnected | ErrorKind::UnexpectedEof
                );
                if e.kind() == ErrorKind::Timeout {
                    Attempt::Lost(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "the task ran past its timeout; worker {pid} was killed and replaced"
                        ),
                    ))
                } else if died {
                    let what = match e.exit_status() {
                        Some(s) => describe(s),
                        None => format!("failed ({e})"),
                    };
                    Attempt::Lost(
                        Error::new(
                            ErrorKind::PeerExited,
                            format!("worker {pid} {what} while running this task; it was replaced"),
                        )
                        .with_status(e.exit_status()),
                    )
                } else {
                    // A reply that did not decode, say: the channel is no
                    // longer trustworthy, so the worker was replaced; the
                    // task is not retried.
                    Attempt::Done(Err(e))
                }
            }
        }
    }

    fn next_job(&self) -> Option<Job<Req, Resp>> {
        let mut q = lock(&self.queue);
        loop {
            if self.aborted.load(Ordering::SeqCst) {
                return None;
            }
            if let Some(job) = q.jobs.pop_front() {
                return Some(job);
            }
            if q.closed {
                return None;
            }
            q = self.has_job.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn finish(&self, job: Job<Req, Resp>, r: Result<Resp>) {
        job.slot.fill(r);
        let mut q = lock(&self.queue);
        q.unfinished -= 1;
        drop(q);
        self.has_room.notify_all();
        // Shutdown waits for `unfinished` to reach 0 too.
        self.has_job.notify_all();
    }

    fn requeue(&self, mut job: Job<Req, Resp>) {
        job.attempts += 1;
        lock(&self.queue).jobs.push_front(job);
        self.has_job.notify_one();
    }
}

/// A driver thread: takes queued tasks and runs each on a free worker.
fn drive<Req: Message + Clone, Resp: Message>(shared: &Shared<Req, Resp>) {
    while let Some(job) = shared.next_job() {
        let Some(slot) = shared.checkout(true) else {
            shared.finish(job, Err(aborted()));
            break;
        };
        let outcome = shared.attempt(slot, job.req.clone());
        if shared.aborted.load(Ordering::SeqCst) {
            shared.finish(job, Err(aborted()));
            break;
        }
        match outcome {
            Attempt::Done(r) => shared.finish(job, r),
            Attempt::Lost(_) if job.attempts < shared.config.retries => shared.requeue(job),
            Attempt::Lost(e) => shared.finish(job, Err(e)),
        }
    }
}

fn aborted() -> Error {
    Error::new(
        ErrorKind::Cancelled,
        "the pool was aborted before the task finished",
    )
}

/// A pool of worker processes; see the [module docs](self).
pub struct Pool<Req: Message + Clone, Resp: Message> {
    shared: Arc<Shared<Req, Resp>>,
    drivers: Vec<JoinHandle<()>>,
    next_index: Mutex<u64>,
}

impl<Req: Message + Clone, Resp: Message> Pool<Req, Resp> {
    /// A pool whose workers run `handler`, a plain function of this
    /// program, in child processes.
    pub fn builder(handler: fn(Req) -> Resp) -> PoolBuilder<Req, Resp> {
        PoolBuilder::new(Source::Function {
            handler,
            init: None,
            how: How::Auto,
        })
    }

    /// A pool whose workers are programs made by `make`, which speak
    /// [RPC](crate::rpc) over `PROCWIRE_FD` (in any language: see the
    /// wire format; the Python reference peer has `serve`).
    pub fn command(make: impl Fn() -> Command + Send + Sync + 'static) -> PoolBuilder<Req, Resp> {
        PoolBuilder::new(Source::Command(Arc::new(make)))
    }

    fn enqueue(
        &self,
        req: Req,
        block: bool,
        notify: Option<mpsc::Sender<u64>>,
    ) -> Result<TaskHandle<Req, Resp>> {
        let mut q = lock(&self.shared.queue);
        loop {
            if q.closed || self.shared.aborted.load(Ordering::SeqCst) {
                return Err(Error::new(ErrorKind::Cancelled, "the pool is shut down"));
            }
            if q.unfinished < q.capacity {
                break;
            }
            if !block {
                return Err(Error::new(
                    ErrorKind::Full,
                    format!(
                        "{} tasks are already in flight (max_in_flight)",
                        q.unfinished
                    ),
                ));
            }
            q = self
                .shared
                .has_room
                .wait(q)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let index = {
            let mut n = lock(&self.next_index);
            *n += 1;
            *n - 1
        };
        let slot = Arc::new(Slot {
            index,
            result: Awaited::default(),
            notify,
        });
        q.unfinished += 1;
        q.jobs.push_back(Job {
            req,
            slot: Arc::clone(&slot),
            attempts: 0,
        });
        drop(q);
        self.shared.has_job.notify_one();
        Ok(TaskHandle {
            slot,
            shared: Arc::clone(&self.shared),
        })
    }

    /// Submits a task, waiting while `max_in_flight` tasks are unfinished.
    pub fn submit(&self, req: Req) -> Result<TaskHandle<Req, Resp>> {
        self.enqueue(req, true, None)
    }

    /// Submits a task if fewer than `max_in_flight` are unfinished;
    /// [`ErrorKind::Full`] otherwise.
    pub fn try_submit(&self, req: Req) -> Result<TaskHandle<Req, Resp>> {
        self.enqueue(req, false, None)
    }

    /// Runs every item of `items` and yields the results in order, lazily:
    /// at most `max_in_flight` tasks ahead of the consumer.
    pub fn map<I: IntoIterator<Item = Req>>(&self, items: I) -> Map<'_, Req, Resp, I::IntoIter> {
        Map {
            pool: self,
            items: items.into_iter(),
            pending: VecDeque::new(),
        }
    }

    /// Like [`map`](Pool::map), but yields each result as soon as it is
    /// ready, with its item's position.
    pub fn map_unordered<I: IntoIterator<Item = Req>>(
        &self,
        items: I,
    ) -> MapUnordered<'_, Req, Resp, I::IntoIter> {
        let (tx, rx) = mpsc::channel();
        MapUnordered {
            pool: self,
            items: items.into_iter(),
            pending: HashMap::new(),
            position: HashMap::new(),
            next: 0,
            tx,
            rx,
        }
    }

    /// Finishes every task submitted, then stops the workers and waits for
    /// them. No zombie and no descriptor remains.
    pub fn shutdown(mut self) -> Result<()> {
        lock(&self.shared.queue).closed = true;
        self.shared.has_job.notify_all();
        self.join_drivers()
    }

    /// Stops now: kills the workers, fails the queued and running tasks
    /// with [`ErrorKind::Cancelled`], and waits for everything to end.
    pub fn abort(mut self) -> Result<()> {
        self.abort_now();
        self.join_drivers()
    }

    fn abort_now(&self) {
        self.shared.aborted.store(true, Ordering::SeqCst);
        let queued: Vec<_> = {
            let mut q = lock(&self.shared.queue);
            q.closed = true;
            q.jobs.drain(..).collect()
        };
        for job in queued {
            self.shared.finish(job, Err(aborted()));
        }
        for state in lock(&self.shared.live).values() {
            let _ = state.signal(crate::Signal::Kill.as_raw());
        }
        self.shared.has_job.notify_all();
        self.shared.has_room.notify_all();
        self.shared.slot_free.notify_all();
    }

    fn join_drivers(&mut self) -> Result<()> {
        let mut panicked = false;
        for d in self.drivers.drain(..) {
            panicked |= d.join().is_err();
        }
        // Every slot is back: end the workers (killed if aborted).
        let kill = self.shared.aborted.load(Ordering::SeqCst);
        let slots: Vec<_> = lock(&self.shared.slots).free.drain(..).collect();
        for w in slots.into_iter().flatten() {
            self.shared.retire(w, kill);
        }
        if panicked {
            return Err(Error::new(ErrorKind::Io, "a pool driver thread panicked"));
        }
        Ok(())
    }

    /// The process ids of the current workers.
    pub fn worker_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = lock(&self.shared.live).keys().copied().collect();
        pids.sort_unstable();
        pids
    }

    /// Runs one task and waits for its result. When a worker is idle the
    /// task runs on it from this thread, with no hand-off to a driver
    /// thread: the cheapest way through the pool. Otherwise it is queued
    /// like [`submit`](Pool::submit).
    pub fn call(&self, req: Req) -> Result<Resp> {
        let mut attempts = 0;
        loop {
            let queue_empty = lock(&self.shared.queue).jobs.is_empty();
            // Queued tasks go first: take a worker only if none is waiting.
            let slot = if queue_empty {
                self.shared.checkout(false)
            } else {
                None
            };
            let Some(slot) = slot else {
                return self.submit(req)?.wait();
            };
            match self.shared.attempt(slot, req.clone()) {
                Attempt::Done(r) => return r,
                Attempt::Lost(_) if attempts < self.shared.config.retries => attempts += 1,
                Attempt::Lost(e) => return Err(e),
            }
        }
    }
}

impl<Req, Resp> PoolBuilder<Req, Resp> {
    fn new(source: Source<Req, Resp>) -> Self {
        PoolBuilder {
            source,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_in_flight: None,
            task_timeout: None,
            max_tasks_per_worker: None,
            retries: 0,
            options: Options::new(),
        }
    }
}

impl<Req: Message + Clone, Resp: Message> Drop for Pool<Req, Resp> {
    fn drop(&mut self) {
        if !self.drivers.is_empty() {
            // Dropped without shutdown: abort rather than leave workers.
            self.abort_now();
            let _ = self.join_drivers();
        }
    }
}

impl<Req: Message + Clone, Resp: Message> fmt::Debug for Pool<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.worker_pids())
            .finish_non_exhaustive()
    }
}

/// A submitted task's result, to come.
pub struct TaskHandle<Req, Resp> {
    slot: Arc<Slot<Resp>>,
    shared: Arc<Shared<Req, Resp>>,
}

impl<Req, Resp> TaskHandle<Req, Resp> {
    /// Waits for the result.
    pub fn wait(self) -> Result<Resp> {
        self.slot
            .result
            .wait_with(None, Option::take)
            .unwrap_or_else(|| Err(aborted()))
    }

    /// Waits at most `timeout`; [`ErrorKind::Timeout`] if the task has not
    /// finished (it goes on; wait again, or cancel it).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Resp> {
        self.slot
            .result
            .wait_with(Some(Instant::now() + timeout), Option::take)
            .unwrap_or_else(|| {
                Err(Error::new(
                    ErrorKind::Timeout,
                    "the task has not finished yet",
                ))
            })
    }

    /// The result if the task has finished.
    pub fn try_take(&self) -> Option<Result<Resp>> {
        self.slot
            .result
            .wait_with(Some(Instant::now()), Option::take)
    }

    /// Cancels the task if it has not started: it will never run, and its
    /// result is [`ErrorKind::Cancelled`]. Returns whether it was cancelled
    /// (a running task runs to its end).
    pub fn cancel(&self) -> bool {
        let mut q = lock(&self.shared.queue);
        let Some(at) = q.jobs.iter().position(|j| Arc::ptr_eq(&j.slot, &self.slot)) else {
            return false;
        };
        let job = q.jobs.remove(at).expect("position is in range");
        q.unfinished -= 1;
        drop(q);
        self.shared.has_room.notify_all();
        self.shared.has_job.notify_all();
        job.slot.fill(Err(Error::new(
            ErrorKind::Cancelled,
            "the task was cancelled",
        )));
        true
    }
}

impl<Req, Resp> fmt::Debug for TaskHandle<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("index", &self.slot.index)
            .finish_non_exhaustive()
    }
}

/// The results of [`Pool::map`], in order.
pub struct Map<'p, Req: Message + Clone, Resp: Message, I> {
    pool: &'p Pool<Req, Resp>,
    items: I,
    pending: VecDeque<Result<TaskHandle<Req, Resp>>>,
}

impl<Req: Message + Clone, Resp: Message, I: Iterator<Item = Req>> Iterator
    for Map<'_, Req, Resp, I>
{
    type Item = Result<Resp>;

    fn next(&mut self) -> Option<Result<Resp>> {
        // Keep the pool busy: fill the window without blocking.
        let capacity = lock(&self.pool.shared.queue).capacity;
        while self.pending.len() < capacity {
            let Some(item) = self.items.next() else { break };
            self.pending.push_back(self.pool.submit(item));
        }
        Some(self.pending.pop_front()?.and_then(TaskHandle::wait))
    }
}

impl<Req: Message + Clone, Resp: Message, I> fmt::Debug for Map<'_, Req, Resp, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// The results of [`Pool::map_unordered`]: `(position, result)` as they
/// finish.
pub struct MapUnordered<'p, Req: Message + Clone, Resp: Message, I> {
    pool: &'p Pool<Req, Resp>,
    items: I,
    pending: HashMap<u64, TaskHandle<Req, Resp>>,
    position: HashMap<u64, usize>,
    next: usize,
    tx: mpsc::Sender<u64>,
    rx: mpsc::Receiver<u64>,
}

impl<Req: Message + Clone, Resp: Message, I: Iterator<Item = Req>> Iterator
    for MapUnordered<'_, Req, Resp, I>
{
    type Item = (usize, Result<Resp>);

    fn next(&mut self) -> Option<(usize, Result<Resp>)> {
        let capacity = lock(&self.pool.shared.queue).capacity;
        while self.pending.len() < capacity {
            let Some(item) = self.items.next() else { break };
            let pos = self.next;
            self.next += 1;
            match self.pool.enqueue(item, true, Some(self.tx.clone())) {
                Ok(h) => {
                    self.position.insert(h.slot.index, pos);
                    self.pending.insert(h.slot.index, h);
                }
                Err(e) => return Some((pos, Err(e))),
            }
        }
        if self.pending.is_empty() {
            return None;
        }
        let index = self.rx.recv().ok()?;
        let handle = self.pending.remove(&index)?;
        let pos = self.position.remove(&index)?;
        Some((pos, handle.wait()))
    }
}

impl<Req: Message + Clone, Resp: Message, I> fmt::Debug for MapUnordered<'_, Req, Resp, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapUnordered")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}
