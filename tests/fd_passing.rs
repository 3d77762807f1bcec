//! Descriptors and channel ends inside typed messages.

mod util;

use std::io::{Read, Seek, Write};

use procwire::{CodecKind, Duplex, ErrorKind, Fd, Kind, Options, Receiver, Sender, SocketPair};
use serde::{Deserialize, Serialize};
use std::os::fd::AsFd;
use util::{FdCopy, checked, fd_count};

#[derive(Serialize, Deserialize)]
struct Parcel {
    label: String,
    file: Fd,
    back: Sender<String>,
    more: Vec<Fd>,
}

fn file_with(text: &str) -> std::fs::File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.rewind().unwrap();
    f
}

#[test]
fn files_and_channel_ends_travel_inside_messages() {
    checked(30, || {
        for codec in [CodecKind::Postcard, CodecKind::MsgPack, CodecKind::Json] {
            for kind in Kind::ALL {
                let opts = Options::new().codec(codec);
                let (a, b) = SocketPair::new(kind)
                    .options(opts.clone())
                    .duplex::<Parcel, ()>()
                    .unwrap();
                let (back_tx, back_rx) = procwire::Pipe::new()
                    .options(opts.clone())
                    .channel::<String>()
                    .unwrap();
                let parcel = Parcel {
                    label: "Heavy lifting".into(),
                    file: Fd::from(std::os::fd::OwnedFd::from(file_with("in the file"))),
                    back: back_tx,
                    more: (0..3)
                        .map(|i| Fd::from(std::os::fd::OwnedFd::from(file_with(&i.to_string()))))
                        .collect(),
                };
                a.send(parcel).unwrap();
                let got: Parcel = b.recv().unwrap();
                let mut text = String::new();
                std::fs::File::from(got.file.into_inner())
                    .read_to_string(&mut text)
                    .unwrap();
                assert_eq!(text, "in the file", "{codec} {kind:?}");
                for (i, fd) in got.more.into_iter().enumerate() {
                    let mut t = String::new();
                    std::fs::File::from(fd.into_inner())
                        .read_to_string(&mut t)
                        .unwrap();
                    assert_eq!(t, i.to_string());
                }
                got.back
                    .send(format!("{} accomplished!", got.label))
                    .unwrap();
                drop(got.back); // the last writer: the sender's copy went with the send
                assert_eq!(back_rx.recv().unwrap(), "Heavy lifting accomplished!");
                assert!(back_rx.recv().unwrap_err().is_disconnected());
            }
        }
    });
}

#[test]
fn a_duplex_sent_to_another_end_works_both_ways() {
    checked(30, || {
        let (a, b) = procwire::duplex::<Duplex<String, String>, ()>().unwrap();
        let (mine, theirs) = procwire::duplex::<String, String>().unwrap();
        a.send(theirs).unwrap();
        let theirs: Duplex<String, String> = b.recv().unwrap();
        mine.send("ping".into()).unwrap();
        assert_eq!(theirs.recv().unwrap(), "ping");
        theirs.send("pong".into()).unwrap();
        assert_eq!(mine.recv().unwrap(), "pong");
    });
}

#[test]
fn ten_thousand_cycles_leave_the_fd_count_flat() {
    checked(60, || {
        let (a, b) = procwire::duplex::<Fd, ()>().unwrap();
        let (r, _w) = procwire::pipe().unwrap();
        let r = std::os::fd::OwnedFd::from(r);
        let before = fd_count();
        for i in 0..10_000 {
            a.send(Fd::from(r.try_clone().unwrap())).unwrap();
            let got: Fd = b.recv().unwrap();
            drop(got);
            if i == 100 {
                assert_eq!(fd_count(), before, "after 100 cycles");
            }
        }
        assert_eq!(fd_count(), before);
    });
}

#[test]
fn more_than_253_descriptors_is_a_clear_error_and_leaks_nothing() {
    checked(30, || {
        let (a, b) = procwire::duplex::<Vec<Fd>, ()>().unwrap();
        let (r, _w) = procwire::pipe().unwrap();
        let r = std::os::fd::OwnedFd::from(r);
        let before = fd_count();
        let many: Vec<Fd> = (0..254).map(|_| Fd::from(r.try_clone().unwrap())).collect();
        let e = a.send(many).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{}", e.error());
        assert!(
            e.error().to_string().contains("at most 253"),
            "{}",
            e.error()
        );
        drop(e);
        assert_eq!(fd_count(), before);
        // The channel is still fine, with 253.
        let ok: Vec<Fd> = (0..253).map(|_| Fd::from(r.try_clone().unwrap())).collect();
        a.send(ok).unwrap();
        assert_eq!(b.recv().unwrap().len(), 253);
        assert_eq!(fd_count(), before);
    });
}

#[test]
fn descriptors_past_rlimit_nofile_fail_only_their_message() {
    checked(30, || {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let (a, b) = procwire::duplex::<(String, Vec<Fd>), ()>().unwrap();
        let (r, _w) = procwire::pipe().unwrap();
        let r = std::os::fd::OwnedFd::from(r);
        let fds = |n| {
            (0..n)
                .map(|_| Fd::from(r.try_clone().unwrap()))
                .collect::<Vec<_>>()
        };
        a.send(("too many".into(), fds(20))).unwrap();
        a.send(("fine".into(), fds(0))).unwrap();
        let old = getrlimit(Resource::Nofile);
        let mut low = old;
        low.current = Some(fd_count() as u64 + 5);
        setrlimit(Resource::Nofile, low).unwrap();
        let before = fd_count();
        let first = b.recv();
        let after = fd_count();
        setrlimit(Resource::Nofile, old).unwrap();
        let e = first.expect_err("the message whose descriptors were cut fails");
        assert_eq!(e.kind(), ErrorKind::Truncated, "{e}");
        assert_eq!(before, after, "what did arrive was closed");
        // The stream stayed in step.
        assert_eq!(b.recv().unwrap().0, "fine");
    });
}

#[test]
fn descriptors_cannot_go_over_a_pipe_or_be_forged() {
    checked(30, || {
        let (tx, rx): (Sender<Fd>, Receiver<Fd>) = procwire::channel().unwrap();
        let before = fd_count();
        let (r, _w) = procwire::pipe().unwrap();
        let e = tx
            .send(Fd::from(std::os::fd::OwnedFd::from(r)))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        drop(e);
        drop(_w);
        assert_eq!(fd_count(), before);
        drop(rx);
        // A message naming descriptor #0 that never came with it.
        let (a, b) = procwire::socket_pair(Kind::SeqPacket).unwrap();
        let forger = Options::new()
            .codec(CodecKind::Raw)
            .sender_from::<Vec<u8>>(a)
            .unwrap();
        let victim = Options::new().receiver_from::<Fd>(b).unwrap();
        forger.send(vec![0]).unwrap(); // postcard: newtype(u32 0)
        let e = victim.recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode);
        assert!(e.to_string().contains("did not arrive"), "{e}");
    });
}

/// Issue 11, item 2: an end put in a message whose send fails (over a pipe
/// descriptors cannot travel), or serialized by something other than a
/// procwire send, is not marked shared: its drop still shuts the socket
/// down, so the peer sees the end although a copy of the descriptor leaked.
#[test]
fn an_end_in_a_failed_send_still_ends_the_stream_when_dropped() {
    checked(30, || {
        use std::time::Duration;
        let (tx, rx) = SocketPair::new(Kind::Stream).channel::<u8>().unwrap();
        // As if a child had inherited a copy of the socket.
        let leaked = tx.as_fd_copy();
        let (pipe_tx, _pipe_rx) = procwire::channel::<Sender<u8>>().unwrap();
        let e = pipe_tx.send(tx).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        let tx = e.into_inner();
        let e = serde_json::to_string(&tx).unwrap_err();
        assert!(e.to_string().contains("procwire send"), "{e}");
        drop(tx);
        let e = rx.recv_timeout(Duration::from_secs(5)).unwrap_err();
        assert!(e.is_disconnected(), "the end never came: {e}");
        drop(leaked);
    });
}

/// Issue 11, item 21: a socket sender's descriptor passed on raw (with
/// `send_with_fds`) or re-typed from a copy keeps working after the
/// original is dropped; `into_fd` takes it out without a shutdown.
#[test]
fn a_descriptor_passed_on_by_any_route_survives_the_original_end() {
    checked(30, || {
        // Raw, in a message.
        let (tx, rx) = SocketPair::new(Kind::Stream).channel::<u32>().unwrap();
        let (carrier_tx, carrier_rx) = SocketPair::new(Kind::SeqPacket).channel::<()>().unwrap();
        carrier_tx.send_with_fds((), &[tx.as_fd()]).unwrap();
        let ((), mut fds) = carrier_rx.recv_with_fds().unwrap();
        let copy: Sender<u32> = Options::new().sender_from(fds.pop().unwrap()).unwrap();
        drop(tx);
        copy.send(1).unwrap();
        assert_eq!(rx.recv().unwrap(), 1);

        // A copy re-typed in this process.
        let (tx, rx) = SocketPair::new(Kind::SeqPacket).channel::<u32>().unwrap();
        let copy: Sender<u32> = Options::new().sender_from(tx.as_fd_copy()).unwrap();
        drop(tx);
        copy.send(2).unwrap();
        assert_eq!(rx.recv().unwrap(), 2);
        drop(copy);
        assert!(
            rx.recv().unwrap_err().is_disconnected(),
            "the last end still ends it"
        );

        // into_fd.
        let (tx, rx) = SocketPair::new(Kind::Stream).channel::<u32>().unwrap();
        let fd = tx.into_fd().unwrap();
        let again: Sender<u32> = Options::new().sender_from(fd).unwrap();
        again.send(3).unwrap();
        assert_eq!(rx.recv().unwrap(), 3);
    });
}

/// Issue 11, item 21: when it was our own socket's writing direction that
/// was shut down (by a copy), the error says so instead of "the receiver
/// is gone".
#[test]
fn a_send_on_a_socket_shut_down_by_a_copy_says_so() {
    checked(30, || {
        let (tx, rx) = SocketPair::new(Kind::Stream).channel::<u32>().unwrap();
        let copy = std::os::unix::net::UnixStream::from(tx.as_fd_copy());
        copy.shutdown(std::net::Shutdown::Write).unwrap();
        let e = tx.send(1).unwrap_err();
        assert!(e.to_string().contains("shut down for writing"), "{e}");
        assert!(e.to_string().contains("receiver may well be there"), "{e}");
        drop(rx);
    });
}

/// Issue 11, item 19: a receiver that read ahead (message 2 sits in its
/// buffer) cannot travel: the send is refused with the reason, and nothing
/// is lost. Once drained, it travels and works.
#[test]
fn a_receiver_holding_read_ahead_bytes_is_not_sent() {
    checked(30, || {
        for kind in [None, Some(Kind::Stream)] {
            let (tx, rx) = match kind {
                None => procwire::channel::<u32>().unwrap(),
                Some(k) => SocketPair::new(k).channel::<u32>().unwrap(),
            };
            tx.send(1).unwrap();
            tx.send(2).unwrap();
            assert_eq!(rx.recv().unwrap(), 1);
            let (stx, srx) = SocketPair::new(Kind::SeqPacket)
                .channel::<Receiver<u32>>()
                .unwrap();
            let e = stx.send(rx).unwrap_err();
            assert!(e.to_string().contains("read ahead"), "{e}");
            let rx = e.into_inner();
            assert_eq!(rx.recv().unwrap(), 2, "nothing was lost");
            stx.send(rx).unwrap();
            let moved = srx.recv().unwrap();
            tx.send(3).unwrap();
            assert_eq!(moved.recv().unwrap(), 3);
        }
    });
}

/// A large message with descriptors in it, of a shape the receiver may read
/// in two pieces (a byte string, or a sequence of bytes written the same
/// way, at its end): each descriptor and every byte arrive, on a stream
/// socket and over SEQPACKET (there out of line, in a memfd).
#[test]
fn large_messages_with_descriptors_arrive_whole() {
    #[derive(Serialize, Deserialize)]
    struct Big<B> {
        file: Fd,
        data: B,
    }
    fn check<B>(kind: Kind, data: B)
    where
        B: Serialize + for<'de> Deserialize<'de> + PartialEq + Clone + Send + 'static,
    {
        let (tx, rx) = SocketPair::new(kind).channel::<Big<B>>().unwrap();
        let want = data.clone();
        // Larger than a socket buffer: the send finishes as it is read.
        let sending = std::thread::spawn(move || {
            let file = Fd::from(std::os::fd::OwnedFd::from(file_with("attached")));
            tx.send(Big { file, data }).unwrap();
        });
        let got = rx.recv().unwrap();
        sending.join().unwrap();
        assert!(got.data == want, "{kind:?}: the bytes differ");
        let mut text = String::new();
        std::fs::File::from(std::os::fd::OwnedFd::from(got.file))
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "attached", "{kind:?}");
    }
    checked(60, || {
        let before = fd_count();
        for kind in [Kind::Stream, Kind::SeqPacket] {
            check(kind, vec![7u8; 1 << 20]);
            check(kind, procwire::ByteBuf::from(vec![8u8; 1 << 20]));
        }
        assert_eq!(fd_count(), before, "descriptors leaked");
    });
}
