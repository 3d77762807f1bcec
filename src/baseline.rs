//! Hand-written shared-memory rings: the raw baselines that `procwire
//! bench` measures the `shm` transport against (feature `baseline`).
//!
//! A [`raw_ring`] is what one would write by hand to move bytes between two
//! processes through shared memory: a single-producer single-consumer ring
//! of `[position: u64][len: u64][payload]` records, each padded to whole
//! 64-byte cache lines (the reader waits for the position it expects to
//! appear; the writer reads the reader's position, a shared atomic, when
//! its last look showed too little room, and near the start of a lap),
//! payloads copied in by the writer and out by the reader (two copies, like
//! the `shm` transport).
//!
//! A writer that knows the reader has left the lines at the data area's
//! start starts over there rather than going on around the ring, so that
//! messages sent one at a time, each answered before the next (a
//! ping-pong), reuse a few cache lines, as a one-slot exchange does; the
//! reader, finding nothing at its position, looks there too. It knows from
//! the look of an earlier send, never one it waits for: a send whose
//! record waited for the reader's position (a cache line the reader has
//! just written) took as long here as one that walks around the ring.
//! The price: until the reader reaches a record that started over, the
//! room is what lies before the reader's position in the data area, not
//! the whole ring.
//!
//! It has none of procwire's framing, codec, validation of the peer's
//! positions, liveness checks or out-of-line path: it trusts its peer
//! completely and would read garbage (though never outside its mapping)
//! from a hostile one. Do not use it for anything but a baseline.
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

const OFF_HEAD: usize = 64;
const OFF_DATA_SEQ: usize = 128;
const OFF_READER_WAITING: usize = 132;
const OFF_SPACE_SEQ: usize = 192;
const OFF_WRITER_WAITING: usize = 196;
const DATA: usize = 256;
/// The smallest data area: one record of a 64-byte message, every message
/// in the same two cache lines.
const MIN_CAPACITY: usize = 128;
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
    /// anew when it shows too little room, and by a send near the start of
    /// a lap, for the next one (which may start over).
    seen_head: u64,
    /// The lap (its first position) the last record started in, and how
    /// many records have started in it.
    lap: u64,
    in_lap: u32,
    /// Our position when `seen_head` was last read: the reader had read
    /// everything then if the two are equal.
    looked_at: u64,
    wait: ShmWait,
    /// How many sends started over (for the tests).
    #[cfg(test)]
    started_over: u64,
    /// Where the last record started, in the data area (for the tests).
    #[cfg(test)]
    last_at: usize,
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
/// two, at least 128: one record of a 64-byte message), whose ends wait as
/// `wait` says
/// ([`ShmWait::Adaptive`] is taken as [`ShmWait::Futex`]: a hand-written
/// ring has one strategy). The ends work across `fork` (the mapping is
/// shared) or between threads.
pub fn raw_ring(capacity: usize, wait: ShmWait) -> io::Result<(RawWriter, RawReader)> {
    let cap = capacity.clamp(MIN_CAPACITY, 1 << 30).next_power_of_two();
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
            lap: 0,
            in_lap: 0,
            looked_at: 0,
            wait,
            #[cfg(test)]
            started_over: 0,
            #[cfg(test)]
            last_at: 0,
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

/// A record's header: its position in the stream plus one (never the same
/// twice, so a record of an earlier lap is never taken for it, and never
/// the zero of a new mapping), then its length. The reader waits on the
/// position of the record it expects, in the cache line its payload starts
/// in, rather than on the writer's position in a line of its own.
const HEADER: usize = 16;

fn record_len(len: usize) -> usize {
    // Records start on a cache line: a header never wraps, and the writer
    // never writes into a line the reader is still reading a record from.
    (HEADER + len).next_multiple_of(64)
}

impl RawWriter {
    /// The largest message the ring carries.
    pub fn max_message(&self) -> usize {
        self.cap - HEADER
    }

    /// Copies `msg` into the ring, waiting for room.
    ///
    /// # Panics
    /// If `msg` is longer than [`max_message`](RawWriter::max_message).
    pub fn send(&mut self, msg: &[u8]) {
        assert!(msg.len() <= self.max_message(), "message too large");
        let need = record_len(msg.len()) as u64;
        let cap = self.cap as u64;
        let entry = self.tail;
        let start = entry & !(cap - 1);
        // The reader's position as an earlier send saw it: it only moves
        // forward, so what it shows read has been read.
        let known = self.seen_head;
        if known >= start && known - start >= need {
            // The record fits before the reader's position, in lines it
            // has left: start over at the data area's first line, so that
            // messages sent one at a time (a ping-pong) reuse a few cache
            // lines, as a one-slot exchange does, rather than walk through
            // the whole ring. The reader, finding nothing at its position,
            // looks there too.
            self.tail = start + cap;
            #[cfg(test)]
            {
                self.started_over += 1;
            }
        }
        if (self.tail & (cap - 1)) + need > cap {
            // A record never wraps around the end: its payload would land
            // on the first line, where the reader looks for a record that
            // started over, and a byte of it could pass for one (the
            // reader then took the line's old record: a message of 48
            // bytes for one of 49). It starts over instead, once the
            // reader has left the lines it needs (the wait below).
            self.tail = (self.tail & !(cap - 1)) + cap;
        }
        let tail = self.tail;
        let region = &self.region;
        let lap = tail & !(cap - 1);
        if lap != self.lap {
            (self.lap, self.in_lap) = (lap, 0);
        }
        self.in_lap += 1;
        if self.in_lap <= 2 || known == self.looked_at {
            // One of a lap's first two records, or the last look found
            // every message read (a ping-pong): look where the reader is,
            // for the next send (which may start over). Nothing here waits
            // for the answer, which would make the record's writes wait
            // for a cache line the reader has just written. A stream, whose
            // reader is behind, looks twice a lap.
            self.seen_head = region.u64_at(OFF_HEAD).load(Ordering::Acquire);
            self.looked_at = entry;
        }
        // The record's lines held, a lap ago, the stream up to
        // `tail + need - cap`: the reader must have read that far, or
        // everything there is (what a start-over skipped holds nothing).
        let floor = entry.min((tail + need).saturating_sub(cap));
        if known < floor {
            let seen = std::cell::Cell::new(known);
            wait_until(region, self.wait, OFF_SPACE_SEQ, OFF_WRITER_WAITING, || {
                seen.set(region.u64_at(OFF_HEAD).load(Ordering::Acquire));
                seen.get() >= floor
            });
            self.seen_head = seen.get();
        }
        let at = tail as usize & (self.cap - 1);
        #[cfg(test)]
        {
            self.last_at = at;
        }
        region
            .u64_at(DATA + at + 8)
            .store(msg.len() as u64, Ordering::Relaxed);
        copy_in(region, self.cap, (at + HEADER) & (self.cap - 1), msg);
        // The position last: a reader that sees it sees the rest.
        let position = region.u64_at(DATA + at);
        self.tail = tail.wrapping_add(need);
        if self.wait == ShmWait::Spin {
            position.store(tail + 1, Ordering::Release);
        } else {
            // (SeqCst, as the reader's announcement of a sleep and its look
            // after it: one of the two sees the other.)
            position.store(tail + 1, Ordering::SeqCst);
            wake(region, OFF_DATA_SEQ, OFF_READER_WAITING);
        }
    }
}

impl RawReader {
    /// Copies the next message into `out`, waiting for one; returns its
    /// length (a longer message is cut to `out`'s length).
    pub fn recv(&mut self, out: &mut [u8]) -> usize {
        let mut head = self.head;
        let region = &self.region;
        let mut at = head as usize & (self.cap - 1);
        let position = region.u64_at(DATA + at);
        // Where a writer that starts over puts its record (`RawWriter::send`):
        // the next lap's first line.
        let lap = (head | (self.cap as u64 - 1)) + 1;
        let first = region.u64_at(DATA);
        let published = || {
            position.load(Ordering::SeqCst) == head + 1
                || (at != 0 && first.load(Ordering::SeqCst) == lap + 1)
        };
        wait_until(
            region,
            self.wait,
            OFF_DATA_SEQ,
            OFF_READER_WAITING,
            published,
        );
        // A record at our position comes first (the writer publishes in
        // order, so once the next lap's is seen, an earlier one here is
        // seen too); without one, the writer started over.
        if position.load(Ordering::Acquire) != head + 1 {
            head = lap;
            at = 0;
        }
        let len = region.u64_at(DATA + at + 8).load(Ordering::Relaxed) as usize;
        let take = len.min(out.len());
        copy_out(
            region,
            self.cap,
            (at + HEADER) & (self.cap - 1),
            &mut out[..take],
        );
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
                // The largest takes the whole data area, once it drained.
                let max = tx.max_message();
                tx.send(&vec![9u8; max]);
                max
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
            let mut all = vec![0u8; 8192];
            let n = rx.recv(&mut all);
            assert_eq!(n, t.join().unwrap(), "{wait:?}");
            assert!(all[..n].iter().all(|&b| b == 9), "{wait:?}");
        }
    }

    /// A record never wraps around the data area's end: one of 49 to 64
    /// bytes after one of 48 or less in the smallest ring, or any that
    /// would cross the end of a larger one, starts over at the first line.
    /// (A wrapped payload's byte on the first line could pass for a record
    /// that started over there: the reader then took a stale record, a
    /// message of 48 bytes for one of 49, now and then in CI.)
    #[test]
    fn a_record_never_wraps_around_the_end() {
        for cap in [128usize, 4096] {
            let (mut tx, mut rx) = raw_ring(cap, ShmWait::Spin).unwrap();
            let mut buf = vec![0u8; cap];
            for i in 0..3000usize {
                let len = (i * 37) % (cap - HEADER + 1);
                let msg: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
                tx.send(&msg);
                assert!(
                    tx.last_at + record_len(len) <= cap,
                    "ring of {cap}: a record of {len} bytes at {}",
                    tx.last_at
                );
                assert_eq!(rx.recv(&mut buf), len);
                assert_eq!(&buf[..len], &msg[..]);
            }
        }
    }

    /// The smallest ring holds one record of a 64-byte message; messages
    /// of every size up to that go through it whole, those of 49 to 64
    /// bytes starting over at its first line when one of 48 or less went
    /// before.
    #[test]
    fn a_ring_of_one_record_carries_messages_whole() {
        for wait in [ShmWait::Spin, ShmWait::Yield, ShmWait::Futex] {
            let (mut tx, mut rx) = raw_ring(1, wait).unwrap();
            assert_eq!(tx.max_message(), MIN_CAPACITY - HEADER, "{wait:?}");
            let t = std::thread::spawn(move || {
                for i in 0..5000u32 {
                    let msg: Vec<u8> = (0..64).map(|j| (i + j) as u8).collect();
                    tx.send(&msg[..(i % 65) as usize]);
                }
            });
            let mut buf = [0u8; 64];
            for i in 0..5000u32 {
                let n = rx.recv(&mut buf);
                assert_eq!(n, (i % 65) as usize, "{wait:?}");
                assert!(
                    buf[..n]
                        .iter()
                        .enumerate()
                        .all(|(j, &b)| b == (i + j as u32) as u8),
                    "{wait:?}"
                );
            }
            t.join().unwrap();
        }
    }

    /// Sends and receives that pause at random, so that the writer now
    /// finds the reader caught up (and starts over), now runs ahead of it:
    /// every message arrives whole and in order.
    #[test]
    fn messages_arrive_in_order_whoever_waits() {
        // xorshift: the same pauses every run.
        fn next(x: &mut u64) -> u64 {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            *x
        }
        for wait in [ShmWait::Spin, ShmWait::Yield, ShmWait::Futex] {
            let (mut tx, mut rx) = raw_ring(4096, wait).unwrap();
            let n = 8_000u64;
            const SENDER: u64 = 0x9e37_79b9_7f4a_7c15;
            // The sender's draws: a message's length, then whether (and how
            // long) it pauses.
            let draws = |x: &mut u64| {
                let len = (next(x) % 600) as usize;
                let pause = next(x).is_multiple_of(8).then(|| next(x) % 50);
                (len, pause)
            };
            let t = std::thread::spawn(move || {
                let mut x = SENDER;
                for i in 0..n {
                    let (len, pause) = draws(&mut x);
                    let msg: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
                    tx.send(&msg);
                    if let Some(us) = pause {
                        std::thread::sleep(std::time::Duration::from_micros(us));
                    }
                }
                tx.started_over
            });
            let (mut theirs, mut x) = (SENDER, 0x2545_f491_4f6c_dd1du64);
            let mut buf = vec![0u8; 4096];
            for i in 0..n {
                let got = rx.recv(&mut buf);
                assert_eq!(got, draws(&mut theirs).0, "{wait:?} message {i}");
                assert!(
                    buf[..got]
                        .iter()
                        .enumerate()
                        .all(|(j, &b)| b == (i as usize + j) as u8),
                    "{wait:?} message {i}"
                );
                if next(&mut x).is_multiple_of(8) {
                    std::thread::sleep(std::time::Duration::from_micros(next(&mut x) % 50));
                }
            }
            // Both ways of sending were taken.
            let started_over = t.join().unwrap();
            assert!(
                started_over > 0 && started_over < n,
                "{wait:?}: {started_over}"
            );
        }
    }

    /// Messages of one size sent one at a time, each answered before the
    /// next, go in the data area's first lines: after the first few, every
    /// record starts at its first line or right after the record there.
    /// They arrive whole, as do those of changing sizes, and a stream sent
    /// after them.
    #[test]
    fn a_ping_pong_reuses_the_first_lines_of_the_ring() {
        for wait in [ShmWait::Spin, ShmWait::Yield, ShmWait::Futex] {
            let (mut tx, mut rx) = raw_ring(4096, wait).unwrap();
            let (mut back, mut from) = raw_ring(4096, wait).unwrap();
            let t = std::thread::spawn(move || {
                let mut buf = vec![0u8; 4096];
                loop {
                    let n = rx.recv(&mut buf);
                    back.send(&buf[..n]);
                    if n == 0 {
                        break;
                    }
                }
                // Then a stream, taken as it comes.
                (0..40)
                    .map(|_| {
                        let n = rx.recv(&mut buf);
                        buf[..n].to_vec()
                    })
                    .collect::<Vec<_>>()
            });
            let mut buf = vec![0u8; 4096];
            let mask = tx.cap as u64 - 1;
            let mut exchange = |i: usize, len: usize| {
                let msg: Vec<u8> = (0..len).map(|j| (i * 7 + j) as u8).collect();
                tx.send(&msg);
                let n = from.recv(&mut buf);
                assert_eq!(&buf[..n], &msg[..], "{wait:?} {i}");
                tx.tail & mask
            };
            for len in [1, 48, 49, 200, 700, 3] {
                let need = record_len(len) as u64;
                for i in 0..300 {
                    let end = exchange(i, len);
                    if i >= 3 {
                        assert!(end == need || end == 2 * need, "{wait:?} {len} {i}: {end}");
                    }
                }
            }
            for i in 0..1500 {
                exchange(i, (i * 37) % 1000 + 1);
            }
            exchange(0, 0);
            let burst: Vec<Vec<u8>> = (0..40).map(|i| vec![i as u8; i * 50]).collect();
            for msg in &burst {
                tx.send(msg);
            }
            assert_eq!(t.join().unwrap(), burst, "{wait:?}");
        }
    }
}
