//! The hard gate of the core-speed issue: a procwire round trip makes the
//! same system calls as the raw baseline on every transport whose count is
//! deterministic (`scripts/syscalls --check`, counted with `strace -f -c`).

use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn a_round_trip_makes_no_more_system_calls_than_raw() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/syscalls");
    let child = Command::new("python3")
        .arg(script)
        .args(["--check", "--count", "2000", "--bin"])
        .arg(env!("CARGO_BIN_EXE_procwire"))
        .args(["--transports", "pipe,stream,seqpacket,dgram,tcp"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs scripts/syscalls (scripts/test installs strace)");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    let out = rx
        .recv_timeout(Duration::from_secs(240))
        .expect("scripts/syscalls ran past 240 s");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every transport asked for has its row.
    for t in ["pipe", "stream", "seqpacket", "dgram", "tcp"] {
        assert!(table.contains(&format!("| {t} |")), "{table}");
    }
}
