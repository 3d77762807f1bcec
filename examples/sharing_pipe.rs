//! A pipe shared with a child: the child writes ten lines, the parent reads
//! until EOF. Unused ends are closed on both sides.
//!
//! `cargo run --example sharing_pipe`

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;

use procwire::PipeWriter;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("child") {
        // The child: its channel comes through PROCWIRE_FD, the pipe's write
        // end as a descriptor on it. The read end never reaches the child.
        let ch = procwire::from_env::<(), ()>()?;
        let (_, fds) = ch.recv_with_fds()?;
        let mut writer = PipeWriter::from_fd(fds.into_iter().next().ok_or("no fd")?)?;
        for _ in 0..10 {
            writeln!(writer, "Another one bites the dust")?;
        }
        return Ok(());
    }
    let (reader, writer) = procwire::pipe()?;
    let mut cmd = procwire::Command::new(std::env::current_exe()?);
    cmd.arg("child");
    let ch = cmd.channel::<(), ()>()?;
    let mut child = cmd.spawn()?;
    ch.send_with_fds((), &[writer.as_fd()])?;
    drop(writer); // the parent's unused end: without this, EOF never comes
    for line in BufReader::new(reader).lines() {
        println!("{}", line?);
    }
    drop(ch);
    assert!(child.wait()?.success());
    Ok(())
}
