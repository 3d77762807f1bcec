//! A durable pool on JetStream: tasks published once each, pulled by
//! workers anywhere with explicit acknowledgement, answers kept until the
//! pool has them all. The pool process can die and be run again with
//! `resume`: what was answered is not recomputed, what was queued is not
//! published twice, and every input is answered once. The layout is in
//! `docs/wire-format.md` §14.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

use super::connect::Conn;
use crate::Net;
use crate::error::{Error, ErrorKind, Result};

/// The header that carries a task's input fingerprint (FNV-1a, 64 bits,
/// hexadecimal): an answer carries its task's.
pub const INPUT_HASH: &str = "Procwire-Input-Hash";
/// The header that carries a task's time limit, in milliseconds.
pub const TIMEOUT_MS: &str = "Procwire-Timeout-Ms";
/// The header that carries how many deliveries a task may have.
pub const MAX_DELIVER: &str = "Procwire-Max-Deliver";
/// The header of a failed answer: the reason (its payload is empty).
pub const FAILED: &str = "Procwire-Failed";
/// The durable consumer the workers of a pool share.
pub const WORKERS: &str = "workers";

/// The fingerprint of a task's input.
fn fnv64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The names of a pool's streams and subjects, from its `NAME` (the
/// subject of its address).
struct Names {
    tasks_stream: String,
    answers_stream: String,
    name: String,
}

impl Names {
    fn of(name: &str) -> Names {
        let base = super::channel::stream_name(name);
        Names {
            tasks_stream: format!("{base}_TASKS"),
            answers_stream: format!("{base}_ANSWERS"),
            name: name.to_string(),
        }
    }

    fn task(&self, n: u64) -> String {
        format!("{}.task.{n}", self.name)
    }

    fn answer(&self, n: u64) -> String {
        format!("{}.answer.{n}", self.name)
    }
}

/// The task number at the end of a subject.
fn number(subject: &str) -> Option<u64> {
    subject.rsplit('.').next()?.parse().ok()
}

fn io(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("{what}: {e}"))
}

/// Whether a publish was refused because its subject already holds its one
/// message.
fn already_there(e: &impl std::fmt::Display) -> bool {
    e.to_string()
        .contains("maximum messages per subject exceeded")
}

/// How a pool runs.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// Continue the run under this name (else a name in use is refused).
    pub resume: bool,
    /// How long a task may go without a sign from the worker holding it
    /// before it goes to another (workers extend it while they work).
    pub ack_wait: Duration,
    /// Deliveries a task may have; past them it is answered as failed.
    pub max_deliver: u32,
    /// The time limit of one task, enforced by the worker running it.
    pub task_timeout: Option<Duration>,
    /// Copies the server keeps of each stream (a cluster's nodes).
    pub replicas: usize,
}

impl Default for PoolOptions {
    fn default() -> PoolOptions {
        PoolOptions {
            resume: false,
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            task_timeout: None,
            replicas: 1,
        }
    }
}

/// One task's answer: its number and what the worker said.
#[derive(Debug)]
pub struct Answer {
    /// The task's number, as given to [`DurablePool::submit`].
    pub task: u64,
    /// The answer, or why the task failed.
    pub result: std::result::Result<Vec<u8>, String>,
}

/// The pool side. See the [module docs](self).
pub struct DurablePool {
    conn: Conn,
    js: jetstream::Context,
    names: Names,
    tasks: stream::Stream,
    /// The answers as they come, and the tasks they answered.
    answers: std::sync::Mutex<(consumer::pull::Ordered, HashSet<u64>)>,
    opts: PoolOptions,
}

impl std::fmt::Debug for DurablePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("nats::DurablePool")
            .field("name", &self.names.name)
            .finish_non_exhaustive()
    }
}

/// A stream that keeps one message per subject and refuses a second.
fn once_per_subject(name: &str, subjects: String, replicas: usize) -> stream::Config {
    stream::Config {
        name: name.into(),
        subjects: vec![subjects],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        max_messages_per_subject: 1,
        discard: stream::DiscardPolicy::New,
        discard_new_per_subject: true,
        num_replicas: replicas.max(1),
        ..Default::default()
    }
}

impl DurablePool {
    /// Opens the pool at `addr` (`nats://HOST:PORT/NAME`): its streams,
    /// made unless resuming; a name in use without `resume`, or absent
    /// with it, is refused.
    pub fn open(addr: &str, net: &Net, opts: &PoolOptions) -> Result<DurablePool> {
        let conn = Conn::open(addr, net)?;
        let names = Names::of(&conn.addr.subject);
        let js = conn.jetstream();
        let deadline = Some(Instant::now() + net.connect_timeout * 2);
        let what = format!("opening the pool at {}", conn.addr);
        let timed_out = || Error::new(ErrorKind::Timeout, format!("{what}: timed out"));
        let exists = conn
            .drive(deadline, js.get_stream(&names.tasks_stream))
            .ok_or_else(timed_out)?
            .is_ok();
        if exists != opts.resume {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                match exists {
                    true => format!(
                        "{what}: a run under `{}` is there, unfinished: resume it (--resume) \
                         or choose another name",
                        names.name
                    ),
                    false => format!("{what}: no run under `{}` to resume", names.name),
                },
            ));
        }
        let tasks_cfg = once_per_subject(
            &names.tasks_stream,
            format!("{}.task.*", names.name),
            opts.replicas,
        );
        let answers_cfg = once_per_subject(
            &names.answers_stream,
            format!("{}.answer.*", names.name),
            opts.replicas,
        );
        let workers = consumer::pull::Config {
            durable_name: Some(WORKERS.into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: opts.ack_wait,
            // Unlimited here: the workers count deliveries against the
            // task's own limit, and answer it failed past it.
            max_deliver: -1,
            ..Default::default()
        };
        let made = async {
            let tasks = js
                .get_or_create_stream(tasks_cfg)
                .await
                .map_err(|e| io(&what, e))?;
            let answers = js
                .get_or_create_stream(answers_cfg)
                .await
                .map_err(|e| io(&what, e))?;
            tasks
                .get_or_create_consumer::<consumer::pull::Config>(WORKERS, workers)
                .await
                .map_err(|e| io(&what, e))?;
            // Every answer there is, from the first: on a resumed run, the
            // ones given before come again.
            let ordered = answers
                .create_consumer(consumer::pull::OrderedConfig {
                    deliver_policy: consumer::DeliverPolicy::All,
                    ..Default::default()
                })
                .await
                .map_err(|e| io(&what, e))?
                .messages()
                .await
                .map_err(|e| io(&what, e))?;
            Ok::<_, Error>((tasks, ordered))
        };
        let (tasks, answers) = conn.drive(deadline, made).ok_or_else(timed_out)??;
        Ok(DurablePool {
            conn,
            js,
            names,
            tasks,
            answers: std::sync::Mutex::new((answers, HashSet::new())),
            opts: opts.clone(),
        })
    }

    /// Publishes task `n` (from 1) with `input`, once: if the run already
    /// has task `n` (resumed), nothing is published, and an input other
    /// than the one it had is refused.
    pub fn submit(&self, n: u64, input: &[u8]) -> Result<()> {
        self.conn.check_payload(input.len() + 256)?;
        let hash = fnv64(input);
        let mut headers = HeaderMap::new();
        headers.insert(INPUT_HASH, hash.as_str());
        headers.insert(MAX_DELIVER, self.opts.max_deliver.to_string().as_str());
        if let Some(t) = self.opts.task_timeout {
            headers.insert(TIMEOUT_MS, t.as_millis().to_string().as_str());
        }
        let subject = self.names.task(n);
        let what = format!("publishing task {n} of `{}`", self.names.name);
        let js = &self.js;
        let tasks = &self.tasks;
        let published = || async {
            let stored = match js
                .publish_with_headers(subject.clone(), headers.clone(), input.to_vec().into())
                .await
            {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match stored {
                Ok(_) => Ok(None),
                Err(e) if already_there(&e) => {
                    let had = tasks
                        .get_last_raw_message_by_subject(&subject)
                        .await
                        .map_err(|e| io(&what, e))?;
                    Ok(Some(
                        had.headers
                            .get(INPUT_HASH)
                            .map(|v| v.as_str().to_string())
                            .unwrap_or_default(),
                    ))
                }
                Err(e) => Err(io(&what, e)),
            }
        };
        // A cluster electing a new leader (a node lost) answers nothing
        // for a while: publish again, which the one-message-per-subject
        // rule makes safe (a copy already stored is refused, and checked).
        let had = self.retrying(&what, published)?;
        match had {
            Some(h) if h != hash => Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "task {n} differs from the one the run under `{}` was given: a different \
                     input under the same name (choose another name)",
                    self.names.name
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The next answer that has come (each task's once), waiting at most
    /// `wait`.
    pub fn next_answer(&self, wait: Duration) -> Result<Option<Answer>> {
        let what = format!("collecting answers of `{}`", self.names.name);
        let mut answers = self
            .answers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (answers, seen) = &mut *answers;
        loop {
            let got = self.conn.drive(Some(Instant::now() + wait), answers.next());
            let m = match got {
                None => return Ok(None),
                Some(None) => {
                    return Err(Error::new(
                        ErrorKind::Disconnected,
                        format!("{what}: the answers stream ended"),
                    ));
                }
                Some(Some(m)) => m.map_err(|e| io(&what, e))?,
            };
            let Some(task) = number(m.subject.as_str()) else {
                continue;
            };
            if !seen.insert(task) {
                continue;
            }
            let failed = m
                .headers
                .as_ref()
                .and_then(|h| h.get(FAILED))
                .map(|v| v.as_str().to_string());
            let result = match failed {
                Some(why) => Err(why),
                None => Ok(m.payload.to_vec()),
            };
            return Ok(Some(Answer { task, result }));
        }
    }

    /// Ends the run: its streams are deleted, so that the name can serve
    /// another run, and its workers stop. Call it once every answer is in.
    pub fn finish(&self) -> Result<()> {
        let what = format!("ending the run `{}`", self.names.name);
        let js = &self.js;
        let names = &self.names;
        let gone = || async {
            for stream in [&names.tasks_stream, &names.answers_stream] {
                match js.delete_stream(stream).await {
                    Ok(_) => {}
                    // Gone already (an earlier attempt's answer was lost).
                    Err(e) if e.to_string().contains("not found") => {}
                    Err(e) => return Err(io(&what, e)),
                }
            }
            Ok::<_, Error>(())
        };
        self.retrying(&what, gone)
    }

    /// Runs the step `attempt` makes until it succeeds, fails for a reason
    /// other than the server (an `InvalidInput`), or a minute has passed:
    /// a cluster that lost a node answers nothing while it elects new
    /// leaders.
    fn retrying<T, F: std::future::Future<Output = Result<T>>>(
        &self,
        what: &str,
        mut attempt: impl FnMut() -> F,
    ) -> Result<T> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.conn.drive(Some(deadline), attempt()) {
                Some(Ok(v)) => return Ok(v),
                Some(Err(e))
                    if e.kind() != ErrorKind::InvalidInput && Instant::now() < deadline =>
                {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(Error::new(ErrorKind::Timeout, format!("{what}: timed out")));
                }
            }
        }
    }
}

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
    let give_up = Instant::now() + opts.wait_for_pool;
    let workers: consumer::Consumer<consumer::pull::Config> = loop {
        let got = conn.drive(Some(Instant::now() + Duration::from_secs(10)), async {
            js.get_stream(&names.tasks_stream)
                .await
                .map_err(|e| io(&what, e))?
                .get_consumer(WORKERS)
                .await
                .map_err(|e| io(&what, e))
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
        let pulled = conn.drive(Some(Instant::now() + Duration::from_secs(15)), async {
            let mut batch = workers
                .batch()
                .max_messages(1)
                .expires(Duration::from_secs(5))
                .messages()
                .await
                .map_err(|e| io(&what, e))?;
            match batch.next().await {
                None => Ok(None),
                Some(m) => m.map(Some).map_err(|e| io(&what, e)),
            }
        });
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
            Err(e) => return Err(io(what, e)),
        }
        task.double_ack_with(jetstream::AckKind::Ack)
            .await
            .map_err(|e| io(what, e))
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
