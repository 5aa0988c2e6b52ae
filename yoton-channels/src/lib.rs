#![deny(missing_docs)]
//! Channels of yoton-rs, a Rust port of the Yoton messaging library from the
//! Pyzo IDE.
//!
//! For now this crate holds the message types; the channel classes follow.
//!
//! * [`object`]: the Yoton object encoding (message type `obj`), a
//!   byte-exact port of the reference's `ObjectMessageType`, with serde
//!   support.

pub mod object;

pub use object::{ObjectError, Value};
