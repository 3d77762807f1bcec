//! Channels over a subject, carried on JetStream: a send returns once the
//! server has stored the message; a receive takes the next stored message
//! and acknowledges it (confirmed by the server) before handing it over,
//! so nothing is lost to an absent or slow receiver, a reconnect or a
//! receiver that dies holding an unacknowledged message (it is delivered
//! again). The steps are async functions, shared by the blocking ends
//! (driven on the caller's thread) and the awaited ones
//! (`procwire::tokio::nats`).

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::connect::{Conn, debug_by_addr};
use crate::channel::gate::deadline_after;
use crate::error::{Error, ErrorKind, RecvError, RecvTimeoutError, Result, SendError};
use crate::{Net, TryRecvError};

/// The JetStream stream that carries `subject`: `PW_`, the subject with
/// every character a stream name cannot hold made `_`, and a hash of the
/// subject itself (so that `a.b` and `a_b` never share one).
pub(crate) fn stream_name(subject: &str) -> String {
    let clean: String = subject
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // FNV-1a: stable across versions and languages, and documented.
    let mut h: u32 = 0x811c_9dc5;
    for b in subject.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    format!("PW_{clean}_{h:08x}")
}

/// The durable consumer every receiver of a channel shares.
pub(crate) const CONSUMER: &str = "procwire";

/// How long a message handed to a receiver that then vanished waits
/// before it is delivered again.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// How long a send waits for the server to store a message, by default.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// An error of the server's (or of the client talking to it), with what
/// was being done.
pub(crate) fn js_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("{what}: {e}"))
}

/// The channel's stream, made if absent: work-queue retention (a message
/// goes once acknowledged), kept on file, new messages refused (never old
/// ones dropped) should a limit set on the server be reached.
pub(crate) async fn open_stream(conn: &Conn, js: &jetstream::Context) -> Result<stream::Stream> {
    let subject = conn.addr.subject.clone();
    let config = stream::Config {
        name: stream_name(&subject),
        subjects: vec![subject],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    js.get_or_create_stream(config).await.map_err(|e| {
        js_error(
            &format!("opening the JetStream stream for {}", conn.addr),
            format!("{e} (is JetStream enabled on the server? `nats-server -js`)"),
        )
    })
}

/// The channel's durable consumer, made if absent.
pub(crate) async fn open_consumer(
    conn: &Conn,
    stream: &stream::Stream,
) -> Result<consumer::Consumer<consumer::pull::Config>> {
    let config = consumer::pull::Config {
        durable_name: Some(CONSUMER.into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        ..Default::default()
    };
    stream
        .get_or_create_consumer(CONSUMER, config)
        .await
        .map_err(|e| js_error(&format!("opening the consumer of {}", conn.addr), e))
}

/// Publishes one payload to the channel's subject and waits until the
/// server has stored it.
pub(crate) async fn publish(conn: &Conn, js: &jetstream::Context, payload: Vec<u8>) -> Result<()> {
    let what = || format!("sending to {}", conn.addr);
    let ack = js
        .publish(conn.addr.subject.clone(), payload.into())
        .await
        .map_err(|e| js_error(&what(), e))?;
    ack.await.map(drop).map_err(|e| js_error(&what(), e))
}

/// The error of a send the server did not confirm in time.
pub(crate) fn not_confirmed(conn: &Conn, timeout: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!(
            "sending to {}: the server did not confirm within {timeout:?} (it may still store it)",
            conn.addr
        ),
    )
}

/// A channel's receiving side: its consumer; the fetch under way, which
/// runs as a task of the connection's runtime so that a receive dropped
/// while it waits leaves it to the next receive (a message the server
/// handed over is never dropped with a cancelled future, which would hold
/// it back until its acknowledgement deadline and reorder the channel);
/// and the message taken whose acknowledgement was not yet confirmed.
pub(crate) struct Pull {
    consumer: consumer::Consumer<consumer::pull::Config>,
    state: tokio::sync::Mutex<PullState>,
}

type Fetched = Result<Option<jetstream::Message>>;

#[derive(Default)]
struct PullState {
    fetching: Option<tokio::task::JoinHandle<Fetched>>,
    taken: Option<jetstream::Message>,
}

/// Asks the server for one message, waiting at most `wait` for one.
pub(crate) async fn fetch_one(
    consumer: consumer::Consumer<consumer::pull::Config>,
    wait: Duration,
    what: String,
) -> Fetched {
    let mut batch = match wait.is_zero() {
        true => consumer.fetch().max_messages(1).messages().await,
        // The server needs a millisecond at least.
        false => {
            consumer
                .batch()
                .max_messages(1)
                .expires(wait.max(Duration::from_millis(1)))
                .messages()
                .await
        }
    }
    .map_err(|e| js_error(&what, e))?;
    match batch.next().await {
        None => Ok(None),
        Some(m) => m.map(Some).map_err(|e| js_error(&what, e)),
    }
}

impl Pull {
    pub(crate) fn new(consumer: consumer::Consumer<consumer::pull::Config>) -> Pull {
        Pull {
            consumer,
            state: tokio::sync::Mutex::new(PullState::default()),
        }
    }

    /// The next message's payload, waiting at most `wait` for one
    /// (`None`); acknowledged (and the acknowledgement confirmed) before
    /// it is given. Receives take turns; each step is cancel-safe.
    pub(crate) async fn next(&self, conn: &Conn, wait: Duration) -> Result<Option<bytes::Bytes>> {
        let what = || format!("receiving from {}", conn.addr);
        let mut st = self.state.lock().await;
        if st.taken.is_none() {
            let fetching = st.fetching.get_or_insert_with(|| {
                conn.handle()
                    .spawn(fetch_one(self.consumer.clone(), wait, what()))
            });
            let got = fetching.await;
            st.fetching = None;
            match got.map_err(|e| js_error(&what(), e))?? {
                Some(m) => st.taken = Some(m),
                None => return Ok(None),
            }
        }
        let m = st.taken.as_ref().expect("taken above");
        m.double_ack_with(jetstream::AckKind::Ack)
            .await
            .map_err(|e| js_error(&format!("{}: acknowledging", what()), e))?;
        Ok(st.taken.take().map(|m| m.payload.clone()))
    }
}

impl Drop for Pull {
    fn drop(&mut self) {
        if let Some(f) = self.state.get_mut().fetching.take() {
            f.abort();
        }
    }
}

/// The sending end of a channel over a NATS subject. See the [module
/// docs](crate::nats).
pub struct Sender<T> {
    conn: Conn,
    js: jetstream::Context,
    /// How long a send waits for the server to store the message.
    timeout: Duration,
    _marker: PhantomData<fn(T)>,
}

debug_by_addr!("nats::Sender", Sender<T>);

/// What a step that timed out while opening an end says.
fn opening_timed_out(conn: &Conn) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("opening {}: the server did not answer in time", conn.addr),
    )
}

/// The sending end of the channel at `addr` (`nats://HOST:PORT/SUBJECT`),
/// with `net`'s codec, limits and connect deadline.
pub fn sender<T: Serialize>(addr: &str, net: &Net) -> Result<Sender<T>> {
    let conn = Conn::open(addr, net)?;
    let js = conn.jetstream();
    conn.drive(
        Some(Instant::now() + net.connect_timeout),
        open_stream(&conn, &js),
    )
    .ok_or_else(|| opening_timed_out(&conn))??;
    Ok(Sender {
        conn,
        js,
        timeout: SEND_TIMEOUT,
        _marker: PhantomData,
    })
}

impl<T: Serialize> Sender<T> {
    /// How long a send waits for the server to store a message (10 s
    /// unless set): past it the send is an error, [`ErrorKind::Timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Sender<T> {
        self.timeout = timeout.min(crate::channel::gate::LONGEST);
        self
    }

    /// Sends `value`: returns once the server has stored it. On failure
    /// the value comes back in the error; a timeout does not say whether
    /// the server stored it (it may have, and the acknowledgement be lost).
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_ref(&value).map_err(|e| SendError::new(value, e))
    }

    /// Sends `*value` without giving it up. See [`send`](Sender::send).
    pub fn send_ref(&self, value: &T) -> Result<()> {
        let payload = self.conn.encode(value)?;
        self.conn
            .drive(
                Some(Instant::now() + self.timeout),
                publish(&self.conn, &self.js, payload),
            )
            .ok_or_else(|| not_confirmed(&self.conn, self.timeout))?
    }
}

/// The receiving end of a channel over a NATS subject. See the [module
/// docs](crate::nats).
pub struct Receiver<T> {
    conn: Conn,
    pull: Pull,
    _marker: PhantomData<fn() -> T>,
}

debug_by_addr!("nats::Receiver", Receiver<T>);

/// The receiving end of the channel at `addr`: the channel's durable
/// consumer, shared by every receiver of it (each message goes to one).
pub fn receiver<T: DeserializeOwned>(addr: &str, net: &Net) -> Result<Receiver<T>> {
    let conn = Conn::open(addr, net)?;
    let js = conn.jetstream();
    let consumer = conn
        .drive(Some(Instant::now() + net.connect_timeout), async {
            let stream = open_stream(&conn, &js).await?;
            open_consumer(&conn, &stream).await
        })
        .ok_or_else(|| opening_timed_out(&conn))??;
    Ok(Receiver {
        conn,
        pull: Pull::new(consumer),
        _marker: PhantomData,
    })
}

impl<T: DeserializeOwned> Receiver<T> {
    /// Waits for the next message (for as long as it takes: the server
    /// keeps what was sent while no receiver was there).
    pub fn recv(&self) -> Result<T, RecvError> {
        loop {
            match self.next(Duration::from_secs(5)) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => continue,
                Err(e) => return Err(RecvError::new(e)),
            }
        }
    }

    /// Waits at most `timeout` for the next message.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let Some(deadline) = deadline_after(timeout) else {
            // Past any instant: as long as it takes.
            return self
                .recv()
                .map_err(|e| RecvTimeoutError::new(e.into_error()));
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) if Instant::now() < deadline => continue,
                Ok(None) => {
                    return Err(RecvTimeoutError::new(Error::new(
                        ErrorKind::Timeout,
                        format!("no message on {} within {timeout:?}", self.conn.addr),
                    )));
                }
                Err(e) => return Err(RecvTimeoutError::new(e)),
            }
        }
    }

    /// The next message if one is stored now.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        match self.next(Duration::ZERO) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(TryRecvError::new(Error::new(
                ErrorKind::Empty,
                format!("no message on {} now", self.conn.addr),
            ))),
            Err(e) => Err(TryRecvError::new(e)),
        }
    }

    /// One message, waiting at most `wait`; a message that does not decode
    /// is acknowledged too (it would fail again) and is the error.
    fn next(&self, wait: Duration) -> Result<Option<T>> {
        // The server answers a pull by its expiry; the margin covers the
        // round trip. Dropped past it, a message taken stays for the next
        // receive.
        let limit = deadline_after(wait.saturating_add(Duration::from_secs(5)));
        let got = self
            .conn
            .drive(limit, self.pull.next(&self.conn, wait))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Disconnected,
                    format!(
                        "receiving from {}: the server stopped answering",
                        self.conn.addr
                    ),
                )
            })??;
        got.map(|payload| self.conn.decode(&payload)).transpose()
    }
}
