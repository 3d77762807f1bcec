//! What a send encodes: a value with the channel's codec, or bytes already
//! encoded; into the frame buffer, or into any writer (a large message's
//! direct path).

use std::io;

use serde::Serialize;

use crate::codec::CodecKind;
use crate::error::{Error, Result};

/// What a send puts in its frame: a value encoded with the channel's
/// codec, or bytes already encoded.
pub(super) trait Payload {
    /// Encodes into the frame buffer.
    fn fill(&self, codec: CodecKind, out: &mut Vec<u8>) -> Result<()>;
    /// Encodes into any writer (a large message's direct path).
    fn write_to(&self, codec: CodecKind, out: &mut dyn io::Write) -> Result<()>;
}

/// A value, encoded with the channel's codec.
pub(super) struct Value<'a, T: ?Sized>(pub(super) &'a T);

impl<T: Serialize + ?Sized> Payload for Value<'_, T> {
    fn fill(&self, codec: CodecKind, out: &mut Vec<u8>) -> Result<()> {
        codec.encode(self.0, out)
    }

    fn write_to(&self, codec: CodecKind, out: &mut dyn io::Write) -> Result<()> {
        codec.encode_into(self.0, out)
    }
}

/// Bytes already encoded (a task's argument).
pub(super) struct Encoded<'a>(pub(super) &'a [u8]);

impl Payload for Encoded<'_> {
    fn fill(&self, _: CodecKind, out: &mut Vec<u8>) -> Result<()> {
        crate::bytes::extend(out, self.0);
        Ok(())
    }

    fn write_to(&self, _: CodecKind, out: &mut dyn io::Write) -> Result<()> {
        out.write_all(self.0)
            .map_err(|e| Error::io("encoding a message", e))
    }
}
