//! # yoton-tls
//!
//! The rustls set-up shared by the encrypted transports of yoton-rs: `tls://` and
//! `tcps://` (yoton-tcp), `wss://` (yoton-ws) and `quic://` (yoton-quic). Certificates
//! are handled in this one place:
//!
//! - [`pem`]: certificates and keys from PEM files and text (and a certificate back
//!   to PEM).
//! - [`IdentitySource`] and [`Identity`]: a server's certificate chain and key, from PEM
//!   files, PEM text, DER, or generated self-signed ([`Identity::self_signed`]).
//! - [`roots`]: the root certificates a client trusts: the Mozilla roots of
//!   `webpki-roots`, the platform's, and extra CAs ([`CaSource`]).
//! - [`Fingerprint`]: the SHA-256 fingerprint of a certificate, for pinning.
//! - [`Trust`] and [`ServerVerifier`]: how a client checks a server: by chain (the
//!   default), by pinned fingerprint, or, for development only, not at all.
//! - [`config`]: the crypto provider (ring) and the rustls client and server
//!   configurations.
//! - [`TlsError`]: what went wrong, saying what to do about it.
//!
//! What belongs to one transport stays there: the tokio-rustls acceptor of yoton-tcp
//! and yoton-ws, the quinn configuration and ALPN of yoton-quic, and the advice each
//! gives when a handshake fails (it names that transport's builder methods).
//!
//! ```
//! use yoton_tls::{config, Fingerprint, Identity, PinReport, Trust};
//!
//! // A server with a generated certificate...
//! let provider = config::provider();
//! let identity = Identity::self_signed(["localhost", "127.0.0.1"]).unwrap();
//! let pin = Fingerprint::of(&identity.chain[0]);
//! let server = config::server_config(&provider, yoton_tls::rustls::DEFAULT_VERSIONS, identity).unwrap();
//! assert!(server.alpn_protocols.is_empty());
//!
//! // ... and a client that accepts exactly that certificate.
//! let trust = Trust { pins: vec![pin], ..Trust::default() };
//! let verifier = trust.verifier(&provider, PinReport::Typed).unwrap();
//! let client = config::client_config(&provider, yoton_tls::rustls::DEFAULT_VERSIONS, verifier).unwrap();
//! # let _ = client;
//! ```
#![deny(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod config;
mod error;
mod fingerprint;
mod identity;
pub mod pem;
pub mod roots;
mod self_signed;
mod trust;
mod verifier;

pub use config::provider;
pub use error::{handshake_error_is_final, rustls_error, TlsError};
pub use fingerprint::Fingerprint;
pub use identity::{Identity, IdentitySource};
pub use roots::CaSource;
pub use trust::Trust;
pub use verifier::{NotPinned, PinReport, ServerVerifier};

/// Re-exported rustls (the version this crate uses).
///
/// ```
/// let _provider = yoton_tls::rustls::crypto::ring::default_provider();
/// ```
pub use rustls;
