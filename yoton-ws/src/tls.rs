//! TLS settings for `wss://`: the builder of [`crate::WsTransport`]. Certificates are
//! loaded and verified with yoton-tls; the errors keep this crate's words.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use yoton_tls::{
    config, pem, provider, CaSource, Fingerprint, Identity, PinReport, TlsError, Trust,
};

use crate::{Error, Settings, WsTransport, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_WS_MESSAGE};

enum ServerSource {
    PemFiles {
        cert: PathBuf,
        key: PathBuf,
    },
    Pem {
        cert: Vec<u8>,
        key: Vec<u8>,
    },
    Der {
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    },
    Config(Arc<ServerConfig>),
}

/// Builds a [`WsTransport`]: TLS material for `wss://`, the upgrade path and limits.
///
/// Without any call, [`WsTransportBuilder::build`] gives a transport that connects to
/// `ws://` and to `wss://` servers whose certificates chain to the Mozilla roots of
/// `webpki-roots` (certificate verification is always on unless
/// [`WsTransportBuilder::dangerous_accept_any_certificate`] is called), and that
/// listens on `ws://` only; give a certificate to listen on `wss://`. What a client
/// trusts is set as for `tls://` and `quic://`: root CAs (`trust_ca_*`), or pinned
/// certificates ([`WsTransportBuilder::pin_certificate`]).
///
/// ```
/// use yoton_ws::WsTransport;
/// let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
/// let t = WsTransport::builder()
///     .server_cert_pem(cert.cert.pem(), cert.signing_key.serialize_pem())
///     .trust_ca_pem(cert.cert.pem())
///     .path("/bus")
///     .build()
///     .unwrap();
/// assert!(t.can_listen_tls() && t.can_connect_tls());
/// assert_eq!(t.path(), "/bus");
/// ```
pub struct WsTransportBuilder {
    server: Option<ServerSource>,
    client: Option<Arc<ClientConfig>>,
    trust: Trust,
    path: String,
    max_message_size: usize,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for WsTransportBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsTransportBuilder")
            .field("server_certificate", &self.server.is_some())
            .field("client_config", &self.client.is_some())
            .field("trust", &self.trust)
            .field("path", &self.path)
            .field("max_message_size", &self.max_message_size)
            .finish()
    }
}

impl Default for WsTransportBuilder {
    fn default() -> Self {
        WsTransportBuilder {
            server: None,
            client: None,
            trust: Trust::default(),
            path: crate::DEFAULT_PATH.to_owned(),
            max_message_size: DEFAULT_MAX_WS_MESSAGE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl WsTransportBuilder {
    /// Listen on `wss://` with this certificate chain and private key, read from PEM
    /// files (leaf certificate first; PKCS#8, PKCS#1 or SEC1 key).
    pub fn server_cert_pem_files(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.server = Some(ServerSource::PemFiles {
            cert: cert.into(),
            key: key.into(),
        });
        self
    }

    /// Listen on `wss://` with this certificate chain and private key, as PEM text.
    pub fn server_cert_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.server = Some(ServerSource::Pem {
            cert: cert.into(),
            key: key.into(),
        });
        self
    }

    /// Listen on `wss://` with this certificate chain and private key, as DER.
    pub fn server_cert_der(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        self.server = Some(ServerSource::Der { chain, key });
        self
    }

    /// Listen on `wss://` with a rustls configuration of your own.
    pub fn server_config(mut self, config: Arc<ServerConfig>) -> Self {
        self.server = Some(ServerSource::Config(config));
        self
    }

    /// Connect to `wss://` with a rustls configuration of your own (the root and
    /// verification settings of this builder are then not used).
    pub fn client_config(mut self, config: Arc<ClientConfig>) -> Self {
        self.client = Some(config);
        self
    }

    /// Trust the Mozilla roots of `webpki-roots` (default: yes).
    pub fn webpki_roots(mut self, on: bool) -> Self {
        self.trust.webpki_roots = on;
        self
    }

    /// Also trust the operating system's root certificates (default: no). Problems
    /// reading them are logged as warnings.
    pub fn native_roots(mut self, on: bool) -> Self {
        self.trust.native_roots = on;
        self
    }

    /// Also trust this CA (or self-signed) certificate, as DER.
    pub fn trust_ca_der(mut self, der: impl AsRef<[u8]>) -> Self {
        self.trust
            .extra_cas
            .push(CaSource::Der(der.as_ref().to_vec()));
        self
    }

    /// Also trust every certificate in this PEM text.
    pub fn trust_ca_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.trust
            .extra_cas
            .push(CaSource::Pem(pem.as_ref().to_vec()));
        self
    }

    /// Also trust every certificate in this PEM file (read when building).
    pub fn trust_ca_pem_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.trust.extra_cas.push(CaSource::PemFile(path.into()));
        self
    }

    /// Accept exactly the server certificate with this SHA-256 fingerprint (may be
    /// given several times; a server's is [`WsTransport::fingerprint`]). With pins,
    /// no CA, name or date check is made: the pin alone decides, and the server must
    /// still prove it holds the certificate's key.
    ///
    /// ```
    /// use yoton_ws::{Fingerprint, WsTransport};
    /// let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    /// let server = WsTransport::builder()
    ///     .server_cert_pem(cert.cert.pem(), cert.signing_key.serialize_pem())
    ///     .build()
    ///     .unwrap();
    /// let pin = server.fingerprint().unwrap();
    /// assert_eq!(pin, Fingerprint::of(cert.cert.der()));
    /// let client = WsTransport::builder().pin_certificate(pin).build().unwrap();
    /// assert!(client.can_connect_tls());
    /// ```
    pub fn pin_certificate(mut self, fingerprint: Fingerprint) -> Self {
        self.trust.pins.push(fingerprint);
        self
    }

    /// **Dangerous, for development only**: accept any server certificate, whoever
    /// issued it and whatever name it is for. The connection is encrypted but not
    /// authenticated: anyone on the path can impersonate the server.
    pub fn dangerous_accept_any_certificate(mut self) -> Self {
        self.trust.accept_any = true;
        self
    }

    /// [`WsTransportBuilder::trust_ca_der`] (the name of earlier versions).
    pub fn add_root_certificate_der(self, cert: CertificateDer<'static>) -> Self {
        self.trust_ca_der(cert)
    }

    /// [`WsTransportBuilder::trust_ca_pem`] (the name of earlier versions).
    pub fn add_root_certificates_pem(self, pem: impl Into<Vec<u8>>) -> Self {
        self.trust_ca_pem(pem.into())
    }

    /// [`WsTransportBuilder::trust_ca_pem_file`] (the name of earlier versions).
    pub fn add_root_certificates_pem_file(self, path: impl Into<PathBuf>) -> Self {
        self.trust_ca_pem_file(path)
    }

    /// [`WsTransportBuilder::dangerous_accept_any_certificate`] (the name of earlier
    /// versions).
    pub fn danger_accept_invalid_certs(self) -> Self {
        self.dangerous_accept_any_certificate()
    }

    /// The HTTP path of the upgrade when an address gives none (default `/yoton`).
    /// Servers answer 404 to other paths; clients ask for it.
    pub fn path(mut self, path: &str) -> Self {
        self.path = path.to_owned();
        self
    }

    /// Largest WebSocket message (and frame) accepted, in bytes: the 56-byte header plus
    /// the payload. Larger ones are refused as soon as their header arrives. Default
    /// 1 GiB + 56, matching the context's default maximum message size.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How long an accepted client has for the TLS handshake and the HTTP upgrade
    /// (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Load the certificates and build the transport.
    pub fn build(self) -> Result<WsTransport, Error> {
        if !self.path.starts_with('/') {
            return Err(Error::Setting(format!(
                "the path `{}` must start with `/`",
                self.path
            )));
        }
        let (server, certificate) = match self.server {
            None => (None, None),
            Some(ServerSource::Config(c)) => (Some(c), None),
            Some(ServerSource::Der { chain, key }) => server_config(chain, key)?,
            Some(ServerSource::Pem { cert, key }) => {
                let chain = pem::certs_from_pem(&cert, "the server certificate PEM")
                    .map_err(|e| load_error(e, "certificates", "certificates"))?;
                let key = pem::key_from_pem(&key, "the server key PEM")
                    .map_err(|e| load_error(e, "private key", "private key"))?;
                server_config(chain, key)?
            }
            Some(ServerSource::PemFiles { cert, key }) => {
                let chain = pem::certs_from_pem_file(&cert)
                    .map_err(|e| load_error(e, "certificate chain", "certificates"))?;
                let key = pem::key_from_pem_file(&key)
                    .map_err(|e| load_error(e, "private key", "private key"))?;
                server_config(chain, key)?
            }
        };
        let client = match self.client {
            Some(c) => c,
            None => {
                let p = provider();
                let verifier = self
                    .trust
                    .verifier(&p, PinReport::Typed)
                    .map_err(|e| load_error(e, "root certificates", "certificates"))?;
                if self.trust.accept_any {
                    tracing::warn!(
                        "yoton-ws: dangerous_accept_any_certificate is set: wss:// servers are \
                         NOT verified; use only for development"
                    );
                }
                let c = config::client_config(&p, rustls::DEFAULT_VERSIONS, verifier)
                    .map_err(refused)?;
                Arc::new(c)
            }
        };
        Ok(WsTransport {
            inner: Arc::new(Settings {
                server,
                certificate,
                client: Some(client),
                path: self.path,
                max_message_size: self.max_message_size,
                handshake_timeout: self.handshake_timeout,
            }),
        })
    }
}

/// A server's rustls configuration and its certificate (DER, the first of the chain).
type Served = (Option<Arc<ServerConfig>>, Option<Vec<u8>>);

/// The server configuration for this chain and key, and the chain's first
/// certificate.
fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Served, Error> {
    let identity = Identity { chain, key };
    let leaf = identity.leaf_der();
    let c =
        config::server_config(&provider(), rustls::DEFAULT_VERSIONS, identity).map_err(refused)?;
    Ok((Some(Arc::new(c)), leaf))
}

/// rustls refused a configuration.
fn refused(e: TlsError) -> Error {
    match e {
        TlsError::Tls(e) => Error::Tls(e),
        other => Error::Setting(other.to_string()),
    }
}

/// A certificate or key that could not be loaded, in this crate's words: `file` is
/// what a file that cannot be read should have held, `parsed` what did not parse.
fn load_error(e: TlsError, file: &'static str, parsed: &'static str) -> Error {
    let (what, origin, reason) = match e {
        TlsError::Read { path, source } => (file, path.display().to_string(), source.to_string()),
        TlsError::NoPem {
            what: "CERTIFICATE",
            origin,
        } => (
            parsed,
            origin,
            "no `BEGIN CERTIFICATE` block found".to_owned(),
        ),
        TlsError::NoPem { origin, .. } => (parsed, origin, "no items found".to_owned()),
        TlsError::Pem { origin, detail } => (parsed, origin, detail),
        other => return refused(other),
    };
    Error::Pem {
        what,
        origin,
        reason,
    }
}

/// A TLS error of a client connection, with advice for the usual certificate problems.
pub(crate) fn describe_client_error(target: &str, e: &std::io::Error) -> String {
    let advice = match yoton_tls::rustls_error(e) {
        Some(rustls::Error::InvalidCertificate(ce)) => match ce {
            rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature => {
                " (the server's certificate does not chain to a trusted root: add its CA with \
                 WsTransport::builder().trust_ca_pem_file(..), pin the certificate with \
                 pin_certificate(fingerprint), or for development only use \
                 dangerous_accept_any_certificate())"
            }
            rustls::CertificateError::Other(rustls::OtherError(inner))
                if inner.downcast_ref::<yoton_tls::NotPinned>().is_some() =>
            {
                " (the server's certificate is not the pinned one: if it was replaced on \
                 purpose, pin the new fingerprint; otherwise this may not be your server)"
            }
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. } => {
                " (the certificate is for another host name: connect with a name it lists, or \
                 issue a certificate for this name)"
            }
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. } => {
                " (renew the server's certificate or check the clocks)"
            }
            _ => "",
        },
        _ => "",
    };
    format!("TLS handshake with {target} failed: {e}{advice}")
}
