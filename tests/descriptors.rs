//! Channels built without descriptors (`Options::descriptors(false)`):
//! they carry every message a socket carries without them, refuse to send
//! descriptors, and never lose one a peer sends anyway unseen.

mod util;

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use procwire::{Duplex, ErrorKind, Fd, Kind, Options, SocketPair};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use util::checked;

const KINDS: [Kind; 3] = [Kind::Stream, Kind::SeqPacket, Kind::Datagram];

/// One end of a two-way channel of byte vectors.
type Bytes = Duplex<Vec<u8>, Vec<u8>>;

/// Two ends of `kind` that carry byte vectors and no descriptors.
fn bytes_pair(kind: Kind) -> (Bytes, Bytes) {
    SocketPair::new(kind).descriptors(false).duplex().unwrap()
}

fn devnull() -> OwnedFd {
    OwnedFd::from(std::fs::File::open("/dev/null").unwrap())
}

#[test]
fn a_channel_without_descriptors_carries_messages_on_every_socket_kind() {
    checked(60, || {
        for kind in KINDS {
            let (a, b) = bytes_pair(kind);
            // (Each fits the socket's buffer: one thread sends and receives.)
            for size in [0, 1, 64, 4096, 60_000] {
                let msg: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
                a.send(msg.clone()).unwrap();
                let got = b.recv().unwrap();
                assert!(got == msg, "{kind:?}, {size} bytes");
                b.send(got).unwrap();
                assert!(a.recv().unwrap() == msg, "{kind:?}, {size} bytes back");
            }
            assert_eq!(b.try_recv().unwrap_err().kind(), ErrorKind::Empty);
            assert_eq!(
                b.recv_timeout(Duration::from_millis(20))
                    .unwrap_err()
                    .kind(),
                ErrorKind::Timeout
            );
            a.send(vec![9; 100]).unwrap();
            let len = b
                .receiver()
                .recv_with(|m| m.decode::<&[u8]>().map(<[u8]>::len))
                .unwrap()
                .unwrap();
            assert_eq!(len, 100, "{kind:?}: a borrowed receive");
        }
    });
}

#[test]
fn a_large_message_travels_on_a_stream_socket_without_descriptors() {
    checked(60, || {
        let (tx, rx) = SocketPair::new(Kind::Stream)
            .descriptors(false)
            .channel::<procwire::ByteBuf>()
            .unwrap();
        let msg: Vec<u8> = (0..(3 << 20)).map(|i: usize| (i % 251) as u8).collect();
        let sending = {
            let msg = msg.clone();
            std::thread::spawn(move || tx.send(procwire::ByteBuf::from(msg)))
        };
        assert!(rx.recv().unwrap().into_vec() == msg);
        sending.join().unwrap().unwrap();
    });
}

#[test]
fn an_end_without_descriptors_refuses_to_send_one_and_goes_on() {
    checked(30, || {
        for kind in KINDS {
            let (tx, rx) = SocketPair::new(kind)
                .descriptors(false)
                .channel::<Option<Fd>>()
                .unwrap();
            let err = tx.send(Some(Fd::from(devnull()))).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unsupported, "{kind:?}: {err}");
            assert!(
                err.to_string().contains("descriptors(false)"),
                "{kind:?}: {err}"
            );
            tx.send(None).unwrap();
            assert!(rx.recv().unwrap().is_none(), "{kind:?}");
        }
    });
}

#[test]
fn a_datagram_too_large_for_one_datagram_is_refused_without_descriptors() {
    checked(30, || {
        for kind in [Kind::SeqPacket, Kind::Datagram] {
            let (tx, rx) = SocketPair::new(kind)
                .descriptors(false)
                .channel::<Vec<u8>>()
                .unwrap();
            let err = tx.send(vec![1; 300_000]).unwrap_err();
            assert!(
                err.to_string().contains("travels out of line"),
                "{kind:?}: {err}"
            );
            tx.send(vec![2; 10]).unwrap();
            assert_eq!(rx.recv().unwrap(), vec![2; 10], "{kind:?}");
        }
    });
}

/// A peer that sends descriptors anyway: with `SO_PASSRIGHTS` (Linux 6.16
/// and later) its sendmsg(2) fails with `EPERM`; on an older kernel the
/// message fails at the receiver, its descriptor closed. Either way the
/// channel goes on and nothing leaks (`checked` counts descriptors).
#[test]
fn descriptors_sent_to_an_end_without_them_are_refused_never_lost_unseen() {
    checked(30, || {
        let (a, b) = procwire::socket_pair(Kind::SeqPacket).unwrap();
        let rx = Options::new()
            .descriptors(false)
            .receiver_from::<Vec<u8>>(a)
            .unwrap();
        // A raw peer: the postcard encoding of vec![1, 2, 3], with /dev/null.
        let null = devnull();
        let fds = [null.as_fd()];
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
        let raw = rustix::net::sendmsg(
            &b,
            &[IoSlice::new(&[3, 1, 2, 3])],
            &mut control,
            SendFlags::empty(),
        );
        // A procwire peer, which allows descriptors itself.
        let tx = Options::new()
            .sender_from::<Option<Fd>>(b.try_clone().unwrap())
            .unwrap();
        let sent = tx.send(Some(Fd::from(devnull())));
        match raw {
            Err(e) => {
                assert_eq!(e, rustix::io::Errno::PERM, "the kernel's refusal");
                let err = sent.unwrap_err();
                assert!(
                    err.to_string().contains("refuses descriptors"),
                    "the procwire peer says why: {err}"
                );
            }
            Ok(_) => {
                // A kernel without SO_PASSRIGHTS: both messages arrived with
                // a descriptor, and each fails at the receiver.
                sent.unwrap();
                for _ in 0..2 {
                    let err = rx.recv().unwrap_err();
                    assert_eq!(err.kind(), ErrorKind::Truncated, "{err}");
                }
            }
        }
        // (Made before `tx` goes, whose drop would shut the socket down
        // for writing were it the last sender on it.)
        let ok = Options::new().sender_from::<Vec<u8>>(b).unwrap();
        drop(tx);
        ok.send(vec![4, 5]).unwrap();
        assert_eq!(rx.recv().unwrap(), vec![4, 5]);
    });
}

#[test]
fn awaited_ends_without_descriptors_carry_messages() {
    checked(30, || {
        for kind in KINDS {
            let (a, b) = bytes_pair(kind);
            util::runtime().block_on(async {
                let (a, b) = (a.into_async().unwrap(), b.into_async().unwrap());
                for size in [0, 64, 4096, 60_000] {
                    a.send(vec![size as u8; size]).await.unwrap();
                    assert_eq!(b.recv().await.unwrap(), vec![size as u8; size], "{kind:?}");
                }
                let err = tokio::time::timeout(Duration::from_millis(20), b.recv()).await;
                assert!(err.is_err(), "{kind:?}: nothing more came");
            });
        }
    });
}
