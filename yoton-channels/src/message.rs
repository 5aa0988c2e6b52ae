//! Message types: how a channel turns messages into payload bytes and back, and the
//! type name that goes into the slot (`chat.txt.pub-sub`).

use std::marker::PhantomData;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{ChannelError, Result};
use crate::object::{self, Value};

/// A message type. Implement it to send your own types over channels.
///
/// ```
/// use bytes::Bytes;
/// use yoton_channels::{MessageType, ChannelError};
///
/// /// Little-endian u32 counters.
/// struct Counter;
/// impl MessageType for Counter {
///     type Message = u32;
///     const NAME: &'static str = "u32";
///     fn encode(m: u32) -> Result<Bytes, ChannelError> {
///         Ok(Bytes::copy_from_slice(&m.to_le_bytes()))
///     }
///     fn decode(b: Bytes) -> Result<u32, ChannelError> {
///         let raw: [u8; 4] = b.as_ref().try_into().map_err(|_| ChannelError::Message {
///             action: "decode", type_name: "u32", reason: format!("{} bytes", b.len()),
///         })?;
///         Ok(u32::from_le_bytes(raw))
///     }
/// }
/// assert_eq!(Counter::decode(Counter::encode(7).unwrap()).unwrap(), 7);
/// ```
pub trait MessageType: Send + Sync + 'static {
    /// The Rust type of one message.
    type Message: Send + 'static;
    /// The type name used in slot names (`txt`, `bin`, `obj`, ...).
    const NAME: &'static str;
    /// Message to payload. An empty payload is never sent (sending it is a no-op).
    fn encode(message: Self::Message) -> Result<Bytes>;
    /// Payload to message.
    fn decode(payload: Bytes) -> Result<Self::Message>;
}

/// UTF-8 text (`txt`), the default type. Messages are `String`s.
///
/// ```
/// use yoton_channels::{MessageType, Text};
/// assert_eq!(Text::decode(Text::encode("hé".into()).unwrap()).unwrap(), "hé");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Text;

impl MessageType for Text {
    type Message = String;
    const NAME: &'static str = "txt";
    fn encode(m: String) -> Result<Bytes> {
        Ok(Bytes::from(m))
    }
    fn decode(b: Bytes) -> Result<String> {
        String::from_utf8(b.to_vec()).map_err(|e| ChannelError::Message {
            action: "decode",
            type_name: "txt",
            reason: format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()),
        })
    }
}

/// Raw bytes (`bin`). Messages are [`Bytes`]: neither sending nor receiving copies them.
///
/// ```
/// use bytes::Bytes;
/// use yoton_channels::{MessageType, Binary};
/// let b = Bytes::from_static(b"\x00\x01");
/// assert_eq!(Binary::decode(Binary::encode(b.clone()).unwrap()).unwrap(), b);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Binary;

impl MessageType for Binary {
    type Message = Bytes;
    const NAME: &'static str = "bin";
    fn encode(m: Bytes) -> Result<Bytes> {
        Ok(m)
    }
    fn decode(b: Bytes) -> Result<Bytes> {
        Ok(b)
    }
}

/// Yoton objects (`obj`) as [`Value`]s.
///
/// ```
/// use yoton_channels::{MessageType, Object, Value};
/// let v = Value::List(vec![1.into(), "a".into()]);
/// assert_eq!(Object::decode(Object::encode(v.clone()).unwrap()).unwrap(), v);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Object;

impl MessageType for Object {
    type Message = Value;
    const NAME: &'static str = "obj";
    fn encode(m: Value) -> Result<Bytes> {
        Ok(object::to_bytes(&m))
    }
    fn decode(b: Bytes) -> Result<Value> {
        object::decode(&b).map_err(|e| ChannelError::Message {
            action: "decode",
            type_name: "obj",
            reason: e.to_string(),
        })
    }
}

/// Yoton objects (`obj`) mapped onto a Rust type with serde, as the Python reference
/// would encode the matching Python value.
///
/// ```
/// use yoton_channels::{MessageType, ObjectOf};
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Point { x: i64, y: i64 }
/// type P = ObjectOf<Point>;
/// let p = Point { x: 1, y: 2 };
/// assert_eq!(P::decode(P::encode(Point { x: 1, y: 2 }).unwrap()).unwrap(), p);
/// ```
pub struct ObjectOf<T>(PhantomData<fn() -> T>);

impl<T: Serialize + DeserializeOwned + Send + 'static> MessageType for ObjectOf<T> {
    type Message = T;
    const NAME: &'static str = "obj";
    fn encode(m: T) -> Result<Bytes> {
        object::to_vec(&m)
            .map(Bytes::from)
            .map_err(|e| ChannelError::Message {
                action: "encode",
                type_name: "obj",
                reason: e.to_string(),
            })
    }
    fn decode(b: Bytes) -> Result<T> {
        object::from_slice(&b).map_err(|e| ChannelError::Message {
            action: "decode",
            type_name: "obj",
            reason: e.to_string(),
        })
    }
}
