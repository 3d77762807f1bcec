//! `procwire`: the lesson "Processes Can Communicate", live.

mod bench;
mod demo;
mod nats_pool;
mod oneshot;
mod pool;
mod tap;
mod wire;

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "procwire",
    version,
    about = "Processes that talk: pipes, socket pairs and typed channels"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure every procwire transport against the raw syscalls of the same
    /// transport on this machine, and print one table.
    Bench {
        /// A few seconds instead of the full run (one round per
        /// measurement instead of nine taken in turn with the baseline's,
        /// whose ratios give the row's as their median).
        #[arg(long)]
        quick: bool,
        /// Print one JSON array on stdout (progress stays on stderr).
        #[arg(long)]
        json: bool,
        /// Also write the rows as JSON to FILE (the table still goes to
        /// stdout): how `scripts/figures` keeps both from one run.
        #[arg(long, value_name = "FILE")]
        save: Option<std::path::PathBuf>,
        /// Where the two processes run.
        #[arg(long, value_enum, default_value = "auto")]
        pin: bench::Pin,
        /// Transports to measure (default: all). The fixed shared-memory
        /// strategies (shm-spin, shm-yield, shm-futex) are measured at the
        /// smallest size only, against a raw ring waiting the same way.
        #[arg(long, value_enum, value_delimiter = ',')]
        transports: Vec<bench::Transport>,
        /// Message sizes in bytes (default: 64,4096,65536,1048576), from 1
        /// to 4194288.
        #[arg(long, value_delimiter = ',', value_parser = bench::parse_size)]
        sizes: Vec<usize>,
        /// Also measure the network transports (tcp, zmq) on loopback,
        /// against a raw TCP socket and raw ZeroMQ (the zeromq crate).
        #[arg(long)]
        remote: bool,
        /// procwire receives with `recv_with` (the message looked at in its
        /// receive buffer, where raw reads into the caller's) instead of
        /// `recv` (an owned `ByteBuf` per message), blocking and awaited.
        #[arg(long, conflicts_with = "into")]
        borrow: bool,
        /// procwire receives with `recv_into`, into one `ByteBuf` kept
        /// across messages (as raw reads into one buffer), instead of
        /// `recv` (an owned `ByteBuf` per message), blocking and awaited.
        #[arg(long)]
        into: bool,
        /// procwire's socket channels are built without descriptors
        /// (`Options::descriptors(false)`): each receive is recv(2), as
        /// raw's, instead of recvmsg(2) with room for descriptors.
        #[arg(long = "no-fds")]
        no_fds: bool,
        /// Add the `async-<transport>` rows (pipe, stream, seqpacket,
        /// dgram, shm; one CPU): procwire's awaitable ends (feature
        /// `tokio`) against raw tokio I/O on the same kind of descriptor
        /// (a stream socket for shm).
        #[arg(long = "async")]
        asynch: bool,
    },
    /// The far end of a network benchmark (started by `bench` itself).
    #[command(name = "__bench-peer", hide = true)]
    BenchPeer { args: Vec<String> },
    /// Exactly COUNT round trips of SIZE bytes over one side of a benchmark
    /// row and nothing else, for counting system calls and instructions
    /// (`scripts/syscalls`, `scripts/instructions`).
    #[command(name = "__roundtrips", hide = true)]
    Roundtrips { args: Vec<String> },
    /// Run the lesson's scenarios across real processes, narrating each step
    /// and checking its results (exits non-zero if any check fails).
    Demo {
        /// Run only the scenarios whose name contains this text.
        #[arg(long)]
        only: Option<String>,
    },
    /// Run N persistent copies of CMD as workers: one task per stdin line,
    /// one answer line per task on stdout, in input order.
    Pool {
        /// How many workers (or jobs at once): N, N% of the CPUs, or 0 for
        /// as many as possible. Default: one per CPU.
        #[arg(short = 'j', long = "jobs", value_parser = oneshot::parse_jobs)]
        jobs: Option<usize>,
        /// One process per input, as GNU parallel runs them (implied by a
        /// replacement string such as {} in CMD, or by ::: / :::: sources).
        #[arg(long)]
        each: bool,
        /// Inputs are separated by NUL bytes, not newlines (one-shot mode).
        #[arg(short = '0', long = "null")]
        null: bool,
        /// Run each job's command through `sh -c`, its arguments quoted
        /// (one-shot mode; otherwise no shell is involved).
        #[arg(long)]
        shell: bool,
        /// Prefix each output line with the job's arguments and a tab
        /// (one-shot mode).
        #[arg(long)]
        tag: bool,
        /// Print the commands instead of running them (one-shot mode).
        #[arg(long)]
        dry_run: bool,
        /// Stop early: now,fail=N kills the running jobs once N failed;
        /// soon,fail=N starts no more (one-shot mode).
        #[arg(long, value_parser = oneshot::parse_halt, default_value = "never")]
        halt: oneshot::Halt,
        /// Write a log of every job, in GNU parallel's columns (one-shot mode).
        #[arg(long, value_name = "FILE")]
        joblog: Option<std::path::PathBuf>,
        /// Print answers as they come, not in input order.
        #[arg(long, conflicts_with = "keep_order")]
        unordered: bool,
        /// Print answers in input order: what procwire does without
        /// --unordered (accepted for GNU parallel's command lines).
        #[arg(short = 'k', long)]
        keep_order: bool,
        /// Talk to workers in frames over PROCWIRE_FD (codec raw) instead of
        /// lines on stdin/stdout.
        #[arg(long)]
        framed: bool,
        /// Tasks in flight per worker.
        #[arg(long, default_value_t = 1)]
        pipeline: usize,
        /// Kill and replace a worker stuck on one task this long.
        #[arg(long, value_name = "SECS", value_parser = parse_secs, allow_negative_numbers = true)]
        timeout: Option<Duration>,
        /// After this long without an answer from a worker holding a task,
        /// say once what the likely cause is (a block-buffered stdout).
        #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs, allow_negative_numbers = true)]
        quiet: Duration,
        /// Accept remote workers at ENDPOINT (tcp://HOST:PORT, zmq+tcp://…,
        /// zmq+ipc://…); they run `procwire worker --connect ENDPOINT -- CMD`.
        /// With a CMD here too, -j N local workers join them.
        #[arg(long, value_name = "ENDPOINT")]
        listen: Option<String>,
        /// Heartbeat interval of remote workers' connections.
        #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_secs, allow_negative_numbers = true)]
        heartbeat: Duration,
        /// Listen at tcp:// without a key (loopback only): every local user
        /// can then connect. Without a key and without this, tcp:// is
        /// refused. The key comes from PROCWIRE_KEY_FILE (mode 600).
        #[arg(long)]
        no_key: bool,
        /// With --listen nats://…: continue the run under that name (the
        /// pool was stopped or killed): what was answered is printed, not
        /// recomputed; what is queued is not published again.
        #[arg(long, requires = "listen")]
        resume: bool,
        /// With --listen nats://…: how long a task may go without a sign
        /// from the worker holding it before it goes to another (workers
        /// extend it while they work).
        #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs, allow_negative_numbers = true)]
        ack_wait: Duration,
        /// With --listen nats://…: deliveries a task may have before it is
        /// reported failed (its workers kept dying on it).
        #[arg(long, value_name = "N", default_value_t = 5)]
        max_deliver: u32,
        /// With --listen nats://…: copies of the run's streams the cluster
        /// keeps (a 3-node cluster survives a node with 3).
        #[arg(long, value_name = "N", default_value_t = 1)]
        replicas: usize,
        /// The worker command and its arguments (everything from the first
        /// word that is not an option, as GNU parallel reads it; or after
        /// `--`). Without one, each input is a command line of its own, run
        /// by `sh -c` (as `cat commands | parallel`).
        #[arg(trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// Work for a remote pool (`procwire pool --listen`): run a persistent
    /// CMD (lines, or frames with --framed) on each task it sends.
    Worker {
        /// The pool's endpoint.
        #[arg(long, value_name = "ENDPOINT")]
        connect: String,
        /// Talk to CMD in frames over PROCWIRE_FD (codec raw) instead of lines.
        #[arg(long)]
        framed: bool,
        /// Heartbeat interval (TCP) and beat while working (ZeroMQ).
        #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_secs, allow_negative_numbers = true)]
        heartbeat: Duration,
        /// Keep trying to reach the pool this long before giving up.
        #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs, allow_negative_numbers = true)]
        reconnect_for: Duration,
        /// Connect to tcp:// without a key (loopback only).
        #[arg(long)]
        no_key: bool,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Sit in the middle of a channel and print every message (direction,
    /// time, size, payload as JSON for msgpack and json, hex otherwise),
    /// passing bytes and descriptors through unchanged. Run in place of
    /// CMD by a procwire parent (`procwire tap -- CMD`; exits as CMD
    /// does), or between two endpoints (--listen A --connect B): unix:
    /// ones byte for byte, tcp:// ones message by message (the tap holds
    /// the key: PROCWIRE_KEY_FILE).
    Tap {
        /// Print to FILE instead of stderr.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
        /// Proxy: accept one connection at this endpoint (unix: or tcp://)…
        #[arg(long, value_name = "ENDPOINT", requires = "connect")]
        listen: Option<String>,
        /// …and relay it to this one.
        #[arg(long, value_name = "ENDPOINT", requires = "listen")]
        connect: Option<String>,
        /// Proxy: the codec to show payloads in (a command's comes from its
        /// parent).
        #[arg(long, default_value = "postcard")]
        codec: String,
        /// The command a procwire parent meant to start.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Print the messages that arrive at ENDPOINT as JSON lines (msgpack or
    /// json codec), until the peer closes the channel (one that does not
    /// decode goes to stderr in hex, and the exit status is then 1); with
    /// --send, send each JSON line of stdin instead.
    Cat {
        /// unix:PATH, tcp://HOST:PORT, zmq+tcp://HOST:PORT or zmq+ipc://PATH.
        endpoint: String,
        /// Wait for one peer at ENDPOINT instead of connecting to it.
        #[arg(long)]
        listen: bool,
        /// Send stdin's JSON lines instead of printing what arrives.
        #[arg(long)]
        send: bool,
        /// The channel's codec: msgpack or json.
        #[arg(long, default_value = "msgpack")]
        codec: String,
        /// tcp:// without a key (loopback only).
        #[arg(long)]
        no_key: bool,
    },
    /// Make one RPC call (wire format section 8) with REQUEST (JSON) as its
    /// body and print the reply as JSON; a handler's error goes to stderr
    /// and the exit status is 1.
    Call {
        /// unix:PATH, tcp://HOST:PORT, zmq+tcp://HOST:PORT or zmq+ipc://PATH.
        endpoint: String,
        /// The request, as JSON.
        request: String,
        /// How long to wait for the reply.
        #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs, allow_negative_numbers = true)]
        timeout: Duration,
        /// The channel's codec: msgpack or json.
        #[arg(long, default_value = "msgpack")]
        codec: String,
        /// tcp:// without a key (loopback only).
        #[arg(long)]
        no_key: bool,
    },
    /// Check what procwire relies on here (kernel features and limits, the
    /// fork server, network namespaces) and say what each missing one
    /// costs. Exits 1 when something procwire cannot work without is
    /// missing.
    Doctor {
        /// Print the checks as JSON (an array of objects).
        #[arg(long)]
        json: bool,
    },
    /// A demo child process (started by `demo` itself).
    #[command(name = "__child", hide = true)]
    Child { role: String },
}

/// The longest duration the command line takes: a year (beyond it, a
/// deadline would overflow `Instant` on some systems, and nobody means it).
const MAX_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// A number of seconds from the command line: positive, finite, at most a
/// year. Anything else is a usage error (exit 2), never a panic.
fn parse_secs(s: &str) -> Result<Duration, String> {
    let allowed = format!("a number of seconds greater than 0 and at most {MAX_SECS} (e.g. 2.5)");
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number; expected {allowed}"))?;
    if !(v.is_finite() && v > 0.0 && v <= MAX_SECS) {
        return Err(format!("{s} is out of range; expected {allowed}"));
    }
    Duration::try_from_secs_f64(v).map_err(|e| format!("{s}: {e}; expected {allowed}"))
}

/// The exit status of a failure that is not a usage error (clap's are 2):
/// GNU parallel's "other error".
const FAILED: u8 = 255;

/// A bad argument found after parsing: exits 2, as clap's usage errors do.
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            // A closed stdout (`procwire demo | head`) is not an error.
            if e.chain()
                .filter_map(|c| c.downcast_ref::<io::Error>())
                .any(|io| io.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(io::stderr(), "procwire: {e:#}");
            if e.chain().any(|c| c.is::<Usage>()) {
                return ExitCode::from(2);
            }
            ExitCode::from(FAILED)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    // First, before any thread: runs a re-executed task, or starts the fork
    // server for the demo's tasks. (Not for `__roundtrips`, which valgrind
    // runs: its 3.19 cannot start the fork server, for want of pidfd_open.)
    if std::env::args_os()
        .nth(1)
        .is_none_or(|a| a != "__roundtrips")
    {
        procwire::init()?;
    }
    match Cli::parse().command {
        Command::Demo { only } => demo::run(only.as_deref()),
        Command::Bench {
            quick,
            json,
            save,
            pin,
            transports,
            sizes,
            remote,
            borrow,
            into,
            no_fds,
            asynch,
        } => bench::run(bench::Config {
            receive: match (borrow, into) {
                (true, _) => bench::Receive::Borrowed,
                (_, true) => bench::Receive::Into,
                _ => bench::Receive::Owned,
            },
            no_fds,
            asynch,
            quick,
            json,
            save,
            pin,
            transports: match (transports.is_empty(), remote) {
                (false, _) => transports,
                (true, false) => bench::Transport::ALL.to_vec(),
                (true, true) => {
                    [&bench::Transport::ALL[..], &bench::Transport::REMOTE[..]].concat()
                }
            },
            sizes: if sizes.is_empty() {
                vec![64, 4096, 65536, 1 << 20]
            } else {
                sizes
            },
        })
        .map(|()| ExitCode::SUCCESS),
        Command::Doctor { json } => doctor(json),
        Command::Tap {
            out,
            listen,
            connect,
            codec,
            command,
        } => match (listen, connect) {
            (Some(l), Some(c)) => tap::run_proxy(out.as_deref(), &l, &c, codec.parse()?),
            _ => tap::run_command(out.as_deref(), &command),
        },
        Command::Cat {
            endpoint,
            listen,
            send,
            codec,
            no_key,
        } => wire::cat(&endpoint, listen, send, wire::codec(&codec)?, no_key),
        Command::Call {
            endpoint,
            request,
            timeout,
            codec,
            no_key,
        } => wire::call(&endpoint, &request, timeout, wire::codec(&codec)?, no_key),
        Command::Child { role } => demo::child(&role).map(|()| ExitCode::SUCCESS),
        Command::BenchPeer { args } => bench::peer(&args).map(|()| ExitCode::SUCCESS),
        Command::Roundtrips { args } => bench::roundtrips(&args).map(|()| ExitCode::SUCCESS),
        Command::Pool {
            jobs,
            each,
            null,
            shell,
            tag,
            dry_run,
            halt,
            joblog,
            unordered,
            keep_order: _,
            framed,
            pipeline,
            timeout,
            quiet,
            listen,
            heartbeat,
            no_key,
            resume,
            ack_wait,
            max_deliver,
            replicas,
            command,
        } => {
            let jobs =
                jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            if listen.is_none() && (each || null || oneshot::wanted(&command) || command.is_empty())
            {
                return oneshot::run(oneshot::OneShot {
                    jobs,
                    unordered,
                    null,
                    shell,
                    tag,
                    dry_run,
                    halt,
                    joblog,
                    timeout,
                    command,
                });
            }
            let cfg = pool::Config {
                jobs,
                unordered,
                framed,
                pipeline,
                timeout,
                quiet,
                command,
            };
            match listen {
                Some(at) if at.starts_with("nats://") => nats_pool::run(
                    cfg,
                    &at,
                    procwire::nats::pool::PoolOptions {
                        resume,
                        ack_wait,
                        max_deliver,
                        task_timeout: None,
                        replicas,
                    },
                ),
                Some(_) if resume => Err(Usage(
                    "--resume is for a durable pool (--listen nats://HOST:PORT/NAME)".into(),
                )
                .into()),
                Some(at) => pool::run_remote(cfg, &at, heartbeat, no_key),
                None => pool::run(cfg),
            }
        }
        Command::Worker {
            connect,
            framed,
            reconnect_for,
            command,
            ..
        } if connect.starts_with("nats://") => {
            nats_pool::worker(&connect, framed, reconnect_for, command)
        }
        Command::Worker {
            connect,
            framed,
            heartbeat,
            reconnect_for,
            no_key,
            command,
        } => pool::worker(&connect, framed, heartbeat, reconnect_for, no_key, command),
    }
}

/// `procwire doctor`: the library's checks, and the fork server started
/// and used once (the one check that needs this program).
fn doctor(json: bool) -> anyhow::Result<ExitCode> {
    let mut checks = procwire::doctor::checks();
    let fork_server = (|| -> procwire::Result<()> {
        procwire::init()?;
        let (mut child, ch) = procwire::task(doctor_task, ())
            .via(procwire::How::Server)
            .spawn()?;
        let answer = ch.request(20)?;
        drop(ch);
        child.wait()?;
        if answer == 21 {
            Ok(())
        } else {
            Err(procwire::Error::new(
                procwire::ErrorKind::Decode,
                "a wrong answer",
            ))
        }
    })();
    checks.push(procwire::doctor::Check {
        name: "fork server",
        ok: fork_server.is_ok(),
        required: false,
        found: match &fork_server {
            Ok(()) => "started, ran a task".into(),
            Err(e) => e.to_string(),
        },
        without: "procwire::task forks from the calling process (single-threaded ones only) or \
                  re-executes the program",
    });
    let failed = checks.iter().any(|c| c.required && !c.ok);
    if json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        println!("{:<30} {:<8} found; and without it", "check", "result");
        for c in &checks {
            let result = match (c.ok, c.required) {
                (true, _) => "ok",
                (false, true) => "MISSING",
                (false, false) => "missing",
            };
            println!("{:<30} {:<8} {}", c.name, result, c.found);
            if !c.ok {
                println!("{:<30} {:<8} without it: {}", "", "", c.without);
            }
        }
        if failed {
            println!("\nprocwire cannot work here: see MISSING above");
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The fork server's check: one task, one answer.
fn doctor_task((): (), ch: procwire::Duplex<u32, u32>) {
    for n in ch.iter() {
        let Ok(n) = n else { return };
        if ch.send(n + 1).is_err() {
            return;
        }
    }
}
