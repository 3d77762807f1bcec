//! Round trips of large messages (1 and 4 MiB) between two threads: over
//! a stream socket, over shared memory with the default 1 MiB rings (the
//! message does not fit: it goes through the writer's spill file), and
//! over rings large enough to carry it inline. Each figure is the median
//! of five rounds.
//!
//! `taskset -c 0 cargo run --release --example shm_large`

use std::time::Instant;

use procwire::{ByteBuf, Duplex, Kind, Shm, SocketPair};

/// Median microseconds per round trip of `size` bytes over `a`, echoed by
/// `b` in another thread.
fn round_trips(a: Duplex<ByteBuf, ByteBuf>, b: Duplex<ByteBuf, ByteBuf>, size: usize) -> f64 {
    let echo = std::thread::spawn(move || {
        for m in b.iter() {
            if b.send(m.expect("a message")).is_err() {
                return;
            }
        }
    });
    let msg = ByteBuf::from(vec![3u8; size]);
    let n = 100;
    let mut rounds: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                a.send_ref(&msg).expect("send");
                assert_eq!(a.recv().expect("echo").len(), size);
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
        })
        .collect();
    drop(a);
    echo.join().expect("the echo thread");
    rounds.sort_by(f64::total_cmp);
    rounds[2]
}

fn main() -> procwire::Result<()> {
    for size in [1 << 20, 4 << 20] {
        let (a, b) = SocketPair::new(Kind::Stream).duplex()?;
        let stream = round_trips(a, b, size);
        let (a, b) = Shm::new().duplex()?;
        let spilled = round_trips(a, b, size);
        let (a, b) = Shm::new().capacity(4 * size).duplex()?;
        let inline = round_trips(a, b, size);
        println!(
            "{} MiB: stream socket {stream:.0} µs, shm with 1 MiB rings (spill file) \
             {spilled:.0} µs, shm with {} MiB rings (inline) {inline:.0} µs",
            size >> 20,
            (4 * size) >> 20
        );
    }
    Ok(())
}
