//! RPC services on a subject: NATS request/reply, the servers of a subject
//! in one queue group (so the same service started on N machines shares
//! the calls), each call under the caller's deadline.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::connect::Conn;
use crate::Net;
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
pub fn serve<Req, Resp, E>(
    addr: &str,
    net: &Net,
    mut handler: impl FnMut(Req) -> std::result::Result<Resp, E>,
    mut stop: impl FnMut() -> bool,
) -> Result<()>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    E: std::fmt::Display,
{
    let conn = Conn::open(addr, net)?;
    let what = format!("serving {}", conn.addr);
    let subject = conn.addr.subject.clone();
    let mut calls = conn
        .drive(
            Some(Instant::now() + net.connect_timeout),
            conn.client.queue_subscribe(subject, QUEUE.into()),
        )
        .ok_or_else(|| Error::new(ErrorKind::Timeout, format!("{what}: subscribing timed out")))?
        .map_err(|e| Error::new(ErrorKind::Io, format!("{what}: {e}")))?;
    // The subscription is in place once the server has seen it.
    conn.drive(
        Some(Instant::now() + net.connect_timeout),
        conn.client.flush(),
    )
    .ok_or_else(|| {
        Error::new(
            ErrorKind::Timeout,
            format!("{what}: the server did not answer"),
        )
    })?
    .map_err(|e| Error::new(ErrorKind::Io, format!("{what}: {e}")))?;
    loop {
        if stop() {
            return Ok(());
        }
        let tick = Instant::now() + Duration::from_millis(100);
        let Some(next) = conn.drive(Some(tick), calls.next()) else {
            continue;
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
        let body: std::result::Result<Resp, String> = match conn.decode::<Req>(&call.payload) {
            Ok(req) => handler(req).map_err(|e| e.to_string()),
            Err(e) => Err(format!("a request that does not decode: {e}")),
        };
        let payload = match conn.encode(&body) {
            Ok(p) => p,
            Err(e) => conn.encode(&Err::<Resp, String>(format!(
                "a reply that cannot be sent: {e}"
            )))?,
        };
        conn.drive(
            Some(Instant::now() + net.connect_timeout),
            conn.client.publish(reply_to, payload.into()),
        )
        .ok_or_else(|| Error::new(ErrorKind::Timeout, format!("{what}: replying timed out")))?
        .map_err(|e| Error::new(ErrorKind::Io, format!("{what}: {e}")))?;
    }
}

/// The calling side of a service on a subject.
pub struct Client<Req, Resp> {
    conn: Conn,
    timeout: Duration,
    _marker: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> std::fmt::Debug for Client<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("nats::Client")
            .field("addr", &self.conn.addr)
            .finish_non_exhaustive()
    }
}

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
        self.timeout = timeout;
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
        use async_nats::RequestErrorKind as K;
        let payload = self.conn.encode(&req)?;
        let addr = &self.conn.addr;
        let request = async_nats::client::Request::new()
            .payload(payload.into())
            .timeout(Some(timeout));
        let answer = self
            .conn
            .drive(
                Some(Instant::now() + timeout + Duration::from_secs(1)),
                self.conn.client.send_request(addr.subject.clone(), request),
            )
            .unwrap_or_else(|| Err(K::TimedOut.into()))
            .map_err(|e| match e.kind() {
                K::TimedOut => Error::new(
                    ErrorKind::Timeout,
                    format!("calling {addr}: no reply within {timeout:?}"),
                ),
                K::NoResponders => Error::new(
                    ErrorKind::Disconnected,
                    format!("calling {addr}: no server serves this subject"),
                ),
                _ => Error::new(ErrorKind::Io, format!("calling {addr}: {e}")),
            })?;
        let body: std::result::Result<Resp, String> = self.conn.decode(&answer.payload)?;
        body.map_err(|m| Error::new(ErrorKind::Remote, m))
    }
}
