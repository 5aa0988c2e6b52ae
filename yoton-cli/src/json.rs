//! JSON on the command line, yoton [`Value`]s on the wire.
//!
//! JSON to [`Value`]: objects become dicts (string keys, in the order given),
//! arrays lists, integers that fit in `i64` ints, other numbers floats, `null` None.
//!
//! [`Value`] to JSON: lists and tuples become arrays, dicts objects in their order (a
//! key that is not a string is written as its JSON text: `1` → `"1"`, None →
//! `"null"`, `(1, 2)` → `"[1,2]"`), NaN and infinities `null` (JSON has no such
//! numbers).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use yoton::Value;

use crate::error::{CliError, Result};

/// A [`Value`] read from JSON, keeping the order of object keys.
struct FromJson(Value);

impl<'de> Deserialize<'de> for FromJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor).map(FromJson)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Value, E> {
        Ok(Value::None)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, i: i64) -> std::result::Result<Value, E> {
        Ok(Value::Int(i))
    }
    fn visit_u64<E: de::Error>(self, u: u64) -> std::result::Result<Value, E> {
        Ok(i64::try_from(u).map_or(Value::Float(u as f64), Value::Int))
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> std::result::Result<Value, E> {
        Ok(Value::Float(f))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Value, E> {
        Ok(Value::Str(s.to_owned()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> std::result::Result<Value, E> {
        Ok(Value::Str(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(FromJson(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, FromJson(v))) = map.next_entry::<String, FromJson>()? {
            entries.push((Value::Str(k), v));
        }
        Ok(Value::Dict(entries))
    }
}

/// A [`Value`] written as JSON, keeping the order of dict entries.
struct ToJson<'a>(&'a Value);

impl Serialize for ToJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            Value::None => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Float(_) => s.serialize_unit(),
            Value::Str(t) => s.serialize_str(t),
            Value::List(items) | Value::Tuple(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&ToJson(item))?;
                }
                seq.end()
            }
            Value::Dict(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    match k {
                        Value::Str(t) => map.serialize_entry(t, &ToJson(v))?,
                        other => map.serialize_entry(&to_line(other), &ToJson(v))?,
                    }
                }
                map.end()
            }
        }
    }
}

/// Parse JSON text into a yoton [`Value`]; `what` names the input in the error.
pub fn parse(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str::<FromJson>(text)
        .map(|FromJson(v)| v)
        .map_err(|e| CliError::Input(format!("{what} is not valid JSON ({e}): {text}")))
}

/// Parse a request argument: JSON when it is valid JSON, otherwise the text itself
/// as a string (so `yoton req ... echo hello` works without quoting `"hello"`).
pub fn parse_lenient(text: &str) -> Value {
    serde_json::from_str::<FromJson>(text)
        .map(|FromJson(v)| v)
        .unwrap_or_else(|_| Value::Str(text.to_owned()))
}

/// A yoton [`Value`] as one line of compact JSON.
pub fn to_line(v: &Value) -> String {
    // Serializing into a String cannot fail: every key is a string.
    serde_json::to_string(&ToJson(v)).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_to_value() {
        let v = parse(r#"{"z": [1, 2.5, null, true, "x"], "a": {}}"#, "MESSAGE").unwrap();
        assert_eq!(
            v,
            Value::Dict(vec![
                (
                    "z".into(),
                    Value::List(vec![
                        Value::Int(1),
                        Value::Float(2.5),
                        Value::None,
                        Value::Bool(true),
                        "x".into()
                    ])
                ),
                ("a".into(), Value::Dict(vec![])),
            ])
        );
        assert_eq!(parse("-3", "X").unwrap(), Value::Int(-3));
        assert_eq!(
            parse("18446744073709551615", "X").unwrap(),
            Value::Float(18446744073709551615.0)
        );
        assert!(parse("{", "MESSAGE")
            .unwrap_err()
            .to_string()
            .contains("MESSAGE is not valid JSON"));
    }

    #[test]
    fn value_to_json() {
        let v = Value::Dict(vec![
            (
                "z".into(),
                Value::Tuple(vec!["x".into(), Value::Float(1.0)]),
            ),
            (Value::Int(1), Value::List(vec![])),
            (Value::None, Value::Float(f64::NAN)),
            (Value::Tuple(vec![1.into(), 2.into()]), Value::Bool(false)),
        ]);
        assert_eq!(
            to_line(&v),
            r#"{"z":["x",1.0],"1":[],"null":null,"[1,2]":false}"#
        );
    }

    #[test]
    fn lenient_args() {
        assert_eq!(parse_lenient("hello"), Value::Str("hello".into()));
        assert_eq!(parse_lenient("\"3\""), Value::Str("3".into()));
        assert_eq!(parse_lenient("3"), Value::Int(3));
    }
}
