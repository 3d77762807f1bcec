//! A nesting limit for any serde deserializer.
//!
//! postcard recurses once per level of nesting and has no limit of its own, so
//! a hostile 300,000-deep payload overflows the stack and aborts the process.
//! [`Limited`] wraps a deserializer and counts the levels (sequences, maps,
//! enums, options and newtypes) on the way down, failing with an error past
//! the limit. Everything else is forwarded unchanged, except that a byte
//! string or a string may be handed a large payload's tail read into its own
//! allocation ([`split`]).

use std::fmt;

use super::split::{self, Claim};
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// A deserializer that fails when nesting goes deeper than its budget.
pub(crate) struct Limited<D, const CLAIMS: bool = false> {
    de: D,
    left: usize,
}

impl<D, const CLAIMS: bool> Limited<D, CLAIMS> {
    pub(crate) fn new(de: D, depth: usize) -> Limited<D, CLAIMS> {
        Limited { de, left: depth }
    }
}

fn descend<E: de::Error>(left: usize) -> Result<usize, E> {
    left.checked_sub(1).ok_or_else(|| {
        super::custom_error(format!("nesting deeper than {} levels", super::MAX_DEPTH))
    })
}

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.de.$method($($arg,)* Wrap::<_, CLAIMS> { inner: visitor, left: self.left })
        }
    )*};
}

impl<'de, D: Deserializer<'de>, const CLAIMS: bool> Deserializer<'de> for Limited<D, CLAIMS> {
    type Error = D::Error;

    forward! {
        deserialize_any(); deserialize_bool(); deserialize_i8(); deserialize_i16();
        deserialize_i32(); deserialize_i64(); deserialize_i128(); deserialize_u8();
        deserialize_u16(); deserialize_u32(); deserialize_u64(); deserialize_u128();
        deserialize_f32(); deserialize_f64(); deserialize_char(); deserialize_str();
        deserialize_bytes();
        deserialize_option(); deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq(); deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier(); deserialize_ignored_any();
    }

    #[inline]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.claim_or_forward(
            visitor,
            |v, tail| v.visit_byte_buf(tail),
            |de, wrapped| de.deserialize_byte_buf(wrapped),
        )
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.claim_or_forward(
            visitor,
            |v, tail| {
                let text = String::from_utf8(tail).map_err(|_| {
                    super::custom_error::<D::Error>("a string that is not UTF-8".to_string())
                })?;
                v.visit_string(text)
            },
            |de, wrapped| de.deserialize_string(wrapped),
        )
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

impl<'de, D: Deserializer<'de>, const CLAIMS: bool> Limited<D, CLAIMS> {
    /// A string about to be decoded: in a split decode (`CLAIMS`), hands it
    /// the tail if it is the one the tail belongs to (`take`); otherwise
    /// forwards the request, as for every other type (`forward`).
    #[inline]
    fn claim_or_forward<V: Visitor<'de>>(
        self,
        visitor: V,
        take: impl FnOnce(V, Vec<u8>) -> Result<V::Value, D::Error>,
        forward: impl FnOnce(D, Wrap<V, CLAIMS>) -> Result<V::Value, D::Error>,
    ) -> Result<V::Value, D::Error> {
        let left = self.left;
        let de = if CLAIMS {
            match split::claim(self.de) {
                Claim::Taken(tail) => return take(visitor, tail?),
                Claim::NotOurs(de) => de,
            }
        } else {
            self.de
        };
        forward(
            de,
            Wrap::<_, CLAIMS> {
                inner: visitor,
                left,
            },
        )
    }
}

/// A visitor that hands its nested parts a budget one level smaller.
struct Wrap<T, const CLAIMS: bool> {
    inner: T,
    left: usize,
}

macro_rules! visit {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>, const CLAIMS: bool> Visitor<'de> for Wrap<V, CLAIMS> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    visit! {
        visit_bool(bool); visit_i8(i8); visit_i16(i16); visit_i32(i32); visit_i64(i64);
        visit_i128(i128); visit_u8(u8); visit_u16(u16); visit_u32(u32); visit_u64(u64);
        visit_u128(u128); visit_f32(f32); visit_f64(f64); visit_char(char);
        visit_str(&str); visit_borrowed_str(&'de str); visit_string(String);
        visit_bytes(&[u8]); visit_borrowed_bytes(&'de [u8]); visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let left = descend(self.left)?;
        self.inner.visit_some(Limited::<_, CLAIMS> { de: d, left })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let left = descend(self.left)?;
        self.inner
            .visit_newtype_struct(Limited::<_, CLAIMS> { de: d, left })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let left = descend(self.left)?;
        self.inner.visit_seq(Wrap::<_, CLAIMS> { inner: seq, left })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let left = descend(self.left)?;
        self.inner.visit_map(Wrap::<_, CLAIMS> { inner: map, left })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let left = descend(self.left)?;
        self.inner
            .visit_enum(Wrap::<_, CLAIMS> { inner: data, left })
    }
}

impl<'de, S: DeserializeSeed<'de>, const CLAIMS: bool> DeserializeSeed<'de> for Wrap<S, CLAIMS> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Limited::<_, CLAIMS> {
            de: d,
            left: self.left,
        })
    }
}

impl<'de, A: SeqAccess<'de>, const CLAIMS: bool> SeqAccess<'de> for Wrap<A, CLAIMS> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(Wrap::<_, CLAIMS> {
            inner: seed,
            left: self.left,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>, const CLAIMS: bool> MapAccess<'de> for Wrap<A, CLAIMS> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(Wrap::<_, CLAIMS> {
            inner: seed,
            left: self.left,
        })
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.next_value_seed(Wrap::<_, CLAIMS> {
            inner: seed,
            left: self.left,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>, const CLAIMS: bool> EnumAccess<'de> for Wrap<A, CLAIMS> {
    type Error = A::Error;
    type Variant = Wrap<A::Variant, CLAIMS>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Wrap<A::Variant, CLAIMS>), A::Error> {
        let left = self.left;
        let (value, variant) = self
            .inner
            .variant_seed(Wrap::<_, CLAIMS> { inner: seed, left })?;
        Ok((
            value,
            Wrap::<_, CLAIMS> {
                inner: variant,
                left,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>, const CLAIMS: bool> VariantAccess<'de> for Wrap<A, CLAIMS> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.newtype_variant_seed(Wrap::<_, CLAIMS> {
            inner: seed,
            left: self.left,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(
            len,
            Wrap::<_, CLAIMS> {
                inner: visitor,
                left: self.left,
            },
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(
            fields,
            Wrap::<_, CLAIMS> {
                inner: visitor,
                left: self.left,
            },
        )
    }
}
