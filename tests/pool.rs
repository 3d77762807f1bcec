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

/// A kind of worker of the test's own, in threads: it answers `n` with
/// `n * 10`, remembers how many tasks it held at once, and "dies" (its
/// channel ends) on the task `die_on` the first time it sees it.
mod threads {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use procwire::pool::{Link, Worker};
    use procwire::{Error, ErrorKind, Result};

    #[derive(Clone)]
    pub struct Threads(pub Arc<State>);

    pub struct State {
        pub die_on: Mutex<HashSet<u64>>,
        pub started: AtomicUsize,
        pub most_in_flight: Arc<AtomicUsize>,
        pub broken: bool,
        /// Sends to a worker that was handed its fatal task fail as a write
        /// to a dead process's pipe does (`BrokenPipe`), whether or not its
        /// thread has got that far yet.
        pub pipe_like: bool,
    }

    struct T {
        tx: Option<mpsc::Sender<u64>>,
        rx: mpsc::Receiver<Option<u64>>,
        in_flight: usize,
        most: Arc<AtomicUsize>,
        state: Arc<State>,
        doomed: bool,
    }

    impl std::ops::Deref for Threads {
        type Target = State;
        fn deref(&self) -> &State {
            &self.0
        }
    }

    impl Link<u64, u64> for Threads {
        fn start(&self) -> Result<Box<dyn Worker<u64, u64>>> {
            self.started.fetch_add(1, Ordering::SeqCst);
            if self.broken {
                return Err(Error::new(ErrorKind::Io, "this worker cannot start"));
            }
            let (tx, tasks) = mpsc::channel::<u64>();
            let (answers, rx) = mpsc::channel();
            let me = Arc::clone(&self.0);
            std::thread::spawn(move || {
                for n in tasks {
                    if me.die_on.lock().unwrap().remove(&n) {
                        let _ = answers.send(None);
                        return;
                    }
                    let _ = answers.send(Some(n * 10));
                }
            });
            Ok(Box::new(T {
                tx: Some(tx),
                rx,
                in_flight: 0,
                most: Arc::clone(&self.most_in_flight),
                state: Arc::clone(&self.0),
                doomed: false,
            }))
        }
    }

    impl Worker<u64, u64> for T {
        fn send(&mut self, n: &u64) -> Result<()> {
            if self.doomed {
                return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe).into());
            }
            self.doomed = self.state.pipe_like && self.state.die_on.lock().unwrap().contains(n);
            self.in_flight += 1;
            self.most.fetch_max(self.in_flight, Ordering::SeqCst);
            self.tx
                .as_ref()
                .unwrap()
                .send(*n)
                .map_err(|_| Error::new(ErrorKind::Disconnected, "the thread is gone"))
        }
        fn recv(&mut self, deadline: Option<Instant>) -> Result<u64> {
            let got = match deadline {
                Some(d) => self
                    .rx
                    .recv_timeout(d.saturating_duration_since(Instant::now()))
                    .map_err(|_| Error::new(ErrorKind::Timeout, "late")),
                None => self
                    .rx
                    .recv()
                    .map_err(|_| Error::new(ErrorKind::Disconnected, "gone")),
            }?;
            self.in_flight -= 1;
            got.ok_or_else(|| Error::new(ErrorKind::Disconnected, "died on its task"))
        }
        fn alive(&mut self) -> bool {
            true
        }
        fn name(&self) -> String {
            "thread worker".into()
        }
        fn killer(&self) -> Box<dyn Fn() + Send + Sync> {
            Box::new(|| {})
        }
        fn retire(mut self: Box<Self>, _kill: bool) {
            self.tx.take();
        }
    }
}

#[test]
fn a_link_of_ones_own_gets_the_scheduler_pipelining_retries_and_ordered_runs() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    checked(60, || {
        let link = threads::Threads(Arc::new(threads::State {
            die_on: std::sync::Mutex::new([7, 300, 600].into_iter().collect()),
            started: AtomicUsize::new(0),
            most_in_flight: Arc::new(AtomicUsize::new(0)),
            broken: false,
            pipe_like: false,
        }));
        let pool = Pool::with_link(link.clone())
            .workers(2)
            .pipeline(4)
            .retries(1)
            .build()
            .unwrap();
        // Fed from a thread, answered in order: every task once, the ones
        // whose worker died run again on a fresh one. (The deaths are far
        // apart: a task queued behind a dying one on the same worker is
        // lost with it, and with one retry it must not die on its own as
        // well, as 301 could behind 300.)
        let mut got = Vec::new();
        let n = pool
            .run(0..1000u64, true, |i, r| got.push((i, r.unwrap())))
            .unwrap();
        assert_eq!(n, 1000);
        assert_eq!(got, (0..1000).map(|i| (i, i * 10)).collect::<Vec<_>>());
        assert_eq!(link.most_in_flight.load(Ordering::SeqCst), 4, "pipelined");
        // Two at the start, and one for each of the three deaths.
        assert_eq!(link.started.load(Ordering::SeqCst), 5);
        let stats = pool.stats();
        assert_eq!((stats.submitted, stats.failed, stats.lost), (1000, 0, 3));
        // Unordered: each position once.
        let mut seen = Vec::new();
        pool.run(0..200u64, false, |i, r| seen.push((i, r.unwrap())))
            .unwrap();
        seen.sort_unstable();
        assert_eq!(seen, (0..200).map(|i| (i, i * 10)).collect::<Vec<_>>());
        pool.shutdown().unwrap();
    });
}

/// A worker that died on a task refuses the next one, as a pipe to a dead
/// process does: only the task it was running is charged; the refused one
/// never reached it and runs elsewhere (the CLI pool failed a line beside
/// the one that killed its worker, now and then).
#[test]
fn a_task_refused_by_a_dead_worker_is_not_charged_for_its_death() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    checked(60, || {
        let link = threads::Threads(Arc::new(threads::State {
            // The second of a batch of four in flight: the two after it are
            // refused.
            die_on: std::sync::Mutex::new([5].into_iter().collect()),
            started: AtomicUsize::new(0),
            most_in_flight: Arc::new(AtomicUsize::new(0)),
            broken: false,
            pipe_like: true,
        }));
        let pool = Pool::with_link(link.clone())
            .workers(1)
            .pipeline(4)
            .retries(0)
            .build()
            .unwrap();
        let mut got = Vec::new();
        pool.run(0..20u64, true, |i, r| {
            got.push((i, r.map_err(|e| e.kind())))
        })
        .unwrap();
        let failed: Vec<u64> = got
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(failed, [5], "only the task the worker died on: {got:?}");
        assert!(
            got.iter().all(|(i, r)| *i == 5 || *r == Ok(i * 10)),
            "{got:?}"
        );
        assert_eq!(link.started.load(Ordering::SeqCst), 2, "one replacement");
        pool.shutdown().unwrap();
    });
}

#[test]
fn workers_that_keep_failing_make_the_pool_give_up_with_the_reason() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    checked(60, || {
        let link = threads::Threads(Arc::new(threads::State {
            die_on: std::sync::Mutex::new((0..1000).collect()),
            started: AtomicUsize::new(0),
            most_in_flight: Arc::new(AtomicUsize::new(0)),
            broken: false,
            pipe_like: false,
        }));
        let pool = Pool::with_link(link.clone())
            .workers(1)
            .max_in_flight(4)
            .give_up_after(5)
            .build()
            .unwrap();
        // An endless input: the run ends when the pool gives up, rather
        // than refusing every task there will ever be.
        let mut errors = Vec::new();
        let run = pool.run(0u64.., true, |i, r| {
            assert_eq!(i as usize, errors.len(), "in input order");
            errors.push(r.unwrap_err());
        });
        let e = run.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
        assert!(e.to_string().contains("workers keep failing"), "{e}");
        assert!(e.to_string().contains("no more"), "{e}");
        // Five lost as themselves, then those in flight fail with the
        // pool's reason: a handful, not the endless rest.
        assert!((6..=20).contains(&errors.len()), "{} results", errors.len());
        assert!(
            e.to_string()
                .contains(&format!("read {} and", errors.len())),
            "{e}"
        );
        let last = errors.last().unwrap();
        assert_eq!(last.kind(), ErrorKind::Cancelled, "{last}");
        assert!(last.to_string().contains("workers keep failing"), "{last}");
        assert!(pool.submit(1).is_err(), "a pool that gave up takes nothing");
        let e = pool.shutdown().unwrap_err();
        assert!(e.to_string().contains("giving up"), "{e}");
        // A worker that cannot start at all is the build's error.
        let broken = threads::Threads(Arc::new(threads::State {
            die_on: std::sync::Mutex::new(Default::default()),
            started: AtomicUsize::new(0),
            most_in_flight: Arc::new(AtomicUsize::new(0)),
            broken: true,
            pipe_like: false,
        }));
        let e = Pool::with_link(broken).workers(2).build().unwrap_err();
        assert!(e.to_string().contains("cannot start"), "{e}");
    });
}

#[test]
fn a_run_cancelled_from_its_callback_stops_reading_an_endless_input() {
    checked(60, || {
        let before = util::fd_count();
        let pool = Pool::builder(square).workers(2).build().unwrap();
        let read = std::sync::atomic::AtomicU64::new(0);
        let tasks = (0u64..).inspect(|_| {
            read.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let mut got = Vec::new();
        let e = pool
            .run(tasks, true, |i, r| {
                if i == 10 {
                    pool.cancel();
                }
                got.push((i, r));
            })
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
        let read = read.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(got.len() as u64, read, "every task read has its result");
        assert!(read < 1000, "{read} tasks read after the cancel");
        for (i, r) in &got[..=10] {
            assert_eq!(r.as_ref().unwrap(), &(i * i), "before the cancel");
        }
        // Those after it finished first or were cancelled.
        for (i, r) in &got[11..] {
            match r {
                Ok(v) => assert_eq!(*v, i * i),
                Err(e) => assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}"),
            }
        }
        pool.abort().unwrap();
        assert_eq!(util::fd_count(), before, "a descriptor leaked");
    });
}

/// A panic in `run`'s callback reaches the caller, and the feeding thread
/// stops reading tasks (it read an endless input for ever, the panic
/// waiting behind it).
#[test]
fn a_panic_in_the_run_callback_ends_the_run_over_an_endless_input() {
    checked(60, || {
        let pool = Pool::builder(square).workers(2).build().unwrap();
        let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = std::sync::Arc::clone(&read);
        let tasks = (0u64..).inspect(move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(tasks, true, |i, _| assert!(i < 5, "the callback panics"))
        }));
        let why = ran.unwrap_err();
        let why = why
            .downcast_ref::<&str>()
            .copied()
            .or(why.downcast_ref::<String>().map(String::as_str));
        assert_eq!(why, Some("the callback panics"));
        let read = read.load(std::sync::atomic::Ordering::SeqCst);
        assert!(read < 10_000, "{read} tasks read");
        // The pool goes on.
        assert_eq!(
            pool.run(0..10u64, true, |_, r| assert!(r.is_ok())).unwrap(),
            10
        );
        pool.shutdown().unwrap();
    });
}

fn slow_first(n: u64) -> u64 {
    if n == 0 {
        std::thread::sleep(Duration::from_secs(2));
    }
    n
}

/// In order, one slow task holds back a bounded number of results: the
/// run reads at most 1,024 tasks (16 times `max_in_flight`, at least
/// 1,024) past it. (It read on without bound: 52,730 tasks in the 3 s of
/// one slow task, each result kept, and an endless input grew until the
/// slow task ended.)
#[test]
fn an_ordered_run_reads_a_bounded_window_past_a_slow_task() {
    checked(60, || {
        let pool = Pool::builder(slow_first)
            .workers(2)
            .max_in_flight(8)
            .build()
            .unwrap();
        let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = std::sync::Arc::clone(&read);
        let tasks = (0..100_000u64).inspect(move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let mut when_first = None;
        let mut next = 0;
        let n = pool
            .run(tasks, true, |i, r| {
                assert_eq!(i, next, "in input order");
                assert_eq!(r.unwrap(), i);
                next += 1;
                when_first.get_or_insert(read.load(std::sync::atomic::Ordering::SeqCst));
            })
            .unwrap();
        assert_eq!(n, 100_000);
        // The window, and the one task read and waiting to be let in.
        let when_first = when_first.unwrap();
        assert!(when_first <= 1024 + 1, "{when_first} tasks read");
        pool.shutdown().unwrap();
    });
}

/// A task timeout and a wait past what an `Instant` can hold
/// (`Duration::MAX`) mean "as long as it takes": never the panic of
/// `Instant + Duration` overflowing in the pool's scheduler or the caller.
#[test]
fn a_timeout_past_any_instant_waits_as_long_as_it_takes() {
    checked(60, || {
        let pool = Pool::builder(square)
            .workers(1)
            .task_timeout(Duration::MAX)
            .build()
            .unwrap();
        assert_eq!(pool.call(9).unwrap(), 81);
        let h = pool.submit(5).unwrap();
        assert_eq!(h.wait_timeout(Duration::MAX).unwrap(), 25);
        pool.shutdown().unwrap();
    });
}

#[test]
fn a_pool_of_more_than_4096_workers_starts_serves_and_stops() {
    // The fork server watched its children with procwire's poll, which took
    // 4,096 descriptors at most: at the 4,096th worker the server exited,
    // and the pool's drop then waited 30 s for each worker's exit status.
    checked(50, || {
        const WORKERS: usize = 4_200;
        let pool = Pool::builder(pid_of).workers(WORKERS).build().unwrap();
        let pids: HashSet<u32> = pool
            .map(0..2 * WORKERS as u64)
            .map(|r| r.unwrap())
            .collect();
        assert!(pids.len() > 1, "{} workers served", pids.len());
        drop(pool);
        assert_eq!(util::zombies(), 0);
    });
}

#[test]
fn a_pool_past_the_descriptor_limit_is_an_error_that_names_the_limit_and_leaks_nothing() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    checked(50, || {
        let was = getrlimit(Resource::Nofile);
        let low = util::fd_count() as u64 + 100;
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(low),
                maximum: was.maximum,
            },
        )
        .unwrap();
        // Two descriptors a worker, here: 200 do not fit in 100.
        let built = Pool::builder(square).workers(200).build();
        setrlimit(Resource::Nofile, was).unwrap();
        let e = built.expect_err("200 workers do not fit");
        assert!(
            e.to_string()
                .contains(&format!("at its RLIMIT_NOFILE of {low} open descriptors")),
            "{e}"
        );
        // The workers that did start are gone, and a pool starts again.
        let pool = Pool::builder(square).workers(2).build().unwrap();
        assert_eq!(pool.call(9).unwrap(), 81);
        drop(pool);
        assert_eq!(util::zombies(), 0);
    });
}
