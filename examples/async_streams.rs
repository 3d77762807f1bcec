//! The lesson's worker as streams: the child's channel, awaited, is a
//! `Stream` of jobs and a `Sink` of answers, so the whole worker is one
//! combinator chain (`map` then `forward`), and the parent splits its end
//! into a sender and a receiver that two tasks drive at once.
//!
//! `cargo run --example async_streams`

use futures_util::{SinkExt, StreamExt, TryStreamExt};
use procwire::Command;

const JOBS: [&str; 4] = [
    "Heavy lifting",
    "Heavy lifting",
    "Feather lifting",
    "Feather lifting",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if std::env::args().nth(1).as_deref() == Some("child") {
        let ch: procwire::Duplex<String, String> = procwire::from_env()?;
        return rt.block_on(async {
            let (answers, jobs) = ch.into_async()?.split();
            // Until the parent's sending half closes.
            jobs.map_ok(|job| format!("{job} accomplished!"))
                .err_into::<procwire::Error>()
                .forward(answers)
                .await?;
            Ok(())
        });
    }
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("child");
    let ch = cmd.channel::<String, String>()?;
    let mut child = cmd.spawn()?;
    rt.block_on(async {
        let (mut jobs, answers) = ch.into_async()?.split();
        let sending = tokio::spawn(async move {
            let mut all = futures_util::stream::iter(JOBS.map(|j| Ok(j.to_string())));
            jobs.send_all(&mut all).await
            // `jobs` dropped here: the child's stream of jobs ends.
        });
        let got: Vec<String> = answers.take(JOBS.len()).try_collect().await?;
        sending.await??;
        for answer in got {
            println!("{answer}");
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    assert!(child.wait()?.success());
    Ok(())
}
