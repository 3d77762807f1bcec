//! How a child finds the function it runs: a task's entry (the
//! trampoline), and functions named by their offset from a marker.
//!
//! # Safety
//!
//! Starting a *function* in another process means naming it there by its
//! address. The fork server is a fork of this process made by `init`, so
//! every function has the same address in it; a re-executed child is this
//! same binary loaded elsewhere, so addresses differ by one offset, and
//! procwire sends each address relative to a marker function. Before
//! calling through such an address, the child checks a fingerprint of the
//! binary (the distance between two procwire functions), which differs
//! between builds. The `transmute`s below rely on these facts; they are
//! this module's only `unsafe` code.

#![allow(unsafe_code)]

use std::os::fd::OwnedFd;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::CodecKind;
use crate::{Duplex, Options};

/// The signature of every task's entry in the child.
pub(crate) type Trampoline = fn(usize, OwnedFd, CodecKind, usize) -> i32;

/// The entry of every task in the child: decodes the argument and calls `f`.
pub(crate) fn trampoline<A, Out, In>(f: usize, fd: OwnedFd, codec: CodecKind, max: usize) -> i32
where
    A: DeserializeOwned,
    Out: Serialize,
    In: DeserializeOwned,
{
    let Ok(ch) = Options::new()
        .codec(codec)
        .max_frame(max)
        .duplex_from::<Out, In>(fd)
    else {
        return 126;
    };
    let Ok(Ok(arg)) = ch
        .receiver()
        .recv_raw(|bytes| CodecKind::Postcard.decode::<A>(bytes))
    else {
        return 126;
    };
    // SAFETY: `f` is the address of a `fn(A, Duplex<Out, In>)` of this
    // binary: it came from the parent, which is this same program (a fork,
    // or this binary re-executed and relocated by `from_offset`, after the
    // fingerprint check), and this trampoline was instantiated with the
    // same `A, Out, In` as that function.
    let f: fn(A, Duplex<Out, In>) = unsafe { std::mem::transmute::<usize, _>(f) };
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(arg, ch)));
    if ran.is_ok() { 0 } else { 101 }
}

/// Runs a trampoline by address (in the fork server's child).
pub(crate) fn run_trampoline(
    tramp: usize,
    f: usize,
    fd: OwnedFd,
    codec: CodecKind,
    max: usize,
) -> i32 {
    // SAFETY: `tramp` is the address of `trampoline::<A, Out, In>` taken in
    // the process that forked the server (so valid in this fork of it).
    let tramp: Trampoline = unsafe { std::mem::transmute::<usize, Trampoline>(tramp) };
    tramp(f, fd, codec, max)
}

/// The offset of a function's address, to name it in a child (see the
/// module docs).
pub(crate) fn fn_offset(addr: usize) -> isize {
    offset(addr)
}

/// The pool's worker handler named by `off` (from [`fn_offset`] in the
/// parent).
pub(crate) fn handler_at<Req, Resp>(off: isize) -> fn(Req) -> Resp {
    // SAFETY: `off` is the offset of a `fn(Req) -> Resp` of this binary,
    // taken by the parent (this same program: a fork of it, or this binary
    // re-executed, which `reexec_entry` checked by fingerprint), and the
    // caller instantiates this with that function's `Req, Resp`.
    unsafe { std::mem::transmute::<usize, fn(Req) -> Resp>(from_offset(off)) }
}

/// A worker initializer named by `off`.
pub(crate) fn init_fn_at(off: isize) -> fn() {
    // SAFETY: as for `handler_at`, for a `fn()`.
    unsafe { std::mem::transmute::<usize, fn()>(from_offset(off)) }
}

/// The marker that addresses are measured from.
#[inline(never)]
fn base() -> usize {
    base as *const () as usize
}

pub(crate) fn offset(addr: usize) -> isize {
    addr as isize - base() as isize
}

pub(crate) fn from_offset(off: isize) -> usize {
    (base() as isize + off) as usize
}

/// Differs between builds: the distance between two procwire functions.
pub(crate) fn fingerprint() -> isize {
    run_trampoline as *const () as usize as isize - base() as isize
}
