//! Tasks: a function in a child process, started by the fork server or by
//! re-exec (fork itself needs a single-threaded process; see the CLI demo).

mod util;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use procwire::{Duplex, ErrorKind, How, task};
use util::{checked, wait_deadline};

procwire::init_before_main!();

fn lifter(greeting: String, ch: Duplex<String, String>) {
    for job in ch.iter() {
        ch.send(format!("{greeting} {} accomplished!", job.unwrap()))
            .unwrap();
    }
}

fn exits_with(code: i32, _ch: Duplex<(), ()>) {
    std::process::exit(code);
}

fn panics(_: (), _ch: Duplex<(), ()>) {
    panic!("a task that panics");
}

fn sleeps(_: (), ch: Duplex<u32, ()>) {
    ch.send(std::process::id()).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn the_server_and_reexec_run_a_function_in_a_child() {
    checked(60, || {
        for how in [How::Server, How::Reexec, How::Auto] {
            let (mut child, ch) = task(lifter, format!("{how:?}:")).via(how).spawn().unwrap();
            for job in ["Heavy lifting", "Feather lifting"] {
                assert_eq!(
                    ch.request(job.into()).unwrap(),
                    format!("{how:?}: {job} accomplished!")
                );
            }
            drop(ch);
            assert!(wait_deadline(&mut child, 20).success(), "{how:?}");
        }
    });
}

fn parent_of(_: (), ch: Duplex<(u32, String), ()>) {
    let ppid = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
    let cmdline = std::fs::read_to_string("/proc/self/cmdline").unwrap();
    ch.send((ppid, cmdline)).unwrap();
}

#[test]
fn each_way_is_what_it_says() {
    checked(30, || {
        let me = std::process::id();
        let (mut child, ch) = task(parent_of, ()).via(How::Server).spawn().unwrap();
        let (ppid, _) = ch.recv().unwrap();
        assert_ne!(ppid, me, "a server child's parent is the fork server");
        assert!(wait_deadline(&mut child, 20).success());
        let (mut child, ch) = task(parent_of, ()).via(How::Reexec).spawn().unwrap();
        let (ppid, cmdline) = ch.recv().unwrap();
        assert_eq!(ppid, me, "a re-executed child is ours");
        let exe = std::env::current_exe().unwrap();
        assert!(cmdline.starts_with(exe.to_str().unwrap()), "{cmdline:?}");
        assert!(wait_deadline(&mut child, 20).success());
    });
}

#[test]
fn the_fork_server_keeps_no_descriptor_per_task() {
    checked(60, || {
        let server_fds = || {
            let (mut child, ch) = task(parent_of, ()).via(How::Server).spawn().unwrap();
            let (server, _) = ch.recv().unwrap();
            assert!(wait_deadline(&mut child, 20).success());
            std::fs::read_dir(format!("/proc/{server}/fd"))
                .unwrap()
                .count()
        };
        let before = server_fds();
        for _ in 0..200 {
            let (mut child, ch) = task(exits_with, 0).via(How::Server).spawn().unwrap();
            drop(ch);
            assert!(wait_deadline(&mut child, 20).success());
        }
        assert_eq!(
            server_fds(),
            before,
            "the server leaks a descriptor per task"
        );
    });
}

#[test]
fn exit_statuses_are_the_same_whichever_way_was_used() {
    checked(60, || {
        for how in [How::Server, How::Reexec] {
            let (mut child, ch) = task(exits_with, 7).via(how).spawn().unwrap();
            let e = ch.recv().unwrap_err();
            assert_eq!(
                e.exit_status().and_then(|s| s.code()),
                Some(7),
                "{how:?}: {e}"
            );
            assert_eq!(wait_deadline(&mut child, 20).code(), Some(7), "{how:?}");

            let (mut child, _ch) = task(panics, ()).via(how).spawn().unwrap();
            assert_eq!(wait_deadline(&mut child, 20).code(), Some(101), "{how:?}");

            let (mut child, ch) = task(sleeps, ()).via(how).spawn().unwrap();
            assert_eq!(ch.recv().unwrap(), child.id());
            child.kill().unwrap();
            let e = ch.recv().unwrap_err();
            assert_eq!(
                e.exit_status().and_then(|s| s.signal()),
                Some(libc::SIGKILL),
                "{how:?}: {e}"
            );
            assert_eq!(wait_deadline(&mut child, 20).signal(), Some(libc::SIGKILL));
        }
    });
}

#[test]
fn fork_is_refused_here_with_a_clear_error() {
    checked(10, || {
        let e = task(lifter, String::new())
            .via(How::Fork)
            .spawn()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.to_string().contains("threads"), "{e}");
    });
}

#[test]
fn tasks_start_from_inside_a_multi_threaded_tokio_program() {
    checked(60, || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .unwrap();
        rt.block_on(async {
            let jobs = [How::Server, How::Reexec, How::Server, How::Reexec].map(|how| {
                tokio::task::spawn_blocking(move || {
                    let (mut child, ch) = task(lifter, "tokio:".into()).via(how).spawn().unwrap();
                    let reply = ch.request("Heavy lifting".into()).unwrap();
                    drop(ch);
                    assert!(child.wait().unwrap().success());
                    reply
                })
            });
            for job in jobs {
                assert_eq!(job.await.unwrap(), "tokio: Heavy lifting accomplished!");
            }
        });
    });
}

#[test]
fn a_creator_killed_with_sigkill_leaves_no_task_behind() {
    checked(30, || {
        for role in ["creator_server", "creator_reexec"] {
            let (mut creator, ch) = util::spawn_child::<(), u32>("child", role);
            let task_pid = ch.recv().unwrap();
            assert!(
                util::orphan_dies_with(&mut creator, task_pid),
                "{role}: the task outlived its creator"
            );
        }
    });
}

fn creator(how: How) {
    let ctl = procwire::from_env::<u32, ()>().unwrap();
    let (_child, ch) = task(sleeps, ()).via(how).spawn().unwrap();
    ctl.send(ch.recv().unwrap()).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

/// Entry point for the child processes of this file's tests.
#[test]
#[ignore = "runs only as a child process of other tests"]
fn child() {
    match util::role().as_str() {
        "creator_server" => creator(How::Server),
        "creator_reexec" => creator(How::Reexec),
        other => panic!("unknown role {other}"),
    }
}

/// Sends 12 large messages of its own (over a datagram, so in its spill
/// file) on the message-socket end it is handed, then says so.
fn spills(_: (), ch: Duplex<(), procwire::Sender<procwire::ByteBuf>>) {
    let tx = ch.recv().unwrap();
    for i in 0..12u32 {
        let len = (1 << 20) - i as usize * 4096;
        tx.send(procwire::ByteBuf::from(util::pattern(i, len)))
            .unwrap();
    }
    ch.send(()).unwrap();
}

/// A large message on a message socket from another process: the spill
/// file is the child's, mapped by both processes, written again only once
/// the parent has counted each message read, so every one arrives whole,
/// whether the parent reads as they come or only after all were sent.
#[test]
fn a_child_sends_large_messages_through_its_spill_file_on_a_message_socket() {
    checked(60, || {
        for kind in [procwire::Kind::SeqPacket, procwire::Kind::Datagram] {
            for read_late in [false, true] {
                let (mut child, ch) = task(spills, ()).spawn().unwrap();
                let (tx, rx) = procwire::SocketPair::new(kind)
                    .channel::<procwire::ByteBuf>()
                    .unwrap();
                ch.send(tx).unwrap();
                if read_late {
                    ch.recv().unwrap();
                }
                for i in 0..12u32 {
                    let got = rx.recv_timeout(Duration::from_secs(20)).unwrap();
                    let len = (1 << 20) - i as usize * 4096;
                    assert!(
                        got[..] == util::pattern(i, len)[..],
                        "{kind:?}, message {i} differs"
                    );
                }
                if !read_late {
                    ch.recv().unwrap();
                }
                assert!(wait_deadline(&mut child, 20).success(), "{kind:?}");
            }
        }
    });
}

fn square(n: u64) -> u64 {
    n * n
}

/// The fork server's pid: the one child of this process (the tasks and
/// workers it starts are its children, not ours).
fn fork_server() -> u32 {
    let mut pids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let children = std::fs::read_to_string(task.unwrap().path().join("children"));
        pids.extend(
            children
                .unwrap_or_default()
                .split_whitespace()
                .map(|p| p.parse::<u32>().unwrap()),
        );
    }
    assert_eq!(pids.len(), 1, "children of this process: {pids:?}");
    pids[0]
}

#[test]
fn when_the_fork_server_dies_starts_and_waits_fail_at_once_and_it_is_reaped() {
    // Before, a wait for a child of the dead server took 30 s (for each
    // pool worker at the pool's drop), and only then said nothing arrived.
    checked(40, || {
        let (mut child, ch) = task(sleeps, ()).via(How::Server).spawn().unwrap();
        let pid = ch.recv().unwrap();
        let pool = procwire::Pool::builder(square)
            .workers(3)
            .via(How::Server)
            .build()
            .unwrap();
        assert_eq!(pool.call(7).unwrap(), 49);
        let server = fork_server();
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(server as i32).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();

        let e = child.wait().unwrap_err();
        assert!(e.to_string().contains("fork server exited"), "{e}");
        let e = task(sleeps, ()).via(How::Server).spawn().unwrap_err();
        assert!(e.to_string().contains("fork server"), "{e}");
        drop(pool);
        drop((child, ch));
        // Its task died with it (its death signal), and the server itself
        // is reaped, not left a zombie.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while (std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::path::Path::new(&format!("/proc/{server}")).exists())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        assert!(!std::path::Path::new(&format!("/proc/{server}")).exists());
    });
}
