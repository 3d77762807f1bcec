//! A `Stream`'s or `Sink`'s step in flight on an end whose steps are async
//! functions of a shared connection (ZeroMQ, NATS): a future kept across
//! polls, which owns what it needs.

use std::pin::Pin;
use std::sync::PoisonError;
use std::task::{Context, Poll, ready};

/// The step, behind a lock only so that the end stays `Sync`: the `poll_*`
/// methods reach it through `&mut`, and the end's own `recv` or `send`
/// takes it out.
pub(super) type InFlight<T> = std::sync::Mutex<Option<Step<T>>>;

pub(super) type Step<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The step in flight, taken out.
pub(super) fn take<T>(step: &InFlight<T>) -> Option<Step<T>> {
    step.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// Polls the step in flight, started by `start` if there is none, to its
/// end.
pub(super) fn poll_started<T>(
    step: &mut InFlight<T>,
    cx: &mut Context<'_>,
    start: impl FnOnce() -> Step<T>,
) -> Poll<T> {
    let step = step.get_mut().unwrap_or_else(PoisonError::into_inner);
    let fut = step.get_or_insert_with(start);
    let done = ready!(fut.as_mut().poll(cx));
    *step = None;
    Poll::Ready(done)
}

/// A `Sink`'s `poll_ready` and `poll_flush`: the send in flight, if any,
/// polled to its end.
pub(super) fn poll_sent(
    step: &mut InFlight<crate::Result<()>>,
    cx: &mut Context<'_>,
) -> Poll<crate::Result<()>> {
    let step = step.get_mut().unwrap_or_else(PoisonError::into_inner);
    let Some(fut) = step else {
        return Poll::Ready(Ok(()));
    };
    let done = ready!(fut.as_mut().poll(cx));
    *step = None;
    Poll::Ready(done)
}

/// Puts a step in flight (the `Sink`'s `start_send`).
pub(super) fn start<T>(step: &mut InFlight<T>, fut: Step<T>) {
    let step = step.get_mut().unwrap_or_else(PoisonError::into_inner);
    debug_assert!(step.is_none(), "start_send without poll_ready");
    *step = Some(fut);
}
