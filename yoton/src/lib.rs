//! # yoton
//!
//! Yoton messaging for Rust: processes talk through publish/subscribe,
//! request/reply and shared state, without a broker, over TCP, WebSocket, QUIC or
//! in-process links, wire-compatible with the Python reference (`pyzo`'s `yoton`).
//!
//! This crate re-exports [`yoton_core`] (contexts, connections, routing, events) and
//! [`yoton_channels`] (channels and message types), and compiles in the transports
//! chosen with cargo features:
//!
//! | feature | schemes | crate |
//! |---|---|---|
//! | `tcp` (default) | `tcp://`, or no scheme | `yoton-tcp` |
//! | `ws` | `ws://`, `wss://` | `yoton-ws` |
//! | `quic` | `quic://` | `yoton-quic` |
//! | `full` | all of the above | |
//!
//! `inproc://` is always there. An address whose scheme is not compiled in gives an
//! error that names the feature, e.g. "ws:// needs the `ws` feature of yoton".
//!
//! ```
//! use std::time::Duration;
//! use yoton::{PubChannel, SubChannel, Text};
//!
//! let host = yoton::context().unwrap();
//! let guest = yoton::context().unwrap();
//! let news = PubChannel::<Text>::new(&host, "news").unwrap();
//! let inbox = SubChannel::<Text>::new(&guest, "news").unwrap();
//! let conn = host.bind("inproc://yoton-doc").unwrap();
//! guest.connect("inproc://yoton-doc", Duration::from_secs(1)).unwrap();
//! conn.wait_connected(Duration::from_secs(1)).unwrap();
//! news.send("hello".into()).unwrap();
//! assert_eq!(inbox.recv_timeout(Duration::from_secs(2)).unwrap().as_deref(), Some("hello"));
//! ```
#![deny(missing_docs)]

use std::sync::Arc;

pub use yoton_channels::{
    self as channels, select_sub_channel, Binary, ChannelError, DiscardMode, MessageType, Object,
    ObjectOf, PubChannel, RepChannel, RepMode, Reply, ReqChannel, Request, StateChannel,
    SubChannel, Text, Value,
};
pub use yoton_core::{
    self as core, channel_slot, events, port_hash, slot_hash, Address, Connection, ConnectionEvent,
    Context, ContextBuilder, ContextEvent, Endpoint, Error, Listener, Package, ReconnectPolicy,
    Registry, Result, Status, Transport,
};

#[cfg(feature = "quic")]
pub use yoton_quic as quic;
#[cfg(feature = "tcp")]
pub use yoton_tcp as tcp;
#[cfg(feature = "ws")]
pub use yoton_ws as ws;

/// Schemes each optional transport provides, with the feature that compiles it in.
const OPTIONAL: &[(&str, &str)] = &[
    ("tcp", "tcp"),
    ("ws", "ws"),
    ("wss", "ws"),
    ("quic", "quic"),
];

/// The transports compiled into this build (plus `inproc`), with an explanation for
/// the schemes that are not.
///
/// ```
/// let r = yoton::registry();
/// assert!(r.get("inproc").is_some());
/// ```
pub fn registry() -> Registry {
    let mut r = Registry::with_inproc();
    for t in transports() {
        r.register(t);
    }
    for (scheme, feature) in OPTIONAL {
        if r.get(scheme).is_none() {
            r.set_hint(
                scheme,
                &format!("{scheme}:// needs the `{feature}` feature of yoton"),
            );
        }
    }
    r
}

/// The compiled-in transports, with their default settings.
#[allow(clippy::vec_init_then_push)]
pub fn transports() -> Vec<Arc<dyn Transport>> {
    #[allow(unused_mut)]
    let mut v: Vec<Arc<dyn Transport>> = Vec::new();
    #[cfg(feature = "tcp")]
    v.push(Arc::new(yoton_tcp::TcpTransport));
    #[cfg(feature = "ws")]
    v.push(Arc::new(yoton_ws::WsTransport::new()));
    #[cfg(feature = "quic")]
    v.push(yoton_quic::transport());
    v
}

/// A context that can use every compiled-in transport.
pub fn context() -> Result<Context> {
    Context::builder().registry(registry()).build()
}

/// Register the compiled-in transports for every `Context::new()` made afterwards.
pub fn install() {
    for t in transports() {
        yoton_core::context::register_default_transport(t);
    }
}

/// The schemes compiled into this build, sorted.
pub fn schemes() -> Vec<&'static str> {
    registry().schemes()
}
