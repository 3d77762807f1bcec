//! The hard gate of the core-speed issue: a procwire round trip makes the
//! same system calls as the raw baseline on every transport whose count is
//! deterministic (`scripts/syscalls --check`, counted with `strace -f -c`).

use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs `scripts/syscalls --check` with `extra` arguments over
/// `transports`, and returns its table.
fn check(transports: &[&str], extra: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/syscalls");
    let child = Command::new("python3")
        .arg(script)
        .args(["--check", "--count", "2000", "--bin"])
        .arg(env!("CARGO_BIN_EXE_procwire"))
        .arg("--transports")
        .arg(transports.join(","))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs scripts/syscalls (scripts/test installs strace)");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    let out = rx
        .recv_timeout(Duration::from_secs(240))
        .expect("scripts/syscalls ran past 240 s");
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every transport asked for has its row.
    for t in transports {
        assert!(table.contains(&format!("| {t} |")), "{table}");
    }
    table
}

#[test]
fn a_round_trip_makes_no_more_system_calls_than_raw() {
    check(&["pipe", "stream", "seqpacket", "dgram", "tcp"], &[]);
}

/// A channel built with `Options::descriptors(false)` receives as raw
/// does: recv(2) (`recvfrom` in strace), never recvmsg(2); the script's
/// check fails on a `recvmsg`.
#[test]
fn a_channel_without_descriptors_receives_with_plain_calls() {
    let table = check(&["stream", "seqpacket", "dgram"], &["--no-fds"]);
    for line in table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| transport"))
    {
        let procwire = line.split('|').nth(2).unwrap_or_default();
        assert!(procwire.contains("recvfrom 20,0"), "{line}");
    }
}
