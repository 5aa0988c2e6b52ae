//! Serde serialization into [`Value`] (and from there to bytes).

use serde::ser::{self, Serialize};

use super::{encode, ObjectError, Value};

/// Converts any `Serialize` value into a [`Value`], following the mapping
/// described in the [module documentation](super#serde-mapping).
///
/// # Example
///
/// ```
/// use serde::Serialize;
/// use yoton_channels::object::{to_value, Value};
///
/// #[derive(Serialize)]
/// struct Call {
///     method: String,
///     args: (i32, f64),
///     tags: Vec<String>,
///     timeout: Option<f64>,
/// }
///
/// let call = Call { method: "echo".into(), args: (1, 0.5), tags: vec![], timeout: None };
/// assert_eq!(
///     to_value(&call)?,
///     // {'method': 'echo', 'args': (1, 0.5), 'tags': [], 'timeout': None}
///     Value::Dict(vec![
///         ("method".into(), "echo".into()),
///         ("args".into(), Value::Tuple(vec![1.into(), 0.5.into()])),
///         ("tags".into(), Value::List(vec![])),
///         ("timeout".into(), Value::None),
///     ])
/// );
/// // Integers must fit in an i64.
/// assert!(to_value(&u64::MAX).is_err());
/// # Ok::<(), yoton_channels::object::ObjectError>(())
/// ```
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, ObjectError> {
    value.serialize(Serializer)
}

/// Serializes `value` straight to the wire format: [`to_value`] followed by
/// [`encode`](super::encode).
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ObjectError> {
    let v = to_value(value)?;
    let mut out = Vec::new();
    encode(&v, &mut out);
    Ok(out)
}

impl Serialize for Value {
    /// None as unit, List as a seq, Tuple as a tuple, Dict as a map.
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use ser::{SerializeMap, SerializeSeq, SerializeTuple};
        match self {
            Value::None => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Float(f) => serializer.serialize_f64(*f),
            Value::Str(s) => serializer.serialize_str(s),
            Value::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Tuple(items) => {
                let mut tuple = serializer.serialize_tuple(items.len())?;
                for item in items {
                    tuple.serialize_element(item)?;
                }
                tuple.end()
            }
            Value::Dict(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// The serde `Serializer` whose output is a [`Value`]; [`to_value`] is
/// `value.serialize(Serializer)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Serializer;

/// Upper bound for capacities taken from serde length hints.
const MAX_PREALLOC: usize = 4096;

fn with_capacity<T>(hint: Option<usize>) -> Vec<T> {
    Vec::with_capacity(hint.unwrap_or(0).min(MAX_PREALLOC))
}

fn one_entry(key: &str, value: Value) -> Value {
    Value::Dict(vec![(Value::Str(key.to_owned()), value)])
}

impl ser::Serializer for Serializer {
    type Ok = Value;
    type Error = ObjectError;
    type SerializeSeq = SerializeVec;
    type SerializeTuple = SerializeVec;
    type SerializeTupleStruct = SerializeVec;
    type SerializeTupleVariant = SerializeTupleVariant;
    type SerializeMap = SerializeMap;
    type SerializeStruct = SerializeStruct;
    type SerializeStructVariant = SerializeStructVariant;

    fn serialize_bool(self, v: bool) -> Result<Value, ObjectError> {
        Ok(Value::Bool(v))
    }

    fn serialize_i8(self, v: i8) -> Result<Value, ObjectError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_i16(self, v: i16) -> Result<Value, ObjectError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_i32(self, v: i32) -> Result<Value, ObjectError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_i64(self, v: i64) -> Result<Value, ObjectError> {
        Ok(Value::Int(v))
    }

    fn serialize_i128(self, v: i128) -> Result<Value, ObjectError> {
        Value::try_from(v)
    }

    fn serialize_u8(self, v: u8) -> Result<Value, ObjectError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_u16(self, v: u16) -> Result<Value, ObjectError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_u32(self, v: u32) -> Result<Value, ObjectError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_u64(self, v: u64) -> Result<Value, ObjectError> {
        Value::try_from(v)
    }

    fn serialize_u128(self, v: u128) -> Result<Value, ObjectError> {
        Value::try_from(v)
    }

    fn serialize_f32(self, v: f32) -> Result<Value, ObjectError> {
        Ok(Value::Float(v.into()))
    }

    fn serialize_f64(self, v: f64) -> Result<Value, ObjectError> {
        Ok(Value::Float(v))
    }

    fn serialize_char(self, v: char) -> Result<Value, ObjectError> {
        Ok(Value::Str(v.to_string()))
    }

    fn serialize_str(self, v: &str) -> Result<Value, ObjectError> {
        Ok(Value::Str(v.to_owned()))
    }

    /// Bytes become a list of ints (the reference has no bytes kind).
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, ObjectError> {
        Ok(Value::List(
            v.iter().map(|&b| Value::Int(b.into())).collect(),
        ))
    }

    fn serialize_none(self) -> Result<Value, ObjectError> {
        Ok(Value::None)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, ObjectError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<Value, ObjectError> {
        Ok(Value::None)
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, ObjectError> {
        Ok(Value::None)
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, ObjectError> {
        Ok(Value::Str(variant.to_owned()))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Value, ObjectError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, ObjectError> {
        Ok(one_entry(variant, value.serialize(self)?))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<SerializeVec, ObjectError> {
        Ok(SerializeVec {
            items: with_capacity(len),
            tuple: false,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<SerializeVec, ObjectError> {
        Ok(SerializeVec {
            items: with_capacity(Some(len)),
            tuple: true,
        })
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<SerializeVec, ObjectError> {
        self.serialize_tuple(len)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SerializeTupleVariant, ObjectError> {
        Ok(SerializeTupleVariant {
            variant,
            items: with_capacity(Some(len)),
        })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<SerializeMap, ObjectError> {
        Ok(SerializeMap {
            entries: with_capacity(len),
            key: None,
        })
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<SerializeStruct, ObjectError> {
        Ok(SerializeStruct {
            entries: with_capacity(Some(len)),
        })
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SerializeStructVariant, ObjectError> {
        Ok(SerializeStructVariant {
            variant,
            entries: with_capacity(Some(len)),
        })
    }
}

/// Builds a list (sequences) or a tuple (tuples, tuple structs, arrays).
#[doc(hidden)]
#[derive(Debug)]
pub struct SerializeVec {
    items: Vec<Value>,
    tuple: bool,
}

impl SerializeVec {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ObjectError> {
        self.items.push(to_value(value)?);
        Ok(())
    }

    fn finish(self) -> Value {
        if self.tuple {
            Value::Tuple(self.items)
        } else {
            Value::List(self.items)
        }
    }
}

impl ser::SerializeSeq for SerializeVec {
    type Ok = Value;
    type Error = ObjectError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ObjectError> {
        self.push(value)
    }

    fn end(self) -> Result<Value, ObjectError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTuple for SerializeVec {
    type Ok = Value;
    type Error = ObjectError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ObjectError> {
        self.push(value)
    }

    fn end(self) -> Result<Value, ObjectError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleStruct for SerializeVec {
    type Ok = Value;
    type Error = ObjectError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ObjectError> {
        self.push(value)
    }

    fn end(self) -> Result<Value, ObjectError> {
        Ok(self.finish())
    }
}

/// Builds `{variant: (items...)}`.
#[doc(hidden)]
#[derive(Debug)]
pub struct SerializeTupleVariant {
    variant: &'static str,
    items: Vec<Value>,
}

impl ser::SerializeTupleVariant for SerializeTupleVariant {
    type Ok = Value;
    type Error = ObjectError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ObjectError> {
        self.items.push(to_value(value)?);
        Ok(())
    }

    fn end(self) -> Result<Value, ObjectError> {
        Ok(one_entry(self.variant, Value::Tuple(self.items)))
    }
}

/// Builds a dict from a map.
#[doc(hidden)]
#[derive(Debug)]
pub struct SerializeMap {
    entries: Vec<(Value, Value)>,
    key: Option<Value>,
}

impl ser::SerializeMap for SerializeMap {
    type Ok = Value;
    type Error = ObjectError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ObjectError> {
        self.key = Some(to_value(key)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ObjectError> {
        let key = self.key.take().ok_or_else(|| {
            ObjectError::Message("serialize_value called before serialize_key".to_owned())
        })?;
        self.entries.push((key, to_value(value)?));
        Ok(())
    }

    fn end(self) -> Result<Value, ObjectError> {
        match self.key {
            None => Ok(Value::Dict(self.entries)),
            Some(_) => Err(ObjectError::Message(
                "map ended with a key but no value".to_owned(),
            )),
        }
    }
}

/// Builds a dict with the field names as keys.
#[doc(hidden)]
#[derive(Debug)]
pub struct SerializeStruct {
    entries: Vec<(Value, Value)>,
}

impl ser::SerializeStruct for SerializeStruct {
    type Ok = Value;
    type Error = ObjectError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ObjectError> {
        self.entries
            .push((Value::Str(key.to_owned()), to_value(value)?));
        Ok(())
    }

    fn end(self) -> Result<Value, ObjectError> {
        Ok(Value::Dict(self.entries))
    }
}

/// Builds `{variant: {field: value, ...}}`.
#[doc(hidden)]
#[derive(Debug)]
pub struct SerializeStructVariant {
    variant: &'static str,
    entries: Vec<(Value, Value)>,
}

impl ser::SerializeStructVariant for SerializeStructVariant {
    type Ok = Value;
    type Error = ObjectError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ObjectError> {
        self.entries
            .push((Value::Str(key.to_owned()), to_value(value)?));
        Ok(())
    }

    fn end(self) -> Result<Value, ObjectError> {
        Ok(one_entry(self.variant, Value::Dict(self.entries)))
    }
}
