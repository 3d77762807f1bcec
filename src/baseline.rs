//! Hand-written shared-memory rings: the raw baselines that `procwire
//! bench` measures the `shm` transport against (feature `baseline`).
//!
//! A [`raw_ring`] is what one would write by hand to move bytes between two
//! processes through shared memory: a single-producer single-consumer ring
//! of `[len: u64][payload, padded to 8]` records, positions in shared
//! atomics, payloads copied in by the writer and out by the reader (two
//! copies, like the `shm` transport). It has none of procwire's framing,
//! codec, validation of the peer's positions, liveness checks or
//! out-of-line path: it trusts its peer completely and would read garbage
//! (though never outside its mapping) from a hostile one. Do not use it for
//! anything but a baseline.
//!
//! ```
//! use procwire::ShmWait;
//! use procwire::baseline::raw_ring;
//!
//! let (mut tx, mut rx) = raw_ring(4096, ShmWait::Futex)?;
//! tx.send(b"ping");
//! let mut buf = [0u8; 16];
//! assert_eq!(rx.recv(&mut buf), 4);
//! assert_eq!(&buf[..4], b"ping");
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::ShmWait;
use crate::sys::shm::{Region, futex_wait, futex_wake, yield_now};

const OFF_TAIL: usize = 0;
const OFF_HEAD: usize = 64;
const OFF_DATA_SEQ: usize = 128;
const OFF_READER_WAITING: usize = 132;
const OFF_SPACE_SEQ: usize = 192;
const OFF_WRITER_WAITING: usize = 196;
const DATA: usize = 256;
/// A sleeper looks again this often even without a wake (the peer never
/// fails to wake it; this only bounds the damage of a lost one).
const SLEEP: Duration = Duration::from_secs(1);

/// The writing end of a [`raw_ring`].
#[derive(Debug)]
pub struct RawWriter {
    region: Region,
    cap: usize,
    tail: u64,
    /// The reader's position as last read (it only moves forward): read
    /// anew only when it shows too little room.
    seen_head: u64,
    wait: ShmWait,
}

/// The reading end of a [`raw_ring`].
#[derive(Debug)]
pub struct RawReader {
    region: Region,
    cap: usize,
    head: u64,
    wait: ShmWait,
}

/// A ring with a data area of `capacity` bytes (rounded up to a power of
/// two, at least 4 KiB), whose ends wait as `wait` says
/// ([`ShmWait::Adaptive`] is taken as [`ShmWait::Futex`]: a hand-written
/// ring has one strategy). The ends work across `fork` (the mapping is
/// shared) or between threads.
pub fn raw_ring(capacity: usize, wait: ShmWait) -> io::Result<(RawWriter, RawReader)> {
    let cap = capacity.clamp(4096, 1 << 30).next_power_of_two();
    let wait = match wait {
        ShmWait::Adaptive => ShmWait::Futex,
        w => w,
    };
    let region = Region::create(DATA + cap)?;
    let other = Region::open(region.fd().try_clone()?, DATA + cap)?;
    Ok((
        RawWriter {
            region,
            cap,
            tail: 0,
            seen_head: 0,
            wait,
        },
        RawReader {
            region: other,
            cap,
            head: 0,
            wait,
        },
    ))
}

/// Waits as `wait` says until `ready`, sleeping on the futex `seq` and
/// announcing the sleep in `waiting`.
fn wait_until(
    region: &Region,
    wait: ShmWait,
    seq: usize,
    waiting: usize,
    ready: impl Fn() -> bool,
) {
    while !ready() {
        match wait {
            ShmWait::Spin => std::hint::spin_loop(),
            ShmWait::Yield => yield_now(),
            _ => {
                let seq = region.u32_at(seq);
                let seen = seq.load(Ordering::SeqCst);
                region.u32_at(waiting).store(1, Ordering::SeqCst);
                if !ready() {
                    futex_wait(seq, seen, SLEEP);
                }
                region.u32_at(waiting).store(0, Ordering::SeqCst);
            }
        }
    }
}

/// Wakes the other side if it announced a sleep.
fn wake(region: &Region, seq: usize, waiting: usize) {
    if region.u32_at(waiting).load(Ordering::SeqCst) != 0 {
        let seq = region.u32_at(seq);
        seq.fetch_add(1, Ordering::SeqCst);
        futex_wake(seq);
    }
}

fn record_len(len: usize) -> usize {
    8 + len.next_multiple_of(8)
}

impl RawWriter {
    /// The largest message the ring carries.
    pub fn max_message(&self) -> usize {
        self.cap - 8
    }

    /// Copies `msg` into the ring, waiting for room.
    ///
    /// # Panics
    /// If `msg` is longer than [`max_message`](RawWriter::max_message).
    pub fn send(&mut self, msg: &[u8]) {
        assert!(msg.len() <= self.max_message(), "message too large");
        let need = record_len(msg.len()) as u64;
        let (cap, tail) = (self.cap as u64, self.tail);
        let region = &self.region;
        if cap - tail.wrapping_sub(self.seen_head) < need {
            let seen = std::cell::Cell::new(self.seen_head);
            wait_until(region, self.wait, OFF_SPACE_SEQ, OFF_WRITER_WAITING, || {
                seen.set(region.u64_at(OFF_HEAD).load(Ordering::Acquire));
                cap - tail.wrapping_sub(seen.get()) >= need
            });
            self.seen_head = seen.get();
        }
        let at = (tail % cap) as usize;
        region.write(DATA + at, &(msg.len() as u64).to_le_bytes());
        copy_in(region, self.cap, (at + 8) % self.cap, msg);
        self.tail = tail.wrapping_add(need);
        if self.wait == ShmWait::Spin {
            region.u64_at(OFF_TAIL).store(self.tail, Ordering::Release);
        } else {
            region.u64_at(OFF_TAIL).store(self.tail, Ordering::SeqCst);
            wake(region, OFF_DATA_SEQ, OFF_READER_WAITING);
        }
    }
}

impl RawReader {
    /// Copies the next message into `out`, waiting for one; returns its
    /// length (a longer message is cut to `out`'s length).
    pub fn recv(&mut self, out: &mut [u8]) -> usize {
        let head = self.head;
        let region = &self.region;
        wait_until(region, self.wait, OFF_DATA_SEQ, OFF_READER_WAITING, || {
            region.u64_at(OFF_TAIL).load(Ordering::Acquire) != head
        });
        let at = (head % self.cap as u64) as usize;
        let mut len = [0u8; 8];
        region.read(DATA + at, &mut len);
        let len = u64::from_le_bytes(len) as usize;
        let take = len.min(out.len());
        copy_out(region, self.cap, (at + 8) % self.cap, &mut out[..take]);
        self.head = head.wrapping_add(record_len(len) as u64);
        if self.wait == ShmWait::Spin {
            region.u64_at(OFF_HEAD).store(self.head, Ordering::Release);
        } else {
            region.u64_at(OFF_HEAD).store(self.head, Ordering::SeqCst);
            wake(region, OFF_SPACE_SEQ, OFF_WRITER_WAITING);
        }
        take
    }
}

/// Copies `data` into the data area at `at`, wrapping at its end.
fn copy_in(region: &Region, cap: usize, at: usize, data: &[u8]) {
    let first = data.len().min(cap - at);
    region.write(DATA + at, &data[..first]);
    region.write(DATA, &data[first..]);
}

/// Copies out of the data area at `at`, wrapping at its end.
fn copy_out(region: &Region, cap: usize, at: usize, out: &mut [u8]) {
    let first = out.len().min(cap - at);
    let (a, b) = out.split_at_mut(first);
    region.read(DATA + at, a);
    region.read(DATA, b);
}

impl crate::Inherit for RawWriter {
    fn descriptors(&self, out: &mut Vec<RawFd>) {
        use std::os::fd::AsRawFd;
        out.push(self.region.fd().as_raw_fd());
    }
}

impl crate::Inherit for RawReader {
    fn descriptors(&self, out: &mut Vec<RawFd>) {
        use std::os::fd::AsRawFd;
        out.push(self.region.fd().as_raw_fd());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_wrap_around_intact_between_threads() {
        for wait in [ShmWait::Spin, ShmWait::Yield, ShmWait::Futex] {
            let (mut tx, mut rx) = raw_ring(4096, wait).unwrap();
            let t = std::thread::spawn(move || {
                for i in 0..2000usize {
                    let msg: Vec<u8> = (0..i % 1500).map(|j| (i + j) as u8).collect();
                    tx.send(&msg);
                }
            });
            let mut buf = vec![0u8; 4096];
            for i in 0..2000usize {
                let n = rx.recv(&mut buf);
                assert_eq!(n, i % 1500, "{wait:?}");
                assert!(
                    buf[..n]
                        .iter()
                        .enumerate()
                        .all(|(j, &b)| b == (i + j) as u8)
                );
            }
            t.join().unwrap();
        }
    }
}
