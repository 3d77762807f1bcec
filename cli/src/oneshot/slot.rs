//! The one-shot link: a job slot starts one process per task, collects
//! its output whole, and keeps the count of failures that `--halt` acts on.

use std::io::Read;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use procwire::pool::{Link, Worker};
use procwire::{Error, ErrorKind, Select};

use super::captured::Captured;
use super::{Done, Job, argv};

/// Failures so far, and whether they stopped the pool (`--halt`): kept by
/// the job slots themselves, so that a slot that sees the failure that
/// halts starts nothing after it.
pub(super) struct Halting {
    pub(super) limit: Option<u64>,
    /// `--halt now`: the running jobs are killed at once.
    pub(super) now: bool,
    /// Every slot's running job, to kill.
    pub(super) slots: std::sync::Mutex<Vec<Current>>,
    pub(super) failed: std::sync::atomic::AtomicU64,
    pub(super) halted: AtomicBool,
}

/// A slot's running job's pidfd, for `--halt now` and the pool's abort: a
/// signal through it can never reach another process that reused the pid.
pub(super) type Current = Arc<std::sync::Mutex<Option<std::os::fd::OwnedFd>>>;

fn kill(current: &Current) {
    if let Some(fd) = &*current.lock().unwrap_or_else(|e| e.into_inner()) {
        let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
    }
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
    current: Current,
    told_missing: Arc<AtomicBool>,
    halting: Arc<Halting>,
}

struct Running {
    /// `None`: not started, the pool halted.
    child: Option<Result<std::process::Child, String>>,
    seq: u64,
    tag: String,
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
            current: {
                let c = Current::default();
                self.halting
                    .slots
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Arc::clone(&c));
                c
            },
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
///
/// When the pool halts at once, a killed job's children may live on and
/// hold its pipes open: then what the job left is taken as it is, once the
/// job itself is gone.
///
/// At `deadline` (`--timeout`) the job is killed (`kill`), and collecting
/// ends once it is gone, as after a halt.
fn collect(
    child: &mut std::process::Child,
    halted: &dyn Fn() -> bool,
    deadline: Option<Instant>,
    kill: &dyn Fn(),
) -> (Captured, Captured) {
    let mut killed = false;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let (mut o, mut e) = (Captured::default(), Captured::default());
    let mut chunk = [0u8; 65536];
    while out.is_some() || err.is_some() {
        let mut sel = Select::new();
        let oi = out.as_ref().map(|s| sel.readable(s));
        let ei = err.as_ref().map(|s| sel.readable(s));
        let ready = match sel.ready_timeout(std::time::Duration::from_millis(50)) {
            Ok(r) => r,
            Err(t) if t.is_timeout() => {
                if !killed && deadline.is_some_and(|d| Instant::now() >= d) {
                    kill();
                    killed = true;
                }
                if (killed || halted()) && matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                continue;
            }
            Err(_) => break,
        };
        if Some(ready) == oi
            && let Some(s) = out.as_mut()
        {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => out = None,
                Ok(n) => o.push(&chunk[..n]),
            }
        } else if Some(ready) == ei
            && let Some(s) = err.as_mut()
        {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => err = None,
                Ok(n) => e.push(&chunk[..n]),
            }
        }
    }
    (o, e)
}

impl Worker<Job, Done> for Slot {
    fn send(&mut self, job: &Job) -> procwire::Result<()> {
        let (words, line) = self.command_line(job);
        let mut cmd = std::process::Command::new(&words[0]);
        cmd.args(&words[1..])
            .env_remove("PROCWIRE_KEY")
            .env_remove("PROCWIRE_KEY_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // std's spawn, without a pre-exec hook, takes the vfork path of
        // posix_spawn: one-shot jobs start as fast as xargs starts them.
        // (Unlike procwire's persistent workers, they do not die with the
        // pool if it is killed: as with xargs and parallel.)
        let child = (!self.halting.halted.load(Ordering::SeqCst)).then(|| {
            cmd.spawn()
                .map_err(|e| format!("starting {:?}: {e}", words[0]))
        });
        if let Some(Ok(c)) = &child {
            let pid = rustix::process::Pid::from_raw(c.id() as i32);
            *self.current.lock().unwrap_or_else(|e| e.into_inner()) = pid.and_then(|p| {
                rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
            });
            // A halt that came between the check above and now killed
            // every job it could see, not this one: it goes too. (The halt
            // sets its flag before it looks, this slot its job before it
            // looks: one of the two always sees the other.)
            if self.halting.now && self.halting.halted.load(Ordering::SeqCst) {
                kill(&self.current);
            }
        }
        self.running = Some(Running {
            child,
            seq: job.seq,
            tag: job.args.join(" "),
            command: line,
            started: SystemTime::now(),
            t0: Instant::now(),
        });
        Ok(())
    }

    fn recv(&mut self, deadline: Option<Instant>) -> procwire::Result<Done> {
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
            tag: r.tag,
            command: r.command,
            stdout: Captured::default(),
            stderr: Captured::default(),
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
                let halting = Arc::clone(&self.halting);
                let current = Arc::clone(&self.current);
                let (o, e) = collect(
                    child,
                    &|| halting.now && halting.halted.load(Ordering::SeqCst),
                    deadline,
                    &|| kill(&current),
                );
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    eprintln!(
                        "procwire pool: job {} ran past its timeout and was killed: {}",
                        done.seq, done.command
                    );
                }
                let status = child.wait()?;
                self.current
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
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
            if self.halting.halted.load(Ordering::SeqCst) && self.halting.now {
                // Killed by the halt: not a failure of its own.
                done.skipped = true;
                return Ok(done);
            }
            let failed = self.halting.failed.fetch_add(1, Ordering::SeqCst) + 1;
            if self.halting.limit.is_some_and(|l| failed >= l)
                && !self.halting.halted.swap(true, Ordering::SeqCst)
                && self.halting.now
            {
                for c in self
                    .halting
                    .slots
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                {
                    kill(c);
                }
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
        let current = Arc::clone(&self.current);
        Box::new(move || kill(&current))
    }

    fn retire(self: Box<Self>, _kill: bool) {}
}
