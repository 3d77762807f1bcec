//! `procwire pool`: N persistent workers for a shell pipeline — lines in,
//! lines out, in order — on the library's one pool engine: the workers
//! here are a [`procwire::pool::Link`] of line or framed commands, and
//! `--listen` uses the remote link.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::os::fd::OwnedFd;
use std::process::{ExitCode, Stdio};
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
    pub command: Vec<String>,
}

/// A command's two ends, in either protocol.
enum Ends {
    Lines {
        stdin: PipeWriter,
        stdout: PipeReader,
        buffered: Vec<u8>,
    },
    Framed(Duplex<ByteBuf, ByteBuf>),
}

/// Starts one persistent worker command. The key stays here: the command
/// runs with neither `PROCWIRE_KEY` nor `PROCWIRE_KEY_FILE`.
fn spawn(command: &[String], framed: bool) -> procwire::Result<ChildWorker<Ends>> {
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .env_remove("PROCWIRE_KEY")
        .env_remove("PROCWIRE_KEY_FILE");
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
    let ends = Ends::Lines {
        stdin: PipeWriter::from_fd(OwnedFd::from(stdin))?,
        stdout: PipeReader::from_fd(OwnedFd::from(stdout))?,
        buffered: Vec::new(),
    };
    Ok(ChildWorker::new(child, ends))
}

impl pool::Ends<ByteBuf, ByteBuf> for Ends {
    fn send(&mut self, task: &ByteBuf) -> procwire::Result<()> {
        match self {
            Ends::Lines { stdin, .. } => {
                let mut line = task.to_vec();
                line.push(b'\n');
                Ok(stdin.write_all(&line)?)
            }
            Ends::Framed(ch) => Ok(ch.send_ref(task)?),
        }
    }

    fn recv(&mut self, deadline: Option<Instant>) -> procwire::Result<ByteBuf> {
        let (stdout, buffered) = match self {
            Ends::Framed(ch) => {
                return match deadline {
                    Some(d) => Ok(ch.receiver().recv_deadline(d)?),
                    None => Ok(ch.recv()?),
                };
            }
            Ends::Lines {
                stdout, buffered, ..
            } => (stdout, buffered),
        };
        loop {
            if let Some(at) = buffered.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buffered.drain(..=at).collect();
                return Ok(ByteBuf::from(line[..line.len() - 1].to_vec()));
            }
            // Wait for output or the deadline.
            let mut sel = Select::new();
            sel.readable(&*stdout);
            match deadline {
                Some(d) => sel.ready_timeout(d.saturating_duration_since(Instant::now()))?,
                None => sel.ready()?,
            };
            let mut chunk = [0u8; 65536];
            match stdout.read(&mut chunk) {
                // The process adds how it ended (ChildWorker).
                Ok(0) => return Err(Error::new(ErrorKind::Disconnected, "it closed its output")),
                Ok(n) => buffered.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Persistent line or framed commands: the pool's kind of worker.
struct Cmds {
    command: Vec<String>,
    framed: bool,
}

impl Link<ByteBuf, ByteBuf> for Cmds {
    fn start(&self) -> procwire::Result<Box<dyn Worker<ByteBuf, ByteBuf>>> {
        Ok(Box::new(spawn(&self.command, self.framed)?))
    }
}

/// Writes one task's answer line, or reports its failure on stderr (a failed
/// task prints no stdout line).
fn emit(line: u64, r: procwire::Result<ByteBuf>, out: &mut dyn Write) -> io::Result<()> {
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
fn feed_and_print(pool: &Pool<ByteBuf, ByteBuf>, unordered: bool) -> Result<(u64, u64)> {
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
        .map(ByteBuf::from);
    let mut out = io::BufWriter::new(io::stdout().lock());
    let (mut failed, mut write_err) = (0u64, None);
    let read = pool.run(lines, !unordered, |i, r| {
        if r.is_err() {
            failed += 1;
        }
        if let Some(bar) = &progress {
            bar.inc(1);
            bar.set_message(format!("{failed} failed"));
        }
        if let Err(e) = emit(i + 1, r, &mut out).and_then(|()| out.flush()) {
            write_err.get_or_insert(e);
        }
    })?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if let Some(e) = write_err {
        return Err(e.into());
    }
    out.flush()?;
    Ok((read, failed))
}

/// Runs the pool; the exit code is 0 only if every task succeeded.
pub fn run(cfg: Config) -> Result<ExitCode> {
    if cfg.command.is_empty() {
        bail!("no worker command: procwire pool -j N -- CMD [ARGS...]");
    }
    let (jobs, pipeline) = (cfg.jobs.max(1), cfg.pipeline.max(1));
    let mut builder = Pool::with_link(Cmds {
        command: cfg.command,
        framed: cfg.framed,
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
    let (read, failed) = feed_and_print(&pool, cfg.unordered)?;
    pool.shutdown()?;
    if failed > 0 {
        eprintln!("procwire pool: {failed} of {read} tasks failed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
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
    let (read, failed) = feed_and_print(&pool, cfg.unordered)?;
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
    Ok(if failed > 0 {
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
    no_key: bool,
    command: Vec<String>,
) -> Result<ExitCode> {
    use procwire::remote::pool::{WorkerOptions, work};
    let wo = WorkerOptions {
        net: network(heartbeat, no_key, at, "worker")?,
        reconnect_for,
        beat: heartbeat,
    };
    let mut current: Option<Box<dyn Worker<ByteBuf, ByteBuf>>> = None;
    let cmds = Cmds { command, framed };
    work(at, &wo, |payload| {
        let w = match current.as_mut() {
            Some(w) => w,
            None => current.insert(cmds.start().map_err(|e| e.to_string())?),
        };
        let answer = w.send(&ByteBuf::from(payload)).and_then(|()| w.recv(None));
        match answer {
            Ok(out) => Ok(out.into_vec()),
            Err(why) => {
                if let Some(dead) = current.take() {
                    dead.retire(true);
                }
                Err(why.to_string())
            }
        }
    })
    .with_context(|| format!("working for the pool at {at}"))?;
    Ok(ExitCode::SUCCESS)
}
