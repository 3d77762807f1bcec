//! The conformance behaviours over async ends (feature `tokio`), each on
//! its own transport: order and sizes, the end of stream after the last
//! message, a closed peer, timeouts through `tokio::time`, descriptors in
//! messages, an answer that survives its sender's close, many tasks
//! sending at once. The blocking suite is `tests/conformance.rs`.

mod util;

use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;

use futures_util::StreamExt;
use procwire::tokio as aio;
use procwire::{ByteBuf, ErrorKind, Options};
use util::{T, checked, pattern};

use util::Halves;

/// Both ends of a two-way conversation on `t`, blocking (made async inside
/// the runtime).
fn two_way(t: T) -> (Halves, Halves) {
    util::two_way(t, &Options::new().max_frame(16 << 20))
}

type Async = (aio::Sender<ByteBuf>, aio::Receiver<ByteBuf>);

fn make_async((tx, rx): Halves) -> Async {
    (tx.into_async().unwrap(), rx.into_async().unwrap())
}

fn run<F: std::future::Future<Output = ()>>(f: F) {
    util::runtime().block_on(f)
}

fn order_and_sizes(t: T) {
    checked(120, move || {
        let ((tx, _), (_, rx)) = two_way(t);
        run(async move {
            let (tx, rx) = (tx.into_async().unwrap(), rx.into_async().unwrap());
            let sizes = [0usize, 1, 1000, 65_536, 212_961, 1 << 20, 10 << 20];
            let feeding = tokio::spawn(async move {
                for (i, &n) in sizes.iter().enumerate() {
                    tx.send(ByteBuf::from(pattern(i as u32, n))).await.unwrap();
                }
                tx.flush().await.unwrap();
                tx
            });
            for (i, &n) in sizes.iter().enumerate() {
                let m = rx.recv().await.unwrap();
                assert!(
                    m[..] == pattern(i as u32, n)[..],
                    "{t:?}: message {i} of {n} bytes"
                );
            }
            drop(feeding.await.unwrap());
        });
    });
}

fn eof_after_last(t: T) {
    checked(30, move || {
        let ((tx, _), (_, rx)) = two_way(t);
        run(async move {
            let (tx, mut rx) = (tx.into_async().unwrap(), rx.into_async().unwrap());
            for i in 0..3u32 {
                tx.send(ByteBuf::from(pattern(i, 10))).await.unwrap();
            }
            drop(tx);
            for i in 0..3u32 {
                assert_eq!(rx.recv().await.unwrap().into_vec(), pattern(i, 10));
            }
            if t.has_eof() {
                let e = rx.recv().await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
                assert!(rx.recv().await.unwrap_err().is_disconnected());
                assert!(rx.next().await.is_none(), "the stream ends");
            } else {
                let late = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await;
                assert!(
                    late.is_err(),
                    "a datagram socket has no end of file: the deadline ends the wait"
                );
            }
        });
    });
}

fn peer_closed(t: T) {
    checked(30, move || {
        let ((tx, _), (_, rx)) = two_way(t);
        run(async move {
            let tx = tx.into_async().unwrap();
            drop(rx);
            let msg = ByteBuf::from(b"anyone there?".to_vec());
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            // TCP learns of the close from the reset its next segment draws.
            let e = loop {
                match tx.send(msg.clone()).await {
                    Err(e) => break e,
                    Ok(()) => {
                        assert!(
                            t == T::Tcp && std::time::Instant::now() < deadline,
                            "{t:?}: sends kept succeeding"
                        );
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            };
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            assert_eq!(e.into_inner(), msg, "the message comes back");
        });
    });
}

fn timeouts(t: T) {
    checked(30, move || {
        let ((tx, _), (_, rx)) = two_way(t);
        run(async move {
            let (tx, rx) = (tx.into_async().unwrap(), rx.into_async().unwrap());
            assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::Empty);
            let start = std::time::Instant::now();
            assert!(
                tokio::time::timeout(Duration::from_millis(30), rx.recv())
                    .await
                    .is_err()
            );
            assert!(start.elapsed() >= Duration::from_millis(30));
            tx.send(ByteBuf::from(b"late".to_vec())).await.unwrap();
            assert_eq!(
                &rx.recv().await.unwrap()[..],
                b"late",
                "usable after the timeout"
            );
        });
    });
}

fn fd_passing(t: T) {
    checked(30, move || {
        let ((tx, _), (_, rx)) = two_way(t);
        run(async move {
            let (tx, rx) = (tx.into_async().unwrap(), rx.into_async().unwrap());
            if !t.carries_fds() {
                let (_r, w) = procwire::pipe().unwrap();
                let e = tx
                    .send_with_fds(ByteBuf::new(), &[w.as_fd()])
                    .await
                    .unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Unsupported);
                return;
            }
            let mut readers = Vec::new();
            for i in 0..20u32 {
                let body = ByteBuf::from(pattern(i, (i as usize * 97) % 500));
                if i % 3 == 0 {
                    let (r, mut w) = procwire::pipe().unwrap();
                    w.write_all(format!("pipe for {i}").as_bytes()).unwrap();
                    tx.send_with_fds(body, &[w.as_fd()]).await.unwrap();
                    readers.push(r);
                } else {
                    tx.send(body).await.unwrap();
                }
            }
            drop(readers);
            for i in 0..20u32 {
                let (body, fds) = rx.recv_with_fds().await.unwrap();
                assert_eq!(body.into_vec(), pattern(i, (i as usize * 97) % 500));
                if i % 3 == 0 {
                    assert_eq!(fds.len(), 1, "message {i} carries one descriptor");
                    assert!(procwire::is_cloexec(&fds[0]).unwrap());
                    let mut w =
                        procwire::PipeWriter::from_fd(fds.into_iter().next().unwrap()).unwrap();
                    assert_eq!(
                        w.write(b"x").unwrap_err().kind(),
                        std::io::ErrorKind::BrokenPipe
                    );
                } else {
                    assert!(fds.is_empty(), "message {i} carries none");
                }
            }
        });
    });
}

fn answer_survives_close(t: T) {
    checked(60, move || {
        for round in 0..50u32 {
            let (a, b) = two_way(t);
            run(async move {
                let ((a_tx, a_rx), (b_tx, b_rx)) = (make_async(a), make_async(b));
                a_tx.send(ByteBuf::from(pattern(round, 1))).await.unwrap();
                a_tx.send(ByteBuf::from(pattern(round, 2))).await.unwrap();
                assert_eq!(b_rx.recv().await.unwrap().into_vec(), pattern(round, 1));
                b_tx.send(ByteBuf::from(pattern(round, 300))).await.unwrap();
                drop((b_tx, b_rx)); // request 2 unread
                let answer = tokio::time::timeout(Duration::from_secs(10), a_rx.recv()).await;
                let answer = answer
                    .expect("no hang")
                    .unwrap_or_else(|e| panic!("{t:?} round {round}: the answer was lost: {e}"));
                assert_eq!(answer.into_vec(), pattern(round, 300));
                if t.has_eof() {
                    let e = tokio::time::timeout(Duration::from_secs(10), a_rx.recv())
                        .await
                        .expect("no hang");
                    assert!(e.unwrap_err().is_disconnected(), "{t:?} round {round}");
                }
            });
        }
    });
}

/// An await sleeps (the blocking suite's `waits_asleep`, awaited): on a
/// current-thread runtime, a receive on an empty channel and a send on a
/// full one each wait 400 ms for a blocking peer in another thread, and
/// the runtime's thread uses a small part of that in CPU time. A readiness
/// that never clears (or a ring that never arms) would spin it.
fn waits_asleep(t: T) {
    const AWAY: Duration = Duration::from_millis(400);
    checked(60, move || {
        let ((a_tx, a_rx), (b_tx, b_rx)) = two_way(t);
        let mut sent = 0u32;
        while a_tx.try_send(ByteBuf::from(pattern(sent, 1500))).is_ok() {
            sent += 1;
        }
        let (go, wait_go) = std::sync::mpsc::channel::<()>();
        let waiting = std::thread::spawn(move || {
            let rt = util::current_thread();
            rt.block_on(async move {
                let (a_tx, a_rx) = (a_tx.into_async().unwrap(), a_rx.into_async().unwrap());
                let start = util::thread_cpu();
                let got = a_rx.recv().await.unwrap();
                let receiving = util::thread_cpu() - start;
                go.send(()).unwrap();
                let start = util::thread_cpu();
                a_tx.send(ByteBuf::from(pattern(sent, 1500))).await.unwrap();
                a_tx.flush().await.unwrap();
                (got, receiving, util::thread_cpu() - start)
            })
        });
        std::thread::sleep(AWAY);
        assert!(
            !waiting.is_finished(),
            "{t:?}: a receive returned with nothing sent"
        );
        b_tx.send(ByteBuf::from(pattern(0, 100))).unwrap();
        wait_go.recv().unwrap();
        std::thread::sleep(AWAY);
        assert!(
            !waiting.is_finished(),
            "{t:?}: a send into a full channel returned at once"
        );
        for i in 0..=sent {
            assert_eq!(
                b_rx.recv().unwrap().into_vec(),
                pattern(i, 1500),
                "{t:?}: message {i}"
            );
        }
        let (got, receiving, sending) = waiting.join().unwrap();
        assert_eq!(got.into_vec(), pattern(0, 100));
        assert!(
            receiving < AWAY / 4,
            "{t:?}: a receive awaited {AWAY:?} and used {receiving:?} of CPU"
        );
        assert!(
            sending < AWAY / 4,
            "{t:?}: a send awaited {AWAY:?} for room and used {sending:?} of CPU"
        );
    });
}

macro_rules! behaviours {
    ($t:expr; $($b:ident)*) => {$(
        #[test] fn $b() { super::$b($t) }
    )*};
}

macro_rules! suite {
    ($($module:ident => $t:expr),* $(,)?) => {$(
        mod $module {
            behaviours!($t; order_and_sizes eof_after_last peer_closed timeouts fd_passing
                answer_survives_close waits_asleep);
        }
    )*};
}

suite! {
    pipe => super::T::Pipe,
    stream => super::T::Stream,
    datagram => super::T::Datagram,
    seqpacket => super::T::SeqPacket,
    unix_path => super::T::UnixPath,
    shm => super::T::Shm,
    tcp => super::T::Tcp,
}
