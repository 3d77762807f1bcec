//! Helpers shared by the CLI's tests that start processes of their own.

#![allow(dead_code)]

use std::process::{Child, Command};

/// Kills and reaps on drop: no process outlives a test, pass or fail.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = signal(&self.0, "CONT");
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `sig` (a name: KILL, STOP, CONT) to `c`.
pub fn signal(c: &Child, sig: &str) -> std::io::Result<std::process::ExitStatus> {
    Command::new("kill")
        .args([&format!("-{sig}"), &c.id().to_string()])
        .status()
}

/// Runs `script` with `sh -c` in a process group of its own, its stdout
/// and stderr captured. Fails the test if it has not ended within `secs`,
/// or if anything it started is still running 5 s after it ended (a
/// worker left behind; a zombie whose parent has exited waits for init,
/// and is not counted); the whole group is killed either way.
pub fn sh_within(secs: u64, script: &str) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let child = Command::new("sh")
        .args(["-c", script])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting sh");
    let group = child.id();
    let kill_group = || {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{group}")])
            .stderr(Stdio::null())
            .status();
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(out) = rx.recv_timeout(Duration::from_secs(secs)) else {
        kill_group();
        panic!("`{script}` did not end within {secs} s");
    };
    let out = out.expect("waiting for sh");
    // The group's processes that are not zombies, from /proc ("pid (comm)
    // state ppid pgrp ...": no procps needed).
    let left = || {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("reading /proc").flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some((head, rest)) = stat.rsplit_once(") ") else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.get(2) == Some(&group.to_string().as_str()) && fields[0] != "Z" {
                found.push(format!("{head})"));
            }
        }
        found.join("; ")
    };
    let until = Instant::now() + Duration::from_secs(5);
    while !left().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let leftover = left();
    kill_group();
    assert!(
        leftover.is_empty(),
        "`{script}` left processes running: {leftover}"
    );
    out
}
