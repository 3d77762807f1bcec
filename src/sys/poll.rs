//! Waiting for readiness: poll(2) with a deadline that survives signals.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use super::io as errno_io;

/// The readiness a [`poll`] waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
    /// Readable or writable, whichever comes first.
    Either,
}

/// Waits until one of `fds` is ready or `deadline` passes; returns the indices
/// of the ready ones through `ready` (hang-up and error count as ready, so
/// that the caller's next read or write reports them). Returns `false` on
/// timeout. A signal that interrupts the wait restarts it with the time left.
/// Any number of entries: the kernel refuses more than `RLIMIT_NOFILE`
/// (`EINVAL`), which open descriptors cannot reach but repeated ones can.
///
/// # References
/// - poll(2)
pub(crate) fn poll(
    fds: &[(BorrowedFd<'_>, Interest)],
    deadline: Option<Instant>,
    ready: &mut [bool],
) -> io::Result<bool> {
    // One descriptor is the channel's hot path: keep it allocation-free.
    if fds.len() == 1 {
        let (fd, interest) = fds[0];
        let mut one = [PollFd::from_borrowed_fd(fd, flags_for(interest))];
        let hit = poll_loop(&mut one, deadline)?;
        ready[0] = hit && !one[0].revents().is_empty();
        return Ok(hit);
    }
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|&(fd, interest)| PollFd::from_borrowed_fd(fd, flags_for(interest)))
        .collect();
    let hit = poll_loop(&mut pfds, deadline)?;
    for (r, p) in ready.iter_mut().zip(&pfds) {
        *r = !p.revents().is_empty();
    }
    Ok(hit)
}

/// Whether the peer of a connected socket has closed its end (`POLLHUP` or
/// `POLLRDHUP`), whether or not data is still queued.
///
/// # References
/// - poll(2) with `POLLRDHUP`
pub(crate) fn hung_up(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut one = [PollFd::from_borrowed_fd(fd, PollFlags::RDHUP)];
    poll_loop(&mut one, Some(Instant::now()))?;
    Ok(one[0]
        .revents()
        .intersects(PollFlags::HUP | PollFlags::RDHUP | PollFlags::ERR))
}

fn flags_for(interest: Interest) -> PollFlags {
    match interest {
        Interest::Read => PollFlags::IN,
        Interest::Write => PollFlags::OUT,
        Interest::Either => PollFlags::IN | PollFlags::OUT,
    }
}

fn poll_loop(pfds: &mut [PollFd<'_>], deadline: Option<Instant>) -> io::Result<bool> {
    loop {
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                Some(Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: i64::from(left.subsec_nanos()),
                })
            }
        };
        match rustix::event::poll(pfds, timeout.as_ref()) {
            Ok(0) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(false);
                }
            }
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => {}
            Err(e) => return Err(errno_io(e)),
        }
    }
}
