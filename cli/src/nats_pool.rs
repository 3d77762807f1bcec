//! `procwire pool --listen nats://HOST:PORT/NAME` and `procwire worker
//! --connect nats://HOST:PORT/NAME`: the durable pool on JetStream
//! (`procwire::nats::pool`). Lines in, answer lines out in input order;
//! the pool may be killed and run again with `--resume` on the same input.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use procwire::nats::pool::{DurablePool, PoolOptions, WorkOptions, work};
use procwire::{ByteBuf, Command, Error, ErrorKind};

use crate::pool::{self, Runner, emit, exit_for};

/// Tasks published ahead of the answers printed, at most: an endless input
/// does not fill the server.
const AHEAD: u64 = 4096;

/// Runs the durable pool; the exit status is [`exit_for`] the tasks that
/// failed.
pub fn run(cfg: pool::Config, at: &str, mut opts: PoolOptions) -> Result<ExitCode> {
    opts.task_timeout = cfg.timeout;
    let net = procwire::Net::new();
    let pool =
        DurablePool::open(at, &net, &opts).with_context(|| format!("opening the pool at {at}"))?;
    eprintln!(
        "procwire pool: tasks at {at}{}",
        if opts.resume { " (resumed)" } else { "" }
    );
    let mut local = Vec::new();
    if !cfg.command.is_empty() {
        let me = std::env::current_exe().context("finding this program")?;
        for _ in 0..cfg.jobs.max(1) {
            let mut cmd = Command::new(&me);
            cmd.args(["worker", "--connect", at]);
            if cfg.framed {
                cmd.arg("--framed");
            }
            cmd.arg("--").args(&cfg.command);
            local.push(cmd.spawn().context("starting a local worker")?);
        }
    }
    // Lines come on a thread of their own: a slow input holds up no answer.
    let (lines_tx, lines) = mpsc::sync_channel::<Vec<u8>>(1024);
    std::thread::spawn(move || {
        for line in io::stdin().lock().split(b'\n') {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut out = io::BufWriter::new(io::stdout().lock());
    let (mut next_in, mut next_out, mut failed) = (1u64, 1u64, 0u64);
    let mut input_done = false;
    let mut waiting: BTreeMap<u64, std::result::Result<Vec<u8>, String>> = BTreeMap::new();
    loop {
        while !input_done && next_in - next_out < AHEAD {
            match lines.try_recv() {
                Ok(line) => {
                    pool.submit(next_in, &line)?;
                    next_in += 1;
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => input_done = true,
            }
        }
        while let Some(r) = waiting.remove(&next_out) {
            if r.is_err() {
                failed += 1;
            }
            let r = r
                .map(ByteBuf::from)
                .map_err(|why| Error::new(ErrorKind::Remote, why));
            emit(next_out, r, &mut out)?;
            next_out += 1;
        }
        out.flush()?;
        if input_done && next_out == next_in {
            break;
        }
        let wait = if input_done || next_in - next_out >= AHEAD {
            Duration::from_millis(200)
        } else {
            Duration::from_millis(5)
        };
        if let Some(a) = pool.next_answer(wait)? {
            waiting.insert(a.task, a.result);
        }
    }
    // Answers to tasks this input does not have: it is not the input the
    // run was given.
    if let Some((&n, _)) = waiting.iter().next() {
        bail!(
            "the run under this name has task {n}, past the {} lines of this input: a \
             different input under the same name (nothing was removed)",
            next_in - 1
        );
    }
    pool.finish()?;
    for mut w in local {
        let _ = w.wait_timeout(Duration::from_secs(10));
    }
    eprintln!("procwire pool: {} tasks, {failed} failed", next_in - 1);
    Ok(exit_for(failed))
}

/// `procwire worker --connect nats://…`: runs `command` persistently on
/// the pool's tasks until the pool ends its run.
pub fn worker(
    at: &str,
    framed: bool,
    reconnect_for: Duration,
    command: Vec<String>,
) -> Result<ExitCode> {
    let mut runner = Runner::new(command, framed);
    let opts = WorkOptions {
        wait_for_pool: reconnect_for,
    };
    work(at, &procwire::Net::new(), &opts, |payload, timeout| {
        runner.run(payload, timeout)
    })
    .with_context(|| format!("working for the pool at {at}"))?;
    Ok(ExitCode::SUCCESS)
}
