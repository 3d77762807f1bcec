//! A lock that can be waited for with a deadline, or not at all.
//!
//! A channel end's buffers are held for the whole of a send or receive,
//! including the time spent waiting for the peer, so that frames from
//! several threads never interleave. `std::sync::Mutex` cannot be acquired
//! with a timeout, so `try_send` and `send_timeout` wait here instead.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// How long an operation may wait: for the lock, and then for the peer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// As long as it takes.
    Block,
    /// Until this instant.
    Until(Instant),
    /// Not at all.
    Never,
}

impl Wait {
    /// Until `deadline`, or as long as it takes without one.
    pub(crate) fn until(deadline: Option<Instant>) -> Wait {
        deadline.map_or(Wait::Block, Wait::Until)
    }

    pub(crate) fn deadline(self) -> Option<Instant> {
        match self {
            Wait::Until(d) => Some(d),
            Wait::Block | Wait::Never => None,
        }
    }

    /// Whether the time to wait is over.
    pub(crate) fn expired(self) -> bool {
        match self {
            Wait::Block => false,
            Wait::Never => true,
            Wait::Until(d) => Instant::now() >= d,
        }
    }
}

#[derive(Debug, Default)]
struct Busy {
    held: bool,
    /// The thread that holds the gate ([`this_thread`]).
    owner: usize,
    waiters: usize,
}

/// An identity for the calling thread that costs no allocation or atomic
/// operation: the address of a thread-local.
fn this_thread() -> usize {
    thread_local!(static MARK: u8 = const { 0 });
    MARK.with(|m| m as *const u8 as usize)
}

/// Guards a value `S`; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Gate<S> {
    busy: Mutex<Busy>,
    freed: Condvar,
    state: Mutex<S>,
}

/// Access to the guarded value; released on drop.
pub(crate) struct Pass<'a, S> {
    gate: &'a Gate<S>,
    pub(crate) state: MutexGuard<'a, S>,
}

fn unpoison<G>(r: Result<G, PoisonError<G>>) -> G {
    // A panic in another thread cannot leave the buffers in a state this
    // code mishandles: every path re-checks them.
    r.unwrap_or_else(PoisonError::into_inner)
}

impl<S> Gate<S> {
    pub(crate) fn new(state: S) -> Gate<S> {
        Gate {
            busy: Mutex::new(Busy::default()),
            freed: Condvar::new(),
            state: Mutex::new(state),
        }
    }

    /// Takes the gate, waiting as `wait` allows; `None` if it stayed busy,
    /// and at once if this thread holds it already (a `Serialize` impl that
    /// sends on the channel its value is being sent on would otherwise wait
    /// for itself forever: [`held_here`](Gate::held_here) tells).
    pub(crate) fn enter(&self, wait: Wait) -> Option<Pass<'_, S>> {
        let me = this_thread();
        let mut busy = unpoison(self.busy.lock());
        while busy.held {
            if busy.owner == me {
                return None;
            }
            let left = match wait {
                Wait::Never => return None,
                Wait::Block => None,
                Wait::Until(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    Some(left)
                }
            };
            busy.waiters += 1;
            busy = match left {
                None => unpoison(self.freed.wait(busy)),
                Some(left) => unpoison(self.freed.wait_timeout(busy, left)).0,
            };
            busy.waiters -= 1;
        }
        busy.held = true;
        busy.owner = me;
        drop(busy);
        Some(Pass {
            gate: self,
            state: unpoison(self.state.lock()),
        })
    }

    /// Whether the calling thread holds the gate (so `enter` refused a
    /// re-entrant call rather than timing out).
    pub(crate) fn held_here(&self) -> bool {
        let busy = unpoison(self.busy.lock());
        busy.held && busy.owner == this_thread()
    }

    /// Looks at the value if nobody holds the gate.
    pub(crate) fn peek<R>(&self, f: impl FnOnce(&S) -> R) -> Option<R> {
        let pass = self.enter(Wait::Never)?;
        Some(f(&pass.state))
    }
}

impl<S> Drop for Pass<'_, S> {
    fn drop(&mut self) {
        let mut busy = unpoison(self.gate.busy.lock());
        busy.held = false;
        // Waking costs a futex call; skip it when nobody waits.
        if busy.waiters > 0 {
            self.gate.freed.notify_one();
        }
    }
}
