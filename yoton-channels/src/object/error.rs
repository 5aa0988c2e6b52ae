//! The error type of the object encoding.

use std::fmt::Display;

/// Everything that can go wrong while decoding the Yoton object encoding or
/// while mapping Rust values to and from [`Value`](super::Value) with serde.
///
/// Decoding errors carry the byte `offset` (from the start of the decoded
/// buffer) at which the problem was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// The input ended before the value was complete.
    #[error("unexpected end of input at byte {offset}: {what} needs {needed} more byte(s)")]
    UnexpectedEof {
        /// Offset at which the missing item starts.
        offset: usize,
        /// What was being read (for example `"int"` or `"type byte"`).
        what: &'static str,
        /// How many bytes were missing.
        needed: usize,
    },
    /// A string length or item count is larger than the rest of the input
    /// can possibly hold (every item takes at least one byte, every dict
    /// entry at least two).
    #[error(
        "{what} at byte {offset} declares {declared}, but only {remaining} byte(s) of input remain"
    )]
    LengthTooLarge {
        /// Offset of the length/count field.
        offset: usize,
        /// Which length this is (for example `"list count"`).
        what: &'static str,
        /// The declared length or count.
        declared: u64,
        /// Bytes left in the input after the length field.
        remaining: usize,
    },
    /// A type byte that is not one of `n b i f s l t d`.
    #[error("unknown type byte 0x{byte:02x} at byte {offset}")]
    UnknownType {
        /// Offset of the type byte.
        offset: usize,
        /// The byte found.
        byte: u8,
    },
    /// A string body that is not valid UTF-8.
    #[error("invalid UTF-8 in string at byte {offset}")]
    InvalidUtf8 {
        /// Offset of the first byte that is not valid UTF-8.
        offset: usize,
    },
    /// Containers nested deeper than the decoder's limit
    /// (see [`Decoder::max_depth`](super::Decoder::max_depth)).
    #[error("containers nested deeper than {limit} levels at byte {offset}")]
    TooDeep {
        /// Offset of the type byte of the container that is one level too deep.
        offset: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A [`Value`](super::Value) given to [`from_value`](super::from_value)
    /// is nested deeper than [`SERDE_MAX_DEPTH`](super::SERDE_MAX_DEPTH).
    #[error("value nested {depth} levels deep; serde deserialization allows at most {limit}")]
    ValueTooDeep {
        /// The depth of the value (see [`Value::depth`](super::Value::depth)).
        depth: usize,
        /// The limit in force.
        limit: usize,
    },
    /// Bytes left over after one complete value.
    #[error("{count} trailing byte(s) after the value, starting at byte {offset}")]
    TrailingBytes {
        /// Offset of the first byte after the value.
        offset: usize,
        /// How many bytes are left over.
        count: usize,
    },
    /// An integer outside the signed 64-bit range, which is all the wire
    /// format (and the Python reference encoder) supports.
    #[error("integer {value} is out of range: Yoton ints are signed 64-bit (i64)")]
    IntOutOfRange {
        /// The integer, in decimal.
        value: String,
    },
    /// Any other serde error (type mismatch, missing field, custom
    /// `Serialize`/`Deserialize` error, ...).
    #[error("{0}")]
    Message(String),
}

impl ObjectError {
    pub(crate) fn int_out_of_range(value: impl Display) -> Self {
        ObjectError::IntOutOfRange {
            value: value.to_string(),
        }
    }
}

impl serde::ser::Error for ObjectError {
    fn custom<T: Display>(msg: T) -> Self {
        ObjectError::Message(msg.to_string())
    }
}

impl serde::de::Error for ObjectError {
    fn custom<T: Display>(msg: T) -> Self {
        ObjectError::Message(msg.to_string())
    }
}
