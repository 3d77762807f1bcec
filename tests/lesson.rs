//! The lesson "Processes Can Communicate", scenario by scenario, across real
//! processes: the test binary re-runs itself as the child.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use procwire::{
    Child, Duplex, ErrorKind, Kind, Options, PipeWriter, Socket, from_env, pipe, socket_pair,
};
use util::{checked, wait_deadline};

/// Starts this binary's child entry in `role`, connected by a stream socket.
fn spawn(role: &str) -> (Child, Duplex<String, String>) {
    util::spawn_child("child", role)
}

fn reap(mut child: Child) {
    let status = wait_deadline(&mut child, 20);
    assert!(status.success(), "child ended with {status:?}");
}

/// The kernel's name for the pipe behind `fd` ("pipe:[inode]").
fn pipe_name(fd: &impl AsFd) -> String {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())).unwrap();
    link.to_string_lossy().into_owned()
}

/// For each descriptor of this process on the pipe `name`: whether it was
/// opened for reading (from /proc/self/fdinfo).
fn ends_of(name: &str) -> Vec<bool> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let num = entry.unwrap().file_name().into_string().unwrap();
        let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{num}")) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        if target != name {
            continue;
        }
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{num}")).unwrap();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
            .unwrap();
        out.push(flags & 0o3 == 0); // O_RDONLY
    }
    out
}

#[test]
fn write_close_read_eof_arrives() {
    checked(10, || {
        let (tx, rx) = procwire::channel::<String>().unwrap();
        tx.send("Into the pipe I go...".into()).unwrap();
        drop(tx);
        let all: Vec<String> = rx.iter().map(Result::unwrap).collect();
        assert_eq!(all, ["Into the pipe I go..."]);
    });
}

#[test]
fn a_reader_waits_while_any_writer_is_open() {
    checked(30, || {
        let (reader, writer) = pipe().unwrap();
        let rx = Options::new().receiver_from::<String>(reader).unwrap();
        let (child, ctl) = spawn("hold_writer");
        ctl.send_with_fds("keep this".into(), &[writer.as_fd()])
            .unwrap();
        drop(writer); // our copy is closed; the child's is still open
        assert_eq!(ctl.recv().unwrap(), "holding");
        let e = rx.recv_timeout(Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "the deadline fires: {e}");
        ctl.send("close it".into()).unwrap();
        assert_eq!(ctl.recv().unwrap(), "closed");
        // The last writer is gone: the reader is released with end-of-stream.
        let e = rx.recv_timeout(Duration::from_secs(10)).unwrap_err();
        assert!(e.is_disconnected(), "{e}");
        drop(ctl);
        reap(child);
    });
}

#[test]
fn a_child_writes_ten_lines_into_a_shared_pipe() {
    checked(30, || {
        let (reader, writer) = pipe().unwrap();
        let (child, ctl) = spawn("ten_lines");
        ctl.send_with_fds("your end".into(), &[writer.as_fd()])
            .unwrap();
        drop(writer); // the parent's unused end
        assert_eq!(
            ends_of(&pipe_name(&reader)),
            [true],
            "the parent holds the read end only"
        );
        let lines: Vec<String> = BufReader::new(reader).lines().map(Result::unwrap).collect();
        assert_eq!(lines, vec!["Another one bites the dust"; 10]);
        drop(ctl);
        reap(child);
    });
}

#[test]
fn datagram_pair_heavy_lifting() {
    checked(30, || {
        let (child_end, parent) = socket_pair(Kind::Datagram).unwrap();
        let (child, ctl) = spawn("dgram_worker");
        ctl.send_with_fds("your end".into(), &[child_end.as_fd()])
            .unwrap();
        drop(child_end);
        for job in [
            "Heavy lifting",
            "Heavy lifting",
            "Feather lifting",
            "Feather lifting",
        ] {
            parent.send(job.as_bytes()).unwrap();
        }
        let mut replies = Vec::new();
        let mut buf = [0u8; 1000];
        for _ in 0..4 {
            let n = parent.recv(&mut buf).unwrap();
            let reply = String::from_utf8(buf[..n].to_vec()).unwrap();
            println!("{reply}");
            replies.push(reply);
        }
        assert_eq!(
            replies,
            [
                "Heavy lifting accomplished!",
                "Heavy lifting accomplished!",
                "Feather lifting accomplished!",
                "Feather lifting accomplished!"
            ]
        );
        drop(ctl);
        reap(child);
    });
}

fn typed_lifting(ch: &Duplex<String, String>) {
    for job in [
        "Heavy lifting",
        "Heavy lifting",
        "Feather lifting",
        "Feather lifting",
    ] {
        ch.send(job.into()).unwrap();
    }
    let replies: Vec<String> = (0..4).map(|_| ch.recv().unwrap()).collect();
    assert_eq!(replies[0], "Heavy lifting accomplished!");
    assert_eq!(replies[3], "Feather lifting accomplished!");
}

#[test]
fn seqpacket_pair_heavy_lifting() {
    checked(30, || {
        let (child_end, parent) = socket_pair(Kind::SeqPacket).unwrap();
        let (child, ctl) = spawn("seqpacket_worker");
        ctl.send_with_fds("your end".into(), &[child_end.as_fd()])
            .unwrap();
        drop(child_end);
        let parent = Options::new()
            .duplex_from::<String, String>(parent)
            .unwrap();
        typed_lifting(&parent);
        // Dropping our end: the child's loop ends at end-of-stream and it exits.
        drop(parent);
        drop(ctl);
        reap(child);
    });
}

#[test]
fn framed_stream_heavy_lifting() {
    checked(30, || {
        let (child, ch) = spawn("stream_worker");
        typed_lifting(&ch);
        drop(ch);
        reap(child);
    });
}

/// Answers each job on `ch` until the parent closes it.
fn lifting_worker(ch: Duplex<String, String>) {
    for job in ch.iter() {
        ch.send(format!("{} accomplished!", job.unwrap())).unwrap();
    }
}

fn child_main(role: &str) {
    let ctl = from_env::<String, String>().unwrap();
    if role == "stream_worker" {
        return lifting_worker(ctl);
    }
    let (_, fds) = ctl.recv_with_fds().unwrap();
    let fd = fds
        .into_iter()
        .next()
        .expect("a descriptor came with the message");
    match role {
        "hold_writer" => {
            let writer = PipeWriter::from_fd(fd).unwrap();
            ctl.send("holding".into()).unwrap();
            assert_eq!(ctl.recv().unwrap(), "close it");
            drop(writer);
            ctl.send("closed".into()).unwrap();
        }
        "ten_lines" => {
            // The child holds only the write end: the read end was never
            // inherited (it is close-on-exec) nor sent.
            assert_eq!(
                ends_of(&pipe_name(&fd)),
                [false],
                "the child holds the write end only"
            );
            let mut writer = PipeWriter::from_fd(fd).unwrap();
            for _ in 0..10 {
                writeln!(writer, "Another one bites the dust").unwrap();
            }
        }
        "dgram_worker" => {
            let socket = Socket::from_fd(fd).unwrap();
            let mut buf = [0u8; 1000];
            for _ in 0..4 {
                let n = socket.recv(&mut buf).unwrap();
                let job = std::str::from_utf8(&buf[..n]).unwrap();
                socket
                    .send(format!("{job} accomplished!").as_bytes())
                    .unwrap();
            }
        }
        "seqpacket_worker" => {
            lifting_worker(Options::new().duplex_from(fd).unwrap());
        }
        other => panic!("unknown role {other}"),
    }
}

/// Entry point for the child processes of this file's tests.
#[test]
#[ignore = "runs only as a child process of other tests"]
fn child() {
    child_main(&util::role());
}
