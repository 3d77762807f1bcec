//! Spawn to first reply: how long from "start a child" to its first answer,
//! for each way procwire starts one, against plain `std::process::Command`
//! with pipes, all in the same run.
//!
//! `cargo bench --bench spawn`
//!
//! `main` calls `procwire::init()` first (the fork server, and the re-exec
//! entry). The fork benchmark runs first: fork needs a single-threaded
//! process, and the fork server's reader thread starts with the first
//! server task.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::hint::black_box;

mod util;
use procwire::{Duplex, How, task};

fn echo(_: (), ch: Duplex<u64, u64>) {
    for n in ch.iter() {
        ch.send(n.unwrap() + 1).unwrap();
    }
}

/// Times `iters` rounds of spawn-to-first-reply; each child is shut down and
/// reaped outside the timed part.
fn timed(iters: u64, mut round: impl FnMut() -> Box<dyn FnOnce()>) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let teardown = round();
        total += start.elapsed();
        teardown();
    }
    total
}

fn via(how: How) -> Box<dyn FnOnce()> {
    let (mut child, ch) = task(echo, ()).via(how).spawn().unwrap();
    assert_eq!(ch.request(black_box(41)).unwrap(), 42);
    Box::new(move || {
        drop(ch);
        assert!(child.wait().unwrap().success());
    })
}

fn std_command() -> Box<dyn FnOnce()> {
    let mut child = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"41\n").unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "41\n");
    Box::new(move || {
        drop(stdin);
        assert!(child.wait().unwrap().success());
    })
}

fn main() {
    procwire::init().expect("procwire::init");
    let mut c = util::criterion(Duration::from_millis(500), Duration::from_secs(3));
    let mut g = c.benchmark_group("spawn_to_first_reply");
    g.bench_function("fork", |b| b.iter_custom(|n| timed(n, || via(How::Fork))));
    g.bench_function("std_command_pipe_cat", |b| {
        b.iter_custom(|n| timed(n, std_command))
    });
    g.bench_function("reexec", |b| {
        b.iter_custom(|n| timed(n, || via(How::Reexec)))
    });
    g.bench_function("fork_server", |b| {
        b.iter_custom(|n| timed(n, || via(How::Server)))
    });
    g.finish();
    c.final_summary();
}
