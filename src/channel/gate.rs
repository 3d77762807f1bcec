//! A lock that can be waited for with a deadline, or not at all.
//!
//! A channel end's buffers are held for the whole of a send or receive,
//! including the time spent waiting for the peer, so that frames from
//! several threads never interleave. `std::sync::Mutex` cannot be acquired
//! with a timeout, so `try_send` and `send_timeout` wait here instead.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::task::Waker;

use crate::sys::lock::{Held, Lock};
use std::time::{Duration, Instant};

/// The instant `timeout` from now; `None`, no deadline at all, past what
/// an `Instant` can hold (`Duration::MAX` and the like: "wait as long as
/// it takes", as crossbeam-channel reads it), where `Instant + Duration`
/// would panic.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// The longest a configured duration (a linger, a connect or handshake
/// timeout, a heartbeat interval) is taken to be: `u32::MAX` seconds, some
/// 136 years, as good as for ever, and short enough that the instants and
/// sums made from it cannot overflow.
pub(crate) const LONGEST: Duration = Duration::from_secs(u32::MAX as u64);

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
    /// How long, at most, to wait for a supervised child's exit status to
    /// name the cause of an end of stream: `usual`, except in a step that
    /// must not wait (a try, or an async end's step, whose wait the
    /// runtime's reactor does instead).
    pub(crate) fn fate_within(self, usual: std::time::Duration) -> std::time::Duration {
        match self {
            Wait::Never => std::time::Duration::ZERO,
            _ => usual,
        }
    }

    /// Until `deadline`, or as long as it takes without one.
    pub(crate) fn until(deadline: Option<Instant>) -> Wait {
        deadline.map_or(Wait::Block, Wait::Until)
    }

    /// For at most `timeout` ([`deadline_after`]: `Duration::MAX` is as
    /// long as it takes).
    pub(crate) fn within(timeout: Duration) -> Wait {
        Wait::until(deadline_after(timeout))
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
/// operation: the address of a thread-local (never 0, and unique among
/// live threads).
#[inline]
fn this_thread() -> usize {
    thread_local!(static MARK: u8 = const { 0 });
    MARK.with(|m| m as *const u8 as usize)
}

/// Guards a value `S`; see the module docs.
///
/// The value sits in a [`Lock`] whose one word is its holder's identity:
/// taken by a compare-and-swap on the fast path and released by a swap,
/// and a busy gate held by the calling thread itself is refused at once
/// instead of deadlocking. A waiter counts itself in `sleepers` and sleeps
/// there until a leaving holder signals it, which it does only when
/// someone waits. A task (an async end's step, which never waits for the
/// gate) leaves its waker there instead ([`wake_when_free`]), woken by the
/// same signal.
///
/// [`wake_when_free`]: Gate::wake_when_free
pub(crate) struct Gate<S> {
    lock: Lock<S>,
    sleepers: Sleepers,
}

#[derive(Default)]
struct Sleepers {
    /// Threads sleeping on `freed`, and wakers in `sleep`.
    waiting: AtomicUsize,
    /// The wakers of tasks waiting for the gate.
    sleep: Mutex<Vec<Waker>>,
    freed: Condvar,
}

impl<S> fmt::Debug for Gate<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("held", &(self.lock.holder() != 0))
            .finish_non_exhaustive()
    }
}

/// Access to the guarded value; released on drop.
pub(crate) struct Pass<'a, S> {
    // Dropped in this order: the lock is released, then sleepers woken.
    held: Held<'a, S>,
    _wake: Wake<'a>,
}

/// Wakes the gate's sleepers, if any, when a pass is dropped.
struct Wake<'a>(&'a Sleepers);

impl Drop for Wake<'_> {
    #[inline]
    fn drop(&mut self) {
        // After the release (a SeqCst swap) in `Held`'s drop: either a
        // waiter counted itself before it, and is seen here, or it looks
        // at the lock after it, and finds it free.
        if self.0.waiting.load(Ordering::SeqCst) > 0 {
            self.0.wake();
        }
    }
}

impl Sleepers {
    #[cold]
    fn wake(&self) {
        let tasks = std::mem::take(&mut *unpoison(self.sleep.lock()));
        self.freed.notify_all();
        if !tasks.is_empty() {
            self.waiting.fetch_sub(tasks.len(), Ordering::SeqCst);
            tasks.into_iter().for_each(Waker::wake);
        }
    }
}

fn unpoison<G>(r: Result<G, PoisonError<G>>) -> G {
    // The sleep mutex guards nothing: a panic elsewhere cannot spoil it.
    r.unwrap_or_else(PoisonError::into_inner)
}

impl<S> Gate<S> {
    pub(crate) fn new(state: S) -> Gate<S> {
        Gate {
            lock: Lock::new(state),
            sleepers: Sleepers::default(),
        }
    }

    #[inline]
    fn pass<'a>(&'a self, held: Held<'a, S>) -> Pass<'a, S> {
        Pass {
            held,
            _wake: Wake(&self.sleepers),
        }
    }

    /// Takes the gate, waiting as `wait` allows; `None` if it stayed busy,
    /// and at once if this thread holds it already (a `Serialize` impl that
    /// sends on the channel its value is being sent on would otherwise wait
    /// for itself forever: [`held_here`](Gate::held_here) tells).
    #[inline]
    pub(crate) fn enter(&self, wait: Wait) -> Option<Pass<'_, S>> {
        let me = this_thread();
        match self.lock.try_lock(me) {
            Ok(held) => Some(self.pass(held)),
            Err(holder) if holder == me => None,
            Err(_) => self.take_slowly(me, wait),
        }
    }

    /// Waits for the gate as `wait` allows.
    #[cold]
    fn take_slowly(&self, me: usize, wait: Wait) -> Option<Pass<'_, S>> {
        let deadline = match wait {
            Wait::Never => return None,
            Wait::Block => None,
            Wait::Until(d) => Some(d),
        };
        let s = &self.sleepers;
        // Counted before the look below (SeqCst, as is the release): either
        // the look sees the gate free, or the holder sees this waiter and
        // signals `freed`, which it can only do once `sleep` is released
        // by the wait below.
        s.waiting.fetch_add(1, Ordering::SeqCst);
        let mut sleep = unpoison(s.sleep.lock());
        let got = loop {
            if let Ok(held) = self.lock.try_lock(me) {
                break Some(held);
            }
            match deadline {
                None => sleep = unpoison(s.freed.wait(sleep)),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break None;
                    }
                    sleep = unpoison(s.freed.wait_timeout(sleep, left)).0;
                }
            }
        };
        drop(sleep);
        s.waiting.fetch_sub(1, Ordering::SeqCst);
        got.map(|held| self.pass(held))
    }

    /// Whether the calling thread holds the gate (so `enter` refused a
    /// re-entrant call rather than timing out).
    pub(crate) fn held_here(&self) -> bool {
        self.lock.holder() == this_thread()
    }

    /// For a task that found the gate busy: `waker` is woken when it is
    /// released. `true` if it is free already (look again now, rather
    /// than wait).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn wake_when_free(&self, waker: &Waker) -> bool {
        let s = &self.sleepers;
        {
            let mut tasks = unpoison(s.sleep.lock());
            if !tasks.iter().any(|w| w.will_wake(waker)) {
                tasks.push(waker.clone());
                // Counted before the look below (SeqCst, as is the
                // release): the holder leaving sees the count, or the look
                // sees the gate free.
                s.waiting.fetch_add(1, Ordering::SeqCst);
            }
        }
        self.lock.holder_now() == 0
    }

    /// Whether some thread holds the gate now (a `try_*` that found it busy
    /// says "full" or "empty" without looking at the transport).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn busy(&self) -> bool {
        self.lock.holder() != 0
    }

    /// Looks at the value if nobody holds the gate.
    pub(crate) fn peek<R>(&self, f: impl FnOnce(&S) -> R) -> Option<R> {
        let pass = self.enter(Wait::Never)?;
        Some(f(&pass))
    }
}

impl<S> Deref for Pass<'_, S> {
    type Target = S;
    #[inline]
    fn deref(&self) -> &S {
        &self.held
    }
}

impl<S> DerefMut for Pass<'_, S> {
    #[inline]
    fn deref_mut(&mut self) -> &mut S {
        &mut self.held
    }
}

#[cfg(test)]
mod tests {
    use super::{Gate, Wait};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn a_busy_gate_is_refused_at_once_to_its_holder_and_waited_for_by_others() {
        let gate = Arc::new(Gate::new(0u64));
        let mut pass = gate.enter(Wait::Block).expect("free");
        // The holder itself: refused at once, whatever the wait.
        assert!(gate.enter(Wait::Block).is_none());
        assert!(gate.held_here());
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let gate = Arc::clone(&gate);
                std::thread::spawn(move || {
                    assert!(!gate.held_here());
                    let mut p = gate.enter(Wait::Block).expect("blocking waits");
                    *p += 1;
                })
            })
            .collect();
        let other = Arc::clone(&gate);
        let timed_out = std::thread::spawn(move || {
            let at = Instant::now() + Duration::from_millis(50);
            (other.enter(Wait::Until(at)).is_none(), Instant::now() >= at)
        })
        .join()
        .expect("no panic");
        assert_eq!(
            timed_out,
            (true, true),
            "a deadline wait gives up at its deadline"
        );
        *pass += 100;
        drop(pass);
        for w in waiters {
            w.join().expect("every blocked waiter is woken");
        }
        assert_eq!(*gate.enter(Wait::Never).expect("free again"), 104);
    }

    /// Counts its wake-ups.
    struct Counting(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_task_waiting_for_a_busy_gate_is_woken_when_it_is_released() {
        let gate = Gate::new(());
        let count = Arc::new(Counting(Default::default()));
        let waker = std::task::Waker::from(Arc::clone(&count));
        let woken = || count.0.load(std::sync::atomic::Ordering::SeqCst);
        // Free: "look again now", and a release later wakes it anyway.
        assert!(gate.wake_when_free(&waker));
        let pass = gate.enter(Wait::Never).expect("free");
        // Busy: registered once however often it asks, woken once by the
        // release, and not again by the next (its waker was taken).
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(!gate.wake_when_free(&waker));
                assert!(!gate.wake_when_free(&waker));
            });
        });
        assert_eq!(woken(), 0);
        drop(pass);
        assert_eq!(woken(), 1);
        drop(gate.enter(Wait::Never).expect("free"));
        assert_eq!(woken(), 1);
        assert_eq!(
            gate.sleepers
                .waiting
                .load(std::sync::atomic::Ordering::SeqCst),
            0
        );
    }
}
