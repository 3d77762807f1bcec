//! What a submission hands back: a task handle, and the iterators of
//! `map` and `map_unordered`.

use super::*;

/// A submitted task's result, to come.
pub struct TaskHandle<Req, Resp> {
    pub(super) slot: Arc<Slot<Resp>>,
    pub(super) shared: Arc<Shared<Req, Resp>>,
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
pub struct MapUnordered<'p, Req: Message + Clone, Resp: Message, I> {
    pub(super) pool: &'p Pool<Req, Resp>,
    pub(super) items: I,
    pub(super) pending: HashMap<u64, TaskHandle<Req, Resp>>,
    pub(super) position: HashMap<u64, usize>,
    pub(super) next: usize,
    pub(super) tx: mpsc::Sender<u64>,
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
