//! A turn to send, or to receive, on an awaitable end: the lock under
//! which one task at a time writes or reads its frames.
//!
//! `tokio::sync::Mutex` costs an awaited message some 290 instructions
//! (its semaphore on the way in, its wait-list lock on the way out, by
//! `callgrind`), though the turn is almost never contended. Here a free
//! turn is taken by one compare-and-swap and given back by one store; a
//! task that finds it taken counts itself and awaits a [`Notify`]. A
//! newcomer does not barge past tasks that wait (it queues behind them),
//! so a task that sends in a loop cannot starve another.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct Turn {
    taken: AtomicBool,
    /// Tasks waiting for the turn (counted before they look once more).
    waiting: AtomicUsize,
    free: Notify,
}

/// The turn, held; dropping it gives it back.
pub(crate) struct Held<'a>(&'a Turn);

/// A waiting task's place in the count, given up however the wait ends
/// (a cancelled wait too).
struct Counted<'a>(&'a Turn);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, SeqCst);
    }
}

impl Turn {
    /// Takes the turn. Cancel-safe: a dropped wait holds nothing, and a
    /// wake-up it was given goes on to another waiter (`Notify`'s rule).
    pub(crate) async fn lock(&self) -> Held<'_> {
        if self.waiting.load(SeqCst) == 0 && self.try_take() {
            return Held(self);
        }
        self.waiting.fetch_add(1, SeqCst);
        let _counted = Counted(self);
        loop {
            let free = self.free.notified();
            let mut free = std::pin::pin!(free);
            // Enabled before the look: a give-back between the look and
            // the await still wakes this task.
            free.as_mut().enable();
            if self.try_take() {
                return Held(self);
            }
            free.await;
        }
    }

    fn try_take(&self) -> bool {
        self.taken
            .compare_exchange(false, true, SeqCst, SeqCst)
            .is_ok()
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.taken.store(false, SeqCst);
        if self.0.waiting.load(SeqCst) > 0 {
            self.0.free.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tasks that take turns in a loop all get theirs, none at once with
    /// another, with waits cancelled by timers among them.
    #[test]
    fn every_task_gets_its_turns_and_never_two_at_once() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let turn = std::sync::Arc::new(Turn::default());
            let inside = std::sync::Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for t in 0..8u64 {
                let (turn, inside) = (turn.clone(), inside.clone());
                tasks.push(tokio::spawn(async move {
                    let mut got = 0;
                    for i in 0..2000u64 {
                        if (i + t) % 7 == 0 {
                            // A wait cancelled at once, or not.
                            let _ = tokio::time::timeout(
                                std::time::Duration::from_micros(1),
                                turn.lock(),
                            )
                            .await;
                            continue;
                        }
                        let _held = turn.lock().await;
                        assert_eq!(inside.fetch_add(1, SeqCst), 0, "two tasks hold the turn");
                        if i % 3 == 0 {
                            tokio::task::yield_now().await;
                        }
                        inside.fetch_sub(1, SeqCst);
                        got += 1;
                    }
                    got
                }));
            }
            for t in tasks {
                assert!(t.await.unwrap() > 1000);
            }
            assert_eq!(turn.waiting.load(SeqCst), 0, "every wait uncounted");
            assert!(turn.try_take(), "the turn is free at the end");
        });
    }
}
