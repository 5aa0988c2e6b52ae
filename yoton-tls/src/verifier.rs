//! The server certificate verifier: by chain, by pinned fingerprint, or not at all.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};

use crate::{Fingerprint, TlsError};

/// A server certificate whose fingerprint is not pinned: the error inside the
/// `rustls::Error::InvalidCertificate(CertificateError::Other(..))` of a refused
/// handshake, for explaining it.
///
/// ```
/// use rustls::{CertificateError, OtherError};
/// let found = yoton_tls::Fingerprint([1; 32]);
/// let other = OtherError(std::sync::Arc::new(yoton_tls::NotPinned(found)));
/// assert!(other.to_string().ends_with("is not a pinned one"), "{other}");
/// let err = rustls::Error::InvalidCertificate(CertificateError::Other(other));
/// if let rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) = &err {
///     assert_eq!(inner.downcast_ref::<yoton_tls::NotPinned>().map(|n| n.0), Some(found));
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("the server certificate's SHA-256 fingerprint {0} is not a pinned one")]
pub struct NotPinned(pub Fingerprint);

/// How a verifier reports a server certificate that is not pinned. The transports
/// see a refused handshake differently: tokio-rustls hands over the rustls error
/// itself, quinn only its text.
///
/// ```
/// use yoton_tls::{Fingerprint, PinReport, ServerVerifier};
/// use rustls::client::danger::ServerCertVerifier;
/// use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
///
/// let provider = yoton_tls::provider();
/// let cert = CertificateDer::from(b"a certificate".to_vec());
/// let name = ServerName::try_from("localhost").unwrap();
/// let refuse = |report| {
///     ServerVerifier::pinned(vec![Fingerprint([0; 32])], report, &provider)
///         .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
///         .unwrap_err()
/// };
/// assert!(matches!(refuse(PinReport::Typed), rustls::Error::InvalidCertificate(_)));
/// assert!(refuse(PinReport::Text).to_string().contains("is not a pinned one"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinReport {
    /// As `rustls::Error::InvalidCertificate(CertificateError::Other(..))` holding a
    /// [`NotPinned`], for callers that look inside the error to explain it (the
    /// server gets a `bad_certificate` alert).
    Typed,
    /// As `rustls::Error::General` with the text of [`NotPinned`], for callers that
    /// only see the error's text (the server gets a `handshake_failure` alert).
    Text,
}

#[derive(Debug)]
enum Mode {
    WebPki(Arc<WebPkiServerVerifier>),
    Pinned(Vec<Fingerprint>, PinReport),
    AcceptAny,
}

/// Verifies the server: by chain (the default), by pinned fingerprint, or not at all
/// (development). Handshake signatures are always checked, so a pinned or accepted
/// certificate still proves that the server holds its key. Usually made by
/// [`crate::Trust::verifier`].
///
/// ```
/// use rustls::client::danger::ServerCertVerifier;
/// use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
/// use yoton_tls::{Fingerprint, PinReport, ServerVerifier};
///
/// let provider = yoton_tls::provider();
/// let cert = CertificateDer::from(b"a certificate".to_vec());
/// let name = ServerName::try_from("localhost").unwrap();
/// let verify = |v: &ServerVerifier| {
///     v.verify_server_cert(&cert, &[], &name, &[], UnixTime::now()).is_ok()
/// };
/// let pinned = |pin| ServerVerifier::pinned(vec![pin], PinReport::Typed, &provider);
/// assert!(verify(&pinned(Fingerprint::of(&cert))));
/// assert!(!verify(&pinned(Fingerprint([0; 32]))));
/// assert!(verify(&ServerVerifier::accept_any(&provider)));
/// ```
#[derive(Debug)]
pub struct ServerVerifier {
    mode: Mode,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerVerifier {
    /// Accept certificates that chain up to one of these roots, are valid for the name
    /// connected to, and have not expired.
    ///
    /// ```
    /// let provider = yoton_tls::provider();
    /// let mut roots = rustls::RootCertStore::empty();
    /// yoton_tls::roots::add_webpki_roots(&mut roots);
    /// assert!(yoton_tls::ServerVerifier::webpki(roots, &provider).is_ok());
    /// let empty = rustls::RootCertStore::empty();
    /// assert!(yoton_tls::ServerVerifier::webpki(empty, &provider).is_err());
    /// ```
    pub fn webpki(
        roots: RootCertStore,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<ServerVerifier>, TlsError> {
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| TlsError::Config(format!("certificate verifier: {e}")))?;
        Ok(Self::with_mode(Mode::WebPki(webpki), provider))
    }

    /// Accept exactly the certificates with these fingerprints; any other fails with
    /// [`NotPinned`], reported as `report` says.
    ///
    /// ```
    /// use yoton_tls::{PinReport, ServerVerifier};
    /// let v = ServerVerifier::pinned(vec![], PinReport::Typed, &yoton_tls::provider());
    /// # let _ = v;
    /// ```
    pub fn pinned(
        pins: Vec<Fingerprint>,
        report: PinReport,
        provider: &CryptoProvider,
    ) -> Arc<ServerVerifier> {
        Self::with_mode(Mode::Pinned(pins, report), provider)
    }

    /// **Development only**: accept any certificate (the handshake signatures are
    /// still checked against it).
    ///
    /// ```
    /// let v = yoton_tls::ServerVerifier::accept_any(&yoton_tls::provider());
    /// assert!(format!("{v:?}").contains("AcceptAny"));
    /// ```
    pub fn accept_any(provider: &CryptoProvider) -> Arc<ServerVerifier> {
        Self::with_mode(Mode::AcceptAny, provider)
    }

    fn with_mode(mode: Mode, provider: &CryptoProvider) -> Arc<ServerVerifier> {
        Arc::new(ServerVerifier {
            mode,
            algorithms: provider.signature_verification_algorithms,
        })
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.mode {
            Mode::WebPki(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            Mode::Pinned(pins, report) => {
                let found = Fingerprint::of(end_entity);
                if pins.contains(&found) {
                    return Ok(ServerCertVerified::assertion());
                }
                Err(match report {
                    PinReport::Typed => rustls::Error::InvalidCertificate(CertificateError::Other(
                        OtherError(Arc::new(NotPinned(found))),
                    )),
                    PinReport::Text => rustls::Error::General(NotPinned(found).to_string()),
                })
            }
            Mode::AcceptAny => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
