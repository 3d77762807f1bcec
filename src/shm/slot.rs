//! Writing a record in place: the codec encodes straight into the ring
//! (`channel::sender::direct`), and the record is published only whole.

use super::{DATA, Outside, RECORD_HEADER, RingError, Writer};
use crate::sys::shm::Region;

/// What [`Writer::try_write_with`]'s `fill` returned, and how much it
/// wrote against the length reserved ([`Slot::written`]).
pub(crate) type Filled<R, E> = (Result<R, E>, std::cmp::Ordering);

/// A record's payload being written in place ([`Writer::try_write_with`]):
/// bytes go straight into the ring, up to the length reserved.
#[derive(Debug)]
pub(crate) struct Slot<'a> {
    region: &'a Region,
    /// Where the next byte goes.
    at: usize,
    /// Bytes of the reserved length not yet written.
    room: usize,
    /// A write went past the reserved length (and was refused).
    overran: bool,
}

impl<'a> Slot<'a> {
    /// `room` bytes of `region` from `at`, to be written in place (a
    /// message socket's spill file, `transport::large`).
    pub(crate) fn new(region: &'a Region, at: usize, room: usize) -> Slot<'a> {
        Slot {
            region,
            at,
            room,
            overran: false,
        }
    }

    /// What was written against the length reserved: `Equal` when exactly
    /// it, `Less` when short of it, `Greater` when a write tried to pass it.
    pub(crate) fn written(&self) -> std::cmp::Ordering {
        match (self.overran, self.room) {
            (true, _) => std::cmp::Ordering::Greater,
            (false, 0) => std::cmp::Ordering::Equal,
            (false, _) => std::cmp::Ordering::Less,
        }
    }
}

impl std::io::Write for Slot<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let Some(room) = self.room.checked_sub(data.len()) else {
            self.overran = true;
            return Err(std::io::Error::other(
                "the value encoded to more bytes than it did a moment before",
            ));
        };
        self.region.write(self.at, data);
        self.at += data.len();
        self.room = room;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Writer {
    /// Publishes a record of `len` bytes that `fill` writes in place, if
    /// there is room: no copy of the payload before the ring. `Ok(None)`
    /// if the ring is full (`fill` not called); otherwise what `fill`
    /// returned, and the record is published only if that is `Ok` and
    /// `fill` wrote exactly `len` bytes (see [`Slot::written`]).
    pub(crate) fn try_write_with<R, E>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut Slot<'_>) -> Result<R, E>,
    ) -> Result<Option<Filled<R, E>>, RingError> {
        if len > self.max_message() {
            return Err(RingError::TooLarge {
                len,
                max: self.max_message(),
            });
        }
        let Some((at, needed)) = self.reserve(len)? else {
            return Ok(None);
        };
        let mut slot = Slot {
            region: &self.region,
            at: DATA + at + RECORD_HEADER,
            room: len,
            overran: false,
        };
        let filled = fill(&mut slot);
        let written = slot.written();
        if filled.is_ok() && written.is_eq() {
            self.commit(at, needed, len as u32, 0);
        }
        Ok(Some((filled, written)))
    }

    /// Writes a message of `len` bytes (at most [`SPILL_MAX`](super::SPILL_MAX))
    /// that `fill` writes in place into the spill file, if it is large
    /// enough and the reader has read every message spilled into it
    /// ([`Outside::Spill`]); else into a new spill file
    /// ([`Outside::NewSpill`], returned: its memfd must reach the reader
    /// before the record does). Nothing is published here:
    /// [`try_write_out_of_line`](Writer::try_write_out_of_line) does that,
    /// once `fill` returned `Ok` having written exactly `len` bytes.
    pub(crate) fn spill_with<R, E>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut Slot<'_>) -> Result<R, E>,
    ) -> std::io::Result<(Outside, Option<Region>, Filled<R, E>)> {
        let read = self.spills_read();
        let reuse = self
            .spill
            .as_ref()
            .is_some_and(|s| read == self.spilled && len <= s.len());
        let new = if reuse {
            None
        } else {
            Some(Region::create(len.next_power_of_two())?)
        };
        let (outside, region) = match &new {
            Some(r) => (Outside::NewSpill, r),
            None => (Outside::Spill, self.spill.as_ref().expect("checked above")),
        };
        let mut slot = Slot {
            region,
            at: 0,
            room: len,
            overran: false,
        };
        let filled = fill(&mut slot);
        let written = slot.written();
        Ok((outside, new, (filled, written)))
    }
}
