//! Waiting on several receivers (and any descriptor) at once.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use super::Receiver;
use super::receiver::RecvCore;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, Interest};

enum Entry<'a> {
    Receiver(&'a RecvCore),
    Fd(BorrowedFd<'a>, Interest),
    /// Removed: its index stays taken, so the others keep theirs.
    Removed,
}

/// Waits until one of several receivers has a message, or a descriptor is
/// ready, with an optional deadline.
///
/// A receiver counts as ready when a message (or its end of stream) is
/// already buffered, which poll(2) alone cannot see, or when its descriptor
/// is readable. Readable means bytes arrived, not necessarily a whole frame:
/// follow up with [`Receiver::try_recv`] or a short
/// [`Receiver::recv_timeout`], never an unbounded wait.
///
/// # Examples
///
/// ```
/// use procwire::Select;
/// use std::time::Duration;
///
/// let (tx_a, rx_a) = procwire::channel::<u8>()?;
/// let (tx_b, rx_b) = procwire::channel::<u8>()?;
/// tx_b.send(2)?;
///
/// let mut sel = Select::new();
/// let a = sel.recv(&rx_a);
/// let b = sel.recv(&rx_b);
/// assert_eq!(sel.ready_timeout(Duration::from_secs(5))?, b);
/// assert_eq!(rx_b.try_recv()?, 2);
/// assert!(sel.ready_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
/// # let _ = (a, tx_a);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct Select<'a> {
    entries: Vec<Entry<'a>>,
    /// Where the next look for a ready entry starts: it moves on every
    /// time, so that a busy entry cannot starve the others.
    next: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Select<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Select")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl<'a> Select<'a> {
    /// An empty set.
    ///
    /// # Examples
    ///
    /// ```
    /// let sel = procwire::Select::new();
    /// assert_eq!(sel.try_ready(), None); // nothing in it, nothing ready
    /// ```
    pub fn new() -> Select<'a> {
        Select::default()
    }

    /// Adds a receiver; returns its index.
    pub fn recv<T>(&mut self, rx: &'a Receiver<T>) -> usize {
        self.entries.push(Entry::Receiver(rx.core()));
        self.entries.len() - 1
    }

    /// Adds a descriptor to wait on for reading; returns its index.
    pub fn readable(&mut self, fd: &'a impl AsFd) -> usize {
        self.entries.push(Entry::Fd(fd.as_fd(), Interest::Read));
        self.entries.len() - 1
    }

    /// Adds a descriptor to wait on for writing; returns its index.
    pub fn writable(&mut self, fd: &'a impl AsFd) -> usize {
        self.entries.push(Entry::Fd(fd.as_fd(), Interest::Write));
        self.entries.len() - 1
    }

    /// Removes the entry at `index` (a receiver whose channel ended, say);
    /// the other entries keep their indices. Like crossbeam-channel's
    /// `Select::remove`.
    ///
    /// # Panics
    ///
    /// If `index` was never returned by this set, or was removed already.
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::Select;
    /// use std::time::Duration;
    ///
    /// let (tx_a, rx_a) = procwire::channel::<u8>()?;
    /// let (tx_b, rx_b) = procwire::channel::<u8>()?;
    /// let mut sel = Select::new();
    /// let a = sel.recv(&rx_a);
    /// let b = sel.recv(&rx_b);
    /// drop(tx_a); // a's channel ends: ready for ever, so take it out
    /// assert_eq!(sel.ready()?, a);
    /// assert!(rx_a.try_recv().unwrap_err().is_disconnected());
    /// sel.remove(a);
    /// tx_b.send(2)?;
    /// assert_eq!(sel.ready_timeout(Duration::from_secs(5))?, b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove(&mut self, index: usize) {
        match self.entries.get_mut(index) {
            Some(e) if !matches!(e, Entry::Removed) => *e = Entry::Removed,
            _ => panic!("Select::remove: no entry {index} in this set"),
        }
    }

    fn live(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| !matches!(e, Entry::Removed))
            .count()
    }

    /// Waits without a deadline; returns the index of a ready entry. When
    /// several are ready, which one is returned rotates, so that each gets
    /// its turn. On an empty set (nothing added, or all removed) it would
    /// wait for ever: [`ErrorKind::InvalidInput`] instead.
    pub fn ready(&self) -> Result<usize> {
        if self.live() == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "nothing to wait on: add a receiver or a descriptor first",
            ));
        }
        self.wait(None)
    }

    /// Waits at most `timeout`; [`ErrorKind::Timeout`] if nothing was ready
    /// (on an empty set too, as nothing is ready there: like
    /// [`try_ready`](Select::try_ready)'s `None`).
    pub fn ready_timeout(&self, timeout: Duration) -> Result<usize> {
        self.wait(super::gate::deadline_after(timeout))
    }

    /// Like [`ready_timeout`](Select::ready_timeout) with an instant.
    pub fn ready_deadline(&self, deadline: Instant) -> Result<usize> {
        self.wait(Some(deadline))
    }

    /// The index of an entry that is ready now, if any.
    pub fn try_ready(&self) -> Option<usize> {
        self.wait(Some(Instant::now())).ok()
    }

    fn wait(&self, deadline: Option<Instant>) -> Result<usize> {
        if self.live() == 0 {
            // Nothing can become ready: wait out the deadline, as an empty
            // crossbeam-channel Select does.
            if let Some(d) = deadline {
                std::thread::sleep(d.saturating_duration_since(Instant::now()));
            }
            return Err(timed_out());
        }
        let n = self.entries.len();
        let first = self.turn();
        for i in (first..n).chain(0..first) {
            if let Entry::Receiver(core) = &self.entries[i]
                && (core.buffered() || core.conn().shm_ready())
            {
                return Ok(i);
            }
        }
        // Shared-memory receivers: arm their readiness descriptors (a
        // message that came meanwhile makes one ready at once), so that
        // poll(2) below sleeps until one is signalled: no ticks.
        for i in (first..n).chain(0..first) {
            if let Entry::Receiver(core) = &self.entries[i]
                && core.conn().arm_read()
            {
                return Ok(i);
            }
        }
        self.poll_once(deadline, first)
    }

    /// Where this look starts, and moves the start on for the next.
    fn turn(&self) -> usize {
        use std::sync::atomic::Ordering::Relaxed;
        self.next.fetch_add(1, Relaxed) % self.entries.len()
    }

    fn poll_once(&self, deadline: Option<Instant>, first: usize) -> Result<usize> {
        // Each entry's descriptor, and for a receiver that supervises a
        // child also the child's pidfd: its exit makes the receiver ready
        // (its next receive reports it).
        let mut fds: Vec<(BorrowedFd<'_>, Interest)> = Vec::new();
        let mut owner = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            match e {
                Entry::Receiver(core) => {
                    fds.push((core.conn().recv_ready_fd(), Interest::Read));
                    owner.push(i);
                    if let Some(peer) = core.conn().peer() {
                        fds.push((peer.pidfd(), Interest::Read));
                        owner.push(i);
                    }
                }
                Entry::Fd(fd, interest) => {
                    fds.push((*fd, *interest));
                    owner.push(i);
                }
                Entry::Removed => {}
            }
        }
        let mut ready = vec![false; fds.len()];
        let hit = sys::poll(&fds, deadline, &mut ready)
            .map_err(|e| Error::io("waiting on the selected descriptors", e))?;
        // Of the ready ones, the first at or after this turn's start.
        let pick = (0..fds.len())
            .filter(|&k| ready[k])
            .min_by_key(|&k| (owner[k] + self.entries.len() - first) % self.entries.len());
        match pick {
            Some(k) if hit => Ok(owner[k]),
            _ => Err(timed_out()),
        }
    }
}

fn timed_out() -> Error {
    Error::new(
        ErrorKind::Timeout,
        "none of the selected channels became ready before the deadline",
    )
}
