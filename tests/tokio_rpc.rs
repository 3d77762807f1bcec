//! Issue 15, item 3: RPC awaited. Many calls in flight on one channel
//! without a task per call, a concurrent server with a bound, the same wire
//! as the blocking side and the Python peer, cancellation and a server that
//! goes away. Each test runs under a deadline with descriptors counted.

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use procwire::tokio::rpc;
use procwire::{CodecKind, ErrorKind, Options};
use util::{checked, python, runtime, wait_deadline};

/// 2,000 calls from 100 tasks on one client, a server running at most 8
/// handlers at once that answer after random pauses (so replies come back
/// out of order): every call gets its own answer, the bound holds and is
/// used.
#[test]
fn many_calls_in_flight_each_get_their_own_reply() {
    checked(120, || {
        let (c, s) = procwire::rpc::pair::<u64, u64>().unwrap();
        runtime().block_on(async {
            let running = Arc::new(AtomicUsize::new(0));
            let most = Arc::new(AtomicUsize::new(0));
            let (r, m) = (Arc::clone(&running), Arc::clone(&most));
            let server = tokio::spawn(rpc::serve(s.into_async().unwrap(), 8, move |n: u64| {
                let (r, m) = (Arc::clone(&r), Arc::clone(&m));
                async move {
                    let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_micros(n % 7 * 150)).await;
                    r.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, String>(n * 3 + 1)
                }
            }));
            let client = Arc::new(rpc::Client::new(c.into_async().unwrap()));
            let callers: Vec<_> = (0..100u64)
                .map(|t| {
                    let client = Arc::clone(&client);
                    tokio::spawn(async move {
                        for i in 0..20 {
                            let n = t * 1000 + i;
                            assert_eq!(client.call(n).await.unwrap(), n * 3 + 1);
                        }
                    })
                })
                .collect();
            for c in callers {
                c.await.unwrap();
            }
            drop(client);
            server.await.unwrap().unwrap();
            let most = most.load(Ordering::SeqCst);
            assert!((2..=8).contains(&most), "{most} handlers ran at once");
        });
    });
}

/// The async side and the blocking side speak one wire: an async client
/// against the blocking `rpc::serve`, and the blocking `rpc::Client`
/// against the async `serve`; a handler's error is `Remote` both ways.
#[test]
fn async_and_blocking_sides_interoperate() {
    checked(60, || {
        let rt = runtime();
        let (c, s) = procwire::rpc::pair::<i64, i64>().unwrap();
        let server = std::thread::spawn(move || {
            procwire::rpc::serve(s, |n: i64| if n < 0 { Err("negative") } else { Ok(n * n) })
        });
        rt.block_on(async {
            let client = rpc::Client::new(c.into_async().unwrap());
            assert_eq!(client.call(12).await.unwrap(), 144);
            let e = client.call(-1).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Remote);
            assert!(e.to_string().contains("negative"), "{e}");
        });
        server.join().unwrap().unwrap();

        let (c, s) = procwire::rpc::pair::<i64, i64>().unwrap();
        let serving = rt.spawn(rpc::serve(
            {
                let _in = rt.enter();
                s.into_async().unwrap()
            },
            4,
            |n: i64| async move { if n < 0 { Err("negative") } else { Ok(n + 1) } },
        ));
        let client = procwire::rpc::Client::new(c);
        assert_eq!(client.call(41).unwrap(), 42);
        assert_eq!(client.call(-5).unwrap_err().kind(), ErrorKind::Remote);
        drop(client);
        rt.block_on(serving).unwrap().unwrap();
    });
}

/// Calls dropped by their deadline (`tokio::time::timeout`) while the
/// server is slow to answer them: each is forgotten, its late reply
/// discarded, and the calls around it, and after it, get their own
/// answers.
#[test]
fn calls_dropped_by_deadlines_leave_the_others_answered() {
    checked(60, || {
        let (c, s) = procwire::rpc::pair::<u64, u64>().unwrap();
        runtime().block_on(async {
            let server = tokio::spawn(rpc::serve(
                s.into_async().unwrap(),
                16,
                |n: u64| async move {
                    if n.is_multiple_of(3) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok::<_, String>(n + 100)
                },
            ));
            let client = Arc::new(rpc::Client::new(c.into_async().unwrap()));
            let tasks: Vec<_> = (0..300u64)
                .map(|n| {
                    let client = Arc::clone(&client);
                    tokio::spawn(async move {
                        let deadline =
                            Duration::from_millis(if n.is_multiple_of(3) { 5 } else { 5_000 });
                        (n, tokio::time::timeout(deadline, client.call(n)).await)
                    })
                })
                .collect();
            let mut timed_out = 0;
            for t in tasks {
                match t.await.unwrap() {
                    (n, Ok(r)) => assert_eq!(r.unwrap(), n + 100),
                    (n, Err(_)) => {
                        assert_eq!(n % 3, 0, "only the slow calls time out");
                        timed_out += 1;
                    }
                }
            }
            assert!(timed_out > 0);
            // Late replies arrive now and are thrown away; new calls work.
            tokio::time::sleep(Duration::from_millis(100)).await;
            for n in [1u64, 2, 4] {
                assert_eq!(client.call(n).await.unwrap(), n + 100);
            }
            drop(client);
            server.await.unwrap().unwrap();
        });
    });
}

/// A server that goes away with calls in flight (its end dropped while its
/// handlers never answer): every waiting call fails with the reason, none
/// hangs, and calls after it fail at once.
#[test]
fn a_server_gone_mid_call_fails_every_call_in_flight() {
    checked(30, || {
        let (c, s) = procwire::rpc::pair::<u64, u64>().unwrap();
        runtime().block_on(async {
            let s = s.into_async().unwrap();
            let client = Arc::new(rpc::Client::new(c.into_async().unwrap()));
            let calls: Vec<_> = (0..10u64)
                .map(|n| {
                    let client = Arc::clone(&client);
                    tokio::spawn(async move { client.call(n).await })
                })
                .collect();
            // Take the calls in, answer none, and go.
            for _ in 0..10 {
                s.recv().await.unwrap();
            }
            drop(s);
            for c in calls {
                let e = c.await.unwrap().unwrap_err();
                assert!(e.is_disconnected(), "{e}");
            }
            assert!(client.call(99).await.unwrap_err().is_disconnected());
        });
    });
}

/// The Python reference peer, unchanged, serves an async client (MessagePack):
/// squares, and its handler's exception as a `Remote` error.
#[test]
fn the_python_peer_serves_an_async_client() {
    checked(60, || {
        let mut cmd = procwire::Command::new(python());
        cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/peer.py"))
            .arg("rpc");
        let end = cmd
            .channel_with::<procwire::rpc::Call<u64>, procwire::rpc::Reply<u64>>(
                &Options::new().codec(CodecKind::MsgPack),
            )
            .unwrap();
        let mut child = cmd.spawn().unwrap();
        runtime().block_on(async {
            let client = rpc::Client::new(end.into_async().unwrap());
            let answers = futures_util::future::join_all((0..20u64).map(|n| client.call(n))).await;
            for (n, a) in (0..20u64).zip(answers) {
                match a {
                    Ok(sq) => assert_eq!(sq, n * n),
                    Err(e) => {
                        assert_eq!(n, 13);
                        assert_eq!(e.kind(), ErrorKind::Remote);
                        assert!(e.to_string().contains("ZeroDivisionError"), "{e}");
                    }
                }
            }
        });
        assert!(wait_deadline(&mut child, 20).success());
    });
}

/// Endpoints by address, awaited (`unix:`): 50 clients connecting at once
/// to one listener, each answered on its own channel; an accept dropped by
/// its deadline took no connection (the next accept gets the client that
/// came after); a ZeroMQ address is refused with a clear error, not faked
/// (`tcp://`, awaited, is `tests/tokio_endpoints.rs`).
#[test]
fn unix_endpoints_listen_accept_and_connect_awaited() {
    checked(60, || {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("unix:{}", dir.path().join("s").display());
        let net = procwire::Net::new();
        runtime().block_on(async {
            let listener = Arc::new(net.listen(&addr).unwrap().into_async().unwrap());
            let waited =
                tokio::time::timeout(Duration::from_millis(20), listener.accept::<u64, u64>());
            assert!(waited.await.is_err(), "nobody came");
            let serving = {
                let listener = Arc::clone(&listener);
                tokio::spawn(async move {
                    for _ in 0..50 {
                        let ch = listener.accept::<u64, u64>().await.unwrap();
                        tokio::spawn(async move {
                            let n = ch.recv().await.unwrap();
                            ch.send(n * 2).await.unwrap();
                        });
                    }
                })
            };
            let clients: Vec<_> = (0..50u64)
                .map(|n| {
                    let (addr, net) = (addr.clone(), net.clone());
                    tokio::spawn(async move {
                        let ch = procwire::tokio::connect::<u64, u64>(&addr, &net)
                            .await
                            .unwrap();
                        assert_eq!(ch.request(n).await.unwrap(), n * 2);
                    })
                })
                .collect();
            for c in clients {
                c.await.unwrap();
            }
            serving.await.unwrap();
            // A ZeroMQ address is a DEALER's (with feature `zmq`; the
            // error says which feature is missing without it): where
            // nobody listens, the connect deadline ends the wait.
            let quick = net.clone().connect_timeout(Duration::from_millis(300));
            let e = procwire::tokio::connect::<u64, u64>("zmq+tcp://127.0.0.1:1", &quick)
                .await
                .unwrap_err();
            assert!(
                matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Unsupported),
                "{e}"
            );
            assert!(
                e.to_string().contains("zmq") || e.to_string().contains("ZeroMQ"),
                "{e}"
            );
        });
    });
}
