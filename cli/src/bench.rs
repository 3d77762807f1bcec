//! `procwire bench`: every procwire transport against the raw syscalls of
//! the same transport, measured in one run on this machine.
//!
//! Each measurement forks its peer (this process is single-threaded: the
//! progress bar draws from this thread). Round trips are timed one by one
//! (median and p99) against an echoing child; throughput is a one-way stream
//! of messages into a child that acknowledges the last. Raw baselines use
//! read(2)/write(2) or send(2)/recv(2) directly, without framing or codec;
//! shared memory, which has no syscall of its own, is compared with a raw
//! SEQPACKET socket pair (a stream socket beyond one datagram). procwire rows
//! send a `ByteBuf` (postcard).

use std::io::IsTerminal;
use std::os::fd::{OwnedFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use procwire::{ByteBuf, Duplex, Inherit, Kind, Options, Receiver, Sender};
use serde::Serialize;

/// What `procwire bench` was asked to measure.
pub struct Config {
    pub quick: bool,
    pub json: bool,
    pub pin: Pin,
    pub transports: Vec<Transport>,
    pub sizes: Vec<usize>,
}

/// Where the two processes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Pin {
    /// Both on CPU 0 (the default: no cross-CPU wake-ups, which cost ~30 µs
    /// on a small VM and make round trips bimodal).
    Same,
    /// Parent on CPU 0, child on CPU 1.
    Split,
    /// Wherever the scheduler puts them.
    None,
}

/// A transport to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Pipe,
    Stream,
    Seqpacket,
    Dgram,
    Shm,
}

impl Transport {
    pub const ALL: [Transport; 5] = [
        Transport::Pipe,
        Transport::Stream,
        Transport::Seqpacket,
        Transport::Dgram,
        Transport::Shm,
    ];

    fn name(self) -> &'static str {
        match self {
            Transport::Pipe => "pipe",
            Transport::Stream => "stream",
            Transport::Seqpacket => "seqpacket",
            Transport::Dgram => "dgram",
            Transport::Shm => "shm",
        }
    }

    /// The raw baseline: the same syscalls without procwire. Shared memory
    /// has none of its own: the fastest socket that carries `size` in one
    /// message (SEQPACKET), or a stream beyond one datagram.
    fn baseline(self, size: usize) -> Transport {
        match self {
            Transport::Shm if Transport::Seqpacket.carries(size) => Transport::Seqpacket,
            Transport::Shm => Transport::Stream,
            t => t,
        }
    }

    /// Whether one message of `size` fits the transport at all.
    fn carries(self, size: usize) -> bool {
        match self {
            // One datagram: SO_SNDBUF (212,992 bytes by default) less overhead.
            Transport::Seqpacket | Transport::Dgram => size <= 200_000,
            _ => true,
        }
    }
}

/// One end of a measured link, raw or procwire.
enum Link {
    /// A byte stream: a pipe pair or a stream socket (tx and rx may be one).
    RawStream { tx: OwnedFd, rx: OwnedFd },
    /// A message socket: one send, one recv per message.
    RawMessage(OwnedFd),
    /// A procwire two-way channel.
    Wire(Duplex<ByteBuf, ByteBuf>),
    /// procwire over two pipes.
    WirePipes(Sender<ByteBuf>, Receiver<ByteBuf>),
}

impl Inherit for Link {
    fn descriptors(&self, out: &mut Vec<RawFd>) {
        match self {
            Link::RawStream { tx, rx } => {
                tx.descriptors(out);
                rx.descriptors(out);
            }
            Link::RawMessage(fd) => fd.descriptors(out),
            Link::Wire(d) => d.descriptors(out),
            Link::WirePipes(tx, rx) => {
                tx.descriptors(out);
                rx.descriptors(out);
            }
        }
    }

    fn handed_over(&self) {
        match self {
            Link::Wire(d) => d.handed_over(),
            Link::WirePipes(tx, rx) => {
                tx.handed_over();
                rx.handed_over();
            }
            Link::RawStream { .. } | Link::RawMessage(_) => {}
        }
    }
}

impl Link {
    /// Two connected ends of `t`, raw or through procwire.
    fn pair(t: Transport, wire: bool) -> Result<(Link, Link)> {
        let opts = Options::new().shm_capacity(4 << 20);
        let kind = match t {
            Transport::Stream => Kind::Stream,
            Transport::Dgram => Kind::Datagram,
            _ => Kind::SeqPacket,
        };
        Ok(match (t, wire) {
            (Transport::Pipe, false) => {
                let (r1, w1) = procwire::pipe()?;
                let (r2, w2) = procwire::pipe()?;
                (
                    Link::RawStream {
                        tx: w1.into(),
                        rx: r2.into(),
                    },
                    Link::RawStream {
                        tx: w2.into(),
                        rx: r1.into(),
                    },
                )
            }
            (Transport::Pipe, true) => {
                let (tx1, rx1) = opts.channel()?;
                let (tx2, rx2) = opts.channel()?;
                (Link::WirePipes(tx1, rx2), Link::WirePipes(tx2, rx1))
            }
            (Transport::Stream, false) => {
                let (a, b) = procwire::socket_pair(Kind::Stream)?;
                let (a, b): (OwnedFd, OwnedFd) = (a.into(), b.into());
                (
                    Link::RawStream {
                        tx: a.try_clone()?,
                        rx: a,
                    },
                    Link::RawStream {
                        tx: b.try_clone()?,
                        rx: b,
                    },
                )
            }
            (Transport::Shm, true) => {
                let (a, b) = opts.shm_duplex()?;
                (Link::Wire(a), Link::Wire(b))
            }
            (_, false) => {
                let (a, b) = procwire::socket_pair(kind)?;
                (Link::RawMessage(a.into()), Link::RawMessage(b.into()))
            }
            (_, true) => {
                let (a, b) = opts.duplex(kind)?;
                (Link::Wire(a), Link::Wire(b))
            }
        })
    }

    fn send(&self, msg: &[u8]) -> Result<()> {
        match self {
            Link::RawStream { tx, .. } => {
                let mut buf = msg;
                while !buf.is_empty() {
                    let n = rustix::io::write(tx, buf)?;
                    buf = &buf[n..];
                }
            }
            Link::RawMessage(fd) => {
                rustix::net::send(fd, msg, rustix::net::SendFlags::empty())?;
            }
            Link::Wire(d) => d.send(ByteBuf::from(msg.to_vec()))?,
            Link::WirePipes(tx, _) => tx.send(ByteBuf::from(msg.to_vec()))?,
        }
        Ok(())
    }

    /// Receives one message of `size` bytes into `buf`.
    fn recv(&self, buf: &mut [u8]) -> Result<()> {
        match self {
            Link::RawStream { rx, .. } => {
                let mut at = 0;
                while at < buf.len() {
                    let n = rustix::io::read(rx, &mut buf[at..])?;
                    anyhow::ensure!(n > 0, "end of stream");
                    at += n;
                }
            }
            Link::RawMessage(fd) => {
                rustix::net::recv(fd, buf, rustix::net::RecvFlags::empty())?;
            }
            Link::Wire(d) => {
                let m = d.recv()?;
                anyhow::ensure!(m.len() == buf.len(), "wrong size");
            }
            Link::WirePipes(_, rx) => {
                let m = rx.recv()?;
                anyhow::ensure!(m.len() == buf.len(), "wrong size");
            }
        }
        Ok(())
    }
}

fn pin_to(cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        let mut set = rustix::thread::CpuSet::new();
        set.set(cpu);
        let _ = rustix::thread::sched_setaffinity(None, &set);
    }
}

fn cpus(p: Pin) -> (Option<usize>, Option<usize>) {
    match p {
        Pin::Same => (Some(0), Some(0)),
        Pin::Split => (Some(0), Some(1)),
        Pin::None => (None, None),
    }
}

/// Round trips and throughput of one transport, raw or procwire.
struct Measured {
    median_ns: u64,
    p99_ns: u64,
    throughput_mib_s: f64,
}

fn measure(t: Transport, wire: bool, size: usize, cfg: &Config) -> Result<Measured> {
    let budget = if cfg.quick {
        Duration::from_millis(30)
    } else {
        Duration::from_millis(300)
    };
    let (parent_cpu, child_cpu) = cpus(cfg.pin);
    pin_to(parent_cpu);

    // Round trips against an echoing child.
    let (ours, theirs) = Link::pair(t, wire)?;
    let mut child = procwire::fork(theirs, move |link| {
        pin_to(child_cpu);
        let mut buf = vec![0u8; size];
        while link.recv(&mut buf).is_ok() && link.send(&buf).is_ok() {}
    })?;
    let msg = vec![7u8; size];
    let mut back = vec![0u8; size];
    for _ in 0..20 {
        ours.send(&msg)?;
        ours.recv(&mut back)?;
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 50 || start.elapsed() < budget {
        let t0 = Instant::now();
        ours.send(&msg)?;
        ours.recv(&mut back)?;
        samples.push(t0.elapsed().as_nanos() as u64);
    }
    // A datagram socket has no end of file for the echo loop to see: end
    // the child outright (it has nothing left to do).
    drop(ours);
    child.kill()?;
    child.wait()?;
    samples.sort_unstable();
    let median_ns = samples[samples.len() / 2];
    let p99_ns = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];

    // One way: n messages into a child that acknowledges the last.
    let n = (budget.as_nanos() as u64 / median_ns.max(1)).clamp(16, 500_000);
    let (ours, theirs) = Link::pair(t, wire)?;
    let mut child = procwire::fork(theirs, move |link| {
        pin_to(child_cpu);
        let mut buf = vec![0u8; size];
        for _ in 0..n {
            if link.recv(&mut buf).is_err() {
                return;
            }
        }
        let _ = link.send(&buf);
    })?;
    let t0 = Instant::now();
    for _ in 0..n {
        ours.send(&msg)?;
    }
    ours.recv(&mut back)?;
    let secs = t0.elapsed().as_secs_f64();
    drop(ours);
    child.wait()?;
    Ok(Measured {
        median_ns,
        p99_ns,
        throughput_mib_s: n as f64 * size as f64 / secs / (1 << 20) as f64,
    })
}

/// One row of the table (and of `--json`).
#[derive(Serialize)]
struct Row {
    transport: String,
    size: usize,
    median_ns: u64,
    p99_ns: u64,
    throughput_mib_s: f64,
    baseline: String,
    baseline_median_ns: u64,
    baseline_p99_ns: u64,
    baseline_throughput_mib_s: f64,
    /// procwire's round-trip median over the baseline's.
    ratio: f64,
    /// procwire's one-way throughput over the baseline's.
    throughput_ratio: f64,
}

fn human_size(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

fn micros(ns: u64) -> String {
    format!("{:.2} µs", ns as f64 / 1000.0)
}

/// memcpy's bandwidth: a 1 MiB copy that stays in cache, and copies through
/// 64 MiB that do not: the ceiling of any transport that copies.
fn memcpy_ceiling(quick: bool) -> (f64, f64) {
    let rounds = if quick { 20 } else { 200 };
    let small = vec![1u8; 1 << 20];
    let mut dst = vec![0u8; 1 << 20];
    let t = Instant::now();
    for _ in 0..rounds {
        dst.copy_from_slice(std::hint::black_box(&small));
    }
    let hot = (rounds as f64) / t.elapsed().as_secs_f64();
    let big = vec![1u8; 64 << 20];
    let mut big_dst = vec![0u8; 64 << 20];
    let t = Instant::now();
    let big_rounds = if quick { 1 } else { 4 };
    for _ in 0..big_rounds {
        big_dst.copy_from_slice(std::hint::black_box(&big));
    }
    let cold = (64 * big_rounds) as f64 / t.elapsed().as_secs_f64();
    std::hint::black_box((&dst, &big_dst));
    (cold, hot)
}

/// Runs the benchmark and prints the table (or JSON).
pub fn run(cfg: Config) -> Result<()> {
    let cases: Vec<(Transport, usize)> = cfg
        .transports
        .iter()
        .flat_map(|&t| cfg.sizes.iter().map(move |&s| (t, s)))
        .filter(|&(t, s)| t.carries(s) && t.baseline(s).carries(s))
        .collect();
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(cases.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    for (t, size) in cases {
        bar.set_message(format!("{} {}", t.name(), human_size(size)));
        // The same size, the raw baseline and procwire back to back.
        let base = measure(t.baseline(size), false, size, &cfg)
            .with_context(|| format!("raw {} at {size} bytes", t.baseline(size).name()))?;
        let wire = measure(t, true, size, &cfg)
            .with_context(|| format!("procwire {} at {size} bytes", t.name()))?;
        if !cfg.json && !std::io::stderr().is_terminal() {
            eprintln!("measured {} {}", t.name(), human_size(size));
        }
        rows.push(Row {
            transport: t.name().into(),
            size,
            median_ns: wire.median_ns,
            p99_ns: wire.p99_ns,
            throughput_mib_s: (wire.throughput_mib_s * 10.0).round() / 10.0,
            baseline: format!("raw {}", t.baseline(size).name()),
            baseline_median_ns: base.median_ns,
            baseline_p99_ns: base.p99_ns,
            baseline_throughput_mib_s: (base.throughput_mib_s * 10.0).round() / 10.0,
            ratio: wire.median_ns as f64 / base.median_ns.max(1) as f64,
            throughput_ratio: wire.throughput_mib_s / base.throughput_mib_s.max(f64::MIN_POSITIVE),
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    if cfg.json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    println!(
        "{:<10} {:>8} {:>10} {:>10} {:<15} {:>10} {:>7} {:>9} {:>9} {:>7}",
        "transport",
        "size",
        "median",
        "p99",
        "baseline",
        "its median",
        "ratio",
        "MiB/s",
        "raw MiB/s",
        "ratio"
    );
    for r in &rows {
        println!(
            "{:<10} {:>8} {:>10} {:>10} {:<15} {:>10} {:>6.2}x {:>9.0} {:>9.0} {:>6.2}x",
            r.transport,
            human_size(r.size),
            micros(r.median_ns),
            micros(r.p99_ns),
            r.baseline,
            micros(r.baseline_median_ns),
            r.ratio,
            r.throughput_mib_s,
            r.baseline_throughput_mib_s,
            r.throughput_ratio
        );
    }
    let (mib, hot) = memcpy_ceiling(cfg.quick);
    println!(
        "\nceiling: memcpy of 1 MiB, cache-hot, in this process: {hot:.0} MiB/s; from memory (64 MiB): {mib:.0} MiB/s"
    );
    println!(
        "round trips of one message and its echo, {} pinning; ratios = procwire / raw, same run",
        match cfg.pin {
            Pin::Same => "both processes on CPU 0",
            Pin::Split => "processes on CPUs 0 and 1",
            Pin::None => "no",
        }
    );
    Ok(())
}
