//! # yoton-tcp
//!
//! The TCP transport (`tcp://host:port`, also the default when an address has no
//! scheme). It opens sockets with `TCP_NODELAY` and hands the byte stream to the
//! shared adapter of yoton-core, which does the Python-compatible text handshake and
//! the framing. A client that is not Yoton (say a web browser) is answered
//! `ERROR: this is Yoton.` and a bound context keeps waiting for a real peer.
//!
//! ```
//! use std::time::Duration;
//! use yoton_core::Context;
//!
//! let a = Context::builder().transport(yoton_tcp::TcpTransport).build().unwrap();
//! let b = Context::builder().transport(yoton_tcp::TcpTransport).build().unwrap();
//! let host = a.bind("localhost:0").unwrap();
//! let port = host.local().port;
//! b.connect(&format!("localhost:{port}"), Duration::from_secs(2)).unwrap();
//! host.wait_connected(Duration::from_secs(2)).unwrap();
//! assert_eq!(host.peer_id(), b.id());
//! ```
#![deny(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod clientserver;
pub mod tls;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::net::{TcpListener, TcpStream};
use yoton_core::listen::{bind_tcp, tcp_ends};
use yoton_core::stream::RawStream;
use yoton_core::transport::{Incoming, Transport, TransportError, TransportListener};
use yoton_core::{Address, Endpoint};

pub use tls::{install_tls, Fingerprint, TlsError, TlsTransport, TlsTransportBuilder};

/// The TCP transport.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpTransport;

/// Make TCP available to every context created afterwards with `Context::new()`.
///
/// ```
/// yoton_tcp::install();
/// let ctx = yoton_core::Context::new().unwrap();
/// assert!(ctx.registry().get("tcp").is_some());
/// ```
pub fn install() {
    yoton_core::context::register_default_transport(Arc::new(TcpTransport));
}

fn into_raw(stream: TcpStream) -> Result<Incoming, TransportError> {
    let (local, peer) = tcp_ends(&stream)?;
    let (r, w) = stream.into_split();
    Ok(RawStream {
        reader: Box::new(r),
        writer: Box::new(w),
        local,
        peer,
    }
    .into())
}

struct Listening {
    listener: TcpListener,
    local: Endpoint,
}

#[async_trait]
impl TransportListener for Listening {
    fn local(&self) -> Endpoint {
        self.local.clone()
    }

    async fn accept(&mut self) -> Result<Incoming, TransportError> {
        let (stream, _) = self.listener.accept().await?;
        into_raw(stream)
    }
}

#[async_trait]
impl Transport for TcpTransport {
    fn schemes(&self) -> &'static [&'static str] {
        &["tcp"]
    }

    async fn listen(&self, addr: &Address) -> Result<Box<dyn TransportListener>, TransportError> {
        let listener = bind_tcp(addr.resolve().await?)?;
        let local = listener.local_addr()?.into();
        Ok(Box::new(Listening { listener, local }))
    }

    async fn connect(&self, addr: &Address) -> Result<Incoming, TransportError> {
        let sa = addr.resolve().await?;
        let stream = TcpStream::connect(sa).await?;
        into_raw(stream)
    }
}
