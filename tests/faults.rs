//! Fault injection on every transport (pipe, stream and seqpacket socket
//! pairs, a Unix socket by path, shared memory, TCP, ZeroMQ): the peer
//! exits cleanly, is killed mid-frame, is frozen and resumed, closes with
//! data unread, dies before its first message; and a signal storm during
//! 10,000 round trips. Each case says what it proves: nothing lost, no
//! hang, no leak, a clear error.

mod util;

use std::time::{Duration, Instant};

use procwire::testing::SignalStorm;
use procwire::zmq;
use procwire::{
    ByteBuf, Child, Duplex, ErrorKind, How, Kind, Net, Receiver, Sender, Shm, SocketPair, task,
};
use serde::{Deserialize, Serialize};
use util::{checked, wait_deadline};

procwire::init_before_main!();

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum T {
    Pipe,
    Stream,
    SeqPacket,
    Unix,
    Shm,
    Tcp,
    Zmq,
}

/// What the child does.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum Script {
    /// Sends n numbered messages, then returns (destructors run).
    SendThenExit(u32),
    /// Sends 100 KB messages until the buffer is full and a send blocks
    /// (mid-frame on a byte stream), then is killed there.
    Flood,
    /// Echoes until the end.
    Echo,
    /// Exits at once, reading nothing.
    ExitAtOnce,
    /// Keeps its end and reads nothing until it is killed.
    Stall,
}

/// The child's end: handed over, or an address to connect to.
#[derive(Serialize, Deserialize)]
enum End {
    Duplex(Duplex<ByteBuf, ByteBuf>),
    PipeOut(Sender<ByteBuf>),
    PipeIn(Receiver<ByteBuf>),
    Connect(T, String),
}

/// The test's end.
enum Ours {
    Duplex(Duplex<ByteBuf, ByteBuf>),
    Zmq(zmq::Channel<ByteBuf, ByteBuf>),
    Rx(Receiver<ByteBuf>),
    Tx(Sender<ByteBuf>),
}

impl Ours {
    fn send(&self, m: ByteBuf) -> procwire::Result<()> {
        match self {
            Ours::Duplex(d) => d.send(m).map_err(|e| e.into_error()),
            Ours::Zmq(z) => z.send(m).map_err(|e| e.into_error()),
            Ours::Tx(t) => t.send(m).map_err(|e| e.into_error()),
            Ours::Rx(_) => unreachable!("a pipe's read end"),
        }
    }

    fn recv(&self, timeout: Duration) -> procwire::Result<ByteBuf> {
        match self {
            Ours::Duplex(d) => Ok(d.recv_timeout(timeout)?),
            Ours::Zmq(z) => Ok(z.recv_timeout(timeout)?),
            Ours::Rx(r) => Ok(r.recv_timeout(timeout)?),
            Ours::Tx(_) => unreachable!("a pipe's write end"),
        }
    }

    fn supervise(&self, child: &Child) {
        match self {
            Ours::Duplex(d) => d.supervise(child),
            Ours::Rx(r) => r.supervise(child),
            Ours::Tx(t) => t.supervise(child),
            Ours::Zmq(_) => {} // ZeroMQ reports no peer: timeouts do
        }
    }
}

/// Message `i`: its number, then a pattern that depends on it.
fn message(i: u32, len: usize) -> ByteBuf {
    let mut v = i.to_le_bytes().to_vec();
    v.extend((0..len).map(|j| (i as usize * 31 + j) as u8));
    ByteBuf::from(v)
}

fn check(m: &[u8]) -> u32 {
    let i = u32::from_le_bytes(m[..4].try_into().unwrap());
    assert!(
        m[4..]
            .iter()
            .enumerate()
            .all(|(j, &b)| b == (i as usize * 31 + j) as u8),
        "message {i} is not whole"
    );
    i
}

fn key_less() -> Net {
    Net::new().no_key()
}

/// The child: takes its end, runs its script.
fn child(script: Script, ctl: Duplex<(), End>) {
    let end = ctl.recv().unwrap();
    let link: Ours = match end {
        End::Duplex(d) => Ours::Duplex(d),
        End::PipeOut(t) => Ours::Tx(t),
        End::PipeIn(r) => Ours::Rx(r),
        End::Connect(T::Zmq, addr) => {
            let z: zmq::Channel<ByteBuf, ByteBuf> =
                zmq::connect(zmq::Kind::Dealer, &addr, &Net::new()).unwrap();
            // Hello and welcome: both sides know the other is connected.
            z.send(ByteBuf::from(b"hello".to_vec())).unwrap();
            assert_eq!(
                &z.recv_timeout(Duration::from_secs(10)).unwrap()[..],
                b"welcome"
            );
            Ours::Zmq(z)
        }
        End::Connect(_, addr) => Ours::Duplex(key_less().connect(&addr).unwrap()),
    };
    match script {
        Script::ExitAtOnce => std::process::exit(0),
        Script::Stall => std::thread::sleep(Duration::from_secs(60)),
        Script::SendThenExit(n) => {
            for i in 0..n {
                link.send(message(i, (i as usize * 13) % 3000)).unwrap();
            }
        }
        Script::Flood => {
            for i in 0.. {
                if link.send(message(i, 100_000)).is_err() {
                    break;
                }
            }
            std::thread::sleep(Duration::from_secs(60));
        }
        Script::Echo => {
            let _storm = SignalStorm::start(Duration::from_millis(1)).unwrap();
            while let Ok(m) = link.recv(Duration::from_secs(30)) {
                if link.send(m).is_err() {
                    break;
                }
            }
        }
    }
    // Leave time for a ZeroMQ bridge to hand the last messages over.
    if let Ours::Zmq(_) = link {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Listener-side resources kept alive (unused otherwise) for the test's
/// duration.
#[allow(dead_code)]
enum Keep {
    None,
    Listener(procwire::Listener, tempfile::TempDir),
    Tcp(procwire::Listener),
}

/// Starts a child running `script` on transport `t`; `child_sends` says
/// which way a one-way pipe points.
fn start(t: T, script: Script, child_sends: bool) -> (Child, Ours, Keep) {
    let (proc_, ctl) = task(child, script).via(How::Server).spawn().unwrap();
    let (ours, keep) = match t {
        T::Pipe if child_sends => {
            let (tx, rx) = procwire::channel::<ByteBuf>().unwrap();
            ctl.send(End::PipeOut(tx)).unwrap();
            (Ours::Rx(rx), Keep::None)
        }
        T::Pipe => {
            let (tx, rx) = procwire::channel::<ByteBuf>().unwrap();
            ctl.send(End::PipeIn(rx)).unwrap();
            (Ours::Tx(tx), Keep::None)
        }
        T::Stream | T::SeqPacket => {
            let kind = if t == T::Stream {
                Kind::Stream
            } else {
                Kind::SeqPacket
            };
            let (a, b) = SocketPair::new(kind).duplex().unwrap();
            ctl.send(End::Duplex(b)).unwrap();
            (Ours::Duplex(a), Keep::None)
        }
        T::Shm => {
            let (a, b) = Shm::new().capacity(256 << 10).duplex().unwrap();
            ctl.send(End::Duplex(b)).unwrap();
            (Ours::Duplex(a), Keep::None)
        }
        T::Unix => {
            let dir = tempfile::tempdir().unwrap();
            let addr = format!("unix:{}", dir.path().join("f.sock").display());
            let l = procwire::listen(&addr).unwrap();
            ctl.send(End::Connect(t, addr)).unwrap();
            let d = l.accept_timeout(Duration::from_secs(10)).unwrap();
            (Ours::Duplex(d), Keep::Listener(l, dir))
        }
        T::Tcp => {
            let l = key_less().listen("tcp://127.0.0.1:0").unwrap();
            ctl.send(End::Connect(t, l.endpoint().to_string())).unwrap();
            let d = l.accept_timeout(Duration::from_secs(10)).unwrap();
            (Ours::Duplex(d), Keep::Tcp(l))
        }
        T::Zmq => {
            let z: zmq::Channel<ByteBuf, ByteBuf> =
                zmq::bind(zmq::Kind::Dealer, "zmq+tcp://127.0.0.1:0", &Net::new()).unwrap();
            ctl.send(End::Connect(t, z.endpoint().to_string())).unwrap();
            assert_eq!(
                &z.recv_timeout(Duration::from_secs(10)).unwrap()[..],
                b"hello"
            );
            z.send(ByteBuf::from(b"welcome".to_vec())).unwrap();
            (Ours::Zmq(z), Keep::None)
        }
    };
    ours.supervise(&proc_);
    drop(ctl);
    (proc_, ours, keep)
}

/// An end after which nothing more comes: an error (ZeroMQ: silence).
fn assert_ends(t: T, ours: &Ours, within: Duration) {
    // ZeroMQ says nothing of a peer that left: a second of silence is it.
    let within = if t == T::Zmq {
        Duration::from_secs(1)
    } else {
        within
    };
    let started = Instant::now();
    match ours.recv(within) {
        Ok(m) => panic!("{t:?}: a message after the end: {} bytes", m.len()),
        Err(e) if t == T::Zmq => assert!(e.is_timeout(), "{t:?}: {e}"),
        Err(e) => {
            assert!(
                e.is_disconnected()
                    || e.kind() == ErrorKind::PeerExited
                    || e.kind() == ErrorKind::UnexpectedEof,
                "{t:?}: {e}"
            );
            assert!(
                started.elapsed() < within,
                "{t:?}: the end took {:?}",
                started.elapsed()
            );
        }
    }
}

fn exits_cleanly(t: T) {
    checked(60, move || {
        let (mut proc_, ours, _keep) = start(t, Script::SendThenExit(500), true);
        for i in 0..500 {
            let m = ours.recv(Duration::from_secs(20)).unwrap();
            assert_eq!(check(&m), i, "{t:?}: out of order");
        }
        assert_ends(t, &ours, Duration::from_secs(5));
        assert!(wait_deadline(&mut proc_, 10).success());
    });
}

fn killed_mid_frame(t: T) {
    checked(60, move || {
        let (mut proc_, ours, _keep) = start(t, Script::Flood, true);
        assert_eq!(check(&ours.recv(Duration::from_secs(20)).unwrap()), 0);
        // The child fills every buffer and blocks inside a send.
        std::thread::sleep(Duration::from_millis(300));
        proc_.kill().unwrap();
        let status = wait_deadline(&mut proc_, 10);
        assert!(!status.success());
        // What was sent arrives whole and in order; then the end, an error
        // that names it (ZeroMQ: silence), never a piece of a message.
        let started = Instant::now();
        let mut next = 1;
        loop {
            match ours.recv(Duration::from_secs(3)) {
                Ok(m) => {
                    assert_eq!(check(&m), next, "{t:?}");
                    next += 1;
                }
                Err(e) if t == T::Zmq => {
                    assert!(e.is_timeout(), "{e}");
                    break;
                }
                Err(e) => {
                    assert!(
                        e.is_disconnected()
                            || matches!(e.kind(), ErrorKind::PeerExited | ErrorKind::UnexpectedEof),
                        "{t:?}: {e}"
                    );
                    break;
                }
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    });
}

fn frozen_then_resumed(t: T) {
    checked(60, move || {
        let (mut proc_, ours, _keep) = start(t, Script::SendThenExit(2000), true);
        let pid = rustix::process::Pid::from_raw(proc_.id() as i32).unwrap();
        for i in 0..2000 {
            if i == 300 {
                rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
                std::thread::sleep(Duration::from_millis(400));
                rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
            }
            let m = ours.recv(Duration::from_secs(20)).unwrap();
            assert_eq!(check(&m), i, "{t:?}: lost or reordered across the freeze");
        }
        assert_ends(t, &ours, Duration::from_secs(5));
        assert!(wait_deadline(&mut proc_, 10).success());
    });
}

fn closes_with_unread_data(t: T) {
    checked(60, move || {
        let (mut proc_, ours, _keep) = start(t, Script::ExitAtOnce, false);
        wait_deadline(&mut proc_, 10);
        // Sends fail once the peer is seen gone; none hangs.
        let started = Instant::now();
        let mut failed = None;
        for i in 0..10_000 {
            if let Err(e) = ours.send(message(i, 1000)) {
                failed = Some(e);
                break;
            }
            if t == T::Zmq && i == 100 {
                break; // ZeroMQ queues or drops for a peer that is gone
            }
        }
        if t != T::Zmq {
            let e = failed.expect("a send to a peer that is gone must fail");
            assert!(
                e.is_disconnected() || e.kind() == ErrorKind::PeerExited,
                "{t:?}: {e}"
            );
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{t:?}");
    });
}

/// Our send waits for room that a stalled peer never makes; the peer is
/// killed; the send ends with an error that says so, never a hang, and
/// never having spun while it waited. (On
/// shared memory the ring holds 1,500-byte records that leave less room
/// than the next one needs: the wait that sleeps there, since fec1f11,
/// must still wake to look at the peer.)
fn killed_while_our_send_waits(t: T) {
    checked(60, move || {
        let (mut proc_, ours, _keep) = start(t, Script::Stall, false);
        let sending = std::thread::spawn(move || {
            let start = util::thread_cpu();
            let mut i = 0;
            loop {
                if let Err(e) = ours.send(message(i, 1500)) {
                    return (i, e, util::thread_cpu() - start);
                }
                i += 1;
            }
        });
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            !sending.is_finished(),
            "{t:?}: a send failed before the kill"
        );
        proc_.kill().unwrap();
        let status = wait_deadline(&mut proc_, 10);
        assert!(!status.success());
        let killed = Instant::now();
        let (sent, e, used) = sending.join().unwrap();
        assert!(sent > 0, "{t:?}: no send went through");
        // Blocked for 500 ms, with a supervised peer (the wait watches its
        // pidfd or, on shared memory, wakes now and then to look at it).
        assert!(
            used < Duration::from_millis(125),
            "{t:?}: the sender, blocked most of 500 ms, used {used:?} of CPU"
        );
        assert!(
            e.is_disconnected() || e.kind() == ErrorKind::PeerExited,
            "{t:?}: {e}"
        );
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "{t:?}: the send ended {:?} after the kill",
            killed.elapsed()
        );
    });
}

fn dies_before_first_message(t: T) {
    checked(60, move || {
        let (mut proc_, ours, _keep) = start(t, Script::ExitAtOnce, true);
        wait_deadline(&mut proc_, 10);
        assert_ends(t, &ours, Duration::from_secs(5));
    });
}

fn signal_storm(t: T) {
    if t == T::Pipe {
        return signal_storm_pipes();
    }
    checked(120, move || {
        let (mut proc_, ours, _keep) = start(t, Script::Echo, true);
        let before = SignalStorm::delivered();
        let storm = SignalStorm::start(Duration::from_millis(1)).unwrap();
        // At least 10,000 round trips, and on for at least 300 signals (a
        // fast transport finishes 10,000 in a fraction of a second).
        let want = 10_000 * util::stress();
        let mut i = 0u32;
        while i < want || SignalStorm::delivered() - before < 300 {
            ours.send(message(i, (i as usize * 7) % 600)).unwrap();
            let m = ours.recv(Duration::from_secs(20)).unwrap();
            assert_eq!(check(&m), i);
            i += 1;
        }
        drop(storm);
        let delivered = SignalStorm::delivered() - before;
        println!("{t:?}: {i} round trips under {delivered} signals");
        drop(ours);
        let _ = proc_.kill();
        wait_deadline(&mut proc_, 10);
    });
}

/// Pipes are one-way: the storm hits a stream of 10,000 messages.
fn signal_storm_pipes() {
    checked(120, move || {
        let (mut proc_, ours, _keep) = start(T::Pipe, Script::SendThenExit(10_000), true);
        let before = SignalStorm::delivered();
        let storm = SignalStorm::start(Duration::from_millis(1)).unwrap();
        for i in 0..10_000u32 {
            std::thread::sleep(Duration::from_micros(if i % 100 == 0 { 2000 } else { 0 }));
            let m = ours.recv(Duration::from_secs(20)).unwrap();
            assert_eq!(check(&m), i);
        }
        drop(storm);
        assert!(
            SignalStorm::delivered() - before > 10,
            "the storm hardly blew"
        );
        assert!(wait_deadline(&mut proc_, 10).success());
    });
}

macro_rules! cases {
    ($($t:ident => $name:ident { $($extra:tt)* }),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[test] fn exits_cleanly() { super::exits_cleanly(T::$t) }
            #[test] fn killed_mid_frame() { super::killed_mid_frame(T::$t) }
            #[test] fn frozen_then_resumed() { super::frozen_then_resumed(T::$t) }
            #[test] fn closes_with_unread_data() { super::closes_with_unread_data(T::$t) }
            #[test] fn dies_before_first_message() { super::dies_before_first_message(T::$t) }
            #[test] fn signal_storm() { super::signal_storm(T::$t) }
            $($extra)*
        }
    )*};
}

/// The behaviour of a transport whose sender knows its peer.
macro_rules! knows_its_peer {
    ($t:ident) => {
        #[test]
        fn killed_while_our_send_waits() {
            super::killed_while_our_send_waits(T::$t)
        }
    };
}

cases! {
    Pipe => pipe { knows_its_peer!(Pipe); },
    Stream => stream { knows_its_peer!(Stream); },
    SeqPacket => seqpacket { knows_its_peer!(SeqPacket); },
    Unix => unix { knows_its_peer!(Unix); },
    Shm => shm { knows_its_peer!(Shm); },
    Tcp => tcp { knows_its_peer!(Tcp); },
    Zmq => zmq_dealer {
        #[test]
        #[ignore = "not applicable: a ZeroMQ socket has no notion of its peer; a send to one \
                    that is gone is queued or dropped by zmq's own rules (closes_with_unread_data)"]
        fn killed_while_our_send_waits() {
            panic!("not applicable to ZeroMQ")
        }
    },
}
