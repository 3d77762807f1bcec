//! The `raw` codec: a payload is the value's bytes, nothing added.

use std::fmt;
use std::io;

use serde::de::{self, Visitor};
use serde::ser::{self, Impossible, Serialize};

/// Why a value does not fit the raw codec.
#[derive(Debug)]
pub(crate) struct RawError(String);

impl fmt::Display for RawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RawError {}

impl ser::Error for RawError {
    fn custom<T: fmt::Display>(msg: T) -> RawError {
        RawError(msg.to_string())
    }
}

impl de::Error for RawError {
    fn custom<T: fmt::Display>(msg: T) -> RawError {
        RawError(msg.to_string())
    }
}

fn only_bytes(what: &str) -> RawError {
    RawError(format!(
        "the raw codec carries bytes or text only, not {what} \
         (use Vec<u8>, ByteBuf or String, or another codec)"
    ))
}

/// Writes bytes and text verbatim into `out`.
pub(crate) struct Serializer<'a, W: io::Write + ?Sized> {
    pub out: &'a mut W,
}

fn put<W: io::Write + ?Sized>(out: &mut W, bytes: &[u8]) -> Result<(), RawError> {
    out.write_all(bytes)
        .map_err(|e| RawError(format!("writing the bytes: {e}")))
}

macro_rules! refuse {
    ($($method:ident($($ty:ty),*) -> $ok:ty;)*) => {$(
        fn $method(self, $(_: $ty),*) -> Result<$ok, RawError> {
            Err(only_bytes(stringify!($method).trim_start_matches("serialize_")))
        }
    )*};
}

impl<'a, W: io::Write + ?Sized> ser::Serializer for Serializer<'a, W> {
    type Ok = ();
    type Error = RawError;
    type SerializeSeq = ByteSeq<'a, W>;
    type SerializeTuple = Impossible<(), RawError>;
    type SerializeTupleStruct = Impossible<(), RawError>;
    type SerializeTupleVariant = Impossible<(), RawError>;
    type SerializeMap = Impossible<(), RawError>;
    type SerializeStruct = Impossible<(), RawError>;
    type SerializeStructVariant = Impossible<(), RawError>;

    fn serialize_bytes(self, v: &[u8]) -> Result<(), RawError> {
        put(self.out, v)
    }

    fn serialize_str(self, v: &str) -> Result<(), RawError> {
        put(self.out, v.as_bytes())
    }

    fn serialize_unit(self) -> Result<(), RawError> {
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), RawError> {
        value.serialize(self)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<ByteSeq<'a, W>, RawError> {
        Ok(ByteSeq { out: self.out })
    }

    refuse! {
        serialize_bool(bool) -> (); serialize_i8(i8) -> (); serialize_i16(i16) -> ();
        serialize_i32(i32) -> (); serialize_i64(i64) -> (); serialize_u8(u8) -> ();
        serialize_u16(u16) -> (); serialize_u32(u32) -> (); serialize_u64(u64) -> ();
        serialize_f32(f32) -> (); serialize_f64(f64) -> (); serialize_char(char) -> ();
        serialize_none() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_tuple(usize) -> Impossible<(), RawError>;
        serialize_tuple_struct(&'static str, usize) -> Impossible<(), RawError>;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Impossible<(), RawError>;
        serialize_map(Option<usize>) -> Impossible<(), RawError>;
        serialize_struct(&'static str, usize) -> Impossible<(), RawError>;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Impossible<(), RawError>;
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), RawError> {
        Err(only_bytes("an option"))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), RawError> {
        Err(only_bytes("an enum"))
    }
}

/// A `Vec<u8>` not marked as bytes arrives as a sequence of `u8`.
pub(crate) struct ByteSeq<'a, W: io::Write + ?Sized> {
    out: &'a mut W,
}

impl<W: io::Write + ?Sized> ser::SerializeSeq for ByteSeq<'_, W> {
    type Ok = ();
    type Error = RawError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), RawError> {
        value.serialize(ByteElement { out: self.out })
    }

    fn end(self) -> Result<(), RawError> {
        Ok(())
    }
}

/// Accepts one `u8`, nothing else.
struct ByteElement<'a, W: io::Write + ?Sized> {
    out: &'a mut W,
}

impl<W: io::Write + ?Sized> ser::Serializer for ByteElement<'_, W> {
    type Ok = ();
    type Error = RawError;
    type SerializeSeq = Impossible<(), RawError>;
    type SerializeTuple = Impossible<(), RawError>;
    type SerializeTupleStruct = Impossible<(), RawError>;
    type SerializeTupleVariant = Impossible<(), RawError>;
    type SerializeMap = Impossible<(), RawError>;
    type SerializeStruct = Impossible<(), RawError>;
    type SerializeStructVariant = Impossible<(), RawError>;

    fn serialize_u8(self, v: u8) -> Result<(), RawError> {
        put(self.out, &[v])
    }

    refuse! {
        serialize_bool(bool) -> (); serialize_i8(i8) -> (); serialize_i16(i16) -> ();
        serialize_i32(i32) -> (); serialize_i64(i64) -> ();
        serialize_u16(u16) -> (); serialize_u32(u32) -> (); serialize_u64(u64) -> ();
        serialize_f32(f32) -> (); serialize_f64(f64) -> (); serialize_char(char) -> ();
        serialize_str(&str) -> (); serialize_bytes(&[u8]) -> ();
        serialize_none() -> (); serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> Impossible<(), RawError>;
        serialize_tuple(usize) -> Impossible<(), RawError>;
        serialize_tuple_struct(&'static str, usize) -> Impossible<(), RawError>;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Impossible<(), RawError>;
        serialize_map(Option<usize>) -> Impossible<(), RawError>;
        serialize_struct(&'static str, usize) -> Impossible<(), RawError>;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Impossible<(), RawError>;
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), RawError> {
        Err(only_bytes("an option"))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<(), RawError> {
        Err(only_bytes("a newtype inside a sequence"))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), RawError> {
        Err(only_bytes("an enum"))
    }
}

/// Hands the payload to the visitor as bytes, or as text when it asks.
pub(crate) struct Deserializer<'de> {
    pub bytes: &'de [u8],
}

impl<'de> de::Deserializer<'de> for Deserializer<'de> {
    type Error = RawError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, RawError> {
        v.visit_borrowed_bytes(self.bytes)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, RawError> {
        match std::str::from_utf8(self.bytes) {
            Ok(s) => v.visit_borrowed_str(s),
            Err(e) => Err(RawError(format!("the payload is not UTF-8: {e}"))),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, RawError> {
        self.deserialize_str(v)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, RawError> {
        v.visit_seq(de::value::SeqDeserializer::new(self.bytes.iter().copied()))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, RawError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, RawError> {
        if self.bytes.is_empty() {
            v.visit_unit()
        } else {
            Err(RawError(format!(
                "expected an empty payload, found {} bytes",
                self.bytes.len()
            )))
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf option
        unit_struct tuple tuple_struct map struct enum identifier ignored_any
    }
}
