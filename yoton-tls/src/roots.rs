//! The root certificates a client trusts: the Mozilla roots of `webpki-roots`, the
//! platform's, and extra CAs given as PEM files, PEM text or DER.

use std::path::PathBuf;

use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

use crate::{pem, TlsError};

/// An extra trusted CA certificate (or several, in PEM), read when the transport is
/// built.
///
/// ```
/// use yoton_tls::CaSource;
/// let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
/// let certs = CaSource::Pem(ca.cert.pem().into_bytes()).certificates().unwrap();
/// assert_eq!(certs, CaSource::Der(ca.cert.der().to_vec()).certificates().unwrap());
///
/// let err = CaSource::Pem(b"not PEM".to_vec()).certificates().unwrap_err();
/// assert_eq!(err.to_string(), "no CERTIFICATE found in the CA PEM");
/// ```
#[derive(Clone, Debug)]
pub enum CaSource {
    /// A PEM file with one or more CA certificates.
    PemFile(PathBuf),
    /// PEM text with one or more CA certificates.
    Pem(Vec<u8>),
    /// One CA certificate, DER.
    Der(Vec<u8>),
}

impl CaSource {
    /// The certificates, read and parsed.
    ///
    /// ```
    /// let err = yoton_tls::CaSource::PemFile("/nonexistent/ca.pem".into())
    ///     .certificates()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    /// ```
    pub fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        match self {
            CaSource::PemFile(p) => pem::certs_from_pem_file(p),
            CaSource::Pem(p) => pem::certs_from_pem(p, "the CA PEM"),
            CaSource::Der(d) => Ok(vec![CertificateDer::from(d.clone())]),
        }
    }
}

/// Add the Mozilla root CAs of `webpki-roots`.
///
/// ```
/// let mut store = rustls::RootCertStore::empty();
/// yoton_tls::roots::add_webpki_roots(&mut store);
/// assert!(store.len() > 100);
/// ```
pub fn add_webpki_roots(store: &mut RootCertStore) {
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
}

/// What [`add_native_roots`] found.
#[derive(Debug, Default)]
pub struct NativeRoots {
    /// Certificates found in the platform's stores.
    pub found: usize,
    /// Of these, the ones added.
    pub added: usize,
    /// Of these, the ones that could not be parsed and were left out.
    pub ignored: usize,
    /// Problems met while reading the stores.
    pub errors: Vec<String>,
}

impl NativeRoots {
    /// Whether the platform's stores could not be read at all: nothing found, and
    /// errors.
    ///
    /// ```
    /// let none = yoton_tls::roots::NativeRoots {
    ///     errors: vec!["no store".into()],
    ///     ..Default::default()
    /// };
    /// assert!(none.failed());
    /// assert!(!yoton_tls::roots::NativeRoots::default().failed());
    /// ```
    pub fn failed(&self) -> bool {
        self.found == 0 && !self.errors.is_empty()
    }
}

/// Add the platform's root CAs (`rustls-native-certs`: the system store on Linux,
/// macOS and Windows, or `SSL_CERT_FILE` / `SSL_CERT_DIR`). Certificates that do not
/// parse are left out; the caller decides what the reported problems mean.
///
/// ```
/// let mut store = rustls::RootCertStore::empty();
/// let found = yoton_tls::roots::add_native_roots(&mut store);
/// assert_eq!(store.len(), found.added);
/// assert_eq!(found.found, found.added + found.ignored);
/// ```
pub fn add_native_roots(store: &mut RootCertStore) -> NativeRoots {
    let loaded = rustls_native_certs::load_native_certs();
    let found = loaded.certs.len();
    let errors = loaded.errors.iter().map(|e| e.to_string()).collect();
    let (added, ignored) = store.add_parsable_certificates(loaded.certs);
    NativeRoots {
        found,
        added,
        ignored,
        errors,
    }
}
