//! Certificates and private keys from PEM files and PEM text (and a certificate back
//! to PEM text). Every error names where the PEM came from.

use std::path::Path;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

/// The bytes of a file; the error names the file.
///
/// ```
/// let err = yoton_tls::pem::read_file("/nonexistent/cert.pem".as_ref()).unwrap_err();
/// assert!(matches!(err, yoton_tls::TlsError::Read { .. }));
/// assert!(err.to_string().starts_with("cannot read /nonexistent/cert.pem: "), "{err}");
/// ```
pub fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_err(origin: &str, e: pem::Error) -> TlsError {
    match e {
        pem::Error::NoItemsFound => TlsError::NoPem {
            what: "item",
            origin: origin.to_owned(),
        },
        other => TlsError::Pem {
            origin: origin.to_owned(),
            detail: format!("{other:?}"),
        },
    }
}

/// All certificates (`BEGIN CERTIFICATE` sections) in PEM text, in order; at least
/// one. `origin` says where the text came from, for errors.
///
/// ```
/// let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
/// let certs = yoton_tls::pem::certs_from_pem(cert.cert.pem().as_bytes(), "test").unwrap();
/// assert_eq!(certs[0].as_ref(), cert.cert.der().as_ref());
///
/// let err = yoton_tls::pem::certs_from_pem(b"", "the CA PEM").unwrap_err();
/// assert_eq!(err.to_string(), "no CERTIFICATE found in the CA PEM");
/// ```
pub fn certs_from_pem(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(origin, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoPem {
            what: "CERTIFICATE",
            origin: origin.to_owned(),
        });
    }
    Ok(certs)
}

/// All certificates in a PEM file (see [`certs_from_pem`]); errors name the file.
///
/// ```
/// let err = yoton_tls::pem::certs_from_pem_file("/nonexistent/ca.pem".as_ref()).unwrap_err();
/// assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
/// ```
pub fn certs_from_pem_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certs_from_pem(&read_file(path)?, &path.display().to_string())
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in PEM text. `origin` says where the
/// text came from, for errors.
///
/// ```
/// let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
/// let pem = cert.signing_key.serialize_pem();
/// assert!(yoton_tls::pem::key_from_pem(pem.as_bytes(), "the key PEM").is_ok());
///
/// let err = yoton_tls::pem::key_from_pem(cert.cert.pem().as_bytes(), "cert.pem").unwrap_err();
/// assert_eq!(err.to_string(), "no PRIVATE KEY found in cert.pem");
/// ```
pub fn key_from_pem(pem: &[u8], origin: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoPem {
            what: "PRIVATE KEY",
            origin: origin.to_owned(),
        },
        other => pem_err(origin, other),
    })
}

/// The first private key in a PEM file (see [`key_from_pem`]); errors name the file.
///
/// ```
/// let err = yoton_tls::pem::key_from_pem_file("/nonexistent/key.pem".as_ref()).unwrap_err();
/// assert!(matches!(err, yoton_tls::TlsError::Read { .. }));
/// ```
pub fn key_from_pem_file(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    key_from_pem(&read_file(path)?, &path.display().to_string())
}

/// A private key from DER bytes (PKCS#8, PKCS#1 or SEC1, recognised by their
/// structure). `origin` says where the bytes came from, for errors.
///
/// ```
/// let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
/// assert!(yoton_tls::pem::key_from_der(cert.signing_key.serialize_der(), "a key").is_ok());
/// let err = yoton_tls::pem::key_from_der(b"junk".to_vec(), "the DER private key").unwrap_err();
/// assert!(err.to_string().starts_with("invalid certificate or key in the DER private key"));
/// ```
pub fn key_from_der(der: Vec<u8>, origin: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::try_from(der).map_err(|e| TlsError::Pem {
        origin: origin.to_owned(),
        detail: e.to_owned(),
    })
}

/// PEM text of one DER certificate (a `BEGIN CERTIFICATE` section, 64 characters a
/// line), e.g. to hand a server's certificate to clients as a CA file.
///
/// ```
/// let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
/// let pem = yoton_tls::pem::certificate_pem(cert.cert.der());
/// assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
/// let back = yoton_tls::pem::certs_from_pem(pem.as_bytes(), "the PEM").unwrap();
/// assert_eq!(back[0].as_ref(), cert.cert.der().as_ref());
/// ```
pub fn certificate_pem(der: &[u8]) -> String {
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
            let pem = certificate_pem(&der);
            let back = certs_from_pem(pem.as_bytes(), "test").unwrap();
            assert_eq!(back[0].as_ref(), &der[..], "len {len}");
        }
    }
}
