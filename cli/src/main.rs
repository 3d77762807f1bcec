//! `procwire`: the lesson "Processes Can Communicate", live.

mod demo;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "procwire",
    version,
    about = "Processes that talk: pipes, socket pairs and typed channels"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the lesson's scenarios across real processes, narrating each step
    /// and checking its results (exits non-zero if any check fails).
    Demo {
        /// Run only the scenarios whose name contains this text.
        #[arg(long)]
        only: Option<String>,
    },
    /// A demo child process (started by `demo` itself).
    #[command(name = "__child", hide = true)]
    Child { role: String },
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            // A closed stdout (`procwire demo | head`) is not an error.
            if e.chain()
                .filter_map(|c| c.downcast_ref::<io::Error>())
                .any(|io| io.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(io::stderr(), "procwire: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    // First, before any thread: runs a re-executed task, or starts the fork
    // server for the demo's tasks.
    procwire::init()?;
    match Cli::parse().command {
        Command::Demo { only } => demo::run(only.as_deref()),
        Command::Child { role } => demo::child(&role).map(|()| ExitCode::SUCCESS),
    }
}
