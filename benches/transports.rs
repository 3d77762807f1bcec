//! Typed round trips on every transport, for criterion's regression
//! tracking: a `ByteBuf` of 64 B and 4 KiB to a forked echo and back, both
//! processes pinned to CPU 0. The comparison with raw syscalls in the same
//! run is `procwire bench` (see docs/performance.md).
//!
//! `cargo bench --bench transports`

use std::hint::black_box;
use std::time::Duration;

mod util;
use procwire::{ByteBuf, Duplex, Kind, Shm, SocketPair};

/// Two connected ends of a two-way transport. (Pipes are one-way: their
/// round trips are in `procwire bench`.)
fn ends(name: &str) -> (Duplex<ByteBuf, ByteBuf>, Duplex<ByteBuf, ByteBuf>) {
    match name {
        "stream" => SocketPair::new(Kind::Stream).duplex(),
        "seqpacket" => SocketPair::new(Kind::SeqPacket).duplex(),
        "dgram" => SocketPair::new(Kind::Datagram).duplex(),
        _ => Shm::new().duplex(),
    }
    .expect("a channel")
}

fn main() {
    util::pin(&[0]);
    let mut c = util::criterion(Duration::from_millis(300), Duration::from_secs(2));
    let mut g = c.benchmark_group("typed_round_trip");
    for name in ["stream", "seqpacket", "dgram", "shm"] {
        for size in [64usize, 4096] {
            let (ours, theirs) = ends(name);
            let mut child = procwire::fork(theirs, |ch| {
                for m in ch.iter() {
                    if ch.send(m.unwrap()).is_err() {
                        return;
                    }
                }
            })
            .expect("fork (the bench runs single-threaded)");
            let msg = vec![7u8; size];
            g.bench_function(format!("{name}/{size}"), |b| {
                b.iter(|| {
                    ours.send(ByteBuf::from(black_box(msg.clone()))).unwrap();
                    ours.recv().unwrap()
                })
            });
            drop(ours);
            // A datagram socket has no end of file for the echo to see.
            let _ = child.kill();
            child.wait().unwrap();
        }
    }
    g.finish();
    c.final_summary();
}
