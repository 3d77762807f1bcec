//! Request/reply costs, all in one run:
//!
//! - `roundtrip/raw`: 8 bytes there and back over a stream socket to a worker
//!   process with plain read(2)/write(2): the floor;
//! - `roundtrip/rpc_call`: one `rpc::Client::call` to a worker serving RPC;
//! - `roundtrip/pool_call`: one empty task through a one-worker `Pool`
//!   with `Pool::call` (it runs from the calling thread);
//! - `roundtrip/pool_submit_wait`: the same with `submit(..).wait()`, which
//!   hands the task to a driver thread and back.
//!
//! These run with every process pinned to CPU 0 (this process is pinned
//! before `init()`, so the fork server and its workers inherit it): on this
//! 2-vCPU VM a wake-up across CPUs costs ~30 µs and makes unpinned round
//! trips bimodal.
//!
//! - `cpu_bound/workers_1` and `workers_2`: 40 tasks of ~2 ms of arithmetic
//!   on re-executed workers free to use both CPUs: the second worker's
//!   speed-up.
//!
//! `cargo bench --bench pool`

use std::hint::black_box;
use std::os::fd::AsFd;
use std::time::Duration;

mod util;
use procwire::rpc::{self, Client, ServerEnd};
use procwire::{Duplex, Fd, How, Pool, task};

/// Echoes 8-byte messages on a socket of its own (the channel that started
/// the task only hands it over: a framed reader must not share the raw fd).
fn raw_echo(_: (), ch: Duplex<(), Fd>) {
    let Ok(socket) = ch.recv() else { return };
    let fd = socket.as_fd();
    let mut buf = [0u8; 8];
    loop {
        let mut got = 0;
        while got < 8 {
            match rustix::io::read(fd, &mut buf[got..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n,
            }
        }
        if rustix::io::write(fd, &buf).is_err() {
            return;
        }
    }
}

fn rpc_echo(_: (), end: ServerEnd<u64, u64>) {
    let _ = rpc::serve(end, |x: u64| Ok::<_, String>(x));
}

fn identity(x: u64) -> u64 {
    x
}

fn spin(n: u64) -> u64 {
    // About 2 ms of arithmetic that the optimizer cannot skip.
    let mut x = n;
    for i in 0..2_000_000u64 {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

fn main() {
    // Pin before init(): the fork server, and so every worker it forks,
    // inherits CPU 0. Not in a re-executed worker, which also starts here
    // and must keep the affinity it inherited.
    if std::env::var_os(procwire::ENV_ENTRY).is_none() {
        util::pin(&[0]);
    }
    procwire::init().expect("procwire::init");
    let mut c = util::criterion(Duration::from_millis(500), Duration::from_secs(3));

    let mut g = c.benchmark_group("roundtrip");
    {
        let (mut child, ch) = task(raw_echo, ()).via(How::Server).spawn().unwrap();
        let (ours, theirs) = procwire::socket_pair(procwire::Kind::Stream).unwrap();
        ch.send(Fd::from(std::os::fd::OwnedFd::from(theirs)))
            .unwrap();
        let fd = ours.as_fd();
        g.bench_function("raw", |b| {
            b.iter(|| {
                let msg = black_box(42u64).to_le_bytes();
                rustix::io::write(fd, &msg).unwrap();
                let mut back = [0u8; 8];
                let mut got = 0;
                while got < 8 {
                    got += rustix::io::read(fd, &mut back[got..]).unwrap();
                }
                u64::from_le_bytes(back)
            })
        });
        drop((ch, ours));
        child.wait().unwrap();
    }
    {
        let (mut child, end) = task(rpc_echo, ()).via(How::Server).spawn().unwrap();
        let client = Client::new(end);
        g.bench_function("rpc_call", |b| {
            b.iter(|| client.call(black_box(42)).unwrap())
        });
        drop(client);
        child.wait().unwrap();
    }
    {
        let pool = Pool::builder(identity).workers(1).build().unwrap();
        g.bench_function("pool_call", |b| {
            b.iter(|| pool.call(black_box(42)).unwrap())
        });
        g.bench_function("pool_submit_wait", |b| {
            b.iter(|| pool.submit(black_box(42)).unwrap().wait().unwrap())
        });
        pool.shutdown().unwrap();
    }
    g.finish();

    // Both CPUs again; re-executed workers are children of this process and
    // inherit that (the fork server's would stay on CPU 0).
    util::pin(&[0, 1]);
    let mut g = c.benchmark_group("cpu_bound");
    g.sample_size(10);
    for workers in [1, 2] {
        let pool = Pool::builder(spin)
            .workers(workers)
            .via(How::Reexec)
            .build()
            .unwrap();
        g.bench_function(format!("workers_{workers}"), |b| {
            b.iter(|| {
                pool.map(0..40)
                    .map(Result::unwrap)
                    .fold(0, u64::wrapping_add)
            })
        });
        pool.shutdown().unwrap();
    }
    g.finish();
    c.final_summary();
}
