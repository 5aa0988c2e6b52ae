//! # yoton-quic
//!
//! The QUIC transport of yoton-rs (`quic://host:port`), built on [quinn] with
//! [rustls] (ring crypto). QUIC always encrypts: every connection is TLS 1.3.
//!
//! ## Certificates
//! - **Clients verify the server by default**: the certificate must chain up to a
//!   trusted root (the Mozilla roots of `webpki-roots`, optionally the platform's
//!   with [`QuicTransportBuilder::native_roots`], plus any CA you add with
//!   [`QuicTransportBuilder::trust_ca_pem_file`] and friends), be valid for the name
//!   connected to, and not be expired. The name is the host of the address (note that
//!   yoton resolves `localhost` to `127.0.0.1`); [`QuicTransportBuilder::server_name`]
//!   overrides it.
//! - **Pinning**: [`QuicTransportBuilder::pin_certificate`] accepts exactly the server
//!   certificates with these SHA-256 fingerprints (and no other, whatever their CA);
//!   the natural choice for a self-signed server.
//! - **Development**: [`QuicTransportBuilder::dangerous_accept_any_certificate`]
//!   accepts any certificate; it logs a warning at every connection.
//! - **Servers** need a certificate and key: PEM files, PEM text or DER
//!   ([`QuicTransportBuilder::certificate_pem_files`], ...). A self-signed one is
//!   generated only when asked ([`QuicTransportBuilder::self_signed_for`]); its
//!   DER and fingerprint are available for clients to pin ([`QuicTransport::fingerprint`]).
//!
//! Both ends announce the ALPN protocol `yoton` ([`ALPN`]).
//!
//! ## Streams and head-of-line blocking
//! The handshake and small packages share one bidirectional control stream (framed as
//! over TCP); each package above 64 KiB ([`QuicTransportBuilder::large_message_threshold`])
//! goes on a unidirectional stream of its own, so a large transfer does not stall the
//! small packages behind it. Ordering: packages of the same slot (channel) always
//! arrive in the order sent; packages of different channels may overtake a large
//! package still in flight; a large package never overtakes anything sent before it.
//! Details and bounds in [`wire`].
//!
//! ## Throughput and the allocator
//! quinn copies every datagram it receives into an allocation of its own, freed once
//! the packages in it are read. With glibc's default trim threshold (128 KiB) the top
//! of the heap then goes back to the system and comes back, zeroed, page by page: a
//! receiver of 1 MiB messages on loopback spent about a quarter of its time in page
//! faults. Where QUIC throughput matters, start the process with
//! `MALLOC_TRIM_THRESHOLD_=268435456` in its environment (or use another global
//! allocator): that receiver then needed about a fifth less CPU and took a fifth
//! more messages per second (the README's benchmark section has the figures).
//!
//! ## Example
//! A server with a generated certificate, and a client that pins it:
//!
//! ```
//! use std::time::Duration;
//! use yoton_core::{Context, Package, slot_hash};
//! use yoton_quic::QuicTransport;
//!
//! let server = QuicTransport::builder()
//!     .self_signed_for(["localhost", "127.0.0.1"])
//!     .build()
//!     .unwrap();
//! let pin = server.fingerprint().unwrap();
//! let client = QuicTransport::builder().pin_certificate(pin).build().unwrap();
//!
//! let a = Context::builder().transport(server).build().unwrap();
//! let b = Context::builder().transport(client).build().unwrap();
//! let host = a.bind("quic://127.0.0.1:0").unwrap();
//! let port = host.local().port;
//! b.connect(&format!("quic://127.0.0.1:{port}"), Duration::from_secs(5)).unwrap();
//! host.wait_connected(Duration::from_secs(5)).unwrap();
//! assert_eq!(host.peer_id(), b.id());
//! b.close();
//! a.close();
//! ```
#![deny(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod udp;
pub mod wire;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use tokio::sync::mpsc;
use yoton_core::messages::RawMessages;
use yoton_core::transport::{
    Handshakes, Incoming, Transport, TransportError, TransportListener, MAX_TRANSPORT_HANDSHAKES,
};
use yoton_core::{Address, Endpoint};

use udp::PerPath;
pub use udp::{LOOPBACK_UDP_PAYLOAD, UDP_BUFFER};
use wire::{AbortOnDrop, WireOptions};
use yoton_tls::{config, CaSource, IdentitySource, PinReport, Trust};

/// Why a [`QuicTransport`] could not be built (certificates, keys, trust). Errors
/// while connecting or listening are reported by the context, with the same texts, as
/// the reason of the failed `connect` or `bind`.
///
/// ```
/// use yoton_quic::{QuicError, QuicTransport};
/// let err = QuicTransport::builder().webpki_roots(false).build().unwrap_err();
/// assert!(matches!(err, QuicError::NoTrustAnchors), "{err}");
/// ```
pub use yoton_tls::TlsError as QuicError;

/// The SHA-256 fingerprint of a DER-encoded certificate, as used for pinning.
///
/// ```
/// use yoton_quic::Fingerprint;
/// let fp = Fingerprint::of(b"not really a certificate");
/// let text = fp.to_string();
/// assert_eq!(text.len(), 95);
/// assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
/// assert_eq!(text.replace(':', "").to_lowercase().parse::<Fingerprint>().unwrap(), fp);
/// assert!("12:34".parse::<Fingerprint>().is_err());
/// ```
pub use yoton_tls::Fingerprint;

/// The ALPN protocol name both ends announce.
pub const ALPN: &[u8] = b"yoton";

/// QUIC always runs TLS 1.3.
const TLS_VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// Default size above which a package goes on a stream of its own.
pub const DEFAULT_LARGE_MESSAGE_THRESHOLD: usize = 64 * 1024;
/// Default number of large packages a peer may send at the same time.
pub const DEFAULT_MAX_CONCURRENT_LARGE: u32 = 8;
/// Default QUIC idle time-out.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a QUIC (TLS) handshake may take at a listener.
const QUIC_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-stream receive window.
const STREAM_WINDOW: u32 = 4 << 20;

/// The QUIC transport. Cheap to clone. Build one with [`QuicTransport::builder`];
/// [`QuicTransport::default`] is a client that verifies servers against the
/// `webpki-roots` CAs and cannot listen.
///
/// ```
/// use yoton_core::transport::Transport;
/// let t = yoton_quic::QuicTransport::default();
/// assert_eq!(t.schemes(), &["quic"]);
/// assert!(t.certificate_der().is_none());
/// ```
#[derive(Clone)]
pub struct QuicTransport {
    inner: Arc<Inner>,
}

struct Inner {
    client: Result<PerPath<quinn::ClientConfig>, String>,
    server: Option<PerPath<quinn::ServerConfig>>,
    certificate: Option<Vec<u8>>,
    server_name: Option<String>,
    accept_any: bool,
    wire: WireOptions,
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTransport")
            .field("can_listen", &self.inner.server.is_some())
            .field("fingerprint", &self.fingerprint())
            .field("server_name", &self.inner.server_name)
            .field("accept_any_certificate", &self.inner.accept_any)
            .field("wire", &self.inner.wire)
            .finish()
    }
}

impl Default for QuicTransport {
    fn default() -> Self {
        match QuicTransport::builder().build() {
            Ok(t) => t,
            Err(e) => QuicTransport {
                inner: Arc::new(Inner {
                    client: Err(e.to_string()),
                    server: None,
                    certificate: None,
                    server_name: None,
                    accept_any: false,
                    wire: QuicTransportBuilder::default().wire(),
                }),
            },
        }
    }
}

/// The default QUIC transport, for registries (see [`QuicTransport::default`]).
pub fn transport() -> Arc<dyn Transport> {
    Arc::new(QuicTransport::default())
}

/// Make QUIC (with default settings: verified clients, no listening) available to
/// every context created afterwards with `Context::new()`. Use [`install_with`] to
/// register a transport with certificates.
///
/// ```
/// yoton_quic::install();
/// let ctx = yoton_core::Context::new().unwrap();
/// assert!(ctx.registry().get("quic").is_some());
/// ```
pub fn install() {
    install_with(QuicTransport::default());
}

/// Make this QUIC transport available to every context created afterwards with
/// `Context::new()`.
pub fn install_with(transport: QuicTransport) {
    yoton_core::context::register_default_transport(Arc::new(transport));
}

impl QuicTransport {
    /// Start configuring a transport.
    pub fn builder() -> QuicTransportBuilder {
        QuicTransportBuilder::default()
    }

    /// The server certificate (DER, the first of the chain), when this transport can
    /// listen.
    pub fn certificate_der(&self) -> Option<&[u8]> {
        self.inner.certificate.as_deref()
    }

    /// The server certificate as PEM text (to hand to clients as a trusted CA file for
    /// a CA-signed chain, or just to look at).
    pub fn certificate_pem(&self) -> Option<String> {
        self.certificate_der().map(yoton_tls::pem::certificate_pem)
    }

    /// The SHA-256 fingerprint of the server certificate, for clients to pin.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.certificate_der().map(Fingerprint::of)
    }
}

/// Settings of a [`QuicTransport`].
///
/// ```
/// use std::time::Duration;
/// let t = yoton_quic::QuicTransport::builder()
///     .self_signed_for(["localhost", "127.0.0.1"])
///     .large_message_threshold(256 * 1024)
///     .max_concurrent_large_messages(4)
///     .idle_timeout(Duration::from_secs(30))
///     .build()
///     .unwrap();
/// assert!(t.fingerprint().is_some());
/// ```
#[derive(Clone, Debug)]
pub struct QuicTransportBuilder {
    trust: Trust,
    server_name: Option<String>,
    identity: Option<IdentitySource>,
    threshold: usize,
    max_message_size: u64,
    max_large: u32,
    idle_timeout: Duration,
}

impl Default for QuicTransportBuilder {
    fn default() -> Self {
        QuicTransportBuilder {
            trust: Trust::default(),
            server_name: None,
            identity: None,
            threshold: DEFAULT_LARGE_MESSAGE_THRESHOLD,
            max_message_size: yoton_core::DEFAULT_MAX_MESSAGE_SIZE,
            max_large: DEFAULT_MAX_CONCURRENT_LARGE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

impl QuicTransportBuilder {
    // ----- what the client trusts -----

    /// Trust the Mozilla root CAs of `webpki-roots` (default: on).
    pub fn webpki_roots(mut self, on: bool) -> Self {
        self.trust.webpki_roots = on;
        self
    }

    /// Also trust the platform's root CAs (default: off).
    pub fn native_roots(mut self, on: bool) -> Self {
        self.trust.native_roots = on;
        self
    }

    /// Also trust the CA certificates in this PEM file.
    pub fn trust_ca_pem_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.trust.extra_cas.push(CaSource::PemFile(path.into()));
        self
    }

    /// Also trust the CA certificates in this PEM text.
    pub fn trust_ca_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.trust
            .extra_cas
            .push(CaSource::Pem(pem.as_ref().to_vec()));
        self
    }

    /// Also trust this CA certificate (DER).
    pub fn trust_ca_der(mut self, der: impl AsRef<[u8]>) -> Self {
        self.trust
            .extra_cas
            .push(CaSource::Der(der.as_ref().to_vec()));
        self
    }

    /// Accept exactly the server certificate with this SHA-256 fingerprint (may be
    /// given several times). With pins, no CA, name or date check is made: the pin
    /// alone decides, and the server must still prove it holds the certificate's key.
    pub fn pin_certificate(mut self, fingerprint: Fingerprint) -> Self {
        self.trust.pins.push(fingerprint);
        self
    }

    /// **Development only**: accept any server certificate, so any server (including
    /// an attacker in the middle) is accepted. Logs a warning at every connection.
    pub fn dangerous_accept_any_certificate(mut self) -> Self {
        self.trust.accept_any = true;
        self
    }

    /// The name to verify the server certificate against (and to send as SNI)
    /// instead of the host of the address.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    // ----- the server's certificate -----

    /// Serve this certificate chain and key, both PEM files.
    pub fn certificate_pem_files(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.identity = Some(IdentitySource::PemFiles {
            cert: cert.into(),
            key: key.into(),
        });
        self
    }

    /// Serve this certificate chain and key, both PEM text.
    pub fn certificate_pem(mut self, cert: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Self {
        self.identity = Some(IdentitySource::Pem {
            cert: cert.as_ref().to_vec(),
            key: key.as_ref().to_vec(),
        });
        self
    }

    /// Serve this certificate chain (DER, leaf first) and key (DER: PKCS#8, PKCS#1 or
    /// SEC1).
    pub fn certificate_der(mut self, chain: Vec<Vec<u8>>, key: Vec<u8>) -> Self {
        self.identity = Some(IdentitySource::Der { chain, key });
        self
    }

    /// Generate a self-signed certificate for these names (DNS names or IP
    /// addresses) when building. Clients must pin it ([`QuicTransport::fingerprint`])
    /// or, for development, accept any certificate.
    pub fn self_signed_for<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.identity = Some(IdentitySource::SelfSigned(
            names.into_iter().map(Into::into).collect(),
        ));
        self
    }

    // ----- streams and limits -----

    /// Packages with a payload above this many bytes go on a stream of their own
    /// (default 64 KiB).
    pub fn large_message_threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Largest payload accepted from a peer (default 1 GiB, like the context's
    /// default; the smaller of this and the context's limit applies).
    pub fn max_message_size(mut self, bytes: u64) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How many large packages a peer may send at the same time (default 8): the
    /// QUIC stream limit, and the most large packages held in memory per connection.
    pub fn max_concurrent_large_messages(mut self, n: u32) -> Self {
        self.max_large = n.max(1);
        self
    }

    /// Close a connection that has heard nothing for this long (default 10 s;
    /// keep-alives are sent at a third of it).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    fn wire(&self) -> WireOptions {
        WireOptions {
            threshold: self.threshold,
            max_message_size: self.max_message_size,
            max_large: usize::try_from(self.max_large).unwrap_or(usize::MAX),
        }
    }

    fn transport_config(&self, peer_bidi: u32) -> Result<TransportConfig, QuicError> {
        let mut t = TransportConfig::default();
        let idle = IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| QuicError::Config("idle_timeout is too long".into()))?;
        t.max_idle_timeout(Some(idle));
        t.keep_alive_interval(Some(self.idle_timeout / 3));
        t.max_concurrent_uni_streams(VarInt::from_u32(self.max_large));
        t.max_concurrent_bidi_streams(VarInt::from_u32(peer_bidi));
        t.stream_receive_window(VarInt::from_u32(STREAM_WINDOW));
        t.receive_window(
            VarInt::from_u64(u64::from(STREAM_WINDOW) * (u64::from(self.max_large) + 1))
                .unwrap_or(VarInt::MAX),
        );
        t.send_window(u64::from(STREAM_WINDOW) * 4);
        Ok(t)
    }

    /// Load the certificates and build the transport.
    pub fn build(self) -> Result<QuicTransport, QuicError> {
        let provider = config::provider();
        // quinn passes on only the text of a refused certificate.
        let verifier = self.trust.verifier(&provider, PinReport::Text)?;
        let mut client_tls = config::client_config(&provider, TLS_VERSIONS, verifier)?;
        client_tls.alpn_protocols = vec![ALPN.to_vec()];
        let client_quic = QuicClientConfig::try_from(client_tls)
            .map_err(|e| QuicError::Config(format!("QUIC client configuration: {e}")))?;
        let client = quinn::ClientConfig::new(Arc::new(client_quic));
        let client = udp::per_path(|| self.transport_config(0))?.map(|t| {
            let mut c = client.clone();
            c.transport_config(t.clone());
            c
        });
        if self.trust.accept_any {
            tracing::warn!(
                "yoton-quic: dangerous_accept_any_certificate is set: servers are NOT verified"
            );
        }

        let (server, certificate) = match &self.identity {
            None => (None, None),
            Some(source) => {
                let identity = source.load()?;
                let leaf = identity.leaf_der();
                let mut server_tls = config::server_config(&provider, TLS_VERSIONS, identity)?;
                server_tls.alpn_protocols = vec![ALPN.to_vec()];
                let server_quic = QuicServerConfig::try_from(server_tls)
                    .map_err(|e| QuicError::Config(format!("QUIC server configuration: {e}")))?;
                let server = quinn::ServerConfig::with_crypto(Arc::new(server_quic));
                let server = udp::per_path(|| self.transport_config(1))?.map(|t| {
                    let mut s = server.clone();
                    s.transport_config(t.clone());
                    s
                });
                (Some(server), leaf)
            }
        };
        Ok(QuicTransport {
            inner: Arc::new(Inner {
                client: Ok(client),
                server,
                certificate,
                server_name: self.server_name.clone(),
                accept_any: self.trust.accept_any,
                wire: self.wire(),
            }),
        })
    }
}

/// The local address the system would use to reach `target` (no packet is sent).
fn local_ip_for(target: SocketAddr) -> IpAddr {
    let unspecified: IpAddr = if target.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    std::net::UdpSocket::bind((unspecified, 0))
        .and_then(|s| {
            s.connect(target)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(unspecified)
}

/// A failed QUIC connection attempt, explained.
fn explain(e: &quinn::ConnectionError, target: SocketAddr, name: &str) -> TransportError {
    let text = e.to_string();
    let hint = if text.contains("pinned") {
        " (the server's certificate is not the pinned one)"
    } else if text.contains("Expired") || text.contains("certificate expired") {
        " (the server's certificate has expired)"
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        " (the server's certificate is not valid for this name; set server_name if the certificate names the server differently)"
    } else if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
        " (the server's certificate is not trusted: add its CA with trust_ca_pem_file / trust_ca_der, pin it with pin_certificate, or, for development only, use dangerous_accept_any_certificate)"
    } else if text.contains("no application protocol") {
        " (the server does not speak yoton over QUIC: ALPN mismatch)"
    } else {
        ""
    };
    TransportError {
        reason: format!("QUIC connection to {target} (server name {name}) failed: {text}{hint}"),
        permanent: is_final(e),
    }
}

/// Whether a failed QUIC connection would fail again however often it is retried:
/// the TLS handshake failed (either side sent a TLS alert: a refused certificate, no
/// common application protocol), or the server speaks another QUIC version. A time-out
/// (nobody answers yet) or a refusal (the server at its limit) may pass.
fn is_final(e: &quinn::ConnectionError) -> bool {
    let tls_alert = |code: quinn::TransportErrorCode| (0x100..0x200).contains(&u64::from(code));
    match e {
        quinn::ConnectionError::VersionMismatch => true,
        quinn::ConnectionError::TransportError(t) => tls_alert(t.code),
        quinn::ConnectionError::ConnectionClosed(c) => tls_alert(c.error_code),
        _ => false,
    }
}

struct Listening {
    endpoint: quinn::Endpoint,
    local: Endpoint,
    rx: mpsc::Receiver<RawMessages>,
    _task: AbortOnDrop,
}

impl Drop for Listening {
    fn drop(&mut self) {
        // Refuse new connections; established ones keep the endpoint running.
        self.endpoint.set_server_config(None);
    }
}

#[async_trait]
impl TransportListener for Listening {
    fn local(&self) -> Endpoint {
        self.local.clone()
    }

    async fn accept(&mut self) -> Result<Incoming, TransportError> {
        match self.rx.recv().await {
            Some(raw) => Ok(raw.into()),
            None => Err(TransportError::new("the QUIC endpoint stopped")),
        }
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    configs: PerPath<Arc<quinn::ServerConfig>>,
    wire: WireOptions,
    tx: mpsc::Sender<RawMessages>,
) {
    let mut handshakes = Handshakes::new(MAX_TRANSPORT_HANDSHAKES);
    while let Some(incoming) = endpoint.accept().await {
        let started = handshakes.try_spawn(incoming, |incoming| {
            // Only a handshake that starts needs its own handles.
            let (endpoint, configs, tx) = (endpoint.clone(), configs.clone(), tx.clone());
            async move {
                let remote = incoming.remote_address();
                let established = async {
                    let conn = udp::accept_for_path(incoming, &configs)?.await?;
                    let (send, recv) = conn.accept_bi().await?;
                    Ok::<_, quinn::ConnectionError>((conn, send, recv))
                };
                match tokio::time::timeout(QUIC_HANDSHAKE_TIMEOUT, established).await {
                    Ok(Ok((conn, send, recv))) => {
                        let port = endpoint.local_addr().map(|a| a.port()).unwrap_or(0);
                        let local = match conn.local_ip() {
                            Some(ip) => Endpoint::from(SocketAddr::new(ip, port)),
                            None => endpoint
                                .local_addr()
                                .map(Endpoint::from)
                                .unwrap_or_default(),
                        };
                        let peer = Endpoint::from(conn.remote_address());
                        let raw =
                            wire::raw_messages(&endpoint, conn, send, recv, wire, local, peer);
                        let _ = tx.send(raw).await;
                    }
                    Ok(Err(e)) => {
                        tracing::info!(peer = %remote, error = %e, "QUIC handshake failed");
                    }
                    Err(_) => tracing::info!(peer = %remote, "QUIC handshake timed out"),
                }
            }
        });
        if let Err(incoming) = started {
            incoming.refuse();
        }
    }
}

#[async_trait]
impl Transport for QuicTransport {
    fn schemes(&self) -> &'static [&'static str] {
        &["quic"]
    }

    async fn listen(&self, addr: &Address) -> Result<Box<dyn TransportListener>, TransportError> {
        let Some(config) = self.inner.server.clone() else {
            return Err(TransportError::permanent(
                "quic:// needs a server certificate to listen: build the transport with \
                 QuicTransport::builder().certificate_pem_files(cert, key) (or certificate_pem / \
                 certificate_der), or for development .self_signed_for([\"localhost\", \"127.0.0.1\"])",
            ));
        };
        let sa = addr.resolve().await?;
        let endpoint = udp::endpoint(sa, Some(config.for_ip(sa.ip()).clone()))
            .map_err(|e| TransportError::new(format!("cannot bind {sa}: {e}")))?;
        let local = Endpoint::from(endpoint.local_addr()?);
        let (tx, rx) = mpsc::channel(16);
        let configs = config.map(|c| Arc::new(c.clone()));
        let task = tokio::spawn(accept_loop(endpoint.clone(), configs, self.inner.wire, tx));
        Ok(Box::new(Listening {
            endpoint,
            local,
            rx,
            _task: AbortOnDrop(task),
        }))
    }

    async fn connect(&self, addr: &Address) -> Result<Incoming, TransportError> {
        let configs = self
            .inner
            .client
            .as_ref()
            .map_err(|e| TransportError::permanent(e.clone()))?;
        let sa = addr.resolve().await?;
        let config = configs.for_ip(sa.ip()).clone();
        let name = self
            .inner
            .server_name
            .clone()
            .unwrap_or_else(|| addr.host.clone());
        if self.inner.accept_any {
            tracing::warn!(
                server = %sa,
                "yoton-quic: connecting WITHOUT verifying the server certificate \
                 (dangerous_accept_any_certificate); use only for development"
            );
        }
        let endpoint = udp::endpoint(SocketAddr::new(local_ip_for(sa), 0), None)?;
        let connecting = endpoint
            .connect_with(config, sa, &name)
            .map_err(|e| TransportError {
                reason: format!("QUIC connection to {sa} ({name}): {e}"),
                // An invalid name or address, a missing setting: not the endpoint
                // made for this attempt stopping.
                permanent: !matches!(
                    e,
                    quinn::ConnectError::EndpointStopping | quinn::ConnectError::CidsExhausted
                ),
            })?;
        let conn = connecting.await.map_err(|e| explain(&e, sa, &name))?;
        let (send, recv) = conn.open_bi().await.map_err(|e| explain(&e, sa, &name))?;
        let local = Endpoint::from(endpoint.local_addr()?);
        let peer = Endpoint::from(conn.remote_address());
        Ok(wire::raw_messages(&endpoint, conn, send, recv, self.inner.wire, local, peer).into())
    }
}
