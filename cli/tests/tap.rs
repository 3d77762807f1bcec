//! `procwire tap`: exact pass-through. 10,000 mixed messages (sizes up to
//! 1 MiB, every 50th with two descriptors) go to a child that echoes each
//! with the descriptors it got, once with the tap in the middle and once
//! without: every echo is byte-for-byte the message sent, its descriptors
//! refer to the same files (device and inode), and the tap printed one
//! line per message each way; it exits as the command does.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use procwire::ByteBuf;

const ROLE: &str = "PROCWIRE_TAP_TEST_ROLE";

/// The child: echoes every message with its descriptors until the end of
/// the stream, then exits with status 7 (or is killed, role "die").
#[test]
#[ignore = "runs only as a child process of other tests"]
fn child() {
    // Any kind of socket (a SEQPACKET one too), as the tap hands it on.
    let (socket, codec) = procwire::socket_from_env().unwrap();
    let ch: procwire::Duplex<ByteBuf, ByteBuf> = procwire::Options::new()
        .codec(codec)
        .duplex_from(socket)
        .unwrap();
    if std::env::var(ROLE).as_deref() == Ok("die") {
        let _ = ch.recv();
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM)
            .unwrap();
    }
    while let Ok((m, fds)) = ch.recv_with_fds() {
        let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
        ch.send_with_fds(m, &borrowed).unwrap();
    }
    std::process::exit(7);
}

/// This test binary as the child, with or without the tap in front.
fn command(tap: Option<&std::path::Path>, role: &str) -> procwire::Command {
    let me = std::env::current_exe().unwrap();
    let child_args = [
        "child",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ];
    let mut cmd = match tap {
        Some(out) => {
            let mut c = procwire::Command::new(env!("CARGO_BIN_EXE_procwire"));
            c.arg("tap").arg("--out").arg(out).arg("--").arg(&me);
            c
        }
        None => procwire::Command::new(&me),
    };
    cmd.args(child_args).env(ROLE, role);
    cmd
}

fn message(i: u32) -> Vec<u8> {
    let len = if i.is_multiple_of(997) {
        1 << 20
    } else {
        (i as usize * 37) % 3000
    };
    (0..len)
        .map(|k| (k as u32 ^ i).wrapping_mul(2_654_435_761) as u8)
        .collect()
}

fn identity(fd: &OwnedFd) -> (u64, u64) {
    let st = rustix::fs::fstat(fd).unwrap();
    (st.st_dev, st.st_ino)
}

/// The exchange: what came back for each message (its bytes equal to
/// what was sent, and the identities of its descriptors).
fn exchange(
    tap: Option<&std::path::Path>,
    files: &[OwnedFd; 2],
    kind: procwire::Kind,
    n: u32,
) -> Vec<Vec<(u64, u64)>> {
    let mut cmd = command(tap, "echo");
    // The parent's end of a socket pair of `kind`, handed over as a
    // procwire parent does (Command::channel makes stream sockets).
    let (ours, theirs) = procwire::socket_pair(kind).unwrap();
    let fd = cmd.inherit(theirs);
    for (k, v) in procwire::child_env(fd, procwire::CodecKind::Postcard) {
        cmd.env(k, v);
    }
    let ch: procwire::Duplex<ByteBuf, ByteBuf> =
        procwire::Options::new().duplex_from(ours).unwrap();
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut seen = Vec::new();
    for i in 0..n {
        let m = message(i);
        let with = i.is_multiple_of(50);
        let fds: Vec<_> = if with {
            files.iter().map(AsFd::as_fd).collect()
        } else {
            Vec::new()
        };
        ch.send_with_fds(ByteBuf::from(m.clone()), &fds).unwrap();
        let (back, got) = ch.recv_with_fds().unwrap();
        assert!(
            back.as_slice() == m.as_slice(),
            "message {i} came back changed"
        );
        assert_eq!(got.len(), fds.len(), "message {i}'s descriptors");
        seen.push(got.iter().map(identity).collect());
    }
    drop(ch);
    let status = child
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("the child ends");
    assert_eq!(
        status.code(),
        Some(7),
        "the command's status, through the tap too"
    );
    seen
}

#[test]
fn ten_thousand_mixed_messages_pass_the_tap_byte_for_byte_with_their_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        OwnedFd::from(std::fs::File::create(dir.path().join("a")).unwrap()),
        OwnedFd::from(std::fs::File::create(dir.path().join("b")).unwrap()),
    ];
    let want: Vec<(u64, u64)> = files.iter().map(identity).collect();
    let out = dir.path().join("tap.log");
    let started = Instant::now();
    let tapped = exchange(Some(&out), &files, procwire::Kind::Stream, 10_000);
    println!(
        "10,000 round trips through the tap in {:?}",
        started.elapsed()
    );
    let direct = exchange(None, &files, procwire::Kind::Stream, 10_000);
    assert_eq!(tapped, direct, "the same with and without the tap");
    for (i, ids) in tapped.iter().enumerate() {
        if i % 50 == 0 {
            assert_eq!(ids, &want, "message {i}: the same files");
        }
    }
    let log = std::fs::read_to_string(&out).unwrap();
    let there = log
        .lines()
        .filter(|l| l.contains("→ cmd") && l.contains(" B"))
        .count();
    let back = log
        .lines()
        .filter(|l| l.contains("← cmd") && l.contains(" B"))
        .count();
    assert_eq!(
        (there, back),
        (10_000, 10_000),
        "one line per message each way"
    );
    assert_eq!(
        log.lines().filter(|l| l.contains("+2 fds")).count(),
        400,
        "{}",
        &log[..500]
    );
    assert!(
        log.contains("exited with exit status: 7"),
        "{}",
        &log[log.len() - 300..]
    );
}

/// A command ended by a signal ends the tap with the same signal.
#[test]
fn the_tap_ends_as_its_command_does_by_a_signal_too() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(Some(&dir.path().join("tap.log")), "die");
    let ch = cmd.channel::<ByteBuf, ByteBuf>().unwrap();
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    ch.send(ByteBuf::from(b"go".to_vec())).unwrap();
    let status = child
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("the tap ends");
    assert_eq!(status.signal(), Some(15), "{status:?}");
}

/// On a SEQPACKET socket the tap relays whole datagrams, a message too
/// large for one going out of line in the sender's spill file (passed
/// through like any descriptor): 2,000 mixed messages, the same checks.
#[test]
fn a_seqpacket_channel_passes_the_tap_with_its_out_of_line_messages() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        OwnedFd::from(std::fs::File::create(dir.path().join("a")).unwrap()),
        OwnedFd::from(std::fs::File::create(dir.path().join("b")).unwrap()),
    ];
    let out = dir.path().join("tap.log");
    let tapped = exchange(Some(&out), &files, procwire::Kind::SeqPacket, 2_000);
    let direct = exchange(None, &files, procwire::Kind::SeqPacket, 2_000);
    assert_eq!(tapped, direct);
    let log = std::fs::read_to_string(&out).unwrap();
    // Messages 0, 997 and 1994 are 1 MiB: out of line, each way.
    assert_eq!(
        log.lines()
            .filter(|l| l.contains(" B out of line, in the sender's spill file +"))
            .count(),
        6,
        "{log:.400}"
    );
}

/// The proxy: one connection at unix:A relayed to unix:B, each message
/// shown as JSON (json codec), the conversation unchanged.
#[test]
fn the_proxy_relays_one_connection_between_unix_endpoints_and_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let net = procwire::Net::new().codec(procwire::CodecKind::Json);
    let server = net.listen(&format!("unix:{}", b.display())).unwrap();
    let log = dir.path().join("tap.log");
    let mut tap = std::process::Command::new(env!("CARGO_BIN_EXE_procwire"))
        .args(["tap", "--codec", "json", "--out"])
        .arg(&log)
        .arg("--listen")
        .arg(format!("unix:{}", a.display()))
        .arg("--connect")
        .arg(format!("unix:{}", b.display()))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let client: procwire::Duplex<Vec<u32>, String> = loop {
        match net.connect(&format!("unix:{}", a.display())) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("{e}"),
        }
    };
    let served: procwire::Duplex<String, Vec<u32>> =
        server.accept_timeout(Duration::from_secs(10)).unwrap();
    client.send(vec![1, 2, 3]).unwrap();
    let got = served.recv().unwrap();
    served
        .send(format!("sum {}", got.iter().sum::<u32>()))
        .unwrap();
    assert_eq!(client.recv().unwrap(), "sum 6");
    drop((client, served));
    assert!(tap.wait().unwrap().success());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("→ connect 7 B [1,2,3]"), "{log}");
    assert!(log.contains("← connect 7 B \"sum 6\""), "{log}");
}

/// Between `tcp://` endpoints the tap is a party to each encrypted
/// session (the key from its environment) and relays the messages whole.
#[test]
fn the_proxy_relays_messages_between_tcp_endpoints_holding_the_key() {
    const KEY: &str = "a key for the tap's tcp test, long enough";
    let dir = tempfile::tempdir().unwrap();
    let key = procwire::Key::new(KEY.as_bytes().to_vec()).unwrap();
    let net = procwire::Net::new()
        .key(key)
        .codec(procwire::CodecKind::MsgPack);
    let server = net.listen("tcp://127.0.0.1:0").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let front = format!("tcp://127.0.0.1:{port}");
    let log = dir.path().join("tap.log");
    let mut tap = std::process::Command::new(env!("CARGO_BIN_EXE_procwire"))
        .args(["tap", "--codec", "msgpack", "--out"])
        .arg(&log)
        .args([
            "--listen",
            &front,
            "--connect",
            &server.endpoint().to_string(),
        ])
        .env("PROCWIRE_KEY", KEY)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let client: procwire::Duplex<String, String> = loop {
        match net.connect(&front) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("{e}"),
        }
    };
    let served: procwire::Duplex<String, String> =
        server.accept_timeout(Duration::from_secs(10)).unwrap();
    client.send("Heavy lifting".into()).unwrap();
    let job = served.recv().unwrap();
    served.send(format!("{job} accomplished!")).unwrap();
    assert_eq!(client.recv().unwrap(), "Heavy lifting accomplished!");
    drop((client, served));
    assert!(tap.wait().unwrap().success());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("→ connect 14 B \"Heavy lifting\""), "{log}");
    assert!(
        log.contains("← connect 28 B \"Heavy lifting accomplished!\""),
        "{log}"
    );
}
