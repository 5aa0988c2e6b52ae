//! What a client trusts, and the verifier that follows from it.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::RootCertStore;

use crate::roots::{add_native_roots, add_webpki_roots};
use crate::{CaSource, Fingerprint, PinReport, ServerVerifier, TlsError};

/// What a client trusts: root CAs (the default: the Mozilla roots of `webpki-roots`),
/// or pinned certificates, or, for development only, anything.
///
/// ```
/// use yoton_tls::{config, CaSource, PinReport, Trust, TlsError};
/// let provider = config::provider();
/// let verifier = |trust: &Trust| trust.verifier(&provider, PinReport::Typed);
/// // The default verifies servers against the webpki roots.
/// assert!(verifier(&Trust::default()).is_ok());
/// // With no root at all, nothing could be verified.
/// let none = Trust { webpki_roots: false, ..Trust::default() };
/// assert!(matches!(verifier(&none), Err(TlsError::NoTrustAnchors)));
/// // An own CA.
/// let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
/// let own = Trust { extra_cas: vec![CaSource::Der(ca.cert.der().to_vec())], ..none };
/// assert!(verifier(&own).is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct Trust {
    /// Trust the Mozilla root CAs of `webpki-roots` (default: on).
    pub webpki_roots: bool,
    /// Also trust the platform's root CAs (default: off). Problems reading them are
    /// logged as warnings.
    pub native_roots: bool,
    /// Also trust these CAs.
    pub extra_cas: Vec<CaSource>,
    /// Accept exactly the server certificates with these fingerprints: no CA, name or
    /// date check is made then, the pin alone decides.
    pub pins: Vec<Fingerprint>,
    /// **Development only**: accept any server certificate. Overrides pins and CAs.
    pub accept_any: bool,
}

impl Default for Trust {
    fn default() -> Self {
        Trust {
            webpki_roots: true,
            native_roots: false,
            extra_cas: Vec::new(),
            pins: Vec::new(),
            accept_any: false,
        }
    }
}

impl Trust {
    /// The root CAs: the webpki roots, the platform's and the extra CAs, as enabled.
    ///
    /// ```
    /// let trust = yoton_tls::Trust { webpki_roots: false, ..Default::default() };
    /// assert!(trust.root_store().unwrap().is_empty());
    /// ```
    pub fn root_store(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        if self.webpki_roots {
            add_webpki_roots(&mut roots);
        }
        if self.native_roots {
            let found = add_native_roots(&mut roots);
            for e in &found.errors {
                tracing::warn!(error = %e, "could not load a platform root certificate");
            }
            tracing::debug!(
                added = found.added,
                ignored = found.ignored,
                "platform root certificates"
            );
        }
        for ca in &self.extra_cas {
            for c in ca.certificates()? {
                roots.add(c)?;
            }
        }
        Ok(roots)
    }

    /// The verifier for these settings: accept any, by pin (a mismatch reported as
    /// `pin_report` says), or by chain up to the root CAs (none is an error:
    /// [`TlsError::NoTrustAnchors`]).
    ///
    /// ```
    /// use yoton_tls::{PinReport, Trust};
    /// let pin: yoton_tls::Fingerprint = "AB".repeat(32).parse().unwrap();
    /// let trust = Trust { webpki_roots: false, pins: vec![pin], ..Default::default() };
    /// assert!(trust.verifier(&yoton_tls::provider(), PinReport::Typed).is_ok());
    /// ```
    pub fn verifier(
        &self,
        provider: &Arc<CryptoProvider>,
        pin_report: PinReport,
    ) -> Result<Arc<ServerVerifier>, TlsError> {
        if self.accept_any {
            return Ok(ServerVerifier::accept_any(provider));
        }
        if !self.pins.is_empty() {
            return Ok(ServerVerifier::pinned(
                self.pins.clone(),
                pin_report,
                provider,
            ));
        }
        let roots = self.root_store()?;
        if roots.is_empty() {
            return Err(TlsError::NoTrustAnchors);
        }
        ServerVerifier::webpki(roots, provider)
    }
}
