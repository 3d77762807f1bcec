//! Issue 15, first part: awaitable ends (`procwire::tokio`) on every
//! transport. Each test runs under a deadline with the descriptors counted
//! before and after; what each proves is said above it.

mod util;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt, TryStreamExt};
use procwire::tokio as aio;
use procwire::{ByteBuf, ErrorKind, Kind, Net, Shm, SocketPair};
use util::{checked, current_thread, pattern, runtime};

procwire::init_before_main!();

#[derive(Clone, Copy, Debug)]
enum T {
    Pipe,
    Stream,
    SeqPacket,
    Dgram,
    Shm,
    Unix,
    Tcp,
}

const ALL: [T; 7] = [
    T::Pipe,
    T::Stream,
    T::SeqPacket,
    T::Dgram,
    T::Shm,
    T::Unix,
    T::Tcp,
];

type Bytes = ByteBuf;

/// A sending end and a receiving end of `t`, blocking (made async inside
/// the runtime by `Tx::new` / `Rx::new`).
enum BTx {
    S(procwire::Sender<Bytes>),
    D(procwire::Duplex<Bytes, Bytes>),
}
enum BRx {
    R(procwire::Receiver<Bytes>),
    D(procwire::Duplex<Bytes, Bytes>),
}

fn blocking_pair(t: T) -> (BTx, BRx) {
    let duplex = |k| SocketPair::new(k).duplex::<Bytes, Bytes>().unwrap();
    let (a, b) = match t {
        T::Pipe => {
            let (tx, rx) = procwire::channel::<Bytes>().unwrap();
            return (BTx::S(tx), BRx::R(rx));
        }
        T::Stream => duplex(Kind::Stream),
        T::SeqPacket => duplex(Kind::SeqPacket),
        T::Dgram => duplex(Kind::Datagram),
        T::Shm => Shm::new().duplex::<Bytes, Bytes>().unwrap(),
        T::Unix | T::Tcp => {
            let dir = tempfile::tempdir().unwrap();
            let net = Net::new().no_key();
            let addr = match t {
                T::Unix => format!("unix:{}", dir.path().join("s").display()),
                _ => "tcp://127.0.0.1:0".to_string(),
            };
            let listener = net.listen(&addr).unwrap();
            let addr = listener.endpoint().to_string();
            let accepting = std::thread::spawn(move || listener.accept::<Bytes, Bytes>().unwrap());
            let b = net.connect::<Bytes, Bytes>(&addr).unwrap();
            (accepting.join().unwrap(), b)
        }
    };
    (BTx::D(a), BRx::D(b))
}

enum Tx {
    S(aio::Sender<Bytes>),
    D(aio::Duplex<Bytes, Bytes>),
}
enum Rx {
    R(aio::Receiver<Bytes>),
    D(aio::Duplex<Bytes, Bytes>),
}

impl Tx {
    fn new(b: BTx) -> Tx {
        match b {
            BTx::S(s) => Tx::S(s.into_async().unwrap()),
            BTx::D(d) => Tx::D(d.into_async().unwrap()),
        }
    }

    async fn send(&self, m: Bytes) -> procwire::Result<()> {
        match self {
            Tx::S(s) => s.send(m).await.map_err(|e| e.into_error()),
            Tx::D(d) => d.send(m).await.map_err(|e| e.into_error()),
        }
    }

    /// The end's own `flush` (not `SinkExt::flush`).
    async fn flush(&self) -> procwire::Result<()> {
        match self {
            Tx::S(s) => s.flush().await,
            Tx::D(d) => d.flush().await,
        }
    }

    /// `SinkExt::feed`: the message left in the sink's buffer.
    async fn feed(&mut self, m: Bytes) {
        match self {
            Tx::S(s) => s.feed(m).await.unwrap(),
            Tx::D(d) => d.feed(m).await.unwrap(),
        }
    }

    fn try_send(&self, m: Bytes) -> Result<(), procwire::TrySendError<Bytes>> {
        match self {
            Tx::S(s) => s.try_send(m),
            Tx::D(d) => d.try_send(m),
        }
    }
}

impl Rx {
    fn new(b: BRx) -> Rx {
        match b {
            BRx::R(r) => Rx::R(r.into_async().unwrap()),
            BRx::D(d) => Rx::D(d.into_async().unwrap()),
        }
    }

    async fn recv(&self) -> procwire::Result<Bytes> {
        match self {
            Rx::R(r) => Ok(r.recv().await?),
            Rx::D(d) => Ok(d.recv().await?),
        }
    }
}

/// Numbered messages: the index in the first 4 bytes, then a pattern.
fn numbered(i: u32, len: usize) -> Bytes {
    let mut v = i.to_le_bytes().to_vec();
    v.extend(pattern(i, len));
    Bytes::from(v)
}

fn number_of(m: &[u8]) -> u32 {
    let i = u32::from_le_bytes(m[..4].try_into().unwrap());
    assert_eq!(
        &m[4..],
        &pattern(i, m.len() - 4)[..],
        "message {i} is not whole"
    );
    i
}

/// A small xorshift: pauses and races that differ from run to run.
struct Dice(u64);

impl Dice {
    fn new() -> Dice {
        Dice((std::process::id() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn roll(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Every transport carries messages from empty to 10 MiB (across the
/// datagram limits, the out-of-line path and many partial writes) between
/// two tasks, whole and in order.
#[test]
fn every_transport_carries_every_size_awaited() {
    checked(240, || {
        for t in ALL {
            let (btx, brx) = blocking_pair(t);
            let rt = runtime();
            rt.block_on(async {
                let (tx, rx) = (Tx::new(btx), Rx::new(brx));
                let sizes = [0usize, 1, 64, 4096, 65_536, 212_961, 1 << 20, 10 << 20];
                let sending = tokio::spawn(async move {
                    for (i, &len) in sizes.iter().chain(&sizes).enumerate() {
                        tx.send(numbered(i as u32, len)).await.unwrap();
                    }
                    tx.flush().await.unwrap();
                    tx
                });
                for (i, &len) in sizes.iter().chain(&sizes).enumerate() {
                    let m = rx.recv().await.unwrap_or_else(|e| panic!("{t:?}: {e}"));
                    assert_eq!((number_of(&m), m.len()), (i as u32, len + 4), "{t:?}");
                }
                drop(sending.await.unwrap());
            });
        }
    });
}

/// `Stream` and `Sink`: `send_all` from a stream of messages, and a
/// receiving stream that ends at the clean end of stream (the sender
/// dropped), every message in order.
#[test]
fn stream_and_sink_combinators_carry_everything_and_end_cleanly() {
    checked(120, || {
        for t in [T::Pipe, T::Stream, T::Shm] {
            let rt = runtime();
            let (tx, rx) = match t {
                T::Pipe => procwire::channel::<u32>().unwrap(),
                T::Shm => Shm::new().channel::<u32>().unwrap(),
                _ => SocketPair::new(Kind::Stream).channel::<u32>().unwrap(),
            };
            rt.block_on(async {
                let mut tx = tx.into_async().unwrap();
                let rx = rx.into_async().unwrap();
                let feeding = tokio::spawn(async move {
                    let mut items = futures_util::stream::iter((0..20_000u32).map(Ok));
                    tx.send_all(&mut items).await.unwrap();
                    tx.close().await.unwrap();
                });
                let got: Vec<u32> = rx.map(Result::unwrap).collect().await;
                assert_eq!(got, (0..20_000).collect::<Vec<_>>(), "{t:?}");
                feeding.await.unwrap();
            });
        }
    });
}

/// The two blocking duplexes of `t` (not a pipe, which is one-way).
fn duplex_pair(
    t: T,
) -> (
    procwire::Duplex<Bytes, Bytes>,
    procwire::Duplex<Bytes, Bytes>,
) {
    match blocking_pair(t) {
        (BTx::D(a), BRx::D(b)) => (a, b),
        _ => unreachable!("{t:?} is one-way"),
    }
}

/// Every two-way transport, each on a multi-thread runtime and on a
/// current-thread one (where a blocking call would hang the test).
fn two_way_on_both_runtimes() -> impl Iterator<Item = (T, tokio::runtime::Runtime)> {
    ALL.into_iter()
        .filter(|t| !matches!(t, T::Pipe))
        .flat_map(|t| [(t, runtime()), (t, current_thread())])
}

/// A duplex is a `Stream` and a `Sink` too, and splits into a sender and a
/// receiver for two tasks, on every two-way transport and both runtimes: the peer echoes by
/// `forward`ing its receiving half into its sending half; this side feeds
/// messages in batches through its `Sink`, flushes, and takes the echoes
/// from its `Stream`, every one whole and in order. The echo stops after
/// the last message and drops its halves: this side's stream then ends
/// cleanly (`None`), not with an error (on every transport with an end of
/// stream: not a datagram socket).
#[test]
fn a_duplex_is_a_stream_and_a_sink_and_splits_for_two_tasks() {
    checked(120, || {
        for (t, rt) in two_way_on_both_runtimes() {
            let (a, b) = duplex_pair(t);
            rt.block_on(async {
                let mut a = a.into_async().unwrap();
                let (batches, batch) = (200u32, 5u32);
                let echo = tokio::spawn(async move {
                    let (tx, rx) = b.into_async().unwrap().split();
                    rx.err_into::<procwire::Error>()
                        .take((batches * batch) as usize)
                        .forward(tx)
                        .await
                });
                for k in 0..batches {
                    for i in k * batch..(k + 1) * batch {
                        a.feed(numbered(i, (i % 300) as usize)).await.unwrap();
                    }
                    a.flush().await.unwrap();
                    for i in k * batch..(k + 1) * batch {
                        let m = a
                            .next()
                            .await
                            .unwrap_or_else(|| panic!("{t:?}: ended early"));
                        let m = m.unwrap_or_else(|e| panic!("{t:?}: {e}"));
                        assert_eq!(number_of(&m), i, "{t:?}");
                    }
                }
                echo.await
                    .unwrap()
                    .unwrap_or_else(|e| panic!("{t:?}: the echo: {e}"));
                // (A datagram socket has no end of stream to read.)
                if !matches!(t, T::Dgram) {
                    assert!(a.next().await.is_none(), "{t:?}: the stream ends cleanly");
                    assert!(a.next().await.is_none(), "{t:?}: and stays ended");
                }
            });
        }
    });
}

/// The halves of a split duplex work apart, in two tasks at once: one
/// sends 2,000 messages while the other receives the peer's 2,000, on
/// every two-way transport and both runtimes. Dropping the sending half half-closes the
/// channel (the peer reads the end, on every transport with one) while the
/// receiving half still receives.
#[test]
fn a_split_duplexs_halves_send_and_receive_at_once() {
    checked(120, || {
        for (t, rt) in two_way_on_both_runtimes() {
            let (a, b) = duplex_pair(t);
            rt.block_on(async {
                let (tx, rx) = a.into_async().unwrap().split();
                let b = std::sync::Arc::new(b.into_async().unwrap());
                let n = 2_000u32;
                let writing = tokio::spawn(async move {
                    for i in 0..n {
                        tx.send(numbered(i, 100)).await.unwrap();
                    }
                    // The half-close: the peer reads the end.
                });
                let peer = std::sync::Arc::clone(&b);
                let peer_writing = tokio::spawn(async move {
                    for i in 0..n {
                        peer.send(numbered(i, 50)).await.unwrap();
                    }
                });
                let reading = tokio::spawn(async move {
                    for i in 0..n {
                        assert_eq!(number_of(&rx.recv().await.unwrap()), i, "{t:?}");
                    }
                    rx
                });
                for i in 0..n {
                    assert_eq!(number_of(&b.recv().await.unwrap()), i, "{t:?}");
                }
                writing.await.unwrap();
                if !matches!(t, T::Dgram) {
                    let e = b.recv().await.unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::Disconnected, "{t:?}: {e}");
                }
                peer_writing.await.unwrap();
                drop(reading.await.unwrap());
            });
        }
    });
}

/// Closing a duplex's `Sink` (`SinkExt::close`, which `forward` calls when
/// its stream ends) ends the writing direction, on every two-way transport
/// with an end of stream and both runtimes: the peer, which answers every
/// message and then, at the end of the stream, a count, reads that end
/// while this side still receives the answers and the count. A send after
/// the close fails and says why, rather than leaving a message nobody
/// reads. Without the close the peer would wait for more, and this side
/// for the count, for ever (the lesson's pipe whose unused end was not
/// closed).
#[test]
fn closing_a_duplexs_sink_ends_the_peers_stream_and_the_answers_still_come() {
    checked(120, || {
        for (t, rt) in two_way_on_both_runtimes().filter(|(t, _)| !matches!(t, T::Dgram)) {
            let (a, b) = duplex_pair(t);
            rt.block_on(async {
                let mut a = a.into_async().unwrap();
                // The peer stays until told: a send here after the close
                // must fail for the close, not for a peer that left.
                let (leave, told) = tokio::sync::oneshot::channel::<()>();
                let peer = tokio::spawn(async move {
                    let mut b = b.into_async().unwrap();
                    let mut n = 0u32;
                    while let Some(m) = b.next().await {
                        b.send(numbered(number_of(&m.unwrap()), 20)).await.unwrap();
                        n += 1;
                    }
                    b.send(numbered(n, 0)).await.unwrap();
                    let _ = told.await;
                });
                let n = 300u32;
                futures_util::stream::iter((0..n).map(|i| Ok(numbered(i, 100))))
                    .forward(&mut a)
                    .await
                    .unwrap();
                // Small, and large (out of line on shared memory).
                for len in [1, 2 << 20] {
                    let e = a.send(numbered(n, len)).await.unwrap_err().into_error();
                    assert!(e.to_string().contains("shut down"), "{t:?}: {e}");
                }
                leave.send(()).unwrap();
                let got =
                    tokio::time::timeout(Duration::from_secs(10), (&mut a).collect::<Vec<_>>())
                        .await
                        .unwrap_or_else(|_| panic!("{t:?}: the peer never saw the end"));
                let got: Vec<u32> = got.into_iter().map(|m| number_of(&m.unwrap())).collect();
                assert_eq!(
                    got,
                    (0..=n).collect::<Vec<_>>(),
                    "{t:?}: the answers, then the count"
                );
                peer.await.unwrap();
            });
        }
    });
}

/// A message fed to a `Sink` leaves before anything written after it on
/// the same end, whichever way: a later `send` sends it first, and the
/// end's own `flush` (which hides `SinkExt::flush`) delivers it, on a
/// sender and on a duplex.
#[test]
fn a_message_fed_to_the_sink_goes_first_and_flush_delivers_it() {
    checked(60, || {
        for t in [T::Pipe, T::Stream, T::Shm] {
            let (btx, brx) = blocking_pair(t);
            let rt = runtime();
            rt.block_on(async {
                let rx = Rx::new(brx);
                let mut tx = Tx::new(btx);
                // (`Tx::send` and `Tx::flush` are the end's own methods.)
                tx.feed(numbered(1, 9)).await;
                tx.send(numbered(2, 9)).await.unwrap();
                tx.feed(numbered(3, 9)).await;
                tx.flush().await.unwrap();
                for i in 1..=3 {
                    let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                        .await
                        .unwrap_or_else(|_| panic!("{t:?}: message {i} never came"))
                        .unwrap();
                    assert_eq!(number_of(&m), i, "{t:?}");
                }
                drop(tx);
            });
        }
    });
}

/// `try_send` and `try_recv` on async ends: a message the `Sink` buffers
/// goes before the tried one; a full channel hands the value back in
/// `Full`, nothing written, and takes it once read from; an empty one is
/// `Empty`.
#[test]
fn try_send_and_try_recv_on_async_ends_keep_order_and_hand_back_what_did_not_fit() {
    checked(60, || {
        for t in [T::Pipe, T::Stream, T::Shm] {
            let (btx, brx) = blocking_pair(t);
            let rt = runtime();
            rt.block_on(async {
                let rx = Rx::new(brx);
                let mut tx = Tx::new(btx);
                tx.feed(numbered(0, 10)).await;
                tx.try_send(numbered(1, 10)).unwrap();
                // Then fill the channel: what does not fit comes back.
                let mut sent = 2u32;
                let back = loop {
                    match tx.try_send(numbered(sent, 1000)) {
                        Ok(()) => sent += 1,
                        Err(procwire::TrySendError::Full(m)) => break m,
                        Err(e) => panic!("{t:?}: {e}"),
                    }
                    assert!(sent < 100_000, "{t:?}: the channel never filled");
                };
                assert_eq!(number_of(&back), sent, "{t:?}: the value came back whole");
                for i in 0..sent {
                    assert_eq!(number_of(&rx.recv().await.unwrap()), i, "{t:?}");
                }
                tx.try_send(back).unwrap();
                assert_eq!(number_of(&rx.recv().await.unwrap()), sent, "{t:?}");
                if let Rx::D(d) = &rx {
                    let e = d.try_recv().unwrap_err();
                    assert!(matches!(e, procwire::TryRecvError::Empty), "{t:?}: {e}");
                    tx.try_send(numbered(9, 3)).unwrap();
                    let got = loop {
                        match d.try_recv() {
                            Ok(m) => break m,
                            Err(procwire::TryRecvError::Empty) => tokio::task::yield_now().await,
                            Err(e) => panic!("{t:?}: {e}"),
                        }
                    };
                    assert_eq!(number_of(&got), 9, "{t:?}");
                }
                drop(tx);
            });
        }
    });
}

/// `supervise` on ends that turned async after they were made: with the
/// other end of the socket (or of the shared-memory rings) still open here
/// (so no end of stream ever comes), only the supervised process's death can end a pending
/// `recv().await` or `send().await` (on a full channel), and it ends them
/// with its signal.
#[test]
fn async_ends_supervised_after_the_conversion_end_their_awaits_when_the_child_dies() {
    checked(60, || {
        for (t, side) in [T::Stream, T::Shm]
            .into_iter()
            .flat_map(|t| ["receiver", "sender", "duplex"].map(|side| (t, side)))
        {
            let (a, b) = duplex_pair(t);
            let mut cmd = procwire::Command::new("sleep");
            cmd.arg("60");
            let mut child = cmd.spawn().unwrap();
            let killer = child.killer();
            let rt = runtime();
            let e = rt.block_on(async {
                let waiting = match side {
                    "receiver" => {
                        let (_tx, rx) = a.split();
                        let rx = rx.into_async().unwrap();
                        rx.supervise(&child);
                        tokio::spawn(async move {
                            rx.recv().await.map(drop).map_err(|e| e.into_error())
                        })
                    }
                    "sender" => {
                        let (tx, _rx) = a.split();
                        while tx.try_send(numbered(0, 4096)).is_ok() {}
                        let tx = tx.into_async().unwrap();
                        tx.supervise(&child);
                        tokio::spawn(async move {
                            tx.send(numbered(1, 4096)).await.map_err(|e| e.into_error())
                        })
                    }
                    _ => {
                        let d = a.into_async().unwrap();
                        d.supervise(&child);
                        tokio::spawn(
                            async move { d.recv().await.map(drop).map_err(|e| e.into_error()) },
                        )
                    }
                };
                tokio::time::sleep(Duration::from_millis(200)).await;
                assert!(
                    !waiting.is_finished(),
                    "{t:?} {side}: nothing ends it but the death"
                );
                killer.kill().unwrap();
                tokio::time::timeout(Duration::from_secs(5), waiting)
                    .await
                    .unwrap_or_else(|_| panic!("{t:?} {side}: the death did not end the await"))
                    .unwrap()
                    .unwrap_err()
            });
            assert_eq!(e.kind(), ErrorKind::PeerExited, "{t:?} {side}: {e}");
            let status = e
                .exit_status()
                .unwrap_or_else(|| panic!("{t:?} {side}: no status in {e}"));
            assert_eq!(status.signal(), Some(9), "{t:?} {side}: {e}");
            util::wait_deadline(&mut child, 10);
            drop(b);
        }
    });
}

/// An async duplex goes back to a blocking one, and a message its `Sink`
/// still buffers (fed, not flushed) is sent on the way, before anything
/// the blocking end sends after.
#[test]
fn an_async_duplex_turns_blocking_sending_what_its_sink_holds() {
    checked(60, || {
        for t in [T::Stream, T::SeqPacket, T::Shm] {
            let (a, b) = duplex_pair(t);
            let rt = runtime();
            let a = rt.block_on(async {
                let mut a = a.into_async().unwrap();
                a.feed(numbered(1, 10)).await.unwrap();
                a.into_blocking().unwrap()
            });
            a.send(numbered(2, 10)).unwrap();
            assert_eq!(number_of(&b.recv().unwrap()), 1, "{t:?}");
            assert_eq!(number_of(&b.recv().unwrap()), 2, "{t:?}");
            b.send(numbered(3, 10)).unwrap();
            assert_eq!(number_of(&a.recv().unwrap()), 3, "{t:?}");
        }
    });
}

/// The hello, awaited, on every two-way transport: against a blocking
/// peer and between two async ends; a mismatch is refused naming both
/// sides' types, as the blocking hello refuses it.
#[test]
fn the_hello_is_awaited_and_a_mismatch_is_refused() {
    checked(60, || {
        for t in ALL.into_iter().filter(|t| !matches!(t, T::Pipe)) {
            let (a, b) = duplex_pair(t);
            let rt = runtime();
            rt.block_on(async {
                let a = a.into_async().unwrap();
                let peer = std::thread::spawn(move || b.hello().map(|()| b));
                a.hello().await.unwrap_or_else(|e| panic!("{t:?}: {e}"));
                let b = peer.join().unwrap().unwrap().into_async().unwrap();
                // Then messages flow as usual.
                a.send(numbered(7, 5)).await.unwrap();
                assert_eq!(number_of(&b.recv().await.unwrap()), 7, "{t:?}");

                let (a, b) = duplex_pair(t);
                let (a, b) = (a.into_async().unwrap(), b.into_async().unwrap());
                let (ours, theirs) = tokio::join!(
                    a.hello_as("bytes", "bytes"),
                    b.hello_as("bytes", "shop.Order")
                );
                for e in [ours.unwrap_err(), theirs.unwrap_err()] {
                    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{t:?}: {e}");
                    assert!(e.to_string().contains("shop.Order"), "{t:?}: {e}");
                }
            });
        }
    });
}

/// Lost wake-ups: many messages with random pauses on both sides (a task
/// that sleeps, yields or runs on), so that the receiver waits at every
/// possible moment of the sender's publishing and the other way round. A
/// lost wake-up is a hang, which the deadline turns into a failure.
#[test]
fn no_wake_up_is_lost_under_random_pauses() {
    checked(240, || {
        let n = 100_000 * util::stress();
        for t in [T::Pipe, T::Stream, T::SeqPacket, T::Shm] {
            let (btx, brx) = blocking_pair(t);
            let rt = runtime();
            rt.block_on(async {
                let (tx, rx) = (Tx::new(btx), Rx::new(brx));
                let sending = tokio::spawn(async move {
                    let mut dice = Dice::new();
                    for i in 0..n {
                        tx.send(numbered(i, 8)).await.unwrap();
                        pause(&mut dice).await;
                    }
                    tx
                });
                let mut dice = Dice(Dice::new().0.rotate_left(17));
                for i in 0..n {
                    let m = rx.recv().await.unwrap();
                    assert_eq!(number_of(&m), i, "{t:?}");
                    pause(&mut dice).await;
                }
                drop(sending.await.unwrap());
            });
        }
    });
}

/// The same hunt through the `Sink` and the `Stream` of duplexes (whose
/// steps are their own code: no turns, and a receive that also finishes a
/// frame of ours): one side feeds messages and flushes now and then, the
/// other takes them from its stream, with random pauses on both sides.
#[test]
fn no_wake_up_is_lost_through_the_sink_and_the_stream() {
    checked(240, || {
        let n = 50_000 * util::stress();
        for t in [T::Stream, T::SeqPacket, T::Shm] {
            let (a, b) = duplex_pair(t);
            let rt = runtime();
            rt.block_on(async {
                let (mut a, mut b) = (a.into_async().unwrap(), b.into_async().unwrap());
                let sending = tokio::spawn(async move {
                    let mut dice = Dice::new();
                    for i in 0..n {
                        a.feed(numbered(i, 8)).await.unwrap();
                        if dice.roll(8) == 0 {
                            SinkExt::flush(&mut a).await.unwrap();
                        }
                        pause(&mut dice).await;
                    }
                    a.close().await.unwrap();
                    a
                });
                let mut dice = Dice(Dice::new().0.rotate_left(23));
                for i in 0..n {
                    let m = b.next().await.unwrap().unwrap();
                    assert_eq!(number_of(&m), i, "{t:?}");
                    pause(&mut dice).await;
                }
                drop(sending.await.unwrap());
            });
        }
    });
}

async fn pause(dice: &mut Dice) {
    match dice.roll(1000) {
        0 => tokio::time::sleep(Duration::from_micros(dice.roll(300))).await,
        1..=50 => tokio::task::yield_now().await,
        51..=60 => std::thread::sleep(Duration::from_micros(dice.roll(100))),
        _ => {}
    }
}

/// Cancellation: `recv` and `send` futures raced against short timers in
/// `select!` (10,000 rounds per transport). A cancelled `recv` took
/// nothing; a cancelled `send` either wrote nothing (the message never
/// arrives) or had started its frame (it is finished before the next one,
/// and arrives whole): the receiver gets every completed send, in order,
/// each once, never a torn or interleaved message, and every end stays
/// usable.
fn cancelled_by_timers(t: T) {
    checked(120, move || {
        {
            let (btx, brx) = blocking_pair(t);
            let rt = runtime();
            rt.block_on(async {
                let (tx, rx) = (Tx::new(btx), Rx::new(brx));
                let rounds = 10_000u32;
                let sending = tokio::spawn(async move {
                    let mut dice = Dice::new();
                    let mut sent = Vec::new();
                    for i in 0..rounds {
                        let len = [0, 16, 3000, 70_000][dice.roll(4) as usize];
                        let timer = tokio::time::sleep(Duration::from_micros(dice.roll(100)));
                        tokio::select! {
                            r = tx.send(numbered(i, len)) => { r.unwrap(); sent.push(i); }
                            _ = timer => {}
                        }
                    }
                    tx.send(Bytes::from(vec![0xEE])).await.unwrap();
                    tx.flush().await.unwrap();
                    (tx, sent)
                });
                let mut got = Vec::new();
                let mut dice = Dice(Dice::new().0.rotate_left(29));
                loop {
                    let timer = tokio::time::sleep(Duration::from_micros(dice.roll(100)));
                    tokio::select! {
                        m = rx.recv() => {
                            let m = m.unwrap();
                            if m[..] == [0xEE] {
                                break;
                            }
                            got.push(number_of(&m));
                        }
                        _ = timer => {}
                    }
                }
                let (tx, sent) = sending.await.unwrap();
                // Every completed send arrived; a send dropped after part
                // of its frame went is finished before the next frame, so
                // it arrives too (whole: `number_of` checked each); one
                // dropped before that never does. In order, no duplicate.
                assert!(got.windows(2).all(|w| w[0] < w[1]), "{t:?}: in order, once each");
                let (sent_set, got_set): (std::collections::HashSet<_>, std::collections::HashSet<_>) =
                    (sent.iter().collect(), got.iter().collect());
                let extra = got_set.difference(&sent_set).count();
                assert!(sent_set.is_subset(&got_set), "{t:?}: a completed send was lost");
                assert!(
                    !sent.is_empty() && got.len() < rounds as usize,
                    "{t:?}: both outcomes raced ({} sent, {} delivered, {extra} of them after a cancel)",
                    sent.len(),
                    got.len()
                );
                // Still usable both ways.
                tx.send(numbered(7, 10)).await.unwrap();
                assert_eq!(number_of(&rx.recv().await.unwrap()), 7);
            });
        }
    });
}

macro_rules! per_transport {
    ($($name:ident: $t:expr),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                cancelled_by_timers($t);
            }
        )*
    };
}

per_transport! {
    cancelled_sends_and_receives_lose_and_tear_nothing_pipe: T::Pipe,
    cancelled_sends_and_receives_lose_and_tear_nothing_stream: T::Stream,
    cancelled_sends_and_receives_lose_and_tear_nothing_seqpacket: T::SeqPacket,
    cancelled_sends_and_receives_lose_and_tear_nothing_dgram: T::Dgram,
    cancelled_sends_and_receives_lose_and_tear_nothing_shm: T::Shm,
    cancelled_sends_and_receives_lose_and_tear_nothing_unix: T::Unix,
    cancelled_sends_and_receives_lose_and_tear_nothing_tcp: T::Tcp,
}

/// A 10 MiB message whose `recv` is dropped again and again mid-frame (a
/// 1 ms timeout while the bytes arrive) is delivered whole by a later
/// `recv`, and so is the message after it; the same for a `flush` dropped
/// while the rest of a 10 MiB frame is being written.
#[test]
fn futures_dropped_mid_frame_on_ten_mib_lose_nothing() {
    checked(120, || {
        let big = 10 << 20;
        // Receiving side async, a blocking sender in a thread.
        let (a, b) = SocketPair::new(Kind::Stream)
            .duplex::<Bytes, Bytes>()
            .unwrap();
        let feeding = std::thread::spawn(move || {
            a.send(numbered(1, big)).unwrap();
            a.send(numbered(2, 10)).unwrap();
            a
        });
        let rt = runtime();
        rt.block_on(async {
            let b = b.into_async().unwrap();
            let mut cancelled = 0;
            let first = loop {
                match tokio::time::timeout(Duration::from_millis(1), b.recv()).await {
                    Ok(m) => break m.unwrap(),
                    Err(_) => cancelled += 1,
                }
            };
            assert_eq!((number_of(&first), first.len()), (1, big + 4));
            assert_eq!(number_of(&b.recv().await.unwrap()), 2);
            eprintln!("recv dropped {cancelled} times on the way");
        });
        drop(feeding.join().unwrap());

        // Sending side async, a slow blocking reader in a thread.
        let (a, b) = SocketPair::new(Kind::Stream)
            .duplex::<Bytes, Bytes>()
            .unwrap();
        // The reader starts only once the send was dropped (a reader that
        // merely slept could start first on a busy machine, and keep up).
        let (go, wait_go) = std::sync::mpsc::channel::<()>();
        let reading = std::thread::spawn(move || {
            wait_go.recv().unwrap();
            let one = b.recv().unwrap();
            let two = b.recv().unwrap();
            (number_of(&one), one.len(), number_of(&two))
        });
        rt.block_on(async {
            let a = a.into_async().unwrap();
            // Nobody reads yet: the send is dropped with most of its frame
            // still to write, then flushes are, until it is read.
            let send = tokio::time::timeout(Duration::from_millis(1), a.send(numbered(1, big)));
            assert!(send.await.is_err(), "the send was dropped mid-frame");
            go.send(()).unwrap();
            while tokio::time::timeout(Duration::from_millis(1), a.flush())
                .await
                .is_err()
            {}
            a.send(numbered(2, 10)).await.unwrap();
            a.flush().await.unwrap();
            assert_eq!(reading.join().unwrap(), (1, big + 4, 2));
        });
    });
}

/// The child's side of the supervision tests.
#[test]
#[ignore = "runs only as a child process of other tests"]
fn child() {
    let d: procwire::Duplex<Bytes, Bytes> = procwire::from_env().unwrap();
    match util::role().as_str() {
        // Starts a 10 MiB message: blocked mid-frame (the parent stops it
        // there) until it is killed.
        "flood" => {
            let _ = d.send(numbered(0, 10 << 20));
            std::thread::sleep(Duration::from_secs(60));
        }
        _ => {
            for m in d.iter() {
                d.send(m.unwrap()).unwrap();
            }
        }
    }
}

/// A supervised child SIGKILLed mid-frame ends a pending `recv().await`
/// with the signal (no hang: the await would otherwise wait on a frame that
/// never finishes); every child is reaped.
#[test]
fn a_child_killed_mid_frame_ends_the_await_with_its_signal() {
    checked(60, || {
        let (mut child, d) = util::spawn_child::<Bytes, Bytes>("child", "flood");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let killer = child.killer();
        let rt = runtime();
        let e = rt.block_on(async {
            // The child fills the socket buffer with the start of its frame
            // and is stopped there; the await reads that much, then waits.
            tokio::time::sleep(Duration::from_millis(300)).await;
            rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
            wait_stopped(child.id()).await;
            let d = d.into_async().unwrap();
            let waiting = tokio::spawn(async move { d.recv().await.map(|m| m.len()) });
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!waiting.is_finished(), "the frame is not complete");
            killer.kill().unwrap();
            waiting.await.unwrap().unwrap_err()
        });
        let status = e
            .exit_status()
            .unwrap_or_else(|| panic!("no exit status in: {e}"));
        assert_eq!(status.signal(), Some(9), "{e}");
        util::wait_deadline(&mut child, 10);
    });
}

/// A frozen peer: an awaited request times out through `tokio::time`, the
/// channel stays usable, and once the peer resumes its reply arrives.
#[test]
fn a_frozen_peer_times_out_and_the_channel_goes_on() {
    checked(60, || {
        let (mut child, d) = util::spawn_child::<Bytes, Bytes>("child", "echo");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let rt = runtime();
        rt.block_on(async {
            let d = d.into_async().unwrap();
            assert_eq!(number_of(&d.request(numbered(1, 100)).await.unwrap()), 1);
            rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
            // A stop reaches a process's threads when one of them takes the
            // signal: until every thread shows it, the echo may still run.
            wait_stopped(child.id()).await;
            let late =
                tokio::time::timeout(Duration::from_millis(300), d.request(numbered(2, 100)));
            if let Ok(r) = late.await {
                panic!(
                    "a frozen peer does not answer, yet: {:?}",
                    r.map(|m| number_of(&m))
                );
            }
            rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
            assert_eq!(
                number_of(&d.recv().await.unwrap()),
                2,
                "its answer comes after all"
            );
            assert_eq!(number_of(&d.request(numbered(3, 100)).await.unwrap()), 3);
            drop(d);
        });
        util::wait_deadline(&mut child, 10);
    });
}

/// Waits until every thread of process `pid` is stopped.
async fn wait_stopped(pid: u32) {
    let stopped = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .all(|t| {
                let stat =
                    std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap_or_default();
                // The state follows the command name's closing parenthesis.
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T'))
            })
    };
    while !stopped() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// No call blocks a runtime thread: two tasks ping-pong on one
/// current-thread runtime (both ends on the one thread that runs them), on
/// every transport. A blocking call would hang it, and the deadline fail.
#[test]
fn everything_runs_on_a_current_thread_runtime() {
    checked(120, || {
        for t in ALL {
            let (there_tx, there_rx) = blocking_pair(t);
            let (back_tx, back_rx) = blocking_pair(t);
            let rt = current_thread();
            rt.block_on(async {
                let (there_tx, there_rx) = (Tx::new(there_tx), Rx::new(there_rx));
                let (back_tx, back_rx) = (Tx::new(back_tx), Rx::new(back_rx));
                let echo = tokio::spawn(async move {
                    for _ in 0..2_000 {
                        let m = there_rx.recv().await.unwrap();
                        back_tx.send(m).await.unwrap();
                    }
                    (there_rx, back_tx)
                });
                for i in 0..2_000 {
                    there_tx
                        .send(numbered(i, (i as usize * 37) % 5000))
                        .await
                        .unwrap();
                    assert_eq!(number_of(&back_rx.recv().await.unwrap()), i, "{t:?}");
                }
                drop(echo.await.unwrap());
            });
        }
    });
}

/// Made outside a runtime, an async end is a clear error, not a panic, and
/// the blocking end it was made from is simply dropped.
#[test]
fn an_async_end_outside_a_runtime_is_an_error() {
    checked(10, || {
        let (tx, rx) = procwire::channel::<u32>().unwrap();
        let e = rx.into_async().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("tokio runtime"), "{e}");
        drop(tx);
    });
}

/// An async end that outlives the runtime it was made async on (its
/// reactor shut down) fails a wait with an error that says so, never a
/// false report of its supervised child's death (the child still runs) and
/// never a hang, whether it waits to receive or for room to send. Turned
/// blocking and async again inside the runtime that goes on, it works
/// there, nothing lost, its supervision included.
#[test]
fn an_end_that_outlived_its_runtime_says_so_and_converts_again() {
    checked(60, || {
        for t in [T::Stream, T::Shm] {
            let (a, b) = duplex_pair(t);
            let mut cmd = procwire::Command::new("sleep");
            cmd.arg("60");
            let mut child = cmd.spawn().unwrap();
            let killer = child.killer();
            // Full, so that a send waits for room.
            let mut filled = 0;
            while a.try_send(numbered(filled, 4096)).is_ok() {
                filled += 1;
            }
            let first = current_thread();
            let a = first.block_on(async {
                let a = a.into_async().unwrap();
                a.supervise(&child);
                // Waits of both directions: the child's pidfd and the
                // channel are registered with this runtime's reactor.
                let waited = tokio::time::timeout(Duration::from_millis(50), a.recv()).await;
                assert!(waited.is_err(), "{t:?}: nothing was sent here");
                a
            });
            drop(first);
            let next = current_thread();
            let (recv, send) = next.block_on(async {
                let within = Duration::from_secs(5);
                let recv = tokio::time::timeout(within, a.recv()).await;
                let send = tokio::time::timeout(within, a.send(numbered(filled, 4096))).await;
                (recv.expect("not a hang"), send.expect("not a hang"))
            });
            let recv = recv.unwrap_err().into_error();
            let send = send.unwrap_err().into_error();
            for e in [recv, send] {
                assert_eq!(e.kind(), ErrorKind::Io, "{t:?}: {e}");
                assert!(e.to_string().contains("has shut down"), "{t:?}: {e}");
            }
            assert!(child.try_wait().unwrap().is_none(), "{t:?}: the child runs");
            // Blocking again, then async inside this runtime: every message
            // sent arrives, and one comes back.
            let a = a.into_blocking().unwrap();
            let reading = std::thread::spawn(move || {
                for i in 0..filled {
                    assert_eq!(number_of(&b.recv().unwrap()), i, "{t:?}");
                }
                b.send(numbered(7, 8)).unwrap();
                b
            });
            let _in = next.enter();
            let a = a.into_async().unwrap();
            let b = reading.join().unwrap();
            next.block_on(async {
                assert_eq!(number_of(&a.recv().await.unwrap()), 7, "{t:?}");
                // Still supervised: only the child's death ends this wait.
                let waiting = tokio::spawn(async move { a.recv().await.map(drop) });
                tokio::time::sleep(Duration::from_millis(100)).await;
                assert!(
                    !waiting.is_finished(),
                    "{t:?}: nothing ends it but the death"
                );
                killer.kill().unwrap();
                let e = tokio::time::timeout(Duration::from_secs(5), waiting)
                    .await
                    .expect("the death ends the wait")
                    .unwrap()
                    .unwrap_err()
                    .into_error();
                assert_eq!(e.kind(), ErrorKind::PeerExited, "{t:?}: {e}");
            });
            util::wait_deadline(&mut child, 10);
            drop(b);
        }
    });
}

/// The byte primitives as `AsyncRead`/`AsyncWrite`: 10 MiB through a pipe
/// and both ways through a stream socket, in pieces, every byte in order;
/// the end of file after the writer is gone or shut down; a pipe with no
/// reader is `BrokenPipe` (the process survives: no SIGPIPE); a message
/// socket refused; back to blocking ends.
#[test]
fn pipes_and_stream_sockets_are_async_read_and_write() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    checked(60, || {
        let rt = runtime();
        rt.block_on(async {
            let data = pattern(9, 10 << 20);
            let (r, w) = procwire::pipe().unwrap();
            let (mut r, mut w) = (r.into_async().unwrap(), w.into_async().unwrap());
            let expected = data.clone();
            let writing = tokio::spawn(async move {
                for piece in expected.chunks(100_003) {
                    w.write_all(piece).await.unwrap();
                }
                w.into_blocking().unwrap()
            });
            let mut got = Vec::new();
            // The writer's blocking end is dropped only after the join:
            // read exactly, then see the end of file.
            let mut buf = vec![0u8; data.len()];
            r.read_exact(&mut buf).await.unwrap();
            drop(writing.await.unwrap());
            assert_eq!(r.read_to_end(&mut got).await.unwrap(), 0);
            assert!(buf == data, "the pipe carried every byte in order");

            let (a, b) = procwire::socket_pair(Kind::Stream).unwrap();
            let (mut a, mut b) = (a.into_async().unwrap(), b.into_async().unwrap());
            let echo = tokio::spawn(async move {
                let mut all = Vec::new();
                b.read_to_end(&mut all).await.unwrap();
                b.write_all(&all).await.unwrap();
                b.shutdown().await.unwrap();
            });
            a.write_all(&data).await.unwrap();
            a.shutdown().await.unwrap();
            let mut back = Vec::new();
            a.read_to_end(&mut back).await.unwrap();
            assert!(back == data, "the socket carried every byte both ways");
            echo.await.unwrap();
            let blocking = a.into_blocking().unwrap();
            assert_eq!(blocking.kind(), Kind::Stream);

            let (r, w) = procwire::pipe().unwrap();
            drop(r);
            let mut w = w.into_async().unwrap();
            let e = w.write_all(b"nobody reads").await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);

            let (d, _d) = procwire::socket_pair(Kind::Datagram).unwrap();
            assert_eq!(d.into_async().unwrap_err().kind(), ErrorKind::InvalidInput);
        });
    });
}

/// A child's exit, awaited on its pidfd: the status comes back (here an
/// exit code, after the child took its time) and the child is reaped.
#[test]
fn a_child_exit_is_awaited_and_reaped() {
    checked(30, || {
        let mut child = procwire::Command::new("sh")
            .args(["-c", "sleep 0.2; exit 3"])
            .spawn()
            .unwrap();
        let rt = current_thread();
        let status = rt.block_on(child.wait_async()).unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(util::zombies(), 0, "reaped");
        // Waiting again gives the same status at once.
        assert_eq!(rt.block_on(child.wait_async()).unwrap().code(), Some(3));
    });
}

/// Many tasks of a multi-threaded runtime send on one shared async sender
/// at once, and two tasks receive from one shared receiver: a send or
/// receive that finds the other thread inside the channel (no readiness
/// event marks its end) yields and tries again instead of sleeping for
/// ever. Everything arrives, each sender's messages in order.
#[test]
fn tasks_sharing_an_end_across_threads_never_stall() {
    checked(120, || {
        for t in [T::Stream, T::SeqPacket, T::Shm] {
            let (btx, brx) = blocking_pair(t);
            let rt = runtime();
            rt.block_on(async {
                let tx = std::sync::Arc::new(Tx::new(btx));
                let rx = std::sync::Arc::new(Rx::new(brx));
                let (senders, each) = (8u32, 2_000u32);
                let sending: Vec<_> = (0..senders)
                    .map(|s| {
                        let tx = std::sync::Arc::clone(&tx);
                        tokio::spawn(async move {
                            for i in 0..each {
                                tx.send(numbered(s * each + i, (i as usize * 7) % 900))
                                    .await
                                    .unwrap();
                            }
                        })
                    })
                    .collect();
                let receiving: Vec<_> = (0..2)
                    .map(|_| {
                        let rx = std::sync::Arc::clone(&rx);
                        tokio::spawn(async move {
                            let mut got = Vec::new();
                            while got.len() < (senders * each / 2) as usize {
                                got.push(number_of(&rx.recv().await.unwrap()));
                            }
                            got
                        })
                    })
                    .collect();
                for s in sending {
                    s.await.unwrap();
                }
                let mut all = Vec::new();
                for r in receiving {
                    let got = r.await.unwrap();
                    // Each receiver sees each sender's messages in order.
                    for s in 0..senders {
                        let mine: Vec<u32> =
                            got.iter().copied().filter(|n| n / each == s).collect();
                        assert!(
                            mine.windows(2).all(|w| w[0] < w[1]),
                            "{t:?}: sender {s} out of order"
                        );
                    }
                    all.extend(got);
                }
                all.sort_unstable();
                assert_eq!(all, (0..senders * each).collect::<Vec<_>>(), "{t:?}");
            });
        }
    });
}

/// Read system calls this thread has made (`syscr` in
/// `/proc/thread-self/io`: read(2) and its kin, not recvmsg(2)).
fn reads_by_this_thread() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("syscr: "))
        .expect("syscr in /proc/thread-self/io")
        .parse()
        .unwrap()
}

/// An awaited receive whose read found the pipe empty clears its
/// readiness, as tokio's `poll_read` does after a short read: the next
/// receive waits for the next message rather than trying a read that
/// finds nothing. Messages that come one at a time, each a little after
/// the receive began to wait, cost one read each (a try first would make
/// it two).
#[test]
fn an_awaited_receive_makes_one_read_per_message_that_comes_alone() {
    checked(60, || {
        const N: u64 = 200;
        let (tx, rx) = procwire::channel::<u64>().unwrap();
        let (ack_tx, ack_rx) = procwire::channel::<u64>().unwrap();
        let peer = std::thread::spawn(move || {
            for i in 0..N {
                std::thread::sleep(Duration::from_millis(1));
                tx.send(i).unwrap();
                assert_eq!(ack_rx.recv().unwrap(), i);
            }
        });
        let rt = current_thread();
        let reads = rt.block_on(async {
            let rx = rx.into_async().unwrap();
            let before = reads_by_this_thread();
            for i in 0..N {
                assert_eq!(rx.recv().await.unwrap(), i);
                ack_tx.send(i).unwrap();
            }
            reads_by_this_thread() - before
        });
        peer.join().unwrap();
        assert!(
            reads <= N + N / 10,
            "{reads} reads for {N} messages that came one at a time"
        );
    });
}

/// Sends a numbered message of each of `sizes` from a thread, 30 ms apart
/// (so that each receive is awaited before its message comes); the thread
/// hands the end back.
fn numbered_slowly(btx: BTx, sizes: &'static [usize]) -> std::thread::JoinHandle<BTx> {
    std::thread::spawn(move || {
        for (i, &len) in sizes.iter().enumerate() {
            std::thread::sleep(Duration::from_millis(30));
            let m = numbered(i as u32, len);
            match &btx {
                BTx::S(s) => s.send(m).unwrap(),
                BTx::D(d) => d.send(m).unwrap(),
            }
        }
        btx
    })
}

/// The awaited borrowing receive (`recv_with`) on every transport: each
/// message is looked at in the receive buffer, a `ByteBuf` decoded as a
/// borrowed `&[u8]`. The receive is awaited before the message is sent, so
/// the tries that find nothing must leave the closure for the one that
/// finds the message; sizes from 64 B to 1 MiB.
#[test]
fn recv_with_is_awaited_and_borrows_the_message_on_every_transport() {
    checked(120, || {
        for t in ALL {
            let (btx, brx) = blocking_pair(t);
            const SIZES: [usize; 3] = [64, 4096, 1 << 20];
            let sender = numbered_slowly(btx, &SIZES);
            let rt = current_thread();
            rt.block_on(async {
                let rx = Rx::new(brx);
                for (i, len) in SIZES.into_iter().enumerate() {
                    let look = |m: procwire::Received<'_>| {
                        let bytes: &[u8] = m.decode()?;
                        Ok::<_, procwire::Error>((number_of(bytes), bytes.len()))
                    };
                    let seen = match &rx {
                        Rx::R(r) => r.recv_with(look).await,
                        Rx::D(d) => d.recv_with(look).await,
                    };
                    assert_eq!(seen.unwrap().unwrap(), (i as u32, len + 4), "{t:?}");
                }
                drop(rx);
            });
            drop(sender.join().unwrap());
        }
    });
}

/// The awaited `recv_into` on every transport: each message lands in one
/// `ByteBuf` kept across them, whole and in order, sizes from 64 B to
/// 1 MiB; a `recv_into` cancelled by a timer before its message comes
/// leaves the buffer as it was, and the next one takes the message.
#[test]
fn recv_into_is_awaited_into_one_buffer_and_a_cancelled_one_takes_nothing() {
    checked(120, || {
        for t in ALL {
            let (btx, brx) = blocking_pair(t);
            const SIZES: [usize; 4] = [4096, 64, 1 << 20, 100];
            let sender = numbered_slowly(btx, &SIZES);
            let rt = current_thread();
            rt.block_on(async {
                let rx = Rx::new(brx);
                let mut buf = Bytes::from(b"untouched".to_vec());
                // Nothing comes within 1 ms: the receive is dropped.
                let early = async {
                    match &rx {
                        Rx::R(r) => r.recv_into(&mut buf).await,
                        Rx::D(d) => d.recv_into(&mut buf).await,
                    }
                };
                let timer = tokio::time::sleep(Duration::from_millis(1));
                tokio::select! {
                    r = early => panic!("{t:?}: a message before any was sent: {r:?}"),
                    () = timer => {}
                }
                assert_eq!(&buf[..], b"untouched", "{t:?}");
                for (i, len) in SIZES.into_iter().enumerate() {
                    let got = match &rx {
                        Rx::R(r) => r.recv_into(&mut buf).await,
                        Rx::D(d) => d.recv_into(&mut buf).await,
                    };
                    got.unwrap();
                    assert_eq!((number_of(&buf), buf.len()), (i as u32, len + 4), "{t:?}");
                }
                drop(rx);
            });
            drop(sender.join().unwrap());
        }
    });
}

/// A sender cloned: one clone blocks in a send in a thread (the channel is
/// full, and it holds the sending gate while it waits), the other awaits
/// its own send on a current-thread runtime. The await sleeps until the
/// gate is free (the blocking clone's send ends when a reader comes), and
/// both messages arrive whole.
#[test]
fn an_await_behind_a_blocking_clones_send_sleeps() {
    checked(60, || {
        for t in ["pipe", "stream", "shm"] {
            let (tx, rx) = match t {
                "pipe" => procwire::Pipe::new().channel::<ByteBuf>().unwrap(),
                "stream" => SocketPair::new(Kind::Stream).channel::<ByteBuf>().unwrap(),
                _ => Shm::new().channel::<ByteBuf>().unwrap(),
            };
            let mut sent = 0u32;
            while tx.try_send(ByteBuf::from(pattern(sent, 1500))).is_ok() {
                sent += 1;
            }
            let blocking = tx.clone();
            let first = std::thread::spawn(move || {
                blocking.send(ByteBuf::from(pattern(sent, 1500))).unwrap();
            });
            std::thread::sleep(Duration::from_millis(100));
            assert!(!first.is_finished(), "{t}: the blocking send did not wait");
            let awaiting = std::thread::spawn(move || {
                let rt = current_thread();
                let start = util::thread_cpu();
                rt.block_on(async move {
                    let tx = tx.into_async().unwrap();
                    tx.send(ByteBuf::from(pattern(sent + 1, 1500)))
                        .await
                        .unwrap();
                    tx.flush().await.unwrap();
                });
                util::thread_cpu() - start
            });
            std::thread::sleep(Duration::from_millis(400));
            assert!(
                !awaiting.is_finished(),
                "{t}: the awaited send did not wait"
            );
            for i in 0..=sent + 1 {
                assert_eq!(
                    rx.recv().unwrap().into_vec(),
                    pattern(i, 1500),
                    "{t}: message {i}"
                );
            }
            first.join().unwrap();
            let used = awaiting.join().unwrap();
            assert!(
                used < Duration::from_millis(100),
                "{t}: an await of about 400 ms behind a blocking send used {used:?} of CPU"
            );
        }
    });
}

/// An `AsyncRead`/`AsyncWrite` end awaited after its runtime shut down
/// says so, as the channels do, rather than tokio's bare "A Tokio 1.x
/// context was found, but it is being shutdown".
#[test]
fn byte_ends_that_outlived_their_runtime_say_so() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    checked(60, || {
        let first = current_thread();
        let (r, w, s) = first.block_on(async {
            let (r, w) = procwire::pipe().unwrap();
            let (s, _) = procwire::socket_pair(Kind::Stream).unwrap();
            (
                r.into_async().unwrap(),
                w.into_async().unwrap(),
                s.into_async().unwrap(),
            )
        });
        drop(first);
        let (mut r, mut w, mut s) = (r, w, s);
        let errors = current_thread().block_on(async {
            let within = Duration::from_secs(5);
            let mut byte = [0u8; 1];
            vec![
                tokio::time::timeout(within, r.read(&mut byte))
                    .await
                    .map(|r| r.map(drop)),
                tokio::time::timeout(within, w.write_all(b"x")).await,
                tokio::time::timeout(within, s.read(&mut byte))
                    .await
                    .map(|r| r.map(drop)),
            ]
        });
        for e in errors {
            let e = e.expect("not a hang").unwrap_err();
            assert!(e.to_string().contains("has shut down"), "{e}");
        }
    });
}
