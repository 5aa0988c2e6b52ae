//! What can go wrong while setting up TLS, in words that say what to do.

use std::path::PathBuf;

/// Why a TLS set-up could not be built: certificates, keys, trust settings.
///
/// yoton-tcp shows it as `TlsError` and yoton-quic as `QuicError`. Errors while
/// connecting or listening are reported by the context as the reason of the failed
/// `connect` or `bind`.
///
/// ```
/// use yoton_tls::{pem, TlsError};
/// let err = pem::certs_from_pem(b"not PEM", "the CA PEM").unwrap_err();
/// assert!(matches!(err, TlsError::NoPem { .. }));
/// assert_eq!(err.to_string(), "no CERTIFICATE found in the CA PEM");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// PEM text without the expected section.
    #[error("no {what} found in {origin}")]
    NoPem {
        /// The PEM section looked for (`CERTIFICATE`, `PRIVATE KEY`).
        what: &'static str,
        /// Where it was looked for.
        origin: String,
    },
    /// Malformed PEM or key bytes.
    #[error("invalid certificate or key in {origin}: {detail}")]
    Pem {
        /// Where.
        origin: String,
        /// What is wrong.
        detail: String,
    },
    /// rustls refused a certificate, key or setting (e.g. a key that does not match
    /// the certificate).
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A self-signed certificate could not be generated.
    #[error("cannot generate a self-signed certificate: {0}")]
    CertGen(#[from] rcgen::Error),
    /// A fingerprint that is not 32 hex-encoded bytes.
    #[error("invalid SHA-256 fingerprint {0:?}: expected 64 hex digits (colons allowed)")]
    Fingerprint(String),
    /// Nothing to verify servers against.
    #[error(
        "no trusted root certificate: keep webpki_roots on, add a CA with trust_ca_pem_file / \
         trust_ca_pem / trust_ca_der, or pin the server certificate with pin_certificate"
    )]
    NoTrustAnchors,
    /// Any other invalid setting.
    #[error("{0}")]
    Config(String),
}

/// The rustls error inside an I/O error of a TLS stream (tokio-rustls reports a failed
/// handshake that way), to explain the failure.
///
/// ```
/// let e = std::io::Error::new(
///     std::io::ErrorKind::InvalidData,
///     rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
/// );
/// assert!(matches!(
///     yoton_tls::rustls_error(&e),
///     Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Expired))
/// ));
/// assert!(yoton_tls::rustls_error(&std::io::Error::other("plain")).is_none());
/// ```
pub fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// Whether a client's failed TLS handshake would fail again however often it is
/// retried: the server's certificate was refused, the server answered in another
/// protocol than TLS, or it refused the handshake with an alert. A connection closed
/// or reset during the handshake is not final (the server may be starting up, or at
/// its limit of handshakes).
///
/// ```
/// use std::io::{Error, ErrorKind};
/// use yoton_tls::rustls::{CertificateError, Error as TlsError};
/// let refused = Error::new(ErrorKind::InvalidData, TlsError::InvalidCertificate(CertificateError::UnknownIssuer));
/// assert!(yoton_tls::handshake_error_is_final(&refused));
/// let closed = Error::from(ErrorKind::UnexpectedEof);
/// assert!(!yoton_tls::handshake_error_is_final(&closed));
/// ```
pub fn handshake_error_is_final(e: &std::io::Error) -> bool {
    matches!(
        rustls_error(e),
        Some(
            rustls::Error::InvalidCertificate(_)
                | rustls::Error::InvalidMessage(_)
                | rustls::Error::AlertReceived(_)
                | rustls::Error::NoCertificatesPresented
                | rustls::Error::PeerIncompatible(_)
                | rustls::Error::PeerMisbehaved(_)
                | rustls::Error::UnsupportedNameType
        )
    )
}
