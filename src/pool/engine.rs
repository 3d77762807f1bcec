//! The one scheduler behind every [`Pool`]: the queue, the worker slots,
//! and what happens when a worker dies, over any [`Link`].

use super::*;

pub(super) type Boxed<Req, Resp> = Box<dyn Worker<Req, Resp>>;

pub(super) struct Config {
    pub(super) task_timeout: Option<Duration>,
    pub(super) max_tasks: Option<u64>,
    pub(super) retries: u32,
    pub(super) pipeline: usize,
    pub(super) give_up_after: Option<u32>,
}

pub(super) struct Job<Req, Resp> {
    pub(super) req: Req,
    pub(super) slot: Arc<Slot<Resp>>,
    pub(super) attempts: u32,
    /// Counted in the queue's `unfinished` (a `call` run on its caller's
    /// thread is not, until it is queued for a retry).
    pub(super) queued: bool,
}

pub(super) struct Queue<Req, Resp> {
    pub(super) jobs: VecDeque<Job<Req, Resp>>,
    /// Submitted and not yet finished (queued or running).
    pub(super) unfinished: usize,
    pub(super) capacity: usize,
    pub(super) closed: bool,
    /// Awaited submissions that found no room
    /// ([`tokio::Pool`](crate::tokio::Pool)): woken when a task finishes,
    /// or the pool stops.
    pub(super) room_wakers: Vec<std::task::Waker>,
}

impl<Req, Resp> Queue<Req, Resp> {
    /// Takes the wakers of awaited submissions, to wake once the lock is
    /// released.
    pub(super) fn wakers(&mut self) -> Vec<std::task::Waker> {
        std::mem::take(&mut self.room_wakers)
    }
}

/// A worker with what the pool keeps about it.
pub(super) struct Held<Req, Resp> {
    pub(super) worker: Boxed<Req, Resp>,
    pub(super) key: u64,
    pub(super) tasks: u64,
}

pub(super) struct Shared<Req, Resp> {
    pub(super) queue: Mutex<Queue<Req, Resp>>,
    pub(super) has_job: Condvar,
    pub(super) has_room: Condvar,
    pub(super) aborted: AtomicBool,
    /// Worker slots not in use: a worker, or `None` for a slot whose worker
    /// must be (re)started. A pool that starts its workers has always
    /// `workers` slots in all, here or checked out; one whose workers
    /// arrive has one per worker that arrived and was not lost.
    pub(super) slots: Mutex<Slots<Req, Resp>>,
    pub(super) slot_free: Condvar,
    /// Every live worker: its pid (if local) and how to kill it on abort.
    pub(super) live: Mutex<HashMap<u64, Live>>,
    pub(super) next_key: AtomicU64,
    pub(super) link: Arc<dyn Link<Req, Resp>>,
    pub(super) config: Config,
    pub(super) lost: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) lost_in_a_row: AtomicU64,
    /// Why the pool gave up (workers kept failing), for every task after.
    pub(super) gave_up: Mutex<Option<Error>>,
    /// Driver threads, for a pool whose workers arrive (one per worker).
    pub(super) drivers: Mutex<Vec<JoinHandle<()>>>,
    /// Starts the workers of a pool that starts them (`None`: they
    /// arrive). Last, so that its thread outlives the workers in `slots`.
    pub(super) spawner: Option<spawner::Spawner<Req, Resp>>,
}

pub(super) struct Live {
    pub(super) pid: Option<u32>,
    pub(super) kill: Box<dyn Fn() + Send + Sync>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where a task's result lands.
pub(super) struct Slot<Resp> {
    pub(super) index: u64,
    pub(super) result: Awaited<Result<Resp>>,
    /// Tells an unordered `map` or `run` which task finished.
    pub(super) notify: Option<Notify>,
}

pub(super) type Notify = Arc<dyn Fn(u64) + Send + Sync>;

impl<Resp> Slot<Resp> {
    pub(super) fn fill(&self, r: Result<Resp>) {
        self.result.set(r);
        if let Some(n) = &self.notify {
            n(self.index);
        }
    }
}

/// The free worker slots, and how many threads wait for one (a wake-up
/// costs a futex call: skipped when nobody waits).
pub(super) struct Slots<Req, Resp> {
    pub(super) free: Vec<Option<Held<Req, Resp>>>,
    pub(super) waiting: usize,
}

/// A task sent to a worker, with the time its clock started.
struct InFlight<Req, Resp> {
    job: Job<Req, Resp>,
    since: Instant,
}

impl<Req, Resp> Shared<Req, Resp> {
    pub(super) fn finish(&self, job: Job<Req, Resp>, r: Result<Resp>) {
        if r.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        job.slot.fill(r);
        if job.queued {
            let mut q = lock(&self.queue);
            q.unfinished -= 1;
            let wakers = q.wakers();
            drop(q);
            self.has_room.notify_all();
            wakers.into_iter().for_each(std::task::Waker::wake);
            // Shutdown waits for `unfinished` to reach 0 too.
            self.has_job.notify_all();
        }
    }

    /// Why tasks end unfinished now: the pool gave up, or was aborted.
    pub(super) fn stopped(&self) -> Error {
        match &*lock(&self.gave_up) {
            Some(e) => e.duplicate(),
            None => aborted(),
        }
    }
}

impl<Req: Send + Clone + 'static, Resp: Send + 'static> Shared<Req, Resp> {
    /// Takes a new worker into the pool's books.
    pub(super) fn admit(&self, worker: Boxed<Req, Resp>) -> Held<Req, Resp> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        lock(&self.live).insert(
            key,
            Live {
                pid: worker.pid(),
                kill: worker.killer(),
            },
        );
        Held {
            worker,
            key,
            tasks: 0,
        }
    }

    pub(super) fn start_worker(&self) -> Result<Held<Req, Resp>> {
        let worker = match &self.spawner {
            Some(s) => s.start()?,
            None => self.link.start()?,
        };
        Ok(self.admit(worker))
    }

    /// Ends a worker: see [`Worker::retire`].
    pub(super) fn retire(&self, held: Held<Req, Resp>, kill: bool) {
        lock(&self.live).remove(&held.key);
        held.worker.retire(kill);
    }

    /// Takes a worker slot, waiting for one when `block`. `None` if none is
    /// free (not blocking) or the pool was aborted.
    pub(super) fn checkout(&self, block: bool) -> Option<Option<Held<Req, Resp>>> {
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

    /// Gives a slot back. A pool whose workers arrive keeps no empty slot:
    /// a lost worker's place goes with it.
    pub(super) fn checkin(&self, slot: Option<Held<Req, Resp>>) {
        if slot.is_none() && self.link.arrives() {
            return;
        }
        let mut slots = lock(&self.slots);
        slots.free.push(slot);
        if slots.waiting > 0 {
            self.slot_free.notify_one();
        }
    }

    /// A slot's worker, ready for a task: started if the slot is empty,
    /// replaced if it died while idle (a task must not pay for a death it
    /// did not cause).
    fn ready(&self, slot: Option<Held<Req, Resp>>) -> Result<Held<Req, Resp>> {
        match slot {
            Some(mut h) => {
                if h.worker.alive() {
                    return Ok(h);
                }
                self.retire(h, true);
                self.start_worker()
            }
            None => self.start_worker(),
        }
    }

    pub(super) fn next_job(&self, block: bool) -> Option<Job<Req, Resp>> {
        let mut q = lock(&self.queue);
        loop {
            if self.aborted.load(Ordering::SeqCst) {
                return None;
            }
            if let Some(job) = q.jobs.pop_front() {
                return Some(job);
            }
            if q.closed || !block {
                return None;
            }
            q = self.has_job.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Puts jobs back at the front of the queue, in their order (or, once
    /// the pool stopped, ends them).
    fn requeue(&self, jobs: impl DoubleEndedIterator<Item = Job<Req, Resp>>) {
        if self.aborted.load(Ordering::SeqCst) {
            for job in jobs {
                self.finish(job, Err(self.stopped()));
            }
            return;
        }
        let mut q = lock(&self.queue);
        for mut job in jobs.rev() {
            if !job.queued {
                job.queued = true;
                q.unfinished += 1;
            }
            q.jobs.push_front(job);
        }
        drop(q);
        self.has_job.notify_all();
    }

    /// Runs `first` on a checked-out slot's worker, keeping up to
    /// `pipeline` tasks in flight while the queue has more (when `refill`),
    /// until none is in flight; then gives the slot back.
    pub(super) fn work(
        &self,
        slot: Option<Held<Req, Resp>>,
        first: Job<Req, Resp>,
        mut refill: bool,
    ) {
        let mut held = match self.ready(slot) {
            Ok(h) => h,
            Err(e) => {
                self.checkin(None);
                let e = e.because("starting a worker for this task");
                return self.lose(first, e);
            }
        };
        let mut flight: VecDeque<InFlight<Req, Resp>> = VecDeque::new();
        let mut next = Some(first);
        // The worker went away while tasks were in flight (see below).
        let mut gone = false;
        loop {
            // Send what there is room for.
            while let Some(job) = next.take() {
                match held.worker.send(&job.req) {
                    Ok(()) => flight.push_back(InFlight {
                        job,
                        since: Instant::now(),
                    }),
                    Err(e) if matches!(e.kind(), ErrorKind::Encode | ErrorKind::FrameTooLarge) => {
                        self.finish(job, Err(e));
                    }
                    Err(e) if !flight.is_empty() && worker_went(&e, &mut held.worker) => {
                        // It went with tasks in flight: the oldest of them
                        // was running when it did, and this one never
                        // reached it. This one goes back to the queue, not
                        // charged; nothing more is sent here, and the
                        // receives below charge the loss to the task it
                        // was running (a pipe to a worker that died on
                        // task 13 refused task 14, and 14 was failed for
                        // it).
                        self.requeue(std::iter::once(job));
                        refill = false;
                        gone = true;
                    }
                    Err(e) => {
                        // Lost while sending: what it holds goes back, and
                        // this task is lost with it.
                        let name = held.worker.name();
                        self.retire(held, true);
                        self.checkin(None);
                        self.requeue(flight.into_iter().map(|f| f.job));
                        return self.lose(job, lost_error(&name, e));
                    }
                }
                let room = flight.len() < self.config.pipeline
                    && self
                        .config
                        .max_tasks
                        .is_none_or(|m| held.tasks + (flight.len() as u64) < m);
                if refill && room {
                    next = self.next_job(false);
                }
            }
            let Some(oldest) = flight.front() else {
                break;
            };
            let deadline = self.config.task_timeout.map(|t| oldest.since + t);
            let answer = held.worker.recv(deadline);
            let done = flight.pop_front().expect("a task is in flight").job;
            // The next task's clock starts when it is the oldest.
            if let Some(f) = flight.front_mut() {
                f.since = f.since.max(Instant::now());
            }
            match answer {
                Ok(resp) => {
                    held.tasks += 1;
                    self.lost_in_a_row.store(0, Ordering::Relaxed);
                    self.finish(done, Ok(resp));
                }
                Err(e) if e.kind() == ErrorKind::Remote => {
                    self.lost_in_a_row.store(0, Ordering::Relaxed);
                    self.finish(done, Err(e));
                }
                Err(e) => {
                    let name = held.worker.name();
                    self.retire(held, true);
                    self.checkin(None);
                    self.requeue(flight.into_iter().map(|f| f.job));
                    if e.kind() == ErrorKind::Decode {
                        // The channel is no longer trustworthy: the worker
                        // was replaced; the task is not retried.
                        return self.finish(done, Err(e));
                    }
                    let e = if e.kind() == ErrorKind::Timeout {
                        Error::new(
                            ErrorKind::Timeout,
                            format!(
                                "the task ran past its timeout; {name} was killed and replaced"
                            ),
                        )
                    } else {
                        lost_error(&name, e)
                    };
                    return self.lose(done, e);
                }
            }
            if refill && next.is_none() && flight.is_empty() {
                // The worker is free: more work, if it may take it.
                if self.config.max_tasks.is_none_or(|m| held.tasks < m) {
                    next = self.next_job(false);
                }
            }
        }
        if gone {
            // It answered what it held, but took no more.
            self.retire(held, true);
            self.checkin(None);
        } else if self.config.max_tasks.is_some_and(|m| held.tasks >= m) {
            self.retire(held, false);
            self.checkin(None);
        } else {
            self.checkin(Some(held));
        }
    }

    /// A task whose worker was lost: run again while retries are left,
    /// failed otherwise; and the pool gives up if workers keep failing.
    fn lose(&self, job: Job<Req, Resp>, e: Error) {
        if self.aborted.load(Ordering::SeqCst) {
            // Killed by the abort, not lost.
            return self.finish(job, Err(self.stopped()));
        }
        self.lost.fetch_add(1, Ordering::Relaxed);
        let row = self.lost_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(limit) = self.config.give_up_after
            && row > u64::from(limit)
        {
            let why = Error::new(
                ErrorKind::Cancelled,
                format!("workers keep failing ({row} lost in a row, the last: {e}); giving up"),
            );
            self.finish(job, Err(why.duplicate()));
            self.give_up(why);
            return;
        }
        if job.attempts < self.config.retries {
            let mut job = job;
            job.attempts += 1;
            self.requeue(std::iter::once(job));
        } else {
            self.finish(job, Err(e));
        }
    }

    /// Stops everything: kills the workers, fails the queued tasks with
    /// `why`.
    pub(super) fn give_up(&self, why: Error) {
        lock(&self.gave_up).get_or_insert(why);
        self.abort_now();
    }

    pub(super) fn abort_now(&self) {
        self.aborted.store(true, Ordering::SeqCst);
        let (queued, wakers): (Vec<_>, _) = {
            let mut q = lock(&self.queue);
            q.closed = true;
            (q.jobs.drain(..).collect(), q.wakers())
        };
        wakers.into_iter().for_each(std::task::Waker::wake);
        for job in queued {
            self.finish(job, Err(self.stopped()));
        }
        for live in lock(&self.live).values() {
            (live.kill)();
        }
        self.link.close();
        self.has_job.notify_all();
        self.has_room.notify_all();
        self.slot_free.notify_all();
    }
}

/// Whether a failed send means the worker is gone (its input closed: a
/// broken pipe or reset, or the worker no longer alive), rather than that
/// it broke its contract, which replaces it at once.
fn worker_went<Req, Resp>(e: &Error, worker: &mut Boxed<Req, Resp>) -> bool {
    let closed = e.io_error().is_some_and(|io| {
        matches!(
            io.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        )
    });
    closed || !worker.alive()
}

fn lost_error(name: &str, e: Error) -> Error {
    let status = e.exit_status();
    let what = match status {
        Some(s) => crate::process::describe(s),
        None => format!("failed ({e})"),
    };
    Error::new(
        ErrorKind::PeerExited,
        format!("{name} {what} while running this task; it was replaced"),
    )
    .with_status(status)
}

/// A driver thread: takes queued tasks and runs each on a free worker.
pub(super) fn drive<Req: Send + Clone + 'static, Resp: Send + 'static>(shared: &Shared<Req, Resp>) {
    while let Some(job) = shared.next_job(true) {
        let Some(slot) = shared.checkout(true) else {
            shared.finish(job, Err(shared.stopped()));
            break;
        };
        shared.work(slot, job, true);
        if shared.aborted.load(Ordering::SeqCst) {
            break;
        }
    }
}

/// For a pool whose workers arrive: takes each into a slot, with a driver
/// of its own, until the link closes.
pub(super) fn admit_arrivals<Req: Send + Clone + 'static, Resp: Send + 'static>(
    shared: &Arc<Shared<Req, Resp>>,
) {
    while let Ok(worker) = shared.link.start() {
        if shared.aborted.load(Ordering::SeqCst) || lock(&shared.queue).closed {
            worker.retire(false);
            continue;
        }
        let held = shared.admit(worker);
        let n = lock(&shared.live).len();
        let mut drivers = lock(&shared.drivers);
        if drivers.len() < n {
            let s = Arc::clone(shared);
            if let Ok(h) = std::thread::Builder::new()
                .name(format!("procwire-pool-{}", drivers.len()))
                .spawn(move || drive(&s))
            {
                drivers.push(h);
            }
        }
        drop(drivers);
        shared.checkin(Some(held));
    }
}

pub(super) fn aborted() -> Error {
    Error::new(
        ErrorKind::Cancelled,
        "the pool was aborted before the task finished",
    )
}
