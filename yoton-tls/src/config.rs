//! The crypto provider and the rustls client and server configurations of the
//! transports. The protocol versions are always given: TLS 1.2 and 1.3
//! (`rustls::DEFAULT_VERSIONS`, with the `tls12` feature that yoton-tcp and yoton-ws
//! turn on) for TCP and WebSocket, TLS 1.3 only for QUIC.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, ServerConfig, SupportedProtocolVersion};

use crate::{Identity, ServerVerifier, TlsError};

/// The crypto provider (ring) of every configuration built by the transports, chosen
/// explicitly so that the process-wide default (or its absence) does not matter.
///
/// ```
/// let provider = yoton_tls::provider();
/// assert!(!provider.cipher_suites.is_empty());
/// ```
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration that checks servers with `verifier` and presents no client
/// certificate. ALPN and the like are the caller's to add.
///
/// ```
/// use yoton_tls::{config, ServerVerifier};
/// let provider = config::provider();
/// let verifier = ServerVerifier::accept_any(&provider);
/// let versions = &[&yoton_tls::rustls::version::TLS13];
/// let client = config::client_config(&provider, versions, verifier).unwrap();
/// assert!(client.alpn_protocols.is_empty());
/// ```
pub fn client_config(
    provider: &Arc<CryptoProvider>,
    versions: &[&'static SupportedProtocolVersion],
    verifier: Arc<ServerVerifier>,
) -> Result<ClientConfig, TlsError> {
    Ok(ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// A server configuration that presents this identity and asks for no client
/// certificate. A key that does not belong to the certificate is refused
/// ([`TlsError::Tls`]).
///
/// ```
/// use yoton_tls::{config, Identity, TlsError};
/// let provider = config::provider();
/// let versions = yoton_tls::rustls::DEFAULT_VERSIONS;
/// let id = Identity::self_signed(["localhost"]).unwrap();
/// assert!(config::server_config(&provider, versions, id).is_ok());
///
/// let mut mixed = Identity::self_signed(["localhost"]).unwrap();
/// mixed.key = Identity::self_signed(["localhost"]).unwrap().key;
/// let err = config::server_config(&provider, versions, mixed).unwrap_err();
/// assert!(matches!(err, TlsError::Tls(_)), "{err}");
/// ```
pub fn server_config(
    provider: &Arc<CryptoProvider>,
    versions: &[&'static SupportedProtocolVersion],
    identity: Identity,
) -> Result<ServerConfig, TlsError> {
    Ok(ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)?)
}
