//! A blocking ZeroMQ socket's runtime: a current-thread tokio runtime of
//! the socket's own, driven by the caller's thread during each call (so a
//! send or receive goes from the caller to the kernel with no other
//! thread in between, as the `zeromq` crate driven by hand does) and,
//! between calls, by a thread of the socket's, so that connections are
//! accepted and what was sent is written while the application does
//! something else.
//!
//! The hand-over: a call counts itself in and, if the driver thread is
//! driving, tells it to let go (it returns from `block_on`, and the
//! caller's `block_on` takes the runtime). The driver takes the runtime
//! back only once no call has run for [`IDLE`], so that calls in quick
//! succession never wake it: a tight request/reply loop makes no hand-over
//! at all. While a call is under way the driver sleeps until the last call
//! ends (which wakes it), then waits [`IDLE`] before it looks again,
//! however many calls come and go meanwhile: at most two wake-ups of the
//! driver per [`IDLE`], and none during a long call.

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long the runtime must have gone without a call before the driver
/// thread drives it.
const IDLE: Duration = Duration::from_millis(1);

/// How long dropping a socket that sends waits for what was sent on it to
/// be written (the runtime's tasks to end).
pub(super) const LINGER: Duration = Duration::from_secs(5);

struct Shared {
    /// Taken only when the last hold goes (see its `Drop`).
    rt: Option<tokio::runtime::Runtime>,
    state: Mutex<State>,
    wake: Condvar,
    /// Tells the driver thread to let the runtime go.
    release: tokio::sync::Notify,
    /// How long the runtime's tasks may go on once the socket is dropped.
    linger: Duration,
}

#[derive(Default)]
struct State {
    /// Calls under way on callers' threads.
    calls: usize,
    /// When the last call ended (the precise clock: the coarse one lags
    /// by up to a tick, 4 ms, and would let the driver take the runtime
    /// between calls in quick succession).
    last: Option<Instant>,
    /// The driver thread is inside `block_on`.
    driving: bool,
    /// The driver thread waits, with no timeout, for the calls to end.
    asleep: bool,
    /// The socket is being dropped.
    closing: bool,
}

/// The runtime and its driver thread. Dropping it lets the runtime's tasks
/// finish (what was sent is written) for up to its linger, then shuts it
/// down; that may be done anywhere, inside another runtime too.
pub(crate) struct Driven {
    shared: Arc<Shared>,
    driver: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Driven {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driven").finish_non_exhaustive()
    }
}

impl Driven {
    /// A runtime whose tasks may finish for up to `linger` once the socket
    /// is dropped ([`LINGER`] for a socket that sends; none for one that
    /// only receives, whose tasks have nothing to write: the `zeromq`
    /// crate's PULL socket even keeps an idle writer task per peer alive
    /// for as long as the runtime runs).
    pub(crate) fn new(linger: Duration) -> Result<Driven> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting a ZeroMQ socket's runtime", e))?;
        let shared = Arc::new(Shared {
            rt: Some(rt),
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            release: tokio::sync::Notify::new(),
            linger,
        });
        let theirs = Arc::clone(&shared);
        let driver = std::thread::Builder::new()
            .name("procwire-zmq".into())
            .spawn(move || drive(&theirs))
            .map_err(|e| Error::io("starting a ZeroMQ socket's thread", e))?;
        Ok(Driven {
            shared,
            driver: Some(driver),
        })
    }

    /// Runs `fut` to completion on the socket's runtime, driving it on this
    /// thread. On a thread inside a tokio runtime (where `block_on` would
    /// panic), on a thread of its own for this call instead; an error only
    /// if that thread cannot be started.
    pub(crate) fn run<F>(&self, fut: F) -> Result<F::Output>
    where
        F: Future + Send,
        F::Output: Send,
    {
        if tokio::runtime::Handle::try_current().is_ok() {
            return std::thread::scope(|s| {
                let t = std::thread::Builder::new()
                    .name("procwire-zmq-call".into())
                    .spawn_scoped(s, || self.run_here(fut))
                    .map_err(|e| Error::io("starting a thread for a ZeroMQ call", e))?;
                Ok(t.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            });
        }
        Ok(self.run_here(fut))
    }

    fn run_here<F: Future>(&self, fut: F) -> F::Output {
        struct Call<'a>(&'a Shared);
        impl Drop for Call<'_> {
            fn drop(&mut self) {
                let mut st = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
                st.calls -= 1;
                st.last = Some(Instant::now());
                if st.calls == 0 && st.asleep {
                    st.asleep = false;
                    self.0.wake.notify_one();
                }
            }
        }
        {
            let mut st = self
                .shared
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            st.calls += 1;
            if st.driving {
                self.shared.release.notify_one();
            }
        }
        let _call = Call(&self.shared);
        self.shared.rt().block_on(fut)
    }

    /// Spawns `task` on the runtime (driven by the driver thread between
    /// calls): a bridge's.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.shared.rt().spawn(task));
    }
}

/// The driver thread: drives the runtime whenever no call has run for
/// [`IDLE`], until the socket is dropped; then lets the tasks finish.
fn drive(shared: &Shared) {
    loop {
        {
            let mut st = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if st.closing {
                    drop(st);
                    linger(shared);
                    return;
                }
                let quiet = st.last.map_or(IDLE, |l| l.elapsed());
                if st.calls == 0 && quiet >= IDLE {
                    break;
                }
                if st.calls == 0 {
                    st = shared
                        .wake
                        .wait_timeout(st, IDLE - quiet)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                } else {
                    // The last call to end wakes it; then it looks again
                    // only after IDLE, however many calls come and go.
                    st.asleep = true;
                    st = shared.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
                    st.asleep = false;
                    if !st.closing {
                        st = shared
                            .wake
                            .wait_timeout(st, IDLE)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                }
            }
            st.driving = true;
        }
        shared.rt().block_on(shared.release.notified());
        shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .driving = false;
    }
}

/// Drives the runtime until its tasks (the socket's writers, a bridge)
/// have ended, for at most the runtime's linger.
fn linger(shared: &Shared) {
    shared.rt().block_on(tasks_end(shared.linger));
}

/// Returns once the runtime this runs on has no task left (the socket's
/// writers have written what was sent), or after `within`; called from
/// its `block_on`, whose future is no task.
pub(super) async fn tasks_end(within: Duration) {
    let until = Instant::now() + within;
    let rt = tokio::runtime::Handle::current();
    while rt.metrics().num_alive_tasks() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        {
            let mut st = self
                .shared
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            st.closing = true;
        }
        self.shared.wake.notify_all();
        self.shared.release.notify_one();
        if let Some(driver) = self.driver.take() {
            let _ = driver.join();
        }
    }
}

impl Shared {
    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt
            .as_ref()
            .expect("the runtime is taken only when Shared is dropped")
    }
}

impl Drop for Shared {
    /// Shuts the runtime down without waiting (its tasks had their linger;
    /// a plain drop inside another runtime would panic).
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
