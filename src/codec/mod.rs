//! How a value becomes a payload and back: one small trait, four codecs.
//!
//! | codec | name in the wire format | for |
//! |---|---|---|
//! | [`Postcard`] | `postcard` | Rust to Rust: compact and fast (the default) |
//! | [`MsgPack`] | `msgpack` | peers in other languages (Python, Ruby, Node) |
//! | [`Json`] | `json` | debugging, and the simplest peers |
//! | [`Raw`] | `raw` | bytes as they are: `Vec<u8>`, [`ByteBuf`](crate::ByteBuf), `String` |
//!
//! Decoding treats its input as hostile: every codec refuses nesting deeper
//! than [`MAX_DEPTH`] with an error (postcard alone would overflow the stack on
//! a 300,000-deep payload), a collection whose claimed length exceeds the
//! bytes present fails without reserving memory for it, and trailing bytes
//! after the value are an error (postcard, JSON and raw; rmp-serde does not
//! say where a value ended).
//!
//! Byte buffers: serde writes a `Vec<u8>` as a sequence of numbers, one at a
//! time. Wrap it in [`ByteBuf`](crate::ByteBuf) (or mark the field
//! `#[serde(with = "procwire::bytes")]`) to copy it in bulk and, in MessagePack,
//! to send it as `bin`.

mod depth;
#[cfg(feature = "json")]
mod finite;
mod raw;
pub(crate) mod split;

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

thread_local! {
    /// The last decode error procwire itself raised on this thread: postcard
    /// reports any custom error as "Serde Deserialization Error", dropping
    /// the message, so it is kept here.
    static CUSTOM: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// A decode error raised by procwire (a nesting limit, a missing
/// descriptor), remembered so that its message survives any codec.
pub(crate) fn custom_error<E: serde::de::Error>(message: String) -> E {
    let e = E::custom(&message);
    CUSTOM.with(|c| *c.borrow_mut() = Some(message));
    e
}

/// The deepest nesting any codec accepts when decoding.
pub const MAX_DEPTH: usize = 128;

/// A way to turn values into payload bytes and back.
///
/// Implemented by the unit types [`Postcard`], [`MsgPack`], [`Json`] and
/// [`Raw`]; a channel picks one at run time through [`CodecKind`].
///
/// # Examples
///
/// ```
/// use procwire::codec::{Codec, MsgPack};
///
/// fn round_trip<C: Codec>(v: &Vec<String>) -> procwire::Result<Vec<String>> {
///     let mut out = Vec::new();
///     C::encode(v, &mut out)?;
///     C::decode(&out)
/// }
/// let v = vec!["a".to_string()];
/// assert_eq!(round_trip::<MsgPack>(&v)?, v);
/// assert_eq!(MsgPack::NAME, "msgpack");
/// # Ok::<(), procwire::Error>(())
/// ```
pub trait Codec {
    /// The codec's name in the wire format and in `PROCWIRE_CODEC`.
    const NAME: &'static str;

    /// Appends the encoding of `value` to `out`.
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()>;

    /// Decodes one value that must span all of `bytes`.
    fn decode<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T>;

    /// Decodes one value that must span all of `bytes` into `place`,
    /// reusing what `place` holds where its type can (serde's
    /// `Deserialize::deserialize_in_place`: a [`ByteBuf`](crate::ByteBuf),
    /// `String` or `Vec` keeps its allocation and takes the new contents;
    /// other types are replaced whole). After an error `place` holds some
    /// valid value, not necessarily the old one.
    ///
    /// The default replaces `place` with [`decode`](Codec::decode)'s value;
    /// procwire's codecs decode in place.
    fn decode_in_place<'de, T: Deserialize<'de>>(bytes: &'de [u8], place: &mut T) -> Result<()> {
        *place = Self::decode(bytes)?;
        Ok(())
    }
}

fn encode_error(codec: &str, e: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::Encode,
        format!("cannot encode the value with {codec}: {e}"),
    )
}

fn decode_error(codec: &str, len: usize, e: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::Decode,
        format!(
            "cannot decode a {} {codec} payload into the expected type: {e}",
            crate::error::human(len as u64)
        ),
    )
}

/// [postcard](https://postcard.jamesmunns.com/): compact, Rust to Rust.
///
/// # Examples
///
/// ```
/// use procwire::codec::{Codec, Postcard};
///
/// let mut out = Vec::new();
/// Postcard::encode(&(1u8, "a"), &mut out)?;
/// assert_eq!(Postcard::decode::<(u8, String)>(&out)?, (1, "a".to_string()));
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Postcard;

/// Postcard's output appended to a `Vec`: one `extend_from_slice` per
/// piece (postcard's `to_io` goes through `io::Write::write_all`, and its
/// `to_extend` pushes byte by byte).
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        crate::bytes::extend(self.0, bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

impl Codec for Postcard {
    const NAME: &'static str = "postcard";

    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
        postcard::serialize_with_flavor(value, Append(out)).map_err(|e| encode_error(Self::NAME, e))
    }

    #[inline(always)]
    fn decode<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T> {
        let mut de = postcard::Deserializer::from_bytes(bytes);
        CUSTOM.with(|c| c.borrow_mut().take());
        let value = T::deserialize(depth::Limited::<_, false>::new(&mut de, MAX_DEPTH))
            .map_err(|e| postcard_error(bytes.len(), e))?;
        postcard_end(de, bytes.len())?;
        Ok(value)
    }

    fn decode_in_place<'de, T: Deserialize<'de>>(bytes: &'de [u8], place: &mut T) -> Result<()> {
        let mut de = postcard::Deserializer::from_bytes(bytes);
        CUSTOM.with(|c| c.borrow_mut().take());
        T::deserialize_in_place(depth::Limited::<_, false>::new(&mut de, MAX_DEPTH), place)
            .map_err(|e| postcard_error(bytes.len(), e))?;
        postcard_end(de, bytes.len())
    }
}

/// A postcard decode error, with the message procwire raised if it was
/// one of its own (postcard keeps none of a custom error's text).
#[cold]
fn postcard_error(len: usize, e: postcard::Error) -> Error {
    match CUSTOM.with(|c| c.borrow_mut().take()) {
        Some(message) => decode_error(Postcard::NAME, len, message),
        None => decode_error(Postcard::NAME, len, e),
    }
}

/// Checks that the value spanned the whole payload.
#[inline(always)]
fn postcard_end<'de>(
    de: postcard::Deserializer<'de, postcard::de_flavors::Slice<'de>>,
    len: usize,
) -> Result<()> {
    let rest = de
        .finalize()
        .map_err(|e| decode_error(Postcard::NAME, len, e))?;
    if !rest.is_empty() {
        return Err(decode_error(
            Postcard::NAME,
            len,
            format!("{} trailing bytes after the value", rest.len()),
        ));
    }
    Ok(())
}

/// MessagePack through rmp-serde, for peers in other languages: structs are
/// maps keyed by field name, byte buffers (`ByteBuf`) are `bin`, enums are
/// externally tagged (see `docs/wire-format.md`).
///
/// # Examples
///
/// ```
/// use procwire::codec::{Codec, MsgPack};
///
/// let mut out = Vec::new();
/// MsgPack::encode(&vec![1u8, 2], &mut out)?;
/// assert_eq!(out, [0x92, 1, 2]); // a two-element array
/// # Ok::<(), procwire::Error>(())
/// ```
#[cfg(feature = "msgpack")]
#[cfg_attr(docsrs, doc(cfg(feature = "msgpack")))]
#[derive(Clone, Copy, Debug, Default)]
pub struct MsgPack;

#[cfg(feature = "msgpack")]
impl Codec for MsgPack {
    const NAME: &'static str = "msgpack";

    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
        rmp_serde::encode::write_named(out, value).map_err(|e| encode_error(Self::NAME, e))
    }

    fn decode<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T> {
        let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
        de.set_max_depth(MAX_DEPTH);
        // from_read_ref checks every claimed length against the bytes present
        // before touching memory; rmp-serde's reader-based decoder would
        // reserve whatever a `bin 32` header claims. It does not report where
        // the value ended, so trailing bytes are not detected for msgpack.
        T::deserialize(&mut de).map_err(|e| decode_error(Self::NAME, bytes.len(), e))
    }

    fn decode_in_place<'de, T: Deserialize<'de>>(bytes: &'de [u8], place: &mut T) -> Result<()> {
        let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
        de.set_max_depth(MAX_DEPTH);
        T::deserialize_in_place(&mut de, place)
            .map_err(|e| decode_error(Self::NAME, bytes.len(), e))
    }
}

/// JSON through serde_json: readable on the wire.
///
/// # Examples
///
/// ```
/// use procwire::codec::{Codec, Json};
///
/// let mut out = Vec::new();
/// Json::encode(&(1, "a"), &mut out)?;
/// assert_eq!(out, br#"[1,"a"]"#);
/// # Ok::<(), procwire::Error>(())
/// ```
#[cfg(feature = "json")]
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

#[cfg(feature = "json")]
impl Codec for Json {
    const NAME: &'static str = "json";

    /// A NaN or infinite float is an [`ErrorKind::Encode`] error: JSON has
    /// no such numbers (serde_json would write `null`, and the receiver
    /// would read something else).
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
        let mut json = serde_json::Serializer::new(out);
        value
            .serialize(finite::Finite(&mut json))
            .map_err(|e| encode_error(Self::NAME, e))
    }

    fn decode<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T> {
        // serde_json refuses nesting deeper than 128 and trailing characters.
        serde_json::from_slice(bytes).map_err(|e| decode_error(Self::NAME, bytes.len(), e))
    }

    fn decode_in_place<'de, T: Deserialize<'de>>(bytes: &'de [u8], place: &mut T) -> Result<()> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        T::deserialize_in_place(&mut de, place)
            .and_then(|()| de.end())
            .map_err(|e| decode_error(Self::NAME, bytes.len(), e))
    }
}

/// Bytes as they are: the payload is the value's bytes, with no encoding.
///
/// Works for types that serialize as bytes or text: `Vec<u8>`,
/// [`ByteBuf`](crate::ByteBuf), `String`, `&str`, `&[u8]`, and newtypes of
/// them. Anything else is an [`ErrorKind::Encode`] error.
///
/// # Examples
///
/// ```
/// use procwire::codec::{Codec, Raw};
/// use procwire::ByteBuf;
///
/// let mut out = Vec::new();
/// Raw::encode(&ByteBuf::from(b"as is".to_vec()), &mut out)?;
/// assert_eq!(out, b"as is");
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Raw;

impl Codec for Raw {
    const NAME: &'static str = "raw";

    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
        value
            .serialize(raw::Serializer { out })
            .map_err(|e| encode_error(Self::NAME, e))
    }

    fn decode<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T> {
        T::deserialize(raw::Deserializer { bytes })
            .map_err(|e| decode_error(Self::NAME, bytes.len(), e))
    }

    fn decode_in_place<'de, T: Deserialize<'de>>(bytes: &'de [u8], place: &mut T) -> Result<()> {
        T::deserialize_in_place(raw::Deserializer { bytes }, place)
            .map_err(|e| decode_error(Self::NAME, bytes.len(), e))
    }
}

/// A codec chosen at run time, as `PROCWIRE_CODEC` names it.
///
/// # Examples
///
/// ```
/// use procwire::CodecKind;
///
/// let codec: CodecKind = "msgpack".parse()?;
/// assert_eq!(codec, CodecKind::MsgPack);
/// assert_eq!(codec.name(), "msgpack");
/// assert!("yaml".parse::<CodecKind>().is_err());
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodecKind {
    /// [`Postcard`], the default.
    #[default]
    Postcard,
    /// [`MsgPack`].
    #[cfg(feature = "msgpack")]
    #[cfg_attr(docsrs, doc(cfg(feature = "msgpack")))]
    MsgPack,
    /// [`Json`].
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    Json,
    /// [`Raw`].
    Raw,
}

impl CodecKind {
    /// Every codec compiled in.
    pub const ALL: &'static [CodecKind] = &[
        CodecKind::Postcard,
        #[cfg(feature = "msgpack")]
        CodecKind::MsgPack,
        #[cfg(feature = "json")]
        CodecKind::Json,
        CodecKind::Raw,
    ];

    /// The codec's name in the wire format.
    pub fn name(self) -> &'static str {
        match self {
            CodecKind::Postcard => Postcard::NAME,
            #[cfg(feature = "msgpack")]
            CodecKind::MsgPack => MsgPack::NAME,
            #[cfg(feature = "json")]
            CodecKind::Json => Json::NAME,
            CodecKind::Raw => Raw::NAME,
        }
    }

    /// Appends the encoding of `value` to `out`.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T, out: &mut Vec<u8>) -> Result<()> {
        match self {
            CodecKind::Postcard => Postcard::encode(value, out),
            #[cfg(feature = "msgpack")]
            CodecKind::MsgPack => MsgPack::encode(value, out),
            #[cfg(feature = "json")]
            CodecKind::Json => Json::encode(value, out),
            CodecKind::Raw => Raw::encode(value, out),
        }
    }

    /// Encodes `value` into any writer: what a large message's send uses
    /// to hand its big byte slices to the kernel as they come, instead of
    /// copying them into a frame buffer first.
    pub(crate) fn encode_into<T: Serialize + ?Sized>(
        self,
        value: &T,
        out: &mut dyn std::io::Write,
    ) -> Result<()> {
        let name = self.name();
        match self {
            CodecKind::Postcard => postcard::to_io(value, out)
                .map(drop)
                .map_err(|e| encode_error(name, e)),
            #[cfg(feature = "msgpack")]
            CodecKind::MsgPack => {
                rmp_serde::encode::write_named(out, value).map_err(|e| encode_error(name, e))
            }
            #[cfg(feature = "json")]
            CodecKind::Json => serde_json::to_writer(out, value).map_err(|e| encode_error(name, e)),
            CodecKind::Raw => value
                .serialize(raw::Serializer { out })
                .map_err(|e| encode_error(name, e)),
        }
    }

    /// Decodes one value spanning all of `bytes`.
    pub fn decode<'de, T: Deserialize<'de>>(self, bytes: &'de [u8]) -> Result<T> {
        match self {
            CodecKind::Postcard => Postcard::decode(bytes),
            #[cfg(feature = "msgpack")]
            CodecKind::MsgPack => MsgPack::decode(bytes),
            #[cfg(feature = "json")]
            CodecKind::Json => Json::decode(bytes),
            CodecKind::Raw => Raw::decode(bytes),
        }
    }

    /// [`Codec::decode_in_place`] with this codec.
    pub fn decode_in_place<'de, T: Deserialize<'de>>(
        self,
        bytes: &'de [u8],
        place: &mut T,
    ) -> Result<()> {
        match self {
            CodecKind::Postcard => Postcard::decode_in_place(bytes, place),
            #[cfg(feature = "msgpack")]
            CodecKind::MsgPack => MsgPack::decode_in_place(bytes, place),
            #[cfg(feature = "json")]
            CodecKind::Json => Json::decode_in_place(bytes, place),
            CodecKind::Raw => Raw::decode_in_place(bytes, place),
        }
    }
}

impl FromStr for CodecKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<CodecKind> {
        CodecKind::ALL
            .iter()
            .copied()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                let known: Vec<_> = CodecKind::ALL.iter().map(|c| c.name()).collect();
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("unknown codec {s:?}; this build knows {}", known.join(", ")),
                )
            })
    }
}

impl fmt::Display for CodecKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
