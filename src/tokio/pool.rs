//! The worker pool, awaited: the same pool (one scheduler, worker
//! processes, crash isolation), with `call(..).await`, `submit` whose
//! handle is a future, and `map` as a `Stream` with bounded work in flight.
//! The pool's own threads run it; no task waits on a thread.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::{ErrorKind, Result};
use crate::pool::{Message, TaskHandle};

/// An awaitable [`Pool`](crate::Pool). See the module docs.
///
/// ```
/// # procwire::init_before_main!();
/// fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> procwire::Result<()> {
/// use futures_util::StreamExt;
///
/// let pool = procwire::tokio::Pool::new(procwire::Pool::builder(square).workers(2).build()?);
/// assert_eq!(pool.call(7).await?, 49);
/// let squares: Vec<u64> = pool.map(1..=4).map(Result::unwrap).collect().await;
/// assert_eq!(squares, [1, 4, 9, 16]);
/// pool.into_blocking().shutdown()?;
/// # Ok(())
/// # }
/// ```
pub struct Pool<Req: Message + Clone, Resp: Message> {
    pool: crate::Pool<Req, Resp>,
    /// One permit per task that may be unfinished (the pool's
    /// `max_in_flight`): a task waiting for room awaits here.
    room: ::tokio::sync::Semaphore,
}

impl<Req: Message + Clone, Resp: Message> Pool<Req, Resp> {
    /// Makes `pool` awaitable.
    pub fn new(pool: crate::Pool<Req, Resp>) -> Pool<Req, Resp> {
        let room = ::tokio::sync::Semaphore::new(pool.capacity());
        Pool { pool, room }
    }

    /// Runs one task and awaits its result. A worker that dies fails only
    /// the task it was running (with its exit status), as in the blocking
    /// pool.
    pub async fn call(&self, req: Req) -> Result<Resp> {
        self.submit(req).await?.await
    }

    /// Submits a task, awaiting room while the pool's `max_in_flight`
    /// tasks are unfinished; the handle is a future of the result (and has
    /// the blocking handle's `wait`, `cancel`).
    pub async fn submit(&self, req: Req) -> Result<TaskHandle<Req, Resp>> {
        // Room in the pool: the permit only orders the waiting tasks (fair,
        // cancel-safe); the pool itself counts unfinished tasks.
        let _turn = self.room.acquire().await;
        // Full all the same with tasks whose handles were dropped
        // unfinished, or that the blocking side submitted: the pool wakes
        // this task when one of them finishes.
        std::future::poll_fn(
            |cx| match self.pool.try_submit_or_wake(req.clone(), cx.waker()) {
                Err(e) if e.kind() == ErrorKind::Full => Poll::Pending,
                other => Poll::Ready(other),
            },
        )
        .await
    }

    /// Runs every item and yields the results in order, with at most
    /// `max_in_flight` tasks ahead of the consumer, items pulled from
    /// `items` as room comes.
    pub fn map<I: IntoIterator<Item = Req>>(&self, items: I) -> Map<'_, Req, Resp, I::IntoIter> {
        Map {
            pool: self,
            items: items.into_iter(),
            held: None,
            pending: VecDeque::new(),
        }
    }

    /// The blocking pool (for `shutdown`, `stats`, …).
    pub fn blocking(&self) -> &crate::Pool<Req, Resp> {
        &self.pool
    }

    /// Back to the blocking pool.
    pub fn into_blocking(self) -> crate::Pool<Req, Resp> {
        self.pool
    }
}

/// The results of [`Pool::map`], in order: a `Stream`.
pub struct Map<'p, Req: Message + Clone, Resp: Message, I> {
    pool: &'p Pool<Req, Resp>,
    items: I,
    /// An item the pool had no room for (other submitters filled it).
    held: Option<Req>,
    pending: VecDeque<Result<TaskHandle<Req, Resp>>>,
}

// The held item is moved, never pinned.
impl<Req: Message + Clone, Resp: Message, I: Unpin> Unpin for Map<'_, Req, Resp, I> {}

impl<Req: Message + Clone, Resp: Message, I: Iterator<Item = Req> + Unpin> futures_core::Stream
    for Map<'_, Req, Resp, I>
{
    type Item = Result<Resp>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Resp>>> {
        let this = self.get_mut();
        // Keep the pool busy: fill the window without waiting.
        let capacity = this.pool.pool.capacity();
        let mut full = false;
        while this.pending.len() < capacity {
            let Some(item) = this.held.take().or_else(|| this.items.next()) else {
                break;
            };
            match this.pool.pool.try_submit_or_wake(item.clone(), cx.waker()) {
                Err(e) if e.kind() == ErrorKind::Full => {
                    this.held = Some(item);
                    full = true;
                    break;
                }
                r => this.pending.push_back(r),
            }
        }
        match this.pending.front_mut() {
            // Nothing of ours in flight and no room: others' tasks fill
            // the pool, which wakes us when one finishes.
            None if full => Poll::Pending,
            None => Poll::Ready(None),
            Some(Err(_)) => {
                Poll::Ready(this.pending.pop_front().map(|r| r.map(|_| unreachable!())))
            }
            Some(Ok(handle)) => {
                let done = std::task::ready!(Pin::new(handle).poll(cx));
                this.pending.pop_front();
                Poll::Ready(Some(done))
            }
        }
    }
}

impl<Req: Message + Clone, Resp: Message> std::fmt::Debug for Pool<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("tokio::Pool")
            .field("pool", &self.pool)
            .finish()
    }
}

impl<Req: Message + Clone, Resp: Message, I> std::fmt::Debug for Map<'_, Req, Resp, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("tokio::Map")
            .field("in_flight", &self.pending.len())
            .finish_non_exhaustive()
    }
}
