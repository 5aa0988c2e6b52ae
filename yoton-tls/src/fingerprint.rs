//! SHA-256 fingerprints of certificates, the unit of certificate pinning.

use std::fmt;
use std::str::FromStr;

use crate::TlsError;

/// The SHA-256 fingerprint of a DER-encoded certificate, as used for pinning.
///
/// Displayed as 32 upper-case hex pairs separated by colons, like
/// `openssl x509 -noout -fingerprint -sha256` prints it; parsed from that form (with or
/// without a `SHA256:` prefix) or from 64 plain hex digits.
///
/// ```
/// use yoton_tls::Fingerprint;
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
    ///
    /// ```
    /// let fp = yoton_tls::Fingerprint::of(b"");
    /// // The SHA-256 of nothing.
    /// assert!(fp.to_string().starts_with("E3:B0:C4:42"));
    /// ```
    pub fn of(der: &[u8]) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut out = [0u8; 32];
        for (o, d) in out.iter_mut().zip(digest.as_ref()) {
            *o = *d;
        }
        Fingerprint(out)
    }

    /// The 32 bytes.
    ///
    /// ```
    /// let fp = yoton_tls::Fingerprint([7; 32]);
    /// assert_eq!(fp.as_bytes(), &[7; 32]);
    /// ```
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
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Fingerprint, TlsError> {
        let bad = || TlsError::Fingerprint(s.to_owned());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_forms() {
        let fp = Fingerprint::of(b"abc");
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            fp.to_string().replace(':', ""),
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
        );
        let with_prefix = format!("SHA256:{fp}");
        assert_eq!(with_prefix.parse::<Fingerprint>().ok(), Some(fp));
        assert!("zz".repeat(32).parse::<Fingerprint>().is_err());
    }
}
