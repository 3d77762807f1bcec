//! The worker side of the durable pool: pull a task, extend its
//! acknowledgement while the handler works, have the answer stored, then
//! acknowledge the task (`docs/wire-format.md` §14).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer};

use super::{FAILED, INPUT_HASH, MAX_DELIVER, Names, TIMEOUT_MS, WORKERS, already_there, number};
use crate::Net;
use crate::error::{Error, ErrorKind, Result};
use crate::nats::channel::{fetch_one, js_error};
use crate::nats::connect::Conn;

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkOptions {
    /// How long to wait for the pool's streams to appear, and to keep
    /// trying after the server is lost.
    pub wait_for_pool: Duration,
}

impl Default for WorkOptions {
    fn default() -> WorkOptions {
        WorkOptions {
            wait_for_pool: Duration::from_secs(30),
        }
    }
}

/// Works for the pool at `addr` until the pool ends its run (its streams
/// go): each task's input goes to `handler` with the task's time limit;
/// its `Ok` is the answer, its `Err` the reason it failed. While the
/// handler works the task's acknowledgement deadline is extended; the
/// answer is published and confirmed before the task is acknowledged. A
/// task delivered more often than its limit is answered as failed without
/// being run.
pub fn work(
    addr: &str,
    net: &Net,
    opts: &WorkOptions,
    mut handler: impl FnMut(Vec<u8>, Option<Duration>) -> std::result::Result<Vec<u8>, String>,
) -> Result<()> {
    let conn = Conn::open(addr, net)?;
    let names = Names::of(&conn.addr.subject);
    let js = conn.jetstream();
    let what = format!("working for {}", conn.addr);
    // The pool makes the streams: wait for them.
    let give_up = Instant::now() + opts.wait_for_pool.min(crate::channel::gate::LONGEST);
    let workers: consumer::Consumer<consumer::pull::Config> = loop {
        let got = conn.drive(Some(Instant::now() + Duration::from_secs(10)), async {
            js.get_stream(&names.tasks_stream)
                .await
                .map_err(|e| js_error(&what, e))?
                .get_consumer(WORKERS)
                .await
                .map_err(|e| js_error(&what, e))
        });
        match got {
            Some(Ok(c)) => break c,
            _ if Instant::now() < give_up => std::thread::sleep(Duration::from_millis(200)),
            Some(Err(e)) => return Err(e.because("no pool runs under this name")),
            None => return Err(Error::new(ErrorKind::Timeout, format!("{what}: no answer"))),
        }
    };
    let ack_wait = workers.cached_info().config.ack_wait;
    let rt_handle = conn.handle();
    // Since when the server has failed us (it may come back, or another
    // node of its cluster answer): past `wait_for_pool`, give up.
    let mut outage = Outage {
        since: None,
        limit: opts.wait_for_pool,
    };
    loop {
        let pulled = conn.drive(
            Some(Instant::now() + Duration::from_secs(15)),
            fetch_one(workers.clone(), Duration::from_secs(5), what.clone()),
        );
        let task = match pulled {
            Some(Ok(Some(m))) => m,
            Some(Ok(None)) => {
                outage.since = None;
                continue;
            }
            None => {
                outage.fail(Error::new(ErrorKind::Timeout, format!("{what}: no answer")))?;
                continue;
            }
            Some(Err(e)) => {
                // The run ended (its streams are gone): done.
                let gone = conn.drive(
                    Some(Instant::now() + Duration::from_secs(10)),
                    js.get_stream(&names.tasks_stream),
                );
                if let Some(Err(g)) = &gone
                    && matches!(
                        g.kind(),
                        jetstream::context::GetStreamErrorKind::JetStream(j)
                            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                    )
                {
                    return Ok(());
                }
                outage.fail(e)?;
                continue;
            }
        };
        outage.since = None;
        let Some(n) = number(task.subject.as_str()) else {
            let _ = conn.drive(None, task.ack());
            continue;
        };
        let header = |k: &str| {
            task.headers
                .as_ref()
                .and_then(|h| h.get(k))
                .map(|v| v.as_str().to_string())
        };
        let hash = header(INPUT_HASH).unwrap_or_default();
        let limit = header(MAX_DELIVER).and_then(|v| v.parse::<i64>().ok());
        let timeout = header(TIMEOUT_MS)
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis);
        let delivered = task.info().map(|i| i.delivered).unwrap_or(1);
        let result = match limit {
            Some(max) if delivered > max => Err(format!(
                "delivered {delivered} times without an answer (each worker that held it \
                 died, froze or lost the server): given up after {max}"
            )),
            _ => {
                // Extend the deadline while the handler works.
                let task = Arc::new(task);
                let ticking = {
                    let task = Arc::clone(&task);
                    rt_handle.spawn(async move {
                        loop {
                            tokio::time::sleep(ack_wait / 3).await;
                            let _ = task.ack_with(jetstream::AckKind::Progress).await;
                        }
                    })
                };
                let r = handler(task.payload.to_vec(), timeout);
                ticking.abort();
                let task = Arc::try_unwrap(task).unwrap_or_else(|t| (*t).clone());
                // Not answered: the task goes to a worker again after its
                // acknowledgement deadline.
                if let Err(e) = return_answer(&conn, &js, &names, n, &hash, r, task, &what) {
                    outage.fail(e)?;
                }
                continue;
            }
        };
        if let Err(e) = return_answer(&conn, &js, &names, n, &hash, result, task, &what) {
            outage.fail(e)?;
        }
    }
}

/// Failures of the server in a row, and how long they may go on.
struct Outage {
    since: Option<Instant>,
    limit: Duration,
}

impl Outage {
    /// `e` happened: waits a little to try again, or gives up with it.
    fn fail(&mut self, e: Error) -> Result<()> {
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() > self.limit {
            return Err(e.because("the server stayed out of reach"));
        }
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    }
}

/// Publishes task `n`'s answer (waiting for the server to store it; one
/// already there is the answer), then acknowledges the task.
#[allow(clippy::too_many_arguments)]
fn return_answer(
    conn: &Conn,
    js: &jetstream::Context,
    names: &Names,
    n: u64,
    hash: &str,
    result: std::result::Result<Vec<u8>, String>,
    task: jetstream::Message,
    what: &str,
) -> Result<()> {
    let mut headers = HeaderMap::new();
    headers.insert(INPUT_HASH, hash);
    let payload = match result {
        Ok(bytes) => bytes,
        Err(why) => {
            // A header value is one line.
            headers.insert(FAILED, why.replace(['\r', '\n'], " ").as_str());
            Vec::new()
        }
    };
    let done = async {
        let stored = match js
            .publish_with_headers(names.answer(n), headers, payload.into())
            .await
        {
            Ok(ack) => ack.await.map(drop),
            Err(e) => Err(e),
        };
        match stored {
            Ok(()) => {}
            Err(e) if already_there(&e) => {}
            Err(e) => return Err(js_error(what, e)),
        }
        task.double_ack_with(jetstream::AckKind::Ack)
            .await
            .map_err(|e| js_error(what, e))
    };
    conn.drive(Some(Instant::now() + Duration::from_secs(30)), done)
        .ok_or_else(|| Error::new(ErrorKind::Timeout, format!("{what}: answering timed out")))?
}

/// [`work`], typed: each task decoded from, and each answer encoded with,
/// `net`'s codec (the pool's must match); the handler's `Err` is the
/// task's failure.
pub fn work_with<Req, Resp>(
    addr: &str,
    net: &Net,
    opts: &WorkOptions,
    mut handler: impl FnMut(Req) -> std::result::Result<Resp, String>,
) -> Result<()>
where
    Req: serde::de::DeserializeOwned,
    Resp: serde::Serialize,
{
    let codec = net.options.codec_kind();
    work(addr, net, opts, |payload, _| {
        let req: Req = codec
            .decode(&payload)
            .map_err(|e| format!("a task that does not decode: {e}"))?;
        let resp = handler(req)?;
        let mut out = Vec::new();
        codec
            .encode(&resp, &mut out)
            .map_err(|e| format!("an answer that cannot be encoded: {e}"))?;
        Ok(out)
    })
}
