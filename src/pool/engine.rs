//! The scheduler behind a [`Pool`]: the queue, the workers, and what
//! happens when one dies.

use super::*;

pub(super) struct Config<Req, Resp> {
    pub(super) source: Source<Req, Resp>,
    pub(super) task_timeout: Option<Duration>,
    pub(super) max_tasks: Option<u64>,
    pub(super) retries: u32,
    pub(super) options: Options,
}

pub(super) struct Job<Req, Resp> {
    pub(super) req: Req,
    pub(super) slot: Arc<Slot<Resp>>,
    pub(super) attempts: u32,
}

pub(super) struct Queue<Req, Resp> {
    pub(super) jobs: VecDeque<Job<Req, Resp>>,
    /// Submitted and not yet finished (queued or running).
    pub(super) unfinished: usize,
    pub(super) capacity: usize,
    pub(super) closed: bool,
}

pub(super) struct Shared<Req, Resp> {
    pub(super) queue: Mutex<Queue<Req, Resp>>,
    pub(super) has_job: Condvar,
    pub(super) has_room: Condvar,
    pub(super) aborted: AtomicBool,
    /// Worker slots not in use: a worker, or `None` for a slot whose worker
    /// must be (re)started. There are always `workers` slots in all, here or
    /// checked out by a driver or by a caller of [`Pool::call`].
    pub(super) slots: Mutex<Slots<Req, Resp>>,
    pub(super) slot_free: Condvar,
    /// Every live worker, to kill on abort and to list.
    pub(super) live: Mutex<HashMap<u32, Arc<ProcState>>>,
    pub(super) config: Config<Req, Resp>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where a task's result lands.
pub(super) struct Slot<Resp> {
    pub(super) index: u64,
    pub(super) result: Awaited<Result<Resp>>,
    /// Tells an unordered `map` which task finished.
    pub(super) notify: Option<mpsc::Sender<u64>>,
}

impl<Resp> Slot<Resp> {
    pub(super) fn fill(&self, r: Result<Resp>) {
        self.result.set(r);
        if let Some(n) = &self.notify {
            let _ = n.send(self.index);
        }
    }
}

/// The arguments of a function worker.
#[derive(Serialize, Deserialize)]
pub(super) struct WorkerArg {
    pub(super) handler: isize,
    pub(super) init: Option<isize>,
}

/// A function worker's life: initialize, then serve calls until the pool
/// closes the channel.
pub(super) fn worker_main<Req: Message, Resp: Message>(arg: WorkerArg, end: ServerEnd<Req, Resp>) {
    if let Some(init) = arg.init {
        init_fn_at(init)();
    }
    let handler = handler_at::<Req, Resp>(arg.handler);
    let _ = rpc::serve(end, |req| Ok::<_, String>(handler(req)));
}

pub(super) struct Worker<Req, Resp> {
    pub(super) client: Client<Req, Resp>,
    pub(super) child: Child,
    pub(super) tasks: u64,
}

/// The free worker slots, and how many threads wait for one (a wake-up
/// costs a futex call: skipped when nobody waits).
pub(super) struct Slots<Req, Resp> {
    pub(super) free: Vec<Option<Worker<Req, Resp>>>,
    pub(super) waiting: usize,
}

/// How one attempt at a task went.
pub(super) enum Attempt<Resp> {
    /// A result (the worker's own error included); the worker is fine.
    Done(Result<Resp>),
    /// The worker died or hung on the task; it is gone. A retry may help.
    Lost(Error),
}

impl<Req: Message + Clone, Resp: Message> Shared<Req, Resp> {
    pub(super) fn start_worker(&self) -> Result<Worker<Req, Resp>> {
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
    pub(super) fn retire(&self, worker: Worker<Req, Resp>, kill: bool) {
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
    pub(super) fn checkout(&self, block: bool) -> Option<Option<Worker<Req, Resp>>> {
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

    pub(super) fn checkin(&self, slot: Option<Worker<Req, Resp>>) {
        let mut slots = lock(&self.slots);
        slots.free.push(slot);
        if slots.waiting > 0 {
            self.slot_free.notify_one();
        }
    }

    /// A slot's worker, ready for a task: started if the slot is empty,
    /// replaced if it died while idle (a task must not pay for a death it
    /// did not cause).
    pub(super) fn ready(&self, slot: Option<Worker<Req, Resp>>) -> Result<Worker<Req, Resp>> {
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
    pub(super) fn attempt(&self, slot: Option<Worker<Req, Resp>>, req: Req) -> Attempt<Resp> {
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

    pub(super) fn next_job(&self) -> Option<Job<Req, Resp>> {
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

    pub(super) fn finish(&self, job: Job<Req, Resp>, r: Result<Resp>) {
        job.slot.fill(r);
        let mut q = lock(&self.queue);
        q.unfinished -= 1;
        drop(q);
        self.has_room.notify_all();
        // Shutdown waits for `unfinished` to reach 0 too.
        self.has_job.notify_all();
    }

    pub(super) fn requeue(&self, mut job: Job<Req, Resp>) {
        job.attempts += 1;
        lock(&self.queue).jobs.push_front(job);
        self.has_job.notify_one();
    }
}

/// A driver thread: takes queued tasks and runs each on a free worker.
pub(super) fn drive<Req: Message + Clone, Resp: Message>(shared: &Shared<Req, Resp>) {
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

pub(super) fn aborted() -> Error {
    Error::new(
        ErrorKind::Cancelled,
        "the pool was aborted before the task finished",
    )
}
