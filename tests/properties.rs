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

/// An announcement a peer might send on a message socket (wire format
/// section 3): the marker, a length, maybe a kind byte, maybe more.
fn announcement_bytes(len: u32, kind: Option<u8>, extra: &[u8]) -> Vec<u8> {
    let mut a = b"\xFFpwmemfd".to_vec();
    a.extend_from_slice(&len.to_be_bytes());
    a.extend(kind);
    a.extend_from_slice(extra);
    a
}

/// A memfd holding `content`, `size` bytes long, sealed by the bits of
/// `seals` (against shrinking, growing, writing).
fn memfd_of(content: &[u8], size: usize, seals: u8) -> std::os::fd::OwnedFd {
    use rustix::fs::{MemfdFlags, SealFlags, fcntl_add_seals, ftruncate, memfd_create};
    let fd = memfd_create("peer", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
    ftruncate(&fd, size as u64).unwrap();
    let n = content.len().min(size);
    rustix::io::pwrite(&fd, &content[..n], 0).unwrap();
    let mut flags = SealFlags::empty();
    for (bit, seal) in [SealFlags::SHRINK, SealFlags::GROW, SealFlags::WRITE]
        .into_iter()
        .enumerate()
    {
        if seals & (1 << bit) != 0 {
            flags |= seal;
        }
    }
    fcntl_add_seals(&fd, flags).unwrap();
    fd
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300 * util::stress()))]

    /// Any announcement with any memfd (or none): the receive gives the
    /// message the file holds, where the announcement and the file are
    /// well formed, or a `Decode` or `FrameTooLarge` error, never a panic
    /// or a hang; and the next message arrives.
    #[test]
    fn any_announcement_with_any_memfd_is_its_message_or_a_clear_error(
        kind in kind(),
        len in 0u32..200,
        // Mostly well formed: a spill file's kind, or none (a one-off memfd).
        announced_kind in prop_oneof![
            2 => Just(Some(1u8)),
            1 => Just(None),
            1 => any::<u8>().prop_map(Some),
        ],
        extra in prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec(any::<u8>(), 1..3)],
        // The file's size: what the announcement needs (often), or any;
        // its seals: a spill file's, a one-off memfd's, or any.
        fd in prop_oneof![
            3 => (
                prop::option::of(0usize..320),
                prop::collection::vec(any::<u8>(), 0..320),
                prop_oneof![Just(3u8), Just(7u8), 0u8..8],
            ).prop_map(Some),
            1 => Just(None),
        ],
    ) {
        let fitting = if announced_kind.is_some() { 64 } else { 0 } + len as usize;
        let fd = fd.map(|(size, content, seals)| (size.unwrap_or(fitting), content, seals));
        let kind = [Kind::SeqPacket, Kind::Datagram][kind as usize % 2];
        let (a, peer) = procwire::socket_pair(kind).unwrap();
        let rx: Receiver<ByteBuf> = Options::new()
            .codec(CodecKind::Raw)
            .max_frame(150)
            .receiver_from(a)
            .unwrap();
        let bytes = announcement_bytes(len, announced_kind, &extra);
        let file = fd.as_ref().map(|(size, content, seals)| memfd_of(content, *size, *seals));
        let fds: Vec<std::os::fd::BorrowedFd<'_>> =
            file.iter().map(std::os::fd::AsFd::as_fd).collect();
        peer.send_with_fds(&bytes, &fds).unwrap();
        let got = rx.recv_timeout(Duration::from_secs(5));
        let len = len as usize;
        match got {
            Ok(m) => {
                // Only a well-formed one is a message, and it is the file's.
                let (size, content, seals) = fd.clone().unwrap_or_default();
                let at_content = |at: usize| -> Vec<u8> {
                    let mut whole = content.clone();
                    whole.resize(size, 0);
                    whole[at..at + len].to_vec()
                };
                prop_assert!(extra.is_empty() && len <= 150, "{bytes:02X?}");
                match announced_kind {
                    None if len == 0 => prop_assert!(m.is_empty()),
                    None => {
                        prop_assert!(seals == 7 && size == len, "one-off: {size} {seals}");
                        prop_assert_eq!(&m[..], &at_content(0)[..]);
                    }
                    Some(1) => {
                        prop_assert!(seals == 3 && size >= 64 + len, "spill: {size} {seals}");
                        prop_assert_eq!(&m[..], &at_content(64)[..]);
                    }
                    Some(other) => prop_assert!(false, "kind {other} taken"),
                }
            }
            Err(e) => prop_assert!(
                matches!(e.kind(), ErrorKind::Decode | ErrorKind::FrameTooLarge),
                "{e}"
            ),
        }
        peer.send(b"next").unwrap();
        prop_assert_eq!(&rx.recv_timeout(Duration::from_secs(5)).unwrap()[..], b"next");
    }
}
