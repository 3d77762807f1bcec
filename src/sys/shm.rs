//! Shared memory: a sealed memfd mapped into both processes, and futexes.
//!
//! # Safety
//!
//! [`Region`] owns one `MAP_SHARED` mapping for its whole life (unmapped on
//! drop) and hands out only bounds-checked access: atomics at aligned,
//! in-range offsets, and byte copies into or out of in-range spans. The
//! memfd is sealed against shrinking before it is mapped (a peer that could
//! truncate it would turn our reads into SIGBUS), and a region received from
//! a peer is mapped only if those seals are in place and its size is what the
//! header says. The other process may write any byte at any time: every
//! value read here is treated as untrusted by the caller, and the copies
//! never touch memory outside the mapping whatever those values are. A
//! concurrent write by the peer can make a copied span inconsistent (the
//! caller validates), but cannot make it reach outside the mapping.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

/// A shared mapping of a sealed memfd.
#[derive(Debug)]
pub(crate) struct Region {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is shared memory accessed only through atomics and
// bounds-checked copies (see the module docs); it may be used from any
// thread.
unsafe impl Send for Region {}
// SAFETY: as above; no method hands out a non-atomic reference into it.
unsafe impl Sync for Region {}

const SEALS: SealFlags = SealFlags::SHRINK
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

fn io(e: rustix::io::Errno) -> io::Error {
    e.into()
}

impl Region {
    /// A new zeroed region of `len` bytes, sealed at that size.
    ///
    /// # References
    /// - memfd_create(2), ftruncate(2), fcntl(2) (`F_ADD_SEALS`), mmap(2)
    pub(crate) fn create(len: usize) -> io::Result<Region> {
        Region::create_named("procwire-shm", len)
    }

    /// [`create`](Region::create), the memfd named `name` (as
    /// `/proc/PID/fd` shows it).
    pub(crate) fn create_named(name: &str, len: usize) -> io::Result<Region> {
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
            .map_err(io)?;
        rustix::fs::ftruncate(&fd, len as u64).map_err(io)?;
        rustix::fs::fcntl_add_seals(&fd, SEALS).map_err(io)?;
        Region::map(fd, len)
    }

    /// Maps a region received from a peer: only if it is sealed against
    /// resizing and exactly `len` bytes long.
    pub(crate) fn open(fd: OwnedFd, len: usize) -> io::Result<Region> {
        let seals = rustix::fs::fcntl_get_seals(&fd).map_err(io)?;
        if !seals.contains(SealFlags::SHRINK | SealFlags::GROW) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the shared-memory file is not sealed against resizing",
            ));
        }
        let size = rustix::fs::fstat(&fd).map_err(io)?.st_size;
        if size != len as i64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the shared-memory file has {size} bytes, not the {len} announced"),
            ));
        }
        Region::map(fd, len)
    }

    /// Maps a region received from a peer whose size it does not announce
    /// (a shared-memory ring's spill file): whole, if sealed against
    /// resizing and at most `max` bytes long.
    pub(crate) fn open_whole(fd: OwnedFd, max: usize) -> io::Result<Region> {
        let size = rustix::fs::fstat(&fd).map_err(io)?.st_size;
        match usize::try_from(size) {
            Ok(len) if (1..=max).contains(&len) => Region::open(fd, len),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the shared-memory file has {size} bytes, not 1 to {max}"),
            )),
        }
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<Region> {
        // SAFETY: a fresh shared mapping of `len` bytes of a file sealed at
        // (at least) that size; no existing memory is affected.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )
        }
        .map_err(io)?;
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Region { ptr, len, fd })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The memfd, to hand the region to a peer.
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    #[inline(always)]
    fn check(&self, offset: usize, len: usize, align: usize) {
        // Offsets of atomics are procwire's own constants: a bad one is a bug
        // here, not peer input.
        assert!(
            offset.is_multiple_of(align)
                && offset.checked_add(len).is_some_and(|end| end <= self.len),
            "shared-memory access at {offset}+{len} outside a {} byte region",
            self.len
        );
    }

    /// The 64-bit atomic at `offset` (8-aligned, in range).
    #[inline]
    pub(crate) fn u64_at(&self, offset: usize) -> &AtomicU64 {
        self.check(offset, 8, 8);
        // SAFETY: in range and aligned (checked); the mapping lives as long
        // as `self`; AtomicU64 has the layout of u64 and any bit pattern is
        // valid.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    /// The 32-bit atomic at `offset` (4-aligned, in range).
    #[inline]
    pub(crate) fn u32_at(&self, offset: usize) -> &AtomicU32 {
        self.check(offset, 4, 4);
        // SAFETY: as for `u64_at`.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// Copies `data` into the region at `offset`; `false` (and nothing
    /// written) if the span is not inside the region.
    #[inline]
    pub(crate) fn write(&self, offset: usize, data: &[u8]) -> bool {
        if offset
            .checked_add(data.len())
            .is_none_or(|end| end > self.len)
        {
            return false;
        }
        // SAFETY: the destination span is inside the mapping (checked) and
        // cannot overlap `data`, which is private memory of this process.
        unsafe { copy(data.as_ptr(), self.ptr.as_ptr().add(offset), data.len()) };
        true
    }

    /// Copies out of the region at `offset` into `out`; `false` (and
    /// nothing read) if the span is not inside the region.
    #[inline]
    pub(crate) fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        if offset
            .checked_add(out.len())
            .is_none_or(|end| end > self.len)
        {
            return false;
        }
        // SAFETY: the source span is inside the mapping (checked) and cannot
        // overlap `out`, which is private memory of this process.
        unsafe { copy(self.ptr.as_ptr().add(offset), out.as_mut_ptr(), out.len()) };
        true
    }

    /// Copies `len` bytes out of the region at `offset` into `out`'s spare
    /// capacity (reserved here) and appends them: memory written once, by
    /// the copy. Nothing is read if the span is not inside the region.
    pub(crate) fn read_into_spare(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> bool {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return false;
        }
        out.reserve(len);
        let spare = out.spare_capacity_mut();
        // SAFETY: the source span is inside the mapping (checked); the
        // destination is `len` bytes of `out`'s spare capacity (reserved),
        // private memory of this process, so the two cannot overlap. After
        // the copy those bytes are initialized, and the length covers no
        // more than them.
        unsafe {
            copy(
                self.ptr.as_ptr().add(offset),
                spare.as_mut_ptr().cast(),
                len,
            );
            out.set_len(out.len() + len);
        }
        true
    }
}

/// `copy_nonoverlapping`, in pieces where one `memcpy` would be
/// [`aliased`](crate::bytes::aliased).
///
/// # Safety
/// As `copy_nonoverlapping`: `src` readable and `dst` writable for `len`
/// bytes, the two spans apart.
#[inline]
unsafe fn copy(src: *const u8, dst: *mut u8, len: usize) {
    use crate::bytes::{PIECE, aliased};
    if !aliased(dst as usize, src as usize, len) {
        // SAFETY: the caller's promise.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
        return;
    }
    let mut at = 0;
    while at < len {
        let n = PIECE.min(len - at);
        // SAFETY: `at + n <= len`: inside both spans the caller vouches for.
        unsafe { std::ptr::copy_nonoverlapping(src.add(at), dst.add(at), n) };
        at += n;
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `map` with this pointer and length,
        // and nothing borrowed from it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

impl AsFd for Region {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A sealed memfd holding `bytes`, written with pwrite(2): no mapping, so
/// no page fault per page and no unmap (both dominate for a one-off copy).
///
/// # References
/// - memfd_create(2), pwrite(2), fcntl(2) (`F_ADD_SEALS`)
pub(crate) fn memfd_with(bytes: &[u8]) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(
        "procwire-message",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(io)?;
    let mut at = 0;
    while at < bytes.len() {
        at += rustix::io::pwrite(&fd, &bytes[at..], at as u64).map_err(io)?;
    }
    rustix::fs::fcntl_add_seals(&fd, SEALS | SealFlags::WRITE).map_err(io)?;
    Ok(fd)
}

/// Checks that a spill file received from a peer is a memfd sealed
/// against resizing (so that its size holds while it is read) and not
/// against writing (its reader counts the messages read in it). Its bytes
/// may change: the reader copies them out before it decodes them.
///
/// # References
/// - fcntl(2) (`F_GET_SEALS`)
pub(crate) fn check_spill_seals(fd: &OwnedFd) -> io::Result<()> {
    let seals = rustix::fs::fcntl_get_seals(fd).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the spill file is not a memfd that can be sealed",
        )
    })?;
    if !seals.contains(SealFlags::SHRINK | SealFlags::GROW) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the spill file is not sealed against resizing",
        ));
    }
    if seals.intersects(SealFlags::WRITE | SealFlags::FUTURE_WRITE) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the spill file is sealed against writing, and its reader counts in it",
        ));
    }
    Ok(())
}

/// Checks a memfd received from a peer before it is read: it must be
/// sealed against resizing and writing, and exactly `len` bytes long.
///
/// # References
/// - fcntl(2) (`F_GET_SEALS`), fstat(2)
pub(crate) fn check_memfd(fd: &OwnedFd, len: usize) -> io::Result<()> {
    let seals = rustix::fs::fcntl_get_seals(fd).map_err(|e| match e {
        rustix::io::Errno::INVAL => io::Error::new(
            io::ErrorKind::InvalidData,
            "the message's descriptor is not a memfd that can be sealed",
        ),
        e => io(e),
    })?;
    if !seals.contains(SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the message's memfd is not sealed against resizing and writing",
        ));
    }
    let size = rustix::fs::fstat(fd).map_err(io)?.st_size;
    if size != len as i64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the message's memfd has {size} bytes, not the {len} announced"),
        ));
    }
    Ok(())
}

/// Reads `out.len()` bytes of a [checked](check_memfd) memfd from `at`.
///
/// # References
/// - pread(2)
pub(crate) fn pread_exact(fd: &OwnedFd, at: usize, out: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < out.len() {
        let n = rustix::io::pread(fd, &mut out[done..], (at + done) as u64).map_err(io)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        done += n;
    }
    Ok(())
}

/// Sleeps while `word` holds `expected`, at most `timeout`; shared (not
/// process-private), so a wake from the other process reaches it.
///
/// # References
/// - futex(2) with `FUTEX_WAIT`
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = rustix::thread::futex::Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    // EAGAIN (the value changed), EINTR and ETIMEDOUT all mean: look again.
    let _ = rustix::thread::futex::wait(
        word,
        rustix::thread::futex::Flags::empty(),
        expected,
        Some(&ts),
    );
}

/// Wakes the sleepers on `word`.
///
/// # References
/// - futex(2) with `FUTEX_WAKE`
pub(crate) fn futex_wake(word: &AtomicU32) {
    let _ =
        rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), i32::MAX as u32);
}

/// Gives the CPU to another runnable thread.
///
/// # References
/// - sched_yield(2)
pub(crate) fn yield_now() {
    rustix::thread::sched_yield();
}
