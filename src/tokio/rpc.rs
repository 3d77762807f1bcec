//! RPC, awaited: a [`Client`] that keeps any number of calls in flight on
//! one channel with no task or thread per call, and [`serve`], which runs
//! handlers concurrently up to a bound. The wire is [`crate::rpc`]'s: an
//! async client talks to a blocking server and the other way round, and to
//! the Python peer.

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, poll_fn};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};
use crate::rpc::{Call, Reply};

/// The calling end of an RPC channel, awaited ([`crate::rpc::ClientEnd`]
/// made async).
pub type ClientEnd<Req, Resp> = super::Duplex<Call<Req>, Reply<Resp>>;
/// The serving end of an RPC channel, awaited.
pub type ServerEnd<Req, Resp> = super::Duplex<Reply<Resp>, Call<Req>>;

/// Calls a server through one channel from any number of tasks at once.
///
/// Replies are matched to their calls by id. Whichever waiting call polls
/// reads the channel for all of them and wakes the one a reply is for; a
/// call that ends (answered, or dropped by its caller) hands the reading
/// on. A call dropped before its reply simply forgets it (the late reply
/// is discarded), so `tokio::time::timeout(d, client.call(x))` is the
/// deadline. A channel that fails (the server gone, a reply that does not
/// decode) fails every call in flight and every call after, with the
/// reason.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> procwire::Result<()> {
/// use procwire::tokio::rpc;
///
/// let (client_end, server_end) = procwire::rpc::pair::<String, String>()?;
/// let server = tokio::spawn(rpc::serve(server_end.into_async()?, 4, |job: String| async move {
///     Ok::<_, String>(format!("{job} accomplished!"))
/// }));
/// let client = rpc::Client::new(client_end.into_async()?);
/// assert_eq!(client.call("Heavy lifting".into()).await?, "Heavy lifting accomplished!");
/// drop(client); // the server's loop ends cleanly
/// server.await.unwrap()?;
/// # Ok(())
/// # }
/// ```
pub struct Client<Req, Resp> {
    end: ClientEnd<Req, Resp>,
    next: AtomicU64,
    state: Mutex<State<Resp>>,
}

struct State<Resp> {
    /// Replies read for calls still waiting.
    replies: HashMap<u64, std::result::Result<Resp, String>>,
    /// Calls in flight, with the waker of their last poll.
    waiting: HashMap<u64, Option<Waker>>,
    /// Why the channel is finished, for every call.
    dead: Option<Error>,
}

impl<Req: Serialize, Resp: DeserializeOwned> Client<Req, Resp> {
    /// A client on `end`.
    pub fn new(end: ClientEnd<Req, Resp>) -> Client<Req, Resp> {
        Client {
            end,
            next: AtomicU64::new(0),
            state: Mutex::new(State {
                replies: HashMap::new(),
                waiting: HashMap::new(),
                dead: None,
            }),
        }
    }

    /// Calls with `req` and awaits the reply. Cancel-safe: dropped, it
    /// leaves the channel and the other calls as they were.
    pub async fn call(&self, req: Req) -> Result<Resp> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        {
            let mut st = self.lock();
            if let Some(dead) = &st.dead {
                return Err(dead.duplicate());
            }
            st.waiting.insert(id, None);
        }
        let _leave = Leave { client: self, id };
        self.end
            .send(Call { id, body: req })
            .await
            .map_err(|e| e.into_error())?;
        let body = poll_fn(|cx| {
            let mut st = self.lock();
            loop {
                if let Some(body) = st.replies.remove(&id) {
                    return Poll::Ready(Ok(body));
                }
                if let Some(dead) = &st.dead {
                    return Poll::Ready(Err(dead.duplicate()));
                }
                match self.end.poll_recv(cx) {
                    Poll::Ready(Ok(reply)) => {
                        // Someone else's: keep it for them and wake them; a
                        // reply nobody waits for (its call was dropped) goes.
                        if let Some(w) = st.waiting.get_mut(&reply.id) {
                            let w = w.take();
                            st.replies.insert(reply.id, reply.body);
                            if let Some(w) = w {
                                w.wake();
                            }
                        }
                    }
                    Poll::Ready(Err(e)) => {
                        st.dead = Some(e.into_error());
                        for w in st.waiting.values_mut().filter_map(Option::take) {
                            w.wake();
                        }
                    }
                    Poll::Pending => {
                        if let Some(w) = st.waiting.get_mut(&id) {
                            *w = Some(cx.waker().clone());
                        }
                        return Poll::Pending;
                    }
                }
            }
        })
        .await?;
        body.map_err(|message| {
            Error::new(ErrorKind::Remote, format!("the handler failed: {message}"))
        })
    }

    /// The channel's two halves (to supervise a child, say).
    pub fn end(&self) -> &ClientEnd<Req, Resp> {
        &self.end
    }
}

/// A call leaving (answered, failed or dropped): forgets it, and wakes one
/// other waiting call, which reads the channel from now on (the runtime
/// wakes only the task that polled the channel last, which may be this
/// one).
struct Leave<'a, Req, Resp> {
    client: &'a Client<Req, Resp>,
    id: u64,
}

impl<Req, Resp> Drop for Leave<'_, Req, Resp> {
    fn drop(&mut self) {
        let mut st = self.client.lock();
        st.waiting.remove(&self.id);
        st.replies.remove(&self.id);
        if let Some(w) = st.waiting.values_mut().find_map(Option::take) {
            w.wake();
        }
    }
}

impl<Req, Resp> Client<Req, Resp> {
    fn lock(&self) -> MutexGuard<'_, State<Resp>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<Req, Resp> fmt::Debug for Client<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("tokio::rpc::Client").finish_non_exhaustive()
    }
}

/// Serves calls until the client closes the channel, running up to
/// `concurrency` handlers at once (each a task of the runtime; replies go
/// back as they finish, so possibly out of order). Returns `Ok(())` once
/// the client has closed the channel and every handler has answered.
pub async fn serve<Req, Resp, E, F, Fut>(
    end: ServerEnd<Req, Resp>,
    concurrency: usize,
    handler: F,
) -> Result<()>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    E: fmt::Display,
    F: Fn(Req) -> Fut,
    Fut: Future<Output = std::result::Result<Resp, E>> + Send + 'static,
{
    let limit = concurrency.max(1);
    let mut running = ::tokio::task::JoinSet::new();
    let mut open = true;
    loop {
        if !open && running.is_empty() {
            return Ok(());
        }
        ::tokio::select! {
            // Cancel-safe: a receive that loses the race took nothing.
            call = end.recv(), if open && running.len() < limit => match call {
                Ok(call) => {
                    let answer = handler(call.body);
                    let id = call.id;
                    running.spawn(async move { (id, answer.await.map_err(|e| e.to_string())) });
                }
                Err(e) if e.is_disconnected() => open = false,
                Err(e) => return Err(e.into()),
            },
            Some(done) = running.join_next(), if !running.is_empty() => {
                let (id, body) = done.map_err(|e| {
                    Error::new(ErrorKind::Io, format!("a handler failed to finish: {e}"))
                })?;
                end.send(Reply { id, body }).await.map_err(|e| e.into_error())?;
            }
        }
    }
}
