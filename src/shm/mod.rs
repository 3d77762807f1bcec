//! The shared-memory ring behind the `shm` transport.
//!
//! One ring carries one direction: a single producer and a single consumer,
//! each in its own process (or thread), sharing a sealed memfd mapped once.
//! A message is a record `[len: u32][flags: u32][payload][pad to 8]`,
//! published by storing the new tail; a record that would cross the end of
//! the data area is preceded by a wrap marker (`len = u32::MAX`). The largest
//! message is half the data area less 8 bytes, so that any record fits once
//! the ring has drained. A larger message travels out of line, in a memfd
//! sent over the side socket and announced by a payload-less record. Up to
//! [`SPILL_MAX`] bytes that memfd is the writer's *spill file*: sealed
//! against resizing, mapped by both sides like the ring, and written again
//! for the next large message that fits once the reader says (a count in
//! the header) that it has read every one before; its pages are allocated
//! once, not for every message (a fresh memfd per message made a large
//! message some five times slower than the ring). A message that does not
//! fit the spill file, or comes while the reader has a spilled one still
//! to read, goes in a new spill file; above [`SPILL_MAX`], in a sealed
//! one-off memfd read with pread.
//!
//! The peer is untrusted: each process keeps its own position (the producer
//! its tail, the consumer its head) and only *reads* the other's from shared
//! memory, once per operation, checking it against its own before use. A
//! corrupt header or position is an error, never an out-of-bounds access or
//! an endless loop; a message is copied out before it is decoded, so the peer
//! cannot change it under the decoder.
//!
//! Waiting is adaptive: spin briefly (good when the peer runs on the other
//! CPU), then yield (good when it shares ours), then sleep on a futex, waking
//! now and then to check that the peer is still alive (10 ms into the
//! sleep, then at doubling intervals up to 100 ms).
//!
//! A ring also has two eventfds, so that poll(2), epoll and async runtimes
//! can wait on it without polling: `data` turns readable when a message
//! (or the writer's close) comes, `space` writable when a full ring gets
//! room (or the reader goes). Each is signalled only when the other side
//! *armed* it, by setting a flag in the header after it found the ring
//! empty (or full) and before it looked once more: the blocking paths,
//! which sleep on the futex, make no eventfd call per message.

use std::sync::atomic::Ordering;
use std::time::Instant;

use std::os::fd::{AsFd, OwnedFd};

use crate::codec;
use crate::sys::ready;

mod slot;
mod wait;
use crate::sys::shm::{Region, futex_wake};
pub(crate) use slot::Slot;
pub use wait::ShmWait;
pub(crate) use wait::Waited;
use wait::{Spins, adaptive_wait};

const MAGIC: u64 = u64::from_le_bytes(*b"PWSHM003");
const OFF_MAGIC: usize = 0;
const OFF_CAP: usize = 8;
const OFF_TAIL: usize = 64;
const OFF_HEAD: usize = 128;
const OFF_DATA_SEQ: usize = 192;
const OFF_READER_WAITING: usize = 196;
const OFF_WRITER_CLOSED: usize = 200;
/// The reader armed the `data` eventfd: signal it with the next message.
const OFF_READER_POLLING: usize = 204;
const OFF_SPACE_SEQ: usize = 256;
const OFF_WRITER_WAITING: usize = 260;
const OFF_READER_GONE: usize = 264;
/// The writer armed the `space` eventfd: drain it when room appears.
const OFF_WRITER_POLLING: usize = 268;
/// How many spilled messages ([`Outside::Spill`] and [`Outside::NewSpill`])
/// the reader has read to the end: the writer writes its spill file again
/// only when this has caught up with what it spilled.
const OFF_SPILLS_READ: usize = 320;
/// How many messages the writer spilled: where an end that travels to
/// another process takes up the count.
const OFF_SPILLED: usize = 384;
/// Where the data area starts.
pub(crate) const DATA: usize = 512;
const RECORD_HEADER: usize = 8;
const WRAP: u32 = u32::MAX;
/// A record flag: the payload is not in the ring but in a sealed memfd that
/// travelled over the side socket just before the record was published.
const OUT_OF_LINE: u32 = 1;
/// A record flag: the payload is at the start of a memfd that travelled
/// over the side socket just before the record was published, which is the
/// writer's spill file from now on.
const SPILL_NEW: u32 = 2;
/// A record flag: the payload is at the start of the spill file.
const SPILL: u32 = 3;

/// The largest message that goes through the writer's spill file; larger
/// ones go in a one-off memfd, so a channel that once sent a huge message
/// does not keep its pages.
pub(crate) const SPILL_MAX: usize = 64 << 20;

/// The smallest and largest data areas accepted.
pub(crate) const MIN_CAPACITY: usize = 4096;
pub(crate) const MAX_CAPACITY: usize = 1 << 30;

/// What went wrong in the ring.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RingError {
    /// The shared header or a record is inconsistent: the peer is broken or
    /// hostile. The ring cannot be used any more.
    Corrupt(String),
    /// The message can never fit in this ring.
    TooLarge { len: usize, max: usize },
    /// The consumer is gone.
    ReaderGone,
    /// This writer was [`close`](Writer::close)d: the reader was told no
    /// more messages come, so one published now could be lost unseen.
    Closed,
}

fn pad8(n: usize) -> usize {
    (n + 7) & !7
}

/// Where position `pos` lies in a data area of `cap` bytes, a power of two
/// (`capacity_for`, `check_header`): a mask, where `%` would divide (some
/// 40 cycles on x86, three times a message).
#[inline]
fn at(pos: u64, cap: usize) -> usize {
    debug_assert!(cap.is_power_of_two());
    (pos & (cap as u64 - 1)) as usize
}

/// The region size for a data area of `capacity` bytes (a power of two).
pub(crate) fn region_len(capacity: usize) -> usize {
    DATA + capacity
}

/// Checks a requested capacity and rounds it up to a power of two.
pub(crate) fn capacity_for(requested: usize) -> usize {
    requested
        .clamp(MIN_CAPACITY, MAX_CAPACITY)
        .next_power_of_two()
}

/// Writes the header of a fresh region.
pub(crate) fn init(region: &Region, capacity: usize) {
    region
        .u64_at(OFF_CAP)
        .store(capacity as u64, Ordering::Relaxed);
    region.u64_at(OFF_MAGIC).store(MAGIC, Ordering::Release);
}

/// Reads and checks the header of a region received from a peer: the
/// capacity it claims must be what the mapping holds.
pub(crate) fn check_header(region: &Region) -> Result<usize, RingError> {
    if region.u64_at(OFF_MAGIC).load(Ordering::Acquire) != MAGIC {
        return Err(RingError::Corrupt(
            "not a procwire shared-memory ring".into(),
        ));
    }
    let cap = region.u64_at(OFF_CAP).load(Ordering::Relaxed) as usize;
    if !cap.is_power_of_two()
        || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&cap)
        || region_len(cap) != region.len()
    {
        return Err(RingError::Corrupt(format!(
            "the ring claims a capacity of {cap} bytes"
        )));
    }
    Ok(cap)
}

/// A ring's two readiness eventfds (each side holds its own copies).
#[derive(Debug)]
pub(crate) struct Efds {
    /// Readable: a message or the writer's close may be there.
    pub(crate) data: OwnedFd,
    /// Writable: the reader made room (or left) since the writer armed it.
    pub(crate) space: OwnedFd,
}

impl Efds {
    pub(crate) fn new() -> std::io::Result<Efds> {
        Ok(Efds {
            data: ready::eventfd()?,
            space: ready::eventfd()?,
        })
    }

    pub(crate) fn try_clone(&self) -> std::io::Result<Efds> {
        Ok(Efds {
            data: self.data.try_clone()?,
            space: self.space.try_clone()?,
        })
    }
}

/// The producing end of a ring.
#[derive(Debug)]
pub(crate) struct Writer {
    region: Region,
    cap: usize,
    /// Our own position: never read back from shared memory.
    tail: u64,
    spins: Spins,
    efds: Efds,
    /// The reader's position when a write last found the ring full: room
    /// has appeared once it moved.
    full_at: Option<u64>,
    /// The reader's position as this writer last read it.
    seen_head: u64,
    /// The memfd large messages are written into ([`SPILL_MAX`]), mapped,
    /// once it has gone to the reader.
    spill: Option<Region>,
    /// Spilled messages published.
    spilled: u64,
    /// [`close`](Writer::close)d here: nothing more is published.
    closed: bool,
}

/// The consuming end of a ring.
#[derive(Debug)]
pub(crate) struct Reader {
    region: Region,
    cap: usize,
    head: u64,
    spins: Spins,
    efds: Efds,
    /// The writer's spill file, mapped, once a record brought it.
    spill: Option<Region>,
    /// Spilled messages read to the end.
    spills_read: u64,
}

impl Writer {
    pub(crate) fn new(region: Region, cap: usize, wait: ShmWait, efds: Efds) -> Writer {
        let tail = region.u64_at(OFF_TAIL).load(Ordering::Acquire);
        let seen_head = region.u64_at(OFF_HEAD).load(Ordering::Acquire);
        let spilled = region.u64_at(OFF_SPILLED).load(Ordering::Acquire);
        Writer {
            region,
            cap,
            tail,
            spins: Spins::with(wait),
            efds,
            full_at: None,
            seen_head,
            spill: None,
            spilled,
            closed: false,
        }
    }

    pub(crate) fn efds(&self) -> &Efds {
        &self.efds
    }

    /// After a write found the ring full: makes the `space` eventfd turn
    /// writable when the reader moves (or leaves). `true` if it has moved
    /// already (the eventfd is writable now).
    pub(crate) fn arm(&mut self) -> bool {
        let space = self.efds.space.as_fd();
        ready::fill(space);
        let polling = self.region.u32_at(OFF_WRITER_POLLING);
        polling.store(1, Ordering::SeqCst);
        let head = self.region.u64_at(OFF_HEAD).load(Ordering::SeqCst);
        let moved = self.full_at.is_none_or(|h| h != head)
            || self.region.u32_at(OFF_READER_GONE).load(Ordering::SeqCst) != 0;
        if moved {
            polling.store(0, Ordering::SeqCst);
            ready::drain(space);
        }
        moved
    }

    /// The largest payload this ring carries.
    pub(crate) fn max_message(&self) -> usize {
        self.cap / 2 - RECORD_HEADER
    }

    /// Publishes `payload` if there is room; `Ok(false)` if the ring is full.
    pub(crate) fn try_write(&mut self, payload: &[u8]) -> Result<bool, RingError> {
        if payload.len() > self.max_message() {
            return Err(RingError::TooLarge {
                len: payload.len(),
                max: self.max_message(),
            });
        }
        self.publish(payload, payload.len() as u32, 0)
    }

    /// Whether a record of `bytes` (header included) fits now. Only this
    /// writer adds records, so room can only grow until it writes. When it
    /// does not fit, the reader's position is noted for [`arm`](Writer::arm).
    pub(crate) fn has_room(&mut self, bytes: usize) -> bool {
        let room = self.room_for(bytes);
        if !room {
            self.full_at = Some(self.region.u64_at(OFF_HEAD).load(Ordering::Acquire));
        }
        room
    }

    fn room_for(&self, bytes: usize) -> bool {
        let head = self.region.u64_at(OFF_HEAD).load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        if head > self.tail || used > self.cap as u64 {
            return false; // try_write will report the corruption
        }
        let off = at(self.tail, self.cap);
        let to_end = self.cap - off;
        let needed = if bytes <= to_end {
            bytes
        } else {
            to_end + bytes
        };
        needed <= self.cap - used as usize
    }

    /// How many spilled messages the reader has read to the end.
    fn spills_read(&self) -> u64 {
        self.region.u64_at(OFF_SPILLS_READ).load(Ordering::Acquire)
    }

    /// Publishes the record of an out-of-line message of `len` bytes (in
    /// the spill file, or in a memfd sent already); `Ok(false)` if the ring
    /// is full. `new_spill` is the file sent with an [`Outside::NewSpill`]
    /// record, kept as the spill file once the record is out.
    pub(crate) fn try_write_out_of_line(
        &mut self,
        len: u32,
        outside: Outside,
        new_spill: Option<Region>,
    ) -> Result<bool, RingError> {
        let flags = match outside {
            Outside::Once => OUT_OF_LINE,
            Outside::NewSpill => SPILL_NEW,
            Outside::Spill => SPILL,
        };
        let published = self.publish(&[], len, flags)?;
        if published && outside != Outside::Once {
            self.spilled += 1;
            self.region
                .u64_at(OFF_SPILLED)
                .store(self.spilled, Ordering::Release);
            if new_spill.is_some() {
                self.spill = new_spill;
            }
        }
        Ok(published)
    }

    /// The spill file, for an end that travels (its new holder writes it
    /// as this one would have).
    pub(crate) fn spill(&self) -> Option<&Region> {
        self.spill.as_ref()
    }

    /// Takes up the spill file of an end that travelled here.
    pub(crate) fn set_spill(&mut self, spill: Option<Region>) {
        self.spill = spill;
    }

    fn publish(&mut self, payload: &[u8], len: u32, flags: u32) -> Result<bool, RingError> {
        let Some((at, needed)) = self.reserve(payload.len())? else {
            return Ok(false);
        };
        self.region.write(DATA + at + RECORD_HEADER, payload);
        self.commit(at, needed, len, flags);
        Ok(true)
    }

    /// Finds room for a record of `payload` bytes past our position
    /// (writing a wrap marker if it must start over at the beginning):
    /// where its header goes and how far the record moves our position.
    /// Nothing is visible to the reader until [`commit`](Writer::commit).
    fn reserve(&mut self, payload: usize) -> Result<Option<(usize, usize)>, RingError> {
        if self.closed {
            return Err(RingError::Closed);
        }
        if self.region.u32_at(OFF_READER_GONE).load(Ordering::Acquire) != 0 {
            return Err(RingError::ReaderGone);
        }
        let off = at(self.tail, self.cap);
        let record = RECORD_HEADER + pad8(payload);
        let to_end = self.cap - off;
        let needed = if record <= to_end {
            record
        } else {
            to_end + record
        };
        // The reader's position as last read: it only moves forward, so
        // room it shows is there. Read anew (a cache line the reader
        // writes with every message) only when it shows too little.
        let mut fresh = false;
        let mut head = self.seen_head;
        loop {
            let used = self.tail.wrapping_sub(head);
            if head > self.tail || used > self.cap as u64 {
                return Err(RingError::Corrupt(format!(
                    "the reader's position {head} is not within {} bytes behind ours ({})",
                    self.cap, self.tail
                )));
            }
            if needed <= self.cap - used as usize {
                break;
            }
            if fresh {
                self.full_at = Some(head);
                return Ok(None);
            }
            head = self.region.u64_at(OFF_HEAD).load(Ordering::Acquire);
            self.seen_head = head;
            fresh = true;
        }
        let mut at = off;
        if record > to_end {
            // Nothing fits before the end: mark the rest as skipped.
            self.region.write(DATA + at, &WRAP.to_le_bytes());
            at = 0;
        }
        Ok(Some((at, needed)))
    }

    /// Publishes the record reserved at `at`: its header, then our new
    /// position, then a wake-up if the reader sleeps.
    fn commit(&mut self, at: usize, needed: usize, len: u32, flags: u32) {
        let mut header = [0u8; RECORD_HEADER];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4..].copy_from_slice(&flags.to_le_bytes());
        self.region.write(DATA + at, &header);
        self.tail += needed as u64;
        // SeqCst pairs with the reader's "set waiting, re-check tail": one of
        // the two sees the other, so no wake-up is lost.
        self.region
            .u64_at(OFF_TAIL)
            .store(self.tail, Ordering::SeqCst);
        wake_if_waiting(&self.region, OFF_READER_WAITING, OFF_DATA_SEQ);
        signal_if_armed(&self.region, OFF_READER_POLLING, || {
            ready::signal(self.efds.data.as_fd())
        });
    }

    /// Tells the reader no more messages come (after those published).
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.region
            .u32_at(OFF_WRITER_CLOSED)
            .store(1, Ordering::SeqCst);
        wake(&self.region, OFF_DATA_SEQ);
        ready::signal(self.efds.data.as_fd());
    }

    /// Whether this writer was closed (a record it would publish now is
    /// refused: [`RingError::Closed`]).
    pub(crate) fn closed(&self) -> bool {
        self.closed
    }

    /// Waits for room (or the reader's departure) until `deadline`, using
    /// `alive` to check the peer while asleep.
    ///
    /// "Room" is any progress of the reader since a write last found too
    /// little (`full_at`): the caller then tries again.
    /// Not "the ring is not full", which a ring holding records that leave
    /// less room than the next one needs also is: a sender waiting there
    /// would find its wait over at once, try, and wait again, burning a
    /// CPU until the reader moved.
    pub(crate) fn wait(&mut self, deadline: Option<Instant>, alive: &dyn Fn() -> bool) -> Waited {
        let region = &self.region;
        let full_at = self.full_at;
        adaptive_wait(
            &mut self.spins,
            region.u32_at(OFF_SPACE_SEQ),
            region.u32_at(OFF_WRITER_WAITING),
            &|| {
                // The rule of `arm`, which the readiness descriptor follows.
                let head = region.u64_at(OFF_HEAD).load(Ordering::SeqCst);
                full_at.is_none_or(|at| head != at)
                    || region.u32_at(OFF_READER_GONE).load(Ordering::Acquire) != 0
            },
            deadline,
            alive,
        )
    }

    pub(crate) fn region(&self) -> &Region {
        &self.region
    }
}

impl Reader {
    pub(crate) fn new(region: Region, cap: usize, wait: ShmWait, efds: Efds) -> Reader {
        let head = region.u64_at(OFF_HEAD).load(Ordering::Acquire);
        Reader {
            spills_read: region.u64_at(OFF_SPILLS_READ).load(Ordering::Acquire),
            region,
            cap,
            head,
            spins: Spins::with(wait),
            efds,
            spill: None,
        }
    }

    /// The writer's spill file, if one came.
    pub(crate) fn spill(&self) -> Option<&Region> {
        self.spill.as_ref()
    }

    /// Keeps the file an [`Outside::NewSpill`] record brought (or the one
    /// an end that travelled here held).
    pub(crate) fn set_spill(&mut self, spill: Option<Region>) {
        self.spill = spill;
    }

    /// Copies the spilled message of `len` bytes out of the spill file, as
    /// [`try_read`](Reader::try_read) copies one out of the ring.
    pub(crate) fn read_spill(
        &self,
        len: usize,
        out: &mut Vec<u8>,
        split: bool,
    ) -> Result<Record, RingError> {
        let Some(spill) = &self.spill else {
            return Err(RingError::Corrupt(
                "a message in a spill file that never came".into(),
            ));
        };
        if len > spill.len() {
            return Err(RingError::Corrupt(format!(
                "a spilled message of {len} bytes in a spill file of {}",
                spill.len()
            )));
        }
        Ok(match copy_out(spill, 0, len, out, split) {
            Some(pieces) => Record::Split(pieces),
            None => Record::Inline(len),
        })
    }

    /// Done with a spilled message (read, or refused): the writer may
    /// write its spill file again once it has heard this of every one.
    pub(crate) fn spill_read(&mut self) {
        self.spills_read += 1;
        self.region
            .u64_at(OFF_SPILLS_READ)
            .store(self.spills_read, Ordering::Release);
    }

    pub(crate) fn efds(&self) -> &Efds {
        &self.efds
    }

    /// After a read found the ring empty: makes the `data` eventfd turn
    /// readable with the next message (or the writer's close). `true` if
    /// one is there already (the eventfd is readable now).
    pub(crate) fn arm(&self) -> bool {
        let data = self.efds.data.as_fd();
        ready::drain(data);
        self.region
            .u32_at(OFF_READER_POLLING)
            .store(1, Ordering::SeqCst);
        let there = self.region.u64_at(OFF_TAIL).load(Ordering::SeqCst) != self.head
            || self.writer_closed();
        if there {
            ready::signal(data);
        }
        there
    }

    /// The reader moved: a writer that armed `space` may write again.
    #[inline]
    fn moved(&self) {
        wake_if_waiting(&self.region, OFF_WRITER_WAITING, OFF_SPACE_SEQ);
        signal_if_armed(&self.region, OFF_WRITER_POLLING, || {
            ready::drain(self.efds.space.as_fd())
        });
    }

    /// Takes the next message into `out` (resized to fit); `Ok(None)` if
    /// there is none now. An out-of-line message comes back as
    /// [`Record::OutOfLine`]: its payload is in the next memfd of the side
    /// socket. With `split`, a large message that ends in a byte string
    /// comes back as [`Record::Split`], that string copied out of the ring
    /// into a buffer of its own (`codec::split`).
    #[inline]
    pub(crate) fn try_read(
        &mut self,
        out: &mut Vec<u8>,
        split: bool,
    ) -> Result<Option<Record>, RingError> {
        // A wrap marker is followed by a record, so this loop runs twice at
        // most; the bound keeps a hostile ring from spinning it.
        for _ in 0..2 {
            let tail = self.region.u64_at(OFF_TAIL).load(Ordering::Acquire);
            let avail = tail.wrapping_sub(self.head);
            if tail < self.head || avail > self.cap as u64 {
                return Err(RingError::Corrupt(format!(
                    "the writer's position {tail} is not within {} bytes ahead of ours ({})",
                    self.cap, self.head
                )));
            }
            if avail == 0 {
                return Ok(None);
            }
            let off = at(self.head, self.cap);
            let to_end = self.cap - off;
            if avail < RECORD_HEADER as u64 || to_end < RECORD_HEADER {
                return Err(RingError::Corrupt("a record header is cut off".into()));
            }
            let mut header = [0u8; RECORD_HEADER];
            self.region.read(DATA + off, &mut header);
            let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
            let flags = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
            if len == WRAP {
                if (to_end as u64) > avail {
                    return Err(RingError::Corrupt(
                        "a wrap marker past the writer's position".into(),
                    ));
                }
                self.head += to_end as u64;
                continue;
            }
            let outside = match flags {
                OUT_OF_LINE => Some(Outside::Once),
                SPILL_NEW => Some(Outside::NewSpill),
                SPILL => Some(Outside::Spill),
                _ => None,
            };
            if let Some(outside) = outside {
                if (RECORD_HEADER as u64) > avail {
                    return Err(RingError::Corrupt(
                        "an out-of-line record is cut off".into(),
                    ));
                }
                self.head += RECORD_HEADER as u64;
                self.region
                    .u64_at(OFF_HEAD)
                    .store(self.head, Ordering::SeqCst);
                self.moved();
                return Ok(Some(Record::OutOfLine(len as usize, outside)));
            }
            if flags != 0 {
                return Err(RingError::Corrupt(format!(
                    "unknown record flags {flags:#x}"
                )));
            }
            let len = len as usize;
            let record = RECORD_HEADER + pad8(len);
            if len > self.cap / 2 - RECORD_HEADER || record > to_end || record as u64 > avail {
                return Err(RingError::Corrupt(format!(
                    "a record of {len} bytes does not fit what was published"
                )));
            }
            let at = DATA + off + RECORD_HEADER;
            if split
                && len >= codec::split::TAIL_MIN
                && let Some(found) = read_split(&self.region, at, len, out)
            {
                self.consumed(record);
                return Ok(Some(found));
            }
            if out.len() < len {
                out.resize(len, 0);
            }
            self.region.read(at, &mut out[..len]);
            self.consumed(record);
            return Ok(Some(Record::Inline(len)));
        }
        Err(RingError::Corrupt("two wrap markers in a row".into()))
    }

    /// Frees the `record` bytes just read for the writer.
    #[inline(always)]
    fn consumed(&mut self, record: usize) {
        self.head += record as u64;
        self.region
            .u64_at(OFF_HEAD)
            .store(self.head, Ordering::SeqCst);
        self.moved();
    }

    /// Whether a message is waiting (for `Select`'s first look, before
    /// it arms the ring's readiness descriptor).
    pub(crate) fn has_message(&self) -> bool {
        self.region.u64_at(OFF_TAIL).load(Ordering::Acquire) != self.head
    }

    /// Whether the writer said it is done.
    pub(crate) fn writer_closed(&self) -> bool {
        self.region
            .u32_at(OFF_WRITER_CLOSED)
            .load(Ordering::Acquire)
            != 0
    }

    /// Tells the writer nobody reads any more.
    pub(crate) fn close(&self) {
        self.region
            .u32_at(OFF_READER_GONE)
            .store(1, Ordering::SeqCst);
        wake(&self.region, OFF_SPACE_SEQ);
        ready::drain(self.efds.space.as_fd());
    }

    /// Waits for a message (or the writer's close) until `deadline`.
    pub(crate) fn wait(&mut self, deadline: Option<Instant>, alive: &dyn Fn() -> bool) -> Waited {
        let region = &self.region;
        let head = self.head;
        adaptive_wait(
            &mut self.spins,
            region.u32_at(OFF_DATA_SEQ),
            region.u32_at(OFF_READER_WAITING),
            &|| {
                region.u64_at(OFF_TAIL).load(Ordering::SeqCst) != head
                    || region.u32_at(OFF_WRITER_CLOSED).load(Ordering::Acquire) != 0
            },
            deadline,
            alive,
        )
    }

    pub(crate) fn region(&self) -> &Region {
        &self.region
    }
}

/// Bumps the futex word at `seq` and wakes whoever sleeps on it.
fn wake(region: &Region, seq: usize) {
    let seq = region.u32_at(seq);
    seq.fetch_add(1, Ordering::SeqCst);
    futex_wake(seq);
}

/// Wakes the other side if its `waiting` flag says it may be asleep: the
/// flag spares a futex call per message while both sides are busy.
#[inline]
fn wake_if_waiting(region: &Region, waiting: usize, seq: usize) {
    if region.u32_at(waiting).load(Ordering::SeqCst) != 0 {
        wake(region, seq);
    }
}

/// Runs `signal` once if the other side armed its eventfd (`polling`),
/// disarming it: one eventfd call per arming, none while nobody polls.
#[inline]
fn signal_if_armed(region: &Region, polling: usize, signal: impl FnOnce()) {
    let flag = region.u32_at(polling);
    if flag.load(Ordering::SeqCst) != 0 && flag.swap(0, Ordering::SeqCst) != 0 {
        signal();
    }
}

/// What [`Reader::try_read`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// A message of this many bytes, now in the caller's buffer.
    Inline(usize),
    /// A message of this many bytes outside the ring, where [`Outside`]
    /// says.
    OutOfLine(usize, Outside),
    /// A large message in two pieces, the first in the caller's buffer.
    Split(codec::split::Pieces),
}

/// Copies the `len`-byte payload at `at` in `region` (in range: checked
/// by the caller) out of it: with `split`, a large one that ends in a byte
/// string in two [`Pieces`](codec::split::Pieces) (its first bytes into
/// `out`, the string into a buffer of its own); otherwise whole into
/// `out` (`None`).
pub(crate) fn copy_out(
    region: &Region,
    at: usize,
    len: usize,
    out: &mut Vec<u8>,
    split: bool,
) -> Option<codec::split::Pieces> {
    if split
        && len >= codec::split::TAIL_MIN
        && let Some(Record::Split(pieces)) = read_split(region, at, len, out)
    {
        return Some(pieces);
    }
    if out.len() < len {
        out.resize(len, 0);
    }
    region.read(at, &mut out[..len]);
    None
}

/// The `len`-byte payload at `at` in `region` (a ring or a spill file) as
/// a [`Record::Split`], if it ends in a byte string (by its first bytes:
/// `codec::split::guess`).
#[cold]
#[inline(never)]
fn read_split(region: &Region, at: usize, len: usize, out: &mut Vec<u8>) -> Option<Record> {
    let mut first = [0u8; codec::split::FIRST];
    let first = &mut first[..len.min(codec::split::FIRST)];
    region.read(at, first);
    let (claim_at, tail_at) = codec::split::guess(first, len)?;
    if out.len() < tail_at {
        out.resize(tail_at, 0);
    }
    region.read(at, &mut out[..tail_at]);
    let mut tail = Vec::new();
    if !region.read_into_spare(at + tail_at, len - tail_at, &mut tail) {
        return None;
    }
    Some(Record::Split(codec::split::Pieces {
        head: tail_at,
        claim_at,
        tail,
    }))
}

/// Where an out-of-line message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outside {
    /// In the next memfd of the side socket, sealed, for this message only.
    Once,
    /// At the start of the next memfd of the side socket, which is the
    /// writer's spill file from now on.
    NewSpill,
    /// At the start of the spill file.
    Spill,
}

#[cfg(any(test, feature = "unstable"))]
mod hostile;
#[cfg(feature = "unstable")]
pub(crate) use hostile::fuzz_read;
#[cfg(test)]
use hostile::scribble;

#[cfg(test)]
mod tests;
