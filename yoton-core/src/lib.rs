//! # yoton-core
//!
//! The foundation of yoton-rs, a Rust port of Yoton (the messaging library of the Pyzo
//! IDE), wire-compatible with the Python reference:
//!
//! - [`hash`]: slot and port hashes equal to the reference's;
//! - [`address`]: `[scheme://]host:port` parsing;
//! - [`package`] and [`codec`]: the 56-byte header and a `tokio_util` codec;
//! - [`handshake`] and [`stream`]: the text handshake and framing over any byte stream;
//! - [`router`]: routing as a sans-IO state machine;
//! - [`transport`], [`link`], [`inproc`]: pluggable transports; [`listen`]: TCP
//!   listening shared by the transports built on TCP;
//! - [`Context`] and [`Connection`]: the nodes and their links.
//!
//! ## Blocking and async
//! Every wait is implemented once, as a future (`*_async` methods). The blocking
//! methods run that future on the context's runtime: the caller's runtime when the
//! context was created inside one, or a small runtime the context owns. A blocking
//! method called on a thread of a multi-thread runtime hands its wait to
//! `block_in_place`; on a current-thread runtime it returns
//! [`Error::BlockingInRuntime`] instead of deadlocking.
//!
//! ```
//! use std::time::Duration;
//! use yoton_core::{Context, Package, slot_hash};
//! let a = Context::new().unwrap();
//! let b = Context::new().unwrap();
//! a.bind("inproc://lib-doc").unwrap();
//! let conn = b.connect("inproc://lib-doc", Duration::from_secs(1)).unwrap();
//! assert!(conn.is_connected());
//! a.send(Package::new(slot_hash("x"), "nobody listens; dropped at b")).unwrap();
//! a.close();
//! ```
#![deny(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod address;
pub mod busypoll;
pub mod codec;
pub mod connection;
pub mod context;
pub mod error;
pub mod events;
pub mod handshake;
pub mod hash;
pub mod inproc;
pub mod link;
pub mod listen;
pub mod lowat;
pub mod messages;
mod outbox;
pub mod package;
pub mod pool;
pub mod prefault;
pub mod readbuf;
pub mod router;
mod runtime;
mod statelock;
pub mod stream;
pub mod transport;

pub use address::Address;
pub use codec::{CodecError, PackageCodec, DEFAULT_MAX_MESSAGE_SIZE};
pub use connection::{Connection, ConnectionEvent, Status};
pub use context::{
    Context, ContextBuilder, ContextEvent, Listener, ReconnectPolicy, SlotGuard, SlotReceiver,
    SlotSender,
};
pub use error::{Error, Result};
pub use hash::{channel_slot, port_hash, slot_hash};
pub use link::{Endpoint, Link, LinkError, LinkReader, LinkWriter, Outgoing, ReadBatch};
pub use package::{Frame, Package};
pub use runtime::block_on;
pub use transport::{Registry, Transport, TransportError, TransportListener};

/// An async stream of events (connection or context events) from a broadcast.
/// Events older than the 64 most recent are skipped if the reader falls behind.
#[derive(Debug)]
pub struct EventStream<T> {
    rx: tokio::sync::broadcast::Receiver<T>,
}

impl<T: Clone + Send + 'static> EventStream<T> {
    pub(crate) fn new(rx: tokio::sync::broadcast::Receiver<T>) -> Self {
        EventStream { rx }
    }

    /// The next event, or None when the source is gone.
    pub async fn next(&mut self) -> Option<T> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Some(e),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// As a `futures` stream.
    pub fn into_stream(self) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::unfold(self, |mut s| async move { s.next().await.map(|e| (e, s)) })
    }
}
