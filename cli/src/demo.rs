//! `procwire demo`: the lesson "Processes Can Communicate", scenario by
//! scenario, across real processes, narrated and checked.
//!
//! The scenarios that `fork` run first: `fork` needs a single-threaded
//! process, and the last scenario's fork server starts a reader thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use procwire::{
    ByteBuf, Child, CodecKind, Duplex, ErrorKind, How, Kind, Options, PipeWriter, Socket,
    SocketPair, from_env, pipe, socket_pair,
};

/// Writes narration to stdout; a closed stdout ends the narration quietly.
struct Narrator {
    out: std::io::Stdout,
    closed: bool,
}

impl Narrator {
    fn say(&mut self, line: std::fmt::Arguments<'_>) {
        if !self.closed && writeln!(self.out, "{line}").is_err() {
            self.closed = true;
        }
    }
}

macro_rules! say {
    ($n:expr, $($arg:tt)*) => { $n.say(format_args!($($arg)*)) };
}

type Scenario = fn(&mut Narrator) -> Result<()>;

const SCENARIOS: &[(&str, &str, Scenario)] = &[
    (
        "first-pipe",
        "Our first pipe: write, close the writer, read",
        first_pipe,
    ),
    (
        "forgotten-writer",
        "The forgotten writer: a hang, shown under a deadline, then cured",
        forgotten_writer,
    ),
    (
        "sharing",
        "fork: a child writes to its parent through a shared pipe",
        sharing,
    ),
    (
        "dgram",
        "Socket pair (DGRAM): the parent's instructions, the child's replies",
        dgram,
    ),
    (
        "two-workers",
        "Request/reply with two forked workers (SEQPACKET)",
        two_workers,
    ),
    (
        "stream",
        "Another program, its channel found through PROCWIRE_FD",
        stream,
    ),
    (
        "python",
        "A Python child (the reference peer) as a worker",
        python,
    ),
    (
        "sibling-pipe",
        "A pipe end passed over sockets to two sibling processes",
        sibling_pipe,
    ),
    (
        "hostile",
        "A hostile peer: a 4 GiB length, then death mid-frame",
        hostile,
    ),
    (
        "tasks",
        "One function, three ways to start it: fork, re-exec, fork server",
        tasks,
    ),
];

/// Runs the scenarios; the exit code says whether every check held.
pub fn run(only: Option<&str>) -> Result<ExitCode> {
    let mut n = Narrator {
        out: std::io::stdout(),
        closed: false,
    };
    let (mut passed, mut failed) = (0, 0);
    for (name, title, scenario) in SCENARIOS {
        if only.is_some_and(|o| !name.contains(o)) {
            continue;
        }
        say!(n, "\n== {title} [{name}]");
        let started = Instant::now();
        match scenario(&mut n) {
            Ok(()) => {
                passed += 1;
                say!(n, "   ok ({:.1} ms)", started.elapsed().as_secs_f64() * 1e3);
            }
            Err(e) => {
                failed += 1;
                say!(n, "   FAILED: {e:#}");
            }
        }
    }
    if passed + failed == 0 {
        return Err(crate::Usage(format!(
            "no scenario matches {:?}",
            only.unwrap_or_default()
        ))
        .into());
    }
    say!(n, "\ndemo: {passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Starts `procwire __child ROLE` with a channel already connected.
fn spawn(role: &str) -> Result<(Child, Duplex<String, String>)> {
    let exe = std::env::current_exe().context("finding this program")?;
    let mut cmd = procwire::Command::new(exe);
    cmd.args(["__child", role]);
    let channel = cmd.channel()?;
    Ok((cmd.spawn()?, channel))
}

/// Waits for the child (at most 10 s, then kills it) and checks its status.
fn reap(n: &mut Narrator, mut child: Child) -> Result<()> {
    let Some(status) = child.wait_timeout(Duration::from_secs(10))? else {
        bail!("child {} did not exit within 10 s; killed", child.id());
    };
    say!(n, "   parent: reaped child {} ({status})", child.id());
    ensure!(status.success(), "the child failed: {status}");
    Ok(())
}

fn first_pipe(n: &mut Narrator) -> Result<()> {
    let (mut reader, mut writer) = pipe()?;
    writer.write_all(b"Into the pipe I go...")?;
    say!(
        n,
        "   wrote \"Into the pipe I go...\" into the writer, then closed it"
    );
    drop(writer);
    let mut text = String::new();
    reader.read_to_string(&mut text)?;
    say!(
        n,
        "   reader.read_to_string -> {text:?} (EOF arrived: the writer is closed)"
    );
    ensure!(text == "Into the pipe I go...", "read {text:?}");
    say!(
        n,
        "   (pipes are one-way: PipeReader has no write method, so writing into it does not compile)"
    );
    Ok(())
}

fn forgotten_writer(n: &mut Narrator) -> Result<()> {
    let (tx, rx) = procwire::channel::<String>()?;
    // The child gets a copy of the writer; the parent forgets to drop its own.
    let child = procwire::fork(tx.clone(), |tx| {
        for i in 1..=3 {
            tx.send(format!("line {i}")).unwrap();
        }
    })?;
    say!(
        n,
        "   child {} writes 3 lines and exits; the parent still holds its writer",
        child.id()
    );
    let mut got = 0;
    loop {
        match rx.recv_timeout(Duration::from_millis(300)) {
            Ok(line) => {
                got += 1;
                say!(n, "   parent read: {line}");
            }
            Err(e) if e.kind() == ErrorKind::Timeout => {
                say!(
                    n,
                    "   parent: no EOF after 300 ms -- without a deadline this read would hang forever"
                );
                break;
            }
            Err(e) => bail!("unexpected: {e}"),
        }
    }
    ensure!(got == 3, "expected 3 lines, got {got}");
    drop(tx);
    say!(n, "   the cure: the parent closes its writer");
    let e = rx
        .recv_timeout(Duration::from_secs(10))
        .err()
        .context("expected the end")?;
    ensure!(e.is_disconnected(), "expected end of stream, got {e}");
    say!(n, "   parent: {e}");
    reap(n, child)
}

fn sharing(n: &mut Narrator) -> Result<()> {
    let (reader, writer) = pipe()?;
    // fork do ... end: the child gets the writer only; the parent keeps the
    // reader only (fork closes the unused ends on both sides).
    let child = procwire::fork(writer, |mut w| {
        for _ in 0..10 {
            writeln!(w, "Another one bites the dust").unwrap();
        }
    })?;
    say!(
        n,
        "   forked child {}; each side holds only its own end",
        child.id()
    );
    let mut count = 0;
    for line in BufReader::new(reader).lines() {
        let line = line?;
        count += 1;
        say!(n, "   parent read: {line}");
        ensure!(
            line == "Another one bites the dust",
            "unexpected line {line:?}"
        );
    }
    say!(n, "   EOF after {count} lines");
    ensure!(count == 10, "expected 10 lines, got {count}");
    reap(n, child)
}

const JOBS: [&str; 4] = [
    "Heavy lifting",
    "Heavy lifting",
    "Feather lifting",
    "Feather lifting",
];

fn check_replies(n: &mut Narrator, replies: &[String]) -> Result<()> {
    for (job, reply) in JOBS.iter().zip(replies) {
        say!(n, "   {reply}");
        ensure!(
            reply.starts_with(&format!("{job} accomplished!")),
            "unexpected reply {reply:?}"
        );
    }
    ensure!(replies.len() == 4, "expected 4 replies");
    Ok(())
}

fn dgram(n: &mut Narrator) -> Result<()> {
    let (child_end, parent) = socket_pair(Kind::Datagram)?;
    let child = procwire::fork(child_end, |socket| {
        let mut buf = [0u8; 1000];
        for _ in 0..4 {
            let len = socket.recv(&mut buf).unwrap();
            let job = String::from_utf8_lossy(&buf[..len]).into_owned();
            socket
                .send(format!("{job} accomplished!").as_bytes())
                .unwrap();
        }
    })?;
    for job in JOBS {
        parent.send(job.as_bytes())?;
    }
    say!(
        n,
        "   parent sent \"Heavy lifting\" twice and \"Feather lifting\" twice to child {}",
        child.id()
    );
    let mut replies = Vec::new();
    let mut buf = [0u8; 1000];
    for _ in 0..4 {
        let len = parent.recv(&mut buf)?;
        replies.push(String::from_utf8(buf[..len].to_vec())?);
    }
    check_replies(n, &replies)?;
    reap(n, child)
}

fn lift(ch: Duplex<String, String>) {
    for job in ch.iter() {
        let job = job.unwrap();
        ch.send(format!(
            "{job} accomplished! (worker {})",
            std::process::id()
        ))
        .unwrap();
    }
}

fn two_workers(n: &mut Narrator) -> Result<()> {
    let opts = Options::new();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let (ours, theirs) = SocketPair::new(Kind::SeqPacket)
            .options(opts.clone())
            .duplex::<String, String>()?;
        let child = procwire::fork(theirs, lift)?;
        ours.supervise(&child);
        workers.push((child, ours));
    }
    for (i, job) in JOBS.iter().enumerate() {
        workers[i % 2].1.send(job.to_string())?;
    }
    let replies = (0..4)
        .map(|i| workers[i % 2].1.recv_timeout(Duration::from_secs(10)))
        .collect::<Result<Vec<_>, _>>()?;
    check_replies(n, &replies)?;
    let pids: Vec<u32> = workers.iter().map(|(c, _)| c.id()).collect();
    for (i, reply) in replies.iter().enumerate() {
        ensure!(
            reply.contains(&pids[i % 2].to_string()),
            "reply {i} came from the wrong worker"
        );
    }
    for (child, ch) in workers {
        drop(ch);
        reap(n, child)?;
    }
    Ok(())
}

fn typed_exchange(n: &mut Narrator, ch: &Duplex<String, String>) -> Result<()> {
    for job in JOBS {
        ch.send(job.into())?;
    }
    let replies = (0..4)
        .map(|_| ch.recv_timeout(Duration::from_secs(10)))
        .collect::<Result<Vec<_>, _>>()?;
    check_replies(n, &replies)
}

fn stream(n: &mut Narrator) -> Result<()> {
    let (child, ch) = spawn("stream-worker")?;
    say!(
        n,
        "   child {} found its channel through PROCWIRE_FD",
        child.id()
    );
    typed_exchange(n, &ch)?;
    drop(ch);
    reap(n, child)
}

fn python(n: &mut Narrator) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("procwire-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("procwire.py"),
        include_str!("../../peers/python/procwire.py"),
    )?;
    let result = (|| {
        let mut cmd = procwire::Command::new("python3");
        cmd.arg("-c").arg(format!(
            "import os, sys\nsys.path.insert(0, {:?})\nimport procwire\n\
             ch = procwire.Channel.from_env()\n\
             for job in ch:\n    ch.send(job + b' accomplished! (python %d)' % os.getpid())\n",
            dir.display().to_string()
        ));
        let ch = cmd.channel_with::<ByteBuf, ByteBuf>(&Options::new().codec(CodecKind::Raw))?;
        let child = cmd.spawn().context("starting python3")?;
        say!(
            n,
            "   python3 child {} speaks the wire format with the reference peer",
            child.id()
        );
        for job in JOBS {
            ch.send(ByteBuf::from(job.as_bytes().to_vec()))?;
        }
        let replies = (0..4)
            .map(|_| {
                let r = ch.recv_timeout(Duration::from_secs(10))?;
                Ok(String::from_utf8_lossy(&r).into_owned())
            })
            .collect::<Result<Vec<_>>>()?;
        check_replies(n, &replies)?;
        drop(ch);
        reap(n, child)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn sibling_pipe(n: &mut Narrator) -> Result<()> {
    let (reader, writer) = pipe()?;
    let (writer_child, to_writer) = spawn("sibling-writer")?;
    let (reader_child, to_reader) = spawn("sibling-reader")?;
    to_writer.send_with_fds("write end".into(), &[writer.as_fd()])?;
    to_reader.send_with_fds("read end".into(), &[reader.as_fd()])?;
    drop((reader, writer));
    say!(
        n,
        "   parent passed the write end to {} and the read end to {}, and closed both",
        writer_child.id(),
        reader_child.id()
    );
    let heard = to_reader.recv_timeout(Duration::from_secs(10))?;
    say!(n, "   reader sibling heard: {heard}");
    ensure!(
        heard == format!("hello from {}", writer_child.id()),
        "unexpected {heard:?}"
    );
    drop((to_writer, to_reader));
    reap(n, writer_child)?;
    reap(n, reader_child)
}

fn hostile(n: &mut Narrator) -> Result<()> {
    let (child_end, ours) = socket_pair(Kind::Stream)?;
    let rx = Options::new().receiver_from::<String>(ours)?;
    let (child, ctl) = spawn("hostile")?;
    ctl.send_with_fds("your end".into(), &[child_end.as_fd()])?;
    drop(child_end);
    let e = rx.recv_timeout(Duration::from_secs(10)).err();
    let e = e.context("the hostile frame was accepted")?;
    ensure!(
        e.kind() == ErrorKind::FrameTooLarge,
        "expected FrameTooLarge, got {e}"
    );
    say!(n, "   parent: {e}");
    let e = rx.recv_timeout(Duration::from_secs(10)).err();
    let e = e.context("a frame cut by the peer's death was accepted")?;
    ensure!(
        e.kind() == ErrorKind::UnexpectedEof,
        "expected UnexpectedEof, got {e}"
    );
    say!(n, "   parent: {e}");
    drop(ctl);
    reap(n, child)
}

/// The function the `tasks` scenario runs in its children.
fn task_worker(tag: String, ch: Duplex<String, String>) {
    for job in ch.iter() {
        ch.send(format!("{} accomplished! ({tag})", job.unwrap()))
            .unwrap();
    }
}

fn tasks(n: &mut Narrator) -> Result<()> {
    // Fork first: it needs this process to have a single thread, and the
    // fork server's reader thread starts with the first server task.
    for how in [How::Fork, How::Reexec, How::Server] {
        let started = Instant::now();
        let (child, ch) = procwire::task(task_worker, format!("{how:?}"))
            .via(how)
            .spawn()?;
        let reply = ch.request("Heavy lifting".into())?;
        let took = started.elapsed();
        say!(
            n,
            "   {how:?}: child {} answered {reply:?} {:.2} ms after the start",
            child.id(),
            took.as_secs_f64() * 1e3
        );
        ensure!(
            reply == format!("Heavy lifting accomplished! ({how:?})"),
            "unexpected {reply:?}"
        );
        drop(ch);
        reap(n, child)?;
    }
    Ok(())
}

/// The child's side of the scenarios that start this program again.
pub fn child(role: &str) -> Result<()> {
    let ctl = from_env::<String, String>()?;
    if role == "stream-worker" {
        lift(ctl);
        return Ok(());
    }
    let (_, fds) = ctl.recv_with_fds()?;
    let fd = fds.into_iter().next().context("no descriptor came")?;
    match role {
        "sibling-writer" => {
            let mut w = PipeWriter::from_fd(fd)?;
            writeln!(w, "hello from {}", std::process::id())?;
        }
        "sibling-reader" => {
            let mut line = String::new();
            BufReader::new(procwire::PipeReader::from_fd(fd)?).read_line(&mut line)?;
            ctl.send(line.trim_end().to_string())?;
        }
        "hostile" => {
            let mut socket = Socket::from_fd(fd)?;
            // A length prefix claiming 4 GiB, a little of it, then a frame
            // cut short by the process exiting.
            socket.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3])?;
            socket.shutdown(std::net::Shutdown::Write)?;
        }
        other => bail!("unknown role {other}"),
    }
    Ok(())
}
