//! `procwire tap`: sits in the middle of a channel, passing every byte and
//! descriptor through unchanged, and prints each message it sees.
//!
//! `procwire tap -- CMD` is started by a procwire parent in place of CMD:
//! it takes the socket the parent handed it (`PROCWIRE_FD`: a stream,
//! SEQPACKET or datagram socket; a shared-memory channel has no socket to
//! relay, so it cannot be tapped transparently), starts CMD with a new
//! socket pair of the same kind and the same codec, and relays both ways.
//! `procwire tap --listen unix:A --connect unix:B` relays between two Unix
//! endpoints instead (one connection). Descriptors travel with the bytes
//! they came with: on a stream socket the kernel never merges a read
//! across them, so each chunk goes out as it came in.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use procwire::{CodecKind, Kind, Socket};

use crate::wire::Any;

/// The largest frame the tap assembles to show; a larger announced frame
/// is reported and the rest of that direction passes through unparsed (the
/// tap never allocates what a peer claims).
const SHOW_MAX: usize = 64 << 20;
/// The 8-byte marker of a message sent out of line in a memfd (wire format
/// section 3), followed by its length, and in a spill file's announcement
/// (version 4) by the kind byte [`SPILL`].
const OUT_OF_LINE: [u8; 8] = [0xFF, 0x70, 0x77, 0x6D, 0x65, 0x6D, 0x66, 0x64];
/// The kind byte of a message in the sender's spill file.
const SPILL: u8 = 1;

/// Where the messages are printed, and how payloads are shown.
struct Show {
    out: Mutex<Box<dyn Write + Send>>,
    start: Instant,
    codec: CodecKind,
}

impl Show {
    fn message(&self, dir: &str, payload: &[u8], fds: usize) {
        let body = match self.codec {
            CodecKind::MsgPack | CodecKind::Json => match self.codec.decode::<Any>(payload) {
                Ok(Any(v)) => v.to_string(),
                Err(e) => format!("(does not decode: {e}) {}", hex(payload)),
            },
            _ => hex(payload),
        };
        self.line(dir, &format!("{} B{} {body}", payload.len(), fds_note(fds)));
    }

    fn line(&self, dir: &str, what: &str) {
        let t = self.start.elapsed().as_secs_f64();
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "{t:>12.6}s {dir} {what}");
        let _ = out.flush();
    }
}

fn fds_note(fds: usize) -> String {
    match fds {
        0 => String::new(),
        1 => " +1 fd".into(),
        n => format!(" +{n} fds"),
    }
}

/// The first 64 bytes in hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    let mut s: String = bytes.iter().take(64).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 64 {
        s.push('…');
    }
    s
}

/// The frames of one direction of a byte stream, assembled for showing.
struct Frames {
    pending: Vec<u8>,
    /// Descriptors that came with the chunk where the next frame starts.
    fds: usize,
    /// A frame too large to show was announced: show nothing more.
    blind: bool,
}

impl Frames {
    fn feed(&mut self, chunk: &[u8], fds: usize, dir: &str, show: &Show) {
        if self.blind {
            return;
        }
        if self.pending.is_empty() {
            self.fds = 0;
        }
        self.fds += fds;
        self.pending.extend_from_slice(chunk);
        loop {
            let Some(prefix) = self.pending.first_chunk::<4>() else {
                return;
            };
            let len = u32::from_be_bytes(*prefix) as usize;
            if len > SHOW_MAX {
                show.line(
                    dir,
                    &format!(
                        "a frame of {len} bytes is announced (not shown: over {SHOW_MAX}); the \
                         rest of this direction passes through unshown"
                    ),
                );
                self.blind = true;
                self.pending = Vec::new();
                return;
            }
            if self.pending.len() < 4 + len {
                return;
            }
            show.message(dir, &self.pending[4..4 + len], self.fds);
            self.fds = 0;
            self.pending.drain(..4 + len);
        }
    }
}

/// Relays `from` to `to` until the end of `from`'s stream, showing each
/// message; the end goes on to `to` (a shutdown of its writing side).
fn relay(from: &Socket, to: &Socket, dir: &str, show: &Show) -> io::Result<()> {
    let stream = from.kind() == Kind::Stream;
    // A message socket delivers whole datagrams: room for the largest.
    let mut buf = vec![0u8; if stream { 256 << 10 } else { 8 << 20 }];
    let mut frames = Frames {
        pending: Vec::new(),
        fds: 0,
        blind: false,
    };
    loop {
        let (n, fds) = from.recv_with_fds(&mut buf)?;
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
        if n == 0 && fds.is_empty() && from.kind() != Kind::Datagram {
            // The end of the stream (an empty SEQPACKET datagram is the
            // end too, wire format section 3).
            show.line(dir, "end of stream");
            let _ = to.shutdown(std::net::Shutdown::Write);
            return Ok(());
        }
        // Shown first, then passed on: the line is written before the
        // other side can act on what it says.
        if stream {
            frames.feed(&buf[..n], fds.len(), dir, show);
            let mut sent = to.send_with_fds(&buf[..n], &borrowed)?;
            while sent < n {
                sent += to.send(&buf[sent..n])?;
            }
        } else {
            let m = &buf[..n];
            let kind = match m.get(12..) {
                Some([]) => Some("a memfd"),
                Some([SPILL]) => Some("the sender's spill file"),
                _ => None,
            };
            if let Some(kind) = kind.filter(|_| m.starts_with(&OUT_OF_LINE)) {
                let len = u32::from_be_bytes([m[8], m[9], m[10], m[11]]);
                show.line(
                    dir,
                    &format!("{len} B out of line, in {kind}{}", fds_note(fds.len())),
                );
            } else {
                show.message(dir, m, fds.len());
            }
            to.send_with_fds(m, &borrowed)?;
        }
        // Ours are closed here: the peer has its own copies.
        drop(borrowed);
        drop(fds);
    }
}

/// Where the lines go: `--out FILE`, or stderr.
fn output(out: Option<&std::path::Path>) -> Result<Box<dyn Write + Send>> {
    Ok(match out {
        Some(p) => Box::new(io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(io::stderr()),
    })
}

/// Relays `a` and `b` both ways, on two threads; returns once `b`'s side
/// (the child's, or the connected endpoint's) has ended.
fn both_ways(a: Socket, b: Socket, names: [&'static str; 2], show: Arc<Show>) -> Result<()> {
    let (a2, b2) = (a.try_clone()?, b.try_clone()?);
    let show2 = Arc::clone(&show);
    std::thread::spawn(move || {
        if let Err(e) = relay(&a2, &b2, names[0], &show2) {
            show2.line(names[0], &format!("relay stopped: {e}"));
        }
    });
    if let Err(e) = relay(&b, &a, names[1], &show) {
        show.line(names[1], &format!("relay stopped: {e}"));
    }
    Ok(())
}

/// `procwire tap -- CMD`: CMD's status is the tap's (a signal that ended
/// CMD ends the tap too).
pub fn run_command(out: Option<&std::path::Path>, command: &[String]) -> Result<ExitCode> {
    let Some((program, args)) = command.split_first() else {
        bail!("no command: procwire tap -- CMD [ARGS...]");
    };
    let (upstream, codec) = procwire::socket_from_env().context(
        "procwire tap -- CMD runs in place of CMD, started by a procwire parent with a channel",
    )?;
    let kind = upstream.kind();
    let (ours, theirs) = procwire::socket_pair(kind)?;
    let ours_clone = ours.try_clone()?;
    let mut cmd = procwire::Command::new(program);
    cmd.args(args);
    let fd = cmd.inherit(theirs);
    for (k, v) in procwire::child_env(fd, codec) {
        cmd.env(k, v);
    }
    let show = Arc::new(Show {
        out: Mutex::new(output(out)?),
        start: Instant::now(),
        codec,
    });
    let mut child = cmd.spawn().with_context(|| format!("starting {program}"))?;
    drop(cmd); // its end is the child's alone now
    let relaying = {
        let show = Arc::clone(&show);
        std::thread::spawn(move || both_ways(upstream, ours, ["→ cmd", "← cmd"], show))
    };
    let watch = ours_clone;
    let status = child.wait()?;
    // What the child sent before it ended is passed on before the tap
    // goes: a stream or SEQPACKET socket ends, a datagram socket has no
    // end, so it is drained (its queue empty) instead.
    if kind == Kind::Datagram {
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while rustix::io::ioctl_fionread(&watch).unwrap_or(0) > 0 && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    } else {
        let _ = relaying.join();
    }
    if let Some(sig) = status.signal() {
        show.line("cmd", &format!("ended by signal {sig}"));
        // The same end as the command's, for whoever waits for the tap.
        let _ = rustix::process::kill_process(
            rustix::process::getpid(),
            rustix::process::Signal::from_named_raw(sig).unwrap_or(rustix::process::Signal::KILL),
        );
    }
    show.line("cmd", &format!("exited with {status}"));
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

/// `procwire tap --listen A --connect B`: one connection at A, relayed to
/// a connection to B, until both ends close. Between two `unix:` endpoints
/// the relay is of bytes and descriptors, exact. With a `tcp://` one, whose
/// session is encrypted end to end, the tap is a party to each session
/// (with the key of the environment, as any procwire end) and relays the
/// messages, each whole and unchanged.
pub fn run_proxy(
    out: Option<&std::path::Path>,
    listen: &str,
    connect: &str,
    codec: CodecKind,
) -> Result<ExitCode> {
    let show = Arc::new(Show {
        out: Mutex::new(output(out)?),
        start: Instant::now(),
        codec,
    });
    let (from, to): (procwire::Endpoint, procwire::Endpoint) = (listen.parse()?, connect.parse()?);
    if let (procwire::Endpoint::Unix(at), procwire::Endpoint::Unix(to)) = (&from, &to) {
        let listener =
            procwire::UnixListener::bind(at).with_context(|| format!("listening at {listen}"))?;
        eprintln!("procwire tap: listening at {listen}");
        let a = listener.accept()?;
        let b = Socket::connect(to).with_context(|| format!("connecting to {connect}"))?;
        both_ways(a, b, ["→ connect", "← connect"], show)?;
        return Ok(ExitCode::SUCCESS);
    }
    // Messages, each as the raw bytes of its payload.
    let net = procwire::Net::new().codec(CodecKind::Raw);
    let listener = crate::wire::at(net.listen(listen), "listening at", listen)?;
    eprintln!("procwire tap: listening at {}", listener.endpoint());
    let a: procwire::Duplex<procwire::ByteBuf, procwire::ByteBuf> = listener.accept()?;
    let b: procwire::Duplex<procwire::ByteBuf, procwire::ByteBuf> =
        crate::wire::at(net.connect(connect), "connecting to", connect)?;
    let (a_tx, a_rx) = a.split();
    let (b_tx, b_rx) = b.split();
    let relay = |rx: procwire::Receiver<procwire::ByteBuf>,
                 tx: procwire::Sender<procwire::ByteBuf>,
                 dir: &'static str,
                 show: Arc<Show>| {
        move || {
            for m in rx.iter() {
                let Ok(m) = m else { break };
                show.message(dir, &m, 0);
                if tx.send(m).is_err() {
                    break;
                }
            }
            show.line(dir, "end of stream");
        }
    };
    let there = std::thread::spawn(relay(a_rx, b_tx, "→ connect", Arc::clone(&show)));
    relay(b_rx, a_tx, "← connect", show)();
    let _ = there.join();
    Ok(ExitCode::SUCCESS)
}
