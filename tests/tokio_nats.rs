//! NATS awaited (`procwire::tokio::nats`) on a real server: channels and
//! RPC on a current-thread runtime with no thread of procwire's, the same
//! wire as the blocking ends (each talks to the other), and receives
//! cancelled by timers that lose and repeat nothing.

mod util;

use std::time::Duration;

use procwire::tokio::nats as anats;
use procwire::{ErrorKind, Net, nats};
use util::{NatsServer, checked, current_thread};

fn procwire_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|t| {
            std::fs::read_to_string(t.as_ref().unwrap().path().join("comm"))
                .unwrap_or_default()
                .starts_with("procwire")
        })
        .count()
}

/// Awaited ends on one current-thread runtime: 500 messages in order, no
/// thread of procwire's while only they run; then a blocking sender to an
/// awaited receiver and an awaited sender to a blocking receiver.
#[test]
fn awaited_channels_carry_everything_and_speak_with_blocking_ends() {
    checked(60, || {
        let server = NatsServer::start("");
        let addr = server.addr("async.jobs");
        let net = Net::new();
        current_thread().block_on(async {
            let tx = anats::sender::<u32>(&addr, &net).await.unwrap();
            let rx = anats::receiver::<u32>(&addr, &net).await.unwrap();
            for i in 0..500 {
                tx.send(i).await.unwrap();
            }
            for i in 0..500 {
                assert_eq!(rx.recv().await.unwrap(), i);
            }
            assert_eq!(procwire_threads(), 0, "a thread of procwire's");
        });
        let blocking_tx = nats::sender::<u32>(&addr, &net).unwrap();
        blocking_tx.send(7).unwrap();
        let blocking_rx = nats::receiver::<u32>(&addr, &net).unwrap();
        current_thread().block_on(async {
            let rx = anats::receiver::<u32>(&addr, &net).await.unwrap();
            assert_eq!(rx.recv().await.unwrap(), 7);
            let tx = anats::sender::<u32>(&addr, &net).await.unwrap();
            tx.send(8).await.unwrap();
        });
        assert_eq!(
            blocking_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            8
        );
    });
}

/// An awaited sender is a `Sink` and a receiver a `Stream`: 300 messages
/// fed through `SinkExt::send_all` and taken through `StreamExt`, in
/// order; a message fed to the sink goes before a later `send`; a stream
/// polled once with nothing there and then left for `recv` loses nothing
/// (its receive in flight is dropped, as a cancelled one, and the message
/// goes to `recv`), and the stream goes on after.
#[test]
fn awaited_ends_are_a_sink_and_a_stream_and_leaving_them_loses_nothing() {
    use futures_util::{SinkExt, StreamExt};
    checked(60, || {
        let server = NatsServer::start("");
        let addr = server.addr("async.stream");
        let net = Net::new();
        current_thread().block_on(async {
            let mut tx = anats::sender::<u32>(&addr, &net).await.unwrap();
            let mut rx = anats::receiver::<u32>(&addr, &net).await.unwrap();
            let mut items = futures_util::stream::iter((0..300u32).map(Ok));
            tx.send_all(&mut items).await.unwrap();
            let got: Vec<u32> = (&mut rx).take(300).map(Result::unwrap).collect().await;
            assert_eq!(got, (0..300).collect::<Vec<_>>());

            tx.feed(1_000).await.unwrap();
            anats::Sender::send(&tx, 1_001).await.unwrap();
            assert_eq!(rx.recv().await.unwrap(), 1_000);
            assert_eq!(rx.recv().await.unwrap(), 1_001);

            assert!(futures_util::poll!(rx.next()).is_pending());
            anats::Sender::send(&tx, 300).await.unwrap();
            let m = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("recv got the message the stream's receive was waiting for")
                .unwrap();
            assert_eq!(m, 300);
            anats::Sender::send(&tx, 301).await.unwrap();
            assert_eq!(rx.next().await.unwrap().unwrap(), 301);
            // Nothing is left over, and nothing comes twice.
            assert!(
                tokio::time::timeout(Duration::from_millis(300), rx.recv())
                    .await
                    .is_err()
            );
        });
    });
}

/// An awaited service and awaited calls, 200 in flight at once; the
/// handler's error is `Remote`; no server is `Disconnected` at once; a
/// blocking client calls the awaited service too.
#[test]
fn awaited_rpc_keeps_many_calls_in_flight() {
    checked(60, || {
        let server = NatsServer::start("");
        let addr = server.addr("async.rpc");
        let net = Net::new();
        let rt = current_thread();
        rt.block_on(async {
            let client = std::sync::Arc::new(
                anats::Client::<i64, i64>::connect(&addr, &net)
                    .await
                    .unwrap(),
            );
            let e = client.call(1).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            let serving = tokio::spawn({
                let (addr, net) = (addr.clone(), net.clone());
                async move {
                    anats::serve(
                        &addr,
                        &net,
                        |n: i64| {
                            if n < 0 { Err("negative") } else { Ok(n * 2) }
                        },
                    )
                    .await
                }
            });
            // Until the service is subscribed, calls find no responder.
            while client.call(0).await.is_err() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let mut calls = tokio::task::JoinSet::new();
            for i in 0..200i64 {
                let client = std::sync::Arc::clone(&client);
                calls.spawn(async move { (i, client.call(i).await.unwrap()) });
            }
            while let Some(r) = calls.join_next().await {
                let (i, doubled) = r.unwrap();
                assert_eq!(doubled, i * 2);
            }
            let e = client.call(-1).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
            let addr2 = addr.clone();
            let blocking = tokio::task::spawn_blocking(move || {
                nats::Client::<i64, i64>::connect(&addr2, &Net::new())
                    .unwrap()
                    .call(21)
                    .unwrap()
            });
            assert_eq!(blocking.await.unwrap(), 42);
            serving.abort();
        });
    });
}

/// Receives raced against short timers: 1,000 messages arrive once each,
/// in order, though many receives were dropped mid-way.
#[test]
fn receives_cancelled_by_timers_lose_and_repeat_nothing() {
    checked(90, || {
        let server = NatsServer::start("");
        let addr = server.addr("async.cancel");
        let net = Net::new();
        current_thread().block_on(async {
            let tx = anats::sender::<u32>(&addr, &net).await.unwrap();
            let rx = anats::receiver::<u32>(&addr, &net).await.unwrap();
            let sending = tokio::spawn(async move {
                for i in 0..1_000u32 {
                    tx.send(i).await.unwrap();
                    if i % 20 == 0 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            });
            let (mut next, mut cancelled) = (0u32, 0u32);
            while next < 1_000 {
                tokio::select! {
                    m = rx.recv() => {
                        assert_eq!(m.unwrap(), next);
                        next += 1;
                    }
                    () = tokio::time::sleep(Duration::from_micros(300)) => cancelled += 1,
                }
            }
            println!("{cancelled} receives cancelled");
            assert!(cancelled > 0);
            sending.await.unwrap();
        });
    });
}

/// The blocking `nats::serve`, called on a runtime's thread (where it
/// cannot run a runtime of its own: `block_on` there panics), serves a
/// call and stops when asked, its connection on procwire's background
/// runtime; off a runtime it runs its own.
#[test]
fn the_blocking_serve_works_on_a_runtime_thread_and_off_one() {
    checked(60, || {
        let server = NatsServer::start("");
        let addr = server.addr("blocking.serve");
        let net = Net::new();
        for on_a_runtime in [true, false] {
            let (addr2, net2) = (addr.clone(), net.clone());
            let served = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
            let seen = std::sync::Arc::clone(&served);
            let serving = std::thread::spawn(move || {
                let run = || {
                    nats::serve(
                        &addr2,
                        &net2,
                        |x: u32| {
                            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            Ok::<_, String>(x + 1)
                        },
                        || seen.load(std::sync::atomic::Ordering::SeqCst) > 0,
                    )
                };
                if on_a_runtime {
                    current_thread().block_on(async { run() })
                } else {
                    run()
                }
            });
            let client = nats::Client::<u32, u32>::connect(&addr, &net).unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            let answer = loop {
                match client.call_timeout(41, Duration::from_secs(2)) {
                    Ok(a) => break a,
                    // Not subscribed yet: no server serves the subject.
                    Err(e) if e.is_disconnected() && std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => panic!("{e}"),
                }
            };
            assert_eq!(answer, 42);
            serving.join().unwrap().unwrap();
            assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
        }
    });
}
