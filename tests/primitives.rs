//! Pipes, socket pairs, Unix sockets by path, credentials and descriptor
//! passing: the primitives below the channels.

mod util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use procwire::{Kind, Socket, UnixListener, is_cloexec, pipe, socket_pair};
use util::{checked, child_command, wait_std};

#[test]
fn every_end_is_cloexec_from_birth() {
    checked(10, || {
        let (r, w) = pipe().unwrap();
        assert!(is_cloexec(&r).unwrap() && is_cloexec(&w).unwrap());
        for kind in Kind::ALL {
            let (a, b) = socket_pair(kind).unwrap();
            assert!(
                is_cloexec(&a).unwrap() && is_cloexec(&b).unwrap(),
                "{kind:?}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let l = UnixListener::bind(&path).unwrap();
        let c = Socket::connect(&path).unwrap();
        let s = l.accept().unwrap();
        assert!(is_cloexec(&l).unwrap() && is_cloexec(&c).unwrap() && is_cloexec(&s).unwrap());
        let (tx, rx) = procwire::channel::<u8>().unwrap();
        assert!(is_cloexec(&tx).unwrap() && is_cloexec(&rx).unwrap());
    });
}

#[test]
fn the_lessons_first_pipe() {
    checked(10, || {
        let (mut reader, mut writer) = pipe().unwrap();
        writer.write_all(b"Into the pipe I go...").unwrap();
        drop(writer);
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "Into the pipe I go...");
    });
}

#[test]
fn writing_to_a_pipe_without_reader_is_an_error_not_sigpipe() {
    checked(30, || {
        // The test harness ignores SIGPIPE; a child restores the default
        // action, under which a plain write(2) would kill it.
        let mut child = child_command("child", "sigpipe").spawn().unwrap();
        let status = wait_std(&mut child, 20);
        assert!(status.success(), "child ended with {status:?}");
    });
}

#[allow(unsafe_code)]
fn sigpipe_child() {
    use std::mem::MaybeUninit;
    // SAFETY: setting a signal disposition to SIG_DFL passes no handler.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let (reader, mut writer) = pipe().unwrap();
    drop(reader);
    let e = writer.write(b"x").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    let (tx, rx) = procwire::channel::<String>().unwrap();
    drop(rx);
    assert!(tx.send("x".into()).unwrap_err().is_disconnected());
    // The signal was neither delivered nor left pending, and the disposition
    // is still the default.
    let mut pending = MaybeUninit::<libc::sigset_t>::zeroed();
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: both out-pointers are valid for writes.
    unsafe {
        assert_eq!(libc::sigpending(pending.as_mut_ptr()), 0);
        assert_eq!(libc::sigismember(pending.as_ptr(), libc::SIGPIPE), 0);
        assert_eq!(
            libc::sigaction(libc::SIGPIPE, std::ptr::null(), old.as_mut_ptr()),
            0
        );
        assert_eq!(old.assume_init().sa_sigaction, libc::SIG_DFL);
    }
}

#[test]
fn stream_pair_half_close() {
    checked(10, || {
        let (mut parent, mut child) = socket_pair(Kind::Stream).unwrap();
        parent.write_all(b"work").unwrap();
        parent.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        child.read_to_end(&mut got).unwrap(); // ends: the writer is closed
        assert_eq!(got, b"work");
        child.write_all(b"done").unwrap(); // the other direction still works
        drop(child);
        let mut reply = Vec::new();
        parent.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"done");
    });
}

#[test]
fn message_sockets_keep_boundaries_and_report_truncation() {
    checked(10, || {
        for kind in [Kind::Datagram, Kind::SeqPacket] {
            let (a, b) = socket_pair(kind).unwrap();
            a.send(b"Heavy lifting").unwrap();
            a.send(b"").unwrap();
            a.send(&[7; 100]).unwrap();
            a.send(b"after").unwrap();
            let mut buf = [0u8; 32];
            assert_eq!(b.recv(&mut buf).unwrap(), 13);
            assert_eq!(&buf[..13], b"Heavy lifting");
            assert_eq!(b.recv(&mut buf).unwrap(), 0);
            let e = b.recv(&mut buf).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{kind:?}");
            assert!(e.to_string().contains("100 bytes"), "{e}");
            assert_eq!(b.recv(&mut buf).unwrap(), 5, "the next message is intact");
            assert_eq!(&buf[..5], b"after");
        }
    });
}

#[test]
fn a_datagram_larger_than_the_socket_allows_is_refused() {
    checked(10, || {
        let (a, _b) = socket_pair(Kind::Datagram).unwrap();
        let max = a.max_message().unwrap().unwrap();
        assert!(max > 200_000, "{max}");
        a.send(&vec![0; max]).unwrap();
        let e = a.send(&vec![0; max + 1]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE));
    });
}

#[test]
fn unix_paths_longer_than_107_bytes_are_refused() {
    checked(10, || {
        let dir = tempfile::Builder::new()
            .prefix("p")
            .tempdir_in("/tmp")
            .unwrap();
        let base = dir.path().to_str().unwrap().len() + 1;
        let exact = dir.path().join("a".repeat(107 - base));
        assert_eq!(exact.as_os_str().len(), 107);
        let l = UnixListener::bind(&exact).unwrap();
        Socket::connect(&exact).unwrap();
        drop(l);
        let long = dir.path().join("a".repeat(108 - base));
        let e = UnixListener::bind(&long).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("at most 107"), "{e}");
        assert_eq!(
            Socket::connect(&long).unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
        assert!(!long.exists(), "nothing was created under a truncated name");
    });
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_live_one_is_in_use() {
    checked(10, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        // std's listener leaves its socket file behind when dropped.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let l = UnixListener::bind(&path).unwrap();
        Socket::connect(&path).unwrap();
        let e = UnixListener::bind(&path).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        // The live listener still works, and its file goes with it.
        Socket::connect(&path).unwrap();
        drop(l);
        assert!(!path.exists());
        // A path that is not a socket is never removed.
        std::fs::write(&path, b"data").unwrap();
        assert!(UnixListener::bind(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    });
}

#[test]
fn the_socket_file_is_owner_only() {
    checked(30, || {
        let dir = tempfile::Builder::new()
            .prefix("pw")
            .tempdir_in("/tmp")
            .unwrap();
        // Let other users reach the directory, so that only the socket's own
        // mode can keep them out.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("s");
        let l = UnixListener::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(connect_as_nobody(&path), "denied");
        // The control: with the mode opened up, the same child gets in, so
        // the denial above came from the mode bits.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(connect_as_nobody(&path), "connected");
        drop(l);
    });
}

fn connect_as_nobody(path: &Path) -> String {
    assert_eq!(
        rustix::process::getuid().as_raw(),
        0,
        "this test runs as root, as CI does"
    );
    let out = child_command("child", "nobody")
        .env("PROCWIRE_TEST_PATH", path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    // libtest prints "test child ... " on the same line, before ours.
    stdout
        .split("RESULT ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the child reports no result: {stdout}"))
        .to_string()
}

#[allow(unsafe_code)]
fn nobody_child() {
    let path = std::env::var("PROCWIRE_TEST_PATH").unwrap();
    // SAFETY: plain credential changes with valid arguments; this process is
    // single-purpose and exits right after.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setgid(65534), 0);
        assert_eq!(libc::setuid(65534), 0);
    }
    match Socket::connect(&path) {
        Ok(_) => println!("RESULT connected"),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => println!("RESULT denied"),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[test]
fn peer_credentials() {
    checked(10, || {
        let (a, _b) = socket_pair(Kind::Stream).unwrap();
        let cred = a.peer_cred().unwrap();
        assert_eq!(cred.pid, std::process::id());
        assert_eq!(cred.uid, rustix::process::getuid().as_raw());
        assert_eq!(cred.gid, rustix::process::getgid().as_raw());
    });
}

#[test]
fn passed_descriptors_work_and_truncated_control_data_closes_them() {
    checked(10, || {
        let (a, b) = socket_pair(Kind::SeqPacket).unwrap();
        let (r1, mut w1) = pipe().unwrap();
        let (r2, _w2) = pipe().unwrap();
        let (r3, _w3) = pipe().unwrap();
        a.send_with_fds(b"one", &[r1.as_fd()]).unwrap();
        w1.write_all(b"through the passed pipe").unwrap();
        drop(w1);
        let mut buf = [0u8; 16];
        let (n, fds) = b.recv_with_fds(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        assert_eq!(fds.len(), 1);
        let mut passed = procwire::PipeReader::from_fd(fds.into_iter().next().unwrap()).unwrap();
        let mut text = String::new();
        passed.read_to_string(&mut text).unwrap();
        assert_eq!(text, "through the passed pipe");

        // Room for one more descriptor only: the kernel installs what fits
        // and sets MSG_CTRUNC; procwire reports it and closes the one that
        // did arrive.
        a.send_with_fds(b"three", &[r1.as_fd(), r2.as_fd(), r3.as_fd()])
            .unwrap();
        let open = util::fd_count() as u64;
        let old = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let mut low = old;
        // fd numbers start at 0: the next free number is `open` (or lower),
        // so a limit of open + 2 leaves room for exactly one or two.
        low.current = Some(open + 1);
        rustix::process::setrlimit(rustix::process::Resource::Nofile, low).unwrap();
        let before = util::fd_count();
        let result = b.recv_with_fds(&mut buf);
        let after = util::fd_count();
        rustix::process::setrlimit(rustix::process::Resource::Nofile, old).unwrap();
        let e = result.unwrap_err();
        assert!(e.to_string().contains("MSG_CTRUNC"), "{e}");
        assert_eq!(before, after, "the descriptors that arrived were closed");
    });
}

/// Entry point for the child processes of this file's tests.
#[test]
#[ignore = "runs only as a child process of other tests"]
fn child() {
    match util::role().as_str() {
        "sigpipe" => sigpipe_child(),
        "nobody" => nobody_child(),
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn a_pipe_end_is_adopted_only_as_what_it_is() {
    use procwire::{PipeReader, PipeWriter};
    use std::os::fd::OwnedFd;
    checked(10, || {
        let (r, w) = pipe().unwrap();
        let (r2, w2) = (r.try_clone().unwrap(), w.try_clone().unwrap());
        // The wrong end: refused, saying why (it used to be taken, and the
        // first write or read failed later, far from the mistake).
        let e = PipeWriter::from_fd(OwnedFd::from(r2)).unwrap_err();
        assert!(e.to_string().contains("other end"), "{e}");
        let e = PipeReader::from_fd(OwnedFd::from(w2)).unwrap_err();
        assert!(e.to_string().contains("other end"), "{e}");
        let mut w = PipeWriter::from_fd(OwnedFd::from(w)).unwrap();
        let mut r = PipeReader::from_fd(OwnedFd::from(r)).unwrap();
        w.write_all(b"ok").unwrap();
        drop(w);
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "ok");
    });
}
