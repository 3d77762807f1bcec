//! `procwire demo` as a user runs it.

use std::process::{Command, Stdio};
use std::time::Duration;

fn procwire() -> Command {
    Command::new(env!("CARGO_BIN_EXE_procwire"))
}

/// Runs `cmd` to completion, failing past `secs`.
fn output_within(cmd: &mut Command, secs: u64) -> std::process::Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("procwire (pid {id}) ran past {secs} s"))
}

#[test]
fn the_demo_runs_every_scenario_and_checks_them() {
    let out = output_within(procwire().arg("demo"), 60);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("demo: 10 passed, 0 failed"), "{text}");
    assert_eq!(
        text.matches("Another one bites the dust").count(),
        10,
        "{text}"
    );
    assert!(
        text.contains("without a deadline this read would hang"),
        "{text}"
    );
    assert!(text.contains("(python "), "{text}");
    assert!(text.contains("reader sibling heard: hello from"), "{text}");
    assert!(text.contains("exceeds the 64 MiB limit"), "{text}");
    for how in ["Fork", "Reexec", "Server"] {
        assert!(
            text.contains(&format!("Heavy lifting accomplished! ({how})")),
            "{how}: {text}"
        );
    }
}

#[test]
fn an_unknown_scenario_is_an_error() {
    let out = output_within(procwire().args(["demo", "--only", "nonesuch"]), 30);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no scenario matches"));
}

#[test]
fn a_closed_stdout_ends_the_demo_quietly() {
    let mut child = procwire()
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // like `procwire demo | head -0`
    let out = {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the demo hung")
    };
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_child_mode_refuses_to_run_without_a_channel() {
    let out = output_within(procwire().args(["__child", "stream-worker"]), 30);
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PROCWIRE_VERSION is not set"));
}
