//! Helpers shared by the criterion benches: CPU pinning and the criterion
//! settings every bench starts from.

#![allow(dead_code)]

use std::time::Duration;

use criterion::Criterion;

/// Pins this thread (and so every process it later forks) to `cpus`.
pub fn pin(cpus: &[usize]) {
    let mut set = rustix::thread::CpuSet::new();
    for &c in cpus {
        set.set(c);
    }
    rustix::thread::sched_setaffinity(None, &set).expect("sched_setaffinity");
}

/// Thirty samples, the given warm-up and measurement times, then whatever
/// the command line overrides.
pub fn criterion(warm_up: Duration, measurement: Duration) -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(warm_up)
        .measurement_time(measurement)
        .configure_from_args()
}
