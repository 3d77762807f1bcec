//! procwire's background runtime: the one tokio runtime (one worker
//! thread, `procwire-net`) on which the NATS clients run their
//! connections (a blocking ZeroMQ socket has a runtime of its own,
//! `remote::zmq::driven`, driven by its callers), started by the first
//! and stopped when the last is dropped, so that a process done with them
//! keeps no thread and no descriptor; and [`drive`], which runs one of
//! their futures on the calling thread, with a deadline, from any thread
//! (inside another runtime too, where `Runtime::block_on` would panic).

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use crate::error::{Error, ErrorKind, Result};

/// The background runtime, started if no one holds it.
pub(crate) fn runtime() -> Result<Arc<tokio::runtime::Runtime>> {
    static RT: Mutex<Weak<tokio::runtime::Runtime>> = Mutex::new(Weak::new());
    let mut rt = RT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(live) = rt.upgrade() {
        return Ok(live);
    }
    let fresh = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("procwire-net")
            .enable_all()
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("starting procwire's network runtime: {e}"),
                )
            })?,
    );
    *rt = Arc::downgrade(&fresh);
    Ok(fresh)
}

/// Lets the runtime go if `rt` was its last holder, without waiting on a
/// runtime thread (`drop` would block, and panic inside async code).
pub(crate) fn release(rt: Arc<tokio::runtime::Runtime>) {
    if let Ok(rt) = Arc::try_unwrap(rt) {
        rt.shutdown_background();
    }
}

/// Wakes the thread that drives a future.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `fut` on this thread until it completes (`Some`) or `deadline`
/// passes (`None`: the future is dropped there, which the caller's future
/// must be safe for), inside `rt`'s context (its timers and I/O); the
/// runtime's thread runs the tasks the future waits on.
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) fn drive<F: Future>(
    rt: &tokio::runtime::Runtime,
    deadline: Option<Instant>,
    fut: F,
) -> Option<F::Output> {
    let _context = rt.enter();
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
        match deadline {
            None => std::thread::park(),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return None;
                }
                std::thread::park_timeout(d - now);
            }
        }
    }
}
