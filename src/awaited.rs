//! A value that arrives once, from another thread, and can be waited for
//! with a deadline: a task's result, a process's exit status.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Instant;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Awaited<T> {
    value: Mutex<Option<T>>,
    arrived: Condvar,
}

impl<T> Default for Awaited<T> {
    fn default() -> Self {
        Awaited {
            value: Mutex::new(None),
            arrived: Condvar::new(),
        }
    }
}

impl<T> Awaited<T> {
    /// Delivers the value and wakes every waiter.
    pub(crate) fn set(&self, value: T) {
        *self.value.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
        self.arrived.notify_all();
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
