//! Issue 15, ZeroMQ awaited (`procwire::tokio::zmq`): the `zeromq` socket
//! on the caller's runtime, no bridge and no thread of procwire's; against
//! libzmq (pyzmq, installed by scripts/test) too. Each test runs under a
//! deadline with the descriptors counted before and after.

mod util;

use std::time::Duration;

use procwire::tokio::zmq;
use procwire::zmq::Kind;
use procwire::{CodecKind, ErrorKind, Net};
use util::{checked, current_thread, finish, pyzmq, runtime};

fn opts() -> Net {
    Net::new().codec(CodecKind::MsgPack)
}

/// The names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).unwrap_or_default())
        .map(|n| n.trim().to_string())
        .collect()
}

/// REQ/REP, PUSH/PULL and DEALER/ROUTER, both ends awaited on one
/// current-thread runtime (a blocking call would hang it, and the deadline
/// fail), over TCP and ipc: every message arrives, in order where ZeroMQ
/// orders, and procwire starts no thread (the blocking sockets' runtime
/// thread is `procwire-zmq`).
#[test]
fn every_socket_kind_is_awaited_on_the_callers_runtime_with_no_thread_of_procwires() {
    checked(60, || {
        let dir = tempfile::tempdir().unwrap();
        let before = thread_names().len();
        current_thread().block_on(async {
            for ipc in [false, true] {
                // One address per socket: a dropped socket's listener
                // closes when the runtime next runs its tasks.
                let place = |name: &str| match ipc {
                    false => "zmq+tcp://127.0.0.1:0".to_string(),
                    true => format!("zmq+ipc://{}", dir.path().join(name).display()),
                };
                // REQ/REP.
                let rep = zmq::bind::<String, String>(Kind::Rep, &place("rep"), &opts())
                    .await
                    .unwrap();
                let addr = rep.endpoint().to_string();
                let req = zmq::connect::<String, String>(Kind::Req, &addr, &opts())
                    .await
                    .unwrap();
                let server = tokio::spawn(async move {
                    for _ in 0..200 {
                        let job = rep.recv().await.unwrap();
                        rep.send(format!("{job} accomplished!")).await.unwrap();
                    }
                });
                for i in 0..200 {
                    assert_eq!(
                        req.request(format!("job {i}")).await.unwrap(),
                        format!("job {i} accomplished!")
                    );
                }
                server.await.unwrap();
                drop(req);

                // PUSH/PULL, in order.
                let pull = zmq::bind::<(), u64>(Kind::Pull, &place("pull"), &opts())
                    .await
                    .unwrap();
                let addr = pull.endpoint().to_string();
                let push = zmq::connect::<u64, ()>(Kind::Push, &addr, &opts())
                    .await
                    .unwrap();
                let pushing = tokio::spawn(async move {
                    for i in 0..2_000u64 {
                        push.send(i).await.unwrap();
                    }
                    push
                });
                for i in 0..2_000u64 {
                    assert_eq!(pull.recv().await.unwrap(), i);
                }
                drop(pushing.await.unwrap());

                // DEALER/ROUTER: sends and receives at once on the dealer.
                let router = zmq::bind_router::<String, String>(&place("router"), &opts())
                    .await
                    .unwrap();
                let addr = router.endpoint().to_string();
                let dealer = std::sync::Arc::new(
                    zmq::connect::<String, String>(Kind::Dealer, &addr, &opts())
                        .await
                        .unwrap(),
                );
                let serving = tokio::spawn(async move {
                    for _ in 0..300 {
                        let (peer, job) = router.recv().await.unwrap();
                        router
                            .send(&peer, &format!("{job} accomplished!"))
                            .await
                            .unwrap();
                    }
                });
                let receiving = {
                    let dealer = std::sync::Arc::clone(&dealer);
                    tokio::spawn(async move {
                        let mut got = Vec::new();
                        for _ in 0..300 {
                            got.push(dealer.recv().await.unwrap());
                        }
                        got
                    })
                };
                for i in 0..300 {
                    dealer.send(format!("job {i}")).await.unwrap();
                }
                let mut got = receiving.await.unwrap();
                got.sort();
                let mut want: Vec<String> =
                    (0..300).map(|i| format!("job {i} accomplished!")).collect();
                want.sort();
                assert_eq!(got, want);
                serving.await.unwrap();
                assert!(
                    !thread_names().iter().any(|n| n.starts_with("procwire")),
                    "{:?}",
                    thread_names()
                );
            }
        });
        assert_eq!(thread_names().len(), before, "{:?}", thread_names());
    });
}

/// Awaited sockets and libzmq peers, each way: an async REQ asks a pyzmq
/// REP, an async ROUTER serves two pyzmq DEALERs (two identities), an
/// async PUSH feeds a pyzmq PULL.
#[test]
fn awaited_sockets_speak_to_libzmq() {
    checked(90, || {
        let rt = runtime();
        let (child, bound) = pyzmq("rep", "bind", "tcp://127.0.0.1:*", 100);
        rt.block_on(async {
            let addr = format!("zmq+{}", bound.unwrap());
            let req = zmq::connect::<String, String>(Kind::Req, &addr, &opts())
                .await
                .unwrap();
            for i in 0..100 {
                assert_eq!(
                    req.request(format!("job {i}")).await.unwrap(),
                    format!("job {i} accomplished!")
                );
            }
        });
        assert!(finish(child).contains("served 100"));

        let router = rt.block_on(async {
            zmq::bind_router::<String, String>("zmq+tcp://127.0.0.1:0", &opts())
                .await
                .unwrap()
        });
        let libzmq = router
            .endpoint()
            .to_string()
            .trim_start_matches("zmq+")
            .to_string();
        let a = pyzmq("dealer", "connect", &libzmq, 50).0;
        let b = pyzmq("dealer", "connect", &libzmq, 50).0;
        let peers = rt.block_on(async {
            let mut peers = std::collections::HashSet::new();
            for _ in 0..100 {
                let (peer, job) = router.recv().await.unwrap();
                peers.insert(peer.identity().to_vec());
                router
                    .send(&peer, &format!("{job} accomplished!"))
                    .await
                    .unwrap();
            }
            peers
        });
        assert_eq!(peers.len(), 2, "two dealers, two identities");
        assert!(finish(a).contains("dealt 50"));
        assert!(finish(b).contains("dealt 50"));
        drop(router);

        let (child, bound) = pyzmq("pull", "bind", "tcp://127.0.0.1:*", 1000);
        rt.block_on(async {
            let addr = format!("zmq+{}", bound.unwrap());
            let push = zmq::connect::<u64, ()>(Kind::Push, &addr, &opts())
                .await
                .unwrap();
            for i in 0..1000u64 {
                push.send(i).await.unwrap();
            }
            // Dropped inside the runtime, whose tasks hand the rest over.
            tokio::time::timeout(Duration::from_secs(20), async {
                while !child_done(&child) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("the pyzmq PULL got everything");
        });
        let out = finish(child);
        assert!(out.contains(&format!("sum {}", 999 * 1000 / 2)), "{out}");
    });
}

/// Whether the child has exited (without reaping it).
fn child_done(child: &std::process::Child) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
    stat.rsplit_once(") ")
        .is_none_or(|(_, rest)| rest.starts_with('Z'))
}

/// A channel is a `Stream` and a `Sink`: PUSH feeds 2,000 messages
/// through `SinkExt::send_all`, PULL takes them with `StreamExt`, every
/// one in order; REQ/REP through the sink and stream too, and a ROUTER
/// (of `(peer, message)` pairs). Going from the
/// stream or the sink to `recv` or `send` loses and reorders nothing: a
/// stream's receive in flight (its future dropped by a `select!` against a
/// message that came elsewhere, or simply left) is finished by the next
/// `recv`, and a fed message goes before a later `send`.
#[test]
fn a_channel_is_a_stream_and_a_sink_and_mixing_ways_loses_nothing() {
    use futures_util::{SinkExt, StreamExt};
    checked(60, || {
        current_thread().block_on(async {
            let mut pull = zmq::bind::<u32, u32>(Kind::Pull, "zmq+tcp://127.0.0.1:0", &opts())
                .await
                .unwrap();
            let addr = pull.endpoint().to_string();
            let mut push = zmq::connect::<u32, u32>(Kind::Push, &addr, &opts())
                .await
                .unwrap();
            let feeding = tokio::spawn(async move {
                let mut items = futures_util::stream::iter((0..2_000u32).map(Ok));
                push.send_all(&mut items).await.unwrap();
                push
            });
            let got: Vec<u32> = (&mut pull).take(2_000).map(Result::unwrap).collect().await;
            assert_eq!(got, (0..2_000).collect::<Vec<_>>());
            let mut push = feeding.await.unwrap();

            // The stream's receive left in flight: polled once, when
            // nothing had come, then abandoned for `recv`.
            assert!(futures_util::poll!(pull.next()).is_pending());
            push.feed(7).await.unwrap();
            push.send(8).await.unwrap(); // `SinkExt::send`, flushing 7 first
            zmq::Channel::send(&push, 9).await.unwrap();
            for want in [7, 8, 9] {
                let m = tokio::time::timeout(Duration::from_secs(5), pull.recv())
                    .await
                    .unwrap_or_else(|_| panic!("message {want} never came"))
                    .unwrap();
                assert_eq!(m, want);
            }
            // A fed message goes before a later plain `send`.
            push.feed(10).await.unwrap();
            zmq::Channel::send(&push, 11).await.unwrap();
            assert_eq!(pull.recv().await.unwrap(), 10);
            assert_eq!(pull.recv().await.unwrap(), 11);

            // REQ/REP, the server as a stream into its own sink.
            let mut rep = zmq::bind::<String, String>(Kind::Rep, "zmq+tcp://127.0.0.1:0", &opts())
                .await
                .unwrap();
            let addr = rep.endpoint().to_string();
            let server = tokio::spawn(async move {
                for _ in 0..100 {
                    let job = rep.next().await.unwrap().unwrap();
                    rep.send(format!("{job}!")).await.unwrap();
                }
            });
            let req = zmq::connect::<String, String>(Kind::Req, &addr, &opts())
                .await
                .unwrap();
            for i in 0..100 {
                assert_eq!(req.request(i.to_string()).await.unwrap(), format!("{i}!"));
            }
            server.await.unwrap();

            // A ROUTER: a stream of (peer, message) and a sink of them.
            let mut router = zmq::bind_router::<String, String>("zmq+tcp://127.0.0.1:0", &opts())
                .await
                .unwrap();
            let addr = router.endpoint().to_string();
            let server = tokio::spawn(async move {
                for _ in 0..100 {
                    let (peer, job) = router.next().await.unwrap().unwrap();
                    SinkExt::send(&mut router, (peer, format!("{job}?")))
                        .await
                        .unwrap();
                }
            });
            let dealer = zmq::connect::<String, String>(Kind::Dealer, &addr, &opts())
                .await
                .unwrap();
            for i in 0..100 {
                assert_eq!(
                    dealer.request(i.to_string()).await.unwrap(),
                    format!("{i}?")
                );
            }
            server.await.unwrap();
        });
    });
}

/// Cancellation: a `recv` raced against short random timers 10,000 times
/// (PUSH to PULL, and DEALER to ROUTER), hundreds of them dropped while
/// waiting, never loses or repeats a message.
#[test]
fn receives_cancelled_by_timers_lose_nothing() {
    checked(120, || {
        runtime().block_on(async {
            let pull = zmq::bind::<(), u64>(Kind::Pull, "zmq+tcp://127.0.0.1:0", &opts())
                .await
                .unwrap();
            let push = zmq::connect::<u64, ()>(Kind::Push, &pull.endpoint().to_string(), &opts())
                .await
                .unwrap();
            let router = zmq::bind_router::<(), u64>("zmq+tcp://127.0.0.1:0", &opts())
                .await
                .unwrap();
            let dealer =
                zmq::connect::<u64, ()>(Kind::Dealer, &router.endpoint().to_string(), &opts())
                    .await
                    .unwrap();
            const N: u64 = 10_000;
            let sending = tokio::spawn(async move {
                for i in 0..N {
                    push.send(i).await.unwrap();
                    dealer.send(i).await.unwrap();
                    // Paced now and then, so that the receiver finds
                    // nothing and its timer wins.
                    if i % 50 == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                (push, dealer)
            });
            let mut seed = 0x9e37_79b9_u64;
            let mut roll = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed % 100
            };
            // The race: a timer, or a future ready on its second poll (so a
            // receive that finds nothing at once is dropped).
            let mut pause = move || {
                let r = roll();
                async move {
                    if r < 50 {
                        tokio::task::yield_now().await;
                    } else {
                        tokio::time::sleep(Duration::from_micros(r)).await;
                    }
                }
            };
            let (mut next_pull, mut next_router, mut cancelled) = (0u64, 0u64, 0u32);
            while next_pull < N || next_router < N {
                if next_pull < N {
                    tokio::select! {
                        m = pull.recv() => {
                            assert_eq!(m.unwrap(), next_pull);
                            next_pull += 1;
                        }
                        () = pause() => cancelled += 1,
                    }
                }
                if next_router < N {
                    tokio::select! {
                        m = router.recv() => {
                            assert_eq!(m.unwrap().1, next_router);
                            next_router += 1;
                        }
                        () = pause() => cancelled += 1,
                    }
                }
            }
            println!("{cancelled} receives cancelled by their timer");
            assert!(cancelled >= 100, "only {cancelled} receives were cancelled");
            drop(sending.await.unwrap());
        });
    });
}

/// Bad input and misuse are errors, and the socket goes on: a message over
/// the receiver's maximum, one in another codec, a PULL that sends, a PUSH
/// that receives; a ROUTER through `bind`; a public bind refused.
#[test]
fn bad_messages_and_misuse_are_errors_and_the_socket_goes_on() {
    checked(60, || {
        runtime().block_on(async {
            let small = opts().max_frame(64);
            let pull = zmq::bind::<(), String>(Kind::Pull, "zmq+tcp://127.0.0.1:0", &small)
                .await
                .unwrap();
            let addr = pull.endpoint().to_string();
            let push = zmq::connect::<String, ()>(Kind::Push, &addr, &opts())
                .await
                .unwrap();
            let json =
                zmq::connect::<u64, ()>(Kind::Push, &addr, &Net::new().codec(CodecKind::Json))
                    .await
                    .unwrap();
            push.send("x".repeat(1000)).await.unwrap();
            let e = pull.recv().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::FrameTooLarge, "{e}");
            assert!(e.to_string().contains("maximum of 64"), "{e}");
            push.send("fits".into()).await.unwrap();
            assert_eq!(pull.recv().await.unwrap(), "fits");
            json.send(12345).await.unwrap();
            let e = pull.recv().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
            push.send("still".into()).await.unwrap();
            assert_eq!(pull.recv().await.unwrap(), "still");

            let e = pull.send(()).await.unwrap_err();
            assert_eq!(e.error().kind(), ErrorKind::Unsupported, "{e}");
            let e = push.recv().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
            let e = zmq::bind::<(), ()>(Kind::Router, "zmq+tcp://127.0.0.1:0", &opts())
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            let e = zmq::bind::<(), ()>(Kind::Pull, "zmq+tcp://0.0.0.0:0", &opts())
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
        });
    });
}

/// Issue 15, item 5: ZeroMQ through `procwire::tokio::listen`, `accept`
/// and `connect`. A ROUTER listens and each peer it hears from is a
/// connection of its own (three procwire DEALERs, a pyzmq DEALER and a
/// pyzmq REQ here), answered on its own duplex; a procwire DEALER connects
/// to a pyzmq ROUTER. On one current-thread runtime, no thread of
/// procwire's; descriptors counted by `checked`.
#[test]
fn zmq_endpoints_listen_accept_and_connect() {
    checked(60, || {
        let before = thread_names();
        current_thread().block_on(async {
            let net = opts();
            let listener = procwire::tokio::listen("zmq+tcp://127.0.0.1:0", &net)
                .await
                .unwrap();
            let addr = listener.endpoint().to_string();
            assert!(addr.starts_with("zmq+tcp://127.0.0.1:"), "{addr}");
            let mut clients = Vec::new();
            for i in 0..3u32 {
                let c = procwire::tokio::connect::<u32, u32>(&addr, &net)
                    .await
                    .unwrap();
                c.send(i).await.unwrap();
                clients.push(c);
            }
            let mut servers = Vec::new();
            for _ in 0..3 {
                let s = listener.accept::<u32, u32>().await.unwrap();
                let i = s.recv().await.unwrap();
                s.send(i * 10).await.unwrap();
                s.send(i * 10 + 1).await.unwrap();
                servers.push((i, s));
            }
            let mut seen: Vec<u32> = servers.iter().map(|(i, _)| *i).collect();
            seen.sort_unstable();
            assert_eq!(seen, [0, 1, 2], "one accept per peer");
            for (i, c) in (0u32..).zip(&clients) {
                assert_eq!(c.recv().await.unwrap(), i * 10);
                assert_eq!(c.recv().await.unwrap(), i * 10 + 1);
            }
            // A peer's next message goes to its duplex, not a new accept.
            clients[1].send(99).await.unwrap();
            let (_, one) = servers.iter().find(|(i, _)| *i == 1).unwrap();
            assert_eq!(one.recv().await.unwrap(), 99);
            let none =
                tokio::time::timeout(Duration::from_millis(100), listener.accept::<u32, u32>())
                    .await;
            assert!(none.is_err(), "no new peer, no accept");
            // A peer that comes and goes leaves no descriptor behind, while
            // the listener lives on.
            let fds = util::fd_count();
            let c = procwire::tokio::connect::<u32, u32>(&addr, &net)
                .await
                .unwrap();
            c.send(5).await.unwrap();
            let s = listener.accept::<u32, u32>().await.unwrap();
            assert_eq!(s.recv().await.unwrap(), 5);
            assert!(util::fd_count() > fds);
            drop((c, s));
            let settle = tokio::time::Instant::now() + Duration::from_secs(5);
            while util::fd_count() != fds && tokio::time::Instant::now() < settle {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(util::fd_count(), fds, "{:#?}", util::fd_list());

            // libzmq peers: a DEALER (its jobs answered in any order) and a
            // REQ (behind its delimiter) to the listener.
            for (mode, n) in [("dealer", 20), ("req", 5)] {
                let (child, _) = pyzmq(mode, "connect", addr.trim_start_matches("zmq+"), n);
                let peer = listener.accept::<String, String>().await.unwrap();
                for _ in 0..n {
                    let job = peer.recv().await.unwrap();
                    peer.send(format!("{job} accomplished!")).await.unwrap();
                }
                let out = tokio::task::spawn_blocking(move || finish(child))
                    .await
                    .unwrap();
                assert!(out.contains(&format!(" {n}")), "{out}");
            }
            // A procwire DEALER connected to a libzmq ROUTER.
            let (child, bound) = pyzmq("router", "bind", "tcp://127.0.0.1:*", 3);
            let to = format!("zmq+{}", bound.unwrap());
            let c = procwire::tokio::connect::<String, String>(&to, &net)
                .await
                .unwrap();
            for i in 0..3 {
                c.send(format!("ask {i}")).await.unwrap();
                assert_eq!(c.recv().await.unwrap(), format!("ask {i} accomplished!"));
            }
            let out = tokio::task::spawn_blocking(move || finish(child))
                .await
                .unwrap();
            assert!(out.contains("routed 3"), "{out}");
            // A ZeroMQ listener turns blocking too (its ROUTER stays on
            // this runtime).
            let endpoint = listener.endpoint();
            let back = listener.into_blocking().unwrap();
            assert_eq!(back.endpoint(), endpoint);
        });
        let mine: Vec<String> = thread_names()
            .into_iter()
            .filter(|n| n.starts_with("procwire") && !before.contains(n))
            .collect();
        assert!(mine.is_empty(), "procwire started threads: {mine:?}");
    });
}

/// A socket that outlives the runtime it was opened on (the `zeromq`
/// crate's tasks for it, its connections, end with that runtime): its
/// receive and its send, awaited on another runtime, fail at once with an
/// error that says so, where the receive used to wait for ever and the
/// send to fail as "send queue full/broken"; a router too. Sockets opened
/// on the runtime that goes on work there.
#[test]
fn a_socket_that_outlived_its_runtime_says_so() {
    checked(60, || {
        let first = current_thread();
        let (a, b, router) = first.block_on(async {
            let (a, b) = dealers().await;
            b.send("before".into()).await.unwrap();
            assert_eq!(a.recv().await.unwrap(), "before");
            let router = zmq::bind_router::<String, String>("zmq+tcp://127.0.0.1:0", &opts())
                .await
                .unwrap();
            (a, b, router)
        });
        drop(first);
        let next = current_thread();
        next.block_on(async {
            let within = Duration::from_secs(5);
            let recv = tokio::time::timeout(within, a.recv())
                .await
                .expect("not a hang");
            let send = tokio::time::timeout(within, b.send("after".into()))
                .await
                .expect("not a hang");
            let routed = tokio::time::timeout(within, router.recv())
                .await
                .expect("not a hang");
            let errors = [
                recv.unwrap_err().into_error(),
                send.unwrap_err().into_error(),
                routed.unwrap_err().into_error(),
            ];
            for e in errors {
                assert_eq!(e.kind(), ErrorKind::Io, "{e}");
                assert!(e.to_string().contains("has shut down"), "{e}");
            }
            drop((a, b, router));
            let (a, b) = dealers().await;
            b.send("here".into()).await.unwrap();
            assert_eq!(a.recv().await.unwrap(), "here");
        });
        drop(next);
    });
}

/// Two DEALERs on loopback TCP, connected.
async fn dealers() -> (zmq::Channel<String, String>, zmq::Channel<String, String>) {
    let a = zmq::bind(Kind::Dealer, "zmq+tcp://127.0.0.1:0", &opts())
        .await
        .unwrap();
    let b = zmq::connect(Kind::Dealer, &a.endpoint().to_string(), &opts())
        .await
        .unwrap();
    (a, b)
}
