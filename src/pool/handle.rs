//! What a submission hands back: a task handle, and the iterators of
//! `map` and `map_unordered`.

use super::*;

/// A submitted task's result, to come.
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
/// let h = pool.submit(12)?;
/// assert_eq!(h.wait()?, 144);
/// # Ok(())
/// # }
/// ```
pub struct TaskHandle<Req, Resp> {
    pub(super) slot: Arc<Slot<Resp>>,
    pub(super) shared: Arc<Shared<Req, Resp>>,
}

/// With feature `tokio`, a handle is also the task's result, awaited (the
/// pool's worker threads fill it; no thread waits for it).
#[cfg(feature = "tokio")]
impl<Req, Resp> std::future::Future for TaskHandle<Req, Resp> {
    type Output = Result<Resp>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Resp>> {
        self.slot.result.poll_with(cx, Option::take)
    }
}

impl<Req, Resp> TaskHandle<Req, Resp> {
    /// Waits for the result.
    pub fn wait(self) -> Result<Resp> {
        self.slot
            .result
            .wait_with(None, Option::take)
            .unwrap_or_else(|| Err(self.shared.stopped()))
    }

    /// Waits at most `timeout`; [`ErrorKind::Timeout`] if the task has not
    /// finished (it goes on; wait again, or cancel it).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Resp> {
        self.slot
            .result
            .wait_with(crate::channel::gate::deadline_after(timeout), Option::take)
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
        drop(q);
        self.shared.finish(
            job,
            Err(Error::new(ErrorKind::Cancelled, "the task was cancelled")),
        );
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
/// let total: u64 = pool.map(1..=3).map(|r| r.unwrap()).sum();
/// assert_eq!(total, 14);
/// # Ok(())
/// # }
/// ```
pub struct Map<'p, Req: Message + Clone, Resp: Message, I> {
    pub(super) pool: &'p Pool<Req, Resp>,
    pub(super) items: I,
    pub(super) pending: VecDeque<Result<TaskHandle<Req, Resp>>>,
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
/// let mut got: Vec<(usize, u64)> = pool.map_unordered(0..4).map(|(i, r)| (i, r.unwrap())).collect();
/// got.sort();
/// assert_eq!(got, [(0, 0), (1, 1), (2, 4), (3, 9)]);
/// # Ok(())
/// # }
/// ```
pub struct MapUnordered<'p, Req: Message + Clone, Resp: Message, I> {
    pub(super) pool: &'p Pool<Req, Resp>,
    pub(super) items: I,
    pub(super) pending: HashMap<u64, TaskHandle<Req, Resp>>,
    pub(super) position: HashMap<u64, usize>,
    pub(super) next: usize,
    pub(super) notify: Notify,
    pub(super) rx: mpsc::Receiver<u64>,
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
            match self
                .pool
                .enqueue(item, super::WhenFull::Wait, Some(Arc::clone(&self.notify)))
            {
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

/// What the feeding thread of [`Pool::run`] and the pool tell the caller's
/// thread.
enum Note<Req, Resp> {
    Submitted(u64, TaskHandle<Req, Resp>),
    Finished(u64),
    Refused(u64, Error),
    /// Every task read: how many, and why reading stopped early if it did
    /// (the pool stopped taking tasks).
    Fed(u64, Option<Error>),
}

/// How far an ordered run's feeder may read past the first result not yet
/// handed over: results that finish out of order wait for it, and without
/// a bound one slow task would let them pile up without end. Wider than
/// `max_in_flight` (`capacity`), so that the workers go on past one slow
/// task for a while, as GNU parallel's `-k` does.
pub(super) fn reorder_window(capacity: usize) -> u64 {
    (capacity as u64).saturating_mul(16).max(1024)
}

struct Window {
    /// Results handed over, and whether the caller's side has gone.
    state: Mutex<(u64, bool)>,
    moved: std::sync::Condvar,
}

impl Window {
    /// Waits until task `n` is within `width` of the results handed over;
    /// `false` if the caller's side has gone instead.
    fn admit(&self, n: u64, width: u64) -> bool {
        let mut s = lock(&self.state);
        while n >= s.0.saturating_add(width) && !s.1 {
            s = self
                .moved
                .wait(s)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        !s.1
    }

    /// `handed` results are handed over (`gone`: the caller's side too).
    fn set(&self, handed: Option<u64>, gone: bool) {
        let mut s = lock(&self.state);
        s.0 = handed.unwrap_or(s.0);
        s.1 |= gone;
        self.moved.notify_all();
    }
}

/// Marks the caller's side of a run gone when dropped (returned, or
/// unwinding from a panic in `each`), so that the feeder waits no more.
struct Leaving<'a>(&'a Window);

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        self.0.set(None, true);
    }
}

pub(super) fn run<Req: Message + Clone, Resp: Message>(
    pool: &Pool<Req, Resp>,
    tasks: impl Iterator<Item = Req> + Send,
    ordered: bool,
    mut each: impl FnMut(u64, Result<Resp>),
) -> Result<u64> {
    let (tx, rx) = mpsc::channel::<Note<Req, Resp>>();
    let finished = Mutex::new(tx.clone());
    let notify: Notify = Arc::new(move |i| {
        let _ = lock(&finished).send(Note::Finished(i));
    });
    let window = &Window {
        state: Mutex::new((0, false)),
        moved: std::sync::Condvar::new(),
    };
    let width = reorder_window(pool.capacity());
    // `move`: the receiver goes with the closure, so that a panic in `each`
    // drops it as it unwinds, and the feeder, whose next send then fails,
    // stops reading tasks (the scope waits for it before the panic goes on).
    std::thread::scope(move |s| {
        s.spawn(move || {
            let mut n = 0u64;
            for t in tasks {
                // In order, at most `reorder_window` tasks past the first
                // result not handed over.
                if ordered && !window.admit(n, width) {
                    return;
                }
                let (note, stopped) =
                    match pool.enqueue(t, super::WhenFull::Wait, Some(Arc::clone(&notify))) {
                        Ok(h) => (Note::Submitted(n, h), None),
                        Err(e) => {
                            let again = e.duplicate();
                            (Note::Refused(n, e), Some(again))
                        }
                    };
                n += 1;
                if tx.send(note).is_err() {
                    return;
                }
                // A waiting submission fails only once the pool takes no
                // task ever again (cancelled, given up): the rest of the
                // input is not read, which may be endless.
                if stopped.is_some() {
                    let _ = tx.send(Note::Fed(n, stopped));
                    return;
                }
            }
            let _ = tx.send(Note::Fed(n, None));
        });
        let _leaving = Leaving(window);
        // Slot index -> position, and the handles not yet finished.
        let mut position: HashMap<u64, (u64, TaskHandle<Req, Resp>)> = HashMap::new();
        let mut early: std::collections::HashSet<u64> = std::collections::HashSet::new();
        let mut ready: std::collections::BTreeMap<u64, Result<Resp>> = Default::default();
        let (mut next_out, mut fed, mut done) = (0u64, None::<u64>, 0u64);
        let mut cut_short = None;
        let mut emit = |pos: u64, r: Result<Resp>, ready: &mut std::collections::BTreeMap<_, _>| {
            if !ordered {
                return each(pos, r);
            }
            ready.insert(pos, r);
            let was = next_out;
            while let Some(r) = ready.remove(&next_out) {
                each(next_out, r);
                next_out += 1;
            }
            if next_out != was {
                window.set(Some(next_out), false);
            }
        };
        while fed != Some(done) {
            let Ok(note) = rx.recv() else {
                return Err(Error::new(ErrorKind::Io, "the pool's feeding thread ended"));
            };
            let finished = match note {
                Note::Fed(n, stopped) => {
                    fed = Some(n);
                    cut_short = stopped;
                    continue;
                }
                Note::Refused(pos, e) => {
                    done += 1;
                    emit(pos, Err(e), &mut ready);
                    continue;
                }
                Note::Submitted(pos, h) => {
                    let index = h.slot.index;
                    position.insert(index, (pos, h));
                    if !early.remove(&index) {
                        continue;
                    }
                    index
                }
                Note::Finished(index) => index,
            };
            match position.remove(&finished) {
                Some((pos, h)) => {
                    done += 1;
                    emit(pos, h.wait(), &mut ready);
                }
                None => {
                    early.insert(finished);
                }
            }
        }
        match cut_short {
            Some(e) => Err(e.because(&format!(
                "the pool stopped taking tasks: the run read {done} and no more"
            ))),
            None => Ok(done),
        }
    })
}
