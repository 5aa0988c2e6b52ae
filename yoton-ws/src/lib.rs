//! # yoton-ws
//!
//! The WebSocket transport of yoton-rs: `ws://host:port[/path]` and, with TLS (rustls),
//! `wss://host:port[/path]`. A context bound or listening on a `ws://` address is an
//! HTTP server that accepts WebSocket upgrades, so any WebSocket client (a browser,
//! Python `websockets`, `tokio-tungstenite`) can join a Yoton network.
//!
//! ```
//! use std::time::Duration;
//! use yoton_core::Context;
//! use yoton_ws::WsTransport;
//!
//! let a = Context::builder().transport(WsTransport::new()).build().unwrap();
//! let b = Context::builder().transport(WsTransport::new()).build().unwrap();
//! let host = a.bind("ws://localhost:0").unwrap();
//! let port = host.local().port;
//! b.connect(&format!("ws://localhost:{port}"), Duration::from_secs(2)).unwrap();
//! host.wait_connected(Duration::from_secs(2)).unwrap();
//! assert_eq!(host.peer_id(), b.id());
//! ```
//!
//! ## Path
//! The upgrade request must ask for the path of the address (`ws://host:port/bus`
//! serves and asks for `/bus`), or, when the address has none, the transport's path:
//! `/yoton` unless set with [`WsTransportBuilder::path`]. A query string is ignored.
//! Any other path is answered `404 Not Found`; a request that is not a WebSocket
//! upgrade gets `426 Upgrade Required` with a short explanation; neither disturbs a
//! bound context, which keeps waiting for a real peer. If the client offers the
//! subprotocol `yoton` (`Sec-WebSocket-Protocol`), the server selects it; no
//! subprotocol is required.
//!
//! ## Framing
//! Every WebSocket message is **binary** (a text message closes the connection with a
//! protocol error). After the upgrade:
//!
//! 1. The client sends one message: the handshake line `YOTON!<id>.<pid>\r\n` in ASCII,
//!    where `<id>` is its context id as 16 lower-case hex digits and `<pid>` its process
//!    id in decimal. The server answers with its own line the same way (or with
//!    `ERROR: this is Yoton.\r\n` if the line was not Yoton's, and closes).
//! 2. Then each message, in either direction, is exactly one package: a 56-byte header
//!    of seven little-endian `u64`s followed by the payload (PROTOCOL.md section 2):
//!
//!    | offset | field |
//!    | --- | --- |
//!    | 0 | control word, the bytes `YOTON   ` (`YOTON` and three spaces) |
//!    | 8 | slot (the channel's hash) |
//!    | 16 | source id (the sending context's id) |
//!    | 24 | source sequence number |
//!    | 32 | destination id (0: everybody) |
//!    | 40 | destination sequence number |
//!    | 48 | payload length (must equal the message length minus 56) |
//!
//! 3. A package with an empty payload is a signal: slot 1 with source sequence 0 is a
//!    heartbeat (sent after 250 ms without traffic; a peer that sends nothing for the
//!    receive time-out, 0.5 s by default, is marked timed out), slot 1 with source
//!    sequence 1 is the goodbye of a clean close. A Yoton end then also sends a
//!    WebSocket close frame (code 1000).
//!
//! Each package goes as one unfragmented binary frame (a peer that limits frame sizes,
//! as tungstenite does by default, must allow frames as large as its messages);
//! fragmented messages are accepted. Framing is this crate's own (RFC 6455, read many
//! frames per system call and written many per system call); the opening handshake
//! uses tungstenite's key functions. WebSocket pings are answered with pongs (with
//! the next write, at the latest with the next heartbeat); pongs are ignored. Messages larger than
//! [`WsTransportBuilder::max_message_size`] (default 1 GiB + 56) are refused as soon
//! as their frame header arrives, and packages above the context's maximum message
//! size close the connection. Before the Yoton handshake is complete a peer may send
//! at most [`PRE_HANDSHAKE_BUDGET`] bytes (1 MiB, the HTTP upgrade included): a
//! connection that has not said who it is cannot make this end buffer a large message.
//!
//! ## TLS
//! [`WsTransport::new`] serves `ws://` only. For `wss://` build the transport with
//! [`WsTransport::builder`] (a certificate to listen, trust roots to connect: the
//! Mozilla roots by default, plus your own CA certificates) or hand rustls
//! configurations to [`WsTransport::with_tls`]. Certificates are always verified,
//! unless [`WsTransportBuilder::dangerous_accept_any_certificate`] says otherwise.
//!
//! ```
//! use std::time::Duration;
//! use yoton_core::Context;
//! use yoton_ws::WsTransport;
//!
//! // A self-signed certificate for 127.0.0.1 (a real one comes from a CA).
//! let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
//! let t = WsTransport::builder()
//!     .server_cert_pem(cert.cert.pem(), cert.signing_key.serialize_pem())
//!     .trust_ca_pem(cert.cert.pem())
//!     .build()
//!     .unwrap();
//! let a = Context::builder().transport(t.clone()).build().unwrap();
//! let b = Context::builder().transport(t).build().unwrap();
//! let host = a.bind("wss://127.0.0.1:0").unwrap();
//! b.connect(&host.name(), Duration::from_secs(5)).unwrap();
//! host.wait_connected(Duration::from_secs(5)).unwrap();
//! ```
#![deny(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod client;
mod frame;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod io;
mod link;
mod server;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use yoton_core::listen::{bind_tcp, tcp_ends, HandshakingListener};
use yoton_core::transport::{Incoming, Transport, TransportError, TransportListener};
use yoton_core::Address;

use frame::Side;

pub use io::PRE_HANDSHAKE_BUDGET;
pub use tls::WsTransportBuilder;
/// The crypto provider used for configurations built here (ring), chosen explicitly so
/// that the process-wide default (or its absence) does not matter.
pub use yoton_tls::provider;
pub use yoton_tls::Fingerprint;

/// Re-exported rustls, for building your own configurations.
pub use rustls;

/// The upgrade path used when an address has none.
pub const DEFAULT_PATH: &str = "/yoton";

/// Default largest WebSocket message: the context's default maximum payload (1 GiB)
/// plus the 56-byte header.
pub const DEFAULT_MAX_WS_MESSAGE: usize =
    yoton_core::DEFAULT_MAX_MESSAGE_SIZE as usize + yoton_core::package::HEADER_SIZE;

/// Default time an accepted client has for TLS and the HTTP upgrade.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of building a [`WsTransport`] (loading certificates and keys).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A certificate or key could not be read or parsed.
    #[error("cannot load the {what} from {origin}: {reason}")]
    Pem {
        /// What was being loaded.
        what: &'static str,
        /// The file (or a description of the in-memory data).
        origin: String,
        /// Why it failed.
        reason: String,
    },
    /// rustls refused the configuration (e.g. a key that does not match the
    /// certificate).
    #[error("TLS configuration refused: {0}")]
    Tls(#[from] rustls::Error),
    /// A setting is invalid.
    #[error("invalid setting: {0}")]
    Setting(String),
}

pub(crate) struct Settings {
    server: Option<Arc<ServerConfig>>,
    /// The server certificate (DER, the first of the chain), unless the server
    /// configuration was given as a rustls configuration.
    certificate: Option<Vec<u8>>,
    client: Option<Arc<ClientConfig>>,
    path: String,
    max_message_size: usize,
    handshake_timeout: Duration,
}

/// The WebSocket transport (schemes `ws` and `wss`). Cheap to clone.
#[derive(Clone)]
pub struct WsTransport {
    inner: Arc<Settings>,
}

impl std::fmt::Debug for WsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsTransport")
            .field("listen_tls", &self.can_listen_tls())
            .field("connect_tls", &self.can_connect_tls())
            .field("path", &self.inner.path)
            .field("max_message_size", &self.inner.max_message_size)
            .finish()
    }
}

impl Default for WsTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl WsTransport {
    /// Plain `ws://` only (listening and connecting); `wss://` addresses fail with
    /// advice on how to configure TLS.
    pub fn new() -> Self {
        Self::with_tls(None, None)
    }

    /// With rustls configurations of your own: `server` to listen on `wss://`,
    /// `client` to connect to `wss://` (None: that side is plain `ws://` only).
    pub fn with_tls(server: Option<Arc<ServerConfig>>, client: Option<Arc<ClientConfig>>) -> Self {
        WsTransport {
            inner: Arc::new(Settings {
                server,
                certificate: None,
                client,
                path: DEFAULT_PATH.to_owned(),
                max_message_size: DEFAULT_MAX_WS_MESSAGE,
                handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            }),
        }
    }

    /// A builder for certificates, trust roots, the path and limits.
    pub fn builder() -> WsTransportBuilder {
        WsTransportBuilder::default()
    }

    /// Whether `wss://` addresses can be listened on (a certificate is configured).
    pub fn can_listen_tls(&self) -> bool {
        self.inner.server.is_some()
    }

    /// The server certificate (DER, the first of the chain), when this transport can
    /// listen on `wss://` with a certificate given to the builder (not with a rustls
    /// configuration of its own).
    pub fn certificate_der(&self) -> Option<&[u8]> {
        self.inner.certificate.as_deref()
    }

    /// The SHA-256 fingerprint of the server certificate, for clients to pin
    /// ([`WsTransportBuilder::pin_certificate`]).
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.certificate_der().map(Fingerprint::of)
    }

    /// Whether `wss://` addresses can be connected to.
    pub fn can_connect_tls(&self) -> bool {
        self.inner.client.is_some()
    }

    /// The upgrade path used when an address has none.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// Largest WebSocket message accepted (header plus payload).
    pub fn max_message_size(&self) -> usize {
        self.inner.max_message_size
    }

    fn path_for<'a>(&'a self, addr: &'a Address) -> &'a str {
        if addr.path.is_empty() {
            &self.inner.path
        } else {
            &addr.path
        }
    }
}

/// Make `ws://` (plain only) available to every context created afterwards with
/// `Context::new()`. For `wss://`, use [`install_with`].
///
/// ```
/// yoton_ws::install();
/// let ctx = yoton_core::Context::new().unwrap();
/// assert!(ctx.registry().get("ws").is_some());
/// assert!(ctx.registry().get("wss").is_some());
/// ```
pub fn install() {
    install_with(WsTransport::new());
}

/// Make this WebSocket transport available to every context created afterwards with
/// `Context::new()`.
pub fn install_with(transport: WsTransport) {
    yoton_core::context::register_default_transport(Arc::new(transport));
}

fn no_server_tls(addr: &Address) -> TransportError {
    TransportError::permanent(format!(
        "cannot listen at {addr}: wss:// needs a certificate. Build the transport with \
         WsTransport::builder().server_cert_pem_files(\"cert.pem\", \"key.pem\").build() \
         (or WsTransport::with_tls(Some(server_config), ..)); plain ws:// needs none"
    ))
}

fn no_client_tls(addr: &Address) -> TransportError {
    TransportError::permanent(format!(
        "cannot connect to {addr}: this WebSocket transport has no TLS client settings. \
         Build it with WsTransport::builder().build() (trusts the webpki roots; add your CA \
         with trust_ca_pem_file, or pin it with pin_certificate) or WsTransport::with_tls(.., Some(client_config))"
    ))
}

async fn server_side(
    stream: TcpStream,
    transport: &WsTransport,
    path: &str,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<yoton_core::messages::RawMessages, String> {
    let (local, peer) = tcp_ends(&stream).map_err(|e| e.to_string())?;
    let io = match tls {
        None => io::Io::plain(stream),
        Some(acceptor) => {
            let s = acceptor
                .accept(stream)
                .await
                .map_err(|e| format!("TLS handshake with {peer} failed: {e}"))?;
            io::Io::tls(s.into())
        }
    };
    let up = server::upgrade(io, path)
        .await
        .map_err(|e| format!("{peer}: {e}"))?;
    let max = transport.inner.max_message_size;
    Ok(link::raw_messages(up, Side::Server, max, local, peer))
}

#[async_trait]
impl Transport for WsTransport {
    fn schemes(&self) -> &'static [&'static str] {
        &["ws", "wss"]
    }

    async fn listen(&self, addr: &Address) -> Result<Box<dyn TransportListener>, TransportError> {
        let tls = match (addr.scheme.as_str(), &self.inner.server) {
            ("wss", None) => return Err(no_server_tls(addr)),
            ("wss", Some(c)) => Some(tokio_rustls::TlsAcceptor::from(c.clone())),
            _ => None,
        };
        let listener = bind_tcp(addr.resolve().await?)?;
        let (transport, path) = (self.clone(), self.path_for(addr).to_owned());
        Ok(Box::new(HandshakingListener::spawn(
            listener,
            "WebSocket",
            self.inner.handshake_timeout,
            move |stream| {
                let (transport, path, tls) = (transport.clone(), path.clone(), tls.clone());
                async move {
                    server_side(stream, &transport, &path, tls)
                        .await
                        .map(Incoming::from)
                }
            },
        )?))
    }

    async fn connect(&self, addr: &Address) -> Result<Incoming, TransportError> {
        let connector = match (addr.scheme.as_str(), &self.inner.client) {
            ("wss", None) => return Err(no_client_tls(addr)),
            ("wss", Some(c)) => Some(tokio_rustls::TlsConnector::from(c.clone())),
            _ => None,
        };
        let sa = addr.resolve().await?;
        let stream = TcpStream::connect(sa).await?;
        let (local, peer) = tcp_ends(&stream)?;
        let target = addr.host_port();
        let io = match connector {
            None => io::Io::plain(stream),
            Some(c) => {
                let name = ServerName::try_from(addr.host.clone()).map_err(|e| {
                    TransportError::permanent(format!(
                        "`{}` is not a valid TLS server name: {e}",
                        addr.host
                    ))
                })?;
                let s = c.connect(name, stream).await.map_err(|e| TransportError {
                    reason: tls::describe_client_error(&target, &e),
                    permanent: yoton_tls::handshake_error_is_final(&e),
                })?;
                io::Io::tls(s.into())
            }
        };
        let uri = format!("{}://{}{}", addr.scheme, target, self.path_for(addr));
        let up = client::upgrade(io, &uri, &target, self.path_for(addr)).await?;
        let max = self.inner.max_message_size;
        Ok(link::raw_messages(up, Side::Client, max, local, peer).into())
    }
}
