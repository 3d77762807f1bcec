//! The worker pool: results, backpressure, crashes, timeouts, shutdown.

mod util;

use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use procwire::{ErrorKind, How, Pool};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use util::checked;

procwire::init_before_main!();

fn square(n: u64) -> u64 {
    n * n
}

fn pid_of(_: u64) -> u32 {
    std::process::id()
}

fn sleepy(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn map_submit_and_map_unordered() {
    checked(60, || {
        for how in [How::Server, How::Reexec] {
            let pool = Pool::builder(square).workers(2).via(how).build().unwrap();
            let got: Vec<u64> = pool.map(0..200).map(Result::unwrap).collect();
            assert_eq!(got, (0..200).map(|n| n * n).collect::<Vec<_>>(), "{how:?}");
            let h = pool.submit(12).unwrap();
            assert_eq!(h.wait().unwrap(), 144);
            let mut seen: Vec<(usize, u64)> = pool
                .map_unordered(0..100)
                .map(|(i, r)| (i, r.unwrap()))
                .collect();
            seen.sort();
            assert_eq!(
                seen,
                (0..100).map(|n| (n as usize, n * n)).collect::<Vec<_>>()
            );
            pool.shutdown().unwrap();
        }
    });
}

#[test]
fn call_runs_on_an_idle_worker_and_survives_crashes() {
    checked(60, || {
        let pool = Pool::builder(trapped).workers(2).build().unwrap();
        let ok = Trap {
            when: Stage::Never,
            how: Failure::Exit,
        };
        assert!(pool.call(ok.clone()).unwrap().0.is_none());
        let e = pool
            .call(Trap {
                when: Stage::Run,
                how: Failure::Exit,
            })
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeerExited, "{e}");
        assert_eq!(e.exit_status().and_then(|s| s.code()), Some(9));
        // From many threads at once: some run inline, some queue.
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        assert!(pool.call(ok.clone()).unwrap().0.is_none());
                    }
                });
            }
        });
        assert_eq!(pool.worker_pids().len(), 2);
        pool.shutdown().unwrap();
    });
}

#[test]
fn a_forking_pool_is_refused_with_the_reason() {
    let e = Pool::builder(square).via(How::Fork).build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.to_string().contains("fork server"), "{e}");
}

#[test]
fn in_flight_work_is_bounded_and_queued_tasks_can_be_cancelled() {
    checked(60, || {
        let pool = Pool::builder(sleepy)
            .workers(1)
            .max_in_flight(3)
            .build()
            .unwrap();
        let running = pool.submit(300).unwrap();
        let a = pool.try_submit(1).unwrap();
        let b = pool.try_submit(2).unwrap();
        let e = pool.try_submit(3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Full, "{e}");
        assert!(b.cancel(), "a queued task can be cancelled");
        assert_eq!(b.wait().unwrap_err().kind(), ErrorKind::Cancelled);
        let c = pool.try_submit(4).unwrap(); // room again
        assert_eq!(running.wait().unwrap(), 300);
        assert_eq!(a.wait().unwrap(), 1);
        assert_eq!(c.wait().unwrap(), 4);
        pool.shutdown().unwrap();
    });
}

/// A request whose decoding, handling or reply can be made to fail in the
/// worker in each way a process can fail.
#[derive(Clone, Debug)]
struct Trap {
    when: Stage,
    how: Failure,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
enum Stage {
    Never,
    Decode,
    Run,
    Encode,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
enum Failure {
    Panic,
    Abort,
    Exit,
}

fn fail(how: Failure) -> ! {
    match how {
        Failure::Panic => panic!("the worker panics"),
        Failure::Abort => std::process::abort(),
        Failure::Exit => std::process::exit(9),
    }
}

impl Serialize for Trap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.when, self.how).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Trap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Trap, D::Error> {
        let (when, how) = <(Stage, Failure)>::deserialize(d)?;
        if when == Stage::Decode {
            fail(how);
        }
        Ok(Trap { when, how })
    }
}

#[derive(Clone, Debug, Deserialize)]
struct Outcome(Option<Failure>);

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some(how) = self.0 {
            fail(how);
        }
        s.serialize_newtype_struct("Outcome", &None::<Failure>)
    }
}

fn trapped(t: Trap) -> Outcome {
    match t.when {
        Stage::Run => fail(t.how),
        Stage::Encode => Outcome(Some(t.how)),
        Stage::Never | Stage::Decode => Outcome(None),
    }
}

#[test]
fn the_crash_matrix_every_cell_a_typed_error() {
    checked(60, || {
        let pool = Pool::builder(trapped).workers(2).build().unwrap();
        for when in [Stage::Decode, Stage::Run, Stage::Encode] {
            for how in [Failure::Panic, Failure::Abort, Failure::Exit] {
                let e = pool.submit(Trap { when, how }).unwrap().wait().unwrap_err();
                assert_eq!(e.kind(), ErrorKind::PeerExited, "{when:?}/{how:?}: {e}");
                let status = e.exit_status().expect("the status is known");
                match how {
                    Failure::Panic => assert_eq!(status.code(), Some(101), "{e}"),
                    Failure::Abort => assert_eq!(status.signal(), Some(libc::SIGABRT), "{e}"),
                    Failure::Exit => assert_eq!(status.code(), Some(9), "{e}"),
                }
                assert!(e.to_string().contains("worker "), "{e}");
                // The pool goes on with a fresh worker.
                let ok = pool
                    .submit(Trap {
                        when: Stage::Never,
                        how,
                    })
                    .unwrap();
                assert!(ok.wait().unwrap().0.is_none());
            }
        }
        pool.shutdown().unwrap();
    });
}

#[test]
fn killing_a_worker_every_100_tasks_loses_and_repeats_nothing() {
    checked(240, || {
        let pool = Pool::builder(square).workers(2).build().unwrap();
        let mut seen = HashSet::new();
        let (mut completed, mut failed) = (0, 0);
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for (i, (pos, r)) in pool.map_unordered(0..10_000u64).enumerate() {
            assert!(seen.insert(pos), "position {pos} delivered twice");
            match r {
                Ok(v) => {
                    assert_eq!(v, (pos as u64) * (pos as u64));
                    completed += 1;
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::PeerExited, "{e}");
                    failed += 1;
                }
            }
            if i % 100 == 99 && i + 1 < 10_000 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let pids = pool.worker_pids();
                if let Some(&pid) = pids.get(rng as usize % pids.len().max(1)) {
                    unsafe_kill(pid);
                }
            }
        }
        assert_eq!(completed + failed, 10_000);
        assert_eq!(seen.len(), 10_000);
        println!("completed {completed}, failed {failed}");
        // Still serving.
        assert_eq!(pool.submit(7).unwrap().wait().unwrap(), 49);
        pool.shutdown().unwrap();
    });
}

fn unsafe_kill(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

#[test]
fn a_task_past_its_timeout_kills_only_its_worker() {
    checked(60, || {
        let pool = Pool::builder(sleepy)
            .workers(1)
            .task_timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let e = pool.submit(5_000).unwrap().wait().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert_eq!(pool.submit(10).unwrap().wait().unwrap(), 10);
        pool.shutdown().unwrap();
    });
}

#[test]
fn workers_are_recycled_after_k_tasks() {
    checked(60, || {
        let pool = Pool::builder(pid_of)
            .workers(1)
            .max_tasks_per_worker(5)
            .build()
            .unwrap();
        let pids: HashSet<u32> = pool.map(0..20).map(Result::unwrap).collect();
        assert_eq!(pids.len(), 4, "{pids:?}");
        pool.shutdown().unwrap();
    });
}

static INITIALIZED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn set_up() {
    INITIALIZED.store(42, std::sync::atomic::Ordering::SeqCst);
}

fn read_init(_: u64) -> u64 {
    INITIALIZED.load(std::sync::atomic::Ordering::SeqCst)
}

#[test]
fn the_initializer_runs_in_each_worker() {
    checked(30, || {
        let pool = Pool::builder(read_init)
            .workers(2)
            .initializer(set_up)
            .build()
            .unwrap();
        assert!(pool.map(0..10).all(|r| r.unwrap() == 42));
        pool.shutdown().unwrap();
    });
}

fn crash_once(marker: String) -> u64 {
    if std::fs::metadata(&marker).is_err() {
        std::fs::write(&marker, b"").unwrap();
        std::process::exit(3);
    }
    7
}

#[test]
fn a_retry_runs_a_crashed_task_again_on_a_fresh_worker() {
    checked(30, || {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("crashed").to_str().unwrap().to_string();
        let pool = Pool::builder(crash_once)
            .workers(1)
            .retries(1)
            .build()
            .unwrap();
        assert_eq!(pool.submit(marker).unwrap().wait().unwrap(), 7);
        pool.shutdown().unwrap();
    });
}

#[test]
fn shutdown_finishes_the_work_and_abort_cancels_it() {
    checked(60, || {
        let pool = Pool::builder(sleepy)
            .workers(2)
            .max_in_flight(8)
            .build()
            .unwrap();
        let handles: Vec<_> = (0..6).map(|_| pool.submit(20).unwrap()).collect();
        pool.shutdown().unwrap();
        assert!(handles.into_iter().all(|h| h.wait().unwrap() == 20));
        assert_eq!(util::zombies(), 0);

        let pool = Pool::builder(sleepy)
            .workers(2)
            .max_in_flight(8)
            .build()
            .unwrap();
        let handles: Vec<_> = (0..6).map(|_| pool.submit(10_000).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(100));
        pool.abort().unwrap();
        for h in handles {
            assert_eq!(h.wait().unwrap_err().kind(), ErrorKind::Cancelled);
        }
        assert_eq!(util::zombies(), 0);
    });
}
