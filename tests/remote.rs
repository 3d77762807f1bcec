//! `tcp://` and `unix:` endpoints: the same channels by address,
//! authentication before any message, heartbeats, and what a hostile or
//! broken client gets.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use procwire::endpoint::auth;
use procwire::{Duplex, ErrorKind, How, Key, Net, Retry, task};
use util::{checked, wait_deadline};

procwire::init_before_main!();

fn key() -> Key {
    Key::new(b"a test key of more than sixteen bytes".to_vec()).unwrap()
}

fn keyed() -> Net {
    Net::new()
        .key(key())
        .handshake_timeout(Duration::from_secs(2))
}

/// Serves "accomplished!" replies on every channel `listener` accepts,
/// on a thread; returns when `n` channels have been served to their end.
fn serve(listener: procwire::Listener, n: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for _ in 0..n {
            let ch: Duplex<String, String> = listener.accept().unwrap();
            while let Ok(job) = ch.recv() {
                ch.send(format!("{job} accomplished!")).unwrap();
            }
        }
    })
}

#[test]
fn a_keyed_tcp_channel_carries_requests_and_replies() {
    checked(30, || {
        let listener = keyed().listen("tcp://127.0.0.1:0").unwrap();
        let addr = listener.endpoint().to_string();
        assert!(addr.starts_with("tcp://127.0.0.1:"), "{addr}");
        let server = serve(listener, 1);
        let ch: Duplex<String, String> = keyed().connect(&addr).unwrap();
        for job in ["Heavy lifting", "Feather lifting"] {
            assert_eq!(
                ch.request(job.into()).unwrap(),
                format!("{job} accomplished!")
            );
        }
        // Large messages cross too, whole.
        let big = "x".repeat(3 << 20);
        ch.send(big.clone()).unwrap();
        assert_eq!(ch.recv().unwrap(), format!("{big} accomplished!"));
        drop(ch);
        server.join().unwrap();
    });
}

#[test]
fn a_unix_endpoint_needs_no_feature_and_no_key() {
    checked(30, || {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("unix:{}", dir.path().join("ep.sock").display());
        let listener = procwire::listen(&addr).unwrap();
        assert_eq!(listener.endpoint().to_string(), addr);
        let server = serve(listener, 1);
        let ch: Duplex<String, String> = procwire::connect(&addr).unwrap();
        assert_eq!(ch.request("Pipe".into()).unwrap(), "Pipe accomplished!");
        drop(ch);
        server.join().unwrap();
    });
}

#[test]
fn rpc_works_over_tcp_unchanged() {
    checked(30, || {
        let listener = keyed().listen("tcp://127.0.0.1:0").unwrap();
        let addr = listener.endpoint().to_string();
        let server = std::thread::spawn(move || {
            let ch = listener.accept().unwrap();
            procwire::rpc::serve(ch, |x: u64| -> Result<u64, String> { Ok(x * 2) })
        });
        let client = procwire::rpc::Client::<u64, u64>::new(keyed().connect(&addr).unwrap());
        for i in 0..100 {
            assert_eq!(client.call(i).unwrap(), i * 2);
        }
        drop(client);
        server.join().unwrap().unwrap();
    });
}

#[test]
fn a_wrong_key_or_no_key_is_refused_while_a_real_client_is_served() {
    checked(30, || {
        let listener = keyed().listen("tcp://127.0.0.1:0").unwrap();
        let addr = listener.endpoint().to_string();
        let server = serve(listener, 1);
        let wrong = Net::new().key(Key::new(b"not the key, though long".to_vec()).unwrap());
        let e = wrong.connect::<String, String>(&addr).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
        let none = Net::new().no_key();
        let e = none.connect::<String, String>(&addr).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
        assert!(e.to_string().contains("requires a key"), "{e}");
        // Neither reached the application: the one accepted is the real one.
        let ch: Duplex<String, String> = keyed().connect(&addr).unwrap();
        assert_eq!(ch.request("Real".into()).unwrap(), "Real accomplished!");
        drop(ch);
        server.join().unwrap();
    });
}

/// Reads one handshake frame from a raw socket.
fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    buf
}

fn write_frame(s: &mut TcpStream, payload: &[u8]) {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    s.write_all(&f).unwrap();
}

/// Whether the server closed `s` (EOF or reset) within `secs`.
fn closed_by_server(s: &mut TcpStream, secs: u64) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn a_replayed_handshake_is_refused() {
    checked(30, || {
        let listener = keyed().listen("tcp://127.0.0.1:0").unwrap();
        let port = listener.endpoint().to_string();
        let port = port.rsplit(':').next().unwrap().to_string();
        let k = key();
        // A real handshake, recorded: the client speaks first.
        let mut first = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        let (c, hello) = auth::Client::new(Some(b"a test key of more than sixteen bytes"), 1000);
        write_frame(&mut first, &hello);
        let reply = read_frame(&mut first);
        let (_, confirm) = c.finish(&reply).unwrap();
        write_frame(&mut first, &confirm);
        let _accepted: Duplex<String, String> =
            listener.accept_timeout(Duration::from_secs(5)).unwrap();
        // The same HELLO and CONFIRM on a new connection: the server's
        // reply has a fresh ephemeral key, so the old confirm is worthless.
        let mut replay = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        write_frame(&mut replay, &hello);
        let reply2 = read_frame(&mut replay);
        assert_ne!(reply, reply2, "a fresh key per connection");
        write_frame(&mut replay, &confirm);
        assert!(
            closed_by_server(&mut replay, 5),
            "the replay was not dropped"
        );
        let e = listener
            .accept_timeout::<String, String>(Duration::from_millis(300))
            .unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::Timeout,
            "the replay reached accept: {e}"
        );
        drop(k);
    });
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_1_gib_length_prefix_before_authentication_is_dropped_without_allocating() {
    checked(30, || {
        let listener = keyed().listen("tcp://127.0.0.1:0").unwrap();
        let addr = listener.endpoint().to_string();
        let hostport = addr.trim_start_matches("tcp://").to_string();
        let before = rss_kib();
        let mut s = TcpStream::connect(&hostport).unwrap();
        s.write_all(&(1u32 << 30).to_be_bytes()).unwrap();
        let _ = s.write_all(&[0u8; 4096]);
        assert!(
            closed_by_server(&mut s, 5),
            "the 1 GiB claim was not dropped"
        );
        let grown = rss_kib().saturating_sub(before);
        assert!(grown < 8 << 10, "RSS grew by {grown} KiB");
        println!("RSS growth after a 1 GiB claim: {grown} KiB");
        // The listener still serves.
        let server = serve(listener, 1);
        let ch: Duplex<String, String> = keyed().connect(&addr).unwrap();
        assert_eq!(ch.request("After".into()).unwrap(), "After accomplished!");
        drop(ch);
        server.join().unwrap();
    });
}

#[test]
fn two_hundred_idle_connections_do_not_hold_up_a_real_client() {
    checked(60, || {
        let listener = keyed().listen("tcp://127.0.0.1:0").unwrap();
        let addr = listener.endpoint().to_string();
        let hostport = addr.trim_start_matches("tcp://").to_string();
        let mut idle: Vec<TcpStream> = (0..200)
            .map(|_| TcpStream::connect(&hostport).unwrap())
            .collect();
        let server = serve(listener, 1);
        let started = Instant::now();
        let ch: Duplex<String, String> = keyed().connect(&addr).unwrap();
        assert_eq!(ch.request("Real".into()).unwrap(), "Real accomplished!");
        println!(
            "served past 200 idle connections in {:?}",
            started.elapsed()
        );
        // Each idle one is dropped: beyond its source's share at once (the
        // real client's place came from one of them), the rest at their
        // handshake deadline (2 s).
        for s in &mut idle {
            assert!(closed_by_server(s, 10), "an idle connection was kept");
        }
        drop(ch);
        server.join().unwrap();
    });
}

#[test]
fn anything_but_loopback_is_refused_without_a_key() {
    checked(30, || {
        let none = Net::new().no_key();
        let e = none.listen("tcp://0.0.0.0:0").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
        let e = none.connect::<(), ()>("tcp://192.0.2.1:9").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
        // Loopback without a key on both sides works.
        let listener = none.listen("tcp://:0").unwrap();
        let addr = listener.endpoint().to_string();
        let server = serve(listener, 1);
        let ch: Duplex<String, String> = none.connect(&addr).unwrap();
        assert_eq!(ch.request("Local".into()).unwrap(), "Local accomplished!");
        drop(ch);
        server.join().unwrap();
    });
}

#[test]
fn a_client_retries_until_the_server_is_up() {
    checked(30, || {
        // Find a free port, then listen on it only after the client started.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("tcp://127.0.0.1:{port}");
        let later = addr.clone();
        let server = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let listener = keyed().listen(&later).unwrap();
            let ch: Duplex<String, String> = listener.accept().unwrap();
            let job = ch.recv().unwrap();
            ch.send(format!("{job} accomplished!")).unwrap();
        });
        let retrying = keyed().retry(Retry {
            attempts: 40,
            backoff: Duration::from_millis(50),
        });
        let ch: Duplex<String, String> = retrying.connect(&addr).unwrap();
        assert_eq!(ch.request("Late".into()).unwrap(), "Late accomplished!");
        server.join().unwrap();
        // Without retries, a closed port fails at once.
        let e = keyed().connect::<(), ()>(&addr).unwrap_err();
        assert_ne!(e.kind(), ErrorKind::Refused, "{e}");
    });
}

/// Connects to `addr` with a 200 ms heartbeat, says hello, then waits
/// (heartbeats flowing) until told to stop.
fn sleepy_client(addr: String, ctl: Duplex<(), ()>) {
    let opts = Net::new().key(key()).heartbeat(Duration::from_millis(200));
    let ch: Duplex<String, String> = opts.connect(&addr).unwrap();
    ch.send("hello".into()).unwrap();
    let _ = ctl.recv();
    drop(ch);
}

#[test]
fn a_frozen_peer_is_reported_within_three_heartbeats_and_half_a_second_and_an_idle_one_is_not() {
    checked(60, || {
        let opts = keyed().heartbeat(Duration::from_millis(200));
        let listener = opts.listen("tcp://127.0.0.1:0").unwrap();
        let addr = listener.endpoint().to_string();
        let (mut child, ctl) = task(sleepy_client, addr).via(How::Server).spawn().unwrap();
        let ch: Duplex<String, String> = listener.accept_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(ch.recv().unwrap(), "hello");
        // Idle but alive for 10 heartbeat intervals: nothing happens.
        let e = ch.recv_timeout(Duration::from_secs(2)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        // Frozen: reported, by recv, within three intervals (plus a check
        // period), not by a hang.
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
            rustix::process::Signal::STOP,
        )
        .unwrap();
        let frozen = Instant::now();
        let e = ch.recv().unwrap_err();
        let took = frozen.elapsed();
        assert!(e.is_disconnected(), "{e}");
        assert!(e.to_string().contains("no sign of life"), "{e}");
        println!("a frozen peer reported after {took:?} (heartbeat 200 ms)");
        // The documented bound (`procwire::endpoint`): three of the peer's
        // intervals, plus half a second of scheduling slack.
        let bound = Duration::from_millis(3 * 200 + 500);
        assert!(
            took <= bound,
            "reported after {took:?}, over the {bound:?} bound"
        );
        // A send now fails too, at once.
        assert!(ch.send("more".into()).is_err());
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
            rustix::process::Signal::CONT,
        )
        .unwrap();
        drop(ctl);
        wait_deadline(&mut child, 10);
    });
}

#[test]
fn a_remote_pool_maps_typed_tasks_on_workers_that_join_over_tcp_and_zeromq() {
    use procwire::remote::pool::{WorkerOptions, work_with};
    checked(60, || {
        for at in ["tcp://127.0.0.1:0", "zmq+tcp://127.0.0.1:0"] {
            let pool = procwire::Pool::<u64, u64>::remote(at, &keyed())
                .unwrap()
                .build()
                .unwrap();
            let endpoint = pool.endpoint().unwrap().to_string();
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let endpoint = endpoint.clone();
                    std::thread::spawn(move || {
                        let wo = WorkerOptions {
                            net: keyed(),
                            ..WorkerOptions::default()
                        };
                        work_with(&endpoint, &wo, |x: u64| {
                            if x == 13 {
                                Err("unlucky".to_string())
                            } else {
                                Ok(x * x)
                            }
                        })
                    })
                })
                .collect();
            // Lazily, as with every pool.
            let out: Vec<procwire::Result<u64>> = pool.map(0..500u64).collect();
            assert_eq!(out.len(), 500);
            for (i, r) in out.into_iter().enumerate() {
                match r {
                    Ok(v) => assert_eq!(v, (i * i) as u64),
                    Err(e) => {
                        assert_eq!(i, 13);
                        assert_eq!(e.kind(), ErrorKind::Remote);
                        assert!(e.to_string().contains("unlucky"));
                    }
                }
            }
            let stats = pool.stats();
            assert_eq!((stats.submitted, stats.failed), (500, 1), "{stats:?}");
            // Shutdown says bye: the workers return.
            pool.shutdown().unwrap();
            for w in workers {
                w.join().unwrap().unwrap();
            }
        }
    });
}

#[test]
fn a_tcp_end_cannot_travel_inside_a_message() {
    checked(30, || {
        let listener = keyed().listen("tcp://127.0.0.1:0").unwrap();
        let addr = listener.endpoint().to_string();
        let client: Duplex<String, String> = keyed().connect(&addr).unwrap();
        let _server: Duplex<String, String> =
            listener.accept_timeout(Duration::from_secs(5)).unwrap();
        // Refused at encoding: with postcard as an encoding error (its
        // errors drop the text), with JSON saying why.
        let (tx, _rx) = procwire::duplex::<Duplex<String, String>, ()>().unwrap();
        let e = tx.send(client).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Encode, "{e}");
        let client = e.into_inner();
        let (tx, _rx) = procwire::SocketPair::new(procwire::Kind::Stream)
            .codec(procwire::CodecKind::Json)
            .duplex::<Duplex<String, String>, ()>()
            .unwrap();
        let e = tx.send(client).unwrap_err();
        assert!(e.to_string().contains("cannot travel"), "{e}");
    });
}

/// A `tcp://` endpoint whose durations are past what an `Instant` can
/// hold (`Duration::MAX`: connect and handshake timeouts, the heartbeat
/// interval, the linger, an accept's timeout) connects, carries a round
/// trip and closes: the heartbeat thread, the handshake and the drop take
/// them as "for ever", never the panic of `Instant + Duration`
/// overflowing.
#[test]
fn durations_past_any_instant_are_for_ever_on_tcp() {
    checked(60, || {
        let forever = Duration::MAX;
        let net = Net::new()
            .key(key())
            .connect_timeout(forever)
            .handshake_timeout(forever)
            .heartbeat(forever)
            .linger(forever);
        let listener = net.listen("tcp://127.0.0.1:0").unwrap();
        let addr = listener.endpoint().to_string();
        let client = std::thread::spawn(move || {
            let d: Duplex<u32, u32> = net.connect(&addr).unwrap();
            d.send(20).unwrap();
            d.recv_timeout(forever).unwrap()
        });
        let d: Duplex<u32, u32> = listener.accept_timeout(forever).unwrap();
        let n = d.recv_timeout(forever).unwrap();
        d.send(n + 1).unwrap();
        assert_eq!(client.join().unwrap(), 21);
    });
}
