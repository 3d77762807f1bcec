//! Hostile conditions for testing programs built on procwire (and procwire
//! itself).

use std::time::Duration;

/// A storm of `SIGALRM` at the calling thread, from a handler installed
/// **without** `SA_RESTART`: every blocking system call the signal lands in
/// fails with `EINTR`, which procwire must retry and never report. Dropping
/// the storm stops it and restores the previous disposition.
///
/// ```
/// use std::time::Duration;
/// use procwire::testing::SignalStorm;
///
/// let (a, b) = procwire::duplex::<u32, u32>()?;
/// let storm = SignalStorm::start(Duration::from_micros(200))?;
/// for i in 0..1000 {
///     a.send(i)?;
///     assert_eq!(b.recv()?, i);
/// }
/// drop(storm);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SignalStorm {
    // Held for its Drop, which ends the storm.
    _storm: crate::sys::storm::Storm,
}

impl SignalStorm {
    /// Sends `SIGALRM` to the calling thread every `every`.
    pub fn start(every: Duration) -> std::io::Result<SignalStorm> {
        crate::sys::storm::start(every).map(|s| SignalStorm { _storm: s })
    }

    /// How many storm signals have been delivered in this process so far.
    pub fn delivered() -> u64 {
        crate::sys::storm::delivered()
    }
}
