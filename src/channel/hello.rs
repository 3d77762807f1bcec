//! The optional hello (`docs/wire-format.md` §7): each end says which wire
//! format it speaks and the names of the types it sends and receives.

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// The name a type goes by in [`Duplex::hello`](crate::Duplex::hello):
/// declared by the program, the same in every language and compiler
/// version (unlike `std::any::type_name`, which names the crate and may
/// change between compilers), so that a peer in another language can send
/// it too.
///
/// procwire names the standard types (`docs/wire-format.md` §7 lists them):
/// `"unit"`, `"bool"`, `"u8"` … `"u64"`, `"i8"` … `"i64"`, `"f32"`,
/// `"f64"`, `"char"`, `"string"`, `"bytes"` (for [`ByteBuf`](crate::ByteBuf)).
/// Name your own types after what they mean, with a prefix of your own
/// (`"lesson.Job"`); for a type without a name, or a generic one, use
/// [`Duplex::hello_as`](crate::Duplex::hello_as).
///
/// # Examples
///
/// ```
/// use procwire::WireName;
///
/// struct Order;
/// impl WireName for Order {
///     const WIRE_NAME: &'static str = "shop.Order";
/// }
/// assert_eq!(<String as WireName>::WIRE_NAME, "string");
/// ```
pub trait WireName {
    /// The type's name on the wire.
    const WIRE_NAME: &'static str;
}

macro_rules! wire_names {
    ($($t:ty => $name:literal),* $(,)?) => {$(
        impl WireName for $t {
            const WIRE_NAME: &'static str = $name;
        }
    )*};
}

wire_names! {
    () => "unit", bool => "bool", char => "char",
    u8 => "u8", u16 => "u16", u32 => "u32", u64 => "u64",
    i8 => "i8", i16 => "i16", i32 => "i32", i64 => "i64",
    f32 => "f32", f64 => "f64",
    String => "string", crate::ByteBuf => "bytes",
}

/// The hello message.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Hello {
    procwire: u32,
    sends: String,
    receives: String,
}

impl Hello {
    pub(crate) fn new(sends: &str, receives: &str) -> Hello {
        Hello {
            procwire: crate::WIRE_VERSION,
            sends: sends.to_owned(),
            receives: receives.to_owned(),
        }
    }

    /// Our hello, and its encoding with `codec` (sent as a frame of its
    /// own, whatever the channel's types).
    pub(crate) fn ours(
        sends: &str,
        receives: &str,
        codec: crate::codec::CodecKind,
    ) -> Result<(Hello, Vec<u8>)> {
        let ours = Hello::new(sends, receives);
        let mut bytes = Vec::new();
        codec.encode(&ours, &mut bytes)?;
        Ok((ours, bytes))
    }

    /// Whether the peer's hello (`theirs`) matches ours; the error names
    /// both sides.
    pub(crate) fn check(&self, theirs: &Hello) -> Result<()> {
        if theirs.procwire != self.procwire {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the peer speaks wire format version {}, this end version {}: the older \
                     side needs upgrading (docs/wire-format.md §15)",
                    theirs.procwire, self.procwire
                ),
            ));
        }
        if theirs.sends != self.receives || theirs.receives != self.sends {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the peer does not match: it sends {:?} and receives {:?}; this end \
                     receives {:?} and sends {:?}",
                    theirs.sends, theirs.receives, self.receives, self.sends
                ),
            ));
        }
        Ok(())
    }
}
