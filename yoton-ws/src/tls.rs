//! TLS settings for `wss://`: the builder of [`crate::WsTransport`]. Certificates are
//! loaded and verified with yoton-tls; the errors keep this crate's words.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use yoton_tls::{config, pem, provider, roots, Identity, ServerVerifier, TlsError};

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

enum RootSource {
    Der(CertificateDer<'static>),
    Pem(Vec<u8>),
    PemFile(PathBuf),
}

/// Builds a [`WsTransport`]: TLS material for `wss://`, the upgrade path and limits.
///
/// Without any call, [`WsTransportBuilder::build`] gives a transport that connects to
/// `ws://` and to `wss://` servers whose certificates chain to the Mozilla roots of
/// `webpki-roots` (certificate verification is always on unless
/// [`WsTransportBuilder::danger_accept_invalid_certs`] is called), and that listens on
/// `ws://` only; give a certificate to listen on `wss://`.
///
/// ```
/// use yoton_ws::WsTransport;
/// let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
/// let t = WsTransport::builder()
///     .server_cert_pem(cert.cert.pem(), cert.signing_key.serialize_pem())
///     .add_root_certificates_pem(cert.cert.pem())
///     .path("/bus")
///     .build()
///     .unwrap();
/// assert!(t.can_listen_tls() && t.can_connect_tls());
/// assert_eq!(t.path(), "/bus");
/// ```
pub struct WsTransportBuilder {
    server: Option<ServerSource>,
    client: Option<Arc<ClientConfig>>,
    webpki_roots: bool,
    native_roots: bool,
    roots: Vec<RootSource>,
    accept_invalid: bool,
    path: String,
    max_message_size: usize,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for WsTransportBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsTransportBuilder")
            .field("server_certificate", &self.server.is_some())
            .field("client_config", &self.client.is_some())
            .field("webpki_roots", &self.webpki_roots)
            .field("native_roots", &self.native_roots)
            .field("extra_roots", &self.roots.len())
            .field("accept_invalid_certs", &self.accept_invalid)
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
            webpki_roots: true,
            native_roots: false,
            roots: Vec::new(),
            accept_invalid: false,
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
        self.webpki_roots = on;
        self
    }

    /// Also trust the operating system's root certificates (default: no).
    pub fn native_roots(mut self, on: bool) -> Self {
        self.native_roots = on;
        self
    }

    /// Also trust this CA (or self-signed) certificate, as DER.
    pub fn add_root_certificate_der(mut self, cert: CertificateDer<'static>) -> Self {
        self.roots.push(RootSource::Der(cert));
        self
    }

    /// Also trust every certificate in this PEM text.
    pub fn add_root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.roots.push(RootSource::Pem(pem.into()));
        self
    }

    /// Also trust every certificate in this PEM file.
    pub fn add_root_certificates_pem_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.roots.push(RootSource::PemFile(path.into()));
        self
    }

    /// **Dangerous, for development only**: accept any server certificate, whoever
    /// issued it and whatever name it is for. The connection is encrypted but not
    /// authenticated: anyone on the path can impersonate the server.
    pub fn danger_accept_invalid_certs(mut self) -> Self {
        self.accept_invalid = true;
        self
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
        let server = match self.server {
            None => None,
            Some(ServerSource::Config(c)) => Some(c),
            Some(ServerSource::Der { chain, key }) => Some(server_config(chain, key)?),
            Some(ServerSource::Pem { cert, key }) => {
                let chain = pem::certs_from_pem(&cert, "the server certificate PEM")
                    .map_err(|e| load_error(e, "certificates", "certificates"))?;
                let key = pem::key_from_pem(&key, "the server key PEM")
                    .map_err(|e| load_error(e, "private key", "private key"))?;
                Some(server_config(chain, key)?)
            }
            Some(ServerSource::PemFiles { cert, key }) => {
                let chain = pem::certs_from_pem_file(&cert)
                    .map_err(|e| load_error(e, "certificate chain", "certificates"))?;
                let key = pem::key_from_pem_file(&key)
                    .map_err(|e| load_error(e, "private key", "private key"))?;
                Some(server_config(chain, key)?)
            }
        };
        let client = match self.client {
            Some(c) => c,
            None if self.accept_invalid => {
                let p = provider();
                let verifier = ServerVerifier::accept_any(&p);
                let c = config::client_config(&p, rustls::DEFAULT_VERSIONS, verifier)
                    .map_err(refused)?;
                Arc::new(c)
            }
            None => {
                let mut roots = RootCertStore::empty();
                if self.webpki_roots {
                    roots::add_webpki_roots(&mut roots);
                }
                if self.native_roots {
                    let found = roots::add_native_roots(&mut roots);
                    if found.failed() {
                        return Err(Error::NativeRoots(found.errors.join("; ")));
                    }
                }
                for r in self.roots {
                    let certs = match r {
                        RootSource::Der(c) => Ok(vec![c]),
                        RootSource::Pem(p) => pem::certs_from_pem(&p, "a root certificate PEM"),
                        RootSource::PemFile(path) => pem::certs_from_pem_file(&path),
                    }
                    .map_err(|e| load_error(e, "root certificates", "certificates"))?;
                    for c in certs {
                        roots.add(c)?;
                    }
                }
                let c = ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Arc::new(c)
            }
        };
        Ok(WsTransport {
            inner: Arc::new(Settings {
                server,
                client: Some(client),
                path: self.path,
                max_message_size: self.max_message_size,
                handshake_timeout: self.handshake_timeout,
            }),
        })
    }
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, Error> {
    let identity = Identity { chain, key };
    let c =
        config::server_config(&provider(), rustls::DEFAULT_VERSIONS, identity).map_err(refused)?;
    Ok(Arc::new(c))
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
                 WsTransport::builder().add_root_certificates_pem_file(..), or for development \
                 only use danger_accept_invalid_certs())"
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
