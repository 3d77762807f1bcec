//! Issue 15, item 5: `tcp://` endpoints awaited — `procwire::tokio::listen`,
//! `accept` and `connect` with the handshake, key policy and heartbeats of
//! the blocking endpoints, driven by the runtime (no thread per listener
//! or connection). Each test runs under a deadline with the descriptors
//! counted before and after.

mod util;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use procwire::tokio as aio;
use procwire::{Duplex, ErrorKind, How, Key, Net, task};
use util::{checked, current_thread, runtime, wait_deadline};

procwire::init_before_main!();

fn key() -> Key {
    Key::new(b"a test key of more than sixteen bytes".to_vec()).unwrap()
}

fn keyed() -> Net {
    Net::new()
        .key(key())
        .handshake_timeout(Duration::from_secs(2))
}

/// The threads of this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Answers every request on every connection the listener gives, each
/// connection in a task of its own.
async fn serve_lesson(listener: aio::Listener) {
    loop {
        let Ok(ch) = listener.accept::<String, String>().await else {
            return;
        };
        tokio::spawn(async move {
            while let Ok(job) = ch.recv().await {
                if ch.send(format!("{job} accomplished!")).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Eight authenticated connections at once, requests and replies awaited,
/// all on one current-thread runtime (a blocking call would hang it, and
/// the deadline fail), and the process has not one thread more than before
/// the listener: no handshake thread, no heartbeat thread per connection.
#[test]
fn tcp_endpoints_are_awaited_with_no_thread_per_listener_or_connection() {
    checked(60, || {
        let rt = current_thread();
        let before = threads();
        rt.block_on(async {
            let listener = aio::listen("tcp://127.0.0.1:0", &keyed()).await.unwrap();
            let addr = listener.endpoint().to_string();
            assert!(addr.starts_with("tcp://127.0.0.1:"), "{addr}");
            let server = tokio::spawn(serve_lesson(listener));
            let mut clients = Vec::new();
            for i in 0..8 {
                let ch: aio::Duplex<String, String> = aio::connect(&addr, &keyed()).await.unwrap();
                assert_eq!(
                    ch.request(format!("Heavy lifting {i}")).await.unwrap(),
                    format!("Heavy lifting {i} accomplished!")
                );
                clients.push(ch);
            }
            for (i, ch) in clients.iter().enumerate() {
                assert_eq!(
                    ch.request(format!("again {i}")).await.unwrap(),
                    format!("again {i} accomplished!")
                );
            }
            assert_eq!(threads(), before, "a thread was started for a connection");
            drop(clients);
            server.abort();
        });
    });
}

/// The key policy and a hostile crowd, on an async listener: a wrong key
/// and no key are refused (and reach no `accept`), forty connections that
/// say nothing and one that announces a 4 GiB handshake frame hold up no
/// real client, the 4 GiB claim is closed at once (nothing allocated), and
/// the silent ones are closed when the handshake deadline passes.
#[test]
fn wrong_keys_are_refused_and_a_silent_flood_or_a_huge_prefix_holds_up_no_one() {
    checked(60, || {
        let rt = runtime();
        rt.block_on(async {
            let listener = aio::listen("tcp://127.0.0.1:0", &keyed()).await.unwrap();
            let addr = listener.endpoint().to_string();
            let port = listener.endpoint().to_string();
            let port = port.rsplit(':').next().unwrap().to_string();
            let server = tokio::spawn(serve_lesson(listener));
            let silent: Vec<_> = (0..40)
                .map(|_| std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap())
                .collect();
            let mut huge = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
            huge.write_all(&u32::MAX.to_be_bytes()).unwrap();

            let wrong = Net::new().key(Key::new(b"not the key, though long".to_vec()).unwrap());
            let e = aio::connect::<String, String>(&addr, &wrong)
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
            let e = aio::connect::<String, String>(&addr, &Net::new().no_key())
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
            assert!(e.to_string().contains("requires a key"), "{e}");

            let ch: aio::Duplex<String, String> = aio::connect(&addr, &keyed()).await.unwrap();
            assert_eq!(
                ch.request("Real".into()).await.unwrap(),
                "Real accomplished!"
            );

            let closed = |mut s: std::net::TcpStream| {
                tokio::task::spawn_blocking(move || {
                    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    let mut b = [0u8; 64];
                    loop {
                        match s.read(&mut b) {
                            Ok(0) => return true,
                            Ok(_) => continue,
                            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
                        }
                    }
                })
            };
            assert!(closed(huge).await.unwrap(), "the 4 GiB claim stays open");
            for s in silent {
                assert!(closed(s).await.unwrap(), "a silent connection stays open");
            }
            drop(ch);
            server.abort();
        });
    });
}

/// A listener's `incoming` stream on `unix:`, keyed `tcp://` and ZeroMQ:
/// the server is `for_each_concurrent` over it (each peer answered in a
/// future of its own), six clients at once are answered, and the server
/// ends after the sixth; and a stream
/// polled once with no one there, then dropped, loses no connection: the
/// client that connects next is taken by `accept`.
#[test]
fn a_listeners_incoming_stream_gives_every_peer_and_dropping_it_loses_none() {
    use futures_util::StreamExt;
    checked(60, || {
        let dir = tempfile::tempdir().unwrap();
        for (place, net) in every_kind_of_place(&dir) {
            current_thread().block_on(async {
                let listener = aio::listen(&place, &net).await.unwrap();
                let addr = listener.endpoint().to_string();

                // Left after one poll: nobody had come.
                let mut early = listener.incoming::<String, String>();
                assert!(futures_util::poll!(early.next()).is_pending(), "{place}");
                drop(early);
                // (A ZeroMQ peer is there to accept once it has said
                // something.)
                let first: aio::Duplex<String, String> = aio::connect(&addr, &net).await.unwrap();
                first.send("first".into()).await.unwrap();
                let peer = listener.accept::<String, String>().await.unwrap();
                assert_eq!(peer.recv().await.unwrap(), "first", "{place}");

                let listener = std::sync::Arc::new(listener);
                let serving = std::sync::Arc::clone(&listener);
                let server = tokio::spawn(async move {
                    serving
                        .incoming::<String, String>()
                        .take(6)
                        .for_each_concurrent(None, |ch| async move {
                            // One job each (a ZeroMQ peer's going away is
                            // never seen: no end of stream to wait for).
                            let ch = ch.unwrap();
                            let job = ch.recv().await.unwrap();
                            ch.send(format!("{job} accomplished!")).await.unwrap();
                        })
                        .await
                });
                let mut clients = Vec::new();
                for i in 0..6 {
                    let ch: aio::Duplex<String, String> = aio::connect(&addr, &net).await.unwrap();
                    ch.send(format!("job {i}")).await.unwrap();
                    clients.push(ch);
                }
                for (i, ch) in clients.iter().enumerate() {
                    assert_eq!(
                        ch.recv().await.unwrap(),
                        format!("job {i} accomplished!"),
                        "{place}"
                    );
                }
                drop(clients);
                tokio::time::timeout(Duration::from_secs(10), server)
                    .await
                    .unwrap_or_else(|_| panic!("{place}: the server did not end"))
                    .unwrap();
                drop((first, peer));
            });
        }
    });
}

/// A place to listen at of each kind (`unix:`, keyed `tcp://`,
/// `zmq+tcp://`), with the settings to listen and connect there.
fn every_kind_of_place(dir: &tempfile::TempDir) -> [(String, Net); 3] {
    [
        (
            format!("unix:{}", dir.path().join("s").display()),
            Net::new(),
        ),
        ("tcp://127.0.0.1:0".to_string(), keyed()),
        ("zmq+tcp://127.0.0.1:0".to_string(), Net::new()),
    ]
}

/// Connects to `addr` with a 200 ms heartbeat, says hello, answers one
/// request, then waits (heartbeats flowing) until told to stop.
fn sleepy_client(addr: String, ctl: Duplex<(), ()>) {
    let opts = Net::new().key(key()).heartbeat(Duration::from_millis(200));
    let ch: Duplex<String, String> = opts.connect(&addr).unwrap();
    ch.send("hello".into()).unwrap();
    if let Ok(job) = ch.recv() {
        let _ = ch.send(format!("{job} accomplished!"));
    }
    let _ = ctl.recv();
    drop(ch);
}

/// Heartbeats both ways on an async connection: idle for ten of the
/// peer's intervals, nothing happens (our heartbeat task keeps the peer,
/// which checks on us, content: it still answers after); frozen, the peer
/// is reported by the pending `recv().await` within the documented bound
/// of three intervals plus half a second, and a send fails at once.
#[test]
fn a_frozen_peer_is_reported_within_three_heartbeats_and_half_a_second_and_an_idle_one_is_not() {
    checked(60, || {
        let rt = runtime();
        let addr_and_listener = rt.block_on(async {
            let net = keyed().heartbeat(Duration::from_millis(200));
            let listener = aio::listen("tcp://127.0.0.1:0", &net).await.unwrap();
            (listener.endpoint().to_string(), listener)
        });
        let (addr, listener) = addr_and_listener;
        let (mut child, ctl) = task(sleepy_client, addr).via(How::Server).spawn().unwrap();
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rt.block_on(async {
            let ch: aio::Duplex<String, String> = listener.accept().await.unwrap();
            assert_eq!(ch.recv().await.unwrap(), "hello");
            let idle = tokio::time::timeout(Duration::from_secs(2), ch.recv()).await;
            assert!(idle.is_err(), "an idle peer ended the wait: {idle:?}");
            assert_eq!(
                ch.request("Still there".into()).await.unwrap(),
                "Still there accomplished!"
            );
            rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
            let frozen = Instant::now();
            let e = ch.recv().await.unwrap_err();
            let took = frozen.elapsed();
            assert!(e.is_disconnected(), "{e}");
            assert!(e.to_string().contains("no sign of life"), "{e}");
            println!("a frozen peer reported after {took:?} (heartbeat 200 ms)");
            let bound = Duration::from_millis(3 * 200 + 500);
            assert!(
                took <= bound,
                "reported after {took:?}, over the {bound:?} bound"
            );
            assert!(ch.send("more".into()).await.is_err());
        });
        rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
        drop(ctl);
        drop(listener);
        wait_deadline(&mut child, 10);
    });
}

/// A blocking `tcp://` listener turns async and back: the connection it
/// authenticated before the change is accepted after it (nothing lost in
/// the handover from thread to task), and so is one made after the change
/// back.
#[test]
fn a_tcp_listener_turns_async_and_back_losing_no_connection() {
    checked(60, || {
        let listener = keyed().listen("tcp://127.0.0.1:0").unwrap();
        let addr = listener.endpoint().to_string();
        let early: Duplex<String, String> = keyed().connect(&addr).unwrap();
        let rt = runtime();
        let listener = rt.block_on(async {
            let listener = listener.into_async().unwrap();
            let ch: aio::Duplex<String, String> = listener.accept().await.unwrap();
            early.send("early".into()).unwrap();
            assert_eq!(ch.recv().await.unwrap(), "early");
            listener.into_blocking().unwrap()
        });
        let late = std::thread::spawn({
            let addr = addr.clone();
            move || -> procwire::Result<String> {
                keyed()
                    .connect::<String, String>(&addr)?
                    .request("late".into())
            }
        });
        let ch: Duplex<String, String> = listener.accept_timeout(Duration::from_secs(10)).unwrap();
        let job = ch.recv().unwrap();
        ch.send(format!("{job} accomplished!")).unwrap();
        assert_eq!(late.join().unwrap().unwrap(), "late accomplished!");
        drop(early);
    });
}

/// Dropping an async `tcp://` end whose peer stopped reading (the windows
/// full, what we sent unacknowledged, most likely a frame half-written by
/// the send the timer cut short) lingers as the blocking drop does, but in
/// the blocking pool: the current-thread runtime that dropped it goes on
/// at once. With either linger (the half-written frame's, the close's) on
/// the runtime thread it would hang here for the 60 s linger, past the
/// deadline.
#[test]
fn dropping_an_async_tcp_end_the_peer_does_not_read_does_not_block_the_runtime() {
    checked(40, || {
        let net = keyed().linger(Duration::from_secs(60));
        let blocking = net.listen("tcp://127.0.0.1:0").unwrap();
        let addr = blocking.endpoint().to_string();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let peer = std::thread::spawn(move || {
            let ch: Duplex<(), procwire::ByteBuf> = keyed().connect(&addr).unwrap();
            let _ = released.recv();
            drop(ch);
        });
        let rt = current_thread();
        rt.block_on(async {
            let listener = blocking.into_async().unwrap();
            let ch: aio::Duplex<procwire::ByteBuf, ()> = listener.accept().await.unwrap();
            let chunk = procwire::ByteBuf::from(vec![7u8; 4096]);
            loop {
                let sent =
                    tokio::time::timeout(Duration::from_millis(300), ch.send_ref(&chunk)).await;
                if sent.is_err() {
                    break; // full: the peer reads nothing
                }
            }
            drop(ch);
            // The runtime still runs: a timer fires.
            tokio::time::sleep(Duration::from_millis(10)).await;
        });
        release.send(()).unwrap();
        peer.join().unwrap();
        drop(rt);
    });
}

/// A `Command`'s channel made awaitable before the spawn is supervised
/// once the child starts: the child exits while a grandchild holds its end
/// of the channel open (so no end of stream comes), and the pending
/// `recv().await` ends with the child's exit status, not after the
/// grandchild's 30 s (past the deadline).
#[test]
fn a_commands_async_channel_is_supervised_from_the_spawn() {
    checked(20, || {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        let rt = runtime();
        rt.block_on(async {
            let mut cmd = procwire::Command::new("sh");
            cmd.arg("-c").arg(format!(
                "sleep 30 & echo $! > {}; exit 3",
                pidfile.display()
            ));
            let ch = cmd.channel_async::<String, String>().unwrap();
            let mut child = cmd.spawn().unwrap();
            let e = ch.recv().await.unwrap_err();
            let status = e
                .exit_status()
                .unwrap_or_else(|| panic!("no exit status in: {e}"));
            assert_eq!(status.code(), Some(3), "{e}");
            assert_eq!(child.wait_async().await.unwrap().code(), Some(3));
        });
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(grandchild).unwrap(),
            rustix::process::Signal::KILL,
        );
    });
}

/// `task(..).spawn_async()` gives the child and an awaitable channel.
#[test]
fn a_task_spawns_with_an_async_channel() {
    checked(30, || {
        let rt = runtime();
        rt.block_on(async {
            let (mut child, ch) = task(lesson_worker, ()).spawn_async().unwrap();
            assert_eq!(
                ch.request("Heavy lifting".into()).await.unwrap(),
                "Heavy lifting accomplished!"
            );
            drop(ch);
            assert!(child.wait_async().await.unwrap().success());
        });
    });
}

fn lesson_worker((): (), ch: Duplex<String, String>) {
    for job in ch.iter() {
        ch.send(format!("{} accomplished!", job.unwrap())).unwrap();
    }
}

/// A supervised child that exits (closing its end as it goes): the
/// pending `recv().await` ends with its exit status, which the runtime's
/// reactor waited for (the receive step itself does not wait: a
/// current-thread runtime runs other tasks meanwhile).
#[test]
fn an_async_end_of_stream_carries_the_childs_exit_status() {
    checked(20, || {
        current_thread().block_on(async {
            let mut cmd = procwire::Command::new("sh");
            cmd.args(["-c", "sleep 0.2; exit 5"]);
            let ch = cmd.channel_async::<String, String>().unwrap();
            let mut child = cmd.spawn().unwrap();
            let ticking = tokio::spawn(async {
                let mut n = 0u32;
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    n += 1;
                    if n == 10 {
                        return n;
                    }
                }
            });
            let e = ch.recv().await.unwrap_err();
            let status = e
                .exit_status()
                .unwrap_or_else(|| panic!("no exit status in: {e}"));
            assert_eq!(status.code(), Some(5), "{e}");
            assert_eq!(ticking.await.unwrap(), 10);
            assert_eq!(child.wait_async().await.unwrap().code(), Some(5));
        });
    });
}

/// A connection accepted from a listener outlives it, on every kind of
/// endpoint: after the listener is dropped, the peer's next messages still
/// arrive and replies still go (a ZeroMQ listener stopped sorting its
/// ROUTER's messages when dropped, and cut the peers it had handed out:
/// their next receive said `Disconnected`).
#[test]
fn an_accepted_connection_outlives_its_listener() {
    checked(60, || {
        let dir = tempfile::tempdir().unwrap();
        for (place, net) in every_kind_of_place(&dir) {
            current_thread().block_on(async {
                let listener = aio::listen(&place, &net).await.unwrap();
                let addr = listener.endpoint().to_string();
                let client: aio::Duplex<String, String> = aio::connect(&addr, &net).await.unwrap();
                client.send("first".into()).await.unwrap();
                let server = listener.accept::<String, String>().await.unwrap();
                assert_eq!(server.recv().await.unwrap(), "first", "{place}");
                drop(listener);
                client.send("second".into()).await.unwrap();
                let within = Duration::from_secs(5);
                let second = tokio::time::timeout(within, server.recv()).await;
                let second = second.expect("not a hang");
                assert_eq!(second.unwrap_or_else(|e| panic!("{place}: {e}")), "second");
                server.send("reply".into()).await.unwrap();
                let reply = tokio::time::timeout(within, client.recv()).await;
                let reply = reply.expect("not a hang");
                assert_eq!(reply.unwrap_or_else(|e| panic!("{place}: {e}")), "reply");
                if place.starts_with("zmq") {
                    // The last accepted peer closed: the ROUTER lets go of
                    // its address.
                    drop((server, client));
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while let Err(e) = aio::listen(&addr, &net).await {
                        assert!(Instant::now() < deadline, "{addr} still bound: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            });
        }
    });
}
