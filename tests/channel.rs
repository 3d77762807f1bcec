//! The typed channel API itself: construction checks, halves, iterators,
//! and std::sync::mpsc's behaviours ported to procwire's channels.

mod util;

use std::time::{Duration, Instant};

use procwire::{
    ByteBuf, CodecKind, Duplex, ErrorKind, Kind, Options, Pipe, Receiver, Sender, SocketPair,
    channel, duplex,
};
use util::checked;

#[test]
fn ends_are_send_and_senders_clone() {
    fn send_sync<T: Send + Sync>() {}
    fn clone<T: Clone>() {}
    // Even for a message type that is neither Send nor Sync.
    type NotSend = std::rc::Rc<u8>;
    send_sync::<Sender<NotSend>>();
    send_sync::<Receiver<NotSend>>();
    send_sync::<Duplex<NotSend, NotSend>>();
    clone::<Sender<NotSend>>();
}

#[test]
fn smoke_and_ownership_like_mpsc() {
    checked(10, || {
        let (tx, rx) = channel::<Vec<String>>().unwrap();
        tx.send(vec!["a".into(), "b".into()]).unwrap();
        assert_eq!(rx.recv().unwrap(), ["a", "b"]);
        // Many clones, one stream; the end comes when the last clone drops.
        let tx2 = tx.clone();
        let h = std::thread::spawn(move || tx2.send(vec!["thread".into()]).unwrap());
        h.join().unwrap();
        assert_eq!(rx.recv().unwrap(), ["thread"]);
        drop(tx);
        assert!(rx.recv().unwrap_err().is_disconnected());
    });
}

#[test]
fn dropping_the_sending_half_of_a_duplex_half_closes_it() {
    checked(10, || {
        let (a, b) = duplex::<String, String>().unwrap();
        let (a_tx, a_rx) = a.split();
        a_tx.send("last words".into()).unwrap();
        drop(a_tx);
        // b sees the end of a's direction, and can still answer.
        assert_eq!(b.recv().unwrap(), "last words");
        assert!(b.recv().unwrap_err().is_disconnected());
        b.send("heard you".into()).unwrap();
        assert_eq!(a_rx.recv().unwrap(), "heard you");
    });
}

#[test]
fn a_leaked_copy_of_the_socket_does_not_hold_off_the_end() {
    checked(10, || {
        let (a, b) = procwire::socket_pair(Kind::Stream).unwrap();
        let leaked = a.try_clone().unwrap(); // as if a child had inherited it
        let tx = Options::new().sender_from::<u8>(a).unwrap();
        let rx = Options::new().receiver_from::<u8>(b).unwrap();
        tx.send(1).unwrap();
        drop(tx); // shuts down the writing direction, not just this fd
        assert_eq!(rx.recv().unwrap(), 1);
        let e = rx.recv_timeout(Duration::from_secs(5)).unwrap_err();
        assert!(e.is_disconnected(), "{e}");
        drop(leaked);
    });
}

#[test]
fn the_iterator_reports_bad_messages_and_goes_on_to_the_end() {
    checked(10, || {
        let (peer, rx) = util::json_text_peer(Kind::SeqPacket);
        for text in ["1", r#""2""#, "3"] {
            peer.send(text).unwrap();
        }
        drop(peer);
        let items: Vec<_> = rx.into_iter().collect();
        assert_eq!(items.len(), 3, "a bad message is an item, not the end");
        assert_eq!(*items[0].as_ref().unwrap(), 1);
        assert_eq!(items[1].as_ref().unwrap_err().kind(), ErrorKind::Decode);
        assert_eq!(*items[2].as_ref().unwrap(), 3);
    });
}

#[test]
fn a_duplex_finishes_a_half_written_request_before_waiting_for_the_reply() {
    checked(30, || {
        let (client, server) = SocketPair::new(Kind::Stream)
            .codec(CodecKind::Raw)
            .duplex::<ByteBuf, ByteBuf>()
            .unwrap();
        // A request far larger than the socket buffer: try_send writes what
        // fits and keeps the rest; recv must push it out, or both would wait.
        let big = ByteBuf::from(util::pattern(1, 4 << 20));
        let server = std::thread::spawn(move || {
            let req = server.recv().unwrap();
            server
                .send(ByteBuf::from(req.len().to_string().into_bytes()))
                .unwrap();
            server
        });
        client.try_send(big).unwrap();
        assert_eq!(client.recv().unwrap().into_vec(), b"4194304");
        drop(server.join().unwrap());
    });
}

#[test]
fn construction_checks_say_what_is_wrong() {
    checked(10, || {
        let e = Pipe::new()
            .max_frame(usize::MAX)
            .channel::<u8>()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("4-byte length"), "{e}");

        let (r, w) = procwire::pipe().unwrap();
        let e = Options::new().sender_from::<u8>(r).unwrap_err();
        assert!(e.to_string().contains("cannot be used to send"), "{e}");
        let e = Options::new().duplex_from::<u8, u8>(w).unwrap_err();
        assert!(e.to_string().contains("needs a socket"), "{e}");

        let file = tempfile::tempfile().unwrap();
        let e = Options::new().receiver_from::<u8>(file).unwrap_err();
        assert!(e.to_string().contains("neither"), "{e}");
    });
}

#[test]
fn send_timeout_hands_the_message_back_and_nothing_tears() {
    checked(30, || {
        let (tx, rx) = Pipe::new()
            .codec(CodecKind::Raw)
            .channel::<ByteBuf>()
            .unwrap();
        let mut sent = 0u32;
        loop {
            match tx.send_timeout(
                ByteBuf::from(util::pattern(sent, 7000)),
                Duration::from_millis(5),
            ) {
                Ok(()) => sent += 1,
                Err(e) => {
                    assert!(e.is_timeout(), "{e}");
                    assert_eq!(e.into_inner().into_vec(), util::pattern(sent, 7000));
                    break;
                }
            }
        }
        let reader = std::thread::spawn(move || {
            (0..sent).all(|i| rx.recv().unwrap().into_vec() == util::pattern(i, 7000))
        });
        tx.flush().unwrap();
        assert!(reader.join().unwrap());
    });
}

#[test]
fn hello_accepts_a_matching_peer_and_refuses_a_mismatched_one() {
    checked(10, || {
        let (a, b) = duplex::<String, u32>().unwrap();
        let peer = std::thread::spawn(move || b.hello().map(|()| b));
        a.hello().unwrap();
        let b = peer.join().unwrap().unwrap();
        a.send("after hello".into()).unwrap();
        assert_eq!(b.recv().unwrap(), "after hello");

        // The peer sends u64 where u32 is expected.
        let (x, y) = procwire::socket_pair(Kind::Stream).unwrap();
        let a = Options::new().duplex_from::<String, u32>(x).unwrap();
        let b = Options::new().duplex_from::<u64, String>(y).unwrap();
        let peer = std::thread::spawn(move || b.hello().map(drop));
        let e = a.hello().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(
            e.to_string().contains("u64") && e.to_string().contains("u32"),
            "{e}"
        );
        assert!(peer.join().unwrap().is_err());
    });
}

/// The hello under a deadline: a peer that never says it (a program that
/// speaks something else) is a `Timeout` by the deadline, not a hang, on a
/// socket pair, a pipe pair and shared memory; a peer that says it within
/// the deadline is accepted, and a mismatch is still refused.
#[test]
fn a_hello_with_a_timeout_returns_by_its_deadline() {
    checked(30, || {
        let silent = |a: Duplex<String, u32>, b: Duplex<u32, String>| {
            let started = std::time::Instant::now();
            let e = a.hello_timeout(Duration::from_millis(200)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
            let took = started.elapsed();
            assert!(
                took >= Duration::from_millis(200),
                "returned early: {took:?}"
            );
            assert!(took < Duration::from_secs(5), "returned late: {took:?}");
            drop(b);
        };
        let (a, b) = duplex::<String, u32>().unwrap();
        silent(a, b);
        let (a, b) = procwire::Shm::new().duplex::<String, u32>().unwrap();
        silent(a, b);
        let (x, y) = procwire::socket_pair(Kind::SeqPacket).unwrap();
        silent(
            Options::new().duplex_from(x).unwrap(),
            Options::new().duplex_from(y).unwrap(),
        );

        let (a, b) = duplex::<String, u32>().unwrap();
        let peer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            b.hello().map(|()| b)
        });
        a.hello_timeout(Duration::from_secs(10)).unwrap();
        let b = peer.join().unwrap().unwrap();
        a.send("after hello".into()).unwrap();
        assert_eq!(b.recv().unwrap(), "after hello");

        let (a, b) = duplex::<String, u32>().unwrap();
        let peer = std::thread::spawn(move || b.hello_as("u64", "string").map(drop));
        let e = a
            .hello_as_timeout("string", "u32", Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(peer.join().unwrap().is_err());
    });
}

/// `try_iter`, as std's and crossbeam-channel's: the messages there now,
/// in order, then `None` without waiting (also with half a frame in: it is
/// not an error), more once more came; after the sender is gone, the rest
/// and then `None`; on a pipe, a socket pair's duplex and shared memory.
#[test]
fn try_iter_takes_what_is_there_without_waiting() {
    checked(30, || {
        let (tx, rx) = duplex::<u32, u32>().unwrap();
        let (a, b) = procwire::Shm::new().duplex::<u32, u32>().unwrap();
        let (p, q) = procwire::channel::<u32>().unwrap();
        let sends: [&dyn Fn(u32); 3] = [&|i| tx.send(i).unwrap(), &|i| a.send(i).unwrap(), &|i| {
            p.send(i).unwrap()
        }];
        let tries: [&dyn Fn() -> Vec<u32>; 3] = [
            &|| rx.try_iter().collect::<Result<_, _>>().unwrap(),
            &|| b.try_iter().collect::<Result<_, _>>().unwrap(),
            &|| q.try_iter().collect::<Result<_, _>>().unwrap(),
        ];
        for (send, take) in sends.iter().zip(tries) {
            assert_eq!(take(), Vec::<u32>::new());
            for i in 0..3 {
                send(i);
            }
            let started = std::time::Instant::now();
            assert_eq!(take(), [0, 1, 2]);
            assert_eq!(take(), Vec::<u32>::new());
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "it did not wait"
            );
            send(3);
            assert_eq!(take(), [3]);
        }
        // The sender gone: the rest, then the end.
        p.send(4).unwrap();
        drop(p);
        let rest: Vec<u32> = q.try_iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(rest, [4]);
        assert!(q.iter().next().is_none(), "the end of the stream");
        // Half a frame in a pipe: nothing yet, not an error.
        let (r, mut w) = procwire::pipe().unwrap();
        let half = Options::new().receiver_from::<u32>(r).unwrap();
        std::io::Write::write_all(&mut w, &[0, 0]).unwrap();
        assert!(half.try_iter().next().is_none());
        std::io::Write::write_all(&mut w, &[0, 1, 7]).unwrap();
        assert_eq!(half.try_iter().next().unwrap().unwrap(), 7);
        // A half frame and then the writer gone: an error item, not a
        // silent end.
        std::io::Write::write_all(&mut w, &[0, 0]).unwrap();
        drop(w);
        let e = half.try_iter().next().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{e}");
    });
}

/// Issue 11, item 4: two ends that each accepted half of a 10 MiB frame
/// with a timed send, then each wait to receive: each receive writes its
/// own frame while it waits, so both complete instead of waiting on each
/// other forever.
#[test]
fn crossed_large_timed_sends_complete_inside_the_receives() {
    checked(60, || {
        let (a, b) = SocketPair::new(Kind::Stream)
            .codec(CodecKind::Raw)
            .duplex::<ByteBuf, ByteBuf>()
            .unwrap();
        let big = |tag: u8| ByteBuf::from(vec![tag; 10 << 20]);
        let side = |end: Duplex<ByteBuf, ByteBuf>, mine: u8, theirs: u8| {
            std::thread::spawn(move || {
                end.send_timeout(big(mine), Duration::from_secs(1))
                    .expect("the first bytes fit: accepted");
                let got = end
                    .recv_timeout(Duration::from_secs(20))
                    .expect("the peer's frame arrives while ours is written");
                assert_eq!(got.len(), 10 << 20);
                assert!(got.iter().all(|&b| b == theirs));
                // Whoever got its message first may still owe the rest of
                // its own frame: the peer's receive takes it now.
                end.flush_timeout(Duration::from_secs(20)).unwrap();
                end
            })
        };
        let ta = side(a, 1, 2);
        let tb = side(b, 2, 1);
        let (a, b) = (ta.join().unwrap(), tb.join().unwrap());
        drop((a, b));
    });
}

/// Issue 11, item 4: a receive with a deadline returns by it while our own
/// half-written frame cannot move (the peer reads nothing).
#[test]
fn a_timed_receive_returns_by_its_deadline_with_a_frame_stuck_half_written() {
    checked(30, || {
        let (a, b) = SocketPair::new(Kind::Stream)
            .codec(CodecKind::Raw)
            .duplex::<ByteBuf, ByteBuf>()
            .unwrap();
        a.send_timeout(
            ByteBuf::from(vec![0u8; 10 << 20]),
            Duration::from_millis(100),
        )
        .unwrap();
        let start = std::time::Instant::now();
        let e = a.recv_timeout(Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        // Generous: before the fix it never returned at all.
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        let e = a.flush_timeout(Duration::from_millis(100)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        drop(b);
    });
}

/// A duplex takes deadlines as instants too, as its halves do: a receive
/// with nothing coming returns `Timeout` by it, a send into a full channel
/// hands the value back by it, and both work once the peer moves.
#[test]
fn a_duplex_sends_and_receives_by_an_instant() {
    checked(30, || {
        let (a, b) = SocketPair::new(Kind::SeqPacket)
            .duplex::<ByteBuf, ByteBuf>()
            .unwrap();
        let start = Instant::now();
        let e = a
            .recv_deadline(start + Duration::from_millis(200))
            .unwrap_err();
        assert!(e.is_timeout(), "{e}");
        assert!(
            start.elapsed() >= Duration::from_millis(200),
            "{:?}",
            start.elapsed()
        );
        let mut sent = 0;
        let back = loop {
            let deadline = Instant::now() + Duration::from_millis(50);
            match a.send_deadline(ByteBuf::from(vec![sent as u8; 1000]), deadline) {
                Ok(()) => sent += 1,
                Err(e) => {
                    assert!(Instant::now() >= deadline, "returned before its deadline");
                    break e.into_inner();
                }
            }
            assert!(sent < 100_000, "the channel never filled");
        };
        assert_eq!(back[0], sent as u8, "the value came back");
        for i in 0..sent {
            assert_eq!(b.recv().unwrap()[0], i as u8);
        }
        b.send(ByteBuf::from(vec![7])).unwrap();
        let got = a
            .recv_deadline(Instant::now() + Duration::from_secs(5))
            .unwrap();
        assert_eq!(&got[..], &[7]);
        a.send_deadline(back, Instant::now() + Duration::from_secs(5))
            .unwrap();
        assert_eq!(b.recv().unwrap()[0], sent as u8);
    });
}

/// Issue 11, item 5: dropping a sender whose frame is half-written waits
/// at most the linger, then shuts the connection down: the peer reads a
/// truncated-frame error, never a short message.
#[test]
fn dropping_a_half_written_frame_waits_only_the_linger() {
    checked(30, || {
        let (tx, rx) = SocketPair::new(Kind::Stream)
            .codec(CodecKind::Raw)
            .linger(Duration::from_millis(200))
            .channel::<ByteBuf>()
            .unwrap();
        tx.send(ByteBuf::from(b"whole".to_vec())).unwrap();
        tx.send_timeout(
            ByteBuf::from(vec![7u8; 10 << 20]),
            Duration::from_millis(50),
        )
        .unwrap();
        let start = std::time::Instant::now();
        drop(tx);
        // Generous: before the fix the drop waited for as long as the peer
        // lived without reading.
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(rx.recv().unwrap().into_vec(), b"whole");
        let e = rx.recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{e}");
        assert!(rx.recv().unwrap_err().is_disconnected());
    });
}

/// Issue 11, item 20: a `Serialize` impl that sends on the channel its own
/// value is being sent on gets an error instead of waiting for itself.
#[test]
fn a_send_from_inside_serialize_on_the_same_channel_is_refused_not_hung() {
    use std::sync::Mutex;
    static TX: Mutex<Option<Sender<Loud>>> = Mutex::new(None);
    static INNER: Mutex<Option<String>> = Mutex::new(None);
    #[derive(serde::Deserialize, PartialEq, Debug)]
    struct Loud(bool);
    impl serde::Serialize for Loud {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if self.0 {
                let inner = TX.lock().unwrap().clone().unwrap();
                let r = inner.send(Loud(false));
                *INNER.lock().unwrap() = Some(match r {
                    Ok(()) => "sent".into(),
                    Err(e) => e.to_string(),
                });
            }
            s.serialize_newtype_struct("Loud", &self.0)
        }
    }
    checked(10, || {
        let (tx, rx) = channel::<Loud>().unwrap();
        *TX.lock().unwrap() = Some(tx.clone());
        tx.send(Loud(true)).unwrap();
        let inner = INNER.lock().unwrap().take().unwrap();
        assert!(inner.contains("inside the encoding"), "{inner}");
        assert_eq!(rx.recv().unwrap(), Loud(true));
        // The channel works on afterwards.
        tx.send(Loud(false)).unwrap();
        assert_eq!(rx.recv().unwrap(), Loud(false));
        TX.lock().unwrap().take();
    });
}

/// Issue 11, item 22: two receivers that are always ready each get their
/// turn (each chosen at least 40% of the time over 10,000 selections).
#[test]
fn select_is_fair_between_busy_receivers() {
    checked(60, || {
        let (tx_a, rx_a) = channel::<u8>().unwrap();
        let (tx_b, rx_b) = channel::<u8>().unwrap();
        tx_a.send(1).unwrap();
        tx_b.send(2).unwrap();
        let mut sel = procwire::Select::new();
        let a = sel.recv(&rx_a);
        let b = sel.recv(&rx_b);
        let mut chosen = [0u32; 2];
        for _ in 0..10_000 {
            let i = sel.ready_timeout(Duration::from_secs(5)).unwrap();
            chosen[if i == a { 0 } else { 1 }] += 1;
            // Take the message and put another: both stay ready.
            if i == a {
                assert_eq!(rx_a.try_recv().unwrap(), 1);
                tx_a.send(1).unwrap();
            } else {
                assert_eq!(i, b);
                assert_eq!(rx_b.try_recv().unwrap(), 2);
                tx_b.send(2).unwrap();
            }
        }
        assert!(chosen.iter().all(|&c| c >= 4_000), "{chosen:?}");
    });
}

/// Issue 11, item 22: an empty set is "nothing ready" for every call
/// (`try_ready` None, `ready_timeout` a timeout; `ready`, which would wait
/// for ever, an error), and a closed receiver can be taken out of a set.
#[test]
fn select_on_an_empty_set_agrees_and_closed_receivers_can_be_removed() {
    checked(30, || {
        let sel = procwire::Select::new();
        assert_eq!(sel.try_ready(), None);
        let e = sel.ready_timeout(Duration::from_millis(10)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert_eq!(sel.ready().unwrap_err().kind(), ErrorKind::InvalidInput);

        let (tx_a, rx_a) = channel::<u8>().unwrap();
        let (tx_b, rx_b) = channel::<u8>().unwrap();
        let mut sel = procwire::Select::new();
        let a = sel.recv(&rx_a);
        let b = sel.recv(&rx_b);
        drop(tx_a);
        assert_eq!(sel.ready().unwrap(), a);
        assert!(rx_a.try_recv().unwrap_err().is_disconnected());
        sel.remove(a);
        assert_eq!(
            sel.try_ready(),
            None,
            "the closed receiver is gone from the set"
        );
        tx_b.send(7).unwrap();
        assert_eq!(sel.ready().unwrap(), b);
        assert_eq!(rx_b.recv().unwrap(), 7);
        sel.remove(b);
        assert_eq!(sel.try_ready(), None);
        assert_eq!(sel.ready().unwrap_err().kind(), ErrorKind::InvalidInput);
    });
}

/// A message the receiver read ahead of the one it returned (both came in
/// one read) is ready for `Select` though its descriptor is not readable;
/// so is one read ahead by a receive whose decoding panicked.
#[test]
fn select_sees_a_message_read_ahead() {
    checked(20, || {
        let (tx, rx) = channel::<u32>().unwrap();
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert_eq!(
            rx.recv().unwrap(),
            1,
            "reads both frames, returns the first"
        );
        let mut sel = procwire::Select::new();
        let i = sel.recv(&rx);
        assert_eq!(sel.ready_timeout(Duration::from_secs(5)).unwrap(), i);
        assert_eq!(rx.try_recv().unwrap(), 2);
        assert_eq!(sel.try_ready(), None, "nothing left");

        /// Panics when it decodes 13.
        #[derive(Debug, PartialEq)]
        struct Picky(u32);
        impl<'de> serde::Deserialize<'de> for Picky {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Picky, D::Error> {
                let v = u32::deserialize(d)?;
                assert_ne!(v, 13, "a Deserialize impl that panics");
                Ok(Picky(v))
            }
        }
        let (tx, rx) = channel::<u32>().unwrap();
        let rx = Options::new()
            .receiver_from::<Picky>(rx.into_fd().unwrap())
            .unwrap();
        tx.send(13).unwrap();
        tx.send(14).unwrap();
        let rx = std::panic::AssertUnwindSafe(rx);
        assert!(std::panic::catch_unwind(|| rx.recv()).is_err());
        let mut sel = procwire::Select::new();
        let i = sel.recv(&*rx);
        assert_eq!(sel.ready_timeout(Duration::from_secs(5)).unwrap(), i);
        assert_eq!(rx.try_recv().unwrap(), Picky(14));
    });
}

/// Issue 12, item 5: the hello carries names the program declares, and a
/// peer of another wire format version is refused with both versions named.
#[test]
fn hello_uses_declared_names_and_refuses_another_version() {
    checked(10, || {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Job(u32);
        impl procwire::WireName for Job {
            const WIRE_NAME: &'static str = "lesson.Job";
        }
        let (a, b) = duplex::<Job, String>().unwrap();
        let peer = std::thread::spawn(move || b.hello_as("string", "lesson.Job").map(|()| b));
        a.hello().unwrap();
        peer.join().unwrap().unwrap();

        // A hand-made hello from a peer of version 1 (raw codec: the JSON
        // of the hello, as a peer in another language would write it).
        let (x, y) = procwire::socket_pair(Kind::Stream).unwrap();
        let a = Options::new()
            .codec(CodecKind::Json)
            .duplex_from::<String, u32>(x)
            .unwrap();
        let raw = Options::new()
            .codec(CodecKind::Raw)
            .duplex_from::<ByteBuf, ByteBuf>(y)
            .unwrap();
        raw.send(ByteBuf::from(
            br#"{"procwire":1,"sends":"u32","receives":"string"}"#.to_vec(),
        ))
        .unwrap();
        let e = a.hello().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&format!("version {}", procwire::WIRE_VERSION))
                && text.contains("version 1"),
            "{text}"
        );
        drop(raw);
    });
}

/// Issue 12, item 1: each operation's error has crossbeam-channel's name
/// and variants, hands the message back, holds the one `Error` for what a
/// process boundary adds, and converts into `procwire::Error` for `?`.
#[test]
fn channel_errors_have_crossbeams_shapes_and_hand_the_message_back() {
    use procwire::{
        RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
    };
    checked(10, || {
        let (tx, rx) = channel::<Vec<u8>>().unwrap();
        let full = loop {
            match tx.try_send(vec![1; 4096]) {
                Ok(()) => continue,
                Err(e) => break e,
            }
        };
        let TrySendError::Full(back) = full else {
            panic!("{full:?}")
        };
        assert_eq!(back, vec![1; 4096]);
        let e = tx
            .send_timeout(vec![2; 4096], Duration::from_millis(10))
            .unwrap_err();
        assert!(
            matches!(&e, SendTimeoutError::Timeout(v) if v[0] == 2),
            "{e:?}"
        );
        drop(rx);
        match tx.send(vec![3]) {
            Err(SendError::Disconnected(v, why)) => {
                assert_eq!(v, [3]);
                assert!(why.is_disconnected(), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            tx.try_send(vec![4]),
            Err(TrySendError::Disconnected(..))
        ));

        let (tx, rx) = channel::<u8>().unwrap();
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        assert!(matches!(
            rx.recv_timeout(Duration::from_millis(10)),
            Err(RecvTimeoutError::Timeout)
        ));
        drop(tx);
        assert!(matches!(rx.recv(), Err(RecvError::Disconnected(_))));
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Disconnected(_))));

        // A payload that does not decode: Other, with the Error's kind.
        let (a, b) = procwire::socket_pair(Kind::Stream).unwrap();
        let tx = Options::new()
            .codec(CodecKind::Json)
            .sender_from::<u32>(a)
            .unwrap();
        let rx = Options::new()
            .codec(CodecKind::Json)
            .receiver_from::<String>(b)
            .unwrap();
        tx.send(7).unwrap();
        match rx.recv() {
            Err(RecvError::Other(e)) => assert_eq!(e.kind(), ErrorKind::Decode),
            other => panic!("{other:?}"),
        }

        // `?` into procwire::Result, from channel errors and from io::Error.
        fn relay(rx: &Receiver<String>) -> procwire::Result<String> {
            let s = rx.try_recv()?;
            std::fs::metadata("/")?;
            Ok(s)
        }
        assert_eq!(relay(&rx).unwrap_err().kind(), ErrorKind::Empty);
    });
}

#[test]
fn recv_into_takes_each_message_and_leaves_the_value_alone_when_none_comes() {
    checked(30, || {
        let (tx, rx) = channel::<(u32, String)>().unwrap();
        let mut place = (7, "kept".to_string());
        // Nothing there: untouched.
        let e = rx.try_recv_into(&mut place).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Empty);
        let e = rx
            .recv_into_timeout(&mut place, Duration::from_millis(20))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(place, (7, "kept".to_string()));
        tx.send((1, "one".into())).unwrap();
        tx.send((2, "two".into())).unwrap();
        rx.try_recv_into(&mut place).unwrap();
        assert_eq!(place, (1, "one".to_string()));
        rx.recv_into_timeout(&mut place, Duration::from_secs(5))
            .unwrap();
        assert_eq!(place, (2, "two".to_string()));
        drop(tx);
        assert!(rx.recv_into(&mut place).unwrap_err().is_disconnected());
        assert_eq!(place, (2, "two".to_string()));

        // The same on a duplex.
        let (a, b) = duplex::<(u32, String), (u32, String)>().unwrap();
        let e = b.try_recv_into(&mut place).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Empty);
        let e = b
            .recv_into_timeout(&mut place, Duration::from_millis(20))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(place, (2, "two".to_string()));
        for n in 3..6 {
            a.send((n, n.to_string())).unwrap();
        }
        b.try_recv_into(&mut place).unwrap();
        assert_eq!(place, (3, "3".to_string()));
        b.recv_into_timeout(&mut place, Duration::from_secs(5))
            .unwrap();
        assert_eq!(place, (4, "4".to_string()));
        b.recv_into(&mut place).unwrap();
        assert_eq!(place, (5, "5".to_string()));
        drop(a);
        assert!(b.recv_into(&mut place).unwrap_err().is_disconnected());

        // A message that does not decode is a Decode error, and the next
        // one arrives.
        let (peer, rx) = util::json_text_peer(Kind::SeqPacket);
        for text in ["1", r#""2""#, "3"] {
            peer.send(text).unwrap();
        }
        let mut n = 0;
        rx.recv_into(&mut n).unwrap();
        assert_eq!(n, 1);
        let e = rx.recv_into(&mut n).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode);
        rx.recv_into(&mut n).unwrap();
        assert_eq!(n, 3);
    });
}

#[test]
fn recv_into_takes_large_messages_whole_on_every_path() {
    // 1 MiB: read straight into a buffer of its own on a pipe or stream
    // (which replaces the one there), out of line on a SEQPACKET socket,
    // out of the ring's spill file on shared memory.
    checked(60, || {
        let big = |i: u8| ByteBuf::from(util::pattern(u32::from(i), 1 << 20));
        let ends: Vec<(Sender<ByteBuf>, Receiver<ByteBuf>)> = vec![
            Pipe::new().channel().unwrap(),
            SocketPair::new(Kind::Stream).channel().unwrap(),
            SocketPair::new(Kind::SeqPacket).channel().unwrap(),
            procwire::Shm::new().capacity(64 << 10).channel().unwrap(),
        ];
        for (tx, rx) in ends {
            let sender = std::thread::spawn(move || {
                for i in 0..3 {
                    tx.send(big(i)).unwrap();
                    tx.send(ByteBuf::from(vec![i; 10])).unwrap();
                }
            });
            let mut buf = ByteBuf::from(vec![9u8; 100]);
            for i in 0..3 {
                rx.recv_into(&mut buf).unwrap();
                assert!(buf == big(i), "message {i}");
                rx.recv_into(&mut buf).unwrap();
                assert_eq!(&buf[..], &[i; 10]);
            }
            sender.join().unwrap();
        }
    });
}

/// A timeout past what an `Instant` can hold (`Duration::MAX`) means "as
/// long as it takes", as in crossbeam-channel, on every call that takes
/// one and in a channel's linger: never the panic of `Instant +
/// Duration` overflowing.
#[test]
fn a_timeout_past_any_instant_waits_as_long_as_it_takes() {
    checked(30, || {
        let forever = Duration::MAX;
        let (tx, rx) = Pipe::new().linger(forever).channel::<u32>().unwrap();
        tx.send_timeout(1, forever).unwrap();
        tx.flush_timeout(forever).unwrap();
        assert_eq!(rx.recv_timeout(forever).unwrap(), 1);
        tx.send(2).unwrap();
        let mut place = 0;
        rx.recv_into_timeout(&mut place, forever).unwrap();
        assert_eq!(place, 2);
        tx.send(3).unwrap();
        let mut select = procwire::Select::new();
        select.recv(&rx);
        assert_eq!(select.ready_timeout(forever).unwrap(), 0);
        assert_eq!(rx.recv().unwrap(), 3);
        drop(tx); // within a linger of Duration::MAX
        assert_eq!(
            rx.recv_timeout(forever).unwrap_err().kind(),
            ErrorKind::Disconnected
        );

        let (a, b) = duplex::<u32, u32>().unwrap();
        let echo = std::thread::spawn(move || {
            b.hello_timeout(forever).unwrap();
            let n = b.recv_timeout(forever).unwrap();
            b.send_timeout(n + 1, forever).unwrap();
            let mut n = 0;
            b.recv_into_timeout(&mut n, forever).unwrap();
            n
        });
        a.hello_timeout(forever).unwrap();
        a.send_timeout(41, forever).unwrap();
        assert_eq!(a.recv_timeout(forever).unwrap(), 42);
        a.send(7).unwrap();
        a.flush_timeout(forever).unwrap();
        assert_eq!(echo.join().unwrap(), 7);

        let mut child = procwire::Command::new("true").spawn().unwrap();
        let status = child.wait_timeout(forever).unwrap().expect("it exited");
        assert!(status.success());
    });
}

/// A send buffer larger than the socket option's `int` holds is capped (as
/// the kernel caps any at `net.core.wmem_max`), not refused with EINVAL.
#[test]
fn a_send_buffer_past_what_the_kernel_takes_is_capped_not_refused() {
    checked(30, || {
        for kind in [Kind::Stream, Kind::SeqPacket, Kind::Datagram] {
            let (tx, rx) = SocketPair::new(kind)
                .send_buffer(usize::MAX)
                .channel::<Vec<u8>>()
                .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            tx.send(vec![7; 1000]).unwrap();
            assert_eq!(rx.recv().unwrap(), vec![7; 1000]);
        }
    });
}

/// `Select` over more descriptors than 4,096 (procwire's poll refused them,
/// and `try_ready` then said nothing was ready): the one with a message is
/// found, by a wait and by a try.
#[test]
fn select_over_thousands_of_channels_finds_the_ready_one() {
    checked(60, || {
        let ends: Vec<_> = (0..4_200).map(|_| channel::<u32>().unwrap()).collect();
        let mut select = procwire::Select::new();
        for (_, rx) in &ends {
            select.recv(rx);
        }
        ends[4_150].0.send(7).unwrap();
        assert_eq!(select.try_ready(), Some(4_150));
        assert_eq!(
            select.ready_timeout(Duration::from_secs(10)).unwrap(),
            4_150
        );
        assert_eq!(ends[4_150].1.recv().unwrap(), 7);
        assert_eq!(select.try_ready(), None);
    });
}
