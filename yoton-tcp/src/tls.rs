//! TLS over TCP: `tls://host:port` (also spelled `tcps://host:port`), with rustls (ring
//! crypto, TLS 1.2 and 1.3).
//!
//! The bytes inside TLS are exactly those of `tcp://`: the Python-compatible handshake
//! line, then 56-byte headers and payloads. [`TlsTransport`] is a transport of its own,
//! so [`crate::TcpTransport`] stays plain TCP.
//!
//! ## Certificates
//! - **Clients verify the server by default**: its certificate must chain up to a
//!   trusted root (the Mozilla roots of `webpki-roots`, plus any CA added with
//!   [`TlsTransportBuilder::trust_ca_pem_file`] and friends), be valid for the name
//!   connected to, and not be expired. The name is the host of the address; note that
//!   yoton resolves `localhost` to `127.0.0.1`, so a certificate for a local server
//!   should list the IP address `127.0.0.1`, or set [`TlsTransportBuilder::server_name`].
//! - **Pinning**: [`TlsTransportBuilder::pin_certificate`] accepts exactly the server
//!   certificates with these SHA-256 fingerprints (whatever their CA, name or dates).
//! - **Development**: [`TlsTransportBuilder::dangerous_accept_any_certificate`] accepts
//!   any certificate and logs a warning at every connection.
//! - **Servers** need a certificate and key: PEM files, PEM text or DER.
//!
//! A refused certificate fails the connect with a reason that says what to do (trust
//! the CA, renew the certificate, use the right name). A listener runs each TLS
//! handshake in a task of its own, bounded by [`TlsTransportBuilder::handshake_timeout`]
//! (10 s by default), so a slow client does not hold up others; a client that does not
//! speak TLS (a plain `tcp://` Yoton peer, a browser) is answered
//! `ERROR: this is Yoton over TLS; connect with tls://` and dropped, and a bound
//! context keeps waiting for a real peer.
//!
//! ```
//! use std::time::Duration;
//! use yoton_core::Context;
//! use yoton_tcp::TlsTransport;
//!
//! // A self-signed certificate for 127.0.0.1 (a real one comes from a CA).
//! let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
//! let t = TlsTransport::builder()
//!     .certificate_pem(cert.cert.pem(), cert.signing_key.serialize_pem())
//!     .trust_ca_pem(cert.cert.pem())
//!     .build()
//!     .unwrap();
//! let a = Context::builder().transport(t.clone()).build().unwrap();
//! let b = Context::builder().transport(t).build().unwrap();
//! let host = a.bind("tls://localhost:0").unwrap();
//! b.connect(&host.name(), Duration::from_secs(5)).unwrap();
//! host.wait_connected(Duration::from_secs(5)).unwrap();
//! assert_eq!(host.peer_id(), b.id());
//! ```

use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use rustls::pki_types::ServerName;
use rustls::{CertificateError, OtherError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use yoton_core::listen::{bind_tcp, tcp_ends, HandshakingListener};
use yoton_core::stream::{RawStream, StreamRead};
use yoton_core::transport::{Incoming, Transport, TransportError, TransportListener};
use yoton_core::{Address, Endpoint};
use yoton_tls::{config, rustls_error, CaSource, IdentitySource, NotPinned, PinReport, Trust};

/// Re-exported rustls (the version this crate uses).
///
/// ```
/// let _provider = yoton_tcp::tls::rustls::crypto::ring::default_provider();
/// ```
pub use rustls;

/// Default time a TLS handshake may take, at a listener and when connecting.
///
/// ```
/// assert_eq!(yoton_tcp::tls::DEFAULT_TLS_HANDSHAKE_TIMEOUT.as_secs(), 10);
/// ```
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a listener answers (in plain text) to a client that does not start with a TLS
/// handshake, before closing. It starts like the reference's refusal.
///
/// ```
/// assert!(yoton_tcp::tls::NOT_TLS_ANSWER.starts_with("ERROR: this is Yoton"));
/// ```
pub const NOT_TLS_ANSWER: &str = "ERROR: this is Yoton over TLS; connect with tls://\r\n";

/// The first byte of a TLS record that carries a handshake message (a ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Why a [`TlsTransport`] could not be built (certificates, keys, trust settings).
/// Errors while connecting or listening are reported by the context as the reason of
/// the failed `connect` or `bind`.
///
/// ```
/// use yoton_tcp::{TlsError, TlsTransport};
/// let err = TlsTransport::builder().trust_ca_pem("not PEM").build().unwrap_err();
/// assert!(matches!(err, TlsError::NoPem { .. }));
/// assert!(err.to_string().contains("no CERTIFICATE found"), "{err}");
/// ```
pub use yoton_tls::TlsError;

/// The SHA-256 fingerprint of a DER-encoded certificate, as used for pinning.
///
/// ```
/// use yoton_tcp::Fingerprint;
/// let fp = Fingerprint::of(b"not really a certificate");
/// let text = fp.to_string();
/// assert_eq!(text.len(), 95);
/// assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
/// assert_eq!(text.replace(':', "").to_lowercase().parse::<Fingerprint>().unwrap(), fp);
/// assert!("12:34".parse::<Fingerprint>().is_err());
/// // The SHA-256 of nothing.
/// assert!(Fingerprint::of(b"").to_string().starts_with("E3:B0:C4:42"));
/// assert_eq!(Fingerprint([7; 32]).as_bytes(), &[7; 32]);
/// ```
pub use yoton_tls::Fingerprint;

// ---------------------------------------------------------------------------------
// The transport and its builder
// ---------------------------------------------------------------------------------

/// TLS over TCP (schemes `tls` and `tcps`). Cheap to clone. Build one with
/// [`TlsTransport::builder`]; [`TlsTransport::default`] is a client that verifies
/// servers against the `webpki-roots` CAs and cannot listen.
///
/// ```
/// use yoton_core::transport::Transport;
/// let t = yoton_tcp::TlsTransport::default();
/// assert_eq!(t.schemes(), &["tls", "tcps"]);
/// assert!(!t.can_listen());
/// assert!(t.certificate_der().is_none());
/// ```
#[derive(Clone)]
pub struct TlsTransport {
    inner: Arc<Inner>,
}

struct Inner {
    client: Result<TlsConnector, String>,
    server: Option<TlsAcceptor>,
    certificate: Option<Vec<u8>>,
    server_name: Option<ServerName<'static>>,
    accept_any: bool,
    handshake_timeout: Duration,
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTransport")
            .field("can_listen", &self.can_listen())
            .field("fingerprint", &self.fingerprint())
            .field("server_name", &self.inner.server_name)
            .field("accept_any_certificate", &self.inner.accept_any)
            .field("handshake_timeout", &self.inner.handshake_timeout)
            .finish()
    }
}

impl Default for TlsTransport {
    fn default() -> Self {
        match TlsTransport::builder().build() {
            Ok(t) => t,
            Err(e) => TlsTransport {
                inner: Arc::new(Inner {
                    client: Err(e.to_string()),
                    server: None,
                    certificate: None,
                    server_name: None,
                    accept_any: false,
                    handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
                }),
            },
        }
    }
}

impl TlsTransport {
    /// Start configuring a transport.
    ///
    /// ```
    /// let t = yoton_tcp::TlsTransport::builder().build().unwrap();
    /// assert!(!t.can_listen());
    /// ```
    pub fn builder() -> TlsTransportBuilder {
        TlsTransportBuilder::default()
    }

    /// Whether this transport can listen (a server certificate is configured).
    ///
    /// ```
    /// let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    /// let t = yoton_tcp::TlsTransport::builder()
    ///     .certificate_pem(cert.cert.pem(), cert.signing_key.serialize_pem())
    ///     .build()
    ///     .unwrap();
    /// assert!(t.can_listen());
    /// ```
    pub fn can_listen(&self) -> bool {
        self.inner.server.is_some()
    }

    /// The server certificate (DER, the first of the chain), when this transport can
    /// listen.
    ///
    /// ```
    /// let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    /// let t = yoton_tcp::TlsTransport::builder()
    ///     .certificate_pem(cert.cert.pem(), cert.signing_key.serialize_pem())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(t.certificate_der(), Some(cert.cert.der().as_ref()));
    /// ```
    pub fn certificate_der(&self) -> Option<&[u8]> {
        self.inner.certificate.as_deref()
    }

    /// The SHA-256 fingerprint of the server certificate, for clients to pin.
    ///
    /// ```
    /// use yoton_tcp::{Fingerprint, TlsTransport};
    /// let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    /// let server = TlsTransport::builder()
    ///     .certificate_der(vec![cert.cert.der().to_vec()], cert.signing_key.serialize_der())
    ///     .build()
    ///     .unwrap();
    /// let pin = server.fingerprint().unwrap();
    /// assert_eq!(pin, Fingerprint::of(cert.cert.der()));
    /// let client = TlsTransport::builder().pin_certificate(pin).build().unwrap();
    /// # let _ = client;
    /// ```
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.certificate_der().map(Fingerprint::of)
    }

    /// How long a TLS handshake may take.
    ///
    /// ```
    /// let t = yoton_tcp::TlsTransport::default();
    /// assert_eq!(t.handshake_timeout(), yoton_tcp::tls::DEFAULT_TLS_HANDSHAKE_TIMEOUT);
    /// ```
    pub fn handshake_timeout(&self) -> Duration {
        self.inner.handshake_timeout
    }
}

/// Settings of a [`TlsTransport`]: the server's certificate, what clients trust, the
/// name to verify and the handshake time-out.
///
/// ```
/// use std::time::Duration;
/// let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
/// let t = yoton_tcp::TlsTransport::builder()
///     .certificate_pem(cert.cert.pem(), cert.signing_key.serialize_pem())
///     .webpki_roots(false)
///     .trust_ca_pem(cert.cert.pem())
///     .handshake_timeout(Duration::from_secs(5))
///     .build()
///     .unwrap();
/// assert!(t.can_listen());
/// ```
pub struct TlsTransportBuilder {
    identity: Option<IdentitySource>,
    trust: Trust,
    server_name: Option<String>,
    handshake_timeout: Duration,
}

impl fmt::Debug for TlsTransportBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTransportBuilder")
            .field("identity", &self.identity)
            .field("webpki_roots", &self.trust.webpki_roots)
            .field("extra_cas", &self.trust.extra_cas.len())
            .field("pins", &self.trust.pins)
            .field("accept_any_certificate", &self.trust.accept_any)
            .field("server_name", &self.server_name)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

impl Default for TlsTransportBuilder {
    fn default() -> Self {
        TlsTransportBuilder {
            identity: None,
            trust: Trust::default(),
            server_name: None,
            handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        }
    }
}

impl TlsTransportBuilder {
    // ----- the server's certificate -----

    /// Listen with this certificate chain (leaf first) and private key (PKCS#8,
    /// PKCS#1 or SEC1), read from PEM files when building.
    ///
    /// ```
    /// let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    /// let dir = std::env::temp_dir().join(format!("yoton-tcp-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    /// std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    /// let t = yoton_tcp::TlsTransport::builder()
    ///     .certificate_pem_files(dir.join("cert.pem"), dir.join("key.pem"))
    ///     .build()
    ///     .unwrap();
    /// assert!(t.can_listen());
    /// std::fs::remove_dir_all(&dir).unwrap();
    /// ```
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

    /// Listen with this certificate chain and private key, both PEM text.
    ///
    /// ```
    /// let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    /// let t = yoton_tcp::TlsTransport::builder()
    ///     .certificate_pem(cert.cert.pem(), cert.signing_key.serialize_pem())
    ///     .build()
    ///     .unwrap();
    /// assert!(t.can_listen());
    /// ```
    pub fn certificate_pem(mut self, cert: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Self {
        self.identity = Some(IdentitySource::Pem {
            cert: cert.as_ref().to_vec(),
            key: key.as_ref().to_vec(),
        });
        self
    }

    /// Listen with this certificate chain (DER, leaf first) and private key (DER:
    /// PKCS#8, PKCS#1 or SEC1).
    ///
    /// ```
    /// let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    /// let t = yoton_tcp::TlsTransport::builder()
    ///     .certificate_der(vec![cert.cert.der().to_vec()], cert.signing_key.serialize_der())
    ///     .build()
    ///     .unwrap();
    /// assert!(t.can_listen());
    /// ```
    pub fn certificate_der(mut self, chain: Vec<Vec<u8>>, key: Vec<u8>) -> Self {
        self.identity = Some(IdentitySource::Der { chain, key });
        self
    }

    // ----- what the client trusts -----

    /// Trust the Mozilla root CAs of `webpki-roots` (default: on).
    ///
    /// ```
    /// // With no root at all, nothing could be verified: refused when building.
    /// let err = yoton_tcp::TlsTransport::builder().webpki_roots(false).build().unwrap_err();
    /// assert!(matches!(err, yoton_tcp::TlsError::NoTrustAnchors));
    /// ```
    pub fn webpki_roots(mut self, on: bool) -> Self {
        self.trust.webpki_roots = on;
        self
    }

    /// Also trust the CA certificates in this PEM file (read when building).
    ///
    /// ```
    /// let err = yoton_tcp::TlsTransport::builder()
    ///     .trust_ca_pem_file("/nonexistent/ca.pem")
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    /// ```
    pub fn trust_ca_pem_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.trust.extra_cas.push(CaSource::PemFile(path.into()));
        self
    }

    /// Also trust the CA certificates in this PEM text.
    ///
    /// ```
    /// let ca = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    /// let t = yoton_tcp::TlsTransport::builder()
    ///     .webpki_roots(false)
    ///     .trust_ca_pem(ca.cert.pem())
    ///     .build();
    /// assert!(t.is_ok());
    /// ```
    pub fn trust_ca_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.trust
            .extra_cas
            .push(CaSource::Pem(pem.as_ref().to_vec()));
        self
    }

    /// Also trust this CA certificate (DER).
    ///
    /// ```
    /// let ca = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    /// let t = yoton_tcp::TlsTransport::builder()
    ///     .webpki_roots(false)
    ///     .trust_ca_der(ca.cert.der())
    ///     .build();
    /// assert!(t.is_ok());
    /// ```
    pub fn trust_ca_der(mut self, der: impl AsRef<[u8]>) -> Self {
        self.trust
            .extra_cas
            .push(CaSource::Der(der.as_ref().to_vec()));
        self
    }

    /// Accept exactly the server certificate with this SHA-256 fingerprint (may be
    /// given several times). With pins, no CA, name or date check is made: the pin
    /// alone decides, and the server must still prove it holds the certificate's key.
    ///
    /// ```
    /// let pin: yoton_tcp::Fingerprint = "AB".repeat(32).parse().unwrap();
    /// let t = yoton_tcp::TlsTransport::builder()
    ///     .webpki_roots(false)
    ///     .pin_certificate(pin)
    ///     .build();
    /// assert!(t.is_ok());
    /// ```
    pub fn pin_certificate(mut self, fingerprint: Fingerprint) -> Self {
        self.trust.pins.push(fingerprint);
        self
    }

    /// **Dangerous, for development only**: accept any server certificate, whoever
    /// issued it, whatever name it is for and however old. The connection is encrypted
    /// but not authenticated: anyone on the path can pretend to be the server. Logs a
    /// warning when building and at every connection. Overrides pins and CAs.
    ///
    /// ```
    /// let t = yoton_tcp::TlsTransport::builder()
    ///     .dangerous_accept_any_certificate()
    ///     .build()
    ///     .unwrap();
    /// assert!(format!("{t:?}").contains("accept_any_certificate: true"));
    /// ```
    pub fn dangerous_accept_any_certificate(mut self) -> Self {
        self.trust.accept_any = true;
        self
    }

    /// The name to verify the server certificate against (and to send as SNI)
    /// instead of the host of the address: a DNS name or an IP address.
    ///
    /// ```
    /// let t = yoton_tcp::TlsTransport::builder().server_name("bus.example.org").build();
    /// assert!(t.is_ok());
    /// let err = yoton_tcp::TlsTransport::builder().server_name("not a name!").build();
    /// assert!(err.is_err());
    /// ```
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// How long a TLS handshake may take (default 10 s): an accepted client that has
    /// not finished by then is dropped, and a connect attempt gives up.
    ///
    /// ```
    /// use std::time::Duration;
    /// let t = yoton_tcp::TlsTransport::builder()
    ///     .handshake_timeout(Duration::from_secs(3))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(t.handshake_timeout(), Duration::from_secs(3));
    /// ```
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Load the certificates and keys and build the transport.
    ///
    /// ```
    /// let err = yoton_tcp::TlsTransport::builder()
    ///     .certificate_pem("no certificate here", "no key either")
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("no CERTIFICATE found"), "{err}");
    /// ```
    pub fn build(self) -> Result<TlsTransport, TlsError> {
        let provider = config::provider();
        let server_name = match &self.server_name {
            None => None,
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|e| {
                TlsError::Config(format!("`{name}` is not a valid TLS server name: {e}"))
            })?),
        };
        let verifier = self.trust.verifier(&provider, PinReport::Typed)?;
        let client = config::client_config(&provider, rustls::DEFAULT_VERSIONS, verifier)?;
        if self.trust.accept_any {
            tracing::warn!(
                "yoton-tcp: dangerous_accept_any_certificate is set: tls:// servers are NOT \
                 verified; use only for development"
            );
        }
        let (server, certificate) = match &self.identity {
            None => (None, None),
            Some(source) => {
                let identity = source.load()?;
                let leaf = identity.leaf_der();
                let server = config::server_config(&provider, rustls::DEFAULT_VERSIONS, identity)?;
                (Some(TlsAcceptor::from(Arc::new(server))), leaf)
            }
        };
        Ok(TlsTransport {
            inner: Arc::new(Inner {
                client: Ok(TlsConnector::from(Arc::new(client))),
                server,
                certificate,
                server_name,
                accept_any: self.trust.accept_any,
                handshake_timeout: self.handshake_timeout,
            }),
        })
    }
}

/// Make this TLS transport (`tls://`, `tcps://`) available to every context created
/// afterwards with `Context::new()`.
///
/// ```
/// yoton_tcp::install_tls(yoton_tcp::TlsTransport::default());
/// let ctx = yoton_core::Context::new().unwrap();
/// assert!(ctx.registry().get("tls").is_some());
/// assert!(ctx.registry().get("tcps").is_some());
/// ```
pub fn install_tls(transport: TlsTransport) {
    yoton_core::context::register_default_transport(Arc::new(transport));
}

// ---------------------------------------------------------------------------------
// Explaining failures
// ---------------------------------------------------------------------------------

/// A failed client handshake, with what to do about it.
fn describe_client_error(target: &str, name: &ServerName<'_>, e: &std::io::Error) -> String {
    let name = name.to_str();
    let head = format!("TLS handshake with {target} (server name {name}) failed");
    let Some(err) = rustls_error(e) else {
        let hint = match e.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted => {
                ": the server closed the connection during the TLS handshake. Is it a tls:// \
                 server? A plain tcp:// address needs tcp://"
            }
            _ => "",
        };
        return format!("{head}: {e}{hint}");
    };
    let advice = match err {
        rustls::Error::InvalidCertificate(ce) => match ce {
            CertificateError::Other(OtherError(inner)) => {
                match inner.downcast_ref::<NotPinned>() {
                    Some(NotPinned(found)) => format!(
                        "the server's certificate (SHA-256 fingerprint {found}) is not the pinned \
                         one. If the server's certificate was replaced on purpose, pin the new \
                         fingerprint with pin_certificate; otherwise this may not be your server"
                    ),
                    None => format!("the server's certificate was refused: {inner}"),
                }
            }
            CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                "the server's certificate is not trusted ({ce}: it does not chain to a trusted \
                 root). Trust the CA that issued it with TlsTransport::builder().trust_ca_pem_file(..) \
                 (or trust_ca_pem / trust_ca_der), pin it with pin_certificate(fingerprint), or, \
                 for development only, use dangerous_accept_any_certificate()"
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!(
                "the server's certificate has expired ({ce}). Renew the certificate on the \
                 server (and check that both machines' clocks are right)"
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!(
                    "the server's certificate is not valid yet ({ce}). Check that both machines' \
                     clocks are right"
                )
            }
            CertificateError::NotValidForName
            | CertificateError::NotValidForNameContext { .. } => format!(
                "the server's certificate is not valid for the name {name} ({ce}). Connect with \
                 a name the certificate lists, set TlsTransport::builder().server_name(..) to \
                 one, or issue a certificate that includes {name} (yoton connects to \
                 localhost as 127.0.0.1, so local certificates should list that IP address)"
            ),
            CertificateError::Revoked => {
                "the server's certificate has been revoked. The server needs a new one".to_owned()
            }
            other => format!("the server's certificate was refused: {other}"),
        },
        rustls::Error::InvalidMessage(_) => format!(
            "the server does not speak TLS ({err}). Is it a plain tcp:// address? Then \
             connect with tcp://"
        ),
        rustls::Error::AlertReceived(alert) => format!(
            "the server refused the TLS handshake (alert {alert:?}); its log may say why"
        ),
        other => format!("{other}"),
    };
    format!("{head}: {advice}")
}

/// A failed server-side handshake (for the log).
fn describe_server_error(peer: &Endpoint, e: &std::io::Error) -> String {
    let hint = match rustls_error(e) {
        Some(rustls::Error::AlertReceived(alert)) => format!(
            " (the client refused the handshake with alert {alert:?}; if it is about the \
             certificate, the client does not trust it: give clients the CA, or the fingerprint \
             to pin)"
        ),
        _ => String::new(),
    };
    format!("TLS handshake with {peer} failed: {e}{hint}")
}

// ---------------------------------------------------------------------------------
// Listening and connecting
// ---------------------------------------------------------------------------------

/// The server side of one accepted socket: check that it speaks TLS, run the TLS
/// handshake, split the stream.
async fn server_side(mut stream: TcpStream, acceptor: TlsAcceptor) -> Result<RawStream, String> {
    let (local, peer) = tcp_ends(&stream).map_err(|e| e.to_string())?;
    let mut first = [0u8; 1];
    let n = stream
        .peek(&mut first)
        .await
        .map_err(|e| format!("{peer}: {e}"))?;
    if n == 0 {
        return Err(format!("{peer} closed before starting a TLS handshake"));
    }
    if first != [TLS_HANDSHAKE_RECORD] {
        refuse_plain(&mut stream).await;
        return Err(format!(
            "{peer} does not speak TLS (its first byte is {:#04x}); answered that this is \
             Yoton over TLS",
            u8::from_be_bytes(first)
        ));
    }
    let tls = acceptor
        .accept(stream)
        .await
        .map_err(|e| describe_server_error(&peer, &e))?;
    Ok(raw_stream(tls, local, peer))
}

/// Tell a client that is not TLS what this is, and close gently: what it sent is
/// read first, so that closing does not reset the connection before our answer
/// arrives.
async fn refuse_plain(stream: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    let _ = stream.read(&mut sink).await;
    let _ = stream.write_all(NOT_TLS_ANSWER.as_bytes()).await;
    let _ = stream.shutdown().await;
    let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// The reading half of a TLS stream, where a peer that closes the TCP connection
/// without a TLS `close_notify` (a process that died, a context dropped) reads as the
/// end of the stream, as over plain TCP. Yoton frames carry their length, so a cut in
/// the middle of a package is still detected by the framing.
struct TlsReader<R>(R);

impl<R: AsyncRead + Unpin> AsyncRead for TlsReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// No low-water mark under TLS (see [`StreamRead::set_recv_lowat`]).
impl<R: AsyncRead + Send + Unpin> StreamRead for TlsReader<R> {}

/// A TLS stream as the byte stream core expects.
fn raw_stream<S>(tls: S, local: Endpoint, peer: Endpoint) -> RawStream
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (r, w) = tokio::io::split(tls);
    RawStream {
        reader: Box::new(TlsReader(r)),
        writer: Box::new(w),
        local,
        peer,
    }
}

#[async_trait]
impl Transport for TlsTransport {
    fn schemes(&self) -> &'static [&'static str] {
        &["tls", "tcps"]
    }

    async fn listen(&self, addr: &Address) -> Result<Box<dyn TransportListener>, TransportError> {
        let Some(acceptor) = self.inner.server.clone() else {
            return Err(TransportError::permanent(format!(
                "cannot listen at {addr}: {}:// needs a server certificate. Build the transport \
                 with TlsTransport::builder().certificate_pem_files(\"cert.pem\", \"key.pem\") \
                 (or certificate_pem / certificate_der); plain tcp:// needs none",
                addr.scheme
            )));
        };
        let listener = bind_tcp(addr.resolve().await?)?;
        Ok(Box::new(HandshakingListener::spawn(
            listener,
            "TLS",
            self.inner.handshake_timeout,
            move |stream| {
                let acceptor = acceptor.clone();
                async move { server_side(stream, acceptor).await.map(Incoming::from) }
            },
        )?))
    }

    async fn connect(&self, addr: &Address) -> Result<Incoming, TransportError> {
        let connector = self
            .inner
            .client
            .clone()
            .map_err(TransportError::permanent)?;
        let name = match &self.inner.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(addr.host.clone()).map_err(|e| {
                TransportError::permanent(format!(
                    "`{}` is not a valid TLS server name: {e}; set \
                     TlsTransport::builder().server_name(..)",
                    addr.host
                ))
            })?,
        };
        let sa = addr.resolve().await?;
        if self.inner.accept_any {
            tracing::warn!(
                server = %sa,
                "yoton-tcp: connecting WITHOUT verifying the server certificate \
                 (dangerous_accept_any_certificate); use only for development"
            );
        }
        let stream = TcpStream::connect(sa).await?;
        let (local, peer) = tcp_ends(&stream)?;
        let target = addr.host_port();
        let timeout = self.inner.handshake_timeout;
        let tls = match tokio::time::timeout(timeout, connector.connect(name.clone(), stream)).await
        {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                return Err(TransportError {
                    reason: describe_client_error(&target, &name, &e),
                    permanent: yoton_tls::handshake_error_is_final(&e),
                })
            }
            Err(_) => {
                return Err(TransportError::new(format!(
                    "TLS handshake with {target} timed out after {timeout:?}: is it a tls:// \
                     server?"
                )))
            }
        };
        Ok(raw_stream(tls, local, peer).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_keys() {
        let b = TlsTransport::builder().certificate_pem("CERT", "SECRET KEY BYTES");
        let shown = format!("{b:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        let b = TlsTransport::builder().certificate_der(vec![vec![1]], b"SECRET".to_vec());
        let shown = format!("{b:?}");
        assert!(!shown.contains("83, 69, 67"), "{shown}");
    }
}
