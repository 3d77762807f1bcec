//! How a ring's end waits for its peer: spinning, yielding, sleeping on a
//! futex, or adaptively (see [`ShmWait`]).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sys::shm::{futex_wait, yield_now};

/// How a wait ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    Ready,
    TimedOut,
    PeerGone,
}

/// How a shared-memory end waits for its peer.
///
/// The default, [`ShmWait::Adaptive`], is good in both placements; the fixed
/// strategies are there to measure it against (`procwire bench`) and for
/// programs that know where their processes run.
///
/// ```
/// use procwire::{Shm, ShmWait};
///
/// // Two processes pinned to different CPUs: spinning answers fastest.
/// let (a, b) = Shm::new().wait(ShmWait::Spin).duplex::<u32, u32>()?;
/// a.send(7)?;
/// assert_eq!(b.recv()?, 7);
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ShmWait {
    /// Spin for a budget learnt from recent waits, then yield the CPU a few
    /// times, then sleep on a futex.
    #[default]
    Adaptive,
    /// Busy-poll until the peer answers: the lowest latency when the peer
    /// has a CPU of its own, and a wasted time slice when it shares ours.
    Spin,
    /// Call `sched_yield` until the peer answers: lets a peer on the same
    /// CPU run, burns the CPU otherwise.
    Yield,
    /// Sleep on a futex at once: no CPU while waiting, a wake-up per message.
    Futex,
}

/// How long one end spins before yielding, learnt from where its recent
/// waits ended. Spinning pays when the peer runs on another CPU and answers
/// within microseconds; when both share a CPU it only delays the peer.
/// - the wait ended while spinning: spin up to twice as long as it took;
/// - it ended while yielding and a yield ran someone else (the peer shares
///   our CPU): halve the budget; if no yield switched (the peer is on
///   another CPU, merely slower than the budget), spin up to twice as long
///   as the wait took;
/// - it ended asleep: the answer took long or the peer was far; probe by
///   doubling the budget (up to `MAX_SPIN`), so that a fast peer on another
///   CPU is caught spinning from then on.
#[derive(Debug)]
pub(crate) struct Spins(Duration, ShmWait);

/// The longest a wait spins.
const MAX_SPIN: Duration = Duration::from_micros(50);

impl Spins {
    pub(super) fn with(wait: ShmWait) -> Spins {
        Spins(Duration::from_micros(5), wait)
    }
}

/// Yields this many times before sleeping: each lets a peer on this CPU run.
const YIELDS: u32 = 16;
/// A `sched_yield` that takes this long switched to another thread (one
/// that finds nobody else to run returns in well under a microsecond).
const SWITCHED: Duration = Duration::from_micros(2);
/// A sleeper wakes this long after it fell asleep to check that the peer
/// lives, then twice as long after each look that found nothing, up to
/// [`MAX_TICK`]: a peer killed early in a wait is noticed within some
/// 10 ms, one killed during a long idle wait within 100 ms, and an idle
/// end costs some ten wake-ups a second, not a hundred (each some 30 µs
/// of CPU on this machine's VM).
const TICK: Duration = Duration::from_millis(10);
/// The longest a sleeper goes without looking at its peer.
const MAX_TICK: Duration = Duration::from_millis(100);
/// A fixed spinning or yielding wait checks its peer this often (on the
/// coarse clock: at the first tick after it).
const BUSY_CHECK: Duration = Duration::from_millis(1);

/// The fixed busy strategies: poll `ready`, between polls spinning or
/// yielding; every 64 polls, check the deadline if there is one (the
/// precise clock) and, every [`BUSY_CHECK`], the peer. The clock read per
/// wait is the coarse one (`sys::coarse_ns`): a message that comes within
/// the first polls costs no `Instant::now`.
fn busy_wait(
    yielding: bool,
    ready: &dyn Fn() -> bool,
    deadline: Option<Instant>,
    alive: &dyn Fn() -> bool,
) -> Waited {
    let mut checked = crate::sys::coarse_ns();
    loop {
        for _ in 0..64 {
            if ready() {
                return Waited::Ready;
            }
            if yielding {
                yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Waited::TimedOut;
        }
        let now = crate::sys::coarse_ns();
        if now.saturating_sub(checked) >= BUSY_CHECK.as_nanos() as u64 {
            checked = now;
            if !alive() {
                return if ready() {
                    Waited::Ready
                } else {
                    Waited::PeerGone
                };
            }
        }
    }
}

pub(super) fn adaptive_wait(
    spins: &mut Spins,
    seq: &AtomicU32,
    waiting: &AtomicU32,
    ready: &dyn Fn() -> bool,
    deadline: Option<Instant>,
    alive: &dyn Fn() -> bool,
) -> Waited {
    match spins.1 {
        ShmWait::Spin => return busy_wait(false, ready, deadline, alive),
        ShmWait::Yield => return busy_wait(true, ready, deadline, alive),
        ShmWait::Futex => return sleep_wait(seq, waiting, ready, deadline, alive),
        ShmWait::Adaptive => {}
    }
    let start = Instant::now();
    if !spins.0.is_zero() {
        loop {
            for _ in 0..64 {
                if ready() {
                    spins.0 = (start.elapsed() * 2).clamp(Duration::from_micros(1), MAX_SPIN);
                    return Waited::Ready;
                }
                std::hint::spin_loop();
            }
            if start.elapsed() >= spins.0 {
                break;
            }
        }
    }
    let mut switched = false;
    for _ in 0..YIELDS {
        let before = Instant::now();
        yield_now();
        // A yield that took long ran someone else on this CPU: most likely
        // the peer, which then shares our CPU.
        switched |= before.elapsed() >= SWITCHED;
        if ready() {
            if switched {
                spins.0 /= 2;
                if spins.0 < Duration::from_micros(1) {
                    spins.0 = Duration::ZERO;
                }
            } else {
                // Nobody else ran here: the peer is on another CPU and was
                // merely slower than the budget. Spin long enough next time.
                spins.0 = (start.elapsed() * 2).clamp(Duration::from_micros(1), MAX_SPIN);
            }
            return Waited::Ready;
        }
    }
    spins.0 = (spins.0 * 2).clamp(Duration::from_micros(1), MAX_SPIN);
    sleep_wait(seq, waiting, ready, deadline, alive)
}

/// Sleeps on the futex `seq` until `ready`, announcing itself in `waiting`
/// and waking now and then ([`TICK`]) to check the peer.
fn sleep_wait(
    seq: &AtomicU32,
    waiting: &AtomicU32,
    ready: &dyn Fn() -> bool,
    deadline: Option<Instant>,
    alive: &dyn Fn() -> bool,
) -> Waited {
    let mut tick = TICK;
    loop {
        let seen = seq.load(Ordering::SeqCst);
        waiting.store(1, Ordering::SeqCst);
        if ready() {
            waiting.store(0, Ordering::SeqCst);
            return Waited::Ready;
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            waiting.store(0, Ordering::SeqCst);
            return Waited::TimedOut;
        }
        futex_wait(seq, seen, left.map_or(tick, |l| l.min(tick)));
        waiting.store(0, Ordering::SeqCst);
        if ready() {
            return Waited::Ready;
        }
        if !alive() {
            return Waited::PeerGone;
        }
        tick = (tick * 2).min(MAX_TICK);
    }
}
