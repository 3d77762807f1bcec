//! Byte payloads that serde copies in bulk.
//!
//! serde writes a `Vec<u8>` as a sequence of numbers, one at a time (and
//! MessagePack as an array of small integers). [`ByteBuf`] is a `Vec<u8>`
//! that serializes as a byte string instead: one copy, and `bin` in
//! MessagePack. For a `Vec<u8>` field of your own type, `#[serde(with =
//! "procwire::bytes")]` does the same. On the wire both are exactly what
//! the `serde_bytes` crate writes, so peers see no difference.
//!
//! # Examples
//!
//! ```
//! use procwire::ByteBuf;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, PartialEq, Debug)]
//! struct Blob {
//!     name: String,
//!     #[serde(with = "procwire::bytes")]
//!     data: Vec<u8>,
//! }
//!
//! let (tx, rx) = procwire::channel::<(ByteBuf, Blob)>()?;
//! let blob = Blob { name: "b".into(), data: vec![1, 2, 3] };
//! tx.send((ByteBuf::from(vec![9; 4096]), blob))?;
//! let (buf, blob) = rx.recv()?;
//! assert_eq!(buf.len(), 4096);
//! assert_eq!(blob.data, [1, 2, 3]);
//! # Ok::<(), procwire::Error>(())
//! ```

use std::borrow::{Borrow, BorrowMut};
use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A `Vec<u8>` that serializes as a byte string (see the [module](self)).
///
/// It dereferences to `Vec<u8>`, so the vector's methods are its own.
///
/// # Examples
///
/// ```
/// use procwire::ByteBuf;
///
/// let mut b = ByteBuf::from(b"abc".to_vec());
/// b.push(b'd');
/// assert_eq!(&b[..], b"abcd");
/// assert_eq!(b.into_vec(), b"abcd");
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteBuf(Vec<u8>);

impl ByteBuf {
    /// An empty buffer.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut b = procwire::ByteBuf::new();
    /// b.extend_from_slice(b"abc");
    /// assert_eq!(b.len(), 3);
    /// ```
    pub fn new() -> ByteBuf {
        ByteBuf(Vec::new())
    }

    /// An empty buffer with room for `n` bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = procwire::ByteBuf::with_capacity(4096);
    /// assert!(b.is_empty() && b.capacity() >= 4096);
    /// ```
    pub fn with_capacity(n: usize) -> ByteBuf {
        ByteBuf(Vec::with_capacity(n))
    }

    /// The bytes, as a `Vec<u8>`.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl fmt::Debug for ByteBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl From<Vec<u8>> for ByteBuf {
    fn from(v: Vec<u8>) -> ByteBuf {
        ByteBuf(v)
    }
}

impl From<ByteBuf> for Vec<u8> {
    fn from(b: ByteBuf) -> Vec<u8> {
        b.0
    }
}

impl FromIterator<u8> for ByteBuf {
    fn from_iter<I: IntoIterator<Item = u8>>(iter: I) -> ByteBuf {
        ByteBuf(iter.into_iter().collect())
    }
}

impl Deref for ByteBuf {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for ByteBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl AsRef<[u8]> for ByteBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl AsMut<[u8]> for ByteBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl Borrow<[u8]> for ByteBuf {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl BorrowMut<[u8]> for ByteBuf {
    fn borrow_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl Serialize for ByteBuf {
    // Inlined into the codec's encode: left to itself, the compiler keeps
    // it out of line in some builds of the crate, which costs a 64 B send
    // about 45 instructions (`scripts/instructions`).
    #[inline]
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteBuf, D::Error> {
        d.deserialize_byte_buf(BytesVisitor).map(ByteBuf)
    }

    /// Takes the new bytes into the buffer already there, which keeps its
    /// allocation when it has room ([`Receiver::recv_into`]).
    ///
    /// [`Receiver::recv_into`]: crate::Receiver::recv_into
    fn deserialize_in_place<D: Deserializer<'de>>(
        d: D,
        place: &mut ByteBuf,
    ) -> Result<(), D::Error> {
        d.deserialize_byte_buf(BytesInPlace(&mut place.0))
    }
}

/// [`BytesVisitor`] into a buffer that is there already: its contents are
/// replaced, its allocation kept unless a byte string handed over whole
/// (`visit_byte_buf`) comes in its own.
struct BytesInPlace<'a>(&'a mut Vec<u8>);

impl<'de> Visitor<'de> for BytesInPlace<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    #[inline]
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<(), E> {
        self.0.clear();
        extend(self.0, v);
        Ok(())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<(), E> {
        *self.0 = v;
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.visit_bytes(v.as_bytes())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<(), E> {
        self.visit_byte_buf(v.into_bytes())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.clear();
        // The claimed length comes from the peer: reserve no more than a
        // bounded amount up front; the vector grows as elements arrive.
        self.0.reserve(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            self.0.push(b);
        }
        Ok(())
    }
}

/// Accepts what a peer may send for a byte string: bytes, a string (JSON
/// peers), or a sequence of small integers (a plain `Vec<u8>` elsewhere),
/// as a new buffer. Bytes are copied into an allocation of their exact
/// size (a message's path: into an empty [`BytesInPlace`] buffer they would
/// go through its amortized growth, some 110 instructions more a 64 B
/// message by `scripts/instructions`); a sequence as [`BytesInPlace`] takes
/// it.
struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    #[inline]
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        let mut out = Vec::with_capacity(v.len());
        extend(&mut out, v);
        Ok(out)
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
        self.visit_bytes(v.as_bytes())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Vec<u8>, E> {
        Ok(v.into_bytes())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::new();
        BytesInPlace(&mut out).visit_seq(seq)?;
        Ok(out)
    }
}
/// Whether a `memcpy` of `len` bytes from address `src` to address `dst`
/// would take a slow path of the C library: on x86 CPUs with fast string
/// moves, glibc copies a few KiB and more with `rep movsb`, which runs 15
/// to 25 times slower when the destination lies 1 to 63 bytes past the
/// source modulo 4 KiB (4 KiB aliasing; measured here, a 4 KiB copy took
/// 1.6 µs instead of 64 ns, a 64 KiB one 19 µs instead of 1.2 µs). A
/// received payload, a few bytes into its frame, lands at such a distance
/// from its new buffer often enough to double an owned receive of 64 KiB.
/// Such a copy goes in pieces of [`PIECE`] bytes, which glibc moves with
/// vector registers.
#[inline]
pub(crate) fn aliased(dst: usize, src: usize, len: usize) -> bool {
    /// Below this, glibc copies with vector registers anyway.
    const STRING_MOVES_FROM: usize = 2048;
    len > STRING_MOVES_FROM && (1..64).contains(&(dst.wrapping_sub(src) % 4096))
}

/// The pieces an [`aliased`] copy goes in.
pub(crate) const PIECE: usize = 1024;

/// Appends `src` to `out`, as `extend_from_slice` does, but in pieces where
/// one copy would be [`aliased`].
#[inline]
pub(crate) fn extend(out: &mut Vec<u8>, src: &[u8]) {
    if src.len() > PIECE {
        out.reserve(src.len());
        let dst = out.as_ptr() as usize + out.len();
        if aliased(dst, src.as_ptr() as usize, src.len()) {
            for piece in src.chunks(PIECE) {
                out.extend_from_slice(piece);
            }
            return;
        }
    }
    out.extend_from_slice(src);
}

/// For `#[serde(with = "procwire::bytes")]` on a `Vec<u8>` (or any
/// `AsRef<[u8]>`) field: writes it as a byte string.
pub fn serialize<T: AsRef<[u8]> + ?Sized, S: Serializer>(
    bytes: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(bytes.as_ref())
}

/// For `#[serde(with = "procwire::bytes")]` on a `Vec<u8>` field: reads a
/// byte string (or what a peer may send instead; see [`ByteBuf`]).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    d.deserialize_byte_buf(BytesVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every distance between destination and source from 0 to 99 bytes
    /// (modulo 4 KiB), and sizes around the piece and the string-move
    /// threshold: the bytes arrive whole and in order, after what was there,
    /// whether the copy went in one or in pieces.
    #[test]
    fn extend_copies_exactly_at_every_distance() {
        let src: Vec<u8> = (0..30_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let base = src.as_ptr() as usize;
        let mut pieces = 0;
        for len in [
            0,
            1,
            PIECE - 1,
            PIECE,
            PIECE + 1,
            2048,
            2049,
            4096,
            5000,
            12_345,
        ] {
            for distance in 0..100 {
                let mut out = Vec::with_capacity(len + 3);
                out.extend_from_slice(&[0xAA; 3]);
                let dst = out.as_ptr() as usize + out.len();
                // The source this far before the destination, modulo 4 KiB.
                let at = dst.wrapping_sub(base).wrapping_sub(distance) % 4096;
                let s = &src[at..at + len];
                pieces += usize::from(aliased(dst, s.as_ptr() as usize, len));
                extend(&mut out, s);
                assert_eq!(&out[3..], s, "len {len}, distance {distance}");
                assert_eq!(out[..3], [0xAA; 3]);
            }
        }
        // 1 to 63, for each of the four sizes over 2048.
        assert_eq!(pieces, 63 * 4);
    }

    #[test]
    fn only_a_destination_just_past_the_source_modulo_4_kib_is_aliased() {
        let big = 64 << 10;
        assert!(!aliased(4096, 0, big));
        assert!(aliased(4097, 0, big));
        assert!(aliased(8192 + 63, 8192, big));
        assert!(!aliased(64, 0, big));
        assert!(!aliased(4095, 4096, big), "behind the source");
        assert!(!aliased(8, 0, 2048), "small copies use vector moves");
        assert!(aliased(8, 0, 2049));
    }
}
