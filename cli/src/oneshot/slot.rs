//! The one-shot link: a job slot starts one process per task, collects
//! its output whole, and keeps the count of failures that `--halt` acts on.

use std::io::Read;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use procwire::pool::{Link, Worker};
use procwire::{Error, ErrorKind, Select};

use super::{Done, Job, argv};

/// Failures so far, and whether they stopped the pool (`--halt`): kept by
/// the job slots themselves, so that a slot that sees the failure that
/// halts starts nothing after it.
pub(super) struct Halting {
    pub(super) limit: Option<u64>,
    pub(super) failed: std::sync::atomic::AtomicU64,
    pub(super) halted: AtomicBool,
}

/// A "worker" that starts one process per task: the one-shot link.
pub(super) struct Processes {
    pub(super) template: Vec<String>,
    pub(super) shell: bool,
    pub(super) slots: AtomicUsize,
    pub(super) told_missing: Arc<AtomicBool>,
    pub(super) halting: Arc<Halting>,
}

struct Slot {
    template: Vec<String>,
    shell: bool,
    slot: usize,
    running: Option<Running>,
    told_missing: Arc<AtomicBool>,
    halting: Arc<Halting>,
}

struct Running {
    /// `None`: not started, the pool halted.
    child: Option<Result<procwire::Child, String>>,
    seq: u64,
    command: String,
    started: SystemTime,
    t0: Instant,
}

impl Link<Job, Done> for Processes {
    fn start(&self) -> procwire::Result<Box<dyn Worker<Job, Done>>> {
        Ok(Box::new(Slot {
            template: self.template.clone(),
            shell: self.shell,
            slot: self.slots.fetch_add(1, Ordering::Relaxed) + 1,
            running: None,
            told_missing: Arc::clone(&self.told_missing),
            halting: Arc::clone(&self.halting),
        }))
    }
}

impl Slot {
    fn command_line(&self, job: &Job) -> (Vec<String>, String) {
        let words = argv(&self.template, job, self.slot, self.shell);
        let line = words.join(" ");
        if self.shell {
            (vec!["sh".into(), "-c".into(), line.clone()], line)
        } else {
            (words, line)
        }
    }
}

/// Reads a job's stdout and stderr to their ends, both at once (a job that
/// fills one pipe while we wait on the other would never finish).
fn collect(child: &mut procwire::Child) -> (Vec<u8>, Vec<u8>) {
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let mut chunk = [0u8; 65536];
    while out.is_some() || err.is_some() {
        let mut sel = Select::new();
        let oi = out.as_ref().map(|s| sel.readable(s));
        let ei = err.as_ref().map(|s| sel.readable(s));
        let Ok(ready) = sel.ready() else { break };
        if Some(ready) == oi
            && let Some(s) = out.as_mut()
        {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => out = None,
                Ok(n) => o.extend_from_slice(&chunk[..n]),
            }
        } else if Some(ready) == ei
            && let Some(s) = err.as_mut()
        {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => err = None,
                Ok(n) => e.extend_from_slice(&chunk[..n]),
            }
        }
    }
    (o, e)
}

impl Worker<Job, Done> for Slot {
    fn send(&mut self, job: &Job) -> procwire::Result<()> {
        let (words, line) = self.command_line(job);
        let mut cmd = procwire::Command::new(&words[0]);
        cmd.args(&words[1..])
            .env_remove("PROCWIRE_KEY")
            .env_remove("PROCWIRE_KEY_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = (!self.halting.halted.load(Ordering::SeqCst))
            .then(|| cmd.spawn().map_err(|e| e.to_string()));
        self.running = Some(Running {
            child,
            seq: job.seq,
            command: line,
            started: SystemTime::now(),
            t0: Instant::now(),
        });
        Ok(())
    }

    fn recv(&mut self, _deadline: Option<Instant>) -> procwire::Result<Done> {
        let mut r = self
            .running
            .take()
            .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "no job was started"))?;
        let started = r
            .started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut done = Done {
            seq: r.seq,
            command: r.command,
            stdout: Vec::new(),
            stderr: Vec::new(),
            exitval: 255,
            signal: 0,
            not_started: None,
            skipped: false,
            started,
            runtime: 0.0,
        };
        match &mut r.child {
            None => {
                done.skipped = true;
                return Ok(done);
            }
            Some(Ok(child)) => {
                let (o, e) = collect(child);
                let status = child.wait()?;
                use std::os::unix::process::ExitStatusExt;
                done.stdout = o;
                done.stderr = e;
                done.exitval = status.code().unwrap_or(255);
                done.signal = status.signal().unwrap_or(0);
            }
            Some(Err(why)) => {
                if !self.told_missing.swap(true, Ordering::Relaxed) {
                    eprintln!("procwire pool: {why}");
                }
                done.exitval = 127;
                done.not_started = Some(why.clone());
            }
        }
        done.runtime = r.t0.elapsed().as_secs_f64();
        if done.exitval != 0 || done.signal != 0 {
            let failed = self.halting.failed.fetch_add(1, Ordering::SeqCst) + 1;
            if self.halting.limit.is_some_and(|l| failed >= l) {
                self.halting.halted.store(true, Ordering::SeqCst);
            }
        }
        Ok(done)
    }

    fn alive(&mut self) -> bool {
        true
    }

    fn name(&self) -> String {
        format!("job slot {}", self.slot)
    }

    fn killer(&self) -> Box<dyn Fn() + Send + Sync> {
        let k = self
            .running
            .as_ref()
            .and_then(|r| r.child.as_ref())
            .and_then(|c| c.as_ref().ok())
            .map(procwire::Child::killer);
        Box::new(move || {
            if let Some(k) = &k {
                let _ = k.kill();
            }
        })
    }

    fn retire(self: Box<Self>, _kill: bool) {}
}
