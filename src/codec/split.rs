//! A large postcard payload whose trailing byte string was read straight
//! into the allocation that becomes the decoded value's buffer.
//!
//! A 1 MiB [`ByteBuf`](crate::ByteBuf) received the plain way is read into
//! the receive buffer and then copied into its own allocation: a second
//! pass over a megabyte that the raw baseline does not make. When a
//! frame's length prefix says it is large, the receiver looks at its first
//! bytes for the length prefix of a byte string that runs to the end of
//! the payload ([`guess`]). If there is one, the rest of the frame is read
//! into a `Vec` of exactly that string's length (the *tail*), and the
//! value is decoded from the payload's first bytes (the *head*, ending with
//! that length prefix) with the tail handed over whole, at any depth, to the
//! one byte string that claims it: through
//! [`Visitor::visit_byte_buf`](serde::de::Visitor::visit_byte_buf) to a
//! `ByteBuf` (or a field marked `#[serde(with = "procwire::bytes")]`, or
//! `serde_bytes::ByteBuf`), through `visit_string` to a `String`.
//!
//! The tail's buffer is reserved at the size the length prefix announces
//! (never above the receiver's maximum frame) and written only as bytes
//! arrive, so a peer that announces much and sends little costs address
//! space, not memory (`tests/bad_input.rs`).
//!
//! A guess can be wrong: a large `Vec<u8>` (a sequence of bytes, not a byte
//! string) is written exactly like a `ByteBuf`. When decoding then needs a
//! tail byte the ordinary way, the head's decoder stops, and the payload is
//! decoded again from head and tail put back together: the copy the
//! guess tried to save, nothing lost, though `Deserialize` has run twice,
//! the first time on the head only. A message that came with descriptors
//! is therefore never split: that first run could take its `Fd`s.
//!
//! The receivers that split: pipes and stream sockets (the rest of the
//! frame read into the tail), shared memory (the string copied out of the
//! ring or its spill file into it), and messages sent out of line in a
//! memfd (read into it with `pread`); postcard only.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny};

use super::{CUSTOM, MAX_DEPTH, Postcard, decode_error, depth};
use crate::codec::Codec;
use crate::error::Result;

/// The smallest trailing byte string worth reading into its own allocation:
/// below it, the copy out of the receive buffer costs less than a second
/// allocation and a second read.
pub(crate) const TAIL_MIN: usize = 32 << 10;

/// How far into a payload a trailing byte string's length prefix is looked
/// for: past the fields a message usually puts before its bulk.
const LOOK: usize = 64;

/// The first bytes of a payload that [`guess`] needs to see: a length
/// prefix (at most 10 bytes) starting anywhere it looks.
pub(crate) const FIRST: usize = LOOK + 10;

/// Where a trailing byte string's length prefix starts in a payload of
/// `len` bytes whose first bytes are `prefix`, and where the string itself
/// starts (after the prefix): the first place where a postcard length
/// (LEB128) is followed by exactly that many bytes to the payload's end.
pub(crate) fn guess(prefix: &[u8], len: usize) -> Option<(usize, usize)> {
    for at in 0..prefix.len().min(LOOK) {
        let mut n: u64 = 0;
        for (i, &b) in prefix[at..].iter().take(10).enumerate() {
            n |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                let start = at + i + 1;
                if n >= TAIL_MIN as u64 && (start as u64).checked_add(n) == Some(len as u64) {
                    return Some((at, start));
                }
                break;
            }
        }
    }
    None
}

/// A large payload read in two pieces: its first `head` bytes in the
/// reader's buffer, ending with the length prefix (at `claim_at`) of the
/// byte string that runs to the payload's end, and that string in `tail`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Pieces {
    pub head: usize,
    pub claim_at: usize,
    pub tail: Vec<u8>,
}

/// A payload's two pieces put back together.
pub(crate) fn joined(head: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut whole = Vec::with_capacity(head.len() + tail.len());
    whole.extend_from_slice(head);
    whole.extend_from_slice(tail);
    whole
}

/// What the head's decoder and the claiming deserializer share.
struct Donor {
    /// Where the claimed string's length prefix starts in the payload.
    claim_at: usize,
    tail_len: usize,
    tail: Cell<Option<Vec<u8>>>,
    /// The head decoder's position.
    pos: Cell<usize>,
    /// A claim is being made: the head decoder's next take of the tail's
    /// length right at the head's end is the claimed string's, and is
    /// served empty (to the claim's `IgnoredAny`, never to a visitor).
    claiming: Cell<bool>,
    served: Cell<bool>,
    /// The decoder needed tail bytes the ordinary way.
    needs_whole: Cell<bool>,
}

thread_local! {
    /// The donor of the split decode running on this thread.
    static DONOR: RefCell<Option<Rc<Donor>>> = const { RefCell::new(None) };
}

/// What [`claim`] found.
pub(super) enum Claim<D, E> {
    /// The string about to be decoded is the tail's: here it is.
    Taken(std::result::Result<Vec<u8>, E>),
    /// It is not: another string of the value, decoded the usual way.
    NotOurs(D),
}

/// Hands the tail to the byte string about to be decoded, if it is the one
/// the tail belongs to: called by [`depth::Limited`] before it forwards a
/// `deserialize_byte_buf` or a `deserialize_string`, in a split decode only
/// (`Limited`'s `CLAIMS`: every other decode does not look).
#[cold]
#[inline(never)]
pub(super) fn claim<'de, D: Deserializer<'de>>(de: D) -> Claim<D, D::Error> {
    let Some(donor) = DONOR.with(|d| d.borrow().clone()) else {
        return Claim::NotOurs(de);
    };
    if donor.pos.get() != donor.claim_at || donor.served.get() {
        return Claim::NotOurs(de);
    }
    donor.claiming.set(true);
    let skipped = de.deserialize_bytes(IgnoredAny);
    donor.claiming.set(false);
    Claim::Taken(match skipped {
        Ok(_) if donor.served.get() => Ok(donor.tail.take().unwrap_or_default()),
        // Another deserializer's string took the claim (a split decode
        // nested in a Deserialize impl, which the receiver's gate rules
        // out): the tail is read the long way.
        Ok(_) => {
            donor.needs_whole.set(true);
            Err(de::Error::custom(
                "a split payload's trailing string was taken by another decoder",
            ))
        }
        Err(e) => Err(e),
    })
}

/// The head of a split payload, as postcard reads it.
struct Head<'de> {
    head: &'de [u8],
    pos: usize,
    donor: Rc<Donor>,
}

impl<'de> Head<'de> {
    fn take(&mut self, ct: usize) -> postcard::Result<&'de [u8]> {
        let d = &*self.donor;
        if d.claiming.get() && self.pos == self.head.len() && ct == d.tail_len {
            d.served.set(true);
            self.pos += ct;
            d.pos.set(self.pos);
            return Ok(&[]);
        }
        match self.pos.checked_add(ct) {
            Some(end) if end <= self.head.len() => {
                let s = &self.head[self.pos..end];
                self.pos = end;
                d.pos.set(end);
                Ok(s)
            }
            _ => {
                if !d.served.get() && self.pos.saturating_add(ct) <= self.head.len() + d.tail_len {
                    d.needs_whole.set(true);
                }
                Err(postcard::Error::DeserializeUnexpectedEnd)
            }
        }
    }
}

impl<'de> postcard::de_flavors::Flavor<'de> for Head<'de> {
    type Remainder = usize;
    type Source = ();

    fn pop(&mut self) -> postcard::Result<u8> {
        self.take(1).map(|s| s[0])
    }

    fn try_take_n(&mut self, ct: usize) -> postcard::Result<&'de [u8]> {
        self.take(ct)
    }

    /// The bytes left unread.
    fn finalize(self) -> postcard::Result<usize> {
        let total = self.head.len() + self.donor.tail_len;
        Ok(total.saturating_sub(self.pos))
    }
}

/// Names the donor of the split decode running on this thread while it
/// lives (and stops on unwinding too).
struct Active;

impl Active {
    fn new(donor: &Rc<Donor>) -> Active {
        DONOR.with(|d| *d.borrow_mut() = Some(Rc::clone(donor)));
        Active
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        DONOR.with(|d| d.borrow_mut().take());
    }
}

/// Decodes a postcard payload held as `head` (its first bytes, ending with
/// the length prefix of the trailing byte string, which starts at
/// `claim_at`) and `tail` (that string's bytes).
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    head: &[u8],
    claim_at: usize,
    tail: Vec<u8>,
) -> Result<T> {
    let len = head.len() + tail.len();
    let donor = Rc::new(Donor {
        claim_at,
        tail_len: tail.len(),
        tail: Cell::new(Some(tail)),
        pos: Cell::new(0),
        claiming: Cell::new(false),
        served: Cell::new(false),
        needs_whole: Cell::new(false),
    });
    let decoded = {
        let _active = Active::new(&donor);
        CUSTOM.with(|c| c.borrow_mut().take());
        let mut de = postcard::Deserializer::from_flavor(Head {
            head,
            pos: 0,
            donor: Rc::clone(&donor),
        });
        T::deserialize(depth::Limited::<_, true>::new(&mut de, MAX_DEPTH))
            .map(|v| (v, de.finalize()))
    };
    if donor.needs_whole.get() {
        // The guess was wrong (a sequence of bytes, not a byte string):
        // decode the payload put back together.
        let tail = donor.tail.take().unwrap_or_default();
        return Postcard::decode(&joined(head, &tail));
    }
    match decoded {
        Ok((value, Ok(0))) => Ok(value),
        Ok((_, Ok(rest))) => Err(decode_error(
            Postcard::NAME,
            len,
            format!("{rest} trailing bytes after the value"),
        )),
        Ok((_, Err(e))) => Err(decode_error(Postcard::NAME, len, e)),
        Err(e) => Err(match CUSTOM.with(|c| c.borrow_mut().take()) {
            Some(message) => decode_error(Postcard::NAME, len, message),
            None => decode_error(Postcard::NAME, len, e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::Deserialize;
    use serde::de::DeserializeOwned;

    use super::{FIRST, TAIL_MIN, decode, guess};
    use crate::ByteBuf;
    use crate::codec::{Codec, Postcard};

    #[derive(Debug, PartialEq, Deserialize)]
    enum Shape {
        Empty,
        Blob(u16, ByteBuf),
        Named { name: String, text: String },
    }

    /// Splits `payload` where the receiver would, then checks that the split
    /// decode gives what decoding the whole gives: the same value, or an
    /// error for both.
    fn same_as_whole<T: DeserializeOwned + PartialEq + std::fmt::Debug>(payload: &[u8]) -> bool {
        let Some((claim_at, tail_at)) = guess(&payload[..payload.len().min(FIRST)], payload.len())
        else {
            return false;
        };
        let split = decode::<T>(&payload[..tail_at], claim_at, payload[tail_at..].to_vec());
        let whole = Postcard::decode::<T>(payload);
        match (&split, &whole) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => panic!("split {split:?} but whole {whole:?}"),
        }
        true
    }

    fn varint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push(n as u8 | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any head bytes, then a length prefix that runs to the end, then
        /// any bytes: decoded into every shape, split or whole, the same.
        #[test]
        fn a_split_decode_is_the_whole_decode(
            head in proptest::collection::vec(any::<u8>(), 0..12),
            extra in 0usize..300,
            fill in any::<u8>(),
            text in any::<bool>(),
        ) {
            let n = TAIL_MIN + extra;
            let mut payload = head;
            varint(n, &mut payload);
            let tail = if text { vec![b'a' + fill % 26; n] } else { vec![fill; n] };
            payload.extend_from_slice(&tail);
            prop_assert!(same_as_whole::<ByteBuf>(&payload));
            same_as_whole::<String>(&payload);
            same_as_whole::<Vec<u8>>(&payload);
            same_as_whole::<(u8, ByteBuf)>(&payload);
            same_as_whole::<(u32, String)>(&payload);
            same_as_whole::<(ByteBuf, u8)>(&payload);
            same_as_whole::<Option<ByteBuf>>(&payload);
            same_as_whole::<Shape>(&payload);
            same_as_whole::<Vec<u16>>(&payload);
            same_as_whole::<BTreeMap<u8, ByteBuf>>(&payload);
        }
    }

    #[test]
    fn the_tail_becomes_the_byte_string_at_any_depth() {
        let blob = ByteBuf::from(
            (0..TAIL_MIN as u32 * 2)
                .map(|i| i as u8)
                .collect::<Vec<_>>(),
        );
        let mut payload = Vec::new();
        Postcard::encode(&(7u8, "name", (3u16, &blob)), &mut payload).unwrap();
        let (claim_at, tail_at) = guess(&payload[..64], payload.len()).unwrap();
        assert_eq!(claim_at, 1 + 1 + 4 + 1);
        let tail = payload[tail_at..].to_vec();
        let at = tail.as_ptr();
        let (a, name, (b, got)): (u8, String, (u16, ByteBuf)) =
            decode(&payload[..tail_at], claim_at, tail).unwrap();
        assert_eq!((a, name.as_str(), b), (7, "name", 3));
        assert_eq!(got, blob);
        // Handed over, not copied: the buffer is the tail's.
        assert_eq!(got.as_ptr(), at);
    }

    #[test]
    fn a_sequence_that_looks_like_a_byte_string_is_decoded_whole() {
        let v: Vec<u8> = (0..TAIL_MIN as u32 + 5).map(|i| (i % 251) as u8).collect();
        let mut payload = Vec::new();
        Postcard::encode(&v, &mut payload).unwrap();
        let (claim_at, tail_at) = guess(&payload, payload.len()).unwrap();
        let got: Vec<u8> =
            decode(&payload[..tail_at], claim_at, payload[tail_at..].to_vec()).unwrap();
        assert_eq!(got, v);
    }

    #[test]
    fn small_or_unended_strings_are_not_guessed() {
        let mut payload = Vec::new();
        Postcard::encode(&ByteBuf::from(vec![1; TAIL_MIN - 1]), &mut payload).unwrap();
        assert_eq!(guess(&payload, payload.len()), None);
        payload.clear();
        Postcard::encode(&(ByteBuf::from(vec![1; TAIL_MIN]), 5u8), &mut payload).unwrap();
        assert_eq!(guess(&payload, payload.len()), None);
    }
}
