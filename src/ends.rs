//! Which procwire ends of this process live on which socket.
//!
//! Dropping the last sender of an end shuts its socket's writing direction
//! down, so that the peer sees the end of the stream even when a copy of
//! the descriptor leaked (the forgotten-writer hazard). That is right only
//! while no *wanted* copy exists: once the descriptor has left for another
//! process or another procwire end, the shutdown would cut that copy off too
//! (shutdown(2) acts on the socket, not on one descriptor). So every end is
//! registered here under its socket's identity (device and inode, the same
//! in every copy), and each route by which a descriptor can leave marks the
//! ends on that socket as shared:
//! - a frame that carries it (a channel end inside a message, or a
//!   descriptor given to `send_with_fds`), once the frame is accepted;
//! - a second procwire end built on a copy of it (`Options::sender_from(fd)`);
//! - a hand-over to a child ([`Command`](crate::Command), [`fork`](crate::fork)).
//!
//! `into_fd()` takes the descriptor out of an end without any shutdown.

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use crate::sys;

/// The "shared" flag of one end, and the socket it is registered under.
#[derive(Debug)]
pub(crate) struct Shared {
    flag: Arc<AtomicBool>,
    id: Option<(u64, u64)>,
}

type Registry = Mutex<HashMap<(u64, u64), Vec<Weak<AtomicBool>>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

impl Shared {
    /// Registers an end on `fd`. If another live end of this process is on
    /// the same socket already, both are shared from now on.
    pub(crate) fn register(fd: BorrowedFd<'_>) -> Shared {
        let flag = Arc::new(AtomicBool::new(false));
        let id = sys::fd_id(fd).ok();
        if let Some(id) = id {
            let mut map = registry().lock().unwrap_or_else(PoisonError::into_inner);
            let ends = map.entry(id).or_default();
            ends.retain(|w| w.strong_count() > 0);
            if !ends.is_empty() {
                for other in ends.iter().filter_map(Weak::upgrade) {
                    other.store(true, Ordering::Relaxed);
                }
                flag.store(true, Ordering::Relaxed);
            }
            ends.push(Arc::downgrade(&flag));
        }
        Shared { flag, id }
    }

    /// Whether a copy of this end's descriptor went elsewhere.
    pub(crate) fn is_shared(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Marks this end shared.
    pub(crate) fn mark(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        let mut map = registry().lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ends) = map.get_mut(&id) {
            ends.retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), &*self.flag));
            if ends.is_empty() {
                map.remove(&id);
            }
        }
    }
}

/// A descriptor left in an accepted frame: every end of this process on
/// the same socket is shared from now on.
pub(crate) fn departed(fd: BorrowedFd<'_>) {
    let Ok(id) = sys::fd_id(fd) else { return };
    let map = registry().lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(ends) = map.get(&id) {
        for end in ends.iter().filter_map(Weak::upgrade) {
            end.store(true, Ordering::Relaxed);
        }
    }
}
