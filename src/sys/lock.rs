//! A value behind one word: the lock under a channel end's gate.
//!
//! `std::sync::Mutex` costs a send and a receive about 35 instructions
//! each to release (its poison bookkeeping asks whether the thread is
//! panicking), and cannot say who holds it. Here the lock is the holder's
//! identity in one word: taken by a compare-and-swap, released by a swap,
//! and a busy lock tells its holder's identity with no second word to
//! keep in step. Waiting is the caller's business
//! ([`channel::gate`](crate::channel)); this module holds the `unsafe`
//! that hands out the value.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A value guarded by the identity (never 0) of the thread that holds it.
pub(crate) struct Lock<S> {
    holder: AtomicUsize,
    value: UnsafeCell<S>,
}

// SAFETY: the value is reached only through a `Held`, and the holder word
// lets one `Held` exist at a time, so the value passes from thread to
// thread as through a mutex.
unsafe impl<S: Send> Sync for Lock<S> {}

/// The value, while the lock is held; dropping it releases the lock.
pub(crate) struct Held<'a, S> {
    lock: &'a Lock<S>,
}

impl<S> Lock<S> {
    pub(crate) const fn new(value: S) -> Lock<S> {
        Lock {
            holder: AtomicUsize::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock for `me` (not 0), or says who holds it. Sequentially
    /// consistent, as the release is, so that a waiter that counts itself
    /// before trying and a holder that looks for waiters after releasing
    /// cannot miss each other.
    #[inline]
    pub(crate) fn try_lock(&self, me: usize) -> Result<Held<'_, S>, usize> {
        debug_assert_ne!(me, 0);
        match self
            .holder
            .compare_exchange(0, me, Ordering::SeqCst, Ordering::Relaxed)
        {
            Ok(_) => Ok(Held { lock: self }),
            Err(holder) => Err(holder),
        }
    }

    /// Who holds the lock now (0: nobody).
    #[inline]
    pub(crate) fn holder(&self) -> usize {
        self.holder.load(Ordering::Relaxed)
    }

    /// Who holds the lock now, read in the single total order of the
    /// lock's taking and release (SeqCst): for a waiter that counted
    /// itself just before.
    #[inline]
    pub(crate) fn holder_now(&self) -> usize {
        self.holder.load(Ordering::SeqCst)
    }
}

impl<S> Deref for Held<'_, S> {
    type Target = S;
    #[inline]
    fn deref(&self) -> &S {
        // SAFETY: this `Held` is the one holder (see `Lock`'s Sync impl).
        unsafe { &*self.lock.value.get() }
    }
}

impl<S> DerefMut for Held<'_, S> {
    #[inline]
    fn deref_mut(&mut self) -> &mut S {
        // SAFETY: as in `deref`; `&mut self` makes this borrow unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<S> Drop for Held<'_, S> {
    #[inline]
    fn drop(&mut self) {
        // A swap: a release, and (SeqCst) a full barrier before whatever the
        // caller looks at next.
        self.lock.holder.swap(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::Lock;

    #[test]
    fn one_holder_at_a_time_and_the_busy_lock_names_it() {
        let lock = Lock::new(5);
        let mut held = lock.try_lock(7).expect("free");
        *held += 1;
        assert_eq!(lock.try_lock(9).err(), Some(7));
        assert_eq!(lock.holder(), 7);
        drop(held);
        assert_eq!(lock.holder(), 0);
        assert_eq!(*lock.try_lock(9).expect("released"), 6);
    }
}
