//! `procwire pool` as a shell user runs it.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod util;

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../peers/python");

/// Runs `procwire pool ARGS` with `input` on stdin, failing past 60 s.
fn pool(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_procwire"))
        .arg("pool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    let out = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("procwire pool ran past 60 s");
    feeder.join().unwrap();
    out
}

fn numbers(n: u32) -> String {
    (1..=n).map(|i| format!("{i}\n")).collect()
}

const SQUARE_OR_DIE: &str = r#"
import os, sys, time
for line in sys.stdin:
    n = int(line)
    if n == 13: os._exit(7)
    if n == 21: time.sleep(30)
    print(n * n, flush=True)
"#;

#[test]
fn lines_in_lines_out_in_input_order() {
    let out = pool(&["-j", "3", "--", "sed", "-u", "s/^/x/"], &numbers(500));
    assert!(out.status.success(), "{out:?}");
    let expect: String = (1..=500).map(|i| format!("x{i}\n")).collect();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expect);
}

#[test]
fn unordered_gives_every_answer_once() {
    let out = pool(
        &["-j", "2", "--unordered", "--", "sed", "-u", "s/$/!/"],
        &numbers(300),
    );
    assert!(out.status.success());
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    let mut expect: Vec<String> = (1..=300).map(|i| format!("{i}!")).collect();
    expect.sort();
    assert_eq!(lines, expect);
}

#[test]
fn a_crashed_worker_fails_its_task_only_and_is_restarted() {
    for pipeline in ["1", "4"] {
        let out = pool(
            &[
                "-j",
                "2",
                "--pipeline",
                pipeline,
                "--",
                "python3",
                "-u",
                "-c",
                SQUARE_OR_DIE,
            ],
            &numbers(20),
        );
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let expect: String = (1..=20u64)
            .filter(|&i| i != 13)
            .map(|i| format!("{}\n", i * i))
            .collect();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            expect,
            "pipeline {pipeline}"
        );
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains("line 13 failed") && err.contains("exited with status 7"),
            "{err}"
        );
        assert!(err.contains("1 of 20 tasks failed"), "{err}");
    }
}

#[test]
fn a_stuck_worker_is_killed_after_the_timeout() {
    let out = pool(
        &[
            "-j",
            "2",
            "--timeout",
            "1",
            "--",
            "python3",
            "-u",
            "-c",
            SQUARE_OR_DIE,
        ],
        &numbers(25),
    );
    // Two tasks failed: parallel's exit status, the number of failures.
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("line 21 failed: the task ran past its timeout"),
        "{err}"
    );
    assert!(err.contains("line 13 failed"), "{err}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 23);
    assert!(stdout.contains(&format!("{}\n", 25 * 25)));
}

#[test]
fn framed_workers_in_python_with_the_reference_peer() {
    let worker = format!(
        "import sys\nsys.path.insert(0, {PEER:?})\nimport procwire\n\
         ch = procwire.Channel.from_env()\n\
         for task in ch:\n    ch.send(task.upper() + b' (framed)')\n"
    );
    let out = pool(
        &["-j", "2", "--framed", "--", "python3", "-c", &worker],
        "heavy lifting\n\nfeather\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "HEAVY LIFTING (framed)\n (framed)\nFEATHER (framed)\n"
    );
}

/// The same with the Ruby peer (`peers/ruby/procwire.rb`, `Procwire.work`):
/// an empty task and one of 100 KiB come back whole, in order.
#[test]
fn framed_workers_in_ruby_with_the_reference_peer() {
    let peer = concat!(env!("CARGO_MANIFEST_DIR"), "/../peers/ruby/procwire");
    let worker =
        format!("require_relative {peer:?}\nProcwire.work {{ |t| t.upcase + ' (ruby)' }}\n");
    let big = "x".repeat(100 << 10);
    let out = pool(
        &["-j", "2", "--framed", "--", "ruby", "-e", &worker],
        &format!("heavy lifting\n\n{big}\nfeather\n"),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "HEAVY LIFTING (ruby)\n (ruby)\n{} (ruby)\nFEATHER (ruby)\n",
            big.to_uppercase()
        )
    );
}

#[test]
fn a_command_that_cannot_start_is_an_error() {
    let out = pool(&["-j", "2", "--", "/nonexistent/worker"], "1\n");
    // Not the usage error's 2 (issue 11, item 12), and the cause said once.
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/worker"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert_eq!(err.matches("starting").count(), 1, "{err}");
}

/// Issue 11, item 11: durations that are not positive finite numbers of
/// seconds are usage errors (exit 2, one line saying what is allowed),
/// never a panic; `--timeout 0` is refused rather than killing every task.
#[test]
fn bad_durations_are_usage_errors() {
    for bad in ["inf", "nan", "-1", "0", "1e300", "soon"] {
        let out = pool(&["-j", "1", "--timeout", bad, "--", "cat"], "1\n");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--timeout {bad}: {err}");
        assert!(err.contains("greater than 0"), "--timeout {bad}: {err}");
        assert!(!err.contains("panicked"), "--timeout {bad}: {err}");
    }
    let out = pool(&["-j", "1", "--timeout", "2.5", "--", "cat"], "1\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"1\n");
}

#[test]
fn a_worker_that_prints_two_lines_per_input_is_caught_and_the_status_says_so() {
    let out = pool(
        &[
            "-j",
            "1",
            "--",
            "sh",
            "-c",
            "while read l; do echo a$l; echo b$l; done",
        ],
        "1\n2\n3\n4\n",
    );
    // Never "a1 b1 a2 b2" with status 0: each task whose answer came with
    // a second line fails (so the status counts them), or, when the extra
    // line comes late, the broken contract is reported with the worker's
    // pid and the lines whose answers are in doubt (status 101).
    assert!(matches!(out.status.code(), Some(c) if c > 0), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("more than one line") || err.contains("more lines than it was given"),
        "{err}"
    );
    // An extra line that comes only after the worker was given its next
    // line cannot be told from that line's answer: then it is taken, and
    // the contract's breach, found when the worker's output drains, makes
    // the status 101 (answers in doubt), never 0.
    let stdout = String::from_utf8_lossy(&out.stdout);
    if stdout.contains('b') {
        assert_eq!(out.status.code(), Some(101), "{stdout}\n{err}");
        assert!(err.contains("may belong to other lines"), "{err}");
    }
}

/// A worker started to replace a lost one ends as the first ones do at
/// the end of the run: its input closed, it finishes (here, a goodbye
/// written after a pause) and exits. It used to be killed the moment the
/// pool thread that started it ended (Linux sends the parent-death signal
/// when the *thread* that started a child exits), before the pool closed
/// its input: its last output was lost, and the check that a worker
/// printed no more lines than it was given saw nothing.
#[test]
fn a_replacement_worker_finishes_at_the_end_as_the_first_ones_do() {
    let dir = tempfile::tempdir().unwrap();
    let bye = dir.path().join("bye");
    let script = format!(
        "while read l; do [ \"$l\" = crash ] && exit 3; echo a$l; done; sleep 0.3; echo bye >> {}",
        bye.display()
    );
    let out = pool(&["-j", "1", "--", "sh", "-c", &script], "crash\n2\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a2\n", "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&bye).unwrap_or_default(),
        "bye\n",
        "the replacement worker did not finish: {out:?}"
    );
}

#[test]
fn a_silent_worker_draws_one_hint_about_buffering_and_python_flushes_by_default() {
    // A worker that never answers: the hint comes once, then the timeout.
    let out = pool(
        &[
            "-j",
            "2",
            "--quiet",
            "0.3",
            "--timeout",
            "2",
            "--",
            "sh",
            "-c",
            "while read l; do :; done",
        ],
        "1\n2\n3\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("block-buffered").count(), 1, "{err}");
    assert!(
        err.contains("python3 -u") && err.contains("stdbuf -oL"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(3), "{err}");
    // A plain `print`, block-buffered on a pipe, answers all the same.
    let out = pool(
        &[
            "-j",
            "2",
            "--",
            "python3",
            "-c",
            "import sys\nfor l in sys.stdin: print(l.strip() + '!')",
        ],
        "a\nb\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a!\nb!\n");
}

/// Where the answers go nowhere, the pool stops: a closed stdout (`| head`)
/// ends the run at once, quietly, with every worker gone, instead of
/// working through the rest of the input; a full disk is an error that
/// says so. (The pool worked through all 200,000 lines here, and exited 0
/// with the answers lost.)
#[test]
fn answers_that_cannot_be_written_stop_the_pool() {
    let bin = env!("CARGO_BIN_EXE_procwire");
    // Far more input than the test has time for, unless the pool stops.
    let out = util::sh_within(
        40,
        &format!("seq 100000000 | {bin} pool -j 2 -- cat | head -n 3; echo \"pool $?\" >&2"),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n2\n3\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.ends_with("pool 0\n"), "{err}");
    let out = util::sh_within(
        40,
        &format!("seq 100000000 | {bin} pool -j 2 -- cat >/dev/full"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert!(
        err.contains("writing the answers to stdout: No space left on device"),
        "{err}"
    );
}

/// A pool that gives up on its workers stops reading its input: one error
/// per task it had in flight, and one for the run, not one for every line
/// there is (a million lines of stderr here before; an endless input
/// never ended, and grew the pool to gigabytes).
#[test]
fn a_pool_that_gives_up_stops_reading_its_input() {
    let bin = env!("CARGO_BIN_EXE_procwire");
    let out = util::sh_within(40, &format!("seq 1000000 | {bin} pool -j 2 -- false"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    let lines = err.lines().count();
    assert!(lines < 100, "{lines} lines of stderr");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("workers keep failing"), "{last}");
    assert!(last.contains("the pool stopped taking tasks"), "{last}");
}
