//! Hostile and broken peers: every bad input is a clear error, never a
//! panic, an abort, a hang or an unbounded allocation.

mod util;

use std::io::Write;
use std::time::Duration;

use procwire::{ByteBuf, CodecKind, ErrorKind, Kind, Options, Pipe, Receiver, Socket};
use serde::{Deserialize, Serialize};
use util::checked;

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * rustix::param::page_size() as u64
}

/// A receiver of `T` on one end of a stream socket pair, and the raw other end.
fn raw_peer<T: serde::de::DeserializeOwned>(codec: CodecKind) -> (Receiver<T>, Socket) {
    let (a, b) = procwire::socket_pair(Kind::Stream).unwrap();
    (Options::new().codec(codec).receiver_from(a).unwrap(), b)
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u64,
    name: String,
    data: ByteBuf,
}

#[test]
fn a_4_gib_length_prefix_is_refused_without_allocating() {
    checked(30, || {
        let (rx, mut peer) = raw_peer::<Job>(CodecKind::Postcard);
        let before = rss();
        peer.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4])
            .unwrap();
        let e = rx.recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::FrameTooLarge);
        assert!(e.to_string().contains("exceeds the 64 MiB limit"), "{e}");
        drop(peer);
        // The oversized frame is being skipped when the peer vanishes.
        assert_eq!(rx.recv().unwrap_err().kind(), ErrorKind::UnexpectedEof);
        let grown = rss().saturating_sub(before);
        println!("4 GiB prefix: resident memory grew by {grown} bytes");
        assert!(grown < 4 << 20, "memory grew by {grown} bytes");
    });
}

#[test]
fn a_lying_length_costs_only_the_bytes_that_arrive() {
    checked(30, || {
        // Raw: the payload is the bytes. Postcard: a byte string said to
        // run to the end of the frame, which the receiver reads into a
        // buffer of the string's size (reserved, not yet touched).
        for codec in [CodecKind::Raw, CodecKind::Postcard] {
            let (rx, mut peer) = raw_peer::<ByteBuf>(codec);
            let before = rss();
            // Claims 60 MiB, sends 100 KiB, then waits.
            let len = 60u32 << 20;
            peer.write_all(&len.to_be_bytes()).unwrap();
            if codec == CodecKind::Postcard {
                let mut n = len - 4;
                for _ in 0..4 {
                    let more = if n >= 0x80 { 0x80 } else { 0 };
                    peer.write_all(&[(n & 0x7f) as u8 | more]).unwrap();
                    n >>= 7;
                }
            }
            peer.write_all(&vec![9; 100 << 10]).unwrap();
            let e = rx.recv_timeout(Duration::from_millis(100)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Timeout);
            let grown = rss().saturating_sub(before);
            println!(
                "{codec}: 60 MiB claimed, 100 KiB sent: resident memory grew by {grown} bytes"
            );
            assert!(
                grown < 8 << 20,
                "{codec}: memory grew by {grown} bytes for 100 KiB of input"
            );
            drop(peer);
            assert_eq!(rx.recv().unwrap_err().kind(), ErrorKind::UnexpectedEof);
        }
    });
}

#[test]
fn a_frame_cut_off_at_every_offset_is_unexpected_eof() {
    checked(60, || {
        let mut frame = Vec::new();
        let mut w = procwire::frame::FrameWriter::new(&mut frame);
        let mut payload = Vec::new();
        CodecKind::Postcard
            .encode(
                &Job {
                    id: 7,
                    name: "cut".into(),
                    data: ByteBuf::from(vec![1; 40]),
                },
                &mut payload,
            )
            .unwrap();
        w.send(&payload).unwrap();
        for cut in 1..frame.len() {
            let (rx, mut peer) = raw_peer::<Job>(CodecKind::Postcard);
            peer.write_all(&frame[..cut]).unwrap();
            drop(peer);
            let e = rx.recv().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "cut at {cut}: {e}");
            assert!(rx.recv().unwrap_err().is_disconnected());
        }
        // And whole, it decodes.
        let (rx, mut peer) = raw_peer::<Job>(CodecKind::Postcard);
        peer.write_all(&frame).unwrap();
        assert_eq!(rx.recv().unwrap().id, 7);
    });
}

#[test]
fn random_bytes_give_errors_and_the_end_never_a_panic_or_hang() {
    checked(60, || {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for codec in CodecKind::ALL.iter().copied() {
            for round in 0..50 {
                let (rx, mut peer) = raw_peer::<Job>(codec);
                let len = 1 + (round * 97) % 3000;
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        // Keep some length prefixes small so frames form.
                        (state >> 24) as u8 & if round % 2 == 0 { 0x0f } else { 0xff }
                    })
                    .collect();
                peer.write_all(&bytes).unwrap();
                drop(peer);
                let mut items = 0;
                for item in &rx {
                    if let Err(e) = item {
                        assert!(
                            matches!(
                                e.kind(),
                                ErrorKind::Decode
                                    | ErrorKind::FrameTooLarge
                                    | ErrorKind::UnexpectedEof
                            ),
                            "{e}"
                        );
                    }
                    items += 1;
                    assert!(items <= len, "more items than bytes");
                }
            }
        }
    });
}

/// A raw-bytes channel over a socket pair of `kind` whose receiver accepts
/// at most 1000 bytes, while its sender accepts the default 64 MiB.
fn strict_receiver(kind: Kind) -> (procwire::Sender<ByteBuf>, Receiver<ByteBuf>) {
    let (a, b) = procwire::socket_pair(kind).unwrap();
    let raw = Options::new().codec(CodecKind::Raw);
    (
        raw.sender_from(a).unwrap(),
        raw.max_frame(1000).receiver_from(b).unwrap(),
    )
}

#[test]
fn a_datagram_over_the_receivers_limit_is_reported_and_skipped() {
    checked(30, || {
        let (tx, rx) = strict_receiver(Kind::SeqPacket);
        tx.send(ByteBuf::from(vec![1; 2000])).unwrap();
        tx.send(ByteBuf::from(vec![2; 1000])).unwrap();
        let e = rx.recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::FrameTooLarge);
        assert!(e.to_string().contains("discarded"), "{e}");
        assert_eq!(rx.recv().unwrap().into_vec(), vec![2; 1000]);
    });
}

#[test]
fn an_oversized_frame_is_skipped_on_a_stream_too() {
    checked(30, || {
        let (tx, rx) = strict_receiver(Kind::Stream);
        let big = std::thread::spawn(move || {
            tx.send(ByteBuf::from(vec![1; 200_000])).unwrap();
            tx.send(ByteBuf::from(b"next".to_vec())).unwrap();
        });
        let e = rx.recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::FrameTooLarge);
        assert!(e.to_string().contains("skipped"), "{e}");
        assert_eq!(rx.recv().unwrap().into_vec(), b"next");
        big.join().unwrap();
    });
}

#[test]
fn a_payload_of_the_wrong_type_is_a_decode_error_and_the_channel_goes_on() {
    checked(30, || {
        // The peer writes JSON text by hand: a string, then a number.
        let (peer, rx) = util::json_text_peer(Kind::Stream);
        peer.send(r#""not a number""#).unwrap();
        peer.send("7").unwrap();
        let e = rx.recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode);
        assert!(e.to_string().contains("json"), "{e}");
        assert_eq!(rx.recv().unwrap(), 7);
    });
}

/// postcard encodes `Nest::Node` as the varint 1 and `Nest::Leaf` as 0.
#[derive(Debug, Serialize, Deserialize)]
enum Nest {
    Leaf,
    Node(Box<Nest>),
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // Runs on the harness's own thread, whose stack is the smallest here:
    // without the limit, postcard recursion overflows it and aborts.
    let depth = 300_000;
    let mut postcard = vec![1u8; depth];
    postcard.push(0);
    let e = CodecKind::Postcard.decode::<Nest>(&postcard).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert!(e.to_string().contains("nesting deeper than 128"), "{e}");

    // msgpack: 300,000 nested one-element arrays.
    let mut msgpack = vec![0x91u8; depth];
    msgpack.push(0xc0);
    let e = CodecKind::MsgPack
        .decode::<serde_json::Value>(&msgpack)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);

    let json = "[".repeat(depth);
    let e = CodecKind::Json
        .decode::<serde_json::Value>(json.as_bytes())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);

    // Moderate nesting is fine.
    let mut ok = vec![1u8; 100];
    ok.push(0);
    CodecKind::Postcard.decode::<Nest>(&ok).unwrap();
}

#[test]
fn a_lying_collection_length_is_an_error_without_reserving_memory() {
    let before = rss();
    // postcard: a Vec<u64> claiming u32::MAX elements, with 3 bytes behind it.
    let lying = [0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3];
    let e = CodecKind::Postcard.decode::<Vec<u64>>(&lying).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    // The same for a byte buffer and a string.
    assert!(CodecKind::Postcard.decode::<ByteBuf>(&lying).is_err());
    assert!(CodecKind::Postcard.decode::<String>(&lying).is_err());
    // msgpack: array32 and bin32 headers claiming 4 billion.
    let arr = [0xdd, 0xff, 0xff, 0xff, 0xff, 1, 2];
    assert!(CodecKind::MsgPack.decode::<Vec<u64>>(&arr).is_err());
    let bin = [0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2];
    assert_eq!(
        CodecKind::MsgPack
            .decode::<ByteBuf>(&bin)
            .unwrap_err()
            .kind(),
        ErrorKind::Decode
    );
    let grown = rss().saturating_sub(before);
    println!("lying collection lengths: resident memory grew by {grown} bytes");
    assert!(grown < 16 << 20, "memory grew by {grown} bytes");
}

#[test]
fn trailing_bytes_are_a_decode_error() {
    let mut bytes = Vec::new();
    CodecKind::Postcard.encode(&5u32, &mut bytes).unwrap();
    bytes.push(0);
    assert_eq!(
        CodecKind::Postcard
            .decode::<u32>(&bytes)
            .unwrap_err()
            .kind(),
        ErrorKind::Decode
    );
    assert!(CodecKind::Json.decode::<u32>(b"5 6").is_err());
}

/// Issue 11, item 7: the length prefix 0xFFFF_FFFF is reserved on every
/// transport (a heartbeat on tcp://), so no maximum frame may reach it,
/// and a decoder with the largest maximum still refuses that prefix.
#[test]
fn the_reserved_prefix_is_never_a_payload_length() {
    checked(30, || {
        use procwire::frame::{FrameDecoder, HEARTBEAT, MAX_FRAME_LIMIT};
        assert_eq!(MAX_FRAME_LIMIT, HEARTBEAT as usize - 1);
        let e = Pipe::new()
            .max_frame(u32::MAX as usize)
            .channel::<u8>()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("reserved"), "{e}");
        let (tx, rx) = Pipe::new()
            .max_frame(MAX_FRAME_LIMIT)
            .channel::<u8>()
            .unwrap();
        tx.send(1).unwrap();
        assert_eq!(rx.recv().unwrap(), 1);

        let mut d = FrameDecoder::new(MAX_FRAME_LIMIT).unwrap();
        let spare = d.spare();
        spare[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        d.filled(4);
        let e = d.next_payload().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::FrameTooLarge, "{e}");
    });
}

/// The 12-byte announcement of an out-of-line message (wire format
/// section 3) for `len` bytes.
fn announcement(len: u32) -> Vec<u8> {
    [&b"\xFFpwmemfd"[..], &len.to_be_bytes()].concat()
}

/// A memfd holding `bytes`, sealed with `seals`.
fn memfd(bytes: &[u8], seals: rustix::fs::SealFlags) -> std::os::fd::OwnedFd {
    use rustix::fs::{MemfdFlags, fcntl_add_seals, memfd_create};
    let fd = memfd_create("test", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
    rustix::io::write(&fd, bytes).unwrap();
    fcntl_add_seals(&fd, seals).unwrap();
    fd
}

/// A raw message socket of `kind`, and a receiver of byte strings (raw
/// codec, at most 1 MiB) on its other end.
fn raw_peer_and_receiver(kind: Kind) -> (procwire::Socket, Receiver<ByteBuf>) {
    let (a, peer) = procwire::socket_pair(kind).unwrap();
    let rx = Options::new()
        .codec(CodecKind::Raw)
        .max_frame(1 << 20)
        .receiver_from(a)
        .unwrap();
    (peer, rx)
}

/// A datagram, its descriptors, what the receiver's error must say, and
/// its kind.
type BadCase<'a> = (
    Vec<u8>,
    Vec<std::os::fd::BorrowedFd<'a>>,
    &'a str,
    ErrorKind,
);

/// Sends each case from `peer`: `rx` reports it as said, and a good
/// message after it arrives.
fn each_refused(
    peer: &procwire::Socket,
    rx: &Receiver<ByteBuf>,
    cases: Vec<BadCase<'_>>,
    kind: Kind,
) {
    for (bytes, fds, says, kind_of) in cases {
        peer.send_with_fds(&bytes, &fds).unwrap();
        let e = rx.recv_timeout(Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), kind_of, "{kind:?}: {e}");
        assert!(e.to_string().contains(says), "{kind:?}: {e}");
        peer.send(b"next").unwrap();
        assert_eq!(&rx.recv().unwrap()[..], b"next");
    }
}

#[test]
fn a_bad_out_of_line_announcement_is_an_error_and_the_channel_goes_on() {
    use rustix::fs::SealFlags;
    use std::os::fd::AsFd;
    checked(30, || {
        let sealed = SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE;
        for kind in [Kind::SeqPacket, Kind::Datagram] {
            let (peer, rx) = raw_peer_and_receiver(kind);
            let file = tempfile::tempfile().unwrap();
            let unsealed = memfd(b"abcd", SealFlags::empty());
            let short = memfd(b"abc", sealed);
            let huge = memfd(b"abcd", sealed);
            let cases: Vec<BadCase<'_>> = vec![
                (
                    announcement(4),
                    vec![],
                    "without its memfd",
                    ErrorKind::Decode,
                ),
                (
                    b"\xFFpwmemfd\x00".to_vec(),
                    vec![],
                    "must be 12 bytes",
                    ErrorKind::Decode,
                ),
                (
                    announcement(4),
                    vec![file.as_fd()],
                    "not a memfd",
                    ErrorKind::Decode,
                ),
                (
                    announcement(4),
                    vec![unsealed.as_fd()],
                    "not sealed",
                    ErrorKind::Decode,
                ),
                (
                    announcement(4),
                    vec![short.as_fd()],
                    "not the 4 announced",
                    ErrorKind::Decode,
                ),
                (
                    announcement(2 << 20),
                    vec![huge.as_fd()],
                    "exceeds",
                    ErrorKind::FrameTooLarge,
                ),
            ];
            each_refused(&peer, &rx, cases, kind);
            // A well-formed announcement from a foreign peer is a message.
            let good = memfd(b"whole", sealed);
            peer.send_with_fds(&announcement(5), &[good.as_fd()])
                .unwrap();
            assert_eq!(&rx.recv().unwrap()[..], b"whole");
        }
    });
}

/// The 13-byte announcement of a message in a spill file (wire format
/// section 3, version 4) for `len` bytes.
fn spill_announcement(len: u32) -> Vec<u8> {
    [announcement(len), vec![1]].concat()
}

/// A spill file: `size` bytes, `payload` at offset 64, sealed with
/// `seals`.
fn spill_file(payload: &[u8], size: usize, seals: rustix::fs::SealFlags) -> std::os::fd::OwnedFd {
    let mut bytes = vec![0u8; size];
    bytes[64..64 + payload.len()].copy_from_slice(payload);
    memfd(&bytes, seals)
}

/// The count of messages read that a spill file holds.
fn count_read(fd: &std::os::fd::OwnedFd) -> u64 {
    let mut count = [0u8; 8];
    rustix::io::pread(fd, &mut count, 0).unwrap();
    u64::from_le_bytes(count)
}

#[test]
fn a_bad_spill_file_announcement_is_an_error_and_the_channel_goes_on() {
    use rustix::fs::SealFlags;
    use std::os::fd::AsFd;
    checked(30, || {
        let sized = SealFlags::SHRINK | SealFlags::GROW;
        for kind in [Kind::SeqPacket, Kind::Datagram] {
            let (peer, rx) = raw_peer_and_receiver(kind);
            let file = tempfile::tempfile().unwrap();
            let unsealed = spill_file(b"abcd", 68, SealFlags::empty());
            let short = spill_file(b"abc", 67, sized);
            let fine = spill_file(b"abcd", 68, sized);
            let unwritable = spill_file(b"abcd", 68, sized | SealFlags::WRITE);
            let cases: Vec<BadCase<'_>> = vec![
                (
                    spill_announcement(4),
                    vec![],
                    "without its memfd",
                    ErrorKind::Decode,
                ),
                (
                    [announcement(4), vec![2]].concat(),
                    vec![fine.as_fd()],
                    "ending in 1",
                    ErrorKind::Decode,
                ),
                (
                    spill_announcement(4),
                    vec![file.as_fd()],
                    "not a memfd",
                    ErrorKind::Decode,
                ),
                (
                    spill_announcement(4),
                    vec![unwritable.as_fd()],
                    "sealed against writing",
                    ErrorKind::Decode,
                ),
                (
                    spill_announcement(4),
                    vec![unsealed.as_fd()],
                    "not sealed against resizing",
                    ErrorKind::Decode,
                ),
                (
                    spill_announcement(4),
                    vec![short.as_fd()],
                    "fewer than the 68 announced",
                    ErrorKind::Decode,
                ),
                (
                    spill_announcement(2 << 20),
                    vec![fine.as_fd()],
                    "exceeds",
                    ErrorKind::FrameTooLarge,
                ),
            ];
            each_refused(&peer, &rx, cases, kind);
            // Refused or not, a spill file's message is counted as read,
            // so that its sender may write the file again.
            assert_eq!(count_read(&short), 1, "{kind:?}");
            // (Nothing is written into a file that is not sealed as one.)
            assert_eq!(count_read(&unsealed), 0, "{kind:?}");
            assert_eq!(count_read(&fine), 1, "{kind:?}: the one too large");
            // A well-formed one from a foreign peer is a message, counted.
            let good = spill_file(b"whole", 1000, sized);
            for n in 1..=3 {
                peer.send_with_fds(&spill_announcement(5), &[good.as_fd()])
                    .unwrap();
                assert_eq!(&rx.recv().unwrap()[..], b"whole");
                assert_eq!(count_read(&good), n, "{kind:?}");
            }
        }
    });
}

/// Wire format version 3 (section 3): the empty message travels as an
/// announcement of length 0 without a memfd, so that an empty SEQPACKET
/// datagram is the end of stream and no message needs credentials
/// (`SO_PASSCRED` stays off: it cost every message a lookup in the kernel).
#[test]
fn the_empty_message_is_an_announcement_and_an_empty_seqpacket_datagram_ends_the_stream() {
    checked(30, || {
        for kind in [Kind::SeqPacket, Kind::Datagram] {
            let (a, b) = procwire::socket_pair(kind).unwrap();
            let (x, y) = procwire::socket_pair(kind).unwrap();
            let raw = Options::new().codec(CodecKind::Raw);
            let tx = raw.sender_from::<ByteBuf>(a).unwrap();
            let rx = raw.receiver_from::<ByteBuf>(x).unwrap();
            assert!(
                !rustix::net::sockopt::socket_passcred(&y).unwrap(),
                "{kind:?}: SO_PASSCRED is on"
            );
            // What a procwire sender puts on the wire for an empty message.
            tx.send(ByteBuf::new()).unwrap();
            let mut buf = [0u8; 64];
            let (n, fds) = b.recv_with_fds(&mut buf).unwrap();
            assert_eq!(&buf[..n], &announcement(0)[..], "{kind:?}");
            assert!(fds.is_empty(), "{kind:?}: no memfd for nothing");
            // A foreign peer's announcement of 0 is the empty message, and
            // so is an empty datagram on DGRAM; on SEQPACKET an empty
            // datagram is the end.
            y.send(&announcement(0)).unwrap();
            assert!(rx.recv().unwrap().is_empty(), "{kind:?}");
            y.send(b"").unwrap();
            if kind == Kind::Datagram {
                assert!(rx.recv().unwrap().is_empty());
                y.send(b"after").unwrap();
                assert_eq!(&rx.recv().unwrap()[..], b"after");
            } else {
                let e = rx.recv().unwrap_err();
                assert!(e.is_disconnected(), "{e}");
            }
        }
    });
}

/// A receiver whose `max_frame` is shorter than an announcement (12 bytes)
/// still takes the empty message, which travels as one, and still refuses
/// a longer message: the announcement's own length is no message's. (Both
/// ends accepted the empty message's send, and the receiver refused it as
/// "frame of 12 B exceeds the 0 B limit".)
#[test]
fn an_empty_message_arrives_under_a_max_frame_shorter_than_its_announcement() {
    checked(30, || {
        for kind in [Kind::SeqPacket, Kind::Datagram] {
            for max in [0, 3] {
                let (tx, rx) = procwire::SocketPair::new(kind)
                    .codec(CodecKind::Raw)
                    .max_frame(max)
                    .channel::<ByteBuf>()
                    .unwrap();
                tx.send(ByteBuf::new()).unwrap();
                assert!(rx.recv().unwrap().is_empty(), "{kind:?}, max {max}");
                if max > 0 {
                    tx.send(ByteBuf::from(b"abc".to_vec())).unwrap();
                    assert_eq!(&rx.recv().unwrap()[..], b"abc");
                }
                // A foreign peer's 5 bytes are still too many.
                let (a, b) = procwire::socket_pair(kind).unwrap();
                let rx = Options::new()
                    .codec(CodecKind::Raw)
                    .max_frame(max)
                    .receiver_from::<ByteBuf>(b)
                    .unwrap();
                a.send(b"12345").unwrap();
                a.send(&announcement(0)).unwrap();
                let e = rx.recv().unwrap_err();
                assert_eq!(e.kind(), ErrorKind::FrameTooLarge, "{kind:?}: {e}");
                assert!(rx.recv().unwrap().is_empty(), "{kind:?}, max {max}");
            }
        }
    });
}
