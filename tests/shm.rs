//! Shared memory across real processes: a writer killed mid-write, a peer
//! that exits, a hostile header, and the lesson's request/reply.

mod util;

use std::time::{Duration, Instant};

use procwire::{
    ByteBuf, CodecKind, Duplex, ErrorKind, How, Options, Receiver, Sender, ShmWait, task,
};
use util::{checked, wait_deadline};

procwire::init_before_main!();

/// A task that receives a shared-memory duplex and answers on it.
fn lifter(_: (), ctl: Duplex<(), Duplex<String, String>>) {
    let ch = ctl.recv().unwrap();
    for job in ch.iter() {
        ch.send(format!("{} accomplished!", job.unwrap())).unwrap();
    }
}

#[test]
fn request_reply_over_shared_memory_with_a_child_process() {
    checked(30, || {
        let (mine, theirs) = Options::new().shm_duplex::<String, String>().unwrap();
        let (mut child, ctl) = task(lifter, ()).via(How::Server).spawn().unwrap();
        ctl.send(theirs).unwrap();
        mine.supervise(&child);
        for job in ["Heavy lifting", "Feather lifting"] {
            assert_eq!(
                mine.request(job.into()).unwrap(),
                format!("{job} accomplished!")
            );
        }
        drop(mine); // the child's loop ends at the ring's close
        assert!(wait_deadline(&mut child, 20).success());
    });
}

/// Echoes a fixed number of messages, then exits without closing anything.
fn echo_then_vanish(n: u32, ctl: Duplex<(), Duplex<ByteBuf, ByteBuf>>) {
    let ch = ctl.recv().unwrap();
    for _ in 0..n {
        let m = ch.recv().unwrap();
        ch.send(m).unwrap();
    }
    std::process::exit(0);
}

#[test]
fn every_waiting_strategy_carries_messages_and_sees_its_peer_vanish() {
    checked(60, || {
        for wait in [
            ShmWait::Adaptive,
            ShmWait::Spin,
            ShmWait::Yield,
            ShmWait::Futex,
        ] {
            let (mine, theirs) = Options::new()
                .shm_capacity(16 << 10)
                .shm_wait(wait)
                .shm_duplex::<ByteBuf, ByteBuf>()
                .unwrap();
            let (mut child, ctl) = task(echo_then_vanish, 500)
                .via(How::Server)
                .spawn()
                .unwrap();
            ctl.send(theirs).unwrap();
            mine.supervise(&child);
            for i in 0..500usize {
                // Sizes up to 6 KiB wrap the 16 KiB ring many times.
                let msg = ByteBuf::from(vec![i as u8; (i * 97) % 6000]);
                assert_eq!(mine.request(msg.clone()).unwrap(), msg, "{wait:?}");
            }
            // The peer is gone without a word: the next wait ends with an
            // error naming its exit, whichever way this end waits.
            let started = Instant::now();
            let _ = mine.send(ByteBuf::from(vec![1]));
            let e = mine.recv().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::PeerExited, "{wait:?}: {e}");
            assert!(started.elapsed() < Duration::from_secs(5), "{wait:?}");
            assert!(wait_deadline(&mut child, 10).success());
        }
    });
}

/// Streams large messages until killed.
fn streamer(_: (), ctl: Duplex<(), Sender<ByteBuf>>) {
    let tx = ctl.recv().unwrap();
    let mut n = 0u8;
    loop {
        n = n.wrapping_add(1);
        if tx.send(ByteBuf::from(vec![n; 200_000])).is_err() {
            return;
        }
    }
}

#[test]
fn a_writer_killed_mid_write_never_hands_over_half_a_message() {
    checked(60, || {
        let opts = Options::new().codec(CodecKind::Raw);
        let (tx, rx): (Sender<ByteBuf>, Receiver<ByteBuf>) = opts.shm_channel().unwrap();
        let (mut child, ctl) = task(streamer, ()).via(How::Server).spawn().unwrap();
        ctl.send(tx).unwrap();
        // Read some, then kill the writer while it is busy writing.
        for _ in 0..20 {
            let m = rx.recv().unwrap();
            assert_eq!(m.len(), 200_000);
            assert!(m.iter().all(|&b| b == m[0]), "a torn message");
        }
        child.kill().unwrap();
        wait_deadline(&mut child, 10);
        // What was published arrives whole; then the end, not a hang.
        let started = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(m) => assert!(m.iter().all(|&b| b == m[0]) && m.len() == 200_000),
                Err(e) => {
                    assert!(e.is_disconnected(), "{e}");
                    break;
                }
            }
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    });
}

fn exits_at_once(_: (), ctl: Duplex<(), Receiver<u32>>) {
    let _rx = ctl.recv().unwrap();
    std::process::exit(0);
}

#[test]
fn a_reader_that_exits_fails_the_blocked_writer() {
    checked(30, || {
        let (tx, rx) = Options::new()
            .shm_capacity(4096)
            .shm_channel::<u32>()
            .unwrap();
        let (mut child, ctl) = task(exits_at_once, ()).via(How::Server).spawn().unwrap();
        ctl.send(rx).unwrap();
        // The ring holds a few hundred; the writer blocks, then must learn
        // that the reader's process is gone.
        let started = Instant::now();
        let e = loop {
            if let Err(e) = tx.send(7) {
                break e;
            }
        };
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(wait_deadline(&mut child, 10).success());
    });
}

#[test]
fn a_killed_reader_fails_the_next_send_even_with_room_in_the_ring() {
    checked(30, || {
        let (tx, rx) = Options::new().shm_channel::<u32>().unwrap();
        let (mut child, ctl) = task(exits_at_once, ()).via(How::Server).spawn().unwrap();
        ctl.send(rx).unwrap();
        // The reader's process exits without closing its end.
        assert!(wait_deadline(&mut child, 10).success());
        std::thread::sleep(Duration::from_millis(2));
        let e = tx.send(1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        assert_eq!(e.into_inner(), 1);
    });
}

fn echo_bytes(_: (), ctl: Duplex<(), Duplex<ByteBuf, ByteBuf>>) {
    let ch = ctl.recv().unwrap();
    for m in ch.iter() {
        ch.send(m.unwrap()).unwrap();
    }
}

#[test]
fn messages_larger_than_the_ring_travel_out_of_line_between_processes() {
    checked(60, || {
        // A 4 KiB ring carries at most 2,040 bytes inline.
        let (mine, theirs) = Options::new()
            .codec(CodecKind::Raw)
            .shm_capacity(4096)
            .shm_duplex::<ByteBuf, ByteBuf>()
            .unwrap();
        let (mut child, ctl) = task(echo_bytes, ()).via(How::Server).spawn().unwrap();
        ctl.send(theirs).unwrap();
        let before = util::fd_count();
        for (i, len) in [100usize, 3000, 100, 1 << 20, 2040, 2041, 5 << 20]
            .into_iter()
            .enumerate()
        {
            let msg = util::pattern(i as u32, len);
            assert_eq!(
                mine.request(ByteBuf::from(msg.clone())).unwrap().into_vec(),
                msg,
                "{len}"
            );
        }
        assert_eq!(
            util::fd_count(),
            before,
            "every out-of-line memfd was closed"
        );
        drop(mine);
        assert!(wait_deadline(&mut child, 20).success());
    });
}
