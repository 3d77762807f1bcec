//! A value that arrives once, from another thread, and can be waited for
//! with a deadline, or awaited: a task's result, a process's exit status.

use std::sync::{Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Awaited<T> {
    value: Mutex<Option<T>>,
    arrived: Condvar,
    /// Tasks awaiting the value (registered under `value`'s lock, so that
    /// `set` cannot slip between a look and a registration).
    tasks: Mutex<Vec<Waker>>,
}

impl<T> Default for Awaited<T> {
    fn default() -> Self {
        Awaited {
            value: Mutex::new(None),
            arrived: Condvar::new(),
            tasks: Mutex::new(Vec::new()),
        }
    }
}

impl<T> Awaited<T> {
    /// Delivers the value and wakes every waiter, threads and tasks.
    pub(crate) fn set(&self, value: T) {
        *self.value.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
        self.notify();
    }

    /// Wakes every waiter without a value, for one whose `get` looks at
    /// something besides the slot (set before this call).
    pub(crate) fn wake(&self) {
        // Under the lock: a waiter between its look and its wait is not
        // missed.
        drop(self.value.lock().unwrap_or_else(PoisonError::into_inner));
        self.notify();
    }

    fn notify(&self) {
        self.arrived.notify_all();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for t in tasks {
            t.wake();
        }
    }

    /// `Ready` once `get` finds what it wants in the slot; otherwise this
    /// task is woken when a value arrives.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn poll_with<R>(
        &self,
        cx: &mut Context<'_>,
        get: impl FnOnce(&mut Option<T>) -> Option<R>,
    ) -> Poll<R> {
        let mut slot = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = get(&mut slot) {
            return Poll::Ready(r);
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        if !tasks.iter().any(|t| t.will_wake(cx.waker())) {
            tasks.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Waits until `get` finds what it wants in the slot (it may take the
    /// value or copy it), or `deadline` passes (`None`).
    pub(crate) fn wait_with<R>(
        &self,
        deadline: Option<Instant>,
        mut get: impl FnMut(&mut Option<T>) -> Option<R>,
    ) -> Option<R> {
        let mut slot = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(r) = get(&mut slot) {
                return Some(r);
            }
            slot = match deadline {
                None => self
                    .arrived
                    .wait(slot)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.arrived
                        .wait_timeout(slot, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}
