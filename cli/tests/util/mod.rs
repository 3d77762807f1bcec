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
