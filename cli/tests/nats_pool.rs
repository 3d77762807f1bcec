//! `procwire pool --listen nats://HOST:PORT/NAME` with `procwire worker
//! --connect` workers in separate processes, on a real NATS server (and a
//! 3-node cluster): a worker SIGKILLed and one SIGSTOPped mid-run, the
//! pool SIGKILLed and resumed, a node of the cluster killed, a worker in
//! Python; every task answered exactly once, in order.

#[path = "../../tests/util/nats.rs"]
mod nats_util;

mod util;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nats_util::{NatsServer, venv_bin};
use util::{Reaped, signal};

/// Each task: the line with "!" appended; around answers 2,000 and 4,000
/// each takes 5 ms, so that a signal there finds the worker holding a
/// task. With `LOG` set, each line is also appended to that file (the
/// computations, counted).
const BANG: &str = "while read l; do case $l in 199[0-9]|20[0-4][0-9]|399[0-9]|40[0-4][0-9]) \
                    sleep 0.005;; esac; [ -n \"$LOG\" ] && echo \"$l\" >> \"$LOG\"; echo \"$l!\"; done";

/// A running pool: each stdout line as it comes, and its stderr.
struct Pool {
    child: Reaped,
    lines: mpsc::Receiver<String>,
}

/// Starts `procwire pool --listen ADDR EXTRA…` reading `input`.
fn pool(addr: &str, input: &Path, extra: &[&str]) -> Pool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_procwire"))
        .args(["pool", "--listen", addr])
        .args(extra)
        .stdin(std::fs::File::open(input).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { return };
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    Pool {
        child: Reaped(child),
        lines,
    }
}

impl Pool {
    /// The next `n` stdout lines, each within `secs` seconds.
    fn take(&self, n: usize, secs: u64) -> Vec<String> {
        (0..n)
            .map(|i| {
                self.lines
                    .recv_timeout(Duration::from_secs(secs))
                    .unwrap_or_else(|_| panic!("line {} of {n} did not come", i + 1))
            })
            .collect()
    }

    /// Waits for the pool to exit: its status and stderr.
    fn finish(mut self, secs: u64) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let status = loop {
            if let Some(s) = self.child.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "the pool did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(self.child.0.stderr.as_mut().unwrap(), &mut err).unwrap();
        (status, err)
    }
}

/// A `procwire worker --connect ADDR -- sh -c BANG`, with `log` for its
/// computations.
fn worker(addr: &str, log: Option<&Path>) -> Reaped {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_procwire"));
    cmd.args(["worker", "--connect", addr, "--reconnect-for", "30", "--"])
        .args(["sh", "-c", BANG])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(l) = log {
        cmd.env("LOG", l);
    }
    Reaped(cmd.spawn().unwrap())
}

/// Lines 1..=n, in a file.
fn input(dir: &Path, n: u64) -> std::path::PathBuf {
    let p = dir.join("input");
    let text: String = (1..=n).map(|i| format!("{i}\n")).collect();
    std::fs::write(&p, text).unwrap();
    p
}

fn expected(from: u64, to: u64) -> Vec<String> {
    (from..=to).map(|i| format!("{i}!")).collect()
}

/// Three worker processes, 10,000 tasks; one worker SIGKILLed after 2,000
/// answers and one SIGSTOPped after 4,000: their tasks go to the third
/// once their acknowledgement deadline (2 s) passes, and every input is
/// answered once, in order.
#[test]
fn three_workers_ten_thousand_tasks_one_killed_one_frozen_every_answer_once_in_order() {
    let server = NatsServer::start("");
    let addr = server.addr("lesson");
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 10_000);
    let pool = pool(&addr, &input, &["--ack-wait", "2"]);
    let workers: Vec<Reaped> = (0..3).map(|_| worker(&addr, None)).collect();
    let mut got = pool.take(2_000, 60);
    signal(&workers[0].0, "KILL").unwrap();
    got.extend(pool.take(2_000, 60));
    signal(&workers[1].0, "STOP").unwrap();
    got.extend(pool.take(6_000, 60));
    assert_eq!(got, expected(1, 10_000));
    let (status, err) = pool.finish(30);
    assert!(status.success(), "{err}");
    assert!(err.contains("10000 tasks, 0 failed"), "{err}");
    drop(workers);
}

/// The pool SIGKILLed at about half and run again with `--resume` on the
/// same input: the second run prints every answer once, in order; no task
/// was computed twice (the workers log each computation); before that, a
/// run under the name without `--resume`, and a resumed run on a
/// different input, are refused.
#[test]
fn a_pool_killed_at_half_and_resumed_loses_none_repeats_none_recomputes_none() {
    let server = NatsServer::start("");
    let addr = server.addr("resumable");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("computed");
    let input = input(dir.path(), 4_000);
    let workers: Vec<Reaped> = (0..2).map(|_| worker(&addr, Some(&log))).collect();
    let first = pool(&addr, &input, &[]);
    assert_eq!(first.take(2_000, 60), expected(1, 2_000));
    signal(&first.child.0, "KILL").unwrap();
    drop(first);

    let (status, err) = pool(&addr, &input, &[]).finish(30);
    assert!(!status.success());
    assert!(err.contains("--resume"), "{err}");
    let other = dir.path().join("other");
    std::fs::write(&other, "changed\n2\n3\n").unwrap();
    let (status, err) = pool(&addr, &other, &["--resume"]).finish(30);
    assert!(!status.success());
    assert!(err.contains("different input"), "{err}");

    let second = pool(&addr, &input, &["--resume"]);
    assert_eq!(second.take(4_000, 60), expected(1, 4_000));
    let (status, err) = second.finish(30);
    assert!(status.success(), "{err}");
    drop(workers);
    let computed = std::fs::read_to_string(&log).unwrap();
    let mut counts = std::collections::HashMap::new();
    for l in computed.lines() {
        *counts.entry(l.to_string()).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 4_000, "every task computed");
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "computed more than once: {twice:?}");
}

/// A 3-node cluster, the run's streams kept on all three: the node the
/// second worker uses is killed mid-run, and nothing is lost.
#[test]
fn a_node_of_a_three_node_cluster_killed_mid_run_loses_nothing() {
    let mut nodes = NatsServer::cluster(3);
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 1_500);
    let pool = pool(
        &nodes[0].addr("clustered"),
        &input,
        &["--replicas", "3", "--ack-wait", "2"],
    );
    let workers = [
        worker(&nodes[1].addr("clustered"), None),
        worker(&nodes[2].addr("clustered"), None),
    ];
    let mut got = pool.take(500, 100);
    nodes[2].kill();
    // The cluster elects new leaders for the streams the node led: on a
    // loaded machine that takes a while, and the answers wait for it.
    got.extend(pool.take(1_000, 100));
    assert_eq!(got, expected(1, 1_500));
    let (status, err) = pool.finish(60);
    assert!(status.success(), "{err}");
    drop(workers);
}

/// A worker written in Python with nats-py, from the wire format alone,
/// joins a pool and answers every task.
#[test]
fn a_nats_py_worker_joins_the_pool() {
    let server = NatsServer::start("");
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 300);
    let pool = pool(&server.addr("py.jobs"), &input, &[]);
    let mut py = Command::new(venv_bin("python3"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/python/nats_worker.py"
        ))
        .args([&format!("nats://127.0.0.1:{}", server.port), "py.jobs"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let got = pool.take(300, 60);
    let want: Vec<String> = (1..=300).map(|i| format!("{i}?")).collect();
    assert_eq!(got, want);
    let (status, err) = pool.finish(30);
    assert!(status.success(), "{err}");
    let mut out = String::new();
    std::io::Read::read_to_string(py.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(py.wait().unwrap().success());
    assert!(out.contains("answered 300"), "{out}");
}
