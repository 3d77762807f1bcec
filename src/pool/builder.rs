//! Configuring a pool: [`PoolBuilder`], and where its workers come from.

use super::*;
use link::{CmdLink, Factory, FnLink};

pub(super) enum Source<Req, Resp> {
    Function {
        handler: fn(Req) -> Resp,
        init: Option<fn()>,
        how: How,
    },
    Command(Factory),
    Link(Arc<dyn Link<Req, Resp>>),
}

/// Configures a [`Pool`]; made by [`Pool::builder`], [`Pool::command`],
/// [`Pool::with_link`] or `Pool::remote`.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
///
/// fn slow_square(n: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(n));
///     n * n
/// }
///
/// # fn main() -> procwire::Result<()> {
/// procwire::init()?;
/// let pool = procwire::Pool::builder(slow_square)
///     .workers(4)
///     .task_timeout(Duration::from_secs(5))
///     .retries(1)
///     .build()?;
/// assert_eq!(pool.call(3)?, 9);
/// # Ok(())
/// # }
/// ```
pub struct PoolBuilder<Req, Resp> {
    pub(super) source: Source<Req, Resp>,
    pub(super) workers: usize,
    pub(super) max_in_flight: Option<usize>,
    pub(super) task_timeout: Option<Duration>,
    pub(super) max_tasks_per_worker: Option<u64>,
    pub(super) retries: u32,
    pub(super) pipeline: usize,
    pub(super) give_up_after: Option<u32>,
    pub(super) options: Options,
    pub(super) endpoint: Option<crate::Endpoint>,
}

impl<Req: Message + Clone, Resp: Message> PoolBuilder<Req, Resp> {
    /// How many workers the pool starts (default: the number of CPUs; 0 is
    /// taken as 1). A pool whose workers arrive uses every one that
    /// arrives.
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
    /// workers; 0 is taken as 1). `submit` waits, and `try_submit` fails
    /// with [`ErrorKind::Full`], beyond it.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n.max(1));
        self
    }

    /// A task running longer than this fails with [`ErrorKind::Timeout`]
    /// and its worker is killed and replaced (a zero timeout fails every
    /// task; one past any instant, `Duration::MAX`, is no limit).
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout.min(crate::channel::gate::LONGEST));
        self
    }

    /// Replaces each worker after it has run `n` tasks (multiprocessing's
    /// `maxtasksperchild`; 0 is taken as 1).
    pub fn max_tasks_per_worker(mut self, n: u64) -> Self {
        self.max_tasks_per_worker = Some(n.max(1));
        self
    }

    /// Runs a task again, on another worker, up to `n` more times when its
    /// worker crashed or timed out on it (default 0; a remote pool's
    /// default is unlimited: a vanished machine's task goes to another). A
    /// handler's own error is never retried.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Sends each worker up to `n` tasks before it answered the first
    /// (default 1; 0 is taken as 1), to hide the round trip; they are answered in order. A
    /// worker lost with several in flight fails the oldest (it was
    /// running); the others go to other workers.
    pub fn pipeline(mut self, n: usize) -> Self {
        self.pipeline = n.max(1);
        self
    }

    /// Gives up when workers are lost (die, hang, cannot start) `n` times
    /// in a row without a task answered in between: the pool stops, and
    /// every unfinished task fails with an error that says so (default:
    /// never). For workers that cannot work at all (a wrong command).
    pub fn give_up_after(mut self, n: u32) -> Self {
        self.give_up_after = Some(n);
        self
    }

    /// Runs `init` once in each function worker before its first task.
    pub fn initializer(mut self, init: fn()) -> Self {
        if let Source::Function { init: i, .. } = &mut self.source {
            *i = Some(init);
        }
        self
    }

    /// The channel options of function and command workers (codec: use
    /// MessagePack for workers in other languages).
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Starts the pool: the workers it starts, or (for workers that
    /// arrive) the thread that takes them in.
    ///
    /// [`How::Fork`] is refused: a pool starts replacement workers from its
    /// own threads, where forking is unsafe. Use the fork server (call
    /// [`init`](crate::init); the default) or [`How::Reexec`].
    pub fn build(self) -> Result<Pool<Req, Resp>> {
        let link: Arc<dyn Link<Req, Resp>> = match self.source {
            Source::Function { how: How::Fork, .. } => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "a pool cannot fork its workers: it replaces them from its own threads, where \
                     fork is unsafe; use the fork server (procwire::init(), the default) or \
                     How::Reexec",
                ));
            }
            Source::Function { handler, init, how } => Arc::new(FnLink {
                handler,
                init,
                how,
                options: self.options,
            }),
            Source::Command(make) => Arc::new(CmdLink {
                make,
                options: self.options,
            }),
            Source::Link(l) => l,
        };
        let arrives = link.arrives();
        let workers = self.workers;
        let spawner = (!arrives)
            .then(|| spawner::Spawner::new(Arc::clone(&link)))
            .transpose()?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                unfinished: 0,
                capacity: self.max_in_flight.unwrap_or(workers * 2 * self.pipeline),
                closed: false,
                room_wakers: Vec::new(),
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
            next_key: AtomicU64::new(0),
            link,
            config: Config {
                task_timeout: self.task_timeout,
                max_tasks: self.max_tasks_per_worker,
                retries: self.retries,
                pipeline: self.pipeline,
                give_up_after: self.give_up_after,
            },
            lost: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            lost_in_a_row: AtomicU64::new(0),
            gave_up: Mutex::new(None),
            drivers: Mutex::new(Vec::new()),
            spawner,
        });
        let mut pool = Pool {
            shared: Arc::clone(&shared),
            admitter: None,
            next_index: Mutex::new(0),
            endpoint: self.endpoint,
        };
        if arrives {
            let s = Arc::clone(&shared);
            pool.admitter = Some(
                std::thread::Builder::new()
                    .name("procwire-pool-admit".into())
                    .spawn(move || admit_arrivals(&s))
                    .map_err(|e| Error::io("starting a pool thread", e))?,
            );
            return Ok(pool);
        }
        // Start every worker now, so that a worker that cannot start is an
        // error here rather than on the first task.
        for _ in 0..workers {
            let worker = shared.start_worker()?;
            shared.checkin(Some(worker));
        }
        for n in 0..workers {
            let s = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("procwire-pool-{n}"))
                .spawn(move || drive(&s))
                .map_err(|e| Error::io("starting a pool driver thread", e))?;
            lock(&shared.drivers).push(handle);
        }
        Ok(pool)
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
            .field("pipeline", &self.pipeline)
            .finish_non_exhaustive()
    }
}

impl<Req, Resp> PoolBuilder<Req, Resp> {
    pub(super) fn new(source: Source<Req, Resp>) -> Self {
        PoolBuilder {
            source,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_in_flight: None,
            task_timeout: None,
            max_tasks_per_worker: None,
            retries: 0,
            pipeline: 1,
            give_up_after: None,
            options: Options::new(),
            endpoint: None,
        }
    }
}
