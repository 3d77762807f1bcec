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
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteBuf, D::Error> {
        d.deserialize_byte_buf(BytesVisitor).map(ByteBuf)
    }
}

/// Accepts what a peer may send for a byte string: bytes, a string (JSON
/// peers), or a sequence of small integers (a plain `Vec<u8>` elsewhere).
struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
        Ok(v.as_bytes().to_vec())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Vec<u8>, E> {
        Ok(v.into_bytes())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        // The claimed length comes from the peer: reserve no more than a
        // bounded amount up front; the vector grows as elements arrive.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
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
