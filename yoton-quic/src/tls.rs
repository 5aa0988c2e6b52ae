//! Certificates, fingerprints and the server certificate verifier.
//!
//! QUIC always runs TLS 1.3. The client verifies the server like a browser does (a
//! chain up to a trusted root, the right name, not expired) unless it was told to pin
//! a certificate by its SHA-256 fingerprint, or, for development only, to accept any.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::QuicError;

/// The ALPN protocol name both ends announce.
pub const ALPN: &[u8] = b"yoton";

/// The crypto provider (ring) used for every configuration of this crate.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The SHA-256 fingerprint of a DER-encoded certificate, as used for pinning.
///
/// Displayed as 32 upper-case hex pairs separated by colons, like
/// `openssl x509 -noout -fingerprint -sha256` prints it; parsed from that form or from
/// 64 plain hex digits.
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
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of these DER bytes.
    pub fn of(der: &[u8]) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut out = [0u8; 32];
        for (o, d) in out.iter_mut().zip(digest.as_ref()) {
            *o = *d;
        }
        Fingerprint(out)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = QuicError;

    fn from_str(s: &str) -> Result<Fingerprint, QuicError> {
        let bad = || QuicError::Fingerprint(s.to_owned());
        let text = s.trim();
        let text = text
            .strip_prefix("SHA256:")
            .or_else(|| text.strip_prefix("sha256:"))
            .unwrap_or(text);
        let digits: Vec<u8> = text
            .bytes()
            .filter(|c| !matches!(c, b':' | b' ' | b'-'))
            .collect();
        if digits.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            *o = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(out))
    }
}

/// Where a certificate (chain) and its key come from.
#[derive(Clone)]
pub(crate) enum IdentitySource {
    PemFiles { cert: PathBuf, key: PathBuf },
    Pem { cert: Vec<u8>, key: Vec<u8> },
    Der { chain: Vec<Vec<u8>>, key: Vec<u8> },
    SelfSigned(Vec<String>),
}

impl fmt::Debug for IdentitySource {
    // Never shows key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentitySource::PemFiles { cert, key } => f
                .debug_struct("PemFiles")
                .field("cert", cert)
                .field("key", key)
                .finish(),
            IdentitySource::Pem { cert, .. } => f
                .debug_struct("Pem")
                .field("cert_bytes", &cert.len())
                .field("key", &"<redacted>")
                .finish(),
            IdentitySource::Der { chain, .. } => f
                .debug_struct("Der")
                .field("certificates", &chain.len())
                .field("key", &"<redacted>")
                .finish(),
            IdentitySource::SelfSigned(names) => f.debug_tuple("SelfSigned").field(names).finish(),
        }
    }
}

/// A loaded certificate chain and key.
pub(crate) struct Identity {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

fn pem_err(origin: &str, e: rustls::pki_types::pem::Error) -> QuicError {
    match e {
        rustls::pki_types::pem::Error::NoItemsFound => QuicError::NoPem {
            what: "item",
            origin: origin.to_owned(),
        },
        other => QuicError::Pem {
            origin: origin.to_owned(),
            detail: format!("{other:?}"),
        },
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, QuicError> {
    std::fs::read(path).map_err(|source| QuicError::Read {
        path: path.to_owned(),
        source,
    })
}

/// All certificates in PEM text.
pub(crate) fn certs_from_pem(
    pem: &[u8],
    origin: &str,
) -> Result<Vec<CertificateDer<'static>>, QuicError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(origin, e))?;
    if certs.is_empty() {
        return Err(QuicError::NoPem {
            what: "CERTIFICATE",
            origin: origin.to_owned(),
        });
    }
    Ok(certs)
}

/// All certificates in a PEM file.
pub(crate) fn certs_from_pem_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, QuicError> {
    certs_from_pem(&read_file(path)?, &path.display().to_string())
}

fn key_from_pem(pem: &[u8], origin: &str) -> Result<PrivateKeyDer<'static>, QuicError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => QuicError::NoPem {
            what: "PRIVATE KEY",
            origin: origin.to_owned(),
        },
        other => pem_err(origin, other),
    })
}

impl IdentitySource {
    pub(crate) fn load(&self) -> Result<Identity, QuicError> {
        match self {
            IdentitySource::PemFiles { cert, key } => {
                let chain = certs_from_pem_file(cert)?;
                let key = key_from_pem(&read_file(key)?, &key.display().to_string())?;
                Ok(Identity { chain, key })
            }
            IdentitySource::Pem { cert, key } => Ok(Identity {
                chain: certs_from_pem(cert, "the certificate PEM")?,
                key: key_from_pem(key, "the key PEM")?,
            }),
            IdentitySource::Der { chain, key } => {
                if chain.is_empty() {
                    return Err(QuicError::Config(
                        "certificate_der needs at least one certificate".into(),
                    ));
                }
                let key = PrivateKeyDer::try_from(key.clone()).map_err(|e| QuicError::Pem {
                    origin: "the DER private key".into(),
                    detail: e.to_owned(),
                })?;
                Ok(Identity {
                    chain: chain
                        .iter()
                        .map(|c| CertificateDer::from(c.clone()))
                        .collect(),
                    key,
                })
            }
            IdentitySource::SelfSigned(names) => {
                let ck = rcgen::generate_simple_self_signed(names.clone())?;
                let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der()).map_err(|e| {
                    QuicError::Pem {
                        origin: "the generated key".into(),
                        detail: e.to_owned(),
                    }
                })?;
                Ok(Identity {
                    chain: vec![ck.cert.der().clone()],
                    key,
                })
            }
        }
    }
}

/// What the client trusts.
#[derive(Clone, Debug)]
pub(crate) struct Trust {
    pub(crate) webpki_roots: bool,
    pub(crate) native_roots: bool,
    pub(crate) extra_cas: Vec<CaSource>,
    pub(crate) pins: Vec<Fingerprint>,
    pub(crate) accept_any: bool,
}

/// An extra trusted CA.
#[derive(Clone, Debug)]
pub(crate) enum CaSource {
    PemFile(PathBuf),
    Pem(Vec<u8>),
    Der(Vec<u8>),
}

impl Trust {
    /// The verifier for these settings.
    pub(crate) fn verifier(
        &self,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<Verifier>, QuicError> {
        let mode = if self.accept_any {
            Mode::AcceptAny
        } else if !self.pins.is_empty() {
            Mode::Pinned(self.pins.clone())
        } else {
            let mut roots = RootCertStore::empty();
            if self.webpki_roots {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            if self.native_roots {
                let found = rustls_native_certs::load_native_certs();
                for e in &found.errors {
                    tracing::warn!(error = %e, "could not load a platform root certificate");
                }
                let (added, ignored) = roots.add_parsable_certificates(found.certs);
                tracing::debug!(added, ignored, "platform root certificates");
            }
            for ca in &self.extra_cas {
                let certs = match ca {
                    CaSource::PemFile(p) => certs_from_pem_file(p)?,
                    CaSource::Pem(p) => certs_from_pem(p, "the CA PEM")?,
                    CaSource::Der(d) => vec![CertificateDer::from(d.clone())],
                };
                for c in certs {
                    roots.add(c)?;
                }
            }
            if roots.is_empty() {
                return Err(QuicError::NoTrustAnchors);
            }
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| QuicError::Config(format!("certificate verifier: {e}")))?;
            Mode::WebPki(webpki)
        };
        Ok(Arc::new(Verifier {
            mode,
            algorithms: provider.signature_verification_algorithms,
        }))
    }
}

#[derive(Debug)]
enum Mode {
    WebPki(Arc<WebPkiServerVerifier>),
    Pinned(Vec<Fingerprint>),
    AcceptAny,
}

/// Verifies the server: by chain (the default), by pinned fingerprint, or not at all
/// (development). Handshake signatures are always checked, so a pinned or accepted
/// certificate still proves that the server holds its key.
#[derive(Debug)]
pub(crate) struct Verifier {
    mode: Mode,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
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
            Mode::Pinned(pins) => {
                let found = Fingerprint::of(end_entity);
                if pins.contains(&found) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::General(format!(
                        "the server certificate's SHA-256 fingerprint {found} is not a pinned one"
                    )))
                }
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

/// PEM text of one DER certificate.
pub(crate) fn pem_certificate(der: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len() * 4 / 3 + 4);
    for chunk in der.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = ((n >> (18 - 6 * i)) & 63) as usize;
                b64.push(char::from(TABLE.get(idx).copied().unwrap_or(b'A')));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip() {
        for len in [1usize, 2, 3, 4, 5, 100, 1000] {
            let der: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let pem = pem_certificate(&der);
            let back = certs_from_pem(pem.as_bytes(), "test").unwrap();
            assert_eq!(back[0].as_ref(), &der[..], "len {len}");
        }
    }
}
