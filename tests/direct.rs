//! A large message's send writes its big byte slices from the caller's
//! memory (`channel/sender/direct.rs`): the same bytes on the wire as the
//! buffered path, every codec, and a value that encodes differently the
//! second time cannot tear the stream. A large message that ends in a byte
//! string is received into that string's own buffer (`codec/split.rs`):
//! the same values, at any depth, through timeouts, a borrowing receive
//! and a peer that goes away mid-frame, over byte streams, shared memory
//! and datagrams, inline and out of line.

mod util;

use std::cell::Cell;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::time::Duration;

use procwire::{ByteBuf, CodecKind, ErrorKind, Kind, Options};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use util::checked;

const BIG: usize = 300 << 10;

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The bytes of `n` frames as they arrive at a raw stream socket.
fn wire_bytes(
    send: impl FnOnce(procwire::Sender<ByteBuf>) + Send + 'static,
    codec: CodecKind,
) -> Vec<u8> {
    let (a, mut b) = procwire::socket_pair(Kind::Stream).unwrap();
    let tx = Options::new()
        .codec(codec)
        .sender_from::<ByteBuf>(a)
        .unwrap();
    let sender = std::thread::spawn(move || send(tx));
    let mut all = Vec::new();
    b.read_to_end(&mut all).unwrap();
    sender.join().unwrap();
    all
}

#[test]
fn a_direct_frame_is_byte_for_byte_the_buffered_one() {
    checked(60, || {
        for codec in CodecKind::ALL
            .iter()
            .copied()
            .filter(|c| *c != CodecKind::Json)
        {
            let msg = ByteBuf::from(pattern(3, BIG));
            let m = msg.clone();
            // The first send is buffered (nothing large came before); the
            // second takes the direct path.
            let got = wire_bytes(
                move |tx| {
                    tx.send_ref(&m).unwrap();
                    tx.send_ref(&m).unwrap();
                },
                codec,
            );
            assert_eq!(got.len() % 2, 0, "{codec:?}");
            let (first, second) = got.split_at(got.len() / 2);
            assert!(first == second, "{codec:?}: the two frames differ");
            let mut one = Vec::new();
            codec.encode(&msg, &mut one).unwrap();
            assert_eq!(&first[..4], &(one.len() as u32).to_be_bytes(), "{codec:?}");
            assert!(first[4..] == one[..], "{codec:?}: not the codec's encoding");
        }
    });
}

#[test]
fn large_messages_arrive_whole_over_pipes_and_stream_sockets_in_every_codec() {
    checked(60, || {
        for codec in CodecKind::ALL.iter().copied() {
            for pipe in [true, false] {
                let opts = Options::new().codec(codec);
                let (tx, rx) = if pipe {
                    procwire::Pipe::new()
                        .options(opts)
                        .channel::<String>()
                        .unwrap()
                } else {
                    procwire::SocketPair::new(Kind::Stream)
                        .options(opts)
                        .channel::<String>()
                        .unwrap()
                };
                let texts: Vec<String> = (0..6u8)
                    .map(|i| "x".repeat(BIG + i as usize * 1000) + &i.to_string())
                    .collect();
                let want = texts.clone();
                let reader = std::thread::spawn(move || {
                    for w in want {
                        assert_eq!(rx.recv().unwrap(), w);
                    }
                });
                for t in texts {
                    tx.send(t).unwrap();
                }
                reader.join().unwrap();
            }
        }
    });
}

/// Encodes as a large byte string, then a small one; one of them (the
/// large one if `first`) changes length by `step` bytes from one encoding
/// to the next.
struct Flaky {
    calls: Cell<usize>,
    step: isize,
    first: bool,
    /// As received: the lengths of the two byte strings.
    got: (usize, usize),
}

impl Flaky {
    fn new(step: isize, first: bool) -> Flaky {
        Flaky {
            calls: Cell::new(0),
            step,
            first,
            got: (0, 0),
        }
    }
}

impl<'de> Deserialize<'de> for Flaky {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Flaky, D::Error> {
        let (a, b) = <(ByteBuf, ByteBuf)>::deserialize(d)?;
        Ok(Flaky {
            got: (a.len(), b.len()),
            ..Flaky::new(0, false)
        })
    }
}

impl Serialize for Flaky {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let n = self.calls.get() as isize;
        self.calls.set(self.calls.get() + 1);
        let mut t = s.serialize_tuple(2)?;
        let (big, small) = if self.first {
            (BIG as isize + n * self.step, 1000)
        } else {
            (BIG as isize, 1000 + n * self.step)
        };
        t.serialize_element(&ByteBuf::from(vec![9u8; big as usize]))?;
        t.serialize_element(&ByteBuf::from(vec![1u8; small as usize]))?;
        t.end()
    }
}

#[test]
fn a_value_that_encodes_differently_twice_is_an_error_and_the_stream_stays_whole() {
    checked(60, || {
        for pipe in [true, false] {
            let (w, rx) = raw_writer::<(ByteBuf, ByteBuf)>(pipe);
            let tx = Options::new().sender_from::<Flaky>(w).unwrap();
            let reader = std::thread::spawn(move || {
                let mut got = Vec::new();
                for _ in 0..4 {
                    got.push(rx.recv_timeout(Duration::from_secs(10)));
                }
                got
            });
            // Buffered (nothing large came before): the sender goes direct.
            tx.send(Flaky::new(0, false)).unwrap();
            // Its large part longer the second time: caught before any of
            // it went, nothing sent.
            let e = tx.send(Flaky::new(5000, true)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Encode, "{e}");
            assert!(e.to_string().contains("differently"), "{e}");
            assert!(!e.to_string().contains("padded"), "{e}");
            tx.send(Flaky::new(0, false)).unwrap();
            // Its small part shorter the second time: the large part had
            // gone, so the frame is padded to its announced length.
            let e = tx.send(Flaky::new(-50, false)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Encode, "{e}");
            let text = e.to_string();
            assert!(
                text.contains("differently") && text.contains("padded"),
                "{text}"
            );
            tx.send(Flaky::new(0, false)).unwrap();
            drop(tx);
            let got = reader.join().unwrap();
            let ok = |i: usize| {
                let (a, b) = got[i].as_ref().unwrap();
                assert_eq!((a.len(), b.len()), (BIG, 1000), "message {i}");
            };
            ok(0);
            ok(1);
            let e = got[2].as_ref().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Decode, "the padded frame: {e}");
            ok(3);
        }
    });
}

/// Over a transport that writes a large message in place (a ring, a spill
/// file): a value that encodes differently the second time, longer or
/// shorter, is an `Encode` error that leaves nothing behind; the messages
/// around it arrive whole.
fn in_place_sends_publish_only_whole_messages(
    (tx, rx): (procwire::Sender<Flaky>, procwire::Receiver<Flaky>),
    what: &str,
) {
    let reader = std::thread::spawn(move || {
        (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).map(|f| f.got))
            .collect::<Vec<_>>()
    });
    // Buffered first (nothing large came before), then in place.
    tx.send(Flaky::new(0, false)).unwrap();
    tx.send(Flaky::new(0, false)).unwrap();
    for (step, first) in [(5000, true), (-50, false)] {
        let e = tx.send(Flaky::new(step, first)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Encode, "{what}: {e}");
        assert!(e.to_string().contains("differently"), "{what}: {e}");
    }
    tx.send(Flaky::new(0, false)).unwrap();
    for g in reader.join().unwrap() {
        assert_eq!(
            g.unwrap(),
            (BIG, 1000),
            "{what}: only whole messages were published"
        );
    }
}

#[test]
fn over_shared_memory_a_value_that_encodes_differently_leaves_nothing_in_the_ring() {
    checked(60, || {
        let ends = procwire::Shm::new().capacity(4 << 20).channel().unwrap();
        in_place_sends_publish_only_whole_messages(ends, "shm");
    });
}

/// A pipe or a stream socket: the raw writing end, and a receiver of `T`
/// on the other.
fn raw_writer<T: serde::de::DeserializeOwned>(
    pipe: bool,
) -> (std::fs::File, procwire::Receiver<T>) {
    let (w, r): (OwnedFd, OwnedFd) = if pipe {
        let (r, w) = procwire::pipe().unwrap();
        (w.into(), r.into())
    } else {
        let (a, b) = procwire::socket_pair(Kind::Stream).unwrap();
        (a.into(), b.into())
    };
    (w.into(), Options::new().receiver_from::<T>(r).unwrap())
}

fn frame_of<T: Serialize>(value: &T) -> Vec<u8> {
    let mut payload = Vec::new();
    CodecKind::Postcard.encode(value, &mut payload).unwrap();
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    frame
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Record {
    Note(String),
    Blob {
        id: u32,
        tags: Vec<String>,
        data: Option<ByteBuf>,
    },
}

#[test]
fn large_messages_that_end_in_a_byte_string_arrive_whole_at_any_depth() {
    checked(60, || {
        for pipe in [true, false] {
            // Around the size from which the string gets its own buffer.
            for len in [(32 << 10) - 1, 32 << 10, BIG] {
                let (w, rx) = raw_writer::<Record>(pipe);
                let records = vec![
                    Record::Blob {
                        id: 7,
                        tags: vec!["a".into(), "bc".into()],
                        data: Some(ByteBuf::from(pattern(1, len))),
                    },
                    Record::Note("n".repeat(len)),
                    Record::Blob {
                        id: u32::MAX,
                        tags: vec![],
                        data: None,
                    },
                    Record::Blob {
                        id: 0,
                        tags: vec!["x".repeat(40)],
                        data: Some(ByteBuf::from(pattern(2, len + 1))),
                    },
                ];
                let frames: Vec<u8> = records.iter().flat_map(frame_of).collect();
                let writer = std::thread::spawn(move || {
                    let mut w = w;
                    w.write_all(&frames).unwrap();
                });
                for r in &records {
                    assert!(rx.recv().unwrap() == *r, "pipe {pipe}, {len}");
                }
                writer.join().unwrap();
                assert!(rx.recv().unwrap_err().is_disconnected());
                // A sequence of bytes is written like a byte string: the
                // guess is wrong, and the value still right.
                let (mut w, rx) = raw_writer::<(u8, Vec<u8>)>(pipe);
                let v = (3u8, pattern(4, len));
                let frame = frame_of(&v);
                let writer = std::thread::spawn(move || w.write_all(&frame).unwrap());
                assert_eq!(rx.recv().unwrap(), v, "pipe {pipe}, {len}");
                writer.join().unwrap();
            }
        }
    });
}

#[test]
fn a_large_message_read_into_its_own_buffer_survives_timeouts_and_any_receive_finishes_it() {
    checked(60, || {
        for pipe in [true, false] {
            for borrow in [false, true] {
                let (mut w, rx) = raw_writer::<ByteBuf>(pipe);
                let msg = ByteBuf::from(pattern(9, 1 << 20));
                let frame = frame_of(&msg);
                let next = frame_of(&ByteBuf::from(b"next".to_vec()));
                w.write_all(&frame[..20_000]).unwrap();
                let short = Duration::from_millis(30);
                let e = rx.recv_timeout(short).unwrap_err();
                assert!(e.is_timeout(), "{e}");
                w.write_all(&frame[20_000..40_000]).unwrap();
                let e = rx.recv_timeout(short).unwrap_err();
                assert!(e.is_timeout(), "{e}");
                let rest = frame[40_000..].to_vec();
                let writer = std::thread::spawn(move || {
                    w.write_all(&rest).unwrap();
                    w.write_all(&next).unwrap();
                });
                if borrow {
                    let same = rx
                        .recv_with(|m| m.decode::<&[u8]>().map(|b| b == &msg[..]))
                        .unwrap()
                        .unwrap();
                    assert!(same, "pipe {pipe}: the borrowed bytes differ");
                } else {
                    assert!(rx.recv().unwrap() == msg, "pipe {pipe}: the bytes differ");
                }
                assert_eq!(&rx.recv().unwrap()[..], b"next");
                writer.join().unwrap();
            }
        }
    });
}

#[test]
fn a_peer_gone_in_the_middle_of_a_large_message_is_an_unexpected_end() {
    checked(60, || {
        for pipe in [true, false] {
            let frame = frame_of(&ByteBuf::from(pattern(1, 1 << 20)));
            let short = Duration::from_millis(30);
            // Mid-frame, the receiver cannot travel: the bytes it holds
            // would be lost.
            let (mut w, rx) = raw_writer::<ByteBuf>(pipe);
            w.write_all(&frame[..30_000]).unwrap();
            assert!(rx.recv_timeout(short).unwrap_err().is_timeout());
            let e = rx.into_fd().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            // The peer goes away with the rest unsent.
            let (mut w, rx) = raw_writer::<ByteBuf>(pipe);
            w.write_all(&frame[..30_000]).unwrap();
            assert!(rx.recv_timeout(short).unwrap_err().is_timeout());
            w.write_all(&frame[30_000..60_000]).unwrap();
            drop(w);
            let e = rx.recv().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "pipe {pipe}: {e}");
            let text = e.to_string();
            // 60,000 bytes went: the length prefix and 59,996 (58.6 KiB) of
            // the payload's 1,048,579 (1.0 MiB), most of them read into the
            // string's own buffer.
            assert!(
                text.contains("middle of a frame: 58.6 KiB of 1.0 MiB arrived"),
                "{text}"
            );
            assert!(rx.recv().unwrap_err().is_disconnected());
        }
    });
}

/// A channel over shared memory (`ring` bytes: a message over half of it
/// travels out of line, in the writer's spill file) or over a SEQPACKET
/// socket (`None`: over 256 KiB out of line, in a memfd).
fn message_channel<T: Serialize + serde::de::DeserializeOwned>(
    ring: Option<usize>,
) -> (procwire::Sender<T>, procwire::Receiver<T>) {
    match ring {
        Some(bytes) => procwire::Shm::new().capacity(bytes).channel::<T>(),
        None => procwire::SocketPair::new(Kind::SeqPacket).channel::<T>(),
    }
    .unwrap()
}

#[test]
fn over_shared_memory_and_datagrams_large_messages_that_end_in_a_byte_string_arrive_whole() {
    checked(60, || {
        for ring in [Some(4 << 20), Some(64 << 10), None] {
            for len in [(32 << 10) - 1, 32 << 10, BIG] {
                let (tx, rx) = message_channel::<Record>(ring);
                let records = vec![
                    Record::Blob {
                        id: 7,
                        tags: vec!["a".into()],
                        data: Some(ByteBuf::from(pattern(1, len))),
                    },
                    Record::Note("n".repeat(len)),
                    Record::Blob {
                        id: 1,
                        tags: vec![],
                        data: None,
                    },
                ];
                for r in &records {
                    tx.send_ref(r).unwrap();
                    assert!(rx.recv().unwrap() == *r, "{ring:?}, {len}");
                }
                // The guess is wrong for a sequence of bytes; the value right.
                let (tx, rx) = message_channel::<Vec<u8>>(ring);
                tx.send(pattern(5, len)).unwrap();
                assert_eq!(rx.recv().unwrap(), pattern(5, len), "{ring:?}, {len}");
                // A borrowing receive sees the message in one piece.
                let (tx, rx) = message_channel::<ByteBuf>(ring);
                tx.send(ByteBuf::from(pattern(6, len))).unwrap();
                let same = rx
                    .recv_with(|m| m.decode::<&[u8]>().map(|b| b == &pattern(6, len)[..]))
                    .unwrap()
                    .unwrap();
                assert!(same, "{ring:?}, {len}");
            }
        }
    });
}

#[test]
fn over_message_sockets_a_value_that_encodes_differently_announces_nothing() {
    checked(60, || {
        for kind in [Kind::SeqPacket, Kind::Datagram] {
            let ends = procwire::SocketPair::new(kind).channel().unwrap();
            in_place_sends_publish_only_whole_messages(ends, &format!("{kind:?}"));
        }
    });
}

/// The inode of the one spill file this process holds open (a message
/// socket sender's, which its receiver keeps mapped too), if one.
fn spill_file_inode() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut found = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        if target
            .to_string_lossy()
            .starts_with("/memfd:procwire-spill")
        {
            found.insert(std::fs::metadata(entry.path()).unwrap().ino());
        }
    }
    assert!(found.len() <= 1, "spill files open: {found:?}");
    found.pop_first()
}

#[test]
fn message_sockets_reuse_one_spill_file_and_never_overwrite_an_unread_message() {
    checked(60, || {
        let fds = util::fd_count();
        for codec in CodecKind::ALL.iter().copied() {
            for kind in [Kind::SeqPacket, Kind::Datagram] {
                let (tx, rx) = procwire::SocketPair::new(kind)
                    .options(Options::new().codec(codec))
                    .channel::<String>()
                    .unwrap();
                let text = |i: usize, len: usize| format!("{i}:{}", "x".repeat(len));
                // One at a time, read before the next: the same file,
                // written again (the first is encoded into the frame
                // buffer, the rest straight into the file).
                tx.send(text(0, 1 << 20)).unwrap();
                assert_eq!(rx.recv().unwrap(), text(0, 1 << 20));
                let file = spill_file_inode().expect("a spill file");
                for (i, len) in [300 << 10, 1 << 20, 700 << 10, 1 << 20]
                    .into_iter()
                    .enumerate()
                {
                    tx.send(text(i, len)).unwrap();
                    assert_eq!(rx.recv().unwrap(), text(i, len), "{kind:?}, {codec}");
                    assert_eq!(
                        spill_file_inode(),
                        Some(file),
                        "{kind:?}, {codec}: a new file"
                    );
                }
                // Several sent before any is read: none is written over.
                let queued: Vec<String> = (0..5).map(|i| text(i, (1 << 20) - i * 1000)).collect();
                for t in &queued {
                    tx.send(t.clone()).unwrap();
                }
                for t in &queued {
                    assert_eq!(&rx.recv().unwrap(), t, "{kind:?}, {codec}: overwritten");
                }
                // Larger than the file: a new one, and the message whole.
                tx.send(text(9, 3 << 20)).unwrap();
                assert_eq!(rx.recv().unwrap(), text(9, 3 << 20));
            }
        }
        assert_eq!(
            spill_file_inode(),
            None,
            "a spill file outlived its channel"
        );
        assert_eq!(util::fd_count(), fds);
    });
}

#[test]
fn clones_of_a_sender_share_its_spill_file_and_no_message_is_torn() {
    // Four threads, one sender end: sends take turns, each spilled message
    // written only into a file whose every message was read.
    checked(60, || {
        for kind in [Kind::SeqPacket, Kind::Datagram] {
            let (tx, rx) = procwire::SocketPair::new(kind)
                .channel::<(u32, ByteBuf)>()
                .unwrap();
            let senders: Vec<_> = (0..4u32)
                .map(|t| {
                    let tx = tx.clone();
                    std::thread::spawn(move || {
                        for i in 0..10u32 {
                            let n = t * 100 + i;
                            let len = (300 << 10) + (n as usize % 7) * 100_000;
                            tx.send((n, ByteBuf::from(pattern(n as u8, len)))).unwrap();
                        }
                    })
                })
                .collect();
            drop(tx);
            let mut seen = Vec::new();
            for _ in 0..40 {
                let (n, bytes) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
                let len = (300 << 10) + (n as usize % 7) * 100_000;
                assert!(
                    bytes[..] == pattern(n as u8, len)[..],
                    "{kind:?}: message {n} torn"
                );
                seen.push(n);
            }
            for s in senders {
                s.join().unwrap();
            }
            seen.sort_unstable();
            let want: Vec<u32> = (0..4)
                .flat_map(|t| (0..10).map(move |i| t * 100 + i))
                .collect();
            assert_eq!(seen, want, "{kind:?}");
        }
    });
}
