//! The attacks of issue 13, each run against real `tcp://` endpoints and
//! shown failing: a keyless flood while a slow honest worker joins, forged
//! answers, an on-path relay that changes a byte, a tampered handshake,
//! the key leaking to a worker's command, a loose key file, and a keyless
//! endpoint that nobody asked for.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use procwire::remote::pool::{Flow, WorkerOptions, work_with};
use procwire::{ByteBuf, Duplex, ErrorKind, Key, Net, Pool};
use util::checked;

fn key() -> Key {
    Key::new(b"the security tests' key: 32+ bytes long".to_vec()).unwrap()
}

fn keyed() -> Net {
    Net::new()
        .key(key())
        .handshake_timeout(Duration::from_secs(2))
}

fn addr_of(endpoint: &procwire::Endpoint) -> SocketAddr {
    endpoint
        .to_string()
        .trim_start_matches("tcp://")
        .parse()
        .unwrap()
}

/// What a relay does to the bytes from the client to the server.
#[derive(Clone, Copy)]
enum Meddle {
    /// Holds them back this long first (a slow link).
    Delay(Duration),
    /// Flips a bit of the byte at this offset.
    Flip(usize),
}

/// An on-path relay for one connection: listens on 127.0.0.1, connects to
/// `target`, passes bytes both ways, meddling with the client's.
struct Relay {
    addr: SocketAddr,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    fn start(target: SocketAddr, meddle: Meddle) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let main = std::thread::spawn(move || {
            let Ok((client, _)) = l.accept() else { return };
            let Ok(server) = TcpStream::connect(target) else {
                return;
            };
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let back = std::thread::spawn(move || pass(s2, c2, None));
            pass(client, server, Some(meddle));
            let _ = back.join();
        });
        Relay {
            addr,
            threads: vec![main],
        }
    }

    fn endpoint(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    fn join(self) {
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

fn pass(mut from: TcpStream, mut to: TcpStream, meddle: Option<Meddle>) {
    let mut at = 0usize;
    let mut buf = [0u8; 65536];
    let mut first = true;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match meddle {
            Some(Meddle::Delay(d)) if first => std::thread::sleep(d),
            Some(Meddle::Flip(off)) if (at..at + n).contains(&off) => buf[off - at] ^= 0x10,
            _ => {}
        }
        first = false;
        at += n;
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

#[test]
fn a_flood_of_silent_connections_does_not_keep_a_slow_honest_worker_out() {
    checked(120, || {
        let pool = Pool::<u64, u64>::remote("tcp://127.0.0.1:0", &keyed())
            .unwrap()
            .build()
            .unwrap();
        let target = addr_of(pool.endpoint().unwrap());
        // The flood: thousands of connections that never say a word, from
        // another source address, opened as fast as this process can (up
        // to half its descriptors), and kept open.
        let stop = Arc::new(AtomicBool::new(false));
        let (going, started) = std::sync::mpsc::channel();
        let flood = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let budget = 3000.min(rlimit() / 2);
                let mut held = std::collections::VecDeque::new();
                let mut opened = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    if let Some(s) = socket2_connect_from("127.0.0.2", target) {
                        opened += 1;
                        held.push_back(s);
                    }
                    if held.len() >= budget {
                        // Keep the pressure: replace the oldest.
                        held.pop_front();
                    }
                    if opened == 2000 {
                        let _ = going.send(());
                    }
                }
                opened
            })
        };
        // The honest worker comes once the flood is in full swing.
        started.recv().unwrap();
        // The honest worker's link is slow: 150 ms before its first bytes.
        let relay = Relay::start(target, Meddle::Delay(Duration::from_millis(150)));
        let at = relay.endpoint();
        let worker = std::thread::spawn(move || {
            let wo = WorkerOptions {
                net: keyed(),
                reconnect_for: Duration::from_secs(30),
                ..WorkerOptions::default()
            };
            work_with(&at, &wo, |n: u64| Ok::<_, String>(n + 1))
        });
        let got: Vec<u64> = pool.map(0..50u64).collect::<procwire::Result<_>>().unwrap();
        assert_eq!(got, (1..=50).collect::<Vec<_>>());
        stop.store(true, Ordering::SeqCst);
        let opened = flood.join().unwrap();
        assert!(
            opened >= 2000,
            "only {opened} flood connections were opened"
        );
        println!("{opened} flood connections; the slow worker finished the pool's tasks");
        pool.shutdown().unwrap();
        worker.join().unwrap().unwrap();
        relay.join();
    });
}

fn rlimit() -> usize {
    let l = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    l.current.map_or(4096, |n| n as usize)
}

/// A TCP connection to `to` from the local address `from` (any port).
fn socket2_connect_from(from: &str, to: SocketAddr) -> Option<TcpStream> {
    use rustix::net::{AddressFamily, SocketType, bind, connect, ipproto, socket};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, Some(ipproto::TCP)).ok()?;
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    bind(&fd, &local).ok()?;
    connect(&fd, &to).ok()?;
    Some(TcpStream::from(fd))
}

#[test]
fn a_worker_cannot_answer_a_task_it_does_not_hold() {
    checked(60, || {
        let pool = Pool::<u64, u64>::remote("tcp://127.0.0.1:0", &keyed())
            .unwrap()
            .build()
            .unwrap();
        let at = pool.endpoint().unwrap().to_string();
        // The forger holds the key: it takes one task, then answers a
        // hundred tasks it does not hold, "done", with its own result,
        // and leaves without answering its own.
        let forger = {
            let at = at.clone();
            std::thread::spawn(move || {
                let ch: Duplex<Flow, Flow> = keyed()
                    .codec(procwire::CodecKind::MsgPack)
                    .connect(&at)
                    .unwrap();
                ch.send(Flow::Ready { beat_ms: 1000 }).unwrap();
                let own = loop {
                    match ch.recv().unwrap() {
                        Flow::Task { id, .. } => break id,
                        _ => continue,
                    }
                };
                let forged = procwire::CodecKind::Postcard;
                let mut result = Vec::new();
                forged.encode(&999_999u64, &mut result).unwrap();
                for id in (1..=101).filter(|&id| id != own) {
                    ch.send(Flow::Done {
                        id,
                        result: ByteBuf::from(result.clone()),
                    })
                    .unwrap();
                }
                ch.flush().unwrap();
            })
        };
        // Let it connect first, so that it is given a task.
        std::thread::sleep(Duration::from_millis(300));
        let honest = std::thread::spawn(move || {
            let wo = WorkerOptions {
                net: keyed(),
                ..WorkerOptions::default()
            };
            work_with(&at, &wo, |n: u64| Ok::<_, String>(n * 2))
        });
        let got: Vec<u64> = pool
            .map(0..100u64)
            .collect::<procwire::Result<_>>()
            .unwrap();
        assert_eq!(
            got,
            (0..100).map(|n| n * 2).collect::<Vec<_>>(),
            "a forged answer got in"
        );
        forger.join().unwrap();
        let stats = pool.stats();
        assert!(stats.stray_answers >= 100, "{stats:?}");
        assert!(
            stats.lost >= 1,
            "the forger's own task was not taken back: {stats:?}"
        );
        pool.shutdown().unwrap();
        honest.join().unwrap().unwrap();
    });
}

#[test]
fn a_relay_that_changes_one_byte_ends_the_session_with_an_integrity_error() {
    checked(60, || {
        let listener = keyed().listen("tcp://127.0.0.1:0").unwrap();
        let target = addr_of(&listener.endpoint());
        // Past the handshake (three frames of about 100 bytes): a byte of
        // the data that follows.
        let relay = Relay::start(target, Meddle::Flip(400));
        let at = relay.endpoint();
        let client = std::thread::spawn(move || {
            let ch: Duplex<ByteBuf, ByteBuf> = keyed().connect(&at).unwrap();
            for _ in 0..10 {
                if ch.send(ByteBuf::from(vec![7u8; 100])).is_err() {
                    break;
                }
            }
            let _ = ch.flush();
            // Wait for the server's verdict (its close).
            let _ = ch.recv_timeout(Duration::from_secs(5));
        });
        let server: Duplex<ByteBuf, ByteBuf> =
            listener.accept_timeout(Duration::from_secs(5)).unwrap();
        let mut whole = 0;
        let e = loop {
            match server.recv() {
                Ok(m) => {
                    assert_eq!(&m[..], &[7u8; 100][..], "a changed message was delivered");
                    whole += 1;
                }
                Err(e) => break e,
            }
        };
        assert!(e.to_string().contains("integrity"), "{e}");
        assert!(whole < 10, "every message came through a changed stream");
        drop(server);
        client.join().unwrap();
        relay.join();
    });
}

#[test]
fn a_tampered_handshake_never_completes() {
    checked(60, || {
        let listener = keyed().listen("tcp://127.0.0.1:0").unwrap();
        let target = addr_of(&listener.endpoint());
        // Every byte of the client's HELLO (magic, flags, the ephemeral
        // key, the encrypted heartbeat) once.
        for off in [4, 9, 10, 30, 45, 60] {
            let relay = Relay::start(target, Meddle::Flip(off));
            let at = relay.endpoint();
            let e = keyed().connect::<(), ()>(&at).unwrap_err();
            assert_ne!(e.kind(), ErrorKind::Timeout, "byte {off}: {e}");
            let none = listener.accept_timeout::<(), ()>(Duration::from_millis(200));
            assert!(
                none.is_err(),
                "byte {off}: a tampered handshake reached accept"
            );
            relay.join();
        }
    });
}

#[test]
fn keys_are_refused_when_loose_and_keyless_must_be_asked_for() {
    checked(30, || {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, [42u8; 32]).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let run = |mode: u32, with_file: bool| {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            let mut cmd = util::child_command("child", "key");
            cmd.env_remove("PROCWIRE_KEY")
                .env_remove("PROCWIRE_KEY_FILE");
            if with_file {
                cmd.env("PROCWIRE_KEY_FILE", &file);
            }
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{out:?}");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines()
                .filter_map(|l| l.split_once("said: ").map(|(_, said)| said))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let said = run(0o644, true);
        assert!(said.contains("chmod 600"), "{said}");
        let said = run(0o600, true);
        assert!(said.contains("key of 32 bytes"), "{said}");
        // No key anywhere: tcp:// is refused unless keyless is asked for.
        let said = run(0o600, false);
        assert!(said.contains("refused: no key"), "{said}");
        assert!(said.contains("keyless on purpose: listening"), "{said}");
    });
}

/// The child side of the key test: says what the environment's key is,
/// and whether a tcp:// listener opens with it, and without one.
#[test]
#[ignore = "runs only as a child process of other tests"]
fn child() {
    assert_eq!(util::role(), "key");
    match Key::from_env() {
        Ok(Some(k)) => println!("said: key of {} bytes", k.len()),
        Ok(None) => println!("said: none"),
        Err(e) => println!("said: {e}"),
    }
    match Net::new().listen("tcp://127.0.0.1:0") {
        Ok(_) => println!("said: listening"),
        Err(e) if e.kind() == ErrorKind::Refused => println!("said: refused: {e}"),
        Err(e) => println!("said: failed: {e}"),
    }
    let l = Net::new().no_key().listen("tcp://127.0.0.1:0");
    println!(
        "said: keyless on purpose: {}",
        if l.is_ok() { "listening" } else { "failed" }
    );
}
