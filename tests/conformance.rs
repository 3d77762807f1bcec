//! One conformance suite, run over every transport: pipe, stream, datagram
//! and seqpacket socket pairs, a Unix socket connected by path, shared
//! memory, and TCP on loopback.

mod util;

use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;

use procwire::{
    ByteBuf, CodecKind, ErrorKind, Kind, Options, Pipe, Receiver, Sender, Shm, SocketPair,
};
use util::{T, checked, pattern};

/// The suite's maximum frame: room for the 10 MiB message every transport
/// must carry, and a limit low enough to test refusals quickly.
const MAX_FRAME: usize = 16 << 20;

fn make_with(t: T, opts: &Options) -> (Sender<ByteBuf>, Receiver<ByteBuf>) {
    match t {
        T::Pipe => Pipe::new().options(opts.clone()).channel().unwrap(),
        T::Stream => SocketPair::new(Kind::Stream)
            .options(opts.clone())
            .channel()
            .unwrap(),
        T::Datagram => SocketPair::new(Kind::Datagram)
            .options(opts.clone())
            .channel()
            .unwrap(),
        T::SeqPacket => SocketPair::new(Kind::SeqPacket)
            .options(opts.clone())
            .channel()
            .unwrap(),
        T::Shm => Shm::new().options(opts.clone()).channel().unwrap(),
        T::UnixPath => {
            let (client, server) = util::unix_path_pair();
            (
                opts.sender_from(client).unwrap(),
                opts.receiver_from(server).unwrap(),
            )
        }
        T::Tcp => {
            // One way, as the others: the unused halves are dropped, which
            // tells each side that no heartbeat will come that way.
            let opts = procwire::Net::new().options(opts.clone()).no_key();
            let (client, server) = util::tcp_pair(&opts);
            (client.split().0, server.split().1)
        }
    }
}

fn opts() -> Options {
    Options::new().codec(CodecKind::Raw).max_frame(MAX_FRAME)
}

fn make(t: T) -> (Sender<ByteBuf>, Receiver<ByteBuf>) {
    make_with(t, &opts())
}

fn order_kept(t: T) {
    checked(30, move || {
        let (tx, rx) = make(t);
        let sender = std::thread::spawn(move || {
            for i in 0..2000u32 {
                tx.send(ByteBuf::from(pattern(i, (i % 300) as usize)))
                    .unwrap();
            }
        });
        for i in 0..2000u32 {
            let got = rx.recv().unwrap();
            assert_eq!(
                got.into_vec(),
                pattern(i, (i % 300) as usize),
                "message {i}"
            );
        }
        sender.join().unwrap();
    });
}

fn sizes(t: T) {
    checked(60, move || {
        let (tx, rx) = make(t);
        // Every transport carries any message up to the maximum frame:
        // past the kernel's datagram limit (SO_SNDBUF less 32 bytes: 212,960
        // by default) and past half a shared-memory ring (512 KiB here),
        // whole, in order.
        let limit = tx.max_frame();
        assert_eq!(limit, MAX_FRAME);
        let refused = [limit + 1, limit + (1 << 20)];
        let accepted = [
            0,
            1,
            64 << 10,
            212_960,
            212_961,
            256 << 10,
            (256 << 10) + 1,
            1 << 20,
            10 << 20,
            limit,
        ];
        // Messages that start like an out-of-line announcement (wire format
        // section 3) arrive as they were sent.
        let lookalikes: Vec<Vec<u8>> = vec![
            b"\xFFpwmemfd".to_vec(),
            b"\xFFpwmemfd\x00\x00\x00\x04".to_vec(),
            [&b"\xFFpwmemfd"[..], &pattern(7, 5000)].concat(),
        ];
        let expect = lookalikes.clone();
        let reader = std::thread::spawn(move || {
            for (i, len) in accepted.iter().enumerate() {
                let got = rx.recv().unwrap();
                assert_eq!(got.len(), *len);
                assert!(
                    got.into_vec() == pattern(i as u32, *len),
                    "message {i} differs"
                );
            }
            for want in expect {
                assert_eq!(rx.recv().unwrap().into_vec(), want);
            }
            rx
        });
        for (i, len) in accepted.iter().enumerate() {
            tx.send(ByteBuf::from(pattern(i as u32, *len))).unwrap();
        }
        for m in lookalikes {
            tx.send(ByteBuf::from(m)).unwrap();
        }
        for len in &refused {
            let e = tx.send(ByteBuf::from(vec![1u8; *len])).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::FrameTooLarge, "{e}");
            assert_eq!(e.into_inner().len(), *len, "the message comes back");
        }
        let rx = reader.join().unwrap();
        // Nothing of the refused messages reached the wire.
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::Empty);
    });
}

fn eof_after_last(t: T) {
    checked(30, move || {
        let (tx, rx) = make(t);
        for i in 0..3u32 {
            tx.send(ByteBuf::from(pattern(i, 10))).unwrap();
        }
        drop(tx);
        for i in 0..3u32 {
            assert_eq!(rx.recv().unwrap().into_vec(), pattern(i, 10));
        }
        if t.has_eof() {
            let e = rx.recv().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            // And it stays ended.
            assert!(rx.recv().unwrap_err().is_disconnected());
            let items: Vec<_> = rx.iter().collect();
            assert!(items.is_empty());
        } else {
            // A datagram socket has no end-of-file: the wait is bounded only
            // by the deadline (supervision reports a dead peer later).
            let e = rx.recv_timeout(Duration::from_millis(50)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Timeout);
        }
    });
}

fn peer_closed(t: T) {
    checked(30, move || {
        let (tx, rx) = make(t);
        drop(rx);
        let msg = ByteBuf::from(b"anyone there?".to_vec());
        if t == T::Tcp {
            // TCP learns of a closed peer from the reset its next segment
            // draws: the send after that fails (the one before may not).
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while tx.send(msg.clone()).is_ok() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "sends kept succeeding"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let e = tx.send(msg.clone()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        assert_eq!(e.into_inner(), msg);
        // try_send and send_timeout say the same.
        assert!(tx.try_send(msg.clone()).unwrap_err().is_disconnected());
        assert!(
            tx.send_timeout(msg, Duration::from_secs(1))
                .unwrap_err()
                .is_disconnected()
        );
    });
}

fn timeouts(t: T) {
    checked(60, move || {
        let (tx, rx) = make(t);
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::Empty);
        let e = rx.recv_timeout(Duration::from_millis(20)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);

        // Fill the OS buffer until try_send says Full.
        let mut accepted = 0u32;
        let full = loop {
            match tx.try_send(ByteBuf::from(pattern(accepted, 1000))) {
                Ok(()) => accepted += 1,
                Err(e) => break e,
            }
            assert!(accepted < 1_000_000, "the buffer never filled");
        };
        assert_eq!(full.kind(), ErrorKind::Full, "{full}");
        assert_eq!(full.into_inner().into_vec(), pattern(accepted, 1000));
        let r = tx.send_timeout(
            ByteBuf::from(pattern(accepted, 1000)),
            Duration::from_millis(20),
        );
        match r {
            Err(e) => assert_eq!(e.kind(), ErrorKind::Timeout),
            // TCP frees send-buffer room without any read (acknowledged
            // segments, a send buffer that autotuning grows): its Full is a
            // moment, not a state. The message then counts as sent.
            Ok(()) if t == T::Tcp => accepted += 1,
            Ok(()) => panic!("{t:?}: a send into a full buffer went through"),
        }

        // Everything accepted arrives whole, in order; nothing else does.
        let reader = std::thread::spawn(move || {
            for i in 0..accepted {
                assert_eq!(
                    rx.recv().unwrap().into_vec(),
                    pattern(i, 1000),
                    "message {i}"
                );
            }
            rx
        });
        tx.flush().unwrap();
        let rx = reader.join().unwrap();
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::Empty);
        drop(tx);
    });
}

fn fd_passing(t: T) {
    checked(30, move || {
        let (tx, rx) = make(t);
        if !t.carries_fds() {
            let (_r, w) = procwire::pipe().unwrap();
            let e = tx.send_with_fds(ByteBuf::new(), &[w.as_fd()]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported);
            return;
        }
        // Messages with and without descriptors, interleaved: each pipe's
        // content names the message it must arrive with.
        let mut readers = Vec::new();
        for i in 0..20u32 {
            let body = ByteBuf::from(pattern(i, (i as usize * 97) % 500));
            if i % 3 == 0 {
                let (r, mut w) = procwire::pipe().unwrap();
                w.write_all(format!("pipe for {i}").as_bytes()).unwrap();
                tx.send_with_fds(body, &[w.as_fd()]).unwrap();
                readers.push(r);
            } else {
                tx.send(body).unwrap();
            }
        }
        drop(readers);
        for i in 0..20u32 {
            let (body, fds) = rx.recv_with_fds().unwrap();
            assert_eq!(body.into_vec(), pattern(i, (i as usize * 97) % 500));
            if i % 3 == 0 {
                assert_eq!(fds.len(), 1, "message {i} carries one descriptor");
                assert!(procwire::is_cloexec(&fds[0]).unwrap());
                // The write end arrived; our reader copies are closed, so a
                // write now fails with a broken pipe rather than a signal.
                let mut w = procwire::PipeWriter::from_fd(fds.into_iter().next().unwrap()).unwrap();
                assert_eq!(
                    w.write(b"x").unwrap_err().kind(),
                    std::io::ErrorKind::BrokenPipe
                );
            } else {
                assert!(fds.is_empty(), "message {i} carries none");
            }
        }
    });
}

/// A receiver, a raw writer into its transport, and whatever must live as
/// long as the writer.
type RawWriter = (
    Receiver<ByteBuf>,
    Box<dyn Write + Send>,
    Option<Box<dyn Send>>,
);

fn partial_frame_survives_timeout(t: T) {
    checked(30, move || {
        // A raw writer on the transport itself, to write half a frame by
        // hand, and a procwire receiver on its other end.
        let (rx, mut raw, keep): RawWriter = match t {
            T::Pipe => {
                let (r, w) = procwire::pipe().unwrap();
                (opts().receiver_from(r).unwrap(), Box::new(w), None)
            }
            T::Stream => {
                let (a, b) = procwire::socket_pair(Kind::Stream).unwrap();
                (opts().receiver_from(a).unwrap(), Box::new(b), None)
            }
            T::UnixPath => {
                let (client, server) = util::unix_path_pair();
                (
                    opts().receiver_from(server).unwrap(),
                    Box::new(client),
                    None,
                )
            }
            T::Datagram | T::SeqPacket | T::Shm | T::Tcp => unreachable!("not applicable"),
        };
        raw.write_all(&[0, 0, 0, 5, b'h', b'e']).unwrap();
        let e = rx.recv_timeout(Duration::from_millis(30)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        raw.write_all(b"llo").unwrap();
        assert_eq!(rx.recv().unwrap().into_vec(), b"hello");
        // A peer that dies mid-frame: an error, once, then the end.
        raw.write_all(&[0, 0, 1, 0, 1, 2, 3]).unwrap();
        drop(raw);
        drop(keep);
        let e = rx.recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{e}");
        assert!(e.to_string().contains("3 B of 256 B"), "{e}");
        assert!(rx.recv().unwrap_err().is_disconnected());
    });
}

/// The peer answers request 1, then closes with request 2 unread: the
/// answer still arrives, and only then the end. (On SEQPACKET the kernel
/// reports the reset before the queued answer; on TCP a close with unread
/// input sends a reset that could destroy an answer still in flight.)
/// `scripts/stress` runs it 1,000 times per transport.
fn answer_survives_close(t: T) {
    let rounds = if util::stress() > 1 { 1000 } else { 100 };
    checked(120, move || {
        for round in 0..rounds {
            let ((a_tx, a_rx), (b_tx, b_rx)) = util::two_way(t, &opts());
            a_tx.send(ByteBuf::from(pattern(round, 1))).unwrap();
            a_tx.send(ByteBuf::from(pattern(round, 2))).unwrap();
            let got = b_rx.recv().unwrap().into_vec();
            assert_eq!(got, pattern(round, 1));
            b_tx.send(ByteBuf::from(pattern(round, 300))).unwrap();
            drop((b_tx, b_rx)); // request 2 unread
            let answer = a_rx.recv_timeout(Duration::from_secs(10));
            match answer {
                Ok(v) => assert_eq!(v.into_vec(), pattern(round, 300), "round {round}"),
                Err(e) => panic!("{t:?} round {round}: the answer was lost: {e}"),
            }
            if t.has_eof() {
                let e = a_rx.recv_timeout(Duration::from_secs(10)).unwrap_err();
                assert!(e.is_disconnected(), "{t:?} round {round}: {e}");
            }
        }
    });
}

fn select_wakes(t: T) {
    checked(30, move || {
        let (tx_a, rx_a) = make(t);
        let (tx_b, rx_b) = make(t);
        let mut sel = procwire::Select::new();
        let a = sel.recv(&rx_a);
        let b = sel.recv(&rx_b);
        assert!(
            sel.ready_timeout(Duration::from_millis(20))
                .unwrap_err()
                .is_timeout()
        );
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            tx_b.send(ByteBuf::from(b"b".to_vec())).unwrap();
            tx_b
        });
        assert_eq!(sel.ready_timeout(Duration::from_secs(10)).unwrap(), b);
        let tx_b = late.join().unwrap();
        assert_eq!(rx_b.recv().unwrap().into_vec(), b"b");
        // Two messages read in one go: the second is buffered in the
        // receiver, invisible to poll, and select must still see it.
        tx_a.send(ByteBuf::from(b"1".to_vec())).unwrap();
        tx_a.send(ByteBuf::from(b"2".to_vec())).unwrap();
        assert_eq!(sel.ready().unwrap(), a);
        assert_eq!(rx_a.recv().unwrap().into_vec(), b"1");
        assert_eq!(sel.ready_timeout(Duration::from_secs(10)).unwrap(), a);
        assert_eq!(rx_a.recv().unwrap().into_vec(), b"2");
        drop((tx_a, tx_b));
    });
}

fn many_senders_never_interleave(t: T) {
    checked(60, move || {
        let (tx, rx) = make(t);
        let threads: Vec<_> = (0..4u32)
            .map(|th| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..200u32 {
                        let id = th * 1000 + i;
                        tx.send(ByteBuf::from(pattern(id, 5000 + (id as usize % 7000))))
                            .unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let mut next = [0u32; 4];
        for _ in 0..800 {
            let got = rx.recv().unwrap().into_vec();
            // Identify the message by trying each thread's next expected one.
            let th = (0..4)
                .find(|&th| {
                    let id = th as u32 * 1000 + next[th];
                    got == pattern(id, 5000 + (id as usize % 7000))
                })
                .expect("a message arrived torn, interleaved or out of its sender's order");
            next[th] += 1;
        }
        for h in threads {
            h.join().unwrap();
        }
        assert_eq!(next, [200; 4]);
    });
}

/// A wait sleeps: a receive on an empty channel and a send on a full one
/// each wait 400 ms for the other side and use a small part of that in CPU
/// time, where a wait that spins uses all of it. (A shared-memory sender
/// did spin, while its ring held records that left less room than the
/// next one needed but was not full: 1,500-byte messages in the default
/// ring, as here.)
fn waits_asleep(t: T) {
    const AWAY: Duration = Duration::from_millis(400);
    checked(60, move || {
        let (tx, rx) = make(t);
        let receiving = std::thread::spawn(move || {
            let start = util::thread_cpu();
            let got = rx.recv().unwrap();
            (rx, got, util::thread_cpu() - start)
        });
        std::thread::sleep(AWAY);
        assert!(
            !receiving.is_finished(),
            "a receive returned with nothing sent"
        );
        tx.send(ByteBuf::from(pattern(0, 100))).unwrap();
        let (rx, got, used) = receiving.join().unwrap();
        assert_eq!(got.into_vec(), pattern(0, 100));
        assert!(
            used < AWAY / 4,
            "a receive that waited {AWAY:?} used {used:?} of CPU"
        );

        let mut sent = 0u32;
        while tx.try_send(ByteBuf::from(pattern(sent, 1500))).is_ok() {
            sent += 1;
        }
        let sending = std::thread::spawn(move || {
            let start = util::thread_cpu();
            tx.send(ByteBuf::from(pattern(sent, 1500))).unwrap();
            util::thread_cpu() - start
        });
        std::thread::sleep(AWAY);
        assert!(
            !sending.is_finished(),
            "a send into a full channel returned at once"
        );
        for i in 0..=sent {
            assert_eq!(
                rx.recv().unwrap().into_vec(),
                pattern(i, 1500),
                "message {i}"
            );
        }
        let used = sending.join().unwrap();
        assert!(
            used < AWAY / 4,
            "a send that waited {AWAY:?} for room used {used:?} of CPU"
        );
    });
}

/// The behaviours every transport has.
macro_rules! behaviours {
    ($t:expr; $($b:ident)*) => {$(
        #[test] fn $b() { super::$b($t) }
    )*};
}

/// A behaviour a transport does not have is listed by name, skipped with
/// the reason, and never counted as a pass. (Run with `--run-ignored all`
/// it fails: the behaviour's function refuses such a transport.)
macro_rules! not_applicable {
    ($b:ident, $why:literal) => {
        #[test]
        #[ignore = $why]
        fn $b() {
            panic!("{}", $why)
        }
    };
}

macro_rules! suite {
    ($($module:ident => $t:expr, { $($extra:tt)* }),* $(,)?) => {$(
        mod $module {
            behaviours!($t; order_kept sizes eof_after_last peer_closed timeouts fd_passing
                select_wakes many_senders_never_interleave answer_survives_close waits_asleep);
            $($extra)*
        }
    )*};
}

suite! {
    pipe => super::T::Pipe, { behaviours!(super::T::Pipe; partial_frame_survives_timeout); },
    stream => super::T::Stream, { behaviours!(super::T::Stream; partial_frame_survives_timeout); },
    datagram => super::T::Datagram, {
        not_applicable!(partial_frame_survives_timeout,
            "not applicable: a datagram arrives whole or not at all");
    },
    seqpacket => super::T::SeqPacket, {
        not_applicable!(partial_frame_survives_timeout,
            "not applicable: a seqpacket message arrives whole or not at all");
    },
    unix_path => super::T::UnixPath, { behaviours!(super::T::UnixPath; partial_frame_survives_timeout); },
    shm => super::T::Shm, {
        not_applicable!(partial_frame_survives_timeout,
            "not applicable: a ring record is published whole, by one store of its tail");
    },
    tcp => super::T::Tcp, {
        not_applicable!(partial_frame_survives_timeout,
            "not applicable: tcp:// carries encrypted records, so no hand-made partial frame \
             can be written from outside; the session's unit tests feed records in pieces");
    },
}
