//! The error type of this crate.

use std::path::PathBuf;

/// Why a [`crate::QuicTransport`] could not be built (certificates, keys, trust).
/// Errors while connecting or listening are reported by the context, with the same
/// texts, as the reason of the failed `connect` or `bind`.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
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
    /// rustls refused a certificate, key or setting.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A self-signed certificate could not be generated.
    #[error("cannot generate a self-signed certificate: {0}")]
    CertGen(#[from] rcgen::Error),
    /// A fingerprint that is not 32 hex-encoded bytes.
    #[error("invalid SHA-256 fingerprint {0:?}: expected 64 hex digits (colons allowed)")]
    Fingerprint(String),
    /// Nothing to verify servers against.
    #[error("no trusted root certificate: enable webpki_roots or native_roots, add a CA with trust_ca_*, or pin the server certificate")]
    NoTrustAnchors,
    /// Any other invalid setting.
    #[error("{0}")]
    Config(String),
    /// A socket error.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}
