//! ZeroMQ channels against the real libzmq: pyzmq peers (installed by
//! scripts/test) in both directions, for REQ/REP, PUSH/PULL and
//! DEALER/ROUTER; and procwire's own policies (loopback binds, stale ipc
//! socket files).

mod util;

use std::time::Duration;

use procwire::zmq::{self, Kind};
use procwire::{CodecKind, ErrorKind, Net};
use util::{checked, current_thread, finish, pyzmq};

fn opts() -> Net {
    Net::new().codec(CodecKind::MsgPack)
}

fn zmq_addr(libzmq: &str) -> String {
    format!("zmq+{libzmq}")
}

#[test]
fn procwire_req_asks_a_pyzmq_rep() {
    checked(60, || {
        let (child, bound) = pyzmq("rep", "bind", "tcp://127.0.0.1:*", 100);
        let req =
            zmq::connect::<String, String>(Kind::Req, &zmq_addr(&bound.unwrap()), &opts()).unwrap();
        for i in 0..100 {
            assert_eq!(
                req.request(format!("job {i}")).unwrap(),
                format!("job {i} accomplished!")
            );
        }
        drop(req);
        assert!(finish(child).contains("served 100"));
    });
}

#[test]
fn a_pyzmq_req_asks_procwire_rep() {
    checked(60, || {
        let rep = zmq::bind::<String, String>(Kind::Rep, "zmq+tcp://127.0.0.1:0", &opts()).unwrap();
        let addr = rep.endpoint().to_string();
        let (child, _) = pyzmq("req", "connect", addr.trim_start_matches("zmq+"), 100);
        for _ in 0..100 {
            let job = rep.recv_timeout(Duration::from_secs(20)).unwrap();
            rep.send(format!("{job} accomplished!")).unwrap();
        }
        assert!(finish(child).contains("asked 100"));
    });
}

#[test]
fn push_and_pull_cross_both_ways() {
    checked(60, || {
        // procwire PUSH -> pyzmq PULL.
        let (child, bound) = pyzmq("pull", "bind", "tcp://127.0.0.1:*", 1000);
        let push =
            zmq::connect::<u64, ()>(Kind::Push, &zmq_addr(&bound.unwrap()), &opts()).unwrap();
        for i in 0..1000u64 {
            push.send(i).unwrap();
        }
        let out = finish(child);
        assert!(out.contains(&format!("sum {}", 999 * 1000 / 2)), "{out}");
        drop(push);
        // pyzmq PUSH -> procwire PULL.
        let pull = zmq::bind::<(), u64>(Kind::Pull, "zmq+tcp://127.0.0.1:0", &opts()).unwrap();
        let addr = pull.endpoint().to_string();
        let (child, _) = pyzmq("push", "connect", addr.trim_start_matches("zmq+"), 1000);
        let sum: u64 = (0..1000)
            .map(|_| pull.recv_timeout(Duration::from_secs(20)).unwrap())
            .sum();
        assert_eq!(sum, 999 * 1000 / 2);
        finish(child);
        // A PULL cannot send: the send says so, and the socket goes on.
        let e = pull.send(()).unwrap_err().into_error();
        assert!(e.to_string().contains("PULL socket cannot send"), "{e}");
        let e = pull.recv_timeout(Duration::from_millis(50)).unwrap_err();
        assert!(e.is_timeout(), "{e}");
    });
}

#[test]
fn procwire_router_serves_pyzmq_dealers_and_procwire_dealer_asks_a_pyzmq_router() {
    checked(60, || {
        let router = zmq::bind_router::<String, String>("zmq+tcp://127.0.0.1:0", &opts()).unwrap();
        let addr = router.endpoint().to_string();
        let libzmq = addr.trim_start_matches("zmq+").to_string();
        let a = pyzmq("dealer", "connect", &libzmq, 50).0;
        let b = pyzmq("dealer", "connect", &libzmq, 50).0;
        let mut peers = std::collections::HashSet::new();
        for _ in 0..100 {
            let (peer, job) = router.recv().unwrap();
            peers.insert(peer.identity().to_vec());
            router.send(&peer, &format!("{job} accomplished!")).unwrap();
        }
        assert_eq!(peers.len(), 2, "two dealers, two identities");
        assert!(finish(a).contains("dealt 50"));
        assert!(finish(b).contains("dealt 50"));
        // The other way round.
        let (child, bound) = pyzmq("router", "bind", "tcp://127.0.0.1:*", 20);
        let dealer =
            zmq::connect::<String, String>(Kind::Dealer, &zmq_addr(&bound.unwrap()), &opts())
                .unwrap();
        for i in 0..20 {
            dealer.send(format!("job {i}")).unwrap();
        }
        let mut got: Vec<String> = (0..20).map(|_| dealer.recv().unwrap()).collect();
        got.sort();
        let mut want: Vec<String> = (0..20).map(|i| format!("job {i} accomplished!")).collect();
        want.sort();
        assert_eq!(got, want);
        assert!(finish(child).contains("routed 20"));
    });
}

#[test]
fn a_pyzmq_req_through_procwire_router_keeps_its_envelope() {
    checked(60, || {
        let router =
            zmq::bind_router::<String, String>("zmq+ipc:///tmp/procwire-test-router.sock", &opts());
        let router = router.unwrap();
        let (child, _) = pyzmq("req", "connect", "ipc:///tmp/procwire-test-router.sock", 30);
        for _ in 0..30 {
            let (peer, job) = router.recv().unwrap();
            router.send(&peer, &format!("{job} accomplished!")).unwrap();
        }
        assert!(finish(child).contains("asked 30"));
    });
}

#[test]
fn a_stale_ipc_socket_file_is_replaced_and_a_live_one_refused() {
    checked(60, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.sock");
        // A socket file nobody listens on, as a crashed process leaves it.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let addr = format!("zmq+ipc://{}", path.display());
        let rep = zmq::bind::<String, String>(Kind::Rep, &addr, &opts()).unwrap();
        let e = zmq::bind::<String, String>(Kind::Rep, &addr, &opts()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e}");
        let (child, _) = pyzmq("req", "connect", &format!("ipc://{}", path.display()), 3);
        for _ in 0..3 {
            let job = rep.recv().unwrap();
            rep.send(format!("{job} accomplished!")).unwrap();
        }
        finish(child);
        // A regular file is never removed.
        let file = dir.path().join("plain");
        std::fs::write(&file, b"data").unwrap();
        let e = zmq::bind::<(), ()>(
            Kind::Pull,
            &format!("zmq+ipc://{}", file.display()),
            &opts(),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"data");
    });
}

#[test]
fn zeromq_binds_only_to_loopback_unless_forced() {
    checked(30, || {
        let e = zmq::bind::<(), ()>(Kind::Pull, "zmq+tcp://0.0.0.0:0", &opts()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
        assert!(e.to_string().contains("force_public_zmq"), "{e}");
        let forced = opts().force_public_zmq();
        let pull = zmq::bind::<(), u32>(Kind::Pull, "zmq+tcp://0.0.0.0:0", &forced).unwrap();
        drop(pull);
    });
}

#[test]
fn a_reply_to_a_peer_that_is_gone_is_dropped_and_the_router_serves_on() {
    checked(60, || {
        let router = zmq::bind_router::<String, String>("zmq+tcp://127.0.0.1:0", &opts()).unwrap();
        let libzmq = router
            .endpoint()
            .to_string()
            .trim_start_matches("zmq+")
            .to_string();
        let mut last = None;
        for round in 0..2 {
            let child = pyzmq("dealer", "connect", &libzmq, 5).0;
            for _ in 0..5 {
                let (peer, job) = router.recv().unwrap();
                router.send(&peer, &format!("{job} accomplished!")).unwrap();
                last = Some(peer);
            }
            assert!(finish(child).contains("dealt 5"), "round {round}");
            // The dealer has exited: replies to it go nowhere, harmlessly.
            for _ in 0..3 {
                router
                    .send(last.as_ref().unwrap(), &"late".to_string())
                    .unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

/// Issue 11, item 9: binding and connecting work from inside a tokio
/// runtime (current-thread and multi-thread), not only from plain threads.
#[test]
fn sockets_open_from_inside_tokio_runtimes() {
    checked(60, || {
        let current = current_thread();
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        for rt in [current, multi] {
            let echoed = rt.block_on(async {
                let rep = zmq::bind::<String, String>(Kind::Rep, "zmq+tcp://127.0.0.1:0", &opts())
                    .unwrap();
                let req =
                    zmq::connect::<String, String>(Kind::Req, &rep.endpoint().to_string(), &opts())
                        .unwrap();
                let server = std::thread::spawn(move || {
                    let q = rep.recv_timeout(Duration::from_secs(10)).unwrap();
                    rep.send(format!("{q}!")).unwrap();
                    rep
                });
                req.send("inside".into()).unwrap();
                let a = req.recv_timeout(Duration::from_secs(10)).unwrap();
                drop(server.join().unwrap());
                a
            });
            assert_eq!(echoed, "inside!");
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    });
}

/// Issue 11, item 3: a ZeroMQ send that fails hands the message back, as
/// every other channel's does.
#[test]
fn a_failed_zmq_send_hands_the_message_back() {
    checked(60, || {
        let pull =
            zmq::bind::<String, String>(Kind::Pull, "zmq+tcp://127.0.0.1:0", &opts()).unwrap();
        // A PULL socket cannot send: the first send fails (through a
        // bridge, a later one would).
        let mut failed = None;
        for i in 0..1000 {
            match pull.send(format!("message {i}")) {
                Ok(()) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => {
                    failed = Some((i, e));
                    break;
                }
            }
        }
        let (i, e) = failed.expect("sending on a PULL socket never failed");
        assert_eq!(e.into_inner(), format!("message {i}"));
    });
}

/// This thread's id, as /proc names it.
fn tid() -> String {
    let link = std::fs::read_link("/proc/thread-self").unwrap();
    link.file_name().unwrap().to_string_lossy().into_owned()
}

/// The voluntary context switches so far of this process's threads that
/// `count` picks by id and name (from /proc).
fn switches(count: impl Fn(&str, &str) -> bool) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let id = dir.file_name().unwrap().to_string_lossy().into_owned();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !count(&id, comm.trim()) {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .map_or(0, |v| v.trim().parse::<u64>().unwrap());
    }
    total
}

/// How many of this process's threads are named `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|t| {
            let comm = std::fs::read_to_string(t.as_ref().unwrap().path().join("comm"));
            comm.is_ok_and(|c| c.trim() == name)
        })
        .count()
}

/// Issue 14, item 6: a blocking ZeroMQ send and receive drive the socket
/// on the caller's thread. Over 4,000 round trips no thread but the two
/// callers and the sockets' own (`procwire-zmq`) wakes (a bridge's thread
/// would, four times a round trip), and the sockets' threads, which look
/// at the clock while calls come and go and take the runtime over only
/// after a pause, wake far less than once a message; during one long call
/// they sleep.
#[test]
fn blocking_round_trips_are_driven_on_the_callers_thread() {
    checked(60, || {
        let net = Net::new();
        let rep = zmq::bind::<u64, u64>(Kind::Rep, "zmq+tcp://127.0.0.1:0", &net).unwrap();
        let req = zmq::connect::<u64, u64>(Kind::Req, &rep.endpoint().to_string(), &net).unwrap();
        let n = 4000;
        let (tell, server_tid) = std::sync::mpsc::channel();
        let server = std::thread::spawn(move || {
            tell.send(tid()).unwrap();
            for _ in 0..n {
                let q = rep.recv().unwrap();
                rep.send(q + 1).unwrap();
            }
            rep
        });
        let (me, server_tid) = (tid(), server_tid.recv().unwrap());
        let callers = [me.as_str(), server_tid.as_str()];
        assert_eq!(req.request(0).unwrap(), 1); // connected
        let others = |id: &str, name: &str| !callers.contains(&id) && name != "procwire-zmq";
        let drivers = |_: &str, name: &str| name == "procwire-zmq";
        let (others_before, drivers_before) = (switches(others), switches(drivers));
        let t = std::time::Instant::now();
        for i in 1..n {
            assert_eq!(req.request(i).unwrap(), i + 1);
        }
        let ms = t.elapsed().as_millis() as u64;
        let others_woken = switches(others) - others_before;
        let drivers_woken = switches(drivers) - drivers_before;
        let rep = server.join().unwrap();
        assert!(
            others_woken <= 20,
            "threads other than the callers and the sockets' were woken {others_woken} times \
             in {n} round trips"
        );
        // Two sockets, each thread woken about twice a millisecond while
        // calls go on, and a few times more for each pause it took over.
        assert!(
            drivers_woken <= n / 2 + 4 * ms,
            "the sockets' threads were woken {drivers_woken} times in {ms} ms of {n} round trips"
        );
        // A long call: the socket's thread sleeps until it ends.
        let pull = zmq::bind::<(), u8>(Kind::Pull, "zmq+tcp://127.0.0.1:0", &net).unwrap();
        assert!(pull.recv_timeout(Duration::from_millis(20)).is_err());
        let before = switches(drivers);
        let e = pull.recv_timeout(Duration::from_millis(300)).unwrap_err();
        assert!(e.is_timeout(), "{e}");
        let woken = switches(drivers) - before;
        assert!(woken <= 10, "woken {woken} times during one call of 300 ms");
        assert_eq!(threads_named("procwire-zmq"), 3);
        drop((req, rep, pull));
        assert_eq!(
            threads_named("procwire-zmq"),
            0,
            "the sockets' threads ended"
        );
    });
}

/// Between calls the socket's thread drives it: a PUSH and a PULL on one
/// thread connect (the PULL's side of the handshake runs while nobody
/// calls on it), and what the PUSH sent just before it was dropped is
/// written all the same (its linger).
#[test]
fn a_socket_nobody_calls_on_accepts_peers_and_a_dropped_one_delivers_what_it_sent() {
    checked(60, || {
        let net = Net::new();
        let pull = zmq::bind::<(), u32>(Kind::Pull, "zmq+tcp://127.0.0.1:0", &net).unwrap();
        let push = zmq::connect::<u32, ()>(Kind::Push, &pull.endpoint().to_string(), &net).unwrap();
        for i in 0..1000 {
            push.send(i).unwrap();
        }
        drop(push);
        let got: Vec<u32> = (0..1000)
            .map(|_| pull.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
    });
}

/// `duplex()` makes the socket an ordinary channel (here for `Select`);
/// its errors still say why the bridge ended.
#[test]
fn a_bridged_socket_is_selected_on_and_its_errors_say_why() {
    checked(60, || {
        let net = Net::new();
        let pull = zmq::bind::<String, u32>(Kind::Pull, "zmq+tcp://127.0.0.1:0", &net).unwrap();
        let push =
            zmq::connect::<u32, String>(Kind::Push, &pull.endpoint().to_string(), &net).unwrap();
        let (tx, idle) = procwire::channel::<u8>().unwrap();
        let mut sel = procwire::Select::new();
        let quiet = sel.recv(&idle);
        let zmq_at = sel.recv(pull.duplex().unwrap().receiver());
        push.send(7).unwrap();
        assert_eq!(sel.ready_timeout(Duration::from_secs(10)).unwrap(), zmq_at);
        assert_eq!(pull.recv_timeout(Duration::from_secs(10)).unwrap(), 7);
        // Through the bridge a PULL's send is taken, then the bridge ends
        // and says why.
        pull.send("no".into()).unwrap();
        let e = pull.recv_timeout(Duration::from_secs(10)).unwrap_err();
        assert!(e.to_string().contains("PULL socket cannot send"), "{e}");
        let _ = (quiet, tx);
    });
}

/// `procwire::listen` and `procwire::connect` at ZeroMQ addresses, blocking:
/// a DEALER connects, a ROUTER's new peers are accepted as duplexes, over
/// TCP and ipc; `accept_timeout` times out with nobody new; an accepted
/// peer outlives its listener; the listener turns async and back; the
/// threads end and no descriptor is left.
#[test]
fn blocking_endpoints_listen_accept_and_connect_over_zeromq() {
    checked(60, || {
        let dir = tempfile::tempdir().unwrap();
        let places = [
            "zmq+tcp://127.0.0.1:0".to_string(),
            format!("zmq+ipc://{}", dir.path().join("z").display()),
        ];
        let threads = || std::fs::read_dir("/proc/self/task").unwrap().count();
        let before = threads();
        for place in places {
            let net = opts();
            let listener = net.listen(&place).unwrap();
            let addr = listener.endpoint().to_string();
            let e = listener
                .accept_timeout::<String, String>(Duration::from_millis(50))
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Timeout, "{place}: {e}");
            let a = net.connect::<String, String>(&addr).unwrap();
            let b = net.connect::<String, String>(&addr).unwrap();
            a.send("from a".into()).unwrap();
            b.send("from b".into()).unwrap();
            for _ in 0..2 {
                let peer = listener
                    .accept_timeout::<String, String>(Duration::from_secs(10))
                    .unwrap();
                let said = peer.recv().unwrap();
                peer.send(format!("{said}, answered")).unwrap();
            }
            assert_eq!(a.recv().unwrap(), "from a, answered", "{place}");
            assert_eq!(b.recv().unwrap(), "from b, answered", "{place}");

            // A third peer, accepted by the listener made async; then
            // blocking again, the listener is dropped: the peer goes on.
            let c = net.connect::<String, String>(&addr).unwrap();
            c.send("from c".into()).unwrap();
            let (listener, peer) = current_thread().block_on(async {
                let listener = listener.into_async().unwrap();
                let peer = listener.accept::<String, String>().await.unwrap();
                (listener, peer.into_blocking().unwrap())
            });
            let listener = listener.into_blocking().unwrap();
            assert_eq!(peer.recv().unwrap(), "from c", "{place}");
            drop(listener);
            c.send("again".into()).unwrap();
            assert_eq!(
                peer.recv_timeout(Duration::from_secs(10)).unwrap(),
                "again",
                "{place}"
            );
            peer.send("still here".into()).unwrap();
            assert_eq!(c.recv().unwrap(), "still here", "{place}");
        }
        // Each connection's thread, and each listener's, ends with it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while threads() > before && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(threads(), before, "a ZeroMQ thread outlived its ends");
    });
}

/// A libzmq DEALER (pyzmq) is a peer that `procwire::listen` accepts at a
/// ZeroMQ address, blocking, and answers.
#[test]
fn a_pyzmq_dealer_is_accepted_by_a_blocking_listener() {
    checked(60, || {
        let listener = opts().listen("zmq+tcp://127.0.0.1:0").unwrap();
        let addr = listener.endpoint().to_string();
        let libzmq = addr.strip_prefix("zmq+").unwrap();
        let (child, _) = pyzmq("dealer", "connect", libzmq, 5);
        let peer = listener
            .accept_timeout::<String, String>(Duration::from_secs(20))
            .unwrap();
        for _ in 0..5 {
            let job = peer.recv().unwrap();
            peer.send(format!("{job} accomplished!")).unwrap();
        }
        assert!(finish(child).contains("dealt 5"));
    });
}
