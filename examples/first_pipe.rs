//! The lesson's first pipe, and why the writer must be closed.
//!
//! `cargo run --example first_pipe`

use std::io::{Read, Write};
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // reader, writer = IO.pipe; writer.write(...); writer.close; reader.read
    let (mut reader, mut writer) = procwire::pipe()?;
    writer.write_all(b"Into the pipe I go...")?;
    drop(writer);
    let mut text = String::new();
    reader.read_to_string(&mut text)?;
    println!("{text}");

    // While any writer is open the reader waits: here with a deadline.
    let (tx, rx) = procwire::channel::<String>()?;
    match rx.recv_timeout(Duration::from_millis(200)) {
        Err(e) if e.is_timeout() => println!("no EOF while the writer is open: {e}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    drop(tx); // close the last writer: the reader is released
    let end = rx.recv().unwrap_err();
    println!("after the writer closed: {end}");
    assert!(end.is_disconnected());
    Ok(())
}
