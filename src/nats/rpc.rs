//! RPC services on a subject: NATS request/reply, the servers of a subject
//! in one queue group (so the same service started on N machines shares
//! the calls), each call under the caller's deadline.

use std::marker::PhantomData;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::connect::{Conn, debug_by_addr};
use crate::Net;
use crate::channel::gate::deadline_after;
use crate::error::{Error, ErrorKind, Result};

/// The queue group every server of a subject joins.
pub(crate) const QUEUE: &str = "procwire";

/// Serves the calls on `addr` (`nats://HOST:PORT/SUBJECT`), one at a time,
/// until the connection to the server is lost for good (an error) or
/// `stop` returns `true` (asked at least every 100 ms, the first time once
/// the subscription is in place: from then on, calls reach this server). Every server of
/// the subject joins one queue group: each call goes to one of them. A
/// call's payload is the request in `net`'s codec; the reply is
/// `Result<Resp, String>` in it (`{"Ok": …}` or `{"Err": "…"}` in JSON),
/// the handler's error by its message; a request that does not decode is
/// answered with an `Err` that says so.
///
/// The connection runs on this thread, between calls (a runtime of its
/// own, not procwire's background one): a call reaches the handler, and
/// its reply the server, with no hand-off to another thread. While the
/// handler runs, the connection waits: a handler that runs past the
/// server's allowance for unanswered pings (two of them, two minutes
/// apart, by default) loses the connection; the client then reconnects,
/// and calls sent to this server in the meantime end at their callers'
/// deadlines.
pub fn serve<Req, Resp, E>(
    addr: &str,
    net: &Net,
    handler: impl FnMut(Req) -> std::result::Result<Resp, E>,
    stop: impl FnMut() -> bool,
) -> Result<()>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    E: std::fmt::Display,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        // Called on a runtime's thread, which cannot run a runtime of its
        // own: the connection goes on procwire's background runtime, and
        // the loop runs here (as every blocking end does).
        let conn = Conn::open(addr, net)?;
        return conn
            .drive(None, serve_on(&conn, net, handler, Some(stop)))
            .unwrap_or_else(|| Err(Error::new(ErrorKind::Io, "serving ended without a result")));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorKind::Io, format!("serving {addr}: a runtime: {e}")))?;
    let conn = Conn::open_on(&rt, addr, net)?;
    rt.block_on(serve_on(&conn, net, handler, Some(stop)))
}

/// Serves the calls on `conn`'s subject in its queue group, one at a time,
/// until the connection is lost for good (an error) or `stop` (when given)
/// returns `true`: asked once the subscription is in place, then at least
/// every 100 ms.
pub(crate) async fn serve_on<Req, Resp, E>(
    conn: &Conn,
    net: &Net,
    mut handler: impl FnMut(Req) -> std::result::Result<Resp, E>,
    mut stop: Option<impl FnMut() -> bool>,
) -> Result<()>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    E: std::fmt::Display,
{
    let what = format!("serving {}", conn.addr);
    let mut calls = tokio::time::timeout(net.connect_timeout, subscribe(conn))
        .await
        .unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Timeout,
                format!("{what}: subscribing timed out"),
            ))
        })?;
    loop {
        let next = match stop.as_mut() {
            None => calls.next().await,
            Some(stop) => {
                if stop() {
                    // The replies given so far leave before the connection
                    // goes (they wait in the client's queue otherwise).
                    let _ = tokio::time::timeout(net.connect_timeout, conn.client.flush()).await;
                    return Ok(());
                }
                match tokio::time::timeout(Duration::from_millis(100), calls.next()).await {
                    Ok(next) => next,
                    Err(_) => continue,
                }
            }
        };
        let Some(call) = next else {
            return Err(Error::new(
                ErrorKind::Disconnected,
                format!("{what}: the connection to the server is closed"),
            ));
        };
        let Some(reply_to) = call.reply else {
            continue; // a publish, not a request: nobody to answer
        };
        let payload = answer(conn, &call.payload, &mut handler)?;
        conn.client
            .publish(reply_to, payload.into())
            .await
            .map_err(|e| Error::new(ErrorKind::Io, format!("{what}: {e}")))?;
    }
}

/// The calling side of a service on a subject.
pub struct Client<Req, Resp> {
    conn: Conn,
    timeout: Duration,
    _marker: PhantomData<fn(Req) -> Resp>,
}

debug_by_addr!("nats::Client", Client<Req, Resp>);

impl<Req: Serialize, Resp: DeserializeOwned> Client<Req, Resp> {
    /// A client of the service at `addr`; [`call`](Client::call) waits 30
    /// s for an answer unless [`timeout`](Client::timeout) says otherwise.
    pub fn connect(addr: &str, net: &Net) -> Result<Client<Req, Resp>> {
        Ok(Client {
            conn: Conn::open(addr, net)?,
            timeout: Duration::from_secs(30),
            _marker: PhantomData,
        })
    }

    /// The deadline of [`call`](Client::call).
    pub fn timeout(mut self, timeout: Duration) -> Client<Req, Resp> {
        self.timeout = timeout.min(crate::channel::gate::LONGEST);
        self
    }

    /// Calls the service and waits for its reply, at most the client's
    /// timeout. A server that dies mid-call, or none serving the subject,
    /// is an error by then ([`ErrorKind::Timeout`], [`ErrorKind::Disconnected`]
    /// at once when no server is subscribed); the handler's error is
    /// [`ErrorKind::Remote`].
    pub fn call(&self, req: Req) -> Result<Resp> {
        self.call_timeout(req, self.timeout)
    }

    /// [`call`](Client::call) with its own deadline.
    pub fn call_timeout(&self, req: Req, timeout: Duration) -> Result<Resp> {
        let payload = self.conn.encode(&req)?;
        let answer = self
            .conn
            .drive(
                deadline_after(timeout.saturating_add(Duration::from_secs(1))),
                call(&self.conn, payload, timeout),
            )
            .unwrap_or_else(|| Err(timed_out(&self.conn, timeout)))?;
        reply(&self.conn, &answer)
    }
}

fn timed_out(conn: &Conn, timeout: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("calling {}: no reply within {timeout:?}", conn.addr),
    )
}

/// One call: a NATS request with `payload` under `timeout`; the reply's
/// payload.
pub(crate) async fn call(conn: &Conn, payload: Vec<u8>, timeout: Duration) -> Result<bytes::Bytes> {
    use async_nats::RequestErrorKind as K;
    let addr = &conn.addr;
    let request = async_nats::client::Request::new()
        .payload(payload.into())
        .timeout(Some(timeout));
    conn.client
        .send_request(addr.subject.clone(), request)
        .await
        .map(|m| m.payload)
        .map_err(|e| match e.kind() {
            K::TimedOut => timed_out(conn, timeout),
            K::NoResponders => Error::new(
                ErrorKind::Disconnected,
                format!("calling {addr}: no server serves this subject"),
            ),
            _ => Error::new(ErrorKind::Io, format!("calling {addr}: {e}")),
        })
}

/// A reply's payload: the response, or the handler's error as
/// [`ErrorKind::Remote`].
pub(crate) fn reply<Resp: DeserializeOwned>(conn: &Conn, payload: &[u8]) -> Result<Resp> {
    let body: std::result::Result<Resp, String> = conn.decode(payload)?;
    body.map_err(|m| Error::new(ErrorKind::Remote, m))
}

/// The reply to one call's request payload, from `handler`.
pub(crate) fn answer<Req, Resp, E>(
    conn: &Conn,
    request: &[u8],
    handler: &mut impl FnMut(Req) -> std::result::Result<Resp, E>,
) -> Result<Vec<u8>>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    E: std::fmt::Display,
{
    let body: std::result::Result<Resp, String> = match conn.decode::<Req>(request) {
        Ok(req) => handler(req).map_err(|e| e.to_string()),
        Err(e) => Err(format!("a request that does not decode: {e}")),
    };
    match conn.encode(&body) {
        Ok(p) => Ok(p),
        Err(e) => conn.encode(&Err::<Resp, String>(format!(
            "a reply that cannot be sent: {e}"
        ))),
    }
}

/// Subscribes to the service's subject in its queue group, the
/// subscription in place (seen by the server) when this returns.
pub(crate) async fn subscribe(conn: &Conn) -> Result<async_nats::Subscriber> {
    let what = format!("serving {}", conn.addr);
    let calls = conn
        .client
        .queue_subscribe(conn.addr.subject.clone(), QUEUE.into())
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("{what}: {e}")))?;
    conn.client
        .flush()
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("{what}: {e}")))?;
    Ok(calls)
}
