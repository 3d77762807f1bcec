//! A durable pool on JetStream: tasks published once each, pulled by
//! workers anywhere with explicit acknowledgement, answers kept until the
//! pool has them all. The pool process can die and be run again with
//! `resume`: what was answered is not recomputed, what was queued is not
//! published twice, and every input is answered once. The layout is in
//! `docs/wire-format.md` §14.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

use super::channel::js_error;
use super::connect::Conn;
use crate::Net;
use crate::channel::gate::deadline_after;
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
                .map_err(|e| js_error(&what, e))?;
            let answers = js
                .get_or_create_stream(answers_cfg)
                .await
                .map_err(|e| js_error(&what, e))?;
            tasks
                .get_or_create_consumer::<consumer::pull::Config>(WORKERS, workers)
                .await
                .map_err(|e| js_error(&what, e))?;
            // Every answer there is, from the first: on a resumed run, the
            // ones given before come again.
            let ordered = answers
                .create_consumer(consumer::pull::OrderedConfig {
                    deliver_policy: consumer::DeliverPolicy::All,
                    ..Default::default()
                })
                .await
                .map_err(|e| js_error(&what, e))?
                .messages()
                .await
                .map_err(|e| js_error(&what, e))?;
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
                        .map_err(|e| js_error(&what, e))?;
                    Ok(Some(
                        had.headers
                            .get(INPUT_HASH)
                            .map(|v| v.as_str().to_string())
                            .unwrap_or_default(),
                    ))
                }
                Err(e) => Err(js_error(&what, e)),
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
            let got = self.conn.drive(deadline_after(wait), answers.next());
            let m = match got {
                None => return Ok(None),
                Some(None) => {
                    return Err(Error::new(
                        ErrorKind::Disconnected,
                        format!("{what}: the answers stream ended"),
                    ));
                }
                Some(Some(m)) => m.map_err(|e| js_error(&what, e))?,
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
                    Err(e) => return Err(js_error(&what, e)),
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

mod worker;
pub use worker::{WorkOptions, work, work_with};
