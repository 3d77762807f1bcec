//! Load: many children sending many messages at once; a receiver that
//! stops reading; a child that runs out of descriptors.

mod util;

use std::time::{Duration, Instant};

use procwire::{
    ByteBuf, Duplex, ErrorKind, How, Kind, Receiver, Select, Sender, Shm, SocketPair, task,
};
use serde::{Deserialize, Serialize};
use util::{checked, wait_deadline};

procwire::init_before_main!();

/// A message: sender, sequence number, a payload, and its checksum.
#[derive(Serialize, Deserialize)]
struct Item {
    from: u32,
    seq: u32,
    sum: u64,
    data: ByteBuf,
}

fn checksum(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Sends `n` items of sizes from 0 to 64 KiB, then ends.
fn producer((from, n): (u32, u32), ctl: Duplex<(), Sender<Item>>) {
    let tx = ctl.recv().unwrap();
    let mut x = u64::from(from) * 7919 + 1;
    for seq in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = match x % 10 {
            0 => (x % 65_536) as usize,
            1..=3 => (x % 4096) as usize,
            _ => (x % 64) as usize,
        };
        let data: Vec<u8> = (0..len).map(|i| (x as usize + i) as u8).collect();
        tx.send(Item {
            from,
            seq,
            sum: checksum(&data),
            data: ByteBuf::from(data),
        })
        .unwrap();
    }
}

#[test]
fn many_children_many_messages_none_lost_duplicated_or_reordered() {
    checked(120, || {
        const CHILDREN: u32 = 8;
        let each = 2000 * util::stress();
        let mut children = Vec::new();
        let mut receivers: Vec<Receiver<Item>> = Vec::new();
        for from in 0..CHILDREN {
            // Half over stream sockets, half over shared memory.
            let (tx, rx) = if from % 2 == 0 {
                SocketPair::new(Kind::Stream).channel::<Item>().unwrap()
            } else {
                Shm::new().channel::<Item>().unwrap()
            };
            let (child, ctl) = task(producer, (from, each))
                .via(How::Server)
                .spawn()
                .unwrap();
            ctl.send(tx).unwrap();
            rx.supervise(&child);
            children.push(child);
            receivers.push(rx);
        }
        let mut next = vec![0u32; CHILDREN as usize];
        let mut open = CHILDREN;
        let mut bytes = 0usize;
        let started = Instant::now();
        while open > 0 {
            let mut sel = Select::new();
            // Select numbers what it watches from 0: `open_ids[n]` is the
            // receiver it calls `n`.
            let open_ids: Vec<usize> = (0..receivers.len())
                .filter(|&i| next[i] != u32::MAX)
                .collect();
            for &i in &open_ids {
                sel.recv(&receivers[i]);
            }
            let ready = sel.ready_timeout(Duration::from_secs(30)).unwrap();
            let i = open_ids[ready];
            loop {
                match receivers[i].try_recv() {
                    Ok(item) => {
                        assert_eq!(item.from as usize, i);
                        assert_eq!(
                            item.seq, next[i],
                            "child {i}: lost, duplicated or reordered"
                        );
                        assert_eq!(item.sum, checksum(&item.data), "child {i}: corrupted");
                        bytes += item.data.len();
                        next[i] += 1;
                    }
                    Err(e) if e.kind() == ErrorKind::Empty => break,
                    Err(e) => {
                        assert!(
                            e.is_disconnected() || e.kind() == ErrorKind::PeerExited,
                            "{e}"
                        );
                        assert_eq!(next[i], each, "child {i} ended early");
                        next[i] = u32::MAX;
                        open -= 1;
                        break;
                    }
                }
            }
        }
        println!(
            "{} messages, {} MiB from {CHILDREN} children in {:?}",
            CHILDREN * each,
            bytes >> 20,
            started.elapsed()
        );
        for mut c in children {
            assert!(wait_deadline(&mut c, 10).success());
        }
    });
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_receiver_that_stops_reading_fills_a_bounded_buffer_then_full() {
    checked(60, || {
        for (name, (tx, rx)) in [
            ("pipe", procwire::channel::<ByteBuf>().unwrap()),
            (
                "stream",
                SocketPair::new(Kind::Stream).channel::<ByteBuf>().unwrap(),
            ),
            (
                "seqpacket",
                SocketPair::new(Kind::SeqPacket)
                    .channel::<ByteBuf>()
                    .unwrap(),
            ),
            ("shm", Shm::new().channel::<ByteBuf>().unwrap()),
        ] {
            let before = rss_kib();
            let msg = vec![7u8; 1000];
            let mut accepted = 0usize;
            let mut full = 0;
            for _ in 0..200_000 {
                match tx.try_send(ByteBuf::from(msg.clone())) {
                    Ok(()) => accepted += msg.len(),
                    Err(e) => {
                        assert!(e.is_full(), "{name}: {e}");
                        full += 1;
                    }
                }
            }
            // procwire queues nothing of its own: what was accepted is what
            // the kernel (or the ring) holds, a few MiB at most.
            assert!(full > 100_000, "{name}: never full");
            assert!(accepted < 8 << 20, "{name}: {accepted} bytes accepted");
            // A blocking send waits and times out, nothing written.
            let e = tx
                .send_timeout(ByteBuf::from(msg.clone()), Duration::from_millis(50))
                .unwrap_err();
            assert!(e.is_timeout(), "{name}: {e}");
            let grown = rss_kib().saturating_sub(before);
            assert!(grown < 16 << 10, "{name}: RSS grew {grown} KiB");
            println!("{name}: {accepted} bytes accepted, then Full; RSS +{grown} KiB");
            // Every accepted message is there, whole.
            let mut got = 0;
            while let Ok(m) = rx.try_recv() {
                assert_eq!(m.len(), 1000);
                got += m.len();
            }
            assert_eq!(got, accepted, "{name}");
        }
    });
}

/// Lowers its own descriptor limit to 64, opens channels until refused,
/// closes half, opens one more; reports what happened.
fn starved(_: (), ctl: Duplex<Starved, ()>) {
    use rustix::process::{Resource, Rlimit, setrlimit};
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(64),
            maximum: Some(64),
        },
    )
    .unwrap();
    let mut held = Vec::new();
    let error = loop {
        match SocketPair::new(Kind::Stream).duplex::<u8, u8>() {
            Ok(pair) => held.push(pair),
            Err(e) => break (format!("{:?}", e.kind()), e.to_string()),
        }
        if held.len() > 100 {
            break ("none".into(), "never refused".into());
        }
    };
    let opened = held.len();
    held.truncate(opened / 2);
    let recovered = SocketPair::new(Kind::Stream)
        .duplex::<u8, u8>()
        .map(|(a, b)| a.send(7).is_ok() && b.recv().ok() == Some(7));
    ctl.send(Starved {
        opened,
        kind: error.0,
        message: error.1,
        recovered: recovered.unwrap_or(false),
    })
    .unwrap();
}

#[derive(Debug, Serialize, Deserialize)]
struct Starved {
    opened: usize,
    kind: String,
    message: String,
    recovered: bool,
}

#[test]
fn running_out_of_descriptors_is_a_clear_error_and_procwire_recovers() {
    checked(60, || {
        let (mut child, ctl) = task(starved, ()).via(How::Server).spawn().unwrap();
        let r: Starved = ctl.recv().unwrap();
        println!("{r:?}");
        assert!(r.opened > 10 && r.opened < 40, "{r:?}");
        assert_eq!(r.kind, "Io", "{r:?}");
        assert!(r.message.contains("Too many open files"), "{r:?}");
        // Which limit, not only "too many".
        assert!(r.message.contains("RLIMIT_NOFILE of 64"), "{r:?}");
        assert!(r.recovered, "{r:?}");
        assert!(wait_deadline(&mut child, 10).success());
    });
}
