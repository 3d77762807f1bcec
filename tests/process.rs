//! Children born connected: exact inheritance, reaping, supervision.

mod util;

use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use procwire::{ByteBuf, Child, CodecKind, Command, Duplex, ErrorKind, Kind, Options};
use util::{checked, child_command, spawn_child, wait_deadline, zombies};

fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = lim.maximum.map(|m| m.min(65536)).or(Some(65536));
    setrlimit(Resource::Nofile, lim).unwrap();
}

#[test]
fn the_child_inherits_exactly_its_channel() {
    checked(30, || {
        // Another part of the program opened a descriptor without CLOEXEC.
        let stray = rustix::fs::open(
            "/proc/self/status",
            rustix::fs::OFlags::RDONLY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        assert!(!procwire::is_cloexec(&stray).unwrap());
        let mut cmd = Command::from(child_command("child", "list_fds"));
        let ch = cmd.channel::<(), Vec<i32>>().unwrap();
        let extra = procwire::pipe().unwrap().1;
        let extra_no = cmd.inherit(extra);
        let mut child = cmd.spawn().unwrap();
        let fds = ch.recv().unwrap();
        let channel_no: i32 = fds[fds.len() - 1];
        let mut listed = fds[..fds.len() - 1].to_vec();
        listed.sort();
        let mut expect = vec![0, 1, 2, channel_no, extra_no];
        expect.sort();
        assert_eq!(
            listed, expect,
            "the child holds stdio, its channel and the inherited pipe only"
        );
        drop(ch);
        assert!(wait_deadline(&mut child, 20).success());
        drop(stray);
    });
}

fn list_fds() {
    let ch = procwire::from_env::<Vec<i32>, ()>().unwrap();
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .into_string()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    // read_dir's own descriptor is listed too: drop the one that is gone now.
    fds.retain(|fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok());
    fds.push(std::env::var("PROCWIRE_FD").unwrap().parse().unwrap());
    ch.send(fds).unwrap();
}

/// Spawns `n` `cat` children reading their channel, all alive at once; then
/// ends them one by one: each one's end of stream must arrive while all the
/// others still live, which fails if any sibling inherited its end.
fn spawn_and_check_eofs(n: usize) {
    let mut children: Vec<(Child, Duplex<ByteBuf, ByteBuf>)> = Vec::new();
    for _ in 0..n {
        // bash, not sh: dash accepts only one-digit descriptors in `<&N`.
        let mut cmd = Command::new("bash");
        cmd.args(["-c", r#"exec cat <&"$PROCWIRE_FD" >/dev/null"#]);
        let ch = cmd
            .channel_with(&Options::new().codec(CodecKind::Raw))
            .unwrap();
        children.push((cmd.spawn().unwrap(), ch));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for (child, ch) in &mut children {
        let (tx, rx) = std::mem::replace(ch, procwire::duplex().unwrap().0).split();
        drop(tx); // cat reads end of stream and exits, closing its end
        let left = deadline.saturating_duration_since(Instant::now());
        let e = rx.recv_timeout(left).unwrap_err();
        assert!(e.is_disconnected(), "child {}: {e}", child.id());
        assert_eq!(e.exit_status().map(|s| s.code()), Some(Some(0)), "{e}");
        assert!(child.wait().unwrap().success());
    }
}

#[test]
fn a_thousand_children_one_after_another() {
    checked(120, || {
        raise_fd_limit();
        spawn_and_check_eofs(1000);
        assert_eq!(zombies(), 0);
    });
}

#[test]
fn eight_threads_spawning_at_once() {
    raise_fd_limit();
    checked(120, || {
        let threads: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(|| spawn_and_check_eofs(60)))
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(zombies(), 0);
    });
}

#[test]
fn a_child_killed_mid_message_is_an_error_naming_the_signal() {
    checked(30, || {
        let (mut child, ch) = spawn_child::<(), ByteBuf>("child", "big_sender");
        // Wait until the frame has begun to arrive, then give the child time
        // to fill the socket buffer and block in the middle of it.
        let mut sel = procwire::Select::new();
        sel.recv(ch.receiver());
        sel.ready_timeout(Duration::from_secs(10)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        child.kill().unwrap();
        let e = ch.recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{e}");
        assert_eq!(
            e.exit_status().and_then(|s| s.signal()),
            Some(libc::SIGKILL)
        );
        assert!(e.to_string().contains("SIGKILL"), "{e}");
        assert_eq!(wait_deadline(&mut child, 10).signal(), Some(libc::SIGKILL));
    });
}

#[test]
fn a_child_that_exits_right_after_sending_256_kib_delivers_it_whole() {
    checked(30, || {
        let (mut child, ch) = spawn_child::<(), ByteBuf>("child", "send_and_exit");
        std::thread::sleep(Duration::from_millis(100)); // the child is gone or going
        let msg = ch.recv().unwrap();
        assert_eq!(msg.into_vec(), util::pattern(7, 256 << 10));
        let e = ch.recv().unwrap_err();
        assert!(e.is_disconnected(), "{e}");
        assert_eq!(wait_deadline(&mut child, 10).code(), Some(0));
    });
}

#[test]
fn a_dead_child_ends_a_wait_on_a_datagram_socket() {
    checked(30, || {
        let (ours, theirs) = procwire::socket_pair(Kind::Datagram).unwrap();
        let (mut child, ctl) = spawn_child::<(), ()>("child", "dgram_then_exit");
        ctl.send_with_fds((), &[theirs.as_fd()]).unwrap();
        drop(theirs);
        let ch = Options::new().duplex_from::<u8, u8>(ours).unwrap();
        ch.supervise(&child);
        assert_eq!(ch.recv().unwrap(), 1);
        // The kernel gives a datagram socket no end of file: only the pidfd
        // can end this wait.
        let started = Instant::now();
        let e = ch.recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeerExited, "{e}");
        assert_eq!(e.exit_status().and_then(|s| s.code()), Some(3));
        assert!(e.to_string().contains("exited with status 3"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(wait_deadline(&mut child, 10).code(), Some(3));
    });
}

#[test]
fn a_child_that_dies_before_its_first_message_is_an_error_at_once() {
    checked(30, || {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 4"]);
        let ch = cmd.channel::<u8, u8>().unwrap();
        let mut child = cmd.spawn().unwrap();
        let e = ch.recv().unwrap_err();
        assert!(e.is_disconnected(), "{e}");
        assert_eq!(e.exit_status().and_then(|s| s.code()), Some(4), "{e}");
        assert!(e.to_string().contains("exited with status 4"), "{e}");
        assert_eq!(child.wait().unwrap().code(), Some(4));
    });
}

#[test]
fn select_wakes_when_a_child_exits() {
    checked(30, || {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 0.1"]);
        let mut child = cmd.spawn().unwrap();
        let mut sel = procwire::Select::new();
        let i = sel.readable(&child);
        assert_eq!(sel.ready_timeout(Duration::from_secs(10)).unwrap(), i);
        assert!(child.try_wait().unwrap().unwrap().success());
    });
}

#[test]
fn dropping_a_child_kills_and_reaps_it() {
    checked(30, || {
        let mut cmd = Command::new("sleep");
        cmd.arg("1000");
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::PidfdFlags::empty(),
        )
        .unwrap();
        drop(child);
        assert_eq!(zombies(), 0);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(pidfd);
        // With kill_on_drop(false) it lives on, and is reaped when it ends.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 0.2"]);
        cmd.kill_on_drop(false);
        drop(cmd.spawn().unwrap());
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(zombies(), 0);
    });
}

#[test]
fn a_parent_killed_with_sigkill_leaves_no_child_behind() {
    checked(30, || {
        let (mut middle, ch) = spawn_child::<(), u32>("child", "middle");
        let grandchild = ch.recv().unwrap();
        // The grandchild gets SIGKILL from PR_SET_PDEATHSIG.
        assert!(
            util::orphan_dies_with(&mut middle, grandchild),
            "the grandchild lives on"
        );
    });
}

#[test]
fn fork_is_refused_in_a_multi_threaded_process() {
    checked(10, || {
        // checked() runs this on a second thread: the process has several.
        let e = procwire::fork((), |()| {}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.to_string().contains("threads"), "{e}");
    });
}

fn child_main(role: &str) {
    match role {
        "list_fds" => list_fds(),
        "big_sender" => {
            let ch = procwire::from_env::<ByteBuf, ()>().unwrap();
            let _ = ch.send(ByteBuf::from(vec![5u8; 32 << 20]));
            std::thread::sleep(Duration::from_secs(60));
        }
        "send_and_exit" => {
            let ch = procwire::from_env::<ByteBuf, ()>().unwrap();
            ch.send(ByteBuf::from(util::pattern(7, 256 << 10))).unwrap();
            std::process::exit(0);
        }
        "dgram_then_exit" => {
            let ctl = procwire::from_env::<(), ()>().unwrap();
            let (_, fds) = ctl.recv_with_fds().unwrap();
            let ch = Options::new()
                .duplex_from::<u8, u8>(fds.into_iter().next().unwrap())
                .unwrap();
            ch.send(1).unwrap();
            std::process::exit(3);
        }
        "middle" => {
            let ch = procwire::from_env::<u32, ()>().unwrap();
            let mut cmd = Command::new("sleep");
            cmd.arg("1000");
            let grandchild = cmd.spawn().unwrap();
            ch.send(grandchild.id()).unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
}

/// Entry point for the child processes of this file's tests.
#[test]
#[ignore = "runs only as a child process of other tests"]
fn child() {
    child_main(&util::role());
}

/// Issue 11, item 6: std's builder methods chain and keep procwire's
/// `Command`; `status` and `output` hand the channel over as `spawn` does;
/// a second spawn of a command whose channel went to a child is a clear
/// error, and a plain command spawns again.
#[test]
fn every_way_to_start_a_command_hands_the_channel_over() {
    checked(30, || {
        // `arg` returns procwire's Command: `channel` chains after it.
        let mut cmd = Command::new("sh");
        let _ch = cmd
            .arg("-c")
            .arg(r#"test -S "/proc/self/fd/$PROCWIRE_FD""#)
            .channel::<u8, u8>()
            .unwrap();
        assert!(cmd.status().unwrap().success(), "status(): the fd is open");

        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            r#"readlink "/proc/self/fd/$PROCWIRE_FD"; echo err >&2"#,
        ]);
        let _ch = cmd.channel::<u8, u8>().unwrap();
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("socket:["),
            "{out:?}"
        );
        assert_eq!(out.stderr, b"err\n");

        let e = cmd.spawn().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("new Command"), "{e}");

        let mut plain = Command::new("true");
        for _ in 0..3 {
            assert!(plain.status().unwrap().success());
        }
    });
}
