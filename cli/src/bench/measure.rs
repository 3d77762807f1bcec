//! Pinning, one measurement, and the peer processes it talks to.

use super::*;

/// Pins the calling thread (and the children it forks from now on) to
/// `cpu`, or with `None` gives it back every CPU it had at the start: a row
/// labelled `none` must not run pinned by an earlier row. A pin that fails
/// is an error: a row must never claim a placement it did not get.
pub(super) fn pin_to(cpu: Option<usize>) -> Result<()> {
    let set = match cpu {
        Some(cpu) => {
            allowed(cpu)?;
            let mut set = rustix::thread::CpuSet::new();
            set.set(cpu);
            set
        }
        None => *start_cpus(),
    };
    rustix::thread::sched_setaffinity(None, &set)
        .map_err(|e| anyhow::anyhow!("pinning to CPU {cpu:?}: {e}; use --pin none"))
}

/// The CPUs this process could run on when the bench started.
fn start_cpus() -> &'static rustix::thread::CpuSet {
    use std::sync::OnceLock;
    static START: OnceLock<rustix::thread::CpuSet> = OnceLock::new();
    START.get_or_init(|| {
        rustix::thread::sched_getaffinity(None).unwrap_or_else(|_| rustix::thread::CpuSet::new())
    })
}

/// Whether this process may be pinned to `cpu`; the error names the CPUs
/// it may use.
fn allowed(cpu: usize) -> Result<()> {
    let start = start_cpus();
    anyhow::ensure!(
        cpu < rustix::thread::CpuSet::MAX_CPU && start.is_set(cpu),
        "cannot pin to CPU {cpu}: this process may run on CPUs {:?} only; \
         use --pin none (or --pin same on a one-CPU machine)",
        (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| start.is_set(c))
            .collect::<Vec<_>>()
    );
    Ok(())
}

fn cpus(p: Pin) -> (Option<usize>, Option<usize>) {
    match p {
        Pin::Same | Pin::Auto => (Some(0), Some(0)),
        Pin::Split => (Some(0), Some(1)),
        Pin::None => (None, None),
    }
}

/// Round trips and throughput of one transport, raw or procwire.
#[derive(Clone)]
pub(super) struct Measured {
    pub(super) median_ns: u64,
    pub(super) p99_ns: u64,
    pub(super) throughput_mib_s: f64,
    /// Each round's median round trip and throughput, in the order taken.
    rounds: Vec<(u64, f64)>,
}

impl Measured {
    /// `self` over `base`, in round trip time and in throughput: the median
    /// of the ratios of rounds taken in turn (this side's round `i` over
    /// the baseline's round `i`), so that each ratio comes from two
    /// measurements a fraction of a second apart. This machine runs in
    /// spells (a 64 B SEQPACKET round trip takes 7.6 µs for a while, then
    /// 10-11 µs), and the ratio of the two sides' medians over the rounds
    /// compared one spell with another whenever the spells split the rounds
    /// unevenly: in four runs of the same code it read 0.98x to 1.34x.
    pub(super) fn ratios(&self, base: &Measured) -> (f64, f64) {
        if self.rounds.len() != base.rounds.len() || self.rounds.is_empty() {
            return (
                self.median_ns as f64 / base.median_ns.max(1) as f64,
                self.throughput_mib_s / base.throughput_mib_s.max(f64::MIN_POSITIVE),
            );
        }
        let pairs = || self.rounds.iter().zip(&base.rounds);
        (
            middle(
                pairs()
                    .map(|(w, b)| w.0 as f64 / b.0.max(1) as f64)
                    .collect(),
            ),
            middle(
                pairs()
                    .map(|(w, b)| w.1 / b.1.max(f64::MIN_POSITIVE))
                    .collect(),
            ),
        )
    }
}

/// How many rounds a measurement takes, and how long each lasts.
fn plan(quick: bool) -> (usize, Duration) {
    if quick {
        (1, Duration::from_millis(30))
    } else {
        (9, Duration::from_millis(40))
    }
}

/// The median of `v` (not empty).
pub(super) fn middle(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Each statistic's median over the rounds: one slow round on a noisy
/// machine does not decide a row.
fn median(all: &[Measured]) -> Measured {
    let mid = |f: &dyn Fn(&Measured) -> f64| middle(all.iter().map(f).collect());
    Measured {
        median_ns: mid(&|m| m.median_ns as f64) as u64,
        p99_ns: mid(&|m| m.p99_ns as f64) as u64,
        throughput_mib_s: mid(&|m| m.throughput_mib_s),
        rounds: all
            .iter()
            .map(|m| (m.median_ns, m.throughput_mib_s))
            .collect(),
    }
}

/// The median of the rounds of `side` (see [`plan`]).
pub(super) fn measure(side: Side, size: usize, pin: Pin, quick: bool) -> Result<Measured> {
    let (rounds, budget) = plan(quick);
    let msg = ByteBuf::from(vec![7u8; size]);
    let all = (0..rounds)
        .map(|_| measure_once(side, &msg, pin, budget))
        .collect::<Result<Vec<_>>>()?;
    Ok(median(&all))
}

/// [`measure`] of two sides, their rounds taken in turn, so that a slow
/// spell of the machine falls on both rather than on one side's rounds.
/// Each side comes with the size of its messages. Sides of one size send
/// the same buffer: where a large message lies in memory changes how fast
/// the kernel copies it (a 1 MiB message behind procwire's 7-byte frame
/// header, at some offsets from a page boundary, some 6% slower than at
/// others), and two buffers allocated in turn lie wherever the allocator's
/// history puts each (one mapped afresh at 16 bytes past a page, the next
/// from the heap at 640, say).
pub(super) fn measure_pair(
    (a, size_a): (Side, usize),
    (b, size_b): (Side, usize),
    pin: Pin,
    quick: bool,
) -> Result<(Measured, Measured)> {
    let (rounds, budget) = plan(quick);
    let msg_a = ByteBuf::from(vec![7u8; size_a]);
    let other = (size_b != size_a).then(|| ByteBuf::from(vec![7u8; size_b]));
    let msg_b = other.as_ref().unwrap_or(&msg_a);
    let (mut of_a, mut of_b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        of_a.push(measure_once(a, &msg_a, pin, budget)?);
        of_b.push(measure_once(b, msg_b, pin, budget)?);
    }
    Ok((median(&of_a), median(&of_b)))
}

/// One round of `msg`: round trips for `budget`, then a one-way stream for
/// about as long.
fn measure_once(side: Side, msg: &ByteBuf, pin: Pin, budget: Duration) -> Result<Measured> {
    let size = msg.len();
    let (parent_cpu, child_cpu) = cpus(pin);
    pin_to(parent_cpu)?;
    // The peer pins itself after the fork: check its CPU here, where a
    // failure can be reported.
    if let Some(cpu) = child_cpu {
        allowed(cpu)?;
    }

    // Round trips against an echoing peer.
    let (ours, mut peer) = start_peer(side, size, Role::Echo, child_cpu)?;
    let mut back = vec![0u8; size];
    for _ in 0..20 {
        ours.send(msg)?;
        ours.recv(&mut back)?;
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 50 || start.elapsed() < budget {
        let t0 = Instant::now();
        ours.send(msg)?;
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

    // One way: n messages into a peer that acknowledges the last, after
    // an eighth as many untimed (as the round trips' warm-up): the first
    // messages of a new peer grow buffers and take pages, which is not the
    // steady throughput this measures.
    let n = (budget.as_nanos() as u64 / median_ns.max(1)).clamp(16, 500_000);
    let warm = n / 8;
    let (ours, mut peer) = start_peer(side, size, Role::Sink(warm + n), child_cpu)?;
    for _ in 0..warm {
        ours.send(msg)?;
    }
    let t0 = Instant::now();
    for _ in 0..n {
        ours.send(msg)?;
    }
    ours.recv(&mut back)?;
    let secs = t0.elapsed().as_secs_f64();
    drop(ours);
    peer.end(true)?;
    Ok(Measured {
        median_ns,
        p99_ns,
        throughput_mib_s: n as f64 * size as f64 / secs / (1 << 20) as f64,
        rounds: Vec::new(),
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
            let mut peer = spawn("raw-tcp", &l.local_addr()?.to_string())?;
            let s = accept_within(&l, &mut peer, timeout)?;
            s.set_nodelay(true)?;
            let tx: OwnedFd = s.try_clone()?.into();
            (Link::RawStream { tx, rx: s.into() }, peer)
        }
        Side::Wire(Transport::Tcp) => {
            let opts = procwire::Net::new().no_key();
            let l = opts.listen("tcp://127.0.0.1:0")?;
            let peer = spawn("tcp", &l.endpoint().to_string())?;
            (Link::Wire(l.accept_timeout(timeout)?), peer)
        }
        Side::Wire(Transport::Zmq) => {
            let c = procwire::zmq::bind(
                procwire::zmq::Kind::Dealer,
                "zmq+tcp://127.0.0.1:0",
                &procwire::Net::new(),
            )?;
            let peer = spawn("zmq", &c.endpoint().to_string())?;
            // The peer says hello once connected: a DEALER sends only to
            // connected peers.
            let _hello = c.recv_timeout(timeout)?;
            (Link::Zmq(c), peer)
        }
        Side::Wire(Transport::Nats) | Side::Raw(Transport::Nats) | Side::Async(Transport::Nats) => {
            use super::nats::Flavor;
            let flavor = match side {
                Side::Raw(_) => Flavor::Raw,
                Side::Async(_) => Flavor::Async,
                _ => Flavor::Wire,
            };
            let at = super::nats::addr()?;
            let peer = spawn(flavor.peer(), &at)?;
            let rpc = super::nats::Rpc::connect(&at, flavor, size)?;
            (Link::Nats(Box::new(rpc)), peer)
        }
        Side::Async(Transport::Zmq) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let c = rt.block_on(procwire::tokio::zmq::bind(
                procwire::zmq::Kind::Dealer,
                "zmq+tcp://127.0.0.1:0",
                &procwire::Net::new(),
            ))?;
            let peer = spawn("async-zmq", &c.endpoint().to_string())?;
            rt.block_on(async { tokio::time::timeout(timeout, c.recv()).await })
                .context("the async ZeroMQ peer did not say hello")??;
            (Link::AsyncZmq(Box::new((rt, c))), peer)
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

/// The raw peer's connection, or an error once the peer is gone or
/// `timeout` ran out: never a wait without end.
fn accept_within(
    l: &std::net::TcpListener,
    peer: &mut Peer,
    timeout: Duration,
) -> Result<std::net::TcpStream> {
    l.set_nonblocking(true)?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
        if let Peer::Spawned(c) = peer
            && let Some(status) = c.try_wait()?
        {
            anyhow::bail!("the benchmark peer ended before connecting ({status})");
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the benchmark peer did not connect within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `procwire __bench-peer KIND ENDPOINT SIZE ROLE CPU`: the far end of a
/// network measurement.
pub fn peer(args: &[String]) -> Result<()> {
    let [kind, endpoint, size, role, cpu] = args else {
        anyhow::bail!("__bench-peer KIND ENDPOINT SIZE ROLE CPU");
    };
    let size: usize = size.parse()?;
    let role = Role::parse(role)?;
    // The parent checked the CPU against the set it started with; this
    // process inherited the parent's pinning, so its own start set says
    // nothing: pin without that check (the kernel still refuses a CPU
    // outside the cgroup's cpuset).
    if let Ok(cpu) = cpu.parse::<usize>() {
        let mut set = rustix::thread::CpuSet::new();
        set.set(cpu);
        rustix::thread::sched_setaffinity(None, &set)
            .map_err(|e| anyhow::anyhow!("pinning the peer to CPU {cpu}: {e}"))?;
    }
    if let Some(flavor) = super::nats::Flavor::of_peer(kind) {
        // A service, not a link: it answers every call until killed.
        return super::nats::serve(endpoint, flavor);
    }
    let hello = ByteBuf::from(vec![0u8; size]);
    let link = match kind.as_str() {
        "raw-tcp" => {
            let s = std::net::TcpStream::connect(endpoint)?;
            s.set_nodelay(true)?;
            let tx: OwnedFd = s.try_clone()?.into();
            Link::RawStream { tx, rx: s.into() }
        }
        "tcp" => Link::Wire(procwire::Net::new().no_key().connect(endpoint)?),
        "zmq" => {
            let c = procwire::zmq::connect(
                procwire::zmq::Kind::Dealer,
                endpoint,
                &procwire::Net::new(),
            )?;
            c.send_ref(&hello)?;
            Link::Zmq(c)
        }
        "async-zmq" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let c = rt.block_on(procwire::tokio::zmq::connect(
                procwire::zmq::Kind::Dealer,
                endpoint,
                &procwire::Net::new(),
            ))?;
            rt.block_on(c.send_ref(&hello))?;
            Link::AsyncZmq(Box::new((rt, c)))
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

/// How many messages `__roundtrips ... queued` sends before it takes them
/// out: well within a ring of the bench's capacity, whatever their size up
/// to 4 KiB.
const QUEUED: u64 = 500;

/// `procwire __roundtrips raw|wire|async|rawasync|lean|asynclean TRANSPORT SIZE COUNT [thread]
/// [borrow|into] [nofds] [oneway|queued]`: exactly
/// COUNT round trips against an echoing peer, both processes on CPU 0, and
/// nothing else; what `scripts/syscalls` and `scripts/instructions` count
/// (they subtract a run with COUNT 0, which leaves the set-up out). With
/// `thread` the peer is a thread of this process, for callgrind, which
/// counts the same user-space instructions either way but cannot follow
/// procwire's fork (valgrind 3.19 lacks pidfd_open). With `borrow`,
/// procwire receives with `recv_with` (as `bench --borrow`), with `into`
/// with `recv_into` (as `bench --into`); with `nofds`
/// its socket channels carry no descriptors (as `bench --no-fds`). `lean`
/// is the floor of a typed channel on a pipe or stream socket
/// (`lean.rs`), `asynclean` the same awaited on tokio (owned, as the
/// async rows receive); `oneway` sends COUNT messages into a peer that
/// acknowledges the last, as the bench's throughput does. `queued`, on
/// shared memory only, makes no round trips: this thread sends COUNT
/// messages down one ring and takes them out again, [`QUEUED`] at a time,
/// so that every receive finds its message waiting and no end ever waits
/// or wakes the other: what a message costs to send and to receive, and
/// nothing else.
pub fn roundtrips(args: &[String]) -> Result<()> {
    let usage = "__roundtrips raw|wire|async|rawasync|lean|asynclean TRANSPORT SIZE COUNT [thread] \
                 [borrow|into] [nofds] [oneway|queued]";
    let [side, transport, size, count, flags @ ..] = args else {
        anyhow::bail!("{usage}");
    };
    let thread = flags.iter().any(|f| f == "thread");
    use super::link::Receive;
    let has = |flag: &str| flags.iter().any(|f| f == flag);
    anyhow::ensure!(
        flags.iter().all(|f| {
            ["thread", "borrow", "into", "nofds", "oneway", "queued"].contains(&f.as_str())
        }) && !(has("borrow") && has("into"))
            && !(has("queued") && (has("thread") || has("oneway"))),
        "{usage}"
    );
    super::link::set_receive(match (has("borrow"), has("into")) {
        (true, _) => Receive::Borrowed,
        (_, true) => Receive::Into,
        _ => Receive::Owned,
    });
    super::link::set_no_fds(has("nofds"));
    let t = <Transport as clap::ValueEnum>::from_str(transport, true)
        .map_err(|e| anyhow::anyhow!("{transport}: {e}"))?;
    let side = match (side.as_str(), t.wait()) {
        ("wire", _) => Side::Wire(t),
        ("raw", None) => Side::Raw(t),
        ("raw", Some(w)) => Side::Ring(w),
        ("async", _) => Side::Async(t),
        ("rawasync", _) => Side::RawAsync(super::asynch::raw_of(t).context("no async row")?),
        ("lean", _) => Side::Lean(t),
        ("asynclean", _) => Side::AsyncLean(t),
        (s, _) => anyhow::bail!("{s}: raw, wire, async, rawasync, lean or asynclean"),
    };
    let size: usize = size.parse()?;
    let count: u64 = count.parse()?;
    // Spinning needs a CPU for each side; everything else shares CPU 0.
    let peer_cpu = if t.wait() == Some(ShmWait::Spin) {
        1
    } else {
        0
    };
    pin_to(Some(0))?;
    let msg = ByteBuf::from(vec![7u8; size]);
    let mut back = vec![0u8; size];
    let mut round_trips = |ours: &Link| -> Result<()> {
        for _ in 0..count {
            ours.send(&msg)?;
            ours.recv(&mut back)?;
        }
        Ok(())
    };
    if has("queued") {
        anyhow::ensure!(
            t.wait().is_some() && matches!(side, Side::Wire(_) | Side::Ring(_)),
            "queued messages are for shared memory, procwire's ring or the raw one"
        );
        let (ours, theirs) = Link::pair(side)?;
        let mut left = count;
        while left > 0 {
            let batch = left.min(QUEUED);
            for _ in 0..batch {
                ours.send(&msg)?;
            }
            for _ in 0..batch {
                theirs.recv(&mut back)?;
            }
            left -= batch;
        }
        return Ok(());
    }
    if thread {
        anyhow::ensure!(!side.remote(), "a thread peer is for local transports");
        let (ours, theirs) = Link::pair(side)?;
        // Left running: a datagram socket has no end of stream to stop its
        // loop, and the process's exit ends it. (On the peer's CPU: two
        // threads spinning on one CPU take a time slice a message.)
        allowed(peer_cpu)?;
        std::thread::spawn(move || {
            // (Checked above; unpinned, it would still answer.)
            let _ = pin_to(Some(peer_cpu));
            peer_loop(&theirs, size, Role::Echo);
        });
        return round_trips(&ours);
    }
    if has("oneway") {
        // COUNT messages one way into a peer that acknowledges the last, as
        // the bench's throughput measurement.
        let (ours, mut peer) = start_peer(side, size, Role::Sink(count), Some(peer_cpu))?;
        for _ in 0..count {
            ours.send(&msg)?;
        }
        ours.recv(&mut back)?;
        drop(ours);
        return peer.end(true);
    }
    let (ours, mut peer) = start_peer(side, size, Role::Echo, Some(peer_cpu))?;
    round_trips(&ours)?;
    drop(ours);
    peer.end(true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_largest_size_is_what_the_raw_ring_carries() {
        let (w, _r) =
            procwire::baseline::raw_ring(super::super::link::RING, procwire::ShmWait::Futex)
                .unwrap();
        assert_eq!(w.max_message(), super::super::link::MAX_SIZE);
        assert_eq!(super::super::parse_size("4194288"), Ok(4194288));
        assert!(super::super::parse_size("4194289").is_err());
        assert!(
            super::super::parse_size("0")
                .unwrap_err()
                .contains("from 1 byte")
        );
    }

    use super::*;

    fn measured(rounds: &[u64]) -> Measured {
        let all: Vec<Measured> = rounds
            .iter()
            .map(|&m| Measured {
                median_ns: m,
                p99_ns: m,
                throughput_mib_s: 1e6 / m as f64,
                rounds: Vec::new(),
            })
            .collect();
        median(&all)
    }

    /// A slow spell over two of the baseline's rounds and three of
    /// procwire's: the medians compare a fast spell with a slow one (2x),
    /// the rounds taken together say 1.1x.
    #[test]
    fn a_ratio_pairs_the_rounds_taken_together() {
        let base = measured(&[100, 100, 100, 200, 200]);
        let wire = measured(&[110, 110, 220, 220, 220]);
        assert_eq!((base.median_ns, wire.median_ns), (100, 220));
        let (ratio, throughput) = wire.ratios(&base);
        assert!((ratio - 1.1).abs() < 1e-9, "{ratio}");
        assert!((throughput - 1.0 / 1.1).abs() < 1e-9, "{throughput}");
    }

    /// Sides measured apart (a baseline measured again for another row)
    /// with a different number of rounds: the ratio of the medians.
    #[test]
    fn sides_of_different_rounds_compare_medians() {
        let base = measured(&[100, 100, 300]);
        let wire = measured(&[150]);
        assert!((wire.ratios(&base).0 - 1.5).abs() < 1e-9);
    }
}
