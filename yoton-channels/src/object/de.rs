//! Serde deserialization from [`Value`] (and from bytes via [`decode`]).
//!
//! `Value` itself is the `Deserializer`: `T::deserialize(value)`.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, VariantAccess, Visitor,
};
use serde::{Deserialize, Deserializer};

use super::{Decoder, ObjectError, Value, SERDE_MAX_DEPTH};

/// Private newtype-struct name through which `Value::deserialize` asks this
/// module's deserializer to keep tuples apart from lists.
const TUPLE_TOKEN: &str = "$yoton_channels::object::Value";
/// Private variant name that carries a tuple to `ValueVisitor::visit_enum`.
const TUPLE_VARIANT: &str = "$yoton_channels::object::Tuple";

/// Converts a [`Value`] into any `DeserializeOwned` type, following the
/// mapping described in the [module documentation](super#serde-mapping).
///
/// # Example
///
/// ```
/// use std::collections::HashMap;
/// use serde::Deserialize;
/// use yoton_channels::object::{from_value, Value};
///
/// #[derive(Deserialize, Debug, PartialEq)]
/// struct Reply {
///     ok: bool,
///     result: Vec<f64>,
///     extra: HashMap<String, i64>,
/// }
///
/// // {'ok': True, 'result': (1, 2.5), 'extra': {'n': 3}}
/// let v = Value::Dict(vec![
///     ("ok".into(), true.into()),
///     // a tuple deserializes into a Vec, an int into an f64
///     ("result".into(), Value::Tuple(vec![1.into(), 2.5.into()])),
///     ("extra".into(), Value::Dict(vec![("n".into(), 3.into())])),
/// ]);
/// let reply: Reply = from_value(v)?;
/// assert_eq!(reply.result, vec![1.0, 2.5]);
/// assert_eq!(reply.extra["n"], 3);
///
/// // A value round-trips through serde, keeping tuples apart from lists.
/// let t = Value::Tuple(vec![Value::List(vec![]), Value::None]);
/// assert_eq!(from_value::<Value>(t.clone())?, t);
/// # Ok::<(), yoton_channels::object::ObjectError>(())
/// ```
///
/// Fails with [`ObjectError::ValueTooDeep`] if `value` is nested deeper than
/// [`SERDE_MAX_DEPTH`] (serde recurses once per level); `T::deserialize(value)`
/// skips that check.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ObjectError> {
    let depth = value.depth();
    if depth > SERDE_MAX_DEPTH {
        return Err(ObjectError::ValueTooDeep {
            depth,
            limit: SERDE_MAX_DEPTH,
        });
    }
    T::deserialize(value)
}

/// Decodes bytes like [`decode`](super::decode), but with at most
/// [`SERDE_MAX_DEPTH`] nested containers, and converts the result with
/// [`from_value`].
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ObjectError> {
    let value = Decoder::new().max_depth(SERDE_MAX_DEPTH).decode(bytes)?;
    T::deserialize(value)
}

// --- Deserialize for Value -----------------------------------------------

impl<'de> Deserialize<'de> for Value {
    /// Reads any self-describing input. From this module's own
    /// deserializer, tuples stay [`Value::Tuple`]; from other formats every
    /// sequence becomes a [`Value::List`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_newtype_struct(TUPLE_TOKEN, ValueVisitor)
    }
}

struct ValueVisitor;

/// Upper bound for capacities taken from serde size hints.
const MAX_PREALLOC: usize = 4096;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Yoton object value (None, bool, int, float, str, list, tuple or dict)")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Value::try_from(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Value::try_from(v).map_err(E::custom)
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Value::try_from(v).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    /// Bytes become a list of ints, as in the serializer.
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::List(
            v.iter().map(|&b| Value::Int(b.into())).collect(),
        ))
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::None)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Value, D::Error> {
        // Not `Value::deserialize`: that would ask for the newtype again.
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_PREALLOC));
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Value::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(MAX_PREALLOC));
        while let Some(entry) = map.next_entry::<Value, Value>()? {
            entries.push(entry);
        }
        Ok(Value::Dict(entries))
    }

    /// Only reached through this module's deserializer, for a tuple.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, variant): (String, _) = data.variant()?;
        if tag != TUPLE_VARIANT {
            return Err(de::Error::invalid_value(
                Unexpected::Str(&tag),
                &"a Yoton object value, not an enum",
            ));
        }
        match variant.newtype_variant::<Value>()? {
            Value::List(items) => Ok(Value::Tuple(items)),
            other => Ok(other),
        }
    }
}

// --- Value as a Deserializer ---------------------------------------------

fn unexpected(v: &Value) -> Unexpected<'_> {
    match v {
        Value::None => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Int(i) => Unexpected::Signed(*i),
        Value::Float(f) => Unexpected::Float(*f),
        Value::Str(s) => Unexpected::Str(s),
        Value::List(_) => Unexpected::Seq,
        Value::Tuple(_) => Unexpected::Other("tuple"),
        Value::Dict(_) => Unexpected::Map,
    }
}

fn visit_seq<'de, V: Visitor<'de>>(items: Vec<Value>, visitor: V) -> Result<V::Value, ObjectError> {
    let len = items.len();
    let mut access = SeqDeserializer {
        iter: items.into_iter(),
    };
    let out = visitor.visit_seq(&mut access)?;
    let left = access.iter.len();
    if left == 0 {
        Ok(out)
    } else {
        Err(de::Error::invalid_length(
            len,
            &format!("{} item(s) (too many)", len.saturating_sub(left)).as_str(),
        ))
    }
}

fn visit_map<'de, V: Visitor<'de>>(
    entries: Vec<(Value, Value)>,
    visitor: V,
) -> Result<V::Value, ObjectError> {
    let len = entries.len();
    let mut access = MapDeserializer {
        iter: entries.into_iter(),
        value: None,
    };
    let out = visitor.visit_map(&mut access)?;
    let left = access.iter.len();
    if left == 0 {
        Ok(out)
    } else {
        Err(de::Error::invalid_length(
            len,
            &format!("{} entries (too many)", len.saturating_sub(left)).as_str(),
        ))
    }
}

/// Bytes from a list or tuple of ints 0..=255, if that is what `items` is.
fn byte_list(items: &[Value]) -> Option<Vec<u8>> {
    items
        .iter()
        .map(|v| match v {
            Value::Int(i) => u8::try_from(*i).ok(),
            _ => None,
        })
        .collect()
}

impl<'de> Deserializer<'de> for Value {
    type Error = ObjectError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ObjectError> {
        match self {
            Value::None => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Int(i) => visitor.visit_i64(i),
            Value::Float(f) => visitor.visit_f64(f),
            Value::Str(s) => visitor.visit_string(s),
            Value::List(items) | Value::Tuple(items) => visit_seq(items, visitor),
            Value::Dict(entries) => visit_map(entries, visitor),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ObjectError> {
        self.deserialize_f64(visitor)
    }

    /// An int is accepted where a float is expected.
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ObjectError> {
        match self {
            Value::Int(i) => visitor.visit_f64(i as f64),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ObjectError> {
        self.deserialize_byte_buf(visitor)
    }

    /// From a list/tuple of ints 0..=255, or from a string (its UTF-8 bytes).
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ObjectError> {
        match self {
            Value::List(items) | Value::Tuple(items) => match byte_list(&items) {
                Some(bytes) => visitor.visit_byte_buf(bytes),
                None => visit_seq(items, visitor),
            },
            Value::Str(s) => visitor.visit_byte_buf(s.into_bytes()),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ObjectError> {
        match self {
            Value::None => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ObjectError> {
        if name == TUPLE_TOKEN {
            // `Value::deserialize`: report tuples distinctly.
            match self {
                Value::Tuple(items) => visitor.visit_enum(TupleEnum { items }),
                other => other.deserialize_any(visitor),
            }
        } else {
            visitor.visit_newtype_struct(self)
        }
    }

    /// A struct comes from a dict (by field name) or a list/tuple (by position).
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ObjectError> {
        self.deserialize_any(visitor)
    }

    /// A unit variant comes from a string `"A"`; other variants from a dict
    /// with one entry `{"A": content}`.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ObjectError> {
        match self {
            Value::Str(_) | Value::Int(_) => visitor.visit_enum(VariantDeserializer {
                variant: self,
                content: None,
            }),
            Value::Dict(entries) if entries.len() == 1 => {
                let mut it = entries.into_iter();
                match it.next() {
                    Some((variant, content)) => visitor.visit_enum(VariantDeserializer {
                        variant,
                        content: Some(content),
                    }),
                    None => Err(de::Error::invalid_length(0, &"a dict with one entry")),
                }
            }
            other => Err(de::Error::invalid_type(
                unexpected(&other),
                &"an enum: a str, or a dict with one entry",
            )),
        }
    }

    /// Field and variant names; a non-negative int gives the index.
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ObjectError> {
        match self {
            Value::Int(i) if i >= 0 => visitor.visit_u64(i.unsigned_abs()),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ObjectError> {
        drop(self);
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 char str string
        unit unit_struct seq tuple tuple_struct map
    }
}

impl<'de> IntoDeserializer<'de, ObjectError> for Value {
    type Deserializer = Value;

    fn into_deserializer(self) -> Value {
        self
    }
}

struct SeqDeserializer {
    iter: std::vec::IntoIter<Value>,
}

impl<'de> SeqAccess<'de> for SeqDeserializer {
    type Error = ObjectError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ObjectError> {
        self.iter.next().map(|v| seed.deserialize(v)).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct MapDeserializer {
    iter: std::vec::IntoIter<(Value, Value)>,
    value: Option<Value>,
}

impl<'de> MapAccess<'de> for MapDeserializer {
    type Error = ObjectError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ObjectError> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(k).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ObjectError> {
        match self.value.take() {
            Some(v) => seed.deserialize(v),
            None => Err(de::Error::custom("next_value called before next_key")),
        }
    }

    fn next_entry_seed<K: DeserializeSeed<'de>, V: DeserializeSeed<'de>>(
        &mut self,
        kseed: K,
        vseed: V,
    ) -> Result<Option<(K::Value, V::Value)>, ObjectError> {
        match self.iter.next() {
            Some((k, v)) => Ok(Some((kseed.deserialize(k)?, vseed.deserialize(v)?))),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// An enum variant: the name (or index) and, except for unit variants
/// given as a plain string, its content.
struct VariantDeserializer {
    variant: Value,
    content: Option<Value>,
}

impl<'de> EnumAccess<'de> for VariantDeserializer {
    type Error = ObjectError;
    type Variant = VariantContent;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, VariantContent), ObjectError> {
        let tag = seed.deserialize(self.variant)?;
        Ok((tag, VariantContent(self.content)))
    }
}

struct VariantContent(Option<Value>);

impl<'de> VariantAccess<'de> for VariantContent {
    type Error = ObjectError;

    /// `"A"`, or `{"A": None}`.
    fn unit_variant(self) -> Result<(), ObjectError> {
        match self.0 {
            None | Some(Value::None) => Ok(()),
            Some(other) => Err(de::Error::invalid_type(
                unexpected(&other),
                &"None (unit variant)",
            )),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, ObjectError> {
        match self.0 {
            Some(v) => seed.deserialize(v),
            None => Err(de::Error::invalid_type(
                Unexpected::UnitVariant,
                &"newtype variant",
            )),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ObjectError> {
        match self.0 {
            Some(v) => v.deserialize_seq(visitor),
            None => Err(de::Error::invalid_type(
                Unexpected::UnitVariant,
                &"tuple variant",
            )),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ObjectError> {
        match self.0 {
            Some(v) => v.deserialize_struct("", fields, visitor),
            None => Err(de::Error::invalid_type(
                Unexpected::UnitVariant,
                &"struct variant",
            )),
        }
    }
}

/// Hands a tuple to `ValueVisitor::visit_enum` under [`TUPLE_VARIANT`].
struct TupleEnum {
    items: Vec<Value>,
}

impl<'de> EnumAccess<'de> for TupleEnum {
    type Error = ObjectError;
    type Variant = VariantContent;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, VariantContent), ObjectError> {
        let tag = seed.deserialize(Value::Str(TUPLE_VARIANT.to_owned()))?;
        Ok((tag, VariantContent(Some(Value::List(self.items)))))
    }
}
