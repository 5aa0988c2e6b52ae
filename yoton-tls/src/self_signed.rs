//! Generating a self-signed certificate (rcgen), for development and for servers that
//! clients pin.

use rustls::pki_types::CertificateDer;

use crate::{pem, Identity, TlsError};

impl Identity {
    /// A new self-signed certificate for these names (DNS names or IP addresses) with
    /// a fresh key. Nobody's CA vouches for it: clients must pin it
    /// ([`crate::Fingerprint`]), trust it as a CA, or, for development, accept any
    /// certificate.
    ///
    /// ```
    /// let id = yoton_tls::Identity::self_signed(["localhost", "127.0.0.1"]).unwrap();
    /// let pem = yoton_tls::pem::certificate_pem(&id.chain[0]);
    /// assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    ///
    /// let err = yoton_tls::Identity::self_signed(["\u{e9}t\u{e9}.example"]).unwrap_err();
    /// assert!(err.to_string().starts_with("cannot generate a self-signed certificate"));
    /// ```
    pub fn self_signed<I, S>(names: I) -> Result<Identity, TlsError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        let generated = rcgen::generate_simple_self_signed(names)?;
        let key = pem::key_from_der(generated.signing_key.serialize_der(), "the generated key")?;
        let cert: CertificateDer<'static> = generated.cert.der().clone();
        Ok(Identity {
            chain: vec![cert],
            key,
        })
    }
}
