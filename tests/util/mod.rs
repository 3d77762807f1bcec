//! Helpers shared by the integration tests: fd counting, deadlines, and
//! re-running the test binary as a child process.

#![allow(dead_code)]

use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Open descriptors in this process.
pub fn fd_count() -> usize {
    // read_dir holds one descriptor of its own while it lists.
    std::fs::read_dir("/proc/self/fd").unwrap().count() - 1
}

/// What each open descriptor refers to, for a leak report.
pub fn fd_list() -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some(format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                target.display()
            ))
        })
        .collect();
    fds.sort();
    fds
}

/// Runs `f` on a thread and fails if it runs past `secs` seconds (a hang
/// fails, it does not stall CI) or if the number of open descriptors differs
/// afterwards.
pub fn checked<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let before = fd_count();
    let listed = fd_list();
    let (done_tx, done_rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let r = f();
        let _ = done_tx.send(());
        r
    });
    if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(Duration::from_secs(secs)) {
        panic!("the test did not finish within {secs} s: it hangs");
    }
    let r = match worker.join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    };
    // A helper thread (a TCP connection's heartbeat watcher) may hold an
    // end for a moment after the test dropped it: give it that moment. A
    // real leak stays.
    let settle = Instant::now() + Duration::from_secs(1);
    while fd_count() != before && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(5));
    }
    if fd_count() != before {
        panic!(
            "descriptors leaked: {before} before, {} after\nbefore: {listed:#?}\nafter: {:#?}",
            fd_count(),
            fd_list()
        );
    }
    r
}

/// The variable that tells a re-run test binary which child role to play.
pub const ROLE: &str = "PROCWIRE_TEST_ROLE";

/// A command that re-runs this test binary, running only the ignored test
/// `entry` (the file's child entry point) in the role `role`.
pub fn child_command(entry: &str, role: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        entry,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE, role);
    cmd
}

/// The role this process plays; panics when the entry point is run by hand.
pub fn role() -> String {
    std::env::var(ROLE).expect("this entry point runs only as a child of another test")
}

/// Starts the child entry `entry` in `role` with a channel (default
/// options) already connected.
pub fn spawn_child<Out, In>(entry: &str, role: &str) -> (procwire::Child, procwire::Duplex<Out, In>)
where
    Out: serde::Serialize,
    In: serde::de::DeserializeOwned,
{
    let mut cmd = procwire::Command::from(child_command(entry, role));
    let channel = cmd.channel().unwrap();
    (cmd.spawn().unwrap(), channel)
}

/// Waits for `child` at most `secs` seconds; past that it fails (and the
/// dropped handle kills and reaps the child).
pub fn wait_deadline(child: &mut procwire::Child, secs: u64) -> ExitStatus {
    match child.wait_timeout(Duration::from_secs(secs)).unwrap() {
        Some(status) => status,
        None => panic!("child {} did not exit within {secs} s", child.id()),
    }
}

/// Waits for a std child at most `secs` seconds; kills and reaps it past that.
pub fn wait_std(child: &mut Child, secs: u64) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} did not exit within {secs} s", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A payload whose bytes say which message it is and how long it is, so that
/// a torn, shortened or misplaced message is detected.
pub fn pattern(index: u32, len: usize) -> Vec<u8> {
    let seed = index.wrapping_mul(2_654_435_761);
    (0..len)
        .map(|i| (seed.wrapping_add(i as u32).wrapping_mul(31) >> 7) as u8)
        .collect()
}

/// Kills `parent` with SIGKILL and reports whether `orphan`, a process it
/// started, is gone within 10 s (its death signal must take it down).
pub fn orphan_dies_with(parent: &mut procwire::Child, orphan: u32) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let pid = rustix::process::Pid::from_raw(orphan as i32).unwrap();
    // A pidfd taken before the kill follows exactly this process.
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
    parent.kill().unwrap();
    wait_deadline(parent, 10);
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let ten = Timespec {
        tv_sec: 10,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&ten)).unwrap() == 1
}

/// Children of this process that are zombies (state Z in /proc/PID/stat).
pub fn zombies() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid ...: comm may hold spaces; split after ')'.
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let mut f = rest.split_whitespace();
            let state = f.next().unwrap_or("");
            let ppid = f.next().unwrap_or("");
            state == "Z" && ppid == me
        })
        .count()
}

/// A peer that writes JSON text by hand (raw codec) to a typed JSON
/// receiver of `u32`, over a socket pair of `kind`: for tests of what a
/// receiver does with text that is not what it expects.
pub fn json_text_peer(
    kind: procwire::Kind,
) -> (procwire::Sender<&'static str>, procwire::Receiver<u32>) {
    use procwire::{CodecKind, Options};
    let (a, b) = procwire::socket_pair(kind).unwrap();
    (
        Options::new().codec(CodecKind::Raw).sender_from(a).unwrap(),
        Options::new()
            .codec(CodecKind::Json)
            .receiver_from(b)
            .unwrap(),
    )
}

/// The python3 of the project's venv (made by scripts/test, with msgpack
/// and pyzmq), or `PROCWIRE_PYTHON`. Missing is a failure, never a skip.
pub fn python() -> std::path::PathBuf {
    let path = std::env::var_os("PROCWIRE_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3")
        });
    assert!(
        path.exists(),
        "{} is missing: run scripts/test (it creates the venv with msgpack and pyzmq), \
         or point PROCWIRE_PYTHON at a python3 that has them",
        path.display()
    );
    path
}

/// The long-run multiplier: `PROCWIRE_STRESS` (scripts/stress sets it; 1,
/// CI's short version, by default).
pub fn stress() -> u32 {
    std::env::var("PROCWIRE_STRESS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// A copy of an end's descriptor, as a leak or a hand-over by a route
/// procwire does not see would make one.
pub trait FdCopy {
    fn as_fd_copy(&self) -> std::os::fd::OwnedFd;
}

impl<T: std::os::fd::AsFd> FdCopy for T {
    fn as_fd_copy(&self) -> std::os::fd::OwnedFd {
        self.as_fd().try_clone_to_owned().unwrap()
    }
}

/// A multi-threaded tokio runtime with two workers, its I/O and time
/// drivers on: what the async tests run on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A current-thread tokio runtime, its I/O and time drivers on: where a
/// blocking call would hang everything, so the async tests run there too.
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The transports of the conformance suites (blocking and async).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum T {
    Pipe,
    Stream,
    Datagram,
    SeqPacket,
    UnixPath,
    Shm,
    Tcp,
}

impl T {
    pub fn carries_fds(self) -> bool {
        !matches!(self, T::Pipe | T::Shm | T::Tcp)
    }
    pub fn has_eof(self) -> bool {
        self != T::Datagram
    }
}

/// Two connected sockets through a Unix socket path (the path is gone once
/// they are connected).
pub fn unix_path_pair() -> (procwire::Socket, procwire::Socket) {
    let dir = tempfile::Builder::new()
        .prefix("pw")
        .tempdir_in("/tmp")
        .unwrap();
    let path = dir.path().join("s");
    let listener = procwire::UnixListener::bind(&path).unwrap();
    let client = procwire::Socket::connect(&path).unwrap();
    let server = listener.accept().unwrap();
    (client, server)
}

/// A `tcp://` connection on loopback: the client's and the server's ends.
pub fn tcp_pair(
    opts: &procwire::Net,
) -> (
    procwire::Duplex<procwire::ByteBuf, procwire::ByteBuf>,
    procwire::Duplex<procwire::ByteBuf, procwire::ByteBuf>,
) {
    let listener = opts.listen("tcp://127.0.0.1:0").unwrap();
    let client = opts.connect(&listener.endpoint().to_string()).unwrap();
    let server = listener.accept().unwrap();
    (client, server)
}

/// Both ends of a two-way conversation on `t`, as (sender, receiver)
/// halves: one socket (or ring pair) in both directions, or for a pipe,
/// one pipe each way.
pub type Halves = (
    procwire::Sender<procwire::ByteBuf>,
    procwire::Receiver<procwire::ByteBuf>,
);

pub fn two_way(t: T, o: &procwire::Options) -> (Halves, Halves) {
    let pair = |kind| {
        let (a, b) = procwire::SocketPair::new(kind)
            .options(o.clone())
            .duplex::<procwire::ByteBuf, procwire::ByteBuf>()
            .unwrap();
        (a.split(), b.split())
    };
    match t {
        T::Pipe => {
            let pipe = || procwire::Pipe::new().options(o.clone()).channel().unwrap();
            let ((tx1, rx1), (tx2, rx2)) = (pipe(), pipe());
            ((tx1, rx2), (tx2, rx1))
        }
        T::Stream => pair(procwire::Kind::Stream),
        T::Datagram => pair(procwire::Kind::Datagram),
        T::SeqPacket => pair(procwire::Kind::SeqPacket),
        T::Shm => {
            let (a, b) = procwire::Shm::new()
                .options(o.clone())
                .duplex::<procwire::ByteBuf, procwire::ByteBuf>()
                .unwrap();
            (a.split(), b.split())
        }
        T::UnixPath => {
            let (client, server) = unix_path_pair();
            let a = o
                .duplex_from::<procwire::ByteBuf, procwire::ByteBuf>(client)
                .unwrap();
            let b = o
                .duplex_from::<procwire::ByteBuf, procwire::ByteBuf>(server)
                .unwrap();
            (a.split(), b.split())
        }
        T::Tcp => {
            let o = procwire::Net::new().options(o.clone()).no_key();
            let (a, b) = tcp_pair(&o);
            (a.split(), b.split())
        }
    }
}

/// Starts the pyzmq (libzmq) peer of the ZeroMQ tests
/// (`tests/python/zmq_peer.py`) in `mode`; if it binds, returns the
/// address it printed (its first line).
pub fn pyzmq(mode: &str, how: &str, addr: &str, n: usize) -> (Child, Option<String>) {
    let mut child = std::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/zmq_peer.py"
        ))
        .args([mode, how, addr, &n.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let bound = (how == "bind").then(|| {
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        line.trim().to_string()
    });
    (child, bound)
}

/// Waits for the peer and returns the rest of its output.
pub fn finish(mut child: Child) -> String {
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    let status = wait_std(&mut child, 30);
    assert!(status.success(), "the pyzmq peer failed: {status}, {out}");
    out
}

pub mod nats;
#[allow(unused_imports)]
pub use nats::NatsServer;

/// CPU time the calling thread has used: what a test that a wait sleeps
/// reads (it counts only time on a CPU, so a loaded machine does not
/// inflate it).
pub fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}
