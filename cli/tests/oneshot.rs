//! `procwire pool` in GNU parallel's one-process-per-input model, with GNU
//! parallel itself (installed by `scripts/test`) as the oracle: the same
//! inputs through `parallel -k` and `procwire pool` give the same output
//! and the same exit status.

use std::io::Write;
use std::process::{Command, Output, Stdio};

mod util;

fn run(program: &str, args: &[&str], stdin: &[u8], dir: &std::path::Path) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/test installs GNU parallel)"));
    let mut input = child.stdin.take().unwrap();
    let bytes = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

/// Runs `args` (a CMD and its sources) through both, with `opts` before it.
fn both(opts: &[&str], args: &[&str], stdin: &[u8], dir: &std::path::Path) -> (Output, Output) {
    let ours: Vec<&str> = ["pool"]
        .into_iter()
        .chain(opts.iter().copied())
        .chain(["--"])
        .chain(args.iter().copied())
        .collect();
    let theirs: Vec<&str> = ["--will-cite", "-k"]
        .into_iter()
        .chain(opts.iter().copied())
        .chain(args.iter().copied())
        .collect();
    (
        run(env!("CARGO_BIN_EXE_procwire"), &ours, stdin, dir),
        run("parallel", &theirs, stdin, dir),
    )
}

fn same(opts: &[&str], args: &[&str], stdin: &[u8], dir: &std::path::Path) {
    let (ours, theirs) = both(opts, args, stdin, dir);
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&theirs.stdout),
        "stdout of {opts:?} {args:?}"
    );
    assert_eq!(
        ours.status.code(),
        theirs.status.code(),
        "status of {opts:?} {args:?}: {}",
        String::from_utf8_lossy(&ours.stderr)
    );
}

/// Runs `f` on a thread of its own, failing the test with `what` if it has
/// not finished within `secs` (a job the pool should have killed).
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("{what}"))
}

fn scripts() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fail.sh"), "echo \"job $1\"\nexit \"$1\"\n").unwrap();
    std::fs::write(
        dir.path().join("noisy.sh"),
        "i=0\nwhile [ $i -lt 3000 ]; do echo \"out $1 $i\"; echo \"err $1 $i\" >&2; i=$((i+1)); done\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("args.txt"), "one\ntwo\nthree\n").unwrap();
    dir
}

#[test]
fn replacement_strings_and_sources_give_what_parallel_gives() {
    let d = scripts();
    let dir = d.path();
    same(
        &["-j", "2"],
        &[
            "echo",
            "{}",
            "{.}",
            "{/}",
            "{//}",
            "{/.}",
            "{#}",
            ":::",
            "dir/f.txt",
            "/x/y.tar.gz",
            "plain",
            "a.b/c",
        ],
        b"",
        dir,
    );
    same(
        &["-j", "3"],
        &["echo", "{1}-{2}", ":::", "a", "b", "c", ":::", "1", "2"],
        b"",
        dir,
    );
    same(
        &["-j", "2"],
        &["echo", ":::", "x", "y", ":::", "1", "2"],
        b"",
        dir,
    );
    same(
        &["-j", "2"],
        &["echo", "file", "{}", "::::", "args.txt"],
        b"",
        dir,
    );
    same(
        &["-j", "2"],
        &["echo", "line:", "{}"],
        b"first\nsecond\n\nfourth\n",
        dir,
    );
    same(&["-j", "2", "-0"], &["echo", "x{}x"], b"a b\0c\nd\0", dir);
    // Nothing to do.
    same(&["-j", "2"], &["echo", "{}"], b"", dir);
}

#[test]
fn exit_statuses_failed_and_missing_commands_and_halt_are_parallels() {
    let d = scripts();
    let dir = d.path();
    // 3 jobs fail: status 3.
    same(
        &["-j", "2"],
        &["sh", "fail.sh", "{}", ":::", "0", "1", "0", "2", "0", "3"],
        b"",
        dir,
    );
    // Over 100 failures: 101.
    let many: Vec<String> = (1..=105).map(|_| "1".to_string()).collect();
    let mut args = vec!["sh", "fail.sh", "{}", ":::"];
    args.extend(many.iter().map(String::as_str));
    same(&["-j", "8"], &args, b"", dir);
    // A missing program is a failed job, its cause said once.
    let (ours, theirs) = both(
        &["-j", "2"],
        &["/nonexistent/program", "{}", ":::", "a", "b", "c"],
        b"",
        dir,
    );
    assert_eq!(ours.status.code(), theirs.status.code());
    let err = String::from_utf8_lossy(&ours.stderr);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    // Halt at the first failure: the failing job's status, no job after it.
    same(
        &["-j", "1", "--halt", "now,fail=1"],
        &["sh", "fail.sh", "{}", ":::", "0", "7", "0", "0"],
        b"",
        dir,
    );
    same(
        &["-j", "1", "--halt", "soon,fail=2"],
        &["sh", "fail.sh", "{}", ":::", "0", "4", "5", "0", "0"],
        b"",
        dir,
    );
}

#[test]
fn each_jobs_output_is_grouped_as_parallels_on_both_streams() {
    let d = scripts();
    let dir = d.path();
    let (ours, theirs) = both(
        &["-j", "4"],
        &["sh", "noisy.sh", "{}", ":::", "a", "b", "c", "d", "e"],
        b"",
        dir,
    );
    assert_eq!(ours.status.code(), Some(0));
    assert!(
        ours.stdout == theirs.stdout,
        "stdout is not grouped as parallel's"
    );
    assert!(
        ours.stderr == theirs.stderr,
        "stderr is not grouped as parallel's"
    );
    // Tagged lines.
    let (ours, theirs) = both(
        &["-j", "2", "--tag"],
        &["echo", "x", ":::", "a", "b"],
        b"",
        dir,
    );
    assert_eq!(ours.stdout, theirs.stdout);
}

#[test]
fn a_joblog_a_dry_run_and_the_shell_when_asked() {
    let d = scripts();
    let dir = d.path();
    let log = dir.join("log");
    let out = run(
        env!("CARGO_BIN_EXE_procwire"),
        &[
            "pool",
            "-j",
            "2",
            "--joblog",
            log.to_str().unwrap(),
            "--",
            "sh",
            "fail.sh",
            "{}",
            ":::",
            "0",
            "3",
        ],
        b"",
        dir,
    );
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(
        rows[0],
        [
            "Seq",
            "Host",
            "Starttime",
            "JobRuntime",
            "Send",
            "Receive",
            "Exitval",
            "Signal",
            "Command"
        ]
    );
    assert_eq!(rows.len(), 3);
    let exitvals: Vec<&str> = rows[1..].iter().map(|r| r[6]).collect();
    assert!(exitvals.contains(&"0") && exitvals.contains(&"3"), "{text}");
    // A dry run prints the commands, quoted as a shell would need them.
    let out = run(
        env!("CARGO_BIN_EXE_procwire"),
        &["pool", "--dry-run", "--", "echo", "{}", ":::", "a b", "c"],
        b"",
        dir,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "echo 'a b'\necho c\n");
    // No shell unless asked: `$HOME` stays literal; with --shell it expands.
    let out = run(
        env!("CARGO_BIN_EXE_procwire"),
        &["pool", "--", "echo", "$HOME", "{}", ":::", "x"],
        b"",
        dir,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "$HOME x\n");
    let out = run(
        env!("CARGO_BIN_EXE_procwire"),
        &["pool", "--shell", "--", "echo", "$0", "{}", ":::", "x"],
        b"",
        dir,
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains('$'),
        "{out:?}"
    );
}

#[test]
fn halting_now_kills_the_jobs_still_running() {
    let d = scripts();
    let dir = d.path();
    std::fs::write(
        dir.join("slow_or_bad.sh"),
        "[ \"$1\" = bad ] && exit 5\nexec sleep 60\n",
    )
    .unwrap();
    // Under a deadline: the 60 s sleeper must be killed, not waited for.
    let dir = dir.to_path_buf();
    let out = within(
        30,
        "the pool waited for a job it should have killed",
        move || {
            run(
                env!("CARGO_BIN_EXE_procwire"),
                &[
                    "pool",
                    "-j",
                    "2",
                    "--halt",
                    "now,fail=1",
                    "--",
                    "sh",
                    "slow_or_bad.sh",
                    "{}",
                    ":::",
                    "slow",
                    "bad",
                ],
                b"",
                &dir,
            )
        },
    );
    assert_eq!(out.status.code(), Some(5), "{out:?}");
}

#[test]
fn a_job_past_its_timeout_is_killed_and_counted_as_parallel_counts_it() {
    let d = scripts();
    let dir = d.path();
    std::fs::write(
        dir.join("slow.sh"),
        "[ \"$1\" = slow ] && exec sleep 60\necho \"$1\"\n",
    )
    .unwrap();
    let dir = dir.to_path_buf();
    let (ours, theirs) = within(40, "a job past its timeout was waited for", move || {
        both(
            &["-j", "2", "--timeout", "1"],
            &["sh", "slow.sh", "{}", ":::", "a", "slow", "b"],
            b"",
            &dir,
        )
    });
    assert_eq!(ours.stdout, theirs.stdout);
    assert_eq!(ours.status.code(), theirs.status.code());
    assert!(String::from_utf8_lossy(&ours.stderr).contains("ran past its timeout"));
}

/// GNU parallel's own command lines: the command needs no `--` before it,
/// and `-k` (keep order, procwire's default) is taken; without a command,
/// each input is a command line.
#[test]
fn parallels_command_lines_run_as_they_are() {
    let d = scripts();
    let dir = d.path();
    same(
        &["-j", "2"],
        &[],
        b"echo a\nexit 3\necho \"b c\" | tr a-z A-Z\n",
        dir,
    );
    same(&["-j", "2"], &[":::", "echo x", "sh fail.sh 2"], b"", dir);
    for args in [
        &[
            "-k", "-j", "2", "echo", "{1}-{2}", ":::", "a", "b", ":::", "1", "2",
        ][..],
        &["-j", "2", "echo", "{}", "::::", "args.txt", ":::", "x", "y"],
        &["-k", "echo", "-n", "{}", ":::", "p", "q"],
    ] {
        let ours: Vec<&str> = ["pool"].into_iter().chain(args.iter().copied()).collect();
        let theirs: Vec<&str> = ["--will-cite", "-k"]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        let ours = run(env!("CARGO_BIN_EXE_procwire"), &ours, b"", dir);
        let theirs = run("parallel", &theirs, b"", dir);
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&theirs.stdout),
            "{args:?}: {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        assert!(ours.status.success(), "{args:?}: {ours:?}");
    }
}

/// Jobs start as their inputs arrive, not once the input has ended: stdin
/// may be endless (`tail -f`). (The whole of stdin was read first: `yes |
/// procwire pool echo {}` grew to 24 GB and was killed by the kernel.)
#[test]
fn jobs_start_before_the_input_ends() {
    use std::io::BufRead;
    within(30, "the first jobs' output never came", || {
        let mut child = util::Reaped(
            Command::new(env!("CARGO_BIN_EXE_procwire"))
                .args(["pool", "-j", "2", "--", "echo", "got", "{}"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut stdin = child.0.stdin.take().unwrap();
        stdin.write_all(b"a\nb\n").unwrap();
        // stdin stays open: the input has not ended.
        let mut lines = std::io::BufReader::new(child.0.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "got a");
        assert_eq!(lines.next().unwrap().unwrap(), "got b");
        stdin.write_all(b"c\n").unwrap();
        drop(stdin);
        assert_eq!(lines.next().unwrap().unwrap(), "got c");
        assert!(lines.next().is_none());
        assert!(child.0.wait().unwrap().success());
    });
}

/// Output that goes nowhere stops the jobs: `| head` ends the run at once
/// (the combinations of the sources are made as they are run, not all
/// first), with every job gone; a full disk is an error that says so. (The
/// run went on through every job, and a full disk exited 0, the output
/// lost.)
#[test]
fn output_that_cannot_be_written_stops_the_jobs() {
    let bin = env!("CARGO_BIN_EXE_procwire");
    // A million combinations: far more than the test has time to run.
    let hundred = "$(seq 100)";
    let out = util::sh_within(
        40,
        &format!(
            "{bin} pool -j 2 -- echo {{1}}.{{2}}.{{3}} ::: {hundred} ::: {hundred} ::: {hundred} \
             | head -n 3; echo \"pool $?\" >&2"
        ),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1.1.1\n1.1.2\n1.1.3\n"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.ends_with("pool 0\n"), "{err}");
    let out = util::sh_within(
        40,
        &format!("seq 10000000 | {bin} pool -j 2 -- echo {{}} >/dev/full"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert!(
        err.contains("writing the jobs' output to stdout: No space left on device"),
        "{err}"
    );
}

/// A job's output waits for its turn outside memory once it is large (in
/// a temporary file, as GNU parallel keeps it): a job that prints 512 MiB
/// runs under a 256 MiB limit on the pool's data (`ulimit -d`). (The whole
/// output was held in memory: the pool aborted, out of memory.)
#[test]
fn a_jobs_large_output_is_not_held_in_memory() {
    let bin = env!("CARGO_BIN_EXE_procwire");
    let out = util::sh_within(
        60,
        &format!(
            "ulimit -d 262144; {bin} pool -j 2 -- sh -c 'head -c 536870912 /dev/zero; echo {{}}' \
             ::: a b | wc -c"
        ),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        (2 * (536870912 + 2)).to_string(),
        "{err}"
    );
}
