//! The coarse monotonic clock, for checks that run on every message.
#![allow(unsafe_code)]

/// Nanoseconds on the coarse monotonic clock: the time of the last timer
/// tick (1 to 4 ms apart), read from the vDSO without the hardware
/// counter, where `Instant::now` costs a 64 B shared-memory send some 90
/// instructions (`scripts/instructions`). For "at most once a millisecond"
/// checks and for silences measured in heartbeats, never for deadlines.
///
/// Through glibc rather than rustix: rustix finds the vDSO itself, and its
/// lookup faults under valgrind, which `scripts/instructions` runs.
///
/// # References
/// - clock_gettime(2), `CLOCK_MONOTONIC_COARSE`
#[inline]
pub(crate) fn coarse_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write. (The call cannot fail: the
    // clock exists on every Linux since 2.6.32 and `t` is writable.)
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut t) };
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}
