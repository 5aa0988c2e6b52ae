//! The Yoton object encoding (message type `obj`), byte-exact with the
//! Python reference (`yoton.OBJECT`, class `ObjectMessageType` in
//! `yoton/channels/message_types.py`).
//!
//! # Wire format
//!
//! A value is one type byte followed by its body:
//!
//! | byte | value | body |
//! |------|-------|------|
//! | `n` | None  | nothing |
//! | `b` | bool  | one byte, 0 or 1 |
//! | `i` | int   | `i64` little-endian |
//! | `f` | float | `f64` little-endian |
//! | `s` | string | length in bytes, then the UTF-8 bytes |
//! | `l` | list  | count, then each value |
//! | `t` | tuple | count, then each value |
//! | `d` | dict  | count, then key, value, key, value, ... |
//!
//! A length or count below 255 is one byte; otherwise the byte 255 followed
//! by a `u64` (little-endian). An empty payload decodes as None.
//!
//! # Behaviour of the reference, and where this module differs
//!
//! Found by reading and running the reference (pyzo 4.22.0, yoton 2.2, on
//! CPython 3.11); see `scripts/gen_obj_vectors.py` for the generated vectors.
//!
//! * Encoder: it accepts exactly `None`, `bool`, `int`, `float`, `str`,
//!   `list`, `tuple` and `dict` (and their subclasses, so an `IntEnum` goes
//!   out as an int, a namedtuple as a tuple, an `OrderedDict` as a dict).
//!   `bytes`, `bytearray`, `memoryview` and `set` are refused with
//!   `ValueError("Unsupported type")`; ints outside `i64` fail in
//!   `struct.pack`; strings with lone surrogates fail to encode. None of these
//!   can occur in a [`Value`]; for the serde mapping of Rust bytes see below.
//! * The string length is the length of the UTF-8 encoding in bytes, not the
//!   number of characters.
//! * A dict is written in Python's iteration (insertion) order; keys may be
//!   any supported value, e.g. ints, floats, None or tuples.
//! * NaN keeps its bit pattern, including the sign (`-nan` is
//!   `66 000000000000f8ff`).
//! * Decoder, bool: any non-zero byte decodes as `True` (`bool(byte)`); this
//!   module does the same, so `b\x02` decodes to `Bool(true)`.
//! * Decoder, lengths: the long form (255 + `u64`) is accepted for any
//!   length, even one below 255; so is it here.
//! * Decoder, trailing bytes: the reference **ignores** anything after the
//!   first complete value. [`decode`] rejects it with
//!   [`ObjectError::TrailingBytes`] (the reference encoder never produces
//!   trailing bytes); [`Decoder::allow_trailing_bytes`] gives the reference
//!   behaviour.
//! * Decoder, dict keys: the reference builds a Python `dict`, so duplicate
//!   keys collapse (the first key object stays at its position with the last
//!   value; `1`, `1.0` and `True` count as the same key) and unhashable keys
//!   (a list or dict as key) raise `TypeError`. [`Value::Dict`] keeps every
//!   entry exactly as received, in order; [`Value::get`] returns the last
//!   match like the Python dict would.
//! * Decoder, nesting: the reference recurses and hits Python's recursion
//!   limit: on CPython 3.11 it decodes at most about 498 nested lists or
//!   tuples (996 dicts), while its encoder can produce about 996 nested
//!   lists. This decoder is iterative (it never recurses), allows
//!   [`DEFAULT_MAX_DEPTH`] (1000) nested containers and returns
//!   [`ObjectError::TooDeep`] beyond that. The serde functions allow
//!   [`SERDE_MAX_DEPTH`] (128), because serde itself recurses.
//! * Errors: the reference raises `EOFError` on truncated input,
//!   `ValueError` on an unknown type byte and `UnicodeDecodeError` on bad
//!   UTF-8; this module returns the matching [`ObjectError`] with the offset.
//!
//! # Serde mapping
//!
//! [`to_value`] / [`to_vec`] produce what the reference would produce for
//! the corresponding Python value; [`from_value`] / [`from_slice`] read it
//! back.
//!
//! | Rust | Python / [`Value`] |
//! |------|--------------------|
//! | `bool` | bool |
//! | `i8`..`i64`, `u8`..`u32`, and `u64`/`i128`/`u128` in `i64` range | int (others: [`ObjectError::IntOutOfRange`] naming the value) |
//! | `f32`, `f64` | float (`f32` widened) |
//! | `char`, `str`, `String` | str (a `char` is a one-character string) |
//! | `Option`: `None` / `Some(x)` | None / `x` |
//! | `()`, unit struct | None |
//! | newtype struct `S(x)` | `x` |
//! | tuple, tuple struct, array `[T; N]` | tuple |
//! | `Vec`, slice, other sequences | list |
//! | `HashMap`, `BTreeMap`, other maps | dict (keys can be any value) |
//! | struct | dict with the field names as str keys, in declaration order |
//! | unit enum variant `E::A` | str `"A"` |
//! | newtype / tuple / struct variant | dict with one entry `{"A": x}`, `{"A": (..)}`, `{"A": {..}}` |
//! | bytes (`serialize_bytes`, e.g. `serde_bytes`) | list of ints 0..=255 (the reference has no bytes kind; `bytes(lst)` in Python turns it back) |
//!
//! Deserializing is lenient in the ways Python code usually is: a tuple or a
//! list both deserialize into a `Vec`, a Rust tuple or a struct (by
//! position); an int deserializes into `f32`/`f64`; bytes can be read from
//! a list of ints or from a str (its UTF-8 bytes); enum variants by index are
//! accepted as ints. A sequence or map with more items than the target
//! (e.g. a 3-tuple into a Rust 2-tuple) is an error.
//!
//! [`from_slice`] and [`from_value`] refuse input nested deeper than
//! [`SERDE_MAX_DEPTH`] levels.
//!
//! `Option<T>` cannot tell `Some(None)`-like values apart, as in Python:
//! `Some(())` serializes to None and reads back as `None`.
//!
//! [`Value`] itself implements `Serialize` and `Deserialize`. With this
//! module's own serializer and deserializer the list/tuple distinction is
//! kept exactly (so a `Value` field inside a `#[derive(Deserialize)]` struct
//! sees a tuple as [`Value::Tuple`]). Through other formats (serde_json and
//! the like), or inside `#[serde(flatten)]` / untagged enums (which buffer
//! the input), a tuple comes back as a [`Value::List`], and non-string dict
//! keys may be refused by the format.

#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod de;
mod error;
mod ser;

use std::collections::{BTreeMap, HashMap};

pub use de::{from_slice, from_value};
pub use error::ObjectError;
pub use ser::{to_value, to_vec, Serializer};

/// The message type name of the object encoding, as used by the reference
/// channels (`ObjectMessageType.message_type_name()`).
pub const MESSAGE_TYPE_NAME: &str = "obj";

/// The default limit on nested containers used by [`decode`]: enough for
/// anything the reference encoder can produce (about 996 levels).
pub const DEFAULT_MAX_DEPTH: usize = 1000;

/// The limit on nested containers for the serde functions [`from_slice`]
/// and [`from_value`] (the same as `serde_json`'s recursion limit).
///
/// The decoder is iterative, but serde deserialization recurses: in debug
/// builds it takes 2 to 4 KB of stack per level, so [`DEFAULT_MAX_DEPTH`]
/// levels could overflow a 2 MiB thread stack. To deserialize deeper values,
/// decode with a [`Decoder`] and walk the [`Value`] directly.
pub const SERDE_MAX_DEPTH: usize = 128;

const TYPE_NONE: u8 = b'n';
const TYPE_BOOL: u8 = b'b';
const TYPE_INT: u8 = b'i';
const TYPE_FLOAT: u8 = b'f';
const TYPE_STRING: u8 = b's';
const TYPE_LIST: u8 = b'l';
const TYPE_TUPLE: u8 = b't';
const TYPE_DICT: u8 = b'd';

/// A value of the Yoton object encoding: the Python objects
/// `None`, `bool`, `int`, `float`, `str`, `list`, `tuple` and `dict`.
///
/// Equality (`PartialEq`) is structural and compares floats with `==`, as
/// Python does: `Float(NAN) != Float(NAN)` and `Float(0.0) == Float(-0.0)`.
/// Use [`Value::bitwise_eq`] to compare floats by bit pattern instead.
/// Dicts compare entry by entry, in order.
///
/// Dropping or cloning a [`Value`] recurses into nested containers; values
/// from [`decode`] are at most [`DEFAULT_MAX_DEPTH`] levels deep, but a
/// hand-built value nested hundreds of thousands of levels deep can exhaust
/// the stack (encoding it does not: [`encode`] is iterative).
///
/// # Example
///
/// ```
/// use yoton_channels::object::{decode, to_bytes, Value};
///
/// // ('echo', ('hello', 0.5), {'a': 1})
/// let request = Value::Tuple(vec![
///     "echo".into(),
///     Value::Tuple(vec!["hello".into(), 0.5.into()]),
///     Value::Dict(vec![("a".into(), 1.into())]),
/// ]);
/// let bytes = to_bytes(&request);
/// assert_eq!(&bytes[..4], b"t\x03s\x04");
/// let back = decode(&bytes)?;
/// assert_eq!(back, request);
/// assert_eq!(back.as_seq().and_then(|s| s[0].as_str()), Some("echo"));
/// assert_eq!(back.as_seq().and_then(|s| s[2].get("a")), Some(&Value::Int(1)));
/// # Ok::<(), yoton_channels::object::ObjectError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// `None`.
    #[default]
    None,
    /// `bool`.
    Bool(bool),
    /// `int` (the wire format holds signed 64-bit integers).
    Int(i64),
    /// `float`.
    Float(f64),
    /// `str`.
    Str(String),
    /// `list`.
    List(Vec<Value>),
    /// `tuple`.
    Tuple(Vec<Value>),
    /// `dict`, as key/value pairs in wire (insertion) order. Keys can be any
    /// value; duplicates are kept as received. (A list or dict key encodes
    /// fine, but the reference decoder raises `TypeError` on it, since such
    /// keys are unhashable in Python.)
    Dict(Vec<(Value, Value)>),
}

impl Value {
    /// The Python type name of this value: `"NoneType"`, `"bool"`, `"int"`,
    /// `"float"`, `"str"`, `"list"`, `"tuple"` or `"dict"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
        }
    }

    /// Whether this is [`Value::None`].
    pub fn is_none(&self) -> bool {
        matches!(self, Value::None)
    }

    /// The bool, if this is a [`Value::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The integer, if this is a [`Value::Int`].
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The number as `f64`, if this is a [`Value::Float`] or a
    /// [`Value::Int`] (converted with `as`, like Python's `float(int)`
    /// for ints that fit).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The string, if this is a [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The items, if this is a [`Value::List`] or a [`Value::Tuple`].
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) | Value::Tuple(items) => Some(items),
            _ => None,
        }
    }

    /// The entries, if this is a [`Value::Dict`].
    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(entries) => Some(entries),
            _ => None,
        }
    }

    /// Looks up a string key in a [`Value::Dict`]. With duplicate keys the
    /// last one wins, as when the reference builds a Python dict. Returns
    /// `None` if this is not a dict or the key is absent.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?
            .iter()
            .rev()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The number of nested containers: 0 for a scalar, 1 for `[]` or
    /// `[1]`, 2 for `[[1]]`, and so on. Computed without recursion.
    pub fn depth(&self) -> usize {
        let mut max = 0;
        let mut stack: Vec<(&Value, usize)> = vec![(self, 0)];
        while let Some((v, d)) = stack.pop() {
            let d = d.saturating_add(1);
            match v {
                Value::List(items) | Value::Tuple(items) => {
                    max = max.max(d);
                    stack.extend(items.iter().map(|c| (c, d)));
                }
                Value::Dict(entries) => {
                    max = max.max(d);
                    for (k, v) in entries {
                        stack.push((k, d));
                        stack.push((v, d));
                    }
                }
                _ => {}
            }
        }
        max
    }

    /// Structural equality that compares floats by their bit pattern: NaN
    /// equals a NaN with the same bits, and `0.0` differs from `-0.0`.
    /// Everything else compares as with `==`.
    pub fn bitwise_eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::List(a), Value::List(b)) | (Value::Tuple(a), Value::Tuple(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.bitwise_eq(y))
            }
            (Value::Dict(a), Value::Dict(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((ka, va), (kb, vb))| ka.bitwise_eq(kb) && va.bitwise_eq(vb))
            }
            _ => self == other,
        }
    }
}

// --- conversions -------------------------------------------------------

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

macro_rules! from_int {
    ($($t:ty)*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Int(i64::from(v))
            }
        }
    )*};
}
from_int!(i8 i16 i32 i64 u8 u16 u32);

macro_rules! try_from_int {
    ($($t:ty)*) => {$(
        impl TryFrom<$t> for Value {
            type Error = ObjectError;
            /// Fails with [`ObjectError::IntOutOfRange`] outside the `i64` range.
            fn try_from(v: $t) -> Result<Self, ObjectError> {
                i64::try_from(v)
                    .map(Value::Int)
                    .map_err(|_| ObjectError::int_out_of_range(v))
            }
        }
    )*};
}
try_from_int!(u64 usize isize i128 u128);

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Float(f64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Str(v.clone())
    }
}

impl From<char> for Value {
    fn from(v: char) -> Self {
        Value::Str(v.to_string())
    }
}

impl From<()> for Value {
    fn from(_: ()) -> Self {
        Value::None
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    /// `None` becomes [`Value::None`], `Some(x)` becomes `x`.
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::None, Into::into)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    /// A `Vec` becomes a [`Value::List`].
    fn from(v: Vec<T>) -> Self {
        Value::List(v.into_iter().map(Into::into).collect())
    }
}

impl<T: Clone + Into<Value>> From<&[T]> for Value {
    /// A slice becomes a [`Value::List`].
    fn from(v: &[T]) -> Self {
        Value::List(v.iter().cloned().map(Into::into).collect())
    }
}

impl<K: Into<Value>, V: Into<Value>, S> From<HashMap<K, V, S>> for Value {
    /// A `HashMap` becomes a [`Value::Dict`] (in the map's iteration order).
    fn from(v: HashMap<K, V, S>) -> Self {
        Value::Dict(v.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl<K: Into<Value>, V: Into<Value>> From<BTreeMap<K, V>> for Value {
    /// A `BTreeMap` becomes a [`Value::Dict`] in key order.
    fn from(v: BTreeMap<K, V>) -> Self {
        Value::Dict(v.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

macro_rules! from_tuple {
    ($(($($n:ident)+))*) => {$(
        impl<$($n: Into<Value>),+> From<($($n,)+)> for Value {
            /// A Rust tuple becomes a [`Value::Tuple`].
            #[allow(non_snake_case)]
            fn from(($($n,)+): ($($n,)+)) -> Self {
                Value::Tuple(vec![$($n.into()),+])
            }
        }
    )*};
}
from_tuple! {
    (A)
    (A B)
    (A B C)
    (A B C D)
    (A B C D E)
    (A B C D E F)
}

// --- encoding ------------------------------------------------------------

fn write_number(out: &mut Vec<u8>, n: usize) {
    match u8::try_from(n) {
        Ok(small) if small < 255 => out.push(small),
        _ => {
            out.push(255);
            out.extend_from_slice(&(n as u64).to_le_bytes());
        }
    }
}

/// Appends the encoding of `v` to `out`, exactly as the reference
/// `Packer.pack_object` writes it.
///
/// Encoding cannot fail: every [`Value`] is representable. It works
/// iteratively, so arbitrarily deep values do not exhaust the stack.
pub fn encode(v: &Value, out: &mut Vec<u8>) {
    let mut stack: Vec<&Value> = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::None => out.push(TYPE_NONE),
            Value::Bool(b) => {
                out.push(TYPE_BOOL);
                out.push(u8::from(*b));
            }
            Value::Int(i) => {
                out.push(TYPE_INT);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Value::Float(f) => {
                out.push(TYPE_FLOAT);
                out.extend_from_slice(&f.to_le_bytes());
            }
            Value::Str(s) => {
                out.push(TYPE_STRING);
                write_number(out, s.len());
                out.extend_from_slice(s.as_bytes());
            }
            Value::List(items) | Value::Tuple(items) => {
                out.push(if matches!(v, Value::List(_)) {
                    TYPE_LIST
                } else {
                    TYPE_TUPLE
                });
                write_number(out, items.len());
                stack.extend(items.iter().rev());
            }
            Value::Dict(entries) => {
                out.push(TYPE_DICT);
                write_number(out, entries.len());
                for (key, value) in entries.iter().rev() {
                    stack.push(value);
                    stack.push(key);
                }
            }
        }
    }
}

/// Encodes `v` into a new buffer (see [`encode`]).
pub fn to_bytes(v: &Value) -> bytes::Bytes {
    let mut out = Vec::new();
    encode(v, &mut out);
    bytes::Bytes::from(out)
}

// --- decoding ------------------------------------------------------------

/// Decodes one message payload with the default [`Decoder`]: an empty
/// payload is [`Value::None`], trailing bytes are an error, and at most
/// [`DEFAULT_MAX_DEPTH`] containers may be nested.
///
/// Never panics, whatever the input.
pub fn decode(buf: &[u8]) -> Result<Value, ObjectError> {
    Decoder::new().decode(buf)
}

/// A configurable decoder; [`decode`] uses [`Decoder::new`].
///
/// ```
/// use yoton_channels::object::{Decoder, ObjectError, Value};
///
/// // The reference ignores bytes after the value; the default decoder does not.
/// let lenient = Decoder::new().allow_trailing_bytes(true);
/// assert_eq!(lenient.decode(b"nxyz")?, Value::None);
/// assert!(matches!(
///     Decoder::new().decode(b"nxyz"),
///     Err(ObjectError::TrailingBytes { offset: 1, count: 3 })
/// ));
/// // [[None]] is two levels deep.
/// assert!(Decoder::new().max_depth(1).decode(b"l\x01l\x01n").is_err());
/// # Ok::<(), ObjectError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    max_depth: usize,
    allow_trailing: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder with [`DEFAULT_MAX_DEPTH`] that rejects trailing bytes.
    pub const fn new() -> Self {
        Decoder {
            max_depth: DEFAULT_MAX_DEPTH,
            allow_trailing: false,
        }
    }

    /// Sets the maximum number of nested containers (a scalar is depth 0,
    /// `[1]` depth 1, `[[1]]` depth 2). The decoder itself is iterative and
    /// never recurses, but dropping, comparing or deserializing (serde) a
    /// decoded [`Value`] does recurse once per level, so keep the limit in
    /// the low thousands at most.
    pub const fn max_depth(mut self, max_depth: usize) -> Self {
        self.max_depth = max_depth;
        self
    }

    /// Whether to ignore bytes after the first complete value, as the
    /// reference does (default: `false`, which reports
    /// [`ObjectError::TrailingBytes`]).
    pub const fn allow_trailing_bytes(mut self, allow: bool) -> Self {
        self.allow_trailing = allow;
        self
    }

    /// Decodes one message payload. An empty payload is [`Value::None`]
    /// (as in `ObjectMessageType.message_from_bytes`). Never panics.
    pub fn decode(&self, buf: &[u8]) -> Result<Value, ObjectError> {
        if buf.is_empty() {
            return Ok(Value::None);
        }
        let mut reader = Reader {
            buf,
            pos: 0,
            max_depth: self.max_depth,
        };
        let value = reader.value()?;
        let count = reader.remaining();
        if count > 0 && !self.allow_trailing {
            return Err(ObjectError::TrailingBytes {
                offset: reader.pos,
                count,
            });
        }
        Ok(value)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    max_depth: usize,
}

#[deny(clippy::arithmetic_side_effects)]
impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ObjectError> {
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or(ObjectError::UnexpectedEof {
                offset: self.pos,
                what,
                needed: n.saturating_sub(self.remaining()),
            })?;
        self.pos = self.pos.saturating_add(n);
        Ok(slice)
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, ObjectError> {
        let b = *self.buf.get(self.pos).ok_or(ObjectError::UnexpectedEof {
            offset: self.pos,
            what,
            needed: 1,
        })?;
        self.pos = self.pos.saturating_add(1);
        Ok(b)
    }

    fn array8(&mut self, what: &'static str) -> Result<[u8; 8], ObjectError> {
        let offset = self.pos;
        let slice = self.take(8, what)?;
        <[u8; 8]>::try_from(slice).map_err(|_| ObjectError::UnexpectedEof {
            offset,
            what,
            needed: 8,
        })
    }

    /// Reads a length/count and checks it against the remaining input:
    /// every counted item takes at least `min_item_bytes` bytes.
    fn count(&mut self, what: &'static str, min_item_bytes: usize) -> Result<usize, ObjectError> {
        let offset = self.pos;
        let first = self.byte(what)?;
        let declared = if first == 255 {
            u64::from_le_bytes(self.array8(what)?)
        } else {
            u64::from(first)
        };
        let remaining = self.remaining();
        let max = remaining.checked_div(min_item_bytes).unwrap_or(remaining);
        usize::try_from(declared)
            .ok()
            .filter(|&n| n <= max)
            .ok_or(ObjectError::LengthTooLarge {
                offset,
                what,
                declared,
                remaining,
            })
    }

    /// Decodes one value. Iterative: nesting costs heap (one [`Frame`] per
    /// open container, bounded by `max_depth`), not stack.
    fn value(&mut self) -> Result<Value, ObjectError> {
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            let offset = self.pos;
            let type_byte = self.byte("type byte")?;
            let mut value = match type_byte {
                TYPE_NONE => Value::None,
                TYPE_BOOL => Value::Bool(self.byte("bool")? != 0),
                TYPE_INT => Value::Int(i64::from_le_bytes(self.array8("int")?)),
                TYPE_FLOAT => Value::Float(f64::from_le_bytes(self.array8("float")?)),
                TYPE_STRING => {
                    let len = self.count("string length", 1)?;
                    let start = self.pos;
                    let bytes = self.take(len, "string")?;
                    match std::str::from_utf8(bytes) {
                        Ok(s) => Value::Str(s.to_owned()),
                        Err(e) => {
                            return Err(ObjectError::InvalidUtf8 {
                                offset: start.saturating_add(e.valid_up_to()),
                            })
                        }
                    }
                }
                TYPE_LIST | TYPE_TUPLE | TYPE_DICT => {
                    if stack.len() >= self.max_depth {
                        return Err(ObjectError::TooDeep {
                            offset,
                            limit: self.max_depth,
                        });
                    }
                    let frame = match type_byte {
                        TYPE_DICT => {
                            let n = self.count("dict count", 2)?;
                            // `count` bounded n by the remaining input.
                            Frame::Dict {
                                entries: Vec::with_capacity(n.min(1024)),
                                key: None,
                                left: n,
                            }
                        }
                        _ => {
                            let is_list = type_byte == TYPE_LIST;
                            let what = if is_list { "list count" } else { "tuple count" };
                            let n = self.count(what, 1)?;
                            Frame::Seq {
                                is_list,
                                items: Vec::with_capacity(n.min(1024)),
                                left: n,
                            }
                        }
                    };
                    if !frame.is_complete() {
                        stack.push(frame);
                        continue;
                    }
                    frame.finish()
                }
                byte => return Err(ObjectError::UnknownType { offset, byte }),
            };
            // Hand the finished value to its container(s).
            loop {
                let Some(parent) = stack.last_mut() else {
                    return Ok(value);
                };
                parent.push(value);
                if !parent.is_complete() {
                    break;
                }
                match stack.pop() {
                    Some(done) => value = done.finish(),
                    None => break,
                }
            }
        }
    }
}

/// A container being decoded.
enum Frame {
    Seq {
        is_list: bool,
        items: Vec<Value>,
        left: usize,
    },
    Dict {
        entries: Vec<(Value, Value)>,
        key: Option<Value>,
        left: usize,
    },
}

impl Frame {
    fn is_complete(&self) -> bool {
        match self {
            Frame::Seq { left, .. } | Frame::Dict { left, .. } => *left == 0,
        }
    }

    fn push(&mut self, value: Value) {
        match self {
            Frame::Seq { items, left, .. } => {
                items.push(value);
                *left = left.saturating_sub(1);
            }
            Frame::Dict { entries, key, left } => match key.take() {
                None => *key = Some(value),
                Some(k) => {
                    entries.push((k, value));
                    *left = left.saturating_sub(1);
                }
            },
        }
    }

    fn finish(self) -> Value {
        match self {
            Frame::Seq {
                is_list: true,
                items,
                ..
            } => Value::List(items),
            Frame::Seq { items, .. } => Value::Tuple(items),
            Frame::Dict { entries, .. } => Value::Dict(entries),
        }
    }
}
