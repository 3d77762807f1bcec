//! Channels over a subject, carried on JetStream: a send returns once the
//! server has stored the message; a receive takes the next stored message
//! and acknowledges it (confirmed by the server) before handing it over,
//! so nothing is lost to an absent or slow receiver, a reconnect or a
//! receiver that dies holding an unacknowledged message (it is delivered
//! again).

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::connect::Conn;
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

fn js_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("{what}: {e}"))
}

/// The channel's stream, made if absent: work-queue retention (a message
/// goes once acknowledged), kept on file, new messages refused (never old
/// ones dropped) should a limit set on the server be reached.
fn open_stream(conn: &Conn, deadline: Instant) -> Result<(jetstream::Context, stream::Stream)> {
    // The context starts its acknowledgement task on the runtime.
    let js = {
        let _context = conn.enter();
        jetstream::new(conn.client.clone())
    };
    let subject = conn.addr.subject.clone();
    let config = stream::Config {
        name: stream_name(&subject),
        subjects: vec![subject.clone()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    let what = format!("opening the JetStream stream for {}", conn.addr);
    let got = conn
        .drive(Some(deadline), js.get_or_create_stream(config))
        .ok_or_else(|| Error::new(ErrorKind::Timeout, format!("{what}: timed out")))?
        .map_err(|e| {
            js_error(
                &what,
                format!("{e} (is JetStream enabled on the server? `nats-server -js`)"),
            )
        })?;
    Ok((js, got))
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

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("nats::Sender")
            .field("addr", &self.conn.addr)
            .finish_non_exhaustive()
    }
}

/// The sending end of the channel at `addr` (`nats://HOST:PORT/SUBJECT`),
/// with `net`'s codec, limits and connect deadline.
pub fn sender<T: Serialize>(addr: &str, net: &Net) -> Result<Sender<T>> {
    let conn = Conn::open(addr, net)?;
    let (js, _) = open_stream(&conn, Instant::now() + net.connect_timeout)?;
    Ok(Sender {
        conn,
        js,
        timeout: Duration::from_secs(10),
        _marker: PhantomData,
    })
}

impl<T: Serialize> Sender<T> {
    /// How long a send waits for the server to store a message (10 s
    /// unless set): past it the send is an error, [`ErrorKind::Timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Sender<T> {
        self.timeout = timeout;
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
        let what = || format!("sending to {}", self.conn.addr);
        let subject = self.conn.addr.subject.clone();
        let stored = async {
            let ack = self
                .js
                .publish(subject, payload.into())
                .await
                .map_err(|e| js_error(&what(), e))?;
            ack.await.map_err(|e| js_error(&what(), e))
        };
        self.conn
            .drive(Some(Instant::now() + self.timeout), stored)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{}: the server did not confirm within {:?} (it may still store it)",
                        what(),
                        self.timeout
                    ),
                )
            })?
            .map(drop)
    }
}

/// The receiving end of a channel over a NATS subject. See the [module
/// docs](crate::nats).
pub struct Receiver<T> {
    conn: Conn,
    consumer: consumer::Consumer<consumer::pull::Config>,
    _marker: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("nats::Receiver")
            .field("addr", &self.conn.addr)
            .finish_non_exhaustive()
    }
}

/// The receiving end of the channel at `addr`: the channel's durable
/// consumer, shared by every receiver of it (each message goes to one).
pub fn receiver<T: DeserializeOwned>(addr: &str, net: &Net) -> Result<Receiver<T>> {
    let conn = Conn::open(addr, net)?;
    let deadline = Instant::now() + net.connect_timeout;
    let (_, stream) = open_stream(&conn, deadline)?;
    let config = consumer::pull::Config {
        durable_name: Some(CONSUMER.into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        ..Default::default()
    };
    let what = format!("opening the consumer of {}", conn.addr);
    let consumer = conn
        .drive(
            Some(deadline),
            stream.get_or_create_consumer(CONSUMER, config),
        )
        .ok_or_else(|| Error::new(ErrorKind::Timeout, format!("{what}: timed out")))?
        .map_err(|e| js_error(&what, e))?;
    Ok(Receiver {
        conn,
        consumer,
        _marker: PhantomData,
    })
}

/// What one wait for a message gave.
enum Got<T> {
    Message(T),
    Nothing,
}

impl<T: DeserializeOwned> Receiver<T> {
    /// Waits for the next message (for as long as it takes: the server
    /// keeps what was sent while no receiver was there).
    pub fn recv(&self) -> Result<T, RecvError> {
        loop {
            match self.next(Duration::from_secs(5)) {
                Ok(Got::Message(v)) => return Ok(v),
                Ok(Got::Nothing) => continue,
                Err(e) => return Err(RecvError::new(e)),
            }
        }
    }

    /// Waits at most `timeout` for the next message.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Ok(Got::Message(v)) => return Ok(v),
                Ok(Got::Nothing) if Instant::now() < deadline => continue,
                Ok(Got::Nothing) => {
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
            Ok(Got::Message(v)) => Ok(v),
            Ok(Got::Nothing) => Err(TryRecvError::new(Error::new(
                ErrorKind::Empty,
                format!("no message on {} now", self.conn.addr),
            ))),
            Err(e) => Err(TryRecvError::new(e)),
        }
    }

    /// Asks the server for one message, waiting at most `wait` for one to
    /// come; acknowledges it (and waits for the server to confirm) before
    /// decoding it. A message that does not decode is acknowledged too (it
    /// would fail again) and is the error.
    fn next(&self, wait: Duration) -> Result<Got<T>> {
        let what = || format!("receiving from {}", self.conn.addr);
        let fetch = async {
            let mut batch = match wait.is_zero() {
                true => self.consumer.fetch().max_messages(1).messages().await,
                // The server needs a millisecond at least.
                false => {
                    self.consumer
                        .batch()
                        .max_messages(1)
                        .expires(wait.max(Duration::from_millis(1)))
                        .messages()
                        .await
                }
            }
            .map_err(|e| js_error(&what(), e))?;
            let Some(m) = batch.next().await else {
                return Ok(None);
            };
            let m = m.map_err(|e| js_error(&what(), e))?;
            m.double_ack_with(jetstream::AckKind::Ack)
                .await
                .map_err(|e| js_error(&format!("{}: acknowledging", what()), e))?;
            Ok::<_, Error>(Some(m.payload.clone()))
        };
        // The server answers a pull by its expiry; the margin covers the
        // round trip. Dropped past it, nothing was acknowledged.
        let limit = Instant::now() + wait + Duration::from_secs(5);
        let got = self.conn.drive(Some(limit), fetch).ok_or_else(|| {
            Error::new(
                ErrorKind::Disconnected,
                format!("{}: the server stopped answering", what()),
            )
        })??;
        match got {
            None => Ok(Got::Nothing),
            Some(payload) => Ok(Got::Message(self.conn.decode(&payload)?)),
        }
    }
}
