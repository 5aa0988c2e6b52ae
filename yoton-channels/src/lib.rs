//! # yoton-channels
//!
//! The messaging patterns of yoton-rs over a [`yoton_core::Context`], whatever its
//! transports: publish/subscribe ([`PubChannel`], [`SubChannel`], with sync mode and
//! [`select_sub_channel`]), request/reply ([`ReqChannel`], [`RepChannel`]), state
//! ([`StateChannel`]), and the message types
//! ([`Text`], [`Binary`], [`Object`], [`ObjectOf`], or your own [`MessageType`]).
//!
//! Each channel has a blocking API (usable from a plain `fn main`, as Python Yoton
//! users know it) and an async API (`*_async`, inside tokio); both share one
//! implementation.
//!
//! * [`object`]: the Yoton object encoding (message type `obj`), a byte-exact port
//!   of the reference's `ObjectMessageType`, with serde support.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod error;
pub mod file;
pub mod message;
pub mod object;
pub mod pubsub;
mod queue;
pub mod reqrep;
mod spin;
pub mod state;

pub use error::{ChannelError, Result};
pub use file::{Block, FileReader, FileWriter};
pub use message::{Binary, MessageType, Object, ObjectOf, Text};
pub use object::{ObjectError, Value};
pub use pubsub::{select_sub_channel, PubChannel, Selectable, SubChannel};
pub use queue::{DiscardMode, DEFAULT_QUEUE_LEN};
pub use reqrep::{RepChannel, RepMode, Reply, ReqChannel, Request, REP_THREAD_STOP_WAIT};
pub use spin::BLOCKING_SPIN;
pub use state::StateChannel;
