//! Property tests (proptest): frames through arbitrary chunking arrive
//! byte-identical; arbitrary interleavings of send, receive, close and drop
//! on a channel never hang, never lose or reorder a message, never leak.

mod util;

use std::io::{self, Read, Write};
use std::time::Duration;

use procwire::frame::{FrameReader, FrameWriter};
use procwire::{ByteBuf, CodecKind, ErrorKind, Kind, Options, Receiver, Sender, Shm, SocketPair};
use proptest::prelude::*;

/// Accepts at most `chunk` bytes per write: short writes.
struct Chunky {
    data: Vec<u8>,
    chunk: usize,
}

impl Write for Chunky {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = b.len().min(self.chunk);
        self.data.extend_from_slice(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Hands out at most `chunk` bytes per read, with its own rhythm.
struct Dribble<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    at: usize,
}

impl Read for Dribble<'_> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let chunk = self.sizes[self.at % self.sizes.len()].max(1);
        self.at += 1;
        let n = b.len().min(chunk).min(self.data.len());
        b[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

proptest! {
    // 300 cases, times PROCWIRE_STRESS (scripts/stress sets it). A fixed
    // `with_cases` overrides PROPTEST_CASES, so the multiplier lives here.
    #![proptest_config(ProptestConfig::with_cases(300 * util::stress()))]

    #[test]
    fn frames_survive_any_chunking(
        msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..5000), 0..24),
        write_chunk in 1usize..9000,
        read_sizes in prop::collection::vec(1usize..9000, 1..8),
    ) {
        let mut w = FrameWriter::new(Chunky { data: Vec::new(), chunk: write_chunk });
        for m in &msgs {
            w.send(m).unwrap();
        }
        let wire = w.into_inner().data;
        let mut r = FrameReader::new(Dribble { data: &wire, sizes: read_sizes, at: 0 });
        for m in &msgs {
            let got = r.recv().unwrap().expect("a frame");
            prop_assert_eq!(got, &m[..]);
        }
        prop_assert!(r.recv().unwrap().is_none(), "nothing more");
    }

    #[test]
    fn one_byte_reads_of_real_channels_keep_frames_whole(
        msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 1..16),
    ) {
        // Through a real stream socket, read back one byte at a time.
        let (a, mut b) = procwire::socket_pair(Kind::Stream).unwrap();
        let tx = Options::new().codec(CodecKind::Raw).sender_from::<ByteBuf>(a).unwrap();
        let writer = std::thread::spawn({
            let msgs = msgs.clone();
            move || {
                for m in msgs {
                    tx.send(ByteBuf::from(m)).unwrap();
                }
            }
        });
        let mut all = Vec::new();
        let mut one = [0u8; 1];
        while b.read(&mut one).unwrap() == 1 {
            all.extend_from_slice(&one);
        }
        writer.join().unwrap();
        let mut r = FrameReader::new(&all[..]);
        for m in &msgs {
            prop_assert_eq!(r.recv().unwrap().unwrap(), &m[..]);
        }
    }
}

/// One step of a channel's life.
#[derive(Clone, Debug)]
enum Op {
    Send(usize),
    TrySend(usize),
    TryRecv,
    RecvTimeout,
    DropSender,
    DropReceiver,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..70_000).prop_map(Op::Send),
        3 => (0usize..70_000).prop_map(Op::TrySend),
        4 => Just(Op::TryRecv),
        2 => Just(Op::RecvTimeout),
        1 => Just(Op::DropSender),
        1 => Just(Op::DropReceiver),
    ]
}

fn kind() -> impl Strategy<Value = u8> {
    0u8..4
}

fn pair(k: u8) -> (Sender<ByteBuf>, Receiver<ByteBuf>) {
    let o = Options::new();
    match k {
        0 => procwire::channel().unwrap(),
        1 => SocketPair::new(Kind::Stream)
            .options(o.clone())
            .channel()
            .unwrap(),
        2 => SocketPair::new(Kind::SeqPacket)
            .options(o.clone())
            .channel()
            .unwrap(),
        _ => Shm::new().options(o.clone()).channel().unwrap(),
    }
}

/// A message that says which it is: its number, then filler.
fn message(n: u32, len: usize) -> ByteBuf {
    let mut v = n.to_le_bytes().to_vec();
    v.resize(len.max(4), (n % 251) as u8);
    ByteBuf::from(v)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150 * util::stress()))]

    #[test]
    fn any_interleaving_delivers_in_order_and_ends_cleanly(
        k in kind(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let before = util::fd_count();
        let (tx, rx) = pair(k);
        let (mut tx, mut rx) = (Some(tx), Some(rx));
        // Dropping a sender finishes a frame that `try_send` left half
        // written, waiting for room: as in a real program, the drop happens
        // on a thread of its own while this one goes on reading.
        let mut dropped = None;
        // A blocking send must not wait on nobody: keep what is queued well
        // under the smallest buffer (a pipe's 64 KiB) unless a reader drains.
        let mut sent: Vec<u32> = Vec::new();
        let mut got: Vec<u32> = Vec::new();
        let mut queued = 0usize;
        let mut next = 0u32;
        for op in ops {
            match op {
                Op::Send(len) | Op::TrySend(len) => {
                    let Some(t) = &tx else { continue };
                    let blocking = matches!(op, Op::Send(_));
                    if blocking && (rx.is_none() || queued + len > 48 << 10) {
                        continue; // would wait for a reader that never comes
                    }
                    let m = message(next, len);
                    // One error type for both: what each kind of failure is.
                    let r = if blocking {
                        t.send(m).map_err(procwire::Error::from)
                    } else {
                        t.try_send(m).map_err(procwire::Error::from)
                    };
                    match r {
                        Ok(()) => {
                            sent.push(next);
                            queued += len.max(4) + 8;
                            next += 1;
                        }
                        Err(e) => prop_assert!(
                            e.kind() == ErrorKind::Full || e.is_disconnected()
                                || e.kind() == ErrorKind::FrameTooLarge,
                            "{e}"
                        ),
                    }
                }
                Op::TryRecv | Op::RecvTimeout => {
                    let Some(r) = &rx else { continue };
                    let res = if matches!(op, Op::TryRecv) {
                        r.try_recv().map_err(procwire::Error::from)
                    } else {
                        r.recv_timeout(Duration::from_millis(2)).map_err(procwire::Error::from)
                    };
                    match res {
                        Ok(m) => {
                            got.push(u32::from_le_bytes(m[..4].try_into().unwrap()));
                            queued = queued.saturating_sub(m.len() + 8);
                        }
                        Err(e) => prop_assert!(
                            matches!(e.kind(), ErrorKind::Empty | ErrorKind::Timeout | ErrorKind::Disconnected),
                            "{e}"
                        ),
                    }
                }
                Op::DropSender => {
                    if let Some(t) = tx.take() {
                        dropped = Some(std::thread::spawn(move || drop(t)));
                    }
                }
                Op::DropReceiver => rx = None,
            }
        }
        // Whatever was received is the sent sequence's start, in order.
        prop_assert_eq!(&got[..], &sent[..got.len()]);
        if let Some(t) = tx.take() {
            dropped = Some(std::thread::spawn(move || drop(t)));
        }
        if let Some(r) = rx.take() {
            // Everything sent arrives, then the end: no loss, no hang.
            loop {
                match r.recv_timeout(Duration::from_secs(10)) {
                    Ok(m) => got.push(u32::from_le_bytes(m[..4].try_into().unwrap())),
                    Err(e) => {
                        prop_assert!(e.is_disconnected(), "{e}");
                        break;
                    }
                }
            }
            prop_assert_eq!(&got, &sent);
        }
        if let Some(d) = dropped {
            d.join().unwrap();
        }
        prop_assert_eq!(util::fd_count(), before, "descriptors leaked");
    }
}

type Mixed = (ByteBuf, String, Vec<u16>, Option<ByteBuf>);

fn mixed() -> impl Strategy<Value = Mixed> {
    (
        prop::collection::vec(any::<u8>(), 0..300).prop_map(ByteBuf::from),
        ".{0,40}",
        prop::collection::vec(any::<u16>(), 0..20),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..50).prop_map(ByteBuf::from)),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300 * util::stress()))]

    /// Decoding into a value that holds anything at all gives what a
    /// fresh decode gives, with every codec that carries the type; and a
    /// payload cut short is a `Decode` error either way.
    #[test]
    fn decoding_in_place_gives_what_decoding_gives(prior in mixed(), value in mixed()) {
        for codec in [CodecKind::Postcard, CodecKind::MsgPack, CodecKind::Json] {
            let mut bytes = Vec::new();
            codec.encode(&value, &mut bytes).unwrap();
            let mut place = prior.clone();
            codec.decode_in_place(&bytes, &mut place).unwrap();
            prop_assert_eq!(&place, &value, "{}", codec);
            let fresh: Mixed = codec.decode(&bytes).unwrap();
            prop_assert_eq!(&fresh, &value, "{}", codec);
            let cut = &bytes[..bytes.len() - 1];
            let mut place = prior.clone();
            let e = codec.decode_in_place(cut, &mut place).unwrap_err();
            prop_assert_eq!(e.kind(), ErrorKind::Decode, "{}", codec);
        }
        // raw carries one byte string.
        let mut bytes = Vec::new();
        CodecKind::Raw.encode(&value.0, &mut bytes).unwrap();
        let mut place = prior.0.clone();
        CodecKind::Raw.decode_in_place(&bytes, &mut place).unwrap();
        prop_assert_eq!(&place, &value.0);
    }
}
