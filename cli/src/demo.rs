//! `procwire demo`: each scenario of the lesson across real processes,
//! narrated and checked.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use procwire::{
    Child, Duplex, ErrorKind, Kind, Options, PipeWriter, Socket, from_env, pipe, socket_pair,
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
        "writer-open",
        "A reader waits while any writer is open",
        writer_open,
    ),
    ("sharing", "Sharing a pipe with a child", sharing),
    (
        "dgram",
        "Socket pair (DGRAM): the parent's instructions, the child's replies",
        dgram,
    ),
    ("seqpacket", "The same over SEQPACKET, typed", seqpacket),
    (
        "stream",
        "The same over a framed stream (the child's PROCWIRE_FD)",
        stream,
    ),
    (
        "hostile",
        "A hostile peer: a 4 GiB length, then death mid-frame",
        hostile,
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
        bail!("no scenario matches {:?}", only.unwrap_or_default());
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

/// Waits for the child (at most 10 s, then kills it) and checks it succeeded.
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

fn writer_open(n: &mut Narrator) -> Result<()> {
    let (reader, writer) = pipe()?;
    let rx = Options::new().receiver::<String>(reader)?;
    let (child, ctl) = spawn("hold-writer")?;
    ctl.send_with_fds("keep this".into(), &[writer.as_fd()])?;
    drop(writer);
    ensure!(
        ctl.recv()? == "holding",
        "the child did not take the writer"
    );
    say!(
        n,
        "   parent closed its writer; child {} still holds a copy",
        child.id()
    );
    match rx.recv_timeout(Duration::from_millis(300)) {
        Err(e) if e.kind() == ErrorKind::Timeout => {
            say!(
                n,
                "   parent: recv_timeout(300 ms) -> Timeout: no EOF while a writer is open"
            )
        }
        other => bail!("expected a timeout, got {other:?}"),
    }
    ctl.send("close it".into())?;
    ensure!(
        ctl.recv()? == "closed",
        "the child did not close the writer"
    );
    match rx.recv_timeout(Duration::from_secs(10)) {
        Err(e) if e.is_disconnected() => {
            say!(
                n,
                "   child closed the last writer -> the reader is released: end of stream"
            )
        }
        other => bail!("expected end of stream, got {other:?}"),
    }
    drop(ctl);
    reap(n, child)
}

fn sharing(n: &mut Narrator) -> Result<()> {
    let (reader, writer) = pipe()?;
    let (child, ctl) = spawn("ten-lines")?;
    ctl.send_with_fds("your end".into(), &[writer.as_fd()])?;
    drop(writer);
    say!(
        n,
        "   parent handed the write end to child {} and closed its own",
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
    drop(ctl);
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
            *reply == format!("{job} accomplished!"),
            "unexpected reply {reply:?}"
        );
    }
    ensure!(replies.len() == 4, "expected 4 replies");
    Ok(())
}

fn dgram(n: &mut Narrator) -> Result<()> {
    let (child_end, parent) = socket_pair(Kind::Datagram)?;
    let (child, ctl) = spawn("dgram-worker")?;
    ctl.send_with_fds("your end".into(), &[child_end.as_fd()])?;
    drop(child_end);
    for job in JOBS {
        parent.send(job.as_bytes())?;
    }
    say!(
        n,
        "   parent sent \"Heavy lifting\" twice and \"Feather lifting\" twice"
    );
    let mut replies = Vec::new();
    let mut buf = [0u8; 1000];
    for _ in 0..4 {
        let len = parent.recv(&mut buf)?;
        replies.push(String::from_utf8(buf[..len].to_vec())?);
    }
    check_replies(n, &replies)?;
    drop(ctl);
    reap(n, child)
}

fn typed_exchange(n: &mut Narrator, ch: &Duplex<String, String>) -> Result<()> {
    for job in JOBS {
        ch.send(job.into())?;
    }
    let replies = (0..4)
        .map(|_| ch.recv_timeout(Duration::from_secs(10)))
        .collect::<procwire::Result<Vec<_>>>()?;
    check_replies(n, &replies)
}

fn seqpacket(n: &mut Narrator) -> Result<()> {
    let (child_end, parent) = socket_pair(Kind::SeqPacket)?;
    let (child, ctl) = spawn("seqpacket-worker")?;
    ctl.send_with_fds("your end".into(), &[child_end.as_fd()])?;
    drop(child_end);
    let parent = Options::new().duplex_from::<String, String>(parent)?;
    typed_exchange(n, &parent)?;
    drop(parent);
    say!(
        n,
        "   parent closed its end: the child's loop ends at end of stream"
    );
    drop(ctl);
    reap(n, child)
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

fn hostile(n: &mut Narrator) -> Result<()> {
    let (child_end, ours) = socket_pair(Kind::Stream)?;
    let rx = Options::new().receiver::<String>(ours)?;
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

/// The child's side of every scenario.
pub fn child(role: &str) -> Result<()> {
    let ctl = from_env::<String, String>()?;
    if role == "stream-worker" {
        return lift(ctl);
    }
    let (_, fds) = ctl.recv_with_fds()?;
    let fd = fds.into_iter().next().context("no descriptor came")?;
    match role {
        "hold-writer" => {
            let writer = PipeWriter::from_fd(fd)?;
            ctl.send("holding".into())?;
            ensure!(ctl.recv()? == "close it");
            drop(writer);
            ctl.send("closed".into())?;
        }
        "ten-lines" => {
            let mut writer = PipeWriter::from_fd(fd)?;
            for _ in 0..10 {
                writeln!(writer, "Another one bites the dust")?;
            }
        }
        "dgram-worker" => {
            let socket = Socket::from_fd(fd)?;
            let mut buf = [0u8; 1000];
            for _ in 0..4 {
                let len = socket.recv(&mut buf)?;
                let job = std::str::from_utf8(&buf[..len])?;
                socket.send(format!("{job} accomplished!").as_bytes())?;
            }
        }
        "seqpacket-worker" => lift(Options::new().duplex_from(fd)?)?,
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

/// Answers every job with "… accomplished!" until the parent closes.
fn lift(ch: Duplex<String, String>) -> Result<()> {
    for job in ch.iter() {
        ch.send(format!("{} accomplished!", job?))?;
    }
    Ok(())
}
