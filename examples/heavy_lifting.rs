//! The parent sends work, the child replies "… accomplished!": over a
//! DGRAM socket pair (the lesson's), a SEQPACKET one, and a framed stream.
//!
//! `cargo run --example heavy_lifting [dgram|seqpacket|stream]`

use std::os::fd::AsFd;

use procwire::{Duplex, Kind, Options, Socket, socket_pair};

const JOBS: [&str; 4] = [
    "Heavy lifting",
    "Heavy lifting",
    "Feather lifting",
    "Feather lifting",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "dgram".into());
    if args.next().as_deref() == Some("child") {
        return child(&mode);
    }
    let exe = std::env::current_exe()?;
    let mut cmd = procwire::Command::new(exe);
    cmd.args([mode.as_str(), "child"]);
    let ch = cmd.channel::<String, String>()?;
    let mut child = cmd.spawn()?;
    match mode.as_str() {
        "stream" => lift_with(&ch)?,
        "dgram" => {
            let (child_end, parent) = socket_pair(Kind::Datagram)?;
            ch.send_with_fds("yours".into(), &[child_end.as_fd()])?;
            drop(child_end);
            for job in JOBS {
                parent.send(job.as_bytes())?;
            }
            let mut buf = [0u8; 1000];
            for _ in 0..4 {
                let n = parent.recv(&mut buf)?;
                println!("{}", String::from_utf8_lossy(&buf[..n]));
            }
        }
        "seqpacket" => {
            let (child_end, parent) = socket_pair(Kind::SeqPacket)?;
            ch.send_with_fds("yours".into(), &[child_end.as_fd()])?;
            drop(child_end);
            lift_with(&Options::new().duplex_from(parent)?)?;
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    drop(ch);
    assert!(child.wait()?.success());
    Ok(())
}

fn lift_with(ch: &Duplex<String, String>) -> Result<(), Box<dyn std::error::Error>> {
    for job in JOBS {
        ch.send(job.into())?;
    }
    for _ in 0..4 {
        println!("{}", ch.recv()?);
    }
    Ok(())
}

fn child(mode: &str) -> Result<(), Box<dyn std::error::Error>> {
    let ch = procwire::from_env::<String, String>()?;
    let worker: Duplex<String, String> = match mode {
        "stream" => ch,
        "dgram" => {
            let (_, fds) = ch.recv_with_fds()?;
            let socket = Socket::from_fd(fds.into_iter().next().ok_or("no fd")?)?;
            let mut buf = [0u8; 1000];
            for _ in 0..4 {
                let n = socket.recv(&mut buf)?;
                let job = String::from_utf8_lossy(&buf[..n]);
                socket.send(format!("{job} accomplished!").as_bytes())?;
            }
            return Ok(());
        }
        _ => {
            let (_, fds) = ch.recv_with_fds()?;
            Options::new().duplex_from(fds.into_iter().next().ok_or("no fd")?)?
        }
    };
    for job in worker.iter() {
        worker.send(format!("{} accomplished!", job?))?;
    }
    Ok(())
}
