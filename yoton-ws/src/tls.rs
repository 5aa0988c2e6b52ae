//! TLS settings for `wss://`: the builder of [`crate::WsTransport`], certificate
//! loading and the (development only) verifier that accepts any certificate.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::{Error, Settings, WsTransport, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_WS_MESSAGE};

/// The crypto provider used for configurations built here (ring), chosen explicitly so
/// that the process-wide default (or its absence) does not matter.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

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
                let chain = certs_from_pem(&cert, "the server certificate PEM")?;
                let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| Error::Pem {
                    what: "private key",
                    origin: "the server key PEM".into(),
                    reason: e.to_string(),
                })?;
                Some(server_config(chain, key)?)
            }
            Some(ServerSource::PemFiles { cert, key }) => {
                let where_ = cert.display().to_string();
                let data = std::fs::read(&cert).map_err(|e| Error::Pem {
                    what: "certificate chain",
                    origin: where_.clone(),
                    reason: e.to_string(),
                })?;
                let chain = certs_from_pem(&data, &where_)?;
                let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| Error::Pem {
                    what: "private key",
                    origin: key.display().to_string(),
                    reason: e.to_string(),
                })?;
                Some(server_config(chain, key)?)
            }
        };
        let client = match self.client {
            Some(c) => c,
            None if self.accept_invalid => {
                let p = provider();
                let c = ClientConfig::builder_with_provider(p.clone())
                    .with_safe_default_protocol_versions()?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(p)))
                    .with_no_client_auth();
                Arc::new(c)
            }
            None => {
                let mut roots = RootCertStore::empty();
                if self.webpki_roots {
                    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                }
                if self.native_roots {
                    let found = rustls_native_certs::load_native_certs();
                    if found.certs.is_empty() && !found.errors.is_empty() {
                        let errors: Vec<String> =
                            found.errors.iter().map(|e| e.to_string()).collect();
                        return Err(Error::NativeRoots(errors.join("; ")));
                    }
                    roots.add_parsable_certificates(found.certs);
                }
                for r in self.roots {
                    let certs = match r {
                        RootSource::Der(c) => vec![c],
                        RootSource::Pem(p) => certs_from_pem(&p, "a root certificate PEM")?,
                        RootSource::PemFile(path) => {
                            let where_ = path.display().to_string();
                            let data = std::fs::read(&path).map_err(|e| Error::Pem {
                                what: "root certificates",
                                origin: where_.clone(),
                                reason: e.to_string(),
                            })?;
                            certs_from_pem(&data, &where_)?
                        }
                    };
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

fn certs_from_pem(pem: &[u8], source: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Pem {
            what: "certificates",
            origin: source.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::Pem {
            what: "certificates",
            origin: source.to_owned(),
            reason: "no `BEGIN CERTIFICATE` block found".into(),
        });
    }
    Ok(certs)
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, Error> {
    let c = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(c))
}

/// Accepts any certificate, but still checks the handshake signatures with it.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS error of a client connection, with advice for the usual certificate problems.
pub(crate) fn describe_client_error(target: &str, e: &std::io::Error) -> String {
    let advice = match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
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
