//! A lock that can be waited for with a deadline, or not at all.
//!
//! A channel end's buffers are held for the whole of a send or receive,
//! including the time spent waiting for the peer, so that frames from
//! several threads never interleave. `std::sync::Mutex` cannot be acquired
//! with a timeout, so `try_send` and `send_timeout` wait here instead.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
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

/// An identity for the calling thread that costs no allocation or atomic
/// operation: the address of a thread-local (never 0).
fn this_thread() -> usize {
    thread_local!(static MARK: u8 = const { 0 });
    MARK.with(|m| m as *const u8 as usize)
}

/// Guards a value `S`; see the module docs.
///
/// The value sits in a `Mutex`, taken by `try_lock` on the fast path (one
/// atomic exchange each way, nothing else). A holder records itself in
/// `owner`, so that a re-entrant call is refused instead of deadlocking;
/// a waiter with a deadline counts itself in `waiters` and sleeps on
/// `freed`, which a leaving holder signals only when someone waits.
#[derive(Debug, Default)]
pub(crate) struct Gate<S> {
    state: Mutex<S>,
    owner: AtomicUsize,
    waiters: AtomicUsize,
    sleep: Mutex<()>,
    freed: Condvar,
}

/// Access to the guarded value; released on drop.
pub(crate) struct Pass<'a, S> {
    gate: &'a Gate<S>,
    guard: Option<MutexGuard<'a, S>>,
}

fn unpoison<G>(r: Result<G, PoisonError<G>>) -> G {
    // A panic in another thread cannot leave the buffers in a state this
    // code mishandles: every path re-checks them.
    r.unwrap_or_else(PoisonError::into_inner)
}

impl<S> Gate<S> {
    pub(crate) fn new(state: S) -> Gate<S> {
        Gate {
            state: Mutex::new(state),
            owner: AtomicUsize::new(0),
            waiters: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            freed: Condvar::new(),
        }
    }

    fn try_take(&self) -> Option<MutexGuard<'_, S>> {
        match self.state.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Takes the gate, waiting as `wait` allows; `None` if it stayed busy,
    /// and at once if this thread holds it already (a `Serialize` impl that
    /// sends on the channel its value is being sent on would otherwise wait
    /// for itself forever: [`held_here`](Gate::held_here) tells).
    pub(crate) fn enter(&self, wait: Wait) -> Option<Pass<'_, S>> {
        let guard = match self.try_take() {
            Some(g) => g,
            None if self.held_here() => return None,
            None => match wait {
                Wait::Never => return None,
                Wait::Block => unpoison(self.state.lock()),
                Wait::Until(d) => self.take_by(d)?,
            },
        };
        self.owner.store(this_thread(), Ordering::Relaxed);
        Some(Pass {
            gate: self,
            guard: Some(guard),
        })
    }

    /// Waits for the gate until `deadline`.
    fn take_by(&self, deadline: Instant) -> Option<MutexGuard<'_, S>> {
        // Counted before the look below (SeqCst, as is the leaving
        // holder's fence): either the look sees the gate free, or the
        // holder sees this waiter and signals `freed`, which it can only
        // do once `sleep` is released by the wait below.
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let mut sleep = unpoison(self.sleep.lock());
        let got = loop {
            if let Some(g) = self.try_take() {
                break Some(g);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break None;
            }
            sleep = unpoison(self.freed.wait_timeout(sleep, left)).0;
        };
        drop(sleep);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        got
    }

    /// Whether the calling thread holds the gate (so `enter` refused a
    /// re-entrant call rather than timing out).
    pub(crate) fn held_here(&self) -> bool {
        self.owner.load(Ordering::Relaxed) == this_thread()
    }

    /// Looks at the value if nobody holds the gate.
    pub(crate) fn peek<R>(&self, f: impl FnOnce(&S) -> R) -> Option<R> {
        let pass = self.enter(Wait::Never)?;
        Some(f(&pass))
    }
}

impl<S> Deref for Pass<'_, S> {
    type Target = S;
    fn deref(&self) -> &S {
        self.guard.as_ref().expect("held until drop")
    }
}

impl<S> DerefMut for Pass<'_, S> {
    fn deref_mut(&mut self) -> &mut S {
        self.guard.as_mut().expect("held until drop")
    }
}

impl<S> Drop for Pass<'_, S> {
    fn drop(&mut self) {
        self.gate.owner.store(0, Ordering::Relaxed);
        drop(self.guard.take());
        // Waking costs a futex call; skip it when nobody waits with a
        // deadline (a plain `lock` waiter is woken by the mutex itself).
        fence(Ordering::SeqCst);
        if self.gate.waiters.load(Ordering::SeqCst) > 0 {
            drop(unpoison(self.gate.sleep.lock()));
            self.gate.freed.notify_all();
        }
    }
}
