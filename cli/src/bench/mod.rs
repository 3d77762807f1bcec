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

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use procwire::baseline::{RawReader, RawWriter, raw_ring};
use procwire::{ByteBuf, Duplex, Inherit, Kind, Receiver, Sender, ShmWait};
use serde::Serialize;

mod asynch;
mod lean;
mod link;
pub use link::Receive;
mod measure;
mod nats;

use link::Link;
use measure::{Measured, measure, measure_pair};
pub use measure::{peer, roundtrips};

/// What `procwire bench` was asked to measure.
pub struct Config {
    pub quick: bool,
    pub json: bool,
    pub save: Option<std::path::PathBuf>,
    pub pin: Pin,
    pub transports: Vec<Transport>,
    pub sizes: Vec<usize>,
    /// How procwire's ends receive: `recv`, `recv_with` or `recv_into`.
    pub receive: Receive,
    /// procwire's socket channels carry no descriptors
    /// (`Options::descriptors(false)`).
    pub no_fds: bool,
    /// Add the `async-<transport>` rows: procwire's awaitable ends against
    /// raw tokio I/O.
    pub asynch: bool,
}

/// Where the two processes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Pin {
    /// Blocking transports both on CPU 0; shared memory on one CPU and on
    /// two (spinning only on two).
    Auto,
    /// Both on CPU 0 (no cross-CPU wake-ups, which cost ~30 µs on a small
    /// VM and make round trips bimodal).
    Same,
    /// Parent on CPU 0, child on CPU 1.
    Split,
    /// Wherever the scheduler puts them.
    None,
}

impl Pin {
    fn name(self) -> &'static str {
        match self {
            Pin::Auto => "auto",
            Pin::Same => "same",
            Pin::Split => "split",
            Pin::None => "none",
        }
    }
}

/// A transport to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Transport {
    Pipe,
    Stream,
    Seqpacket,
    Dgram,
    /// Shared memory, adaptive waiter (the default).
    Shm,
    /// Shared memory, always spinning.
    ShmSpin,
    /// Shared memory, always yielding.
    ShmYield,
    /// Shared memory, always sleeping on a futex.
    ShmFutex,
    /// procwire over TCP on loopback (no key; its frames still encrypted); with `--remote`.
    Tcp,
    /// procwire over ZeroMQ DEALER sockets on loopback TCP; with `--remote`.
    Zmq,
    /// procwire RPC calls through a NATS server on loopback (started from
    /// `PROCWIRE_NATS_SERVER`, `nats-server` on the PATH or the project's
    /// `.venv`), against raw async-nats requests; with `--remote`.
    Nats,
}

impl Transport {
    pub const ALL: [Transport; 8] = [
        Transport::Pipe,
        Transport::Stream,
        Transport::Seqpacket,
        Transport::Dgram,
        Transport::Shm,
        Transport::ShmSpin,
        Transport::ShmYield,
        Transport::ShmFutex,
    ];

    /// The network transports `--remote` adds.
    pub const REMOTE: [Transport; 3] = [Transport::Tcp, Transport::Zmq, Transport::Nats];

    fn name(self) -> &'static str {
        match self {
            Transport::Pipe => "pipe",
            Transport::Stream => "stream",
            Transport::Seqpacket => "seqpacket",
            Transport::Dgram => "dgram",
            Transport::Shm => "shm",
            Transport::ShmSpin => "shm-spin",
            Transport::ShmYield => "shm-yield",
            Transport::ShmFutex => "shm-futex",
            Transport::Tcp => "tcp",
            Transport::Zmq => "zmq",
            Transport::Nats => "nats",
        }
    }

    fn remote(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Zmq | Transport::Nats)
    }

    /// How a shared-memory transport waits.
    fn wait(self) -> Option<ShmWait> {
        match self {
            Transport::Shm => Some(ShmWait::Adaptive),
            Transport::ShmSpin => Some(ShmWait::Spin),
            Transport::ShmYield => Some(ShmWait::Yield),
            Transport::ShmFutex => Some(ShmWait::Futex),
            _ => None,
        }
    }

    /// Where `--pin auto` measures it: blocking transports on one CPU;
    /// shared memory on one and on two, except that spinning is measured
    /// only on two (against a peer on its own CPU it spins out a whole time
    /// slice) and yielding only on one (on two it is spinning with
    /// syscalls).
    fn auto_pins(self) -> &'static [Pin] {
        match self {
            Transport::Shm | Transport::ShmFutex => &[Pin::Same, Pin::Split],
            Transport::ShmSpin => &[Pin::Split],
            _ => &[Pin::Same],
        }
    }

    /// Whether one message of `size` fits the transport at all.
    fn carries(self, size: usize) -> bool {
        match self {
            // The raw baseline sends one datagram: SO_SNDBUF (212,992 bytes by
            // default) less overhead. (procwire sends larger messages out of
            // line, which has no raw counterpart to compare with here.)
            Transport::Seqpacket | Transport::Dgram => size <= 200_000,
            // A NATS server's default max_payload is 1 MiB, with headers.
            Transport::Nats => size <= 512 << 10,
            _ => true,
        }
    }
}

/// One side of a comparison: procwire, the same syscalls by hand, or a
/// hand-written shared-memory ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Side {
    Wire(Transport),
    Raw(Transport),
    Ring(ShmWait),
    /// procwire's awaitable ends (`bench --async`).
    Async(Transport),
    /// Raw tokio I/O on the same kind of descriptor.
    RawAsync(Transport),
    /// The floor of a typed channel on a byte stream (`__roundtrips lean`).
    Lean(Transport),
    /// The same, awaited on tokio (`__roundtrips asynclean`).
    AsyncLean(Transport),
}

impl Side {
    fn remote(self) -> bool {
        matches!(self, Side::Wire(t) | Side::Raw(t) | Side::Async(t) if t.remote())
    }

    fn name(self) -> String {
        match self {
            Side::Wire(t) => t.name().into(),
            Side::Raw(Transport::Zmq) => "raw zeromq".into(),
            Side::Raw(Transport::Nats) => "raw async-nats".into(),
            Side::Raw(t) => format!("raw {}", t.name()),
            Side::Ring(w) => format!("raw ring {}", format!("{w:?}").to_lowercase()),
            Side::Async(t) => format!("async-{}", t.name()),
            Side::RawAsync(t) => format!("raw tokio {}", t.name()),
            Side::Lean(t) => format!("minimal {}", t.name()),
            Side::AsyncLean(t) => format!("minimal async {}", t.name()),
        }
    }
}

/// One row to measure: procwire against its baseline.
#[derive(Clone, Copy, Debug)]
struct Case {
    t: Transport,
    base: Side,
    size: usize,
    pin: Pin,
    /// An async row: procwire's awaitable ends measured.
    asynch: bool,
}

impl Case {
    /// What the row measures of procwire.
    fn side(&self) -> Side {
        if self.asynch {
            Side::Async(self.t)
        } else {
            Side::Wire(self.t)
        }
    }
}

/// The rows to measure for `cfg`: each transport at each size against its
/// raw syscalls; shared memory against raw SEQPACKET (a stream socket
/// beyond one datagram) and, at the largest size, against a raw two-copy
/// ring; the fixed waiting strategies at the smallest size against a raw
/// ring waiting the same way.
fn cases(cfg: &Config) -> Vec<Case> {
    let smallest = cfg.sizes.iter().copied().min().unwrap_or(64);
    let largest = cfg.sizes.iter().copied().max().unwrap_or(64);
    let mut out = Vec::new();
    for &t in &cfg.transports {
        let pins: &[Pin] = if cfg.pin == Pin::Auto {
            t.auto_pins()
        } else {
            std::slice::from_ref(&cfg.pin)
        };
        for &pin in pins {
            for &size in &cfg.sizes {
                // A fixed waiting strategy: against a raw ring waiting alike.
                if let Some(w) = t.wait().filter(|&w| w != ShmWait::Adaptive) {
                    if size == smallest {
                        let base = Side::Ring(w);
                        out.push(Case {
                            t,
                            base,
                            size,
                            pin,
                            asynch: false,
                        });
                    }
                    continue;
                }
                if t == Transport::Shm {
                    let raw = match Transport::Seqpacket.carries(size) {
                        true => Transport::Seqpacket,
                        false => Transport::Stream,
                    };
                    let base = Side::Raw(raw);
                    out.push(Case {
                        t,
                        base,
                        size,
                        pin,
                        asynch: false,
                    });
                    if size == largest && pin != Pin::Split {
                        let base = Side::Ring(ShmWait::Futex);
                        out.push(Case {
                            t,
                            base,
                            size,
                            pin,
                            asynch: false,
                        });
                    }
                } else if t.carries(size) {
                    out.push(Case {
                        t,
                        base: Side::Raw(t),
                        size,
                        pin,
                        asynch: false,
                    });
                }
            }
        }
    }
    if cfg.asynch {
        // One CPU, as the targets are set; every size asked for.
        for &t in &cfg.transports {
            let Some(raw) = asynch::raw_of(t) else {
                continue;
            };
            // ZeroMQ's baseline is the zeromq crate driven directly (on a
            // runtime already): the raw side of its blocking row.
            let base = match t {
                Transport::Zmq | Transport::Nats => Side::Raw(t),
                _ => Side::RawAsync(raw),
            };
            for &size in cfg
                .sizes
                .iter()
                .filter(|&&s| t.carries(s) && raw.carries(s))
            {
                out.push(Case {
                    t,
                    base,
                    size,
                    pin: Pin::Same,
                    asynch: true,
                });
            }
        }
    }
    out
}

/// One row of the table (and of `--json`).
#[derive(Serialize)]
struct Row {
    transport: String,
    size: usize,
    /// Where the processes ran: "same" (one CPU), "split" (two), "none".
    pin: &'static str,
    median_ns: u64,
    p99_ns: u64,
    throughput_mib_s: f64,
    baseline: String,
    baseline_median_ns: u64,
    baseline_p99_ns: u64,
    baseline_throughput_mib_s: f64,
    /// procwire's round trip over the baseline's: the median of the
    /// ratios of rounds taken in turn (`Measured::ratios`).
    ratio: f64,
    /// procwire's one-way throughput over the baseline's, likewise.
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

/// A cache-hot copy of 64 KiB with `memcpy` when the destination lies 8
/// bytes past the source modulo 4 KiB (where glibc's `rep movsb` aliases),
/// the same copy in 1 KiB pieces (how procwire copies payloads there), and
/// `memcpy` at 128 bytes: microseconds each.
fn aliasing(quick: bool) -> (f64, f64, f64) {
    const LEN: usize = 64 << 10;
    let rounds = if quick { 200 } else { 2000 };
    let src = vec![1u8; LEN + 8192];
    let mut dst = vec![0u8; LEN + 8192];
    let (s, d) = (src.as_ptr() as usize, dst.as_ptr() as usize);
    let mut time = |distance: usize, pieces: bool| {
        let at = (0..4096)
            .find(|o| (d + o).wrapping_sub(s) % 4096 == distance)
            .expect("some offset gives every distance");
        let (to, from) = (&mut dst[at..at + LEN], &src[..LEN]);
        let t = Instant::now();
        for _ in 0..rounds {
            if pieces {
                for (a, b) in to.chunks_mut(1024).zip(from.chunks(1024)) {
                    a.copy_from_slice(std::hint::black_box(b));
                }
            } else {
                to.copy_from_slice(std::hint::black_box(from));
            }
        }
        t.elapsed().as_secs_f64() * 1e6 / rounds as f64
    };
    (time(8, false), time(8, true), time(128, false))
}

/// One cache line of 64 bytes, as eight words (the payload is written and
/// read as atomics, so that two threads may share it in safe Rust).
#[repr(align(64))]
#[derive(Default)]
struct Line([std::sync::atomic::AtomicU64; 8]);

/// One direction of a one-slot ping-pong: a sequence word, and the payload
/// in the next cache line.
#[derive(Default)]
struct Slot {
    seq: Line,
    payload: Line,
}

impl Slot {
    fn put(&self, n: u64, msg: &[u64; 8]) {
        use std::sync::atomic::Ordering::{Relaxed, Release};
        for (w, v) in self.payload.0.iter().zip(msg) {
            w.store(*v, Relaxed);
        }
        self.seq.0[0].store(n, Release);
    }

    fn take(&self, n: u64, out: &mut [u64; 8]) {
        use std::sync::atomic::Ordering::{Acquire, Relaxed};
        while self.seq.0[0].load(Acquire) != n {
            std::hint::spin_loop();
        }
        for (v, w) in out.iter_mut().zip(&self.payload.0) {
            *v = w.load(Relaxed);
        }
    }
}

/// The floor of a spinning ring on this machine, and the raw ring against
/// it: the median round trip of a one-slot ping-pong of 64 bytes (a
/// sequence word and, in the adjacent cache line, the payload, each way)
/// between two threads spinning on CPUs 0 and 1, and of the raw spin ring
/// (`procwire::baseline`) between the same two threads, timed alike: of
/// the ring capacity the rows use, and of one record (every message in
/// the same two cache lines, as the slot's); their rounds in turn, each
/// ratio the median of the rounds' ratios (see `Measured::ratios`). The
/// rows measure the ring between processes, through the benchmark's
/// links: this compares the designs with nothing else in between. `None`
/// without a second CPU.
fn slot_floor(quick: bool) -> Option<SlotFloor> {
    let n: u64 = if quick { 20_000 } else { 100_000 };
    let rounds = if quick { 1 } else { 5 };
    let mut slot = Vec::new();
    let mut rings = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        let slots: Arc<[Slot; 2]> = Arc::default();
        let theirs = Arc::clone(&slots);
        slot.push(ping_pong(
            n,
            move |i, msg| {
                slots[0].put(i, msg);
                slots[1].take(i, msg);
            },
            move |i, msg| {
                theirs[0].take(i, msg);
                theirs[1].put(i, msg);
            },
        )?);
        // The rows' capacity, then the smallest the ring takes (0 is
        // raised to it): one record.
        for (times, capacity) in rings.iter_mut().zip([link::RING, 0]) {
            let (mut there, mut from_here) = raw_ring(capacity, ShmWait::Spin).ok()?;
            let (mut back, mut from_there) = raw_ring(capacity, ShmWait::Spin).ok()?;
            // The payload copied in and out as the slot's is; `msg` unused.
            let (mut mine, mut theirs) = ([7u8; 64], [0u8; 64]);
            times.push(ping_pong(
                n,
                move |_, _| {
                    there.send(&mine);
                    from_there.recv(&mut mine);
                },
                move |_, _| {
                    from_here.recv(&mut theirs);
                    back.send(&theirs);
                },
            )?);
        }
    }
    let mid = |v: &[u64]| measure::middle(v.iter().map(|&x| x as f64).collect()) as u64;
    let against_slot = |ring: &[u64]| {
        (
            mid(ring),
            measure::middle(
                ring.iter()
                    .zip(&slot)
                    .map(|(r, s)| *r as f64 / (*s).max(1) as f64)
                    .collect(),
            ),
        )
    };
    let [ring, one] = &rings;
    Some(SlotFloor {
        slot: mid(&slot),
        ring: against_slot(ring),
        one_record: against_slot(one),
    })
}

/// What [`slot_floor`] measured: median round trips, and each ring's
/// median ratio to the slot.
struct SlotFloor {
    slot: u64,
    /// The raw ring of the rows' capacity.
    ring: (u64, f64),
    /// The raw ring of one record.
    one_record: (u64, f64),
}

/// The median of `n` round trips between this thread on CPU 0, running
/// `ping` (send message `i`, then wait for its echo), and a thread on CPU
/// 1 running `pong` (wait for message `i`, echo it).
fn ping_pong(
    n: u64,
    mut ping: impl FnMut(u64, &mut [u64; 8]),
    mut pong: impl FnMut(u64, &mut [u64; 8]) + Send + 'static,
) -> Option<u64> {
    measure::pin_to(Some(0)).ok()?;
    let echo = std::thread::spawn(move || {
        measure::pin_to(Some(1)).ok()?;
        let mut msg = [0u64; 8];
        for i in 1..=n {
            pong(i, &mut msg);
        }
        Some(())
    });
    let mut msg = [7u64; 8];
    let mut samples = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let t = Instant::now();
        ping(i, &mut msg);
        samples.push(t.elapsed().as_nanos() as u64);
    }
    echo.join().ok()??;
    samples.sort_unstable();
    Some(samples[samples.len() / 2])
}

/// A page, and the size of the pipe rows it explains.
const PAGE: usize = 4096;

/// Raw pipe round trips of a page against a page and the 6 bytes a framed
/// 4 KiB `ByteBuf` adds (the length prefix and postcard's length of the
/// bytes), on one CPU, rounds in turn. A pipe keeps what is written in
/// buffers of a page each: a write of one page and a few bytes into an
/// empty pipe takes two, and the second page is allocated and freed with
/// every message (the pipe keeps one spare page, not two).
fn pipe_pages(quick: bool) -> Result<()> {
    let framed = PAGE + procwire::frame::HEADER_LEN + 2;
    let raw = Side::Raw(Transport::Pipe);
    let (page, more) = measure_pair((raw, PAGE), (raw, framed), Pin::Same, quick)
        .context("raw pipe round trips of a page and of a framed page")?;
    println!(
        "\npipe pages: raw pipe round trip of {PAGE} B, one page: {}; of {framed} B, a framed \
         4 KiB message's size, two pages: {} ({:.2}x)",
        micros(page.median_ns),
        micros(more.median_ns),
        more.ratios(&page).0
    );
    Ok(())
}

/// The timed floor of a typed channel on a byte stream: the minimal
/// channel of `lean.rs` (postcard behind a length prefix, one write, one
/// read, received as the rows receive) against raw, rounds in turn, for
/// each pipe and stream row on one CPU up to a page (the sizes of the
/// round-trip targets); for their async rows, the same channel awaited on
/// tokio against raw tokio. What any typed channel pays over raw there,
/// and so what the row's own ratio is read against: (row, size, ratio).
/// Empty when no row qualifies, or when procwire receives into one buffer
/// (`--into`), which the minimal channel does not do.
fn typed_floor(rows: &[Row], cfg: &Config) -> Result<Vec<(String, usize, f64)>> {
    let mut out = Vec::new();
    if cfg.receive == Receive::Into {
        return Ok(out);
    }
    for t in [Transport::Pipe, Transport::Stream] {
        let sides = [
            (t.name().to_string(), Side::Raw(t), Side::Lean(t)),
            (Side::Async(t).name(), Side::RawAsync(t), Side::AsyncLean(t)),
        ];
        for (name, base, lean) in sides {
            for r in rows
                .iter()
                .filter(|r| r.transport == name && r.pin == Pin::Same.name() && r.size <= PAGE)
            {
                let (raw, minimal) =
                    measure_pair((base, r.size), (lean, r.size), Pin::Same, cfg.quick)
                        .with_context(|| format!("{} at {} bytes", lean.name(), r.size))?;
                out.push((name.clone(), r.size, minimal.ratios(&raw).0));
            }
        }
    }
    Ok(out)
}

/// Runs the benchmark and prints the table (or JSON).
/// A message size of `--sizes`: from 1 byte (a raw pipe cannot carry an
/// empty message, so it would have no baseline) to what every row's raw
/// baseline carries.
pub fn parse_size(s: &str) -> std::result::Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: expected a number of bytes"))?;
    if (1..=link::MAX_SIZE).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "{n}: sizes run from 1 byte (an empty message has no raw baseline: a raw pipe \
             cannot carry one) to {} (what the raw shared-memory ring of {} MiB carries)",
            link::MAX_SIZE,
            link::RING >> 20
        ))
    }
}

pub fn run(cfg: Config) -> Result<()> {
    // The NATS rows' server, if one was started, stops with the run.
    struct StopNats;
    impl Drop for StopNats {
        fn drop(&mut self) {
            nats::stop();
        }
    }
    let _stop_nats = StopNats;
    link::set_receive(cfg.receive);
    link::set_no_fds(cfg.no_fds);
    let cases = cases(&cfg);
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(cases.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    // A measurement serves every row that needs it (shared memory at the
    // largest size has two baselines). A side measured for the first time
    // is measured in rounds taken in turn with its baseline's, the
    // baseline measured again if another row measured it already, so that
    // every ratio comes from interleaved rounds.
    let mut done: HashMap<(Side, usize, Pin), Measured> = HashMap::new();
    let what = |side: Side, size: usize, pin: Pin| {
        format!("{} at {size} bytes, pin {}", side.name(), pin.name())
    };
    // The baseline and procwire at one size: their rounds in turn when
    // neither was measured yet.
    let mut get = |base: Side, wire: Side, size: usize, pin: Pin| -> Result<(Measured, Measured)> {
        let known = (done.get(&(base, size, pin)), done.get(&(wire, size, pin)));
        let (b, w) = match known {
            (Some(b), Some(w)) => (b.clone(), w.clone()),
            (None, Some(w)) => (
                measure(base, size, pin, cfg.quick).with_context(|| what(base, size, pin))?,
                w.clone(),
            ),
            (_, None) => measure_pair((base, size), (wire, size), pin, cfg.quick)
                .with_context(|| format!("{} and {}", what(base, size, pin), wire.name()))?,
        };
        done.insert((base, size, pin), b.clone());
        done.insert((wire, size, pin), w.clone());
        Ok((b, w))
    };
    let mut rows = Vec::new();
    for c in &cases {
        bar.set_message(format!(
            "{} {} {}",
            c.t.name(),
            human_size(c.size),
            c.pin.name()
        ));
        // The same size, the baseline and procwire in turn.
        let (base, wire) = get(c.base, c.side(), c.size, c.pin)?;
        let (ratio, throughput_ratio) = wire.ratios(&base);
        if !cfg.json && !std::io::stderr().is_terminal() {
            eprintln!(
                "measured {} {} {}",
                c.t.name(),
                human_size(c.size),
                c.pin.name()
            );
        }
        rows.push(Row {
            transport: match c.asynch {
                true => Side::Async(c.t).name(),
                false => c.t.name().into(),
            },
            size: c.size,
            pin: c.pin.name(),
            median_ns: wire.median_ns,
            p99_ns: wire.p99_ns,
            throughput_mib_s: (wire.throughput_mib_s * 10.0).round() / 10.0,
            baseline: c.base.name(),
            baseline_median_ns: base.median_ns,
            baseline_p99_ns: base.p99_ns,
            baseline_throughput_mib_s: (base.throughput_mib_s * 10.0).round() / 10.0,
            ratio,
            throughput_ratio,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(path) = &cfg.save {
        std::fs::write(path, serde_json::to_string_pretty(&rows)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if cfg.json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    println!(
        "{:<10} {:>8} {:<5} {:>10} {:>10} {:<15} {:>10} {:>7} {:>9} {:>9} {:>7}",
        "transport",
        "size",
        "cpus",
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
            "{:<10} {:>8} {:<5} {:>10} {:>10} {:<15} {:>10} {:>6.2}x {:>9.0} {:>9.0} {:>6.2}x",
            r.transport,
            human_size(r.size),
            r.pin,
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
    adaptive_summary(&rows);
    if let Some(ring) = rows
        .iter()
        .find(|r| r.baseline == "raw ring spin" && r.size == 64)
        && let Some(f) = slot_floor(cfg.quick)
    {
        println!(
            "\nfloor: one-slot spin ping-pong of 64 B (sequence word and payload in adjacent \
             cache lines), threads on CPUs 0 and 1: {} a round trip; the raw ring spin between \
             the same threads, timed alike: {} ({:.2}x); between processes, through the \
             benchmark's links (the row above): {}; the raw ring of one record (each message in \
             the same two cache lines, as the slot's) between the same threads: {} ({:.2}x)",
            micros(f.slot),
            micros(f.ring.0),
            f.ring.1,
            micros(ring.baseline_median_ns),
            micros(f.one_record.0),
            f.one_record.1,
        );
    }
    if rows
        .iter()
        .any(|r| r.transport == "pipe" && r.size == PAGE && r.pin == Pin::Same.name())
    {
        pipe_pages(cfg.quick)?;
    }
    let floor = typed_floor(&rows, &cfg)?;
    if !floor.is_empty() {
        let each: Vec<String> = floor
            .iter()
            .map(|(row, size, ratio)| format!("{row} {} {ratio:.2}x", human_size(*size)))
            .collect();
        println!(
            "\ntyped floor: a minimal typed channel (postcard behind a length prefix, one write \
             and one read a message, received {}; nothing else; on the async rows awaited on \
             tokio) against the row's raw baseline, one CPU, rounds in turn: {}",
            match cfg.receive {
                Receive::Borrowed => "borrowed",
                _ => "owned",
            },
            each.join(", ")
        );
    }
    let (mib, hot) = memcpy_ceiling(cfg.quick);
    println!(
        "\nceiling: memcpy of 1 MiB, cache-hot, in this process: {hot:.0} MiB/s; from memory (64 MiB): {mib:.0} MiB/s"
    );
    let (aliased, pieces, apart) = aliasing(cfg.quick);
    println!(
        "aliasing: memcpy of 64 KiB, cache-hot, to 8 bytes past its source modulo 4 KiB: \
         {aliased:.2} µs; in 1 KiB pieces (procwire's copies there): {pieces:.2} µs; to 128 \
         bytes past: {apart:.2} µs"
    );
    println!(
        "round trips of one message and its echo; cpus: same = both processes on CPU 0, \
         split = CPUs 0 and 1, none = unpinned; ratios = procwire / baseline, same run, \
         the median of the ratios of their rounds taken in turn"
    );
    Ok(())
}

/// The adaptive waiter against the best fixed strategy measured in the same
/// placement at the same size.
fn adaptive_summary(rows: &[Row]) {
    let mut first = true;
    for adaptive in rows
        .iter()
        .filter(|r| r.transport == "shm" && !r.baseline.starts_with("raw ring"))
    {
        let best = rows
            .iter()
            .filter(|r| {
                r.transport.starts_with("shm-") && r.pin == adaptive.pin && r.size == adaptive.size
            })
            .min_by_key(|r| r.median_ns);
        if let Some(best) = best {
            if std::mem::take(&mut first) {
                println!();
            }
            println!(
                "adaptive shm, {}, cpus {}: {} against the best fixed strategy ({}) {}: {:.2}x",
                human_size(adaptive.size),
                adaptive.pin,
                micros(adaptive.median_ns),
                best.transport,
                micros(best.median_ns),
                adaptive.median_ns as f64 / best.median_ns.max(1) as f64
            );
        }
    }
}
