//! The lesson's examples with one side in Rust and the other in Ruby
//! (`examples/ruby/*.rb`, on the Ruby peer `peers/ruby/procwire.rb`), in
//! MessagePack, the cross-language codec.
//!
//! ```text
//! cargo run --example ruby_lesson -- SCENARIO parent   # Rust parent, Ruby child
//! ruby examples/ruby/SCENARIO.rb parent target/debug/examples/ruby_lesson
//!                                                      # Ruby parent, Rust child
//! ```
//!
//! SCENARIO: `first_pipe` (a plain pipe: the child writes a sentence, the
//! parent reads to the end of the stream), `sharing_pipe` (the child writes ten lines into a pipe the
//! parent reads to its end), `heavy_lifting` (the socket pair's worker:
//! instructions one way, "… accomplished!" back), `rpc` (calls and
//! replies, an error among them). Each parent prints what it got and exits
//! non-zero if it is not what the lesson says.

use std::os::fd::AsFd;

use procwire::{CodecKind, Options, rpc};

procwire::init_before_main!();

fn msgpack() -> Options {
    Options::new().codec(CodecKind::MsgPack)
}

/// The Ruby side of `scenario`, as a child of this process.
fn ruby(scenario: &str) -> procwire::Command {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ruby/");
    let mut cmd = procwire::Command::new("ruby");
    cmd.arg(format!("{script}{scenario}.rb")).arg("child");
    cmd
}

fn check(ok: bool, what: &str) -> procwire::Result<()> {
    if ok {
        Ok(())
    } else {
        Err(procwire::Error::new(
            procwire::ErrorKind::Decode,
            format!("not what the lesson says: {what}"),
        ))
    }
}

fn parent(scenario: &str) -> procwire::Result<()> {
    let mut cmd = ruby(scenario);
    match scenario {
        "first_pipe" => {
            // A plain pipe, bytes and no frames: the child writes into it
            // and closes it (it exits); read to the end of the stream.
            let (mut reader, writer) = procwire::pipe()?;
            cmd.stdout(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                writer,
            )));
            let mut child = cmd.spawn()?;
            drop(cmd); // our copy of the write end, or the end never comes
            let mut text = String::new();
            std::io::Read::read_to_string(&mut reader, &mut text)?;
            println!("{text}");
            check(
                child.wait()?.success() && text == "Into the pipe I go...",
                "the child's words",
            )
        }
        "sharing_pipe" => {
            // The child writes into the pipe (its stdout), this process
            // reads. The write end must be closed here once the child has
            // it, or the end of stream never comes: `cmd` holds it until
            // dropped.
            let (reader, writer) = procwire::pipe()?;
            cmd.stdout(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                writer,
            )));
            let mut child = cmd.spawn()?;
            drop(cmd);
            let rx = msgpack().receiver_from::<String>(reader)?;
            let mut n = 0;
            for line in rx.iter() {
                println!("{}", line?);
                n += 1;
            }
            check(child.wait()?.success() && n == 10, "ten lines")
        }
        "heavy_lifting" => {
            let ch = cmd.channel_with::<String, String>(&msgpack())?;
            let mut child = cmd.spawn()?;
            for job in [
                "Heavy lifting",
                "Heavy lifting",
                "Feather lifting",
                "Feather lifting",
            ] {
                ch.send(job.into())?;
            }
            let mut got = Vec::new();
            for _ in 0..4 {
                got.push(ch.recv()?);
            }
            for g in &got {
                println!("{g}");
            }
            drop(ch);
            check(
                child.wait()?.success()
                    && got[0] == "Heavy lifting accomplished!"
                    && got[3] == "Feather lifting accomplished!",
                "four answers",
            )
        }
        "rpc" => {
            let end = cmd.channel_with::<rpc::Call<i64>, rpc::Reply<i64>>(&msgpack())?;
            let mut child = cmd.spawn()?;
            let client = rpc::Client::new(end);
            let squares: Vec<i64> = (1..=5).map(|n| client.call(n)).collect::<Result<_, _>>()?;
            println!("squares {squares:?}");
            let e = client.call(-1).unwrap_err();
            println!("error {e}");
            drop(client);
            check(
                child.wait()?.success()
                    && squares == [1, 4, 9, 16, 25]
                    && e.kind() == procwire::ErrorKind::Remote,
                "five squares and a refusal",
            )
        }
        s => check(false, &format!("no scenario {s}")),
    }
}

fn child(scenario: &str) -> procwire::Result<()> {
    match scenario {
        "first_pipe" => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(b"Into the pipe I go...")?;
            out.flush()?;
            Ok(())
        }
        "sharing_pipe" => {
            // Its stdout is the parent's pipe.
            let out = std::io::stdout().as_fd().try_clone_to_owned()?;
            let tx = msgpack().sender_from::<String>(procwire::PipeWriter::from_fd(out)?)?;
            for _ in 0..10 {
                tx.send("Another one bites the dust".into())?;
            }
            Ok(())
        }
        "heavy_lifting" => {
            let ch: procwire::Duplex<String, String> = procwire::from_env()?;
            for job in ch.iter() {
                ch.send(format!("{} accomplished!", job?))?;
            }
            Ok(())
        }
        "rpc" => {
            let end: rpc::ServerEnd<i64, i64> = procwire::from_env()?;
            rpc::serve(end, |n: i64| {
                if n < 0 {
                    Err(format!("no square of a negative number here: {n}"))
                } else {
                    Ok(n * n)
                }
            })
        }
        s => check(false, &format!("no scenario {s}")),
    }
}

fn main() -> procwire::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [scenario, "parent"] => parent(scenario),
        [scenario, "child"] => child(scenario),
        _ => check(false, "usage: ruby_lesson SCENARIO parent|child"),
    }
}
