//! Registering a descriptor with tokio's reactor (feature `tokio`).
//!
//! tokio 1.54 made the registration `unsafe`: the reactor relies on the
//! descriptor staying open while it is registered. An `OwnedFd` held by
//! the `AsyncFd` itself does, which is all this module promises.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::OwnedFd;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// `fd`, registered for `interest` with the current runtime's reactor.
pub(crate) fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the `AsyncFd` owns `fd`, so it stays open (and is the same
    // open file) until the `AsyncFd` deregisters it on drop.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(|e| e.into_parts().1)
}
