//! Request/reply over one channel: many calls in flight, each reply to its
//! caller.
//!
//! The lesson's parent sends "Heavy lifting" and reads "accomplished!"; RPC
//! is that exchange with an id on each message, so that many threads can
//! call through one channel at once and replies may come back in any order.
//!
//! On the wire (see `docs/wire-format.md`), a call is `{"id": N, "body":
//! REQUEST}` and a reply `{"id": N, "body": {"Ok": RESPONSE}}` or `{"id": N,
//! "body": {"Err": "message"}}`, in the channel's codec.
//!
//! # Examples
//!
//! ```
//! use procwire::rpc::{self, Client};
//!
//! let (client_end, server_end) = rpc::pair::<u32, u32>()?;
//! std::thread::spawn(move || rpc::serve(server_end, |n: u32| Ok::<_, String>(n * 2)));
//! let client = Client::new(client_end);
//! assert_eq!(client.call(21)?, 42);
//! # Ok::<(), procwire::Error>(())
//! ```
//!
//! No thread is added: a caller waiting for its reply reads the channel
//! itself when no other caller is reading, and hands the replies it finds
//! for others over to them. A dead peer (a supervised child that exits, an
//! end of stream) fails every call in flight at once, with the exit status
//! when the channel supervises the peer.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::{Duplex, Receiver, Sender};

/// A call on the wire: the caller's id and the request.
///
/// # Examples
///
/// ```
/// // What a peer in another language sends for `client.call(7)`, in JSON:
/// let call = procwire::rpc::Call { id: 1, body: 7u32 };
/// assert_eq!(serde_json::to_string(&call)?, r#"{"id":1,"body":7}"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Serialize, Deserialize)]
pub struct Call<Req> {
    /// Chosen by the caller, unique among its calls in flight.
    pub id: u64,
    /// The request.
    pub body: Req,
}

/// A reply on the wire: the call's id and the handler's result.
///
/// # Examples
///
/// ```
/// // A reply, in JSON: the handler's result under "Ok", or its error's
/// // message under "Err".
/// let ok = procwire::rpc::Reply::<u32> { id: 1, body: Ok(14) };
/// assert_eq!(serde_json::to_string(&ok)?, r#"{"id":1,"body":{"Ok":14}}"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Serialize, Deserialize)]
pub struct Reply<Resp> {
    /// The id of the call this answers.
    pub id: u64,
    /// The response, or the handler's error message.
    pub body: std::result::Result<Resp, String>,
}

/// The calling end of an RPC channel.
///
/// # Examples
///
/// ```
/// use procwire::rpc;
///
/// let (client_end, server_end): (rpc::ClientEnd<u32, u32>, rpc::ServerEnd<u32, u32>) = rpc::pair()?;
/// std::thread::spawn(move || rpc::serve(server_end, |n: u32| Ok::<_, String>(n + 1)));
/// assert_eq!(rpc::Client::new(client_end).call(1)?, 2);
/// # Ok::<(), procwire::Error>(())
/// ```
pub type ClientEnd<Req, Resp> = Duplex<Call<Req>, Reply<Resp>>;
/// The serving end of an RPC channel.
///
/// # Examples
///
/// ```
/// use procwire::rpc;
///
/// let (client_end, server_end) = rpc::pair::<u32, u32>()?;
/// let server = std::thread::spawn(move || rpc::serve(server_end, |n: u32| Ok::<_, String>(n * 3)));
/// assert_eq!(rpc::Client::new(client_end).call(5)?, 15); // dropping the client ends serve
/// server.join().unwrap()?;
/// # Ok::<(), procwire::Error>(())
/// ```
pub type ServerEnd<Req, Resp> = Duplex<Reply<Resp>, Call<Req>>;

/// A connected pair of RPC ends over a new stream socket pair.
///
/// # Examples
///
/// ```
/// use procwire::rpc;
///
/// let (client_end, server_end) = rpc::pair::<String, usize>()?;
/// std::thread::spawn(move || rpc::serve(server_end, |s: String| Ok::<_, String>(s.len())));
/// assert_eq!(rpc::Client::new(client_end).call("four".into())?, 4);
/// # Ok::<(), procwire::Error>(())
/// ```
pub fn pair<Req, Resp>() -> Result<(ClientEnd<Req, Resp>, ServerEnd<Req, Resp>)>
where
    Req: Serialize + DeserializeOwned,
    Resp: Serialize + DeserializeOwned,
{
    crate::duplex()
}

/// Serves calls one after another until the client closes the channel:
/// each request goes to `handler`, its result back to the caller. Returns
/// `Ok(())` at a clean end of stream.
///
/// # Examples
///
/// ```
/// use procwire::rpc;
///
/// let (client_end, server_end) = rpc::pair::<u32, u32>()?;
/// let server = std::thread::spawn(move || {
///     rpc::serve(server_end, |n: u32| if n == 0 { Err("zero") } else { Ok(100 / n) })
/// });
/// let client = rpc::Client::new(client_end);
/// assert_eq!(client.call(4)?, 25);
/// let e = client.call(0).unwrap_err();
/// assert_eq!(e.kind(), procwire::ErrorKind::Remote); // the handler's error, by message
/// drop(client); // the server's loop ends cleanly
/// server.join().unwrap()?;
/// # Ok::<(), procwire::Error>(())
/// ```
pub fn serve<Req, Resp, E>(
    end: ServerEnd<Req, Resp>,
    mut handler: impl FnMut(Req) -> std::result::Result<Resp, E>,
) -> Result<()>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    E: fmt::Display,
{
    loop {
        let call = match end.recv() {
            Ok(c) => c,
            Err(e) if e.is_disconnected() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let body = handler(call.body).map_err(|e| e.to_string());
        end.send(Reply { id: call.id, body })?;
    }
}

/// Serves calls on `threads` threads at once; replies go back as each
/// handler finishes, so possibly out of order. Returns when the client has
/// closed the channel and every handler has finished.
///
/// # Examples
///
/// ```
/// use procwire::rpc;
/// use std::time::Duration;
///
/// let (client_end, server_end) = rpc::pair::<u64, u64>()?;
/// std::thread::spawn(move || {
///     rpc::serve_concurrent(server_end, 4, |ms: u64| {
///         std::thread::sleep(Duration::from_millis(ms));
///         Ok::<_, String>(ms)
///     })
/// });
/// let client = rpc::Client::new(client_end);
/// // Four calls from four threads, served at once.
/// std::thread::scope(|s| {
///     for ms in [40, 30, 20, 10] {
///         let client = &client;
///         s.spawn(move || assert_eq!(client.call(ms).unwrap(), ms));
///     }
/// });
/// # Ok::<(), procwire::Error>(())
/// ```
pub fn serve_concurrent<Req, Resp, E, H>(
    end: ServerEnd<Req, Resp>,
    threads: usize,
    handler: H,
) -> Result<()>
where
    Req: DeserializeOwned + Send,
    Resp: Serialize + Send,
    E: fmt::Display,
    H: Fn(Req) -> std::result::Result<Resp, E> + Sync,
{
    let (tx, rx) = end.split();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                let tx = tx.clone();
                let (rx, handler) = (&rx, &handler);
                s.spawn(move || -> Result<()> {
                    loop {
                        let call = match rx.recv() {
                            Ok(c) => c,
                            Err(e) if e.is_disconnected() => return Ok(()),
                            Err(e) => return Err(e.into()),
                        };
                        let body = handler(call.body).map_err(|e| e.to_string());
                        tx.send(Reply { id: call.id, body })?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(Error::new(ErrorKind::Io, "a handler panicked")))
            })
            .collect::<Result<Vec<()>>>()
            .map(drop)
    })
}

/// Calls a server through one channel, from any number of threads.
///
/// # Examples
///
/// ```
/// use procwire::rpc;
/// use std::time::Duration;
///
/// let (client_end, server_end) = rpc::pair::<String, String>()?;
/// std::thread::spawn(move || {
///     rpc::serve(server_end, |job: String| Ok::<_, String>(format!("{job} accomplished!")))
/// });
/// let client = rpc::Client::new(client_end);
/// let reply = client.call_timeout("Heavy lifting".into(), Duration::from_secs(5))?;
/// assert_eq!(reply, "Heavy lifting accomplished!");
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct Client<Req, Resp> {
    tx: Sender<Call<Req>>,
    rx: Receiver<Reply<Resp>>,
    next: AtomicU64,
    shared: Mutex<State<Resp>>,
    arrived: Condvar,
}

struct State<Resp> {
    /// Replies read by one caller for another.
    replies: HashMap<u64, std::result::Result<Resp, String>>,
    /// Calls whose callers still wait.
    waiting: HashSet<u64>,
    /// A caller is reading the channel.
    reading: bool,
    /// Why the channel is finished, for every call after.
    dead: Option<Error>,
}

impl<Req, Resp> Client<Req, Resp>
where
    Req: Serialize,
    Resp: DeserializeOwned,
{
    /// A client on `end`.
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::rpc;
    ///
    /// let (client_end, server_end) = rpc::pair::<String, usize>()?;
    /// std::thread::spawn(move || rpc::serve(server_end, |s: String| Ok::<_, String>(s.len())));
    /// let client = rpc::Client::new(client_end); // Sync: share it between threads
    /// assert_eq!(client.call("four".into())?, 4);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn new(end: ClientEnd<Req, Resp>) -> Client<Req, Resp> {
        let (tx, rx) = end.split();
        Client {
            tx,
            rx,
            next: AtomicU64::new(0),
            shared: Mutex::new(State {
                replies: HashMap::new(),
                waiting: HashSet::new(),
                reading: false,
                dead: None,
            }),
            arrived: Condvar::new(),
        }
    }

    /// Calls with `req` and waits for the reply.
    pub fn call(&self, req: Req) -> Result<Resp> {
        self.call_until(req, None)
    }

    /// Calls with `req` and waits at most `timeout` for the reply
    /// ([`ErrorKind::Timeout`] then; a late reply is discarded).
    pub fn call_timeout(&self, req: Req, timeout: Duration) -> Result<Resp> {
        self.call_until(req, crate::channel::gate::deadline_after(timeout))
    }

    fn lock(&self) -> MutexGuard<'_, State<Resp>> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn call_until(&self, req: Req, deadline: Option<Instant>) -> Result<Resp> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        {
            let mut st = self.lock();
            if let Some(dead) = &st.dead {
                return Err(dead.duplicate());
            }
            st.waiting.insert(id);
        }
        if let Err(e) = self.tx.send(Call { id, body: req }) {
            self.lock().waiting.remove(&id);
            return Err(e.into_error());
        }
        let mut st = self.lock();
        let result = loop {
            if let Some(body) = st.replies.remove(&id) {
                break Ok(body);
            }
            if let Some(dead) = &st.dead {
                break Err(dead.duplicate());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break Err(Error::new(
                    ErrorKind::Timeout,
                    "no reply arrived before the deadline",
                ));
            }
            if !st.reading {
                // Lead: read the channel until our reply or the deadline.
                st.reading = true;
                drop(st);
                let got: Result<Reply<Resp>> =
                    self.rx.recv_wait(crate::channel::Wait::until(deadline));
                st = self.lock();
                st.reading = false;
                match got {
                    Ok(reply) => {
                        if st.waiting.contains(&reply.id) {
                            st.replies.insert(reply.id, reply.body);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Timeout => {}
                    // Anything else ends the channel, a reply that does not
                    // decode too: its caller cannot be told apart, and
                    // waiting for it would hang.
                    Err(e) => st.dead = Some(e),
                }
                // Wake the others: a reply may be theirs, or one of them
                // must take over reading.
                self.arrived.notify_all();
            } else {
                st = match deadline {
                    Some(d) => {
                        let left = d.saturating_duration_since(Instant::now());
                        self.arrived
                            .wait_timeout(st, left)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                    None => self
                        .arrived
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner),
                };
            }
        };
        st.waiting.remove(&id);
        drop(st);
        match result {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(message)) => Err(Error::new(
                ErrorKind::Remote,
                format!("the handler failed: {message}"),
            )),
            Err(e) => Err(e),
        }
    }

    /// The channel's sending half (to supervise a child, say).
    pub fn sender(&self) -> &Sender<Call<Req>> {
        &self.tx
    }

    /// The channel's receiving half.
    pub fn receiver(&self) -> &Receiver<Reply<Resp>> {
        &self.rx
    }
}

impl<Req, Resp> fmt::Debug for Client<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("tx", &self.tx)
            .field("rx", &self.rx)
            .finish_non_exhaustive()
    }
}
