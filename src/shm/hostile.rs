//! A ring as a hostile peer leaves it: for the fuzzer and the tests.

#![cfg_attr(test, allow(dead_code))]

use std::sync::atomic::Ordering;

use super::*;

/// For the fuzzer ([`crate::fuzz::shm_ring`]): `data`'s first 16 bytes as
/// the tail and head a hostile peer stores, the rest over the data area;
/// then read until an error or nothing more.
#[cfg(feature = "unstable")]
pub(crate) fn fuzz_read(data: &[u8]) {
    let cap = MIN_CAPACITY;
    let Ok(region) = Region::create(region_len(cap)) else {
        return;
    };
    init(&region, cap);
    let word = |i: usize| {
        let mut b = [0u8; 8];
        let part = data.get(i * 8..).unwrap_or_default();
        let n = part.len().min(8);
        b[..n].copy_from_slice(&part[..n]);
        u64::from_le_bytes(b)
    };
    let (tail, head) = (word(0), word(1) % (4 * cap as u64));
    let body = data.get(16..).unwrap_or_default();
    scribble(&region, tail, head, 0, &body[..body.len().min(cap)]);
    let Ok(efds) = Efds::new() else { return };
    let mut r = Reader::new(region, cap, ShmWait::Adaptive, efds);
    let mut out = Vec::new();
    for _ in 0..64 {
        match r.try_read(&mut out, true) {
            Ok(Some(Record::Inline(n))) => assert!(n <= cap && n <= out.len()),
            Ok(Some(Record::Split(p))) => {
                assert!(p.head <= out.len() && p.head + p.tail.len() <= cap)
            }
            Ok(Some(Record::OutOfLine(..))) => {}
            Ok(None) | Err(_) => break,
        }
        assert!(out.len() <= cap, "more than the ring holds");
    }
}

/// For tests and fuzzing: the header fields a hostile peer can scribble on.
pub(super) fn scribble(region: &Region, tail: u64, head: u64, at: usize, bytes: &[u8]) {
    region.u64_at(OFF_TAIL).store(tail, Ordering::SeqCst);
    region.u64_at(OFF_HEAD).store(head, Ordering::SeqCst);
    region.write(DATA + at, bytes);
}
