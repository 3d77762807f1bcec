//! `procwire pool` in GNU parallel's model: one process per input, its
//! arguments put into the command by replacement strings, on the library's
//! pool engine (one worker slot per job in flight; a "worker" here starts
//! one process per task).

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use procwire::Pool;
use serde::{Deserialize, Serialize};

mod captured;
mod slot;
use captured::Captured;
use slot::{Halting, Processes};

/// What one-shot mode was asked to do.
pub struct OneShot {
    pub jobs: usize,
    pub unordered: bool,
    pub null: bool,
    pub shell: bool,
    pub tag: bool,
    pub dry_run: bool,
    pub halt: Halt,
    pub joblog: Option<std::path::PathBuf>,
    pub timeout: Option<Duration>,
    /// The command and its `:::` / `::::` sources, as given.
    pub command: Vec<String>,
}

/// When to stop early (`--halt`), as GNU parallel's `now,fail=N` and
/// `soon,fail=N`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Halt {
    #[default]
    Never,
    /// Kill the running jobs once this many failed.
    Now(u64),
    /// Start no more jobs once this many failed; let the running finish.
    Soon(u64),
}

/// Parses `now,fail=N`, `soon,fail=N` (and `never`).
pub fn parse_halt(s: &str) -> std::result::Result<Halt, String> {
    if s == "never" {
        return Ok(Halt::Never);
    }
    let (when, rest) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?}: expected now,fail=N or soon,fail=N"))?;
    let n: u64 = rest
        .strip_prefix("fail=")
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{s:?}: expected fail=N with N at least 1"))?;
    match when {
        "now" => Ok(Halt::Now(n)),
        "soon" => Ok(Halt::Soon(n)),
        _ => Err(format!("{s:?}: expected now or soon")),
    }
}

/// The replacement strings, as GNU parallel spells them.
const STRINGS: [&str; 7] = ["{}", "{.}", "{/}", "{//}", "{/.}", "{#}", "{%}"];

/// Whether `command` asks for one-shot mode: a replacement string, or
/// argument sources.
pub fn wanted(command: &[String]) -> bool {
    command.iter().any(|a| {
        a == ":::"
            || a == "::::"
            || STRINGS.iter().any(|s| a.contains(s))
            || positional(a).is_some()
    })
}

/// The first `{N}` in `a`, if any.
fn positional(a: &str) -> Option<usize> {
    let mut rest = a;
    while let Some(at) = rest.find('{') {
        let tail = &rest[at + 1..];
        if let Some(end) = tail.find('}')
            && let Ok(n) = tail[..end].parse::<usize>()
            && n > 0
        {
            return Some(n);
        }
        rest = tail;
    }
    None
}

/// One job: its number (from 1) and its arguments, one per source.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    seq: u64,
    args: Vec<String>,
}

/// What became of one job.
#[derive(Debug, Serialize, Deserialize)]
pub struct Done {
    seq: u64,
    /// Its arguments, joined by spaces (`--tag`).
    tag: String,
    command: String,
    stdout: Captured,
    stderr: Captured,
    /// The exit code, or 255 for a job killed by a signal or not started.
    exitval: i32,
    signal: i32,
    /// Why it did not start (a missing program), said once.
    not_started: Option<String>,
    /// Not run at all: the pool halted before it started.
    skipped: bool,
    started: f64,
    runtime: f64,
}

/// The template and its sources. The first source is read as the jobs
/// run (stdin or a `::::` file may be endless, or larger than memory);
/// the others are read whole first, since each item of the first combines
/// with every one of theirs.
struct Plan {
    template: Vec<String>,
    /// No command was given: each input is a command line, run by `sh -c`
    /// as it is (quoting it again for `--shell` would make it one word).
    commands: bool,
    first: Source,
    rest: Vec<Vec<String>>,
}

/// Where the first source's items come from.
enum Source {
    Listed(Vec<String>),
    Read(Box<dyn io::BufRead + Send>),
}

fn plan(cfg: &OneShot) -> Result<Plan> {
    let at = cfg
        .command
        .iter()
        .position(|a| a == ":::" || a == "::::")
        .unwrap_or(cfg.command.len());
    let mut template = cfg.command[..at].to_vec();
    let commands = template.is_empty();
    if commands {
        // Each input is a command line (`cat commands | parallel`).
        template = ["sh", "-c", "{}"].map(String::from).to_vec();
    }
    let mut sources: Vec<Source> = Vec::new();
    let mut i = at;
    while i < cfg.command.len() {
        let marker = cfg.command[i].as_str();
        let end = cfg.command[i + 1..]
            .iter()
            .position(|a| a == ":::" || a == "::::")
            .map_or(cfg.command.len(), |p| i + 1 + p);
        let items = &cfg.command[i + 1..end];
        if marker == ":::" {
            sources.push(Source::Listed(items.to_vec()));
        } else {
            for file in items {
                let f = std::fs::File::open(file).with_context(|| format!("reading {file}"))?;
                sources.push(Source::Read(Box::new(io::BufReader::new(f))));
            }
        }
        i = end;
    }
    if sources.is_empty() {
        sources.push(Source::Read(Box::new(io::BufReader::new(io::stdin()))));
    }
    let mut sources = sources.into_iter();
    let first = sources.next().expect("one source at least");
    let rest = sources
        .map(|s| match s {
            Source::Listed(items) => Ok(items),
            Source::Read(r) => items(r, cfg.null)
                .collect::<io::Result<_>>()
                .context("reading a :::: file"),
        })
        .collect::<Result<_>>()?;
    Ok(Plan {
        template,
        commands,
        first,
        rest,
    })
}

/// A source's items, read as they are asked for: separated by newlines,
/// or NULs with `-0` (a separator at the very end ends the last item), as
/// text (bytes that are not UTF-8 replaced).
fn items(r: Box<dyn io::BufRead + Send>, null: bool) -> impl Iterator<Item = io::Result<String>> {
    let sep = if null { b'\0' } else { b'\n' };
    io::BufRead::split(r, sep).map(|item| item.map(|i| String::from_utf8_lossy(&i).into_owned()))
}

/// The jobs of a plan, made as they are asked for: every combination of
/// the sources, the last varying fastest (as parallel combines several
/// `:::`), numbered from 1. A read error of the first source ends them and
/// is kept in `failed`.
struct Jobs {
    first: Box<dyn Iterator<Item = String> + Send>,
    rest: Vec<Vec<String>>,
    /// The combinations of `rest` (their lengths multiplied).
    per_item: u128,
    /// The first source's current item, and the next combination of the
    /// others to put with it.
    current: Option<(String, u128)>,
    seq: u64,
}

impl Jobs {
    /// The jobs, and the count of them when it is known before they are
    /// read (every source listed on the command line).
    fn new(
        first: Source,
        rest: Vec<Vec<String>>,
        null: bool,
        failed: Arc<std::sync::Mutex<Option<io::Error>>>,
    ) -> (Jobs, Option<u128>) {
        let per_item = rest
            .iter()
            .map(|r| r.len() as u128)
            .try_fold(1u128, u128::checked_mul);
        // More combinations than a u128 holds are never run out of.
        let per_item_or_max = per_item.unwrap_or(u128::MAX);
        let (first, count): (Box<dyn Iterator<Item = String> + Send>, _) = match first {
            Source::Listed(items) => {
                let count = per_item.and_then(|p| p.checked_mul(items.len() as u128));
                (Box::new(items.into_iter()), count)
            }
            Source::Read(r) => {
                let items = items(r, null).map_while(move |item| {
                    item.map_err(|e| *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e))
                        .ok()
                });
                (Box::new(items), None)
            }
        };
        let jobs = Jobs {
            first,
            rest,
            per_item: per_item_or_max,
            current: None,
            seq: 0,
        };
        (jobs, count)
    }
}

impl Iterator for Jobs {
    type Item = Job;

    fn next(&mut self) -> Option<Job> {
        if self.per_item == 0 {
            return None;
        }
        loop {
            if let Some((item, k)) = &mut self.current
                && *k < self.per_item
            {
                // The combination's digits, the last source's the lowest.
                let mut args = vec![String::new(); self.rest.len() + 1];
                let mut n = *k;
                for (slot, source) in args[1..].iter_mut().zip(&self.rest).rev() {
                    let len = source.len() as u128;
                    *slot = source[(n % len) as usize].clone();
                    n /= len;
                }
                args[0] = item.clone();
                *k += 1;
                self.seq += 1;
                return Some(Job {
                    seq: self.seq,
                    args,
                });
            }
            self.current = Some((self.first.next()?, 0));
        }
    }
}

fn without_ext(s: &str) -> &str {
    let base_at = s.rfind('/').map_or(0, |i| i + 1);
    match s[base_at..].rfind('.') {
        Some(dot) if dot > 0 => &s[..base_at + dot],
        _ => s,
    }
}

fn basename(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

fn dirname(s: &str) -> &str {
    match s.rfind('/') {
        Some(0) => "/",
        Some(i) => &s[..i],
        None => ".",
    }
}

/// One argument of the template with the job's values put in.
fn fill(token: &str, job: &Job, slot: usize, quote: bool) -> String {
    let q = |s: &str| if quote { shell_quote(s) } else { s.to_string() };
    let all = job.args.join(" ");
    let mut out = token
        .replace("{#}", &job.seq.to_string())
        .replace("{%}", &slot.to_string())
        .replace("{//}", &q(dirname(&all)))
        .replace("{/.}", &q(without_ext(basename(&all))))
        .replace("{/}", &q(basename(&all)))
        .replace("{.}", &q(without_ext(&all)))
        .replace("{}", &q(&all));
    for (i, a) in job.args.iter().enumerate() {
        out = out.replace(&format!("{{{}}}", i + 1), &q(a));
    }
    out
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The job's command line: the template filled in, or, without a
/// replacement string, the template with the arguments appended.
fn argv(template: &[String], job: &Job, slot: usize, quote: bool) -> Vec<String> {
    let replaces = template
        .iter()
        .any(|t| STRINGS.iter().any(|s| t.contains(s)) || positional(t).is_some());
    let mut out: Vec<String> = template.iter().map(|t| fill(t, job, slot, quote)).collect();
    if !replaces {
        out.extend(
            job.args
                .iter()
                .map(|a| if quote { shell_quote(a) } else { a.clone() }),
        );
    }
    out
}

/// How many jobs at once: `N`, `N%` of the CPUs, or 0 for as many as the
/// input has (capped at 1,024).
pub fn parse_jobs(s: &str) -> std::result::Result<usize, String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = if let Some(p) = s.strip_suffix('%') {
        let p: usize = p.parse().map_err(|_| format!("{s:?}: expected N or N%"))?;
        (cpus * p / 100).max(1)
    } else {
        s.parse().map_err(|_| format!("{s:?}: expected N or N%"))?
    };
    Ok(if n == 0 { 1024 } else { n })
}

/// Runs the jobs; the exit status is GNU parallel's.
pub fn run(cfg: OneShot) -> Result<ExitCode> {
    let plan = plan(&cfg)?;
    let unreadable = Arc::new(std::sync::Mutex::new(None));
    let (jobs, count) = Jobs::new(plan.first, plan.rest, cfg.null, Arc::clone(&unreadable));
    let read_error = || {
        let e = unreadable.lock().unwrap_or_else(|e| e.into_inner()).take();
        e.map_or(Ok(()), |e| {
            Err(anyhow::Error::new(e).context("reading the inputs"))
        })
    };
    if cfg.dry_run {
        let mut out = io::stdout().lock();
        for job in jobs {
            let slot = ((job.seq - 1) as usize % cfg.jobs.max(1)) + 1;
            if plan.commands {
                writeln!(out, "{}", job.args.join(" "))?;
            } else {
                writeln!(out, "{}", argv(&plan.template, &job, slot, true).join(" "))?;
            }
        }
        read_error()?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut jobs = jobs.peekable();
    if jobs.peek().is_none() {
        read_error()?;
        return Ok(ExitCode::SUCCESS);
    }
    // Slots past the number of jobs would start nothing.
    let workers = match count {
        Some(n) => cfg
            .jobs
            .max(1)
            .min(usize::try_from(n).unwrap_or(usize::MAX)),
        None => cfg.jobs.max(1),
    };
    let limit = match cfg.halt {
        Halt::Never => None,
        Halt::Now(n) | Halt::Soon(n) => Some(n),
    };
    let mut builder = Pool::with_link(Processes {
        template: plan.template,
        shell: cfg.shell && !plan.commands,
        slots: AtomicUsize::new(0),
        told_missing: Arc::new(AtomicBool::new(false)),
        halting: Arc::new(Halting {
            limit,
            now: matches!(cfg.halt, Halt::Now(_)),
            slots: Default::default(),
            failed: Default::default(),
            halted: AtomicBool::new(false),
        }),
    })
    .workers(workers)
    .max_in_flight(workers * 2);
    if let Some(t) = cfg.timeout {
        builder = builder.task_timeout(t);
    }
    let pool = builder.build()?;
    let mut joblog = match &cfg.joblog {
        Some(path) => {
            let mut f = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            writeln!(
                f,
                "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand"
            )?;
            Some(f)
        }
        None => None,
    };
    let progress = io::stderr().is_terminal().then(|| {
        let bar = match count {
            Some(n) => indicatif::ProgressBar::new(u64::try_from(n).unwrap_or(u64::MAX)),
            None => indicatif::ProgressBar::no_length(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} jobs, {msg} [{elapsed} < {eta}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let (mut failed, mut halted_with) = (0u64, None::<i32>);
    let stop = AtomicBool::new(false);
    let mut stdout = io::stdout().lock();
    let mut stderr = io::stderr();
    let feed = jobs.take_while(|_| !stop.load(Ordering::SeqCst));
    let mut problem = None;
    let mut write_err = None;
    let ran = pool.run(feed, !cfg.unordered, |_, r| {
        if write_err.is_some() {
            return;
        }
        let mut done = match r {
            Ok(d) => d,
            Err(e) => {
                // The pool stopped (a halt), or a job slot failed.
                if halted_with.is_none() {
                    problem.get_or_insert(e.to_string());
                }
                return;
            }
        };
        if done.skipped {
            return;
        }
        let ok = done.exitval == 0 && done.signal == 0;
        if !ok {
            failed += 1;
        }
        let tag = cfg.tag.then_some(done.tag.as_str());
        if let Err(e) = done.stdout.write_to(&mut stdout, tag) {
            // The output would go nowhere (`| head` has its lines, the
            // disk is full): no job is worth running any more.
            write_err = Some(e);
            stop.store(true, Ordering::SeqCst);
            pool.cancel();
            return;
        }
        let _ = done.stderr.write_to(&mut stderr, tag);
        if let Some(f) = joblog.as_mut() {
            let _ = writeln!(
                f,
                "{}\t:\t{:.3}\t{:.3}\t0\t{}\t{}\t{}\t{}",
                done.seq,
                done.started,
                done.runtime,
                done.stdout.len(),
                done.exitval,
                done.signal,
                done.command
            );
        }
        if let Some(bar) = &progress {
            bar.inc(1);
            bar.set_message(format!("{failed} failed"));
        }
        match cfg.halt {
            Halt::Now(n) if !ok && failed >= n && halted_with.is_none() => {
                halted_with = Some(done.exitval);
                stop.store(true, Ordering::SeqCst);
                pool.cancel(); // the running jobs are killed
            }
            Halt::Soon(n) if !ok && failed >= n && halted_with.is_none() => {
                halted_with = Some(done.exitval);
                stop.store(true, Ordering::SeqCst);
            }
            _ => {}
        }
    });
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if let Some(e) = write_err {
        pool.abort()?;
        return Err(anyhow::Error::new(e).context("writing the jobs' output to stdout"));
    }
    let _ = stdout.flush();
    match cfg.halt {
        Halt::Now(_) if halted_with.is_some() => pool.abort()?,
        _ => pool.shutdown()?,
    }
    if halted_with.is_none() {
        ran?;
    }
    if let Some(code) = halted_with {
        eprintln!("procwire pool: halted after {failed} failed job(s)");
        // As parallel: halting at the first failure exits with that job's
        // status; at a later one, with the count.
        return Ok(match limit {
            Some(1) => ExitCode::from(code.clamp(1, 255) as u8),
            _ => crate::pool::exit_for(failed),
        });
    }
    if let Some(p) = problem {
        eprintln!("procwire pool: {p}");
        return Ok(ExitCode::from(255));
    }
    Ok(crate::pool::exit_for(failed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn job(args: &[&str]) -> Job {
        Job {
            seq: 3,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn replacement_strings_as_parallel_spells_them() {
        let j = job(&["dir/sub/file.tar.gz"]);
        let t: Vec<String> = ["{}", "{.}", "{/}", "{//}", "{/.}", "{#}", "{%}", "x{1}y"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            argv(&t, &j, 2, false),
            [
                "dir/sub/file.tar.gz",
                "dir/sub/file.tar",
                "file.tar.gz",
                "dir/sub",
                "file.tar",
                "3",
                "2",
                "xdir/sub/file.tar.gzy"
            ]
        );
        // No replacement string: the arguments are appended.
        assert_eq!(
            argv(&["echo".to_string()], &job(&["a", "b"]), 1, false),
            ["echo", "a", "b"]
        );
        let listed = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let failed = Arc::new(std::sync::Mutex::new(None));
        let (jobs, count) = Jobs::new(
            Source::Listed(listed(&["a", "b"])),
            vec![listed(&["1", "2", "3"]), listed(&["x", "y"])],
            false,
            Arc::clone(&failed),
        );
        let got: Vec<(u64, String)> = jobs.map(|j| (j.seq, j.args.join(" "))).collect();
        assert_eq!(count, Some(12));
        assert_eq!(got.len(), 12);
        assert_eq!(got[0], (1, "a 1 x".into()));
        assert_eq!(got[1], (2, "a 1 y".into()));
        assert_eq!(got[2], (3, "a 2 x".into()));
        assert_eq!(got[11], (12, "b 3 y".into()));
        // An empty source: no combination at all.
        let (jobs, count) = Jobs::new(
            Source::Listed(listed(&["a"])),
            vec![vec![]],
            false,
            Arc::clone(&failed),
        );
        assert_eq!((jobs.count(), count), (0, Some(0)));
        // Read as asked for: the first item of an endless source comes.
        let endless = io::BufReader::new(io::repeat(b'z').take(1 << 20).chain(&b"\nq\n"[..]));
        let (mut jobs, count) = Jobs::new(Source::Read(Box::new(endless)), vec![], false, failed);
        assert_eq!(count, None);
        assert_eq!(jobs.next().unwrap().args[0].len(), 1 << 20);
        assert_eq!(jobs.next().unwrap().args, ["q"]);
        assert!(jobs.next().is_none());
        assert_eq!(parse_halt("now,fail=1"), Ok(Halt::Now(1)));
        assert!(parse_halt("later,fail=1").is_err());
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
