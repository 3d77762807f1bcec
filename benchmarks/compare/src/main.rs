//! procwire against ipc-channel 0.23, iceoryx2 0.10 and raw syscalls, all
//! measured in one run, each case a round trip of one message and its echo
//! between two processes.
//!
//! `cargo run --release --manifest-path benchmarks/compare/Cargo.toml [-- --json] [--rounds N]`
//!
//! Each case (a message size and a placement) is measured in rounds (7
//! unless `--rounds` says): in each, every implementation right after a
//! measurement of the raw baseline of its own, each with a peer of its own.
//! A row's median and p99 are the medians of its rounds' figures; its
//! ratio is the median of its per-round ratios (the round's median over
//! the baseline measured just before), as in `procwire bench`, and their
//! spread is reported beside it. On a noisy machine that runs in spells,
//! a ratio from one measurement of each, taken seconds apart, moved by 10%
//! between runs of the same code, and so did one against a baseline
//! measured once per round, seconds before some of the round's rows.
//!
//! Blocking transports run with both processes pinned to CPU 0; the spinning
//! ones (procwire shm, iceoryx2 busy-polling) with the processes on CPUs 0
//! and 1. Peers of ipc-channel and iceoryx2 are this program re-executed (how
//! those libraries connect processes); raw and procwire peers are forked.

use std::time::{Duration, Instant};

use ipc_channel::ipc::{
    self, IpcBytesReceiver, IpcBytesSender, IpcOneShotServer, IpcReceiver, IpcSender,
};
use procwire::{ByteBuf, Kind, Shm, SocketPair};
use serde::{Deserialize, Serialize};

/// A 64-byte message.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
struct Msg64 {
    a: [u64; 8],
}

fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).expect("pin");
}

/// How long one round measures one implementation.
const BUDGET: Duration = Duration::from_millis(200);

/// Median and p99 of timed round trips (after a warm-up).
fn time(mut rt: impl FnMut()) -> (f64, f64) {
    for _ in 0..100 {
        rt();
    }
    let mut s = Vec::new();
    let start = Instant::now();
    while s.len() < 50 || start.elapsed() < BUDGET {
        let t = Instant::now();
        rt();
        s.push(t.elapsed().as_nanos() as f64);
    }
    s.sort_by(|a, b| a.total_cmp(b));
    (s[s.len() / 2], s[s.len() * 99 / 100])
}

/// Round trips through a SEQPACKET socket pair with nothing but send(2) and
/// recv(2) on it (rustix's thin wrappers): no control buffer, no framing,
/// no procwire. Only the fork that starts the echo goes through procwire.
fn raw_seqpacket(size: usize, child_cpu: usize) -> (f64, f64) {
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let mut child = procwire::fork(procwire::Socket::from_fd(b).unwrap(), move |b| {
        pin(child_cpu);
        let b = std::os::fd::OwnedFd::from(b);
        let mut buf = vec![0u8; size];
        while let Ok((n, _)) = rustix::net::recv(&b, &mut buf, RecvFlags::empty()) {
            if n == 0 || rustix::net::send(&b, &buf[..n], SendFlags::empty()).is_err() {
                return;
            }
        }
    })
    .unwrap();
    let msg = vec![1u8; size];
    let mut back = vec![0u8; size];
    let r = time(|| {
        rustix::net::send(&a, &msg, SendFlags::empty()).unwrap();
        rustix::net::recv(&a, &mut back, RecvFlags::empty()).unwrap();
    });
    drop(a);
    child.wait().unwrap();
    r
}

/// Round trips of `size` bytes through a raw stream socket pair (for sizes
/// beyond one datagram).
fn raw_stream(size: usize, child_cpu: usize) -> (f64, f64) {
    use std::io::{Read, Write};
    let (a, b) = procwire::socket_pair(Kind::Stream).unwrap();
    let mut child = procwire::fork(b, move |b| {
        pin(child_cpu);
        let mut b = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(b));
        let mut buf = vec![0u8; size];
        while b.read_exact(&mut buf).is_ok() && b.write_all(&buf).is_ok() {}
    })
    .unwrap();
    let mut a = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(a));
    let msg = vec![1u8; size];
    let mut back = vec![0u8; size];
    let r = time(|| {
        a.write_all(&msg).unwrap();
        a.read_exact(&mut back).unwrap();
    });
    drop(a);
    child.wait().unwrap();
    r
}

/// Round trips of `msg` through a procwire duplex of `kind` (shared memory
/// when `None`) to a forked echo.
fn procwire_echo<T>(
    kind: Option<Kind>,
    child_cpu: usize,
    msg: T,
    same: impl Fn(&T, &T) -> bool,
) -> (f64, f64)
where
    T: Serialize + serde::de::DeserializeOwned,
{
    let (a, b) = match kind {
        Some(k) => SocketPair::new(k).duplex::<T, T>().unwrap(),
        None => Shm::new().capacity(4 << 20).duplex::<T, T>().unwrap(),
    };
    let mut child = procwire::fork(b, move |b| {
        pin(child_cpu);
        for m in b.iter() {
            if b.send(m.unwrap()).is_err() {
                return;
            }
        }
    })
    .unwrap();
    let r = time(|| {
        a.send_ref(&msg).unwrap();
        assert!(same(&a.recv().unwrap(), &msg));
    });
    drop(a);
    child.wait().unwrap();
    r
}

fn procwire_struct(kind: Option<Kind>, child_cpu: usize) -> (f64, f64) {
    procwire_echo(kind, child_cpu, Msg64 { a: [7; 8] }, |x, y| x == y)
}

fn procwire_bytes(size: usize, kind: Option<Kind>, child_cpu: usize) -> (f64, f64) {
    procwire_echo(kind, child_cpu, ByteBuf::from(vec![3u8; size]), |x, y| {
        x.len() == y.len()
    })
}

/// What the parent asks an ipc-channel child to echo.
#[derive(Serialize, Deserialize)]
enum IpcSetup {
    Struct(IpcSender<Msg64>, IpcReceiver<Msg64>),
    Vec(IpcSender<Vec<u8>>, IpcReceiver<Vec<u8>>),
    Bytes(IpcBytesSender, IpcBytesReceiver),
}

fn ipc_child(name: String, cpu: usize) {
    pin(cpu);
    let (tx, rx) = ipc::channel::<IpcSetup>().unwrap();
    IpcSender::connect(name).unwrap().send(tx).unwrap();
    let _keep = rx;
    match _keep.recv().unwrap() {
        IpcSetup::Struct(tx, rx) => {
            while let Ok(m) = rx.recv() {
                tx.send(m).unwrap();
            }
        }
        IpcSetup::Vec(tx, rx) => {
            while let Ok(m) = rx.recv() {
                tx.send(m).unwrap();
            }
        }
        IpcSetup::Bytes(tx, rx) => {
            while let Ok(m) = rx.recv() {
                tx.send(&m).unwrap();
            }
        }
    }
}

fn ipc_spawn(cpu: usize) -> (std::process::Child, IpcSender<IpcSetup>) {
    let (server, name) = IpcOneShotServer::<IpcSender<IpcSetup>>::new().unwrap();
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["ipc-child", &name, &cpu.to_string()])
        .spawn()
        .unwrap();
    let (_, setup_tx) = server.accept().unwrap();
    (child, setup_tx)
}

fn ipc_struct(cpu: usize) -> (f64, f64) {
    let (mut child, setup) = ipc_spawn(cpu);
    let (tx, their_rx) = ipc::channel::<Msg64>().unwrap();
    let (their_tx, rx) = ipc::channel::<Msg64>().unwrap();
    setup.send(IpcSetup::Struct(their_tx, their_rx)).unwrap();
    let msg = Msg64 { a: [7; 8] };
    let r = time(|| {
        tx.send(msg).unwrap();
        assert_eq!(rx.recv().unwrap(), msg);
    });
    drop((tx, setup));
    child.wait().unwrap();
    r
}

fn ipc_vec(size: usize, cpu: usize) -> (f64, f64) {
    let (mut child, setup) = ipc_spawn(cpu);
    let (tx, their_rx) = ipc::channel::<Vec<u8>>().unwrap();
    let (their_tx, rx) = ipc::channel::<Vec<u8>>().unwrap();
    setup.send(IpcSetup::Vec(their_tx, their_rx)).unwrap();
    let msg = vec![3u8; size];
    let r = time(|| {
        tx.send(msg.clone()).unwrap();
        assert_eq!(rx.recv().unwrap().len(), size);
    });
    drop((tx, setup));
    child.wait().unwrap();
    r
}

fn ipc_bytes(size: usize, cpu: usize) -> (f64, f64) {
    let (mut child, setup) = ipc_spawn(cpu);
    let (tx, their_rx) = ipc::bytes_channel().unwrap();
    let (their_tx, rx) = ipc::bytes_channel().unwrap();
    setup.send(IpcSetup::Bytes(their_tx, their_rx)).unwrap();
    let msg = vec![3u8; size];
    let r = time(|| {
        tx.send(&msg).unwrap();
        assert_eq!(rx.recv().unwrap().len(), size);
    });
    drop((tx, setup));
    child.wait().unwrap();
    r
}

/// The event service that wakes a blocked iceoryx2 peer (`name` + "/ev").
fn ice_events(
    node: &iceoryx2::prelude::Node<iceoryx2::prelude::ipc::Service>,
    name: &str,
) -> iceoryx2::service::port_factory::event::PortFactory<iceoryx2::prelude::ipc::Service> {
    let name = format!("{name}/ev");
    node.service_builder(&name.as_str().try_into().unwrap())
        .event()
        .open_or_create()
        .unwrap()
}

fn ice_child(ping: String, pong: String, cpu: usize, blocking: bool) {
    use iceoryx2::prelude::*;
    let (ping_name, pong_name) = (ping.clone(), pong.clone());
    pin(cpu);
    let node = NodeBuilder::new().create::<ipc::Service>().unwrap();
    let ping = node
        .service_builder(&ping.as_str().try_into().unwrap())
        .publish_subscribe::<[u64; 8]>()
        .open_or_create()
        .unwrap();
    let pong = node
        .service_builder(&pong.as_str().try_into().unwrap())
        .publish_subscribe::<[u64; 8]>()
        .open_or_create()
        .unwrap();
    let sub = ping.subscriber_builder().create().unwrap();
    let publ = pong.publisher_builder().create().unwrap();
    let listener = ice_events(&node, &ping_name)
        .listener_builder()
        .create()
        .unwrap();
    let notifier = ice_events(&node, &pong_name)
        .notifier_builder()
        .create()
        .unwrap();
    // Echo until the parent sends `STOP` (busy polling, or sleeping on the
    // event service until notified); a parent that vanished without it is
    // given up after a few quiet seconds.
    let mut heard = Instant::now();
    while heard.elapsed() < Duration::from_secs(5) {
        if let Some(s) = sub.receive().unwrap() {
            let m = *s;
            if m == STOP {
                return;
            }
            heard = Instant::now();
            publ.send_copy(m).unwrap();
            if blocking {
                notifier.notify().unwrap();
            }
        } else if blocking {
            listener
                .timed_wait(|_| {}, Duration::from_millis(100))
                .unwrap();
        }
    }
}

/// The sample that ends an iceoryx2 echo.
const STOP: [u64; 8] = [u64::MAX; 8];

/// A 64 B round trip through iceoryx2 publish/subscribe to a re-executed
/// echo: busy polling, or (`blocking`) sleeping on an event service that
/// the sender notifies after each sample.
fn iceoryx2_echo(cpu: usize, blocking: bool) -> (f64, f64) {
    use iceoryx2::prelude::*;
    let tag = std::process::id();
    let (ping_name, pong_name) = (
        format!("procwire/cmp/ping/{tag}"),
        format!("procwire/cmp/pong/{tag}"),
    );
    let node = NodeBuilder::new().create::<ipc::Service>().unwrap();
    let ping = node
        .service_builder(&ping_name.as_str().try_into().unwrap())
        .publish_subscribe::<[u64; 8]>()
        .open_or_create()
        .unwrap();
    let pong = node
        .service_builder(&pong_name.as_str().try_into().unwrap())
        .publish_subscribe::<[u64; 8]>()
        .open_or_create()
        .unwrap();
    let publ = ping.publisher_builder().create().unwrap();
    let sub = pong.subscriber_builder().create().unwrap();
    let notifier = ice_events(&node, &ping_name)
        .notifier_builder()
        .create()
        .unwrap();
    let listener = ice_events(&node, &pong_name)
        .listener_builder()
        .create()
        .unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "ice-child",
            &ping_name,
            &pong_name,
            &cpu.to_string(),
            &blocking.to_string(),
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300)); // the child connects
    let msg = [7u64; 8];
    let r = time(|| {
        publ.send_copy(msg).unwrap();
        if blocking {
            notifier.notify().unwrap();
        }
        loop {
            if let Some(s) = sub.receive().unwrap() {
                assert_eq!(*s, msg);
                break;
            }
            if blocking {
                listener
                    .timed_wait(|_| {}, Duration::from_millis(100))
                    .unwrap();
            }
        }
    });
    publ.send_copy(STOP).unwrap();
    if blocking {
        notifier.notify().unwrap();
    }
    child.wait().unwrap();
    r
}

/// One implementation of a case: its name and one round's measurement.
struct Contender {
    name: &'static str,
    run: Box<dyn Fn() -> (f64, f64)>,
}

fn contender(name: &'static str, run: impl Fn() -> (f64, f64) + 'static) -> Contender {
    Contender {
        name,
        run: Box::new(run),
    }
}

/// A message size and placement: the raw baseline and the implementations
/// measured against it, round after round.
struct Case {
    name: &'static str,
    raw: Box<dyn Fn() -> (f64, f64)>,
    contenders: Vec<Contender>,
}

/// One output row: medians over the rounds, and the spread of the
/// per-round ratios.
struct Row {
    case: &'static str,
    implementation: &'static str,
    median_ns: f64,
    p99_ns: f64,
    raw_median_ns: f64,
    ratio: f64,
    ratio_low: f64,
    ratio_high: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Measures `case` for `rounds` rounds: in each, every implementation
/// right after a measurement of the baseline of its own.
fn run_case(case: &Case, rounds: usize, rows: &mut Vec<Row>) {
    let mut raw = Vec::new();
    // Per implementation: (median, p99, ratio to the baseline just before).
    let mut got: Vec<Vec<(f64, f64, f64)>> = case.contenders.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        eprintln!("{}: round {} of {rounds}", case.name, round + 1);
        for (c, into) in case.contenders.iter().zip(&mut got) {
            let base = (case.raw)().0;
            let (m, p99) = (c.run)();
            raw.push(base);
            into.push((m, p99, m / base));
        }
    }
    let raw_median = median(raw);
    for (c, got) in case.contenders.iter().zip(got) {
        let ratios: Vec<f64> = got.iter().map(|g| g.2).collect();
        rows.push(Row {
            case: case.name,
            implementation: c.name,
            median_ns: median(got.iter().map(|g| g.0).collect()),
            p99_ns: median(got.iter().map(|g| g.1).collect()),
            raw_median_ns: raw_median,
            ratio: median(ratios.clone()),
            ratio_low: ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratio_high: ratios.iter().copied().fold(0.0, f64::max),
        });
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("ipc-child") => return ipc_child(args[2].clone(), args[3].parse().unwrap()),
        Some("ice-child") => {
            return ice_child(
                args[2].clone(),
                args[3].clone(),
                args[4].parse().unwrap(),
                args[5] == "true",
            );
        }
        _ => {}
    }
    let rounds = match args.iter().position(|a| a == "--rounds") {
        Some(i) => args
            .get(i + 1)
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .expect("--rounds takes a positive number"),
        None => 7,
    };
    pin(0);
    let cases = [
        // One CPU: blocking transports.
        Case {
            name: "64 B struct",
            raw: Box::new(|| raw_seqpacket(64, 0)),
            contenders: vec![
                contender("procwire seqpacket", || {
                    procwire_struct(Some(Kind::SeqPacket), 0)
                }),
                contender("procwire shm", || procwire_struct(None, 0)),
                contender("ipc-channel", || ipc_struct(0)),
                contender("iceoryx2 (event wait)", || iceoryx2_echo(0, true)),
            ],
        },
        Case {
            name: "4 KiB bytes",
            raw: Box::new(|| raw_seqpacket(4096, 0)),
            contenders: vec![
                contender("procwire seqpacket (ByteBuf)", || {
                    procwire_bytes(4096, Some(Kind::SeqPacket), 0)
                }),
                contender("procwire shm (ByteBuf)", || procwire_bytes(4096, None, 0)),
                contender("ipc-channel (Vec<u8>)", || ipc_vec(4096, 0)),
                contender("ipc-channel (bytes channel)", || ipc_bytes(4096, 0)),
            ],
        },
        // 1 MiB: beyond one datagram, against a raw stream socket.
        Case {
            name: "1 MiB bytes",
            raw: Box::new(|| raw_stream(1 << 20, 0)),
            contenders: vec![
                contender("procwire stream (ByteBuf)", || {
                    procwire_bytes(1 << 20, Some(Kind::Stream), 0)
                }),
                contender("procwire seqpacket (ByteBuf)", || {
                    procwire_bytes(1 << 20, Some(Kind::SeqPacket), 0)
                }),
                contender("procwire shm (ByteBuf)", || {
                    procwire_bytes(1 << 20, None, 0)
                }),
                contender("ipc-channel (Vec<u8>)", || ipc_vec(1 << 20, 0)),
                contender("ipc-channel (bytes channel)", || ipc_bytes(1 << 20, 0)),
            ],
        },
        // Two CPUs: spinning transports, against the same raw socket there.
        Case {
            name: "64 B, CPUs 0+1",
            raw: Box::new(|| raw_seqpacket(64, 1)),
            contenders: vec![
                contender("procwire shm", || procwire_struct(None, 1)),
                contender("iceoryx2 (busy polling)", || iceoryx2_echo(1, false)),
                contender("iceoryx2 (event wait)", || iceoryx2_echo(1, true)),
            ],
        },
    ];
    let mut rows = Vec::new();
    for case in &cases {
        run_case(case, rounds, &mut rows);
    }
    if args.iter().any(|a| a == "--json") {
        // For scripts/figures (no serde_json here: the strings are plain).
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"case\":\"{}\",\"implementation\":\"{}\",\"rounds\":{rounds},\
                     \"median_ns\":{:.0},\"p99_ns\":{:.0},\"raw_median_ns\":{:.0},\
                     \"ratio\":{:.4},\"ratio_low\":{:.4},\"ratio_high\":{:.4}}}",
                    r.case,
                    r.implementation,
                    r.median_ns,
                    r.p99_ns,
                    r.raw_median_ns,
                    r.ratio,
                    r.ratio_low,
                    r.ratio_high
                )
            })
            .collect();
        println!("[{}]", items.join(",\n"));
        return;
    }
    println!(
        "| case | implementation | median | p99 | raw median (SEQPACKET; stream for 1 MiB) | ratio | ratio per round ({rounds}) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.2} µs | {:.2} µs | {:.2} µs | {:.2}x | {:.2}–{:.2}x |",
            r.case,
            r.implementation,
            r.median_ns / 1000.0,
            r.p99_ns / 1000.0,
            r.raw_median_ns / 1000.0,
            r.ratio,
            r.ratio_low,
            r.ratio_high
        );
    }
}
