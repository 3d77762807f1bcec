//! The kinds of worker link a [`Pool`](super::Pool) schedules over: the
//! [`Link`] and [`Worker`] traits, and the two built-in process links
//! (functions of this program, and RPC commands).
//!
//! The scheduler knows nothing of processes, sockets or protocols: it asks a
//! link for workers, sends tasks, takes answers in order, and retires a
//! worker that died or hung. The remote pool's workers (they connect from
//! anywhere) and the CLI's line and framed workers are links too.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::Message;
use crate::error::{Error, ErrorKind, Result};
use crate::process::{fn_offset, handler_at, init_fn_at};
use crate::rpc::{self, Call, ClientEnd, Reply, ServerEnd};
use crate::{Child, Command, How, Options, task};

/// A kind of worker: how a pool gets one. Implement it (with [`Worker`]) to
/// put your own kind of worker under the pool's scheduler:
/// [`Pool::with_link`](super::Pool::with_link).
///
/// # Examples
///
/// ```
/// use std::time::Instant;
/// use procwire::pool::{Link, Worker};
/// use procwire::{Error, ErrorKind, Pool};
///
/// /// Workers that are threads of this process, answering `n` with `n + 1`.
/// struct Threads;
///
/// struct Adder {
///     tx: std::sync::mpsc::Sender<u64>,
///     rx: std::sync::mpsc::Receiver<u64>,
/// }
///
/// impl Link<u64, u64> for Threads {
///     fn start(&self) -> procwire::Result<Box<dyn Worker<u64, u64>>> {
///         let (tx, tasks) = std::sync::mpsc::channel::<u64>();
///         let (answers, rx) = std::sync::mpsc::channel();
///         std::thread::spawn(move || tasks.iter().for_each(|n| answers.send(n + 1).unwrap()));
///         Ok(Box::new(Adder { tx, rx }))
///     }
/// }
///
/// impl Worker<u64, u64> for Adder {
///     fn send(&mut self, n: &u64) -> procwire::Result<()> {
///         self.tx.send(*n).map_err(|_| Error::new(ErrorKind::Disconnected, "gone"))
///     }
///     fn recv(&mut self, _deadline: Option<Instant>) -> procwire::Result<u64> {
///         self.rx.recv().map_err(|_| Error::new(ErrorKind::Disconnected, "gone"))
///     }
///     fn alive(&mut self) -> bool {
///         true
///     }
///     fn name(&self) -> String {
///         "adder".into()
///     }
///     fn killer(&self) -> Box<dyn Fn() + Send + Sync> {
///         Box::new(|| {})
///     }
///     fn retire(self: Box<Self>, _kill: bool) {}
/// }
///
/// let pool = Pool::with_link(Threads).workers(2).pipeline(8).build()?;
/// let out: Vec<u64> = pool.map(0..5).collect::<procwire::Result<_>>()?;
/// assert_eq!(out, [1, 2, 3, 4, 5]);
/// pool.shutdown()?;
/// # Ok::<(), procwire::Error>(())
/// ```
pub trait Link<Req, Resp>: Send + Sync + 'static {
    /// A new worker. A link whose workers the pool starts starts one (a
    /// failure is the error of the task that needed it); a link whose
    /// workers [`arrive`](Link::arrives) on their own waits for the next
    /// one, until [`close`](Link::close).
    fn start(&self) -> Result<Box<dyn Worker<Req, Resp>>>;

    /// Whether workers arrive on their own (they connect), rather than
    /// being started by the pool, which then uses every worker that
    /// arrives instead of a fixed number (default `false`).
    fn arrives(&self) -> bool {
        false
    }

    /// The pool is finished: a waiting [`start`](Link::start) returns an
    /// error, and no worker arrives any more.
    fn close(&self) {}

    /// Answers this link dropped because they came from a worker that did
    /// not hold the task (late answers of a worker given up as lost).
    fn stray_answers(&self) -> u64 {
        0
    }
}

/// One worker: tasks go in with [`send`](Worker::send), answers come back
/// in the same order from [`recv`](Worker::recv).
///
/// # Examples
///
/// ```
/// // See `Link` for a whole kind of worker; the scheduler calls, per worker:
/// // `send` (one or more tasks), `recv` (their answers, in order), `alive`
/// // (before giving an idle worker a task), and `retire` at the end.
/// fn takes_a_worker(_: &mut dyn procwire::pool::Worker<u64, u64>) {}
/// ```
pub trait Worker<Req, Resp>: Send {
    /// Sends one task. An error of kind [`ErrorKind::Encode`] or
    /// [`ErrorKind::FrameTooLarge`] fails that task only (nothing was
    /// sent); any other means the worker is lost.
    fn send(&mut self, req: &Req) -> Result<()>;

    /// The answer to the oldest task sent and not yet answered, waiting
    /// until `deadline`. Errors: [`ErrorKind::Remote`], the task failed in
    /// the worker (which is fine); [`ErrorKind::Timeout`], no answer by the
    /// deadline; [`ErrorKind::Decode`], an answer that makes no sense (the
    /// task fails, the worker is replaced); anything else, the worker is
    /// lost (its exit status in the error where known).
    fn recv(&mut self, deadline: Option<Instant>) -> Result<Resp>;

    /// Whether an idle worker is still there to take a task.
    fn alive(&mut self) -> bool;

    /// How messages name it: `worker 1234`, `worker 10.0.0.5:40312`.
    fn name(&self) -> String;

    /// Its process id, if it is a process of this machine.
    fn pid(&self) -> Option<u32> {
        None
    }

    /// Ends it at once, from another thread: the pool's abort.
    fn killer(&self) -> Box<dyn Fn() + Send + Sync>;

    /// Ends it: tells it to finish (or kills it, when `kill`) and waits
    /// for it, briefly. Nothing of it remains: no zombie, no descriptor.
    fn retire(self: Box<Self>, kill: bool);
}

/// How tasks reach a worker process and its answers come back: the part
/// of a [`Worker`] that differs between kinds of child process (RPC over
/// `PROCWIRE_FD`, lines on stdin and stdout, frames). [`ChildWorker`] adds
/// the process.
pub trait Ends<Req, Resp>: Send {
    /// Sends one task (see [`Worker::send`]).
    fn send(&mut self, req: &Req) -> Result<()>;

    /// The answer to the oldest task sent (see [`Worker::recv`]). An end
    /// of stream need not say how the process ended: [`ChildWorker`] adds
    /// its exit status.
    fn recv(&mut self, deadline: Option<Instant>) -> Result<Resp>;
}

/// A worker that is a child process of this one, reached through `E`: it
/// is alive while the process runs, killed through a pidfd on abort, and
/// retired by closing `E` (its input ends), then waiting a second before a
/// kill. Nothing remains: no zombie, no descriptor.
///
/// # Examples
///
/// ```
/// use std::time::Instant;
/// use procwire::pool::{ChildWorker, Ends, Worker};
/// use procwire::{ByteBuf, Duplex};
///
/// /// Raw frames to a child and back.
/// struct Frames(Duplex<ByteBuf, ByteBuf>);
///
/// impl Ends<ByteBuf, ByteBuf> for Frames {
///     fn send(&mut self, req: &ByteBuf) -> procwire::Result<()> {
///         Ok(self.0.send_ref(req)?)
///     }
///     fn recv(&mut self, _: Option<Instant>) -> procwire::Result<ByteBuf> {
///         Ok(self.0.recv()?)
///     }
/// }
///
/// let mut cmd = procwire::Command::new("true");
/// let ch = cmd.channel_with(&procwire::Options::new().codec(procwire::CodecKind::Raw))?;
/// let mut w = ChildWorker::new(cmd.spawn()?, Frames(ch));
/// // `true` exits at once: the answer never comes, and the error says how it ended.
/// let _ = w.send(&ByteBuf::from(b"task".to_vec()));
/// let e = w.recv(None).unwrap_err();
/// assert_eq!(e.exit_status().and_then(|s| s.code()), Some(0), "{e}");
/// Box::new(w).retire(false);
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Debug)]
pub struct ChildWorker<E> {
    // Dropped first: the child's input ends before it is waited for.
    ends: E,
    child: Child,
}

impl<E> ChildWorker<E> {
    /// The worker `child`, reached through `ends`.
    pub fn new(child: Child, ends: E) -> ChildWorker<E> {
        ChildWorker { ends, child }
    }
}

impl<Req, Resp, E: Ends<Req, Resp>> Worker<Req, Resp> for ChildWorker<E> {
    fn send(&mut self, req: &Req) -> Result<()> {
        self.ends.send(req)
    }

    fn recv(&mut self, deadline: Option<Instant>) -> Result<Resp> {
        self.ends.recv(deadline).map_err(|e| {
            let lost = !matches!(
                e.kind(),
                ErrorKind::Remote | ErrorKind::Timeout | ErrorKind::Decode
            );
            if !lost || e.exit_status().is_some() {
                return e;
            }
            // Its channel ended: it is exiting, most likely. Say how.
            match self.child.wait_timeout(std::time::Duration::from_secs(1)) {
                Ok(Some(status)) => e.with_exit_status(status),
                _ => e,
            }
        })
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn name(&self) -> String {
        format!("worker {}", self.child.id())
    }

    fn pid(&self) -> Option<u32> {
        Some(self.child.id())
    }

    fn killer(&self) -> Box<dyn Fn() + Send + Sync> {
        let k = self.child.killer();
        Box::new(move || {
            let _ = k.kill();
        })
    }

    fn retire(self: Box<Self>, kill: bool) {
        let ChildWorker { ends, mut child } = *self;
        drop(ends); // its input ends: it finishes
        if kill {
            let _ = child.kill();
        }
        if let Ok(None) = child.wait_timeout(std::time::Duration::from_secs(1)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// RPC calls over a child's channel, answered in order: the ends of both
/// built-in links.
pub(crate) struct Rpc<Req, Resp> {
    end: ClientEnd<Req, Resp>,
    next: u64,
    sent: std::collections::VecDeque<u64>,
}

impl<Req, Resp> Rpc<Req, Resp> {
    pub(crate) fn worker(child: Child, end: ClientEnd<Req, Resp>) -> ChildWorker<Rpc<Req, Resp>> {
        ChildWorker::new(
            child,
            Rpc {
                end,
                next: 0,
                sent: std::collections::VecDeque::new(),
            },
        )
    }
}

impl<Req, Resp> Ends<Req, Resp> for Rpc<Req, Resp>
where
    Req: super::Message + Clone,
    Resp: super::Message,
{
    fn send(&mut self, req: &Req) -> Result<()> {
        let id = self.next;
        self.end
            .send(Call {
                id,
                body: req.clone(),
            })
            .map_err(|e| e.into_error())?;
        self.next += 1;
        self.sent.push_back(id);
        Ok(())
    }

    fn recv(&mut self, deadline: Option<Instant>) -> Result<Resp> {
        let reply: Reply<Resp> = self
            .end
            .receiver()
            .recv_wait(crate::channel::Wait::until(deadline))?;
        if self.sent.front() != Some(&reply.id) {
            return Err(Error::new(
                ErrorKind::Decode,
                format!(
                    "the worker answered call {} when call {:?} was due",
                    reply.id,
                    self.sent.front()
                ),
            ));
        }
        self.sent.pop_front();
        reply.body.map_err(|why| Error::new(ErrorKind::Remote, why))
    }
}

pub(super) type Factory = Arc<dyn Fn() -> Command + Send + Sync>;

/// Function workers: this program, re-entered at `worker_main`.
pub(super) struct FnLink<Req, Resp> {
    pub(super) handler: fn(Req) -> Resp,
    pub(super) init: Option<fn()>,
    pub(super) how: How,
    pub(super) options: Options,
}

/// The arguments of a function worker.
#[derive(Serialize, Deserialize)]
struct WorkerArg {
    handler: isize,
    init: Option<isize>,
}

/// A function worker's life: initialize, then serve calls until the pool
/// closes the channel.
fn worker_main<Req: Message, Resp: Message>(arg: WorkerArg, end: ServerEnd<Req, Resp>) {
    if let Some(init) = arg.init {
        init_fn_at(init)();
    }
    let handler = handler_at::<Req, Resp>(arg.handler);
    let _ = rpc::serve(end, |req| Ok::<_, String>(handler(req)));
}

impl<Req: Message + Clone, Resp: Message> Link<Req, Resp> for FnLink<Req, Resp> {
    fn start(&self) -> Result<Box<dyn Worker<Req, Resp>>> {
        let arg = WorkerArg {
            handler: fn_offset(self.handler as usize),
            init: self.init.map(|f| fn_offset(f as usize)),
        };
        let (child, end) = task(worker_main::<Req, Resp>, arg)
            .via(self.how)
            .options(self.options.clone())
            .spawn()?;
        Ok(Box::new(Rpc::worker(child, end)))
    }
}

/// Programs speaking RPC over `PROCWIRE_FD`.
pub(super) struct CmdLink {
    pub(super) make: Factory,
    pub(super) options: Options,
}

impl<Req: Message + Clone, Resp: Message> Link<Req, Resp> for CmdLink {
    fn start(&self) -> Result<Box<dyn Worker<Req, Resp>>> {
        let mut cmd = (self.make)();
        let end = cmd.channel_with(&self.options)?;
        Ok(Box::new(Rpc::worker(cmd.spawn()?, end)))
    }
}
