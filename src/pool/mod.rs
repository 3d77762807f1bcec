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

mod engine;
mod handle;

use engine::*;
pub use handle::{Map, MapUnordered, TaskHandle};

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
