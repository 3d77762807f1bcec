//! Readiness descriptors for transports that have none of their own (the
//! shared-memory rings): eventfds that one side signals and the other
//! polls, and an epoll instance that makes several of them one descriptor;
//! and [`Watch`], an epoll set for more descriptors than a poll walks
//! cheaply.
//! Only rustix's safe wrappers are used here.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::buffer::spare_capacity;
use rustix::event::{EventfdFlags, epoll};
use rustix::io::Errno;

/// The largest value an eventfd's counter holds; while it is there, the
/// eventfd is not writable (eventfd(2): `POLLOUT` iff a write of 1 would
/// not block).
const FULL: u64 = 0xffff_ffff_ffff_fffe;

/// A new non-blocking, close-on-exec eventfd with its counter at 0.
///
/// # References
/// - eventfd(2)
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
        .map_err(io::Error::from)
}

/// Adds 1 to the counter: the eventfd turns readable.
///
/// # References
/// - eventfd(2), write(2)
pub(crate) fn signal(fd: BorrowedFd<'_>) {
    // EAGAIN: the counter is at its maximum, as readable as it gets.
    let _ = retry(|| rustix::io::write(fd, &1u64.to_ne_bytes()));
}

/// Sets the counter to 0: no longer readable, and writable.
///
/// # References
/// - eventfd(2), read(2)
pub(crate) fn drain(fd: BorrowedFd<'_>) {
    let mut b = [0u8; 8];
    // EAGAIN: it was 0 already.
    let _ = retry(|| rustix::io::read(fd, &mut b));
}

/// Sets the counter to its maximum: no longer writable (until [`drain`]).
pub(crate) fn fill(fd: BorrowedFd<'_>) {
    drain(fd);
    let _ = retry(|| rustix::io::write(fd, &FULL.to_ne_bytes()));
}

/// One descriptor that turns readable when `readable` does (`EPOLLIN`), or
/// when the peer of the socket `hangup` closes it (`EPOLLRDHUP`, `EPOLLHUP`;
/// not its other input, which is not a message).
///
/// # References
/// - epoll_create1(2), epoll_ctl(2)
pub(crate) fn either(readable: BorrowedFd<'_>, hangup: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    epoll::add(
        &ep,
        readable,
        epoll::EventData::new_u64(0),
        epoll::EventFlags::IN,
    )?;
    epoll::add(
        &ep,
        hangup,
        epoll::EventData::new_u64(1),
        epoll::EventFlags::RDHUP,
    )?;
    Ok(ep)
}

/// An epoll set: descriptors watched for readability, each under a key,
/// however many there are (a [`poll`](super::poll) walks all of them on
/// every call).
///
/// # References
/// - epoll_create1(2), epoll_ctl(2), epoll_wait(2)
pub(crate) struct Watch {
    ep: OwnedFd,
    events: Vec<epoll::Event>,
}

impl Watch {
    pub(crate) fn new() -> io::Result<Watch> {
        Ok(Watch {
            ep: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            events: Vec::with_capacity(64),
        })
    }

    /// Watches `fd` (level-triggered) under `key`.
    pub(crate) fn add(&self, fd: BorrowedFd<'_>, key: u64) -> io::Result<()> {
        epoll::add(
            &self.ep,
            fd,
            epoll::EventData::new_u64(key),
            epoll::EventFlags::IN,
        )?;
        Ok(())
    }

    /// Stops watching `fd`. Call it before closing `fd`: epoll forgets a
    /// descriptor only when every copy of its open file is closed, copies
    /// in other processes included.
    pub(crate) fn remove(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        epoll::delete(&self.ep, fd)?;
        Ok(())
    }

    /// Waits until something is readable; `keys` gets the keys of what is.
    pub(crate) fn wait(&mut self, keys: &mut Vec<u64>) -> io::Result<()> {
        keys.clear();
        self.events.clear();
        retry(|| epoll::wait(&self.ep, spare_capacity(&mut self.events), None))?;
        keys.extend(self.events.iter().map(|e| e.data.u64()));
        Ok(())
    }
}

fn retry<T>(mut f: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}
