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
//! # One scheduler, many kinds of worker
//!
//! The same scheduler drives every kind of worker, through the [`Link`]
//! and [`Worker`] traits: functions of this program ([`Pool::builder`]),
//! programs speaking RPC ([`Pool::command`]), workers that connect from
//! other machines (`Pool::remote`, feature `remote`), the `procwire pool`
//! command's line and framed workers, and any link of your own
//! ([`Pool::with_link`]). Each gets the same API: [`Pool::call`],
//! [`Pool::submit`] → [`TaskHandle`], the lazy [`Pool::map`] and
//! [`Pool::map_unordered`], and [`Pool::run`] for a stream of tasks fed
//! from a thread (stdin, say).
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::awaited::Awaited;
use crate::error::{Error, ErrorKind, Result};
use crate::{Command, How, Options};

mod builder;
mod engine;
mod handle;
mod link;
mod spawner;

pub use builder::PoolBuilder;
use builder::Source;
use engine::*;
pub use handle::{Map, MapUnordered, TaskHandle};
pub use link::{ChildWorker, Ends, Link, Worker};

/// What a pool's messages must be.
///
/// # Examples
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize, Clone)]
/// struct Job {
///     name: String,
/// }
/// fn is_message<T: procwire::pool::Message>() {}
/// is_message::<Job>(); // any owned serde type is one
/// ```
pub trait Message: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> Message for T {}

/// What a submission does when `max_in_flight` tasks are unfinished.
#[derive(Clone, Copy)]
pub(super) enum WhenFull<'a> {
    /// Waits for room.
    Wait,
    /// Fails with [`ErrorKind::Full`].
    Fail,
    /// Fails with [`ErrorKind::Full`], and `waker` is woken when room may
    /// have come.
    Wake(&'a std::task::Waker),
}

/// Counts of a pool's work so far ([`Pool::stats`]).
///
/// # Examples
///
/// ```no_run
/// fn square(n: u64) -> u64 {
///     n * n
/// }
/// # fn main() -> procwire::Result<()> {
/// procwire::init()?;
/// let pool = procwire::Pool::builder(square).workers(1).build()?;
/// pool.call(3)?;
/// let s = pool.stats();
/// assert_eq!((s.submitted, s.failed, s.lost), (1, 0, 0));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Tasks submitted.
    pub submitted: u64,
    /// Tasks that finished with an error (their own, or their worker's).
    pub failed: u64,
    /// Times a worker was lost while it held a task (died, hung, vanished):
    /// the task was run again elsewhere, or failed.
    pub lost: u64,
    /// Answers dropped because they came from a worker that no longer
    /// held the task (a remote worker given up as lost that answered late).
    pub stray_answers: u64,
}

/// A pool of workers; see the [module docs](self).
///
/// # Examples
///
/// ```no_run
/// fn square(n: u64) -> u64 {
///     n * n
/// }
/// # fn main() -> procwire::Result<()> {
/// procwire::init()?;
/// let pool = procwire::Pool::builder(square).workers(2).build()?;
/// assert_eq!(pool.call(4)?, 16);
/// let h = pool.submit(5)?;
/// let all: Vec<u64> = pool.map(0..3).collect::<procwire::Result<_>>()?;
/// assert_eq!((h.wait()?, all), (25, vec![0, 1, 4]));
/// pool.shutdown()?;
/// # Ok(())
/// # }
/// ```
pub struct Pool<Req: Message + Clone, Resp: Message> {
    shared: Arc<Shared<Req, Resp>>,
    admitter: Option<JoinHandle<()>>,
    next_index: Mutex<u64>,
    endpoint: Option<crate::Endpoint>,
}

impl<Req: Message + Clone, Resp: Message> Pool<Req, Resp> {
    /// A pool whose workers run `handler`, a plain function of this
    /// program, in child processes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn square(n: u64) -> u64 {
    ///     n * n
    /// }
    /// # fn main() -> procwire::Result<()> {
    /// procwire::init()?; // first in main
    /// let pool = procwire::Pool::builder(square).workers(2).build()?;
    /// assert_eq!(pool.call(7)?, 49);
    /// pool.shutdown()?;
    /// # Ok(())
    /// # }
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let pool = procwire::Pool::<String, usize>::command(|| {
    ///     let mut cmd = procwire::Command::new("python3");
    ///     cmd.arg("worker.py"); // ch.serve(len) with the reference peer
    ///     cmd
    /// })
    /// .options(procwire::Options::new().codec(procwire::CodecKind::MsgPack))
    /// .workers(2)
    /// .build()?;
    /// assert_eq!(pool.call("four".into())?, 4);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn command(make: impl Fn() -> Command + Send + Sync + 'static) -> PoolBuilder<Req, Resp> {
        PoolBuilder::new(Source::Command(Arc::new(make)))
    }

    /// A pool over a [`Link`] of your own: the scheduler, queue, retries,
    /// timeouts and results of every pool, for a kind of worker procwire
    /// does not know.
    ///
    /// # Examples
    ///
    /// ```
    /// // A whole example is on `procwire::pool::Link`; in short:
    /// # struct MyLink;
    /// # impl procwire::pool::Link<u64, u64> for MyLink {
    /// #     fn start(&self) -> procwire::Result<Box<dyn procwire::pool::Worker<u64, u64>>> {
    /// #         Err(procwire::Error::new(procwire::ErrorKind::Unsupported, "an example"))
    /// #     }
    /// # }
    /// let pool = procwire::Pool::with_link(MyLink).workers(4).build();
    /// assert!(pool.is_err()); // this link cannot start workers
    /// ```
    pub fn with_link(link: impl Link<Req, Resp>) -> PoolBuilder<Req, Resp> {
        PoolBuilder::new(Source::Link(Arc::new(link)))
    }

    #[cfg(any(feature = "remote", feature = "nats"))]
    pub(crate) fn remote_with(
        link: Arc<dyn Link<Req, Resp>>,
        endpoint: crate::Endpoint,
    ) -> PoolBuilder<Req, Resp> {
        let mut b = PoolBuilder::new(Source::Link(link));
        b.endpoint = Some(endpoint);
        b.retries = u32::MAX;
        b.max_in_flight = Some(256);
        b
    }

    /// Where workers connect, for a pool whose workers arrive
    /// (`Pool::remote`); `None` for others.
    pub fn endpoint(&self) -> Option<&crate::Endpoint> {
        self.endpoint.as_ref()
    }

    fn new_slot(&self, notify: Option<Notify>) -> Arc<Slot<Resp>> {
        let index = {
            let mut n = lock(&self.next_index);
            *n += 1;
            *n - 1
        };
        Arc::new(Slot {
            index,
            result: Awaited::default(),
            notify,
        })
    }

    pub(super) fn enqueue(
        &self,
        req: Req,
        full: WhenFull<'_>,
        notify: Option<Notify>,
    ) -> Result<TaskHandle<Req, Resp>> {
        let mut q = lock(&self.shared.queue);
        loop {
            if self.shared.aborted.load(Ordering::SeqCst) {
                return Err(self.shared.stopped());
            }
            if q.closed {
                return Err(Error::new(ErrorKind::Cancelled, "the pool is shut down"));
            }
            if q.unfinished < q.capacity {
                break;
            }
            if let WhenFull::Wake(waker) = full
                && !q.room_wakers.iter().any(|w| w.will_wake(waker))
            {
                q.room_wakers.push(waker.clone());
            }
            if !matches!(full, WhenFull::Wait) {
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
        let slot = self.new_slot(notify);
        q.unfinished += 1;
        q.jobs.push_back(Job {
            req,
            slot: Arc::clone(&slot),
            attempts: 0,
            queued: true,
        });
        drop(q);
        self.shared.has_job.notify_one();
        Ok(TaskHandle {
            slot,
            shared: Arc::clone(&self.shared),
        })
    }

    /// How many tasks may be unfinished at once (`max_in_flight`).
    pub(crate) fn capacity(&self) -> usize {
        engine::lock(&self.shared.queue).capacity
    }

    /// Submits a task, waiting while `max_in_flight` tasks are unfinished.
    pub fn submit(&self, req: Req) -> Result<TaskHandle<Req, Resp>> {
        self.enqueue(req, WhenFull::Wait, None)
    }

    /// Submits a task if fewer than `max_in_flight` are unfinished;
    /// [`ErrorKind::Full`] otherwise.
    pub fn try_submit(&self, req: Req) -> Result<TaskHandle<Req, Resp>> {
        self.enqueue(req, WhenFull::Fail, None)
    }

    /// Like [`try_submit`](Pool::try_submit), and when the pool is full,
    /// `waker` is woken once a task finishes (or the pool stops): an
    /// awaited submission waits for room without polling.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn try_submit_or_wake(
        &self,
        req: Req,
        waker: &std::task::Waker,
    ) -> Result<TaskHandle<Req, Resp>> {
        self.enqueue(req, WhenFull::Wake(waker), None)
    }

    /// Runs every item of `items` and yields the results in order, lazily:
    /// at most `max_in_flight` tasks ahead of the consumer, pulled from
    /// `items` on the consumer's thread (see [`run`](Pool::run) for a
    /// source that may block, such as stdin).
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
        let tx = Mutex::new(tx);
        MapUnordered {
            pool: self,
            items: items.into_iter(),
            pending: HashMap::new(),
            position: HashMap::new(),
            next: 0,
            notify: Arc::new(move |i| {
                let _ = lock(&tx).send(i);
            }),
            rx,
        }
    }

    /// Finishes every task submitted, then stops the workers and waits for
    /// them. No zombie and no descriptor remains. (A pool whose workers
    /// arrive waits for workers to finish what is queued.)
    pub fn shutdown(mut self) -> Result<()> {
        {
            let mut q = lock(&self.shared.queue);
            if self.shared.link.arrives() {
                // Its drivers come with its workers: none may be there yet.
                while q.unfinished > 0 && !self.shared.aborted.load(Ordering::SeqCst) {
                    q = self
                        .shared
                        .has_room
                        .wait(q)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
            q.closed = true;
        }
        self.shared.has_job.notify_all();
        self.join_all()
    }

    /// Stops now: kills the workers, fails the queued and running tasks
    /// with [`ErrorKind::Cancelled`], and waits for everything to end.
    pub fn abort(mut self) -> Result<()> {
        self.shared.abort_now();
        self.join_all()
    }

    /// Stops now, from a shared reference (a `run` callback, another
    /// thread): kills the workers and fails the queued and running tasks
    /// with [`ErrorKind::Cancelled`]; no task is taken any more. Then
    /// [`abort`](Pool::abort) or [`shutdown`](Pool::shutdown) waits for
    /// everything to end.
    pub fn cancel(&self) {
        self.shared.abort_now();
    }

    fn join_all(&mut self) -> Result<()> {
        let mut panicked = false;
        // Drivers end once the queue is closed and empty; a lost worker's
        // task comes back to the driver that lost it.
        loop {
            let next = lock(&self.shared.drivers).pop();
            let Some(d) = next else { break };
            panicked |= d.join().is_err();
        }
        self.shared.link.close();
        if let Some(a) = self.admitter.take() {
            panicked |= a.join().is_err();
        }
        // Drivers the admitter started meanwhile.
        loop {
            let next = lock(&self.shared.drivers).pop();
            let Some(d) = next else { break };
            panicked |= d.join().is_err();
        }
        // Every slot is back: end the workers (killed if aborted).
        let kill = self.shared.aborted.load(Ordering::SeqCst);
        let slots: Vec<_> = lock(&self.shared.slots).free.drain(..).collect();
        for w in slots.into_iter().flatten() {
            self.shared.retire(w, kill);
        }
        if panicked {
            return Err(Error::new(ErrorKind::Io, "a pool thread panicked"));
        }
        match &*lock(&self.shared.gave_up) {
            Some(e) => Err(e.duplicate()),
            None => Ok(()),
        }
    }

    /// The process ids of the current workers (of this machine).
    pub fn worker_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = lock(&self.shared.live)
            .values()
            .filter_map(|l| l.pid)
            .collect();
        pids.sort_unstable();
        pids
    }

    /// Counts of the work so far.
    pub fn stats(&self) -> Stats {
        Stats {
            submitted: *lock(&self.next_index),
            failed: self.shared.failed.load(Ordering::Relaxed),
            lost: self.shared.lost.load(Ordering::Relaxed),
            stray_answers: self.shared.link.stray_answers(),
        }
    }

    /// Runs one task and waits for its result. When a worker is idle the
    /// task runs on it from this thread, with no hand-off to a driver
    /// thread: the cheapest way through the pool. Otherwise it is queued
    /// like [`submit`](Pool::submit).
    pub fn call(&self, req: Req) -> Result<Resp> {
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
        let handle = TaskHandle {
            slot: self.new_slot(None),
            shared: Arc::clone(&self.shared),
        };
        let job = Job {
            req,
            slot: Arc::clone(&handle.slot),
            attempts: 0,
            queued: false,
        };
        self.shared.work(slot, job, false);
        // Done here, or queued again for a retry.
        handle.wait()
    }

    /// Runs every task of `tasks`, read on a thread of its own (so it may
    /// block: stdin, a socket), calling `each(position, result)` once per
    /// task on this thread: in input order when `ordered`, else as results
    /// come. At most `max_in_flight` tasks are unfinished at once; in order,
    /// at most 16 times that (and at least 1,024) are read past the first
    /// task whose result has not been handed to `each`, so that one slow
    /// task holds back a bounded number of results. Returns the number of
    /// tasks once every one has its result.
    ///
    /// A pool that stops taking tasks during the run ([`cancel`](Pool::cancel),
    /// from `each` or another thread; or giving up on workers that keep
    /// failing) ends it: the task being submitted then fails with the
    /// pool's reason, the rest of `tasks` is not read (it may be endless),
    /// and once the tasks read have their results the run returns that
    /// reason as its error. A feeding thread blocked in `tasks`' `next`
    /// (stdin from a terminal) is waited for: the run returns after it
    /// yields.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn double(n: u64) -> u64 {
    ///     n * 2
    /// }
    ///
    /// # fn main() -> procwire::Result<()> {
    /// procwire::init()?;
    /// let pool = procwire::Pool::builder(double).workers(2).build()?;
    /// let mut out = Vec::new();
    /// let n = pool.run(0..100u64, true, |i, r| out.push((i, r.unwrap())))?;
    /// assert_eq!(n, 100);
    /// assert_eq!(out[7], (7, 14));
    /// # Ok(())
    /// # }
    /// ```
    pub fn run<I>(
        &self,
        tasks: I,
        ordered: bool,
        each: impl FnMut(u64, Result<Resp>),
    ) -> Result<u64>
    where
        I: IntoIterator<Item = Req>,
        I::IntoIter: Send,
    {
        handle::run(self, tasks.into_iter(), ordered, each)
    }
}

impl<Req: Message + Clone, Resp: Message> Drop for Pool<Req, Resp> {
    fn drop(&mut self) {
        let running = !lock(&self.shared.drivers).is_empty() || self.admitter.is_some();
        if running {
            // Dropped without shutdown: abort rather than leave workers.
            self.shared.abort_now();
            let _ = self.join_all();
        }
    }
}

impl<Req: Message + Clone, Resp: Message> fmt::Debug for Pool<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.worker_pids())
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}
