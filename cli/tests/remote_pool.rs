//! `procwire pool --listen` with `procwire worker --connect` workers in
//! separate processes: on loopback and across network namespaces the test
//! makes itself, over TCP and ZeroMQ, with a worker SIGKILLed and one
//! SIGSTOPped mid-run; every task answered exactly once, in order.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use util::{Reaped, signal};

const KEY: &str = "a key for the remote pool tests, long enough";
/// Each task: the line with "!" appended.
/// Answers each task with the task and a "!". Around the points where the
/// tests kill and freeze a worker (after answers 2,000 and 4,000 of
/// 10,000), each task takes 5 ms instead of microseconds, so the signal
/// finds the worker holding a task (not in the gap between an answer and
/// the next task, where there would be nothing to reassign) and the
/// "at least one reassigned" assertion tests reassignment, not luck.
const BANG: &[&str] = &[
    "sh",
    "-c",
    "while read l; do case $l in 199[0-9]|20[0-4][0-9]|399[0-9]|40[0-4][0-9]) sleep 0.005;; esac; \
     echo \"$l!\"; done",
];

fn procwire(prefix: &[String]) -> Command {
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(env!("CARGO_BIN_EXE_procwire"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_procwire")),
    };
    cmd.env("PROCWIRE_KEY", KEY);
    cmd
}

/// A running pool: its endpoint, and each stdout line as it comes.
struct Pool {
    child: Reaped,
    endpoint: String,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

fn start_pool(prefix: &[String], listen: &str, tasks: usize) -> Pool {
    let mut child = procwire(prefix)
        .args(["pool", "--listen", listen, "--heartbeat", "0.2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let input: String = (1..=tasks).map(|i| format!("{i}\n")).collect();
        let _ = stdin.write_all(input.as_bytes());
    });
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    let endpoint = first
        .trim()
        .strip_prefix("procwire pool: listening at ")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_string();
    let stderr = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut rest);
        rest
    });
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in out.lines() {
            if tx.send(l.unwrap()).is_err() {
                return;
            }
        }
    });
    Pool {
        child: Reaped(child),
        endpoint,
        lines,
        stderr,
    }
}

fn start_worker(prefix: &[String], endpoint: &str) -> Reaped {
    Reaped(
        procwire(prefix)
            .args(["worker", "--connect", endpoint, "--heartbeat", "0.2"])
            .args(["--reconnect-for", "2", "--"])
            .args(BANG)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Reads all `tasks` answers, SIGKILLing `kill` after a fifth of them and
/// SIGSTOPping `stop` after two fifths; checks each answer is its task's,
/// in order, exactly once; returns the pool's summary line.
fn run_through(pool: Pool, tasks: usize, kill: &Reaped, stop: &Reaped) -> String {
    run_through_resuming(pool, tasks, kill, stop, false)
}

/// As [`run_through`]; with `resume`, the frozen worker is resumed after
/// three fifths of the answers.
fn run_through_resuming(
    mut pool: Pool,
    tasks: usize,
    kill: &Reaped,
    stop: &Reaped,
    resume: bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 1..=tasks {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = pool
            .lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("answer {i} never came"));
        assert_eq!(line, format!("{i}!"), "answer {i} out of order or wrong");
        if i == tasks / 5 {
            signal(&kill.0, "KILL").unwrap();
        }
        if i == 2 * tasks / 5 {
            signal(&stop.0, "STOP").unwrap();
        }
        if resume && i == 3 * tasks / 5 {
            signal(&stop.0, "CONT").unwrap();
        }
    }
    // Nothing more: not one answer twice.
    let status = loop {
        if let Some(s) = pool.child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the pool did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(pool.lines.recv().is_err(), "more answers than tasks");
    let err = pool.stderr.join().unwrap();
    assert!(status.success(), "pool failed: {status}\n{err}");
    // The killed and the frozen worker each held a task (one in flight per
    // worker, thousands of tasks flowing): at least one was given to
    // another worker, or reassignment was never tested.
    let reassigned = given_to_another(&err);
    assert!(reassigned >= 1, "no task was reassigned: {err}");
    err
}

/// The "N given to another worker" count of the pool's summary line.
fn given_to_another(summary: &str) -> usize {
    let at = summary
        .find(" given to another worker")
        .unwrap_or_else(|| panic!("no reassignment count in {summary:?}"));
    let digits: String = summary[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().unwrap()
}

fn loopback_run(listen: &str, tasks: usize) {
    let pool = start_pool(&[], listen, tasks);
    let workers: Vec<Reaped> = (0..3).map(|_| start_worker(&[], &pool.endpoint)).collect();
    let err = run_through(pool, tasks, &workers[0], &workers[1]);
    assert!(err.contains(&format!("{tasks} tasks, 0 failed")), "{err}");
    println!("{err}");
}

#[test]
fn three_tcp_workers_one_killed_one_frozen_every_task_once_in_order() {
    loopback_run("tcp://127.0.0.1:0", 10_000);
}

#[test]
fn three_zmq_workers_one_killed_one_frozen_every_task_once_in_order() {
    loopback_run("zmq+tcp://127.0.0.1:0", 10_000);
}

#[test]
fn a_frozen_zmq_worker_that_resumes_works_again_and_hears_bye() {
    let pool = start_pool(&[], "zmq+tcp://127.0.0.1:0", 10_000);
    let mut workers: Vec<Reaped> = (0..3).map(|_| start_worker(&[], &pool.endpoint)).collect();
    let err = run_through_resuming(pool, 10_000, &workers[0], &workers[1], true);
    assert!(err.contains("10000 tasks, 0 failed"), "{err}");
    // Given up as silent while frozen, it came back when it spoke again:
    // the pool's bye reached it, and it exits on its own.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = workers[1].0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the resumed worker never heard bye"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let _ = workers.remove(2);
}

#[test]
fn a_pyzmq_worker_joins_a_zmq_pool() {
    let python = std::env::var_os("PROCWIRE_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python3")
        });
    assert!(python.exists(), "{}: run scripts/test", python.display());
    let pool = start_pool(&[], "zmq+tcp://127.0.0.1:0", 3000);
    let libzmq = pool.endpoint.trim_start_matches("zmq+").to_string();
    let py = Reaped(
        Command::new(&python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/python/zmq_worker.py"
            ))
            .arg(&libzmq)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let ours = start_worker(&[], &pool.endpoint);
    for i in 1..=3000 {
        let line = pool
            .lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("answer {i} never came"));
        assert_eq!(line, format!("{i}!"));
    }
    let mut py = py;
    let mut said = String::new();
    std::io::Read::read_to_string(py.0.stderr.as_mut().unwrap(), &mut said).unwrap();
    let did: usize = said
        .trim()
        .strip_prefix("pyzmq worker did ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the pyzmq worker said: {said}"));
    assert!(did > 0, "the pyzmq worker did no task");
    println!("the pyzmq worker did {did} of 3000");
    drop(ours);
}

/// Two network namespaces joined by a veth pair: the pool in one, the
/// workers in the other; removed on drop.
struct Namespaces {
    pool: String,
    work: String,
}

fn ip(args: &[&str]) {
    let st = Command::new("ip")
        .args(args)
        .status()
        .expect("iproute2's ip");
    assert!(st.success(), "ip {args:?}: {st}");
}

impl Namespaces {
    fn new() -> Namespaces {
        let id = std::process::id() % 100_000;
        let ns = Namespaces {
            pool: format!("pwpool{id}"),
            work: format!("pwwork{id}"),
        };
        let (va, vb) = (format!("pwa{id}"), format!("pwb{id}"));
        ip(&["netns", "add", &ns.pool]);
        ip(&["netns", "add", &ns.work]);
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        ip(&["link", "set", &va, "netns", &ns.pool]);
        ip(&["link", "set", &vb, "netns", &ns.work]);
        for (n, v, a) in [
            (&ns.pool, &va, "10.213.7.1/24"),
            (&ns.work, &vb, "10.213.7.2/24"),
        ] {
            ip(&["-n", n, "addr", "add", a, "dev", v]);
            ip(&["-n", n, "link", "set", v, "up"]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        ns
    }

    fn exec(ns: &str) -> Vec<String> {
        ["ip", "netns", "exec", ns].map(String::from).to_vec()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and so the
        // pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.pool])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.work])
            .status();
    }
}

#[test]
fn across_network_namespaces_with_a_key() {
    let ns = Namespaces::new();
    let pool = start_pool(&Namespaces::exec(&ns.pool), "tcp://10.213.7.1:0", 10_000);
    assert!(
        pool.endpoint.starts_with("tcp://10.213.7.1:"),
        "{}",
        pool.endpoint
    );
    let workers: Vec<Reaped> = (0..3)
        .map(|_| start_worker(&Namespaces::exec(&ns.work), &pool.endpoint))
        .collect();
    let err = run_through(pool, 10_000, &workers[0], &workers[1]);
    assert!(err.contains("10000 tasks, 0 failed"), "{err}");
    println!("{err}");
    drop(workers);
    drop(ns);
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(
        !left.contains(&format!("pwpool{}", std::process::id() % 100_000)),
        "namespaces left behind: {left}"
    );
}

#[test]
fn without_a_key_a_worker_cannot_reach_a_pool_beyond_loopback() {
    let ns = Namespaces::new();
    let pool = start_pool(&Namespaces::exec(&ns.pool), "tcp://10.213.7.1:0", 1);
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.work, env!("CARGO_BIN_EXE_procwire")])
        .args([
            "worker",
            "--connect",
            &pool.endpoint,
            "--reconnect-for",
            "1",
            "--",
        ])
        .args(BANG)
        .env_remove("PROCWIRE_KEY")
        .env_remove("PROCWIRE_KEY_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no key"), "{err}");
    drop(pool);
}

#[test]
fn the_key_never_reaches_a_workers_command() {
    // A pool with a key and one local worker whose command reports what
    // it finds of the key in its environment.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key");
    std::fs::write(&file, KEY).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    for (var, value) in [
        ("PROCWIRE_KEY", KEY.to_string()),
        ("PROCWIRE_KEY_FILE", file.display().to_string()),
    ] {
        let mut cmd = procwire(&[]);
        cmd.env_remove("PROCWIRE_KEY")
            .env(var, &value)
            .args([
                "pool",
                "--listen",
                "tcp://127.0.0.1:0",
                "-j",
                "1",
                "--",
                "sh",
                "-c",
            ])
            .arg("while read l; do echo \"${PROCWIRE_KEY:-none} ${PROCWIRE_KEY_FILE:-none}\"; done")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = Reaped(cmd.spawn().unwrap());
        child.0.stdin.take().unwrap().write_all(b"1\n2\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "{var}: the pool did not finish");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut out).unwrap();
        assert!(status.success(), "{var}: {status}");
        assert_eq!(
            out, "none none\nnone none\n",
            "{var}: the command saw the key"
        );
    }
}

#[test]
fn a_loose_key_file_and_a_missing_key_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key");
    std::fs::write(&file, KEY).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let run = |with: Option<&std::path::Path>, extra: &[&str]| {
        let mut cmd = procwire(&[]);
        cmd.env_remove("PROCWIRE_KEY");
        if let Some(f) = with {
            cmd.env("PROCWIRE_KEY_FILE", f);
        }
        cmd.args(["pool", "--listen", "tcp://127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(Some(&file), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("chmod 600"), "{err}");
    let out = run(None, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no key"), "{err}");
    // Keyless on purpose: said out loud, and it works (on loopback).
    let out = run(None, &["--no-key"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("every local user can connect"), "{err}");
}
