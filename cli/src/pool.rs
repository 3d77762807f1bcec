//! `procwire pool`: N persistent workers for a shell pipeline — lines in,
//! lines out, in order — on the library's one pool engine: the workers
//! here are a [`procwire::pool::Link`] of line or framed commands, and
//! `--listen` uses the remote link.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::os::fd::OwnedFd;
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use procwire::pool::{self, ChildWorker, Link, Worker};
use procwire::{
    ByteBuf, CodecKind, Command, Duplex, Error, ErrorKind, Options, PipeReader, PipeWriter, Pool,
    Select,
};

/// What `procwire pool` was asked to do.
pub struct Config {
    pub jobs: usize,
    pub unordered: bool,
    pub framed: bool,
    pub pipeline: usize,
    pub timeout: Option<Duration>,
    /// How long a worker may hold a task in silence before the hint.
    pub quiet: Duration,
    pub command: Vec<String>,
}

/// A task: its input line's number (from 1) and its bytes.
type Task = (u64, ByteBuf);

/// A command's two ends, in either protocol.
enum Ends {
    Lines(Lines),
    Framed(Duplex<ByteBuf, ByteBuf>),
}

/// A persistent worker's stdin and stdout, and the bookkeeping that holds
/// it to its contract: one answer line per input line.
struct Lines {
    stdin: Option<PipeWriter>,
    stdout: PipeReader,
    buffered: Vec<u8>,
    pid: u32,
    /// The input lines it was given and has not answered, oldest first.
    owed: std::collections::VecDeque<u64>,
    /// The input lines it answered.
    answered: Vec<u64>,
    watch: Arc<Watch>,
}

/// What the pool's workers share: broken contracts, found late, for the
/// exit status; and whether the quiet-worker hint was given.
#[derive(Default)]
pub struct Watch {
    broken: Mutex<Vec<String>>,
    hinted: AtomicBool,
    /// How long a worker may hold a task in silence before the hint.
    quiet: Duration,
}

impl Watch {
    fn broke(&self, what: String) {
        eprintln!("procwire pool: {what}");
        self.broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
    }

    fn hint(&self, pid: u32, line: u64) {
        if !self.hinted.swap(true, Ordering::Relaxed) {
            eprintln!(
                "procwire pool: worker {pid} has had line {line} for {:.0?} without an answer. \
                 If it answers at all, its stdout is probably block-buffered (the default when \
                 stdout is a pipe): run it with `python3 -u`, `stdbuf -oL CMD`, or flush after \
                 each line (workers get PYTHONUNBUFFERED=1 unless you set it). A command that \
                 answers only at the end of its input (`wc -l`, `sort`) is no persistent \
                 worker: run one per input with `procwire pool CMD {{}}` or --each",
                self.quiet
            );
        }
    }
}

fn list(lines: &[u64]) -> String {
    let shown: Vec<String> = lines.iter().take(20).map(u64::to_string).collect();
    let more = lines.len().saturating_sub(20);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

impl Lines {
    fn too_many(&self, extra: usize) -> String {
        format!(
            "worker {} printed more lines than it was given ({extra} bytes after its last \
             answer): the answers it gave for input lines {} may belong to other lines; a \
             worker must print exactly one line per input line (use --framed where answers \
             may contain newlines)",
            self.pid,
            list(&self.answered)
        )
    }

    /// Whether the worker printed something nobody asked for: checked
    /// before it is given a task while it owes none.
    fn unsolicited(&mut self) -> usize {
        if !self.owed.is_empty() {
            return 0;
        }
        let mut sel = Select::new();
        sel.readable(&self.stdout);
        if sel.ready_timeout(Duration::ZERO).is_ok() {
            let mut chunk = [0u8; 65536];
            if let Ok(n) = self.stdout.read(&mut chunk) {
                self.buffered.extend_from_slice(&chunk[..n]);
            }
        }
        self.buffered.len()
    }
}

impl Drop for Lines {
    /// Holds the worker to its contract to the end: its input closed, what
    /// it still prints is more than it was asked for.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut extra = self.buffered.len();
        let mut chunk = [0u8; 65536];
        while Instant::now() < deadline {
            let mut sel = Select::new();
            sel.readable(&self.stdout);
            if sel
                .ready_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_err()
            {
                break;
            }
            match self.stdout.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => extra += n,
            }
        }
        if extra > 0 && self.owed.is_empty() && !self.answered.is_empty() {
            self.watch.broke(self.too_many(extra));
        }
    }
}

/// Starts one persistent worker command. The key stays here: the command
/// runs with neither `PROCWIRE_KEY` nor `PROCWIRE_KEY_FILE`; Python
/// flushes each line unless the caller said otherwise.
fn spawn(
    command: &[String],
    framed: bool,
    watch: &Arc<Watch>,
) -> procwire::Result<ChildWorker<Ends>> {
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .env_remove("PROCWIRE_KEY")
        .env_remove("PROCWIRE_KEY_FILE");
    if std::env::var_os("PYTHONUNBUFFERED").is_none() {
        cmd.env("PYTHONUNBUFFERED", "1");
    }
    if framed {
        let ch = cmd.channel_with(&Options::new().codec(CodecKind::Raw))?;
        // The error names the program and the cause already.
        return Ok(ChildWorker::new(cmd.spawn()?, Ends::Framed(ch)));
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = cmd.spawn()?;
    let piped = |e| Error::new(ErrorKind::Io, format!("the worker's {e} is not piped"));
    let stdin = child.stdin.take().ok_or_else(|| piped("stdin"))?;
    let stdout = child.stdout.take().ok_or_else(|| piped("stdout"))?;
    let ends = Ends::Lines(Lines {
        stdin: Some(PipeWriter::from_fd(OwnedFd::from(stdin))?),
        stdout: PipeReader::from_fd(OwnedFd::from(stdout))?,
        buffered: Vec::new(),
        pid: child.id(),
        owed: Default::default(),
        answered: Vec::new(),
        watch: Arc::clone(watch),
    });
    Ok(ChildWorker::new(child, ends))
}

impl pool::Ends<Task, ByteBuf> for Ends {
    fn send(&mut self, (line, task): &Task) -> procwire::Result<()> {
        match self {
            Ends::Lines(l) => {
                let extra = l.unsolicited();
                if extra > 0 {
                    // Its last answer had more lines than one: this task
                    // goes to another worker, this one is replaced.
                    let what = l.too_many(extra);
                    l.answered.clear(); // said now, not again when it goes
                    l.watch.broke(what.clone());
                    return Err(Error::new(ErrorKind::Disconnected, what));
                }
                let mut bytes = task.to_vec();
                bytes.push(b'\n');
                let stdin = l.stdin.as_mut().expect("open until dropped");
                stdin.write_all(&bytes)?;
                l.owed.push_back(*line);
                Ok(())
            }
            Ends::Framed(ch) => Ok(ch.send_ref(task)?),
        }
    }

    fn recv(&mut self, deadline: Option<Instant>) -> procwire::Result<ByteBuf> {
        let l = match self {
            Ends::Framed(ch) => {
                return match deadline {
                    Some(d) => Ok(ch.receiver().recv_deadline(d)?),
                    None => Ok(ch.recv()?),
                };
            }
            Ends::Lines(l) => l,
        };
        let since = Instant::now();
        let hint_at = since + l.watch.quiet;
        loop {
            if let Some(at) = l.buffered.iter().position(|&b| b == b'\n') {
                let answer: Vec<u8> = l.buffered.drain(..=at).collect();
                let line = l.owed.pop_front().unwrap_or(0);
                if l.owed.is_empty() && !l.buffered.is_empty() {
                    // More than one line for its last task, already here:
                    // the task fails, the worker is replaced.
                    return Err(Error::new(
                        ErrorKind::Decode,
                        format!(
                            "worker {} printed more than one line for it (a worker must print \
                             exactly one line per input line; use --framed where answers may \
                             contain newlines)",
                            l.pid
                        ),
                    ));
                }
                l.answered.push(line);
                return Ok(ByteBuf::from(answer[..answer.len() - 1].to_vec()));
            }
            // Wait for output, the deadline, or the time for the hint.
            let mut sel = Select::new();
            sel.readable(&l.stdout);
            let now = Instant::now();
            let hinted = l.watch.hinted.load(Ordering::Relaxed);
            let until = match (deadline, hinted) {
                (Some(d), true) => Some(d),
                (Some(d), false) => Some(d.min(hint_at)),
                (None, true) => None,
                (None, false) => Some(hint_at),
            };
            let ready = match until {
                Some(u) => sel.ready_timeout(u.saturating_duration_since(now)),
                None => sel.ready(),
            };
            match ready {
                Ok(_) => {}
                Err(e) if e.is_timeout() => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(e);
                    }
                    l.watch.hint(l.pid, l.owed.front().copied().unwrap_or(0));
                    continue;
                }
                Err(e) => return Err(e),
            }
            let mut chunk = [0u8; 65536];
            match l.stdout.read(&mut chunk) {
                // The process adds how it ended (ChildWorker).
                Ok(0) => {
                    return Err(Error::new(
                        ErrorKind::Disconnected,
                        "it closed its output without answering",
                    ));
                }
                Ok(n) => l.buffered.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Persistent line or framed commands: the pool's kind of worker.
struct Cmds {
    command: Vec<String>,
    framed: bool,
    watch: Arc<Watch>,
}

impl Link<Task, ByteBuf> for Cmds {
    fn start(&self) -> procwire::Result<Box<dyn Worker<Task, ByteBuf>>> {
        Ok(Box::new(spawn(&self.command, self.framed, &self.watch)?))
    }
}

/// Writes one task's answer line, or reports its failure on stderr (a failed
/// task prints no stdout line).
pub fn emit(line: u64, r: procwire::Result<ByteBuf>, out: &mut dyn Write) -> io::Result<()> {
    match r {
        Ok(bytes) => {
            let mut bytes = bytes.into_vec();
            bytes.push(b'\n');
            out.write_all(&bytes)
        }
        Err(why) => {
            eprintln!("procwire pool: line {line} failed: {why}");
            Ok(())
        }
    }
}

/// Runs the tasks of stdin on `pool`, printing answers (in input order
/// unless `unordered`), with a progress line on a terminal; the exit code
/// is 0 only if every task succeeded.
fn feed_and_print<R: procwire::pool::Message + Clone>(
    pool: &Pool<R, ByteBuf>,
    unordered: bool,
    task: impl Fn(u64, ByteBuf) -> R + Send,
) -> Result<(u64, u64)> {
    let progress = io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} done, {msg} [{elapsed}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    // Read as workers take tasks, on the pool's feeding thread: the input
    // may be endless.
    let lines = io::BufReader::new(io::stdin())
        .split(b'\n')
        .map_while(std::result::Result::ok)
        .zip(1..)
        .map(move |(l, n)| task(n, ByteBuf::from(l)));
    let mut out = io::BufWriter::new(io::stdout().lock());
    let (mut failed, mut write_err) = (0u64, None);
    let read = pool.run(lines, !unordered, |i, r| {
        if write_err.is_some() {
            return;
        }
        if r.is_err() {
            failed += 1;
        }
        if let Some(bar) = &progress {
            bar.inc(1);
            bar.set_message(format!("{failed} failed"));
        }
        if let Err(e) = emit(i + 1, r, &mut out).and_then(|()| out.flush()) {
            // Answers would go nowhere (`| head` has its lines, the disk is
            // full): stop working on them, and reading the input.
            write_err = Some(e);
            pool.cancel();
        }
    });
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if let Some(e) = write_err {
        return Err(anyhow::Error::new(e).context("writing the answers to stdout"));
    }
    let read = read?;
    out.flush()?;
    Ok((read, failed))
}

/// The exit status GNU parallel documents: 0 when every job succeeded,
/// else how many failed, up to 100; 101 for more.
pub fn exit_for(failed: u64) -> ExitCode {
    ExitCode::from(failed.min(101) as u8)
}

/// Runs the persistent pool; the exit status is [`exit_for`] the tasks
/// that failed (101 at least when a worker broke its contract).
pub fn run(cfg: Config) -> Result<ExitCode> {
    if cfg.command.is_empty() {
        bail!("no worker command: procwire pool -j N -- CMD [ARGS...]");
    }
    let (jobs, pipeline) = (cfg.jobs.max(1), cfg.pipeline.max(1));
    let watch = Arc::new(Watch {
        quiet: cfg.quiet,
        ..Watch::default()
    });
    let mut builder = Pool::with_link(Cmds {
        command: cfg.command,
        framed: cfg.framed,
        watch: Arc::clone(&watch),
    })
    .workers(jobs)
    .pipeline(pipeline)
    .max_in_flight(jobs * pipeline * 4)
    // Workers that cannot work at all (a wrong command) stop the pool.
    .give_up_after(3 * jobs as u32 + 3);
    if let Some(t) = cfg.timeout {
        builder = builder.task_timeout(t);
    }
    let pool = builder.build()?;
    let (read, failed) = feed_and_print(&pool, cfg.unordered, |n, l| (n, l))?;
    pool.shutdown()?;
    let broken = watch.broken.lock().unwrap_or_else(|e| e.into_inner()).len();
    if failed > 0 {
        eprintln!("procwire pool: {failed} of {read} tasks failed");
    }
    if broken > 0 {
        // Answers may be misattributed: as bad as every task failing.
        return Ok(exit_for(101));
    }
    Ok(exit_for(failed))
}

/// The network settings of `pool --listen` and `worker`: the key from the
/// environment, said out loud when it is short, or none, said out loud too.
fn network(heartbeat: Duration, no_key: bool, at: &str, who: &str) -> Result<procwire::Net> {
    let net = procwire::Net::new().heartbeat(heartbeat);
    if !at.starts_with("tcp://") {
        return Ok(net);
    }
    if no_key {
        eprintln!(
            "procwire {who}: no key (--no-key): on loopback only, and every local user can \
             connect; use PROCWIRE_KEY_FILE, or a unix: endpoint for local work"
        );
        return Ok(net.no_key());
    }
    if let Some(key) = procwire::Key::from_env()?
        && key.len() < procwire::Key::STRONG_LEN
    {
        eprintln!(
            "procwire {who}: the key has {} bytes; fewer than {} can be guessed offline \
             unless random: make one with `head -c 32 /dev/urandom`",
            key.len(),
            procwire::Key::STRONG_LEN
        );
    }
    Ok(net)
}

/// `procwire pool --listen`: tasks from stdin to remote workers (and, with
/// a CMD, `-j` local ones that connect like remote ones), answers in order.
pub fn run_remote(cfg: Config, at: &str, heartbeat: Duration, no_key: bool) -> Result<ExitCode> {
    let net = network(heartbeat, no_key, at, "pool")?.codec(CodecKind::Raw);
    let mut builder =
        Pool::<ByteBuf, ByteBuf>::remote(at, &net).with_context(|| format!("listening at {at}"))?;
    if let Some(t) = cfg.timeout {
        builder = builder.task_timeout(t);
    }
    let pool = builder.build()?;
    let endpoint = pool
        .endpoint()
        .context("a remote pool has an endpoint")?
        .to_string();
    eprintln!("procwire pool: listening at {endpoint}");
    let mut local = Vec::new();
    if !cfg.command.is_empty() {
        let me = std::env::current_exe().context("finding this program")?;
        for _ in 0..cfg.jobs.max(1) {
            let mut cmd = Command::new(&me);
            cmd.args(["worker", "--connect", &endpoint, "--heartbeat"])
                .arg(heartbeat.as_secs_f64().to_string());
            if no_key {
                cmd.arg("--no-key");
            }
            if cfg.framed {
                cmd.arg("--framed");
            }
            cmd.arg("--").args(&cfg.command);
            local.push(cmd.spawn().context("starting a local worker")?);
        }
    }
    let (read, failed) = feed_and_print(&pool, cfg.unordered, |_, l| l)?;
    let stats = pool.stats();
    pool.shutdown()?; // says bye to every worker
    for mut w in local {
        let _ = w.wait_timeout(Duration::from_secs(5));
    }
    eprintln!(
        "procwire pool: {read} tasks, {failed} failed, {} given to another worker, {} stray \
         answers dropped",
        stats.lost, stats.stray_answers
    );
    Ok(exit_for(failed))
}

/// One persistent command a worker runs its tasks on, started when the
/// first task comes and again after it dies (the task it died on, or took
/// too long on, is reported failed).
pub struct Runner {
    cmds: Cmds,
    current: Option<Box<dyn Worker<Task, ByteBuf>>>,
}

impl Runner {
    pub fn new(command: Vec<String>, framed: bool) -> Runner {
        Runner {
            cmds: Cmds {
                command,
                framed,
                watch: Arc::new(Watch {
                    quiet: Duration::from_secs(5),
                    ..Watch::default()
                }),
            },
            current: None,
        }
    }

    /// Runs one task, within `timeout` if given.
    pub fn run(
        &mut self,
        payload: Vec<u8>,
        timeout: Option<Duration>,
    ) -> std::result::Result<Vec<u8>, String> {
        let w = match self.current.as_mut() {
            Some(w) => w,
            None => self
                .current
                .insert(self.cmds.start().map_err(|e| e.to_string())?),
        };
        let deadline = timeout.map(|t| Instant::now() + t);
        let answer = w
            .send(&(0, ByteBuf::from(payload)))
            .and_then(|()| w.recv(deadline));
        match answer {
            Ok(out) => Ok(out.into_vec()),
            Err(why) => {
                if let Some(dead) = self.current.take() {
                    dead.retire(true);
                }
                Err(why.to_string())
            }
        }
    }
}

/// `procwire worker`: runs `command` persistently for a remote pool,
/// restarting it after it dies (the task it died on is reported failed).
pub fn worker(
    at: &str,
    framed: bool,
    heartbeat: Duration,
    reconnect_for: Duration,
    no_key: bool,
    command: Vec<String>,
) -> Result<ExitCode> {
    use procwire::remote::pool::{WorkerOptions, work};
    let wo = WorkerOptions {
        net: network(heartbeat, no_key, at, "worker")?,
        reconnect_for,
        beat: heartbeat,
    };
    let mut runner = Runner::new(command, framed);
    work(at, &wo, |payload| runner.run(payload, None))
        .with_context(|| format!("working for the pool at {at}"))?;
    Ok(ExitCode::SUCCESS)
}
