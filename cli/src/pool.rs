//! `procwire pool`: N persistent workers for a shell pipeline — lines in,
//! lines out, in order.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::os::fd::OwnedFd;
use std::process::{ExitCode, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use procwire::{
    ByteBuf, Child, CodecKind, Command, Duplex, Options, PipeReader, PipeWriter, Select,
};

/// What `procwire pool` was asked to do.
pub struct Config {
    pub jobs: usize,
    pub unordered: bool,
    pub framed: bool,
    pub pipeline: usize,
    pub timeout: Option<Duration>,
    pub command: Vec<String>,
}

/// One input line, numbered from 1.
struct Task {
    line: u64,
    data: Vec<u8>,
}

/// What happened to a task.
type Done = (u64, std::result::Result<Vec<u8>, String>);

/// Tasks waiting for a worker: filled by the stdin reader, drained by the
/// workers; bounded, so a fast producer waits for slow workers.
struct Queue {
    state: Mutex<(VecDeque<Task>, bool)>,
    changed: Condvar,
    capacity: usize,
}

impl Queue {
    fn push(&self, task: Task) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while st.0.len() >= self.capacity {
            st = self
                .changed
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        st.0.push_back(task);
        self.changed.notify_all();
    }

    /// Puts tasks of a dead worker back at the front, in order.
    fn give_back(&self, tasks: impl DoubleEndedIterator<Item = Task>) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for t in tasks.rev() {
            st.0.push_front(t);
        }
        self.changed.notify_all();
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.changed.notify_all();
    }

    /// The next task; waits when `wait`. `None` when there is none now (or,
    /// waiting, none will ever come).
    fn pop(&self, wait: bool) -> Option<Task> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(t) = st.0.pop_front() {
                self.changed.notify_all();
                return Some(t);
            }
            if st.1 || !wait {
                return None;
            }
            st = self
                .changed
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A worker's two ends, in either protocol.
enum Link {
    Lines {
        stdin: PipeWriter,
        stdout: PipeReader,
        buffered: Vec<u8>,
    },
    Framed(Duplex<ByteBuf, ByteBuf>),
}

struct Worker {
    child: Child,
    link: Link,
}

enum Reply {
    Answer(Vec<u8>),
    TimedOut,
    Died(String),
}

impl Worker {
    fn start(cfg: &Config) -> Result<Worker> {
        Worker::spawn(&cfg.command, cfg.framed)
    }

    fn spawn(command: &[String], framed: bool) -> Result<Worker> {
        let cfg = Config {
            jobs: 1,
            unordered: false,
            framed,
            pipeline: 1,
            timeout: None,
            command: command.to_vec(),
        };
        let mut cmd = Command::new(&cfg.command[0]);
        cmd.args(&cfg.command[1..]);
        if cfg.framed {
            let ch = cmd.channel_with(&Options::new().codec(CodecKind::Raw))?;
            // The error names the program and the cause already.
            let child = cmd.spawn()?;
            return Ok(Worker {
                child,
                link: Link::Framed(ch),
            });
        }
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = cmd.spawn()?;
        let stdin = PipeWriter::from_fd(OwnedFd::from(child.stdin.take().context("stdin")?))?;
        let stdout = PipeReader::from_fd(OwnedFd::from(child.stdout.take().context("stdout")?))?;
        Ok(Worker {
            child,
            link: Link::Lines {
                stdin,
                stdout,
                buffered: Vec::new(),
            },
        })
    }

    fn send(&mut self, task: &Task) -> std::result::Result<(), String> {
        match &mut self.link {
            Link::Lines { stdin, .. } => {
                let mut line = task.data.clone();
                line.push(b'\n');
                stdin.write_all(&line).map_err(|e| e.to_string())
            }
            Link::Framed(ch) => ch
                .send(ByteBuf::from(task.data.clone()))
                .map_err(|e| e.error().to_string()),
        }
    }

    /// The next answer, waiting until `deadline` at most.
    fn receive(&mut self, deadline: Option<Instant>) -> Reply {
        match &mut self.link {
            Link::Framed(ch) => {
                let r = match deadline {
                    Some(d) => ch
                        .receiver()
                        .recv_deadline(d)
                        .map_err(procwire::Error::from),
                    None => ch.recv().map_err(procwire::Error::from),
                };
                match r {
                    Ok(b) => Reply::Answer(b.into_vec()),
                    Err(e) if e.is_timeout() => Reply::TimedOut,
                    Err(e) => Reply::Died(e.to_string()),
                }
            }
            Link::Lines {
                stdout, buffered, ..
            } => loop {
                if let Some(at) = buffered.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buffered.drain(..=at).collect();
                    return Reply::Answer(line[..line.len() - 1].to_vec());
                }
                // Wait for output, the deadline, or the worker's exit.
                let mut sel = Select::new();
                let out = sel.readable(&*stdout);
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                let ready = match left {
                    Some(l) => sel.ready_timeout(l),
                    None => sel.ready(),
                };
                match ready {
                    Ok(i) if i == out => {}
                    Ok(_) => {}
                    Err(e) if e.is_timeout() => return Reply::TimedOut,
                    Err(e) => return Reply::Died(e.to_string()),
                }
                let mut chunk = [0u8; 65536];
                match stdout.read(&mut chunk) {
                    Ok(0) => return Reply::Died(self.fate()),
                    Ok(n) => buffered.extend_from_slice(&chunk[..n]),
                    Err(e) => return Reply::Died(e.to_string()),
                }
            },
        }
    }

    /// How the worker ended, once its output closed.
    fn fate(&mut self) -> String {
        let pid = self.child.id();
        match self.child.wait_timeout(Duration::from_secs(1)) {
            Ok(Some(s)) => format!("worker {pid} ended ({s})"),
            _ => format!("worker {pid} closed its output"),
        }
    }
}

/// One worker slot: keeps a worker alive and feeds it.
fn drive(
    cfg: &Config,
    queue: &Queue,
    done: &mpsc::Sender<Done>,
    failures_in_a_row: &Mutex<u32>,
) -> Result<()> {
    let mut worker: Option<Worker> = None;
    let mut in_flight: VecDeque<(Task, Instant)> = VecDeque::new();
    loop {
        // Fill the pipeline: wait for a first task, take more if ready.
        while in_flight.len() < cfg.pipeline {
            let Some(task) = queue.pop(in_flight.is_empty()) else {
                break;
            };
            in_flight.push_back((task, Instant::now()));
            let w = match worker.as_mut() {
                Some(w) => w,
                None => worker.insert(Worker::start(cfg)?),
            };
            let sent = w.send(&in_flight.back().expect("just pushed").0);
            if sent.is_err() {
                break; // the read below reports the death
            }
        }
        if in_flight.is_empty() {
            return Ok(()); // input exhausted and everything answered
        }
        let w = worker.as_mut().expect("a task was sent");
        let deadline = cfg.timeout.map(|t| in_flight[0].1 + t);
        match w.receive(deadline) {
            Reply::Answer(out) => {
                let (task, _) = in_flight.pop_front().expect("in flight");
                *failures_in_a_row
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = 0;
                let _ = done.send((task.line, Ok(out)));
                // The next task's clock starts when it is the oldest.
                if let Some(next) = in_flight.front_mut() {
                    next.1 = next.1.max(Instant::now());
                }
            }
            reply => {
                let mut dead = worker.take().expect("worker present");
                let why = match reply {
                    Reply::TimedOut => {
                        let _ = dead.child.kill();
                        format!(
                            "timed out after {:.1} s; worker {} killed",
                            cfg.timeout.unwrap_or_default().as_secs_f64(),
                            dead.child.id()
                        )
                    }
                    Reply::Died(why) => why,
                    Reply::Answer(_) => unreachable!(),
                };
                let _ = dead.child.kill();
                let _ = dead.child.wait();
                // Its oldest task fails; the others go to other workers.
                let (task, _) = in_flight.pop_front().expect("in flight");
                let _ = done.send((task.line, Err(why)));
                queue.give_back(in_flight.drain(..).map(|(t, _)| t));
                let mut row = failures_in_a_row
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                *row += 1;
                if *row > 3 * cfg.jobs as u32 + 3 {
                    bail!(
                        "workers keep failing ({} failures in a row); giving up",
                        *row
                    );
                }
            }
        }
    }
}

/// Writes one task's answer line, or reports its failure on stderr (a failed
/// task prints no stdout line).
fn emit(line: u64, r: std::result::Result<Vec<u8>, String>, out: &mut dyn Write) -> io::Result<()> {
    match r {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            out.write_all(&bytes)
        }
        Err(why) => {
            eprintln!("procwire pool: line {line} failed: {why}");
            Ok(())
        }
    }
}

/// Runs the pool; the exit code is 0 only if every task succeeded.
pub fn run(cfg: Config) -> Result<ExitCode> {
    if cfg.command.is_empty() {
        bail!("no worker command: procwire pool -j N -- CMD [ARGS...]");
    }
    let cfg = Arc::new(Config {
        pipeline: cfg.pipeline.max(1),
        jobs: cfg.jobs.max(1),
        ..cfg
    });
    let queue = Arc::new(Queue {
        state: Mutex::new((VecDeque::new(), false)),
        changed: Condvar::new(),
        capacity: cfg.jobs * cfg.pipeline * 4,
    });
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let failures = Arc::new(Mutex::new(0u32));
    let drivers: Vec<_> = (0..cfg.jobs)
        .map(|_| {
            let (cfg, queue, done, failures) = (
                Arc::clone(&cfg),
                Arc::clone(&queue),
                done_tx.clone(),
                Arc::clone(&failures),
            );
            std::thread::spawn(move || {
                let r = drive(&cfg, &queue, &done, &failures);
                if r.is_err() {
                    // Nobody else may be able to run the rest either.
                    queue.close();
                }
                r
            })
        })
        .collect();
    drop(done_tx);
    let reader = {
        let queue = Arc::clone(&queue);
        std::thread::spawn(move || -> io::Result<u64> {
            let mut n = 0;
            for line in io::stdin().lock().split(b'\n') {
                n += 1;
                queue.push(Task {
                    line: n,
                    data: line?,
                });
            }
            queue.close();
            Ok(n)
        })
    };
    let progress = io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} done, {msg} [{elapsed}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut waiting: BTreeMap<u64, std::result::Result<Vec<u8>, String>> = BTreeMap::new();
    let (mut next, mut failed) = (1u64, 0u64);
    for (line, r) in done_rx {
        if r.is_err() {
            failed += 1;
        }
        if let Some(bar) = &progress {
            bar.inc(1);
            bar.set_message(format!("{failed} failed"));
        }
        if cfg.unordered {
            emit(line, r, &mut out)?;
        } else {
            waiting.insert(line, r);
            while let Some(r) = waiting.remove(&next) {
                emit(next, r, &mut out)?;
                next += 1;
            }
        }
        out.flush()?;
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let read = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the stdin reader panicked"))??;
    for d in drivers {
        d.join()
            .map_err(|_| anyhow::anyhow!("a worker driver panicked"))??;
    }
    out.flush()?;
    drop(out);
    if failed > 0 {
        eprintln!("procwire pool: {failed} of {read} tasks failed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `procwire pool --listen`: tasks from stdin to remote workers (and, with
/// a CMD, `-j` local ones that connect like remote ones), answers in order.
pub fn run_remote(cfg: Config, at: &str, heartbeat: Duration) -> Result<ExitCode> {
    use procwire::remote::pool::{Outcome, RemotePool};
    let opts = procwire::Net::new().heartbeat(heartbeat);
    let pool = RemotePool::listen(at, &opts).with_context(|| format!("listening at {at}"))?;
    let endpoint = pool.endpoint().to_string();
    eprintln!("procwire pool: listening at {endpoint}");
    let mut local = Vec::new();
    if !cfg.command.is_empty() {
        let me = std::env::current_exe().context("finding this program")?;
        for _ in 0..cfg.jobs.max(1) {
            let mut cmd = Command::new(&me);
            cmd.args(["worker", "--connect", &endpoint, "--heartbeat"])
                .arg(heartbeat.as_secs_f64().to_string());
            if cfg.framed {
                cmd.arg("--framed");
            }
            cmd.arg("--").args(&cfg.command);
            local.push(cmd.spawn().context("starting a local worker")?);
        }
    }
    // Read as workers take tasks: the input may be endless.
    let lines = io::BufReader::new(io::stdin())
        .split(b'\n')
        .map_while(std::result::Result::ok);
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut write_err = None;
    let summary = pool.run(lines, !cfg.unordered, |i, o| {
        let r = match o {
            Outcome::Done(b) => Ok(b),
            Outcome::Failed(why) => Err(why),
            other => Err(format!("{other:?}")),
        };
        if let Err(e) = emit(i + 1, r, &mut out) {
            write_err.get_or_insert(e);
        }
    })?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    out.flush()?;
    drop(out);
    for mut w in local {
        let _ = w.wait_timeout(Duration::from_secs(5));
    }
    eprintln!(
        "procwire pool: {} tasks, {} failed, {} given to another worker, {} duplicate answers dropped",
        summary.tasks, summary.failed, summary.reassigned, summary.duplicates
    );
    Ok(if summary.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `procwire worker`: runs `command` persistently for a remote pool,
/// restarting it after it dies (the task it died on is reported failed).
pub fn worker(
    at: &str,
    framed: bool,
    heartbeat: Duration,
    reconnect_for: Duration,
    command: Vec<String>,
) -> Result<ExitCode> {
    use procwire::remote::pool::{WorkerOptions, work};
    let wo = WorkerOptions {
        net: procwire::Net::new().heartbeat(heartbeat),
        reconnect_for,
        beat: heartbeat,
    };
    let mut current: Option<Worker> = None;
    work(at, &wo, |payload| {
        let w = match current.as_mut() {
            Some(w) => w,
            None => current.insert(Worker::spawn(&command, framed).map_err(|e| format!("{e:#}"))?),
        };
        let task = Task {
            line: 0,
            data: payload,
        };
        let sent = w.send(&task);
        match (sent, w.receive(None)) {
            (_, Reply::Answer(out)) => Ok(out),
            (_, Reply::Died(why)) | (Err(why), _) => {
                let mut dead = current.take().expect("present");
                let _ = dead.child.kill();
                let _ = dead.child.wait();
                Err(why)
            }
            (_, Reply::TimedOut) => Err("timed out".into()),
        }
    })
    .with_context(|| format!("working for the pool at {at}"))?;
    Ok(ExitCode::SUCCESS)
}
