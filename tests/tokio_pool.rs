//! Issue 15, item 4: the worker pool, awaited. `call` from many tasks,
//! `submit` whose handle is a future, `map` as a stream with bounded work
//! in flight, and a worker that dies failing only its task.

mod util;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use procwire::ErrorKind;
use util::{checked, runtime};

procwire::init_before_main!();

/// Squares; 13 kills its worker (an exit, as a crash would); 0 is slow.
fn work(n: u64) -> u64 {
    if n == 13 {
        std::process::exit(9);
    }
    if n == 0 {
        std::thread::sleep(Duration::from_millis(200));
    }
    n * n
}

/// 400 awaited calls from 40 tasks on a pool of 2 workers that lets 4
/// tasks be unfinished at once: every answer right; the call whose worker
/// died fails alone, with the exit status, and the pool goes on.
#[test]
fn calls_from_many_tasks_and_a_worker_death_fails_only_its_task() {
    checked(120, || {
        let pool = procwire::Pool::builder(work)
            .workers(2)
            .max_in_flight(4)
            .build()
            .unwrap();
        let pool = Arc::new(procwire::tokio::Pool::new(pool));
        runtime().block_on(async {
            let tasks: Vec<_> = (0..40u64)
                .map(|t| {
                    let pool = Arc::clone(&pool);
                    tokio::spawn(async move {
                        for i in 0..10 {
                            let n = 1 + t * 10 + i;
                            match pool.call(n).await {
                                Ok(sq) => assert_eq!(sq, n * n),
                                Err(e) => {
                                    assert_eq!(n, 13, "only the fatal task fails: {e}");
                                    assert_eq!(e.kind(), ErrorKind::PeerExited, "{e}");
                                    assert_eq!(e.exit_status().and_then(|s| s.code()), Some(9));
                                }
                            }
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            // `submit`: the handle is a future; a slow task does not hold up
            // a quick one submitted after it.
            let slow = pool.submit(0).await.unwrap();
            let quick = pool.submit(3).await.unwrap();
            assert_eq!(quick.await.unwrap(), 9);
            assert_eq!(slow.await.unwrap(), 0);
        });
        Arc::try_unwrap(pool)
            .unwrap()
            .into_blocking()
            .shutdown()
            .unwrap();
    });
}

/// `map` as a stream: results in input order, the fatal item's error in
/// its place, never more than `max_in_flight` tasks submitted ahead.
#[test]
fn map_is_an_ordered_stream_with_bounded_work_in_flight() {
    checked(120, || {
        let pool = procwire::Pool::builder(work)
            .workers(2)
            .max_in_flight(3)
            .build()
            .unwrap();
        let pool = procwire::tokio::Pool::new(pool);
        runtime().block_on(async {
            let mut results = pool.map(1..=60u64);
            let mut n = 0;
            while let Some(r) = results.next().await {
                n += 1;
                // Item n is answered: at most 3 more were submitted.
                let s = pool.blocking().stats();
                assert!(s.submitted <= n + 3, "{n}: {s:?}");
                match r {
                    Ok(sq) => assert_eq!(sq, n * n),
                    Err(e) => assert_eq!((n, e.kind()), (13, ErrorKind::PeerExited), "{e}"),
                }
            }
            assert_eq!(n, 60);
        });
        pool.into_blocking().shutdown().unwrap();
    });
}

/// A pool filled by tasks that are not the awaited side's (submitted by
/// the blocking side, slow): an awaited `submit` and `map` wait for room
/// and get it when those finish, on a runtime with no timer (the pool
/// wakes them; before, `submit` slept 1 ms at a time on tokio's timer,
/// and `map` woke itself at once, spinning its thread), using little CPU.
#[test]
fn a_pool_full_of_others_tasks_wakes_awaited_submissions() {
    checked(120, || {
        let pool = procwire::Pool::builder(work)
            .workers(2)
            .max_in_flight(2)
            .build()
            .unwrap();
        let pool = procwire::tokio::Pool::new(pool);
        let timerless = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for round in 0..2 {
            // Two slow tasks (200 ms each) fill the pool.
            let slow: Vec<_> = (0..2).map(|_| pool.blocking().submit(0).unwrap()).collect();
            let start = (std::time::Instant::now(), util::thread_cpu());
            let got: Vec<u64> = timerless.block_on(async {
                if round == 0 {
                    vec![pool.submit(5).await.unwrap().await.unwrap()]
                } else {
                    pool.map(1..=3u64).map(Result::unwrap).collect().await
                }
            });
            let (waited, used) = (start.0.elapsed(), util::thread_cpu() - start.1);
            assert_eq!(got, if round == 0 { vec![25] } else { vec![1, 4, 9] });
            assert!(
                waited >= Duration::from_millis(100),
                "round {round}: no wait ({waited:?})"
            );
            assert!(
                used < waited / 4,
                "round {round}: waited {waited:?} for room and used {used:?} of CPU"
            );
            for h in slow {
                assert_eq!(h.wait().unwrap(), 0);
            }
        }
        pool.into_blocking().shutdown().unwrap();
    });
}
