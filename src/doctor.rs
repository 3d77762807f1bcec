//! What procwire relies on, checked on this machine (`procwire doctor`):
//! each check makes the call procwire makes, and says what its absence
//! costs.
//!
//! ```
//! let checks = procwire::doctor::checks();
//! assert!(checks.iter().any(|c| c.name == "pidfd_open"));
//! // Nothing procwire cannot work without is missing here.
//! assert!(checks.iter().all(|c| c.ok || !c.required), "{checks:#?}");
//! ```

use crate::sys::probe;

/// One check: what was asked, what was found, and what its absence costs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Check {
    /// What procwire relies on.
    pub name: &'static str,
    /// Whether this machine has it.
    pub ok: bool,
    /// Whether procwire cannot work without it (else it falls back).
    pub required: bool,
    /// What was found: a version, a limit, or the error.
    pub found: String,
    /// What its absence costs.
    pub without: &'static str,
}

fn check(
    name: &'static str,
    required: bool,
    without: &'static str,
    got: std::io::Result<String>,
) -> Check {
    let (ok, found) = match got {
        Ok(f) => (true, f),
        Err(e) => (false, e.to_string()),
    };
    Check {
        name,
        ok,
        required,
        found,
        without,
    }
}

/// A number from a file of /proc.
fn proc_number(path: &str) -> std::io::Result<u64> {
    std::fs::read_to_string(path)?
        .trim()
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{path}: {e}")))
}

/// Every check, in a fixed order. A check that must start a process (the
/// network namespace) forks a throwaway child, which only a single-threaded
/// process can do: in a multi-threaded one it reports that it was not run.
pub fn checks() -> Vec<Check> {
    let ok = |s: &str| Ok(s.to_string());
    let mut out = vec![
        check(
            "kernel",
            false,
            "nothing by itself; the checks below say what this version lacks",
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| format!("Linux {}", s.trim())),
        ),
        check(
            "/proc",
            true,
            "procwire cannot find its own descriptors (close-on-exec hygiene, fd counts) or kernel limits",
            std::fs::read_dir("/proc/self/fd").map(|d| format!("{} descriptors open", d.count())),
        ),
        check(
            "RLIMIT_NOFILE",
            true,
            "too few descriptors for a channel pair and its readiness descriptors",
            {
                let (n, hard) = crate::sys::fd_limits();
                if n >= 256 {
                    // What it bounds first, and whether it can go higher.
                    let higher = crate::sys::fd_hard_limit_above(n, hard)
                        .map(|h| format!("; hard limit {h} (`ulimit -n` raises it)"))
                        .unwrap_or_default();
                    Ok(format!(
                        "{n} descriptors: some {} pool workers, at two each{higher}",
                        n.saturating_sub(32) / 2
                    ))
                } else {
                    Err(std::io::Error::other(format!(
                        "{n} descriptors (procwire needs 256 at least)"
                    )))
                }
            },
        ),
        check(
            "pidfd_open",
            false,
            "a dead child is noticed by the end of its channel only: a child that exits while a \
             grandchild holds its end open is not seen, and its exit status is not in the error",
            probe::pidfd().and_then(|_| ok("Linux 5.3+")),
        ),
        check(
            "SO_PEERPIDFD",
            false,
            "nothing yet: procwire supervises the children it starts by pidfd_open; a peer's \
             pidfd from its socket (Linux 6.5) would extend that to peers it did not start",
            probe::peer_pidfd().and_then(|()| ok("Linux 6.5+")),
        ),
        check(
            "SO_PASSRIGHTS",
            false,
            "a channel built with Options::descriptors(false) still receives with recvmsg(2), and \
             a message that brings descriptors fails there instead of the peer's send",
            probe::refuse_rights().and_then(|()| ok("Linux 6.16+")),
        ),
        check(
            "memfd with seals",
            false,
            "no shared-memory channels, and no message larger than one datagram on SEQPACKET or \
             DGRAM sockets (they travel in a memfd)",
            probe::sealed_memfd().and_then(|()| ok("memfd_create, F_ADD_SEALS")),
        ),
        check(
            "close_range",
            false,
            "a child started by fork closes its inherited descriptors one by one (slower with a \
             high descriptor limit)",
            probe::close_range().and_then(|()| ok("Linux 5.9+")),
        ),
        check(
            "futex",
            false,
            "no sleeping waiter for shared memory: it spins or yields instead",
            probe::futex().and_then(|()| ok("FUTEX_WAKE")),
        ),
        check(
            "preadv2 RWF_NOWAIT on pipes",
            false,
            "a non-blocking read of a pipe takes two system calls (poll, then read), or the end \
             is made O_NONBLOCK",
            probe::pipe_nowait().and_then(|()| ok("Linux 5.8+")),
        ),
        check(
            "pipe-max-size",
            false,
            "pipes stay at their default capacity (64 KiB)",
            proc_number("/proc/sys/fs/pipe-max-size").map(|n| format!("{n} bytes")),
        ),
        check(
            "socket buffers",
            false,
            "large messages wait for the reader more often",
            proc_number("/proc/sys/net/core/wmem_max").and_then(|w| {
                let r = proc_number("/proc/sys/net/core/rmem_max")?;
                Ok(format!("wmem_max {w} bytes, rmem_max {r} bytes"))
            }),
        ),
    ];
    out.push(check(
        "network namespaces",
        false,
        "the remote pool's namespace tests cannot run here (they need root, or user namespaces); \
         procwire itself does not need them",
        netns(),
    ));
    out
}

/// Whether a child can enter a new network namespace.
fn netns() -> std::io::Result<String> {
    let mut child = crate::fork((), |()| {
        let code = if probe::unshare_net().is_ok() { 0 } else { 1 };
        crate::sys::process::exit_now(code);
    })
    .map_err(|e| std::io::Error::other(format!("not checked: {e}")))?;
    let status = child
        .wait()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    if status.success() {
        Ok("unshare(CLONE_NEWNET) works".into())
    } else {
        Err(std::io::Error::other(
            "unshare(CLONE_NEWNET) is refused (not root?)",
        ))
    }
}
