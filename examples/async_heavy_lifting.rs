//! The lesson's "Heavy lifting", awaited: the parent starts a child worker
//! with a channel, sends it jobs and awaits each "… accomplished!" on a
//! current-thread tokio runtime; the child answers with blocking calls (a
//! peer need not be async).
//!
//! `cargo run --example async_heavy_lifting`

use procwire::Command;

const JOBS: [&str; 4] = [
    "Heavy lifting",
    "Heavy lifting",
    "Feather lifting",
    "Feather lifting",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("child") {
        let ch: procwire::Duplex<String, String> = procwire::from_env()?;
        for job in ch.iter() {
            ch.send(format!("{} accomplished!", job?))?;
        }
        return Ok(());
    }
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("child");
    let ch = cmd.channel::<String, String>()?;
    let mut child = cmd.spawn()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Supervised: if the child dies, the await ends with how it died.
        let ch = ch.into_async()?;
        for job in JOBS {
            ch.send(job.to_string()).await?;
        }
        for _ in JOBS {
            println!("{}", ch.recv().await?);
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    assert!(child.wait()?.success());
    Ok(())
}
