//! RPC over one channel: concurrent calls, out-of-order replies, a dying
//! server.

mod util;

use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use procwire::rpc::{self, Client, ServerEnd};
use procwire::{ErrorKind, How, task};
use util::checked;

procwire::init_before_main!();

#[test]
fn calls_return_results_and_remote_errors() {
    checked(10, || {
        let (c, s) = rpc::pair::<i64, i64>().unwrap();
        let server = std::thread::spawn(move || {
            rpc::serve(s, |n: i64| {
                if n >= 0 {
                    Ok(n * 2)
                } else {
                    Err(format!("{n} is negative"))
                }
            })
        });
        let client = Client::new(c);
        assert_eq!(client.call(21).unwrap(), 42);
        let e = client.call(-1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Remote);
        assert!(e.to_string().contains("-1 is negative"), "{e}");
        assert_eq!(
            client.call(5).unwrap(),
            10,
            "the channel goes on after a remote error"
        );
        drop(client);
        server.join().unwrap().unwrap();
    });
}

#[test]
fn eight_threads_ten_thousand_calls_each_reply_to_its_caller() {
    checked(120, || {
        let (c, s) = rpc::pair::<u64, u64>().unwrap();
        // Four handler threads: replies come back out of order.
        let server = std::thread::spawn(move || {
            rpc::serve_concurrent(s, 4, |n: u64| {
                if n.is_multiple_of(7) {
                    std::thread::yield_now();
                }
                Ok::<_, String>(n * 2 + 1)
            })
        });
        let client = Arc::new(Client::new(c));
        let callers: Vec<_> = (0..8u64)
            .map(|t| {
                let client = Arc::clone(&client);
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        let n = t * 1_000_000 + i;
                        assert_eq!(client.call(n).unwrap(), n * 2 + 1);
                    }
                })
            })
            .collect();
        for c in callers {
            c.join().unwrap();
        }
        drop(client);
        server.join().unwrap().unwrap();
    });
}

#[test]
fn a_timed_out_call_does_not_disturb_the_next() {
    checked(30, || {
        let (c, s) = rpc::pair::<u64, u64>().unwrap();
        let server = std::thread::spawn(move || {
            rpc::serve(s, |ms: u64| {
                std::thread::sleep(Duration::from_millis(ms));
                Ok::<_, String>(ms)
            })
        });
        let client = Client::new(c);
        let e = client
            .call_timeout(300, Duration::from_millis(50))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        // The late reply to the first call is discarded, not taken for this one.
        assert_eq!(client.call(1).unwrap(), 1);
        drop(client);
        server.join().unwrap().unwrap();
    });
}

fn doubling_server(_: (), end: ServerEnd<u64, u64>) {
    rpc::serve(end, |n: u64| {
        std::thread::sleep(Duration::from_micros(50));
        Ok::<_, String>(n * 2)
    })
    .unwrap();
}

#[test]
fn a_server_killed_mid_run_fails_the_calls_in_flight_at_once() {
    checked(60, || {
        let (mut child, end) = task(doubling_server, ()).via(How::Server).spawn().unwrap();
        let client = Arc::new(Client::new(end));
        let callers: Vec<_> = (0..8u64)
            .map(|t| {
                let client = Arc::clone(&client);
                std::thread::spawn(move || {
                    let mut ok = 0u64;
                    loop {
                        match client.call(t) {
                            Ok(r) => {
                                assert_eq!(r, t * 2);
                                ok += 1;
                            }
                            Err(e) => return (ok, e, Instant::now()),
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let killed = Instant::now();
        child.kill().unwrap();
        for c in callers {
            let (ok, e, when) = c.join().unwrap();
            assert!(ok > 0, "calls went through before the kill");
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::PeerExited | ErrorKind::Disconnected | ErrorKind::UnexpectedEof
                ),
                "{e}"
            );
            assert_eq!(
                e.exit_status().and_then(|s| s.signal()),
                Some(libc::SIGKILL),
                "{e}"
            );
            assert!(
                when.duration_since(killed) < Duration::from_secs(5),
                "failed promptly"
            );
        }
        assert_eq!(
            util::wait_deadline(&mut child, 10).signal(),
            Some(libc::SIGKILL)
        );
    });
}

/// A call's timeout past what an `Instant` can hold (`Duration::MAX`)
/// waits as long as it takes: never the panic of `Instant + Duration`
/// overflowing.
#[test]
fn a_call_timeout_past_any_instant_waits_for_the_reply() {
    checked(30, || {
        let (c, s) = rpc::pair::<i64, i64>().unwrap();
        let server = std::thread::spawn(move || rpc::serve(s, |n: i64| Ok::<_, String>(n * 2)));
        let client = Client::new(c);
        assert_eq!(client.call_timeout(21, Duration::MAX).unwrap(), 42);
        drop(client);
        server.join().unwrap().unwrap();
    });
}
