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
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use procwire::baseline::{RawReader, RawWriter, raw_ring};
use procwire::{ByteBuf, Duplex, Inherit, Kind, Options, Receiver, Sender, ShmWait};
use serde::Serialize;

/// What `procwire bench` was asked to measure.
pub struct Config {
    pub quick: bool,
    pub json: bool,
    pub save: Option<std::path::PathBuf>,
    pub pin: Pin,
    pub transports: Vec<Transport>,
    pub sizes: Vec<usize>,
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
    /// procwire over TCP on loopback (no key); with `--remote`.
    Tcp,
    /// procwire over ZeroMQ DEALER sockets on loopback TCP; with `--remote`.
    Zmq,
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
    pub const REMOTE: [Transport; 2] = [Transport::Tcp, Transport::Zmq];

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
        }
    }

    fn remote(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Zmq)
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
            // One datagram: SO_SNDBUF (212,992 bytes by default) less overhead.
            Transport::Seqpacket | Transport::Dgram => size <= 200_000,
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
}

impl Side {
    fn remote(self) -> bool {
        matches!(self, Side::Wire(t) | Side::Raw(t) if t.remote())
    }

    fn name(self) -> String {
        match self {
            Side::Wire(t) => t.name().into(),
            Side::Raw(Transport::Zmq) => "raw zeromq".into(),
            Side::Raw(t) => format!("raw {}", t.name()),
            Side::Ring(w) => format!("raw ring {}", format!("{w:?}").to_lowercase()),
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
                        out.push(Case { t, base, size, pin });
                    }
                    continue;
                }
                if t == Transport::Shm {
                    let raw = match Transport::Seqpacket.carries(size) {
                        true => Transport::Seqpacket,
                        false => Transport::Stream,
                    };
                    let base = Side::Raw(raw);
                    out.push(Case { t, base, size, pin });
                    if size == largest && pin != Pin::Split {
                        let base = Side::Ring(ShmWait::Futex);
                        out.push(Case { t, base, size, pin });
                    }
                } else if t.carries(size) {
                    out.push(Case {
                        t,
                        base: Side::Raw(t),
                        size,
                        pin,
                    });
                }
            }
        }
    }
    out
}

/// Each shared-memory ring's data area: 1 MiB messages travel inline.
const RING: usize = 4 << 20;

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
    /// Two hand-written shared-memory rings, one each way.
    RawRing(RefCell<RawWriter>, RefCell<RawReader>),
    /// procwire over a ZeroMQ DEALER socket.
    Zmq(procwire::zmq::Channel<ByteBuf, ByteBuf>),
    /// A DEALER socket of the zeromq crate, driven directly.
    RawZmq(tokio::runtime::Runtime, RefCell<zeromq::DealerSocket>),
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
            Link::RawRing(tx, rx) => {
                tx.borrow().descriptors(out);
                rx.borrow().descriptors(out);
            }
            // Network links are never forked: their peers connect.
            Link::Zmq(_) | Link::RawZmq(..) => {}
        }
    }

    fn handed_over(&self) {
        match self {
            Link::Wire(d) => d.handed_over(),
            Link::WirePipes(tx, rx) => {
                tx.handed_over();
                rx.handed_over();
            }
            Link::RawStream { .. }
            | Link::RawMessage(_)
            | Link::RawRing(..)
            | Link::Zmq(_)
            | Link::RawZmq(..) => {}
        }
    }
}

impl Link {
    /// Two connected ends of `side`.
    fn pair(side: Side) -> Result<(Link, Link)> {
        let (t, wire) = match side {
            Side::Wire(t) => (t, true),
            Side::Raw(t) => (t, false),
            Side::Ring(w) => {
                let (tx1, rx1) = raw_ring(RING, w)?;
                let (tx2, rx2) = raw_ring(RING, w)?;
                let end = |tx, rx| Link::RawRing(RefCell::new(tx), RefCell::new(rx));
                return Ok((end(tx1, rx2), end(tx2, rx1)));
            }
        };
        let opts = Options::new()
            .shm_capacity(RING)
            .shm_wait(t.wait().unwrap_or_default());
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
            (t, true) if t.wait().is_some() => {
                let (a, b) = opts.shm_duplex()?;
                (Link::Wire(a), Link::Wire(b))
            }
            (t, false) if t.wait().is_some() => {
                anyhow::bail!("shared memory has no raw syscalls: compare it with a raw ring")
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

    fn send(&self, msg: &ByteBuf) -> Result<()> {
        match self {
            Link::RawStream { tx, .. } => {
                let mut buf: &[u8] = msg;
                while !buf.is_empty() {
                    let n = rustix::io::write(tx, buf)?;
                    buf = &buf[n..];
                }
            }
            Link::RawMessage(fd) => {
                rustix::net::send(fd, msg, rustix::net::SendFlags::empty())?;
            }
            // By reference, as a program that sends one buffer again would.
            Link::Wire(d) => d.send_ref(msg)?,
            Link::WirePipes(tx, _) => tx.send_ref(msg)?,
            Link::RawRing(tx, _) => tx.borrow_mut().send(msg),
            Link::Zmq(c) => c.duplex().send_ref(msg)?,
            Link::RawZmq(rt, sock) => {
                use zeromq::SocketSend;
                let m = zeromq::ZmqMessage::from(msg.to_vec());
                rt.block_on(sock.borrow_mut().send(m))?;
            }
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
            Link::RawRing(_, rx) => {
                let n = rx.borrow_mut().recv(buf);
                anyhow::ensure!(n == buf.len(), "wrong size");
            }
            Link::Zmq(c) => {
                let m = c.recv()?;
                anyhow::ensure!(m.len() == buf.len(), "wrong size");
            }
            Link::RawZmq(rt, sock) => {
                use zeromq::SocketRecv;
                let m = rt.block_on(sock.borrow_mut().recv())?;
                let frame = m.get(0).context("an empty ZeroMQ message")?;
                anyhow::ensure!(frame.len() == buf.len(), "wrong size");
                buf.copy_from_slice(frame);
            }
        }
        Ok(())
    }
}

/// Pins the calling thread (and the children it forks from now on) to
/// `cpu`, or with `None` gives it back every CPU it had at the start: a row
/// labelled `none` must not run pinned by an earlier row. A pin that fails
/// is an error: a row must never claim a placement it did not get.
fn pin_to(cpu: Option<usize>) -> Result<()> {
    use std::sync::OnceLock;
    static START: OnceLock<rustix::thread::CpuSet> = OnceLock::new();
    let start = START.get_or_init(|| {
        rustix::thread::sched_getaffinity(None).unwrap_or_else(|_| rustix::thread::CpuSet::new())
    });
    let set = match cpu {
        Some(cpu) => {
            anyhow::ensure!(
                cpu < rustix::thread::CpuSet::MAX_CPU && start.is_set(cpu),
                "cannot pin to CPU {cpu}: this process may run on CPUs {:?} only; \
                 use --pin none (or --pin same on a one-CPU machine)",
                (0..rustix::thread::CpuSet::MAX_CPU)
                    .filter(|&c| start.is_set(c))
                    .collect::<Vec<_>>()
            );
            let mut set = rustix::thread::CpuSet::new();
            set.set(cpu);
            set
        }
        None => *start,
    };
    rustix::thread::sched_setaffinity(None, &set)
        .map_err(|e| anyhow::anyhow!("pinning to CPU {cpu:?}: {e}; use --pin none"))
}

fn cpus(p: Pin) -> (Option<usize>, Option<usize>) {
    match p {
        Pin::Same | Pin::Auto => (Some(0), Some(0)),
        Pin::Split => (Some(0), Some(1)),
        Pin::None => (None, None),
    }
}

/// Round trips and throughput of one transport, raw or procwire.
#[derive(Clone, Copy)]
struct Measured {
    median_ns: u64,
    p99_ns: u64,
    throughput_mib_s: f64,
}

/// The median of `rounds` measurements of `side` (each statistic on its
/// own): one slow round on a noisy machine does not decide a row.
fn measure(side: Side, size: usize, pin: Pin, quick: bool) -> Result<Measured> {
    let (rounds, budget) = if quick {
        (1, Duration::from_millis(30))
    } else {
        (3, Duration::from_millis(100))
    };
    let all = (0..rounds)
        .map(|_| measure_once(side, size, pin, budget))
        .collect::<Result<Vec<_>>>()?;
    let mid = |f: &dyn Fn(&Measured) -> f64| {
        let mut v: Vec<f64> = all.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok(Measured {
        median_ns: mid(&|m| m.median_ns as f64) as u64,
        p99_ns: mid(&|m| m.p99_ns as f64) as u64,
        throughput_mib_s: mid(&|m| m.throughput_mib_s),
    })
}

/// One round: round trips for `budget`, then a one-way stream for about as
/// long.
fn measure_once(side: Side, size: usize, pin: Pin, budget: Duration) -> Result<Measured> {
    let (parent_cpu, child_cpu) = cpus(pin);
    pin_to(parent_cpu)?;
    // The peer pins itself after the fork: check its CPU here, where a
    // failure can be reported.
    if child_cpu.is_some() {
        pin_to(child_cpu)?;
        pin_to(parent_cpu)?;
    }

    // Round trips against an echoing peer.
    let (ours, mut peer) = start_peer(side, size, Role::Echo, child_cpu)?;
    let msg = ByteBuf::from(vec![7u8; size]);
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
    // A datagram socket (or ZeroMQ) has no end of file for the echo loop
    // to see: end the peer outright (it has nothing left to do).
    drop(ours);
    peer.end(true)?;
    samples.sort_unstable();
    let median_ns = samples[samples.len() / 2];
    let p99_ns = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];

    // One way: n messages into a peer that acknowledges the last.
    let n = (budget.as_nanos() as u64 / median_ns.max(1)).clamp(16, 500_000);
    let (ours, mut peer) = start_peer(side, size, Role::Sink(n), child_cpu)?;
    let t0 = Instant::now();
    for _ in 0..n {
        ours.send(&msg)?;
    }
    ours.recv(&mut back)?;
    let secs = t0.elapsed().as_secs_f64();
    drop(ours);
    peer.end(true)?;
    Ok(Measured {
        median_ns,
        p99_ns,
        throughput_mib_s: n as f64 * size as f64 / secs / (1 << 20) as f64,
    })
}

/// What a peer does with what it receives.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    /// Sends each message back.
    Echo,
    /// Takes this many, then sends the last back.
    Sink(u64),
}

impl Role {
    fn arg(self) -> String {
        match self {
            Role::Echo => "echo".into(),
            Role::Sink(n) => n.to_string(),
        }
    }

    fn parse(s: &str) -> Result<Role> {
        Ok(match s {
            "echo" => Role::Echo,
            n => Role::Sink(n.parse().context("a peer role: echo or a count")?),
        })
    }
}

fn peer_loop(link: &Link, size: usize, role: Role) {
    let mut buf = ByteBuf::from(vec![0u8; size]);
    match role {
        Role::Echo => while link.recv(&mut buf).is_ok() && link.send(&buf).is_ok() {},
        Role::Sink(n) => {
            for _ in 0..n {
                if link.recv(&mut buf).is_err() {
                    return;
                }
            }
            let _ = link.send(&buf);
            // Stay until ended: a ZeroMQ socket sends from a task of its
            // own, and exiting now could take the acknowledgement along.
            let _ = link.recv(&mut buf);
        }
    }
}

/// The measured peer: forked for local links, this program re-executed
/// (`__bench-peer`) for network ones, which connect by address.
enum Peer {
    Forked(procwire::Child),
    Spawned(std::process::Child),
}

impl Peer {
    /// Ends the peer (killing it first when `kill`) and reaps it.
    fn end(&mut self, kill: bool) -> Result<()> {
        match self {
            Peer::Forked(c) => {
                if kill {
                    c.kill()?;
                }
                c.wait()?;
            }
            Peer::Spawned(c) => {
                if kill {
                    c.kill()?;
                }
                c.wait()?;
            }
        }
        Ok(())
    }
}

fn start_peer(side: Side, size: usize, role: Role, cpu: Option<usize>) -> Result<(Link, Peer)> {
    if !side.remote() {
        let (ours, theirs) = Link::pair(side)?;
        let child = procwire::fork(theirs, move |link| {
            if let Err(e) = pin_to(cpu) {
                // The parent checked this CPU; if it fails anyway, the
                // measurement fails rather than run misplaced.
                eprintln!("bench peer: {e}");
                std::process::exit(3);
            }
            peer_loop(&link, size, role);
        })?;
        return Ok((ours, Peer::Forked(child)));
    }
    let spawn = |kind: &str, endpoint: &str| -> Result<Peer> {
        let child = std::process::Command::new(std::env::current_exe()?)
            .args([
                "__bench-peer",
                kind,
                endpoint,
                &size.to_string(),
                &role.arg(),
            ])
            .arg(cpu.map_or("none".into(), |c| c.to_string()))
            .spawn()
            .context("starting a benchmark peer")?;
        Ok(Peer::Spawned(child))
    };
    let timeout = Duration::from_secs(10);
    Ok(match side {
        Side::Raw(Transport::Tcp) => {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            let peer = spawn("raw-tcp", &l.local_addr()?.to_string())?;
            let (s, _) = l.accept()?;
            s.set_nodelay(true)?;
            let tx: OwnedFd = s.try_clone()?.into();
            (Link::RawStream { tx, rx: s.into() }, peer)
        }
        Side::Wire(Transport::Tcp) => {
            let opts = Options::new().net(procwire::Net::new().no_key());
            let l = opts.listen("tcp://127.0.0.1:0")?;
            let peer = spawn("tcp", &l.endpoint().to_string())?;
            (Link::Wire(l.accept_timeout(timeout)?), peer)
        }
        Side::Wire(Transport::Zmq) => {
            let c = procwire::zmq::bind(
                procwire::zmq::Kind::Dealer,
                "zmq+tcp://127.0.0.1:0",
                &Options::new(),
            )?;
            let peer = spawn("zmq", &c.endpoint().to_string())?;
            // The peer says hello once connected: a DEALER sends only to
            // connected peers.
            let _hello = c.recv_timeout(timeout)?;
            (Link::Zmq(c), peer)
        }
        Side::Raw(Transport::Zmq) => {
            use zeromq::{Socket, SocketRecv};
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let mut sock = zeromq::DealerSocket::new();
            let at = rt.block_on(sock.bind("tcp://127.0.0.1:0"))?.to_string();
            let peer = spawn("raw-zmq", &at)?;
            rt.block_on(async { tokio::time::timeout(timeout, sock.recv()).await })
                .context("the raw ZeroMQ peer did not say hello")??;
            (Link::RawZmq(rt, RefCell::new(sock)), peer)
        }
        other => anyhow::bail!("{} is not a network side", other.name()),
    })
}

/// `procwire __bench-peer KIND ENDPOINT SIZE ROLE CPU`: the far end of a
/// network measurement.
pub fn peer(args: &[String]) -> Result<()> {
    let [kind, endpoint, size, role, cpu] = args else {
        anyhow::bail!("__bench-peer KIND ENDPOINT SIZE ROLE CPU");
    };
    let size: usize = size.parse()?;
    let role = Role::parse(role)?;
    pin_to(cpu.parse().ok())?;
    let hello = ByteBuf::from(vec![0u8; size]);
    let link = match kind.as_str() {
        "raw-tcp" => {
            let s = std::net::TcpStream::connect(endpoint)?;
            s.set_nodelay(true)?;
            let tx: OwnedFd = s.try_clone()?.into();
            Link::RawStream { tx, rx: s.into() }
        }
        "tcp" => Link::Wire(
            Options::new()
                .net(procwire::Net::new().no_key())
                .connect(endpoint)?,
        ),
        "zmq" => {
            let c = procwire::zmq::connect(procwire::zmq::Kind::Dealer, endpoint, &Options::new())?;
            c.duplex().send_ref(&hello)?;
            Link::Zmq(c)
        }
        "raw-zmq" => {
            use zeromq::{Socket, SocketSend};
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let mut sock = zeromq::DealerSocket::new();
            rt.block_on(sock.connect(endpoint))?;
            rt.block_on(sock.send(zeromq::ZmqMessage::from(hello.to_vec())))?;
            Link::RawZmq(rt, RefCell::new(sock))
        }
        k => anyhow::bail!("unknown peer kind {k}"),
    };
    peer_loop(&link, size, role);
    Ok(())
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
    // largest size has two baselines).
    let mut done: HashMap<(Side, usize, Pin), Measured> = HashMap::new();
    let mut get = |side: Side, size: usize, pin: Pin| -> Result<Measured> {
        if let Some(m) = done.get(&(side, size, pin)) {
            return Ok(*m);
        }
        let m = measure(side, size, pin, cfg.quick)
            .with_context(|| format!("{} at {size} bytes, pin {}", side.name(), pin.name()))?;
        done.insert((side, size, pin), m);
        Ok(m)
    };
    let mut rows = Vec::new();
    for c in &cases {
        bar.set_message(format!(
            "{} {} {}",
            c.t.name(),
            human_size(c.size),
            c.pin.name()
        ));
        // The same size, the baseline and procwire back to back.
        let base = get(c.base, c.size, c.pin)?;
        let wire = get(Side::Wire(c.t), c.size, c.pin)?;
        if !cfg.json && !std::io::stderr().is_terminal() {
            eprintln!(
                "measured {} {} {}",
                c.t.name(),
                human_size(c.size),
                c.pin.name()
            );
        }
        rows.push(Row {
            transport: c.t.name().into(),
            size: c.size,
            pin: c.pin.name(),
            median_ns: wire.median_ns,
            p99_ns: wire.p99_ns,
            throughput_mib_s: (wire.throughput_mib_s * 10.0).round() / 10.0,
            baseline: c.base.name(),
            baseline_median_ns: base.median_ns,
            baseline_p99_ns: base.p99_ns,
            baseline_throughput_mib_s: (base.throughput_mib_s * 10.0).round() / 10.0,
            ratio: wire.median_ns as f64 / base.median_ns.max(1) as f64,
            throughput_ratio: wire.throughput_mib_s / base.throughput_mib_s.max(f64::MIN_POSITIVE),
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
    let (mib, hot) = memcpy_ceiling(cfg.quick);
    println!(
        "\nceiling: memcpy of 1 MiB, cache-hot, in this process: {hot:.0} MiB/s; from memory (64 MiB): {mib:.0} MiB/s"
    );
    println!(
        "round trips of one message and its echo; cpus: same = both processes on CPU 0, \
         split = CPUs 0 and 1, none = unpinned; ratios = procwire / baseline, same run"
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
