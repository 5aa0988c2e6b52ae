//! Transport settings on the command line, and the context made with them.
//!
//! Without options the context is [`yoton::context()`]: every compiled-in transport
//! with its defaults. QUIC (feature `quic`) needs more to be useful: a server
//! certificate to bind or listen (`--cert`/`--key`, or `--self-signed` for
//! development) and, for a client, a way to trust a server that is not signed by a
//! public CA (`--pin`, `--ca`, or `--insecure`).

use yoton::Context;

use crate::error::Result;

/// Transport options (only those of the transports compiled in).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TransportArgs {
    /// quic://: serve this certificate chain (PEM file) when binding or listening
    #[cfg(feature = "quic")]
    #[arg(
        help_heading = "QUIC options",
        long,
        value_name = "FILE",
        requires = "key"
    )]
    pub cert: Option<std::path::PathBuf>,
    /// quic://: the private key (PEM file) of --cert
    #[cfg(feature = "quic")]
    #[arg(
        help_heading = "QUIC options",
        long,
        value_name = "FILE",
        requires = "cert"
    )]
    pub key: Option<std::path::PathBuf>,
    /// quic://: serve a generated self-signed certificate for localhost and 127.0.0.1
    /// (development); its SHA-256 fingerprint is printed on stderr, for --pin
    #[cfg(feature = "quic")]
    #[arg(help_heading = "QUIC options", long, conflicts_with = "cert")]
    pub self_signed: bool,
    /// quic://: accept exactly the server certificate with this SHA-256 fingerprint
    /// (hex, colons optional)
    #[cfg(feature = "quic")]
    #[arg(help_heading = "QUIC options", long, value_name = "SHA256")]
    pub pin: Vec<String>,
    /// quic://: also trust the CA certificates in this PEM file
    #[cfg(feature = "quic")]
    #[arg(help_heading = "QUIC options", long, value_name = "FILE")]
    pub ca: Vec<std::path::PathBuf>,
    /// quic://: accept any server certificate (development only: no protection)
    #[cfg(feature = "quic")]
    #[arg(help_heading = "QUIC options", long)]
    pub insecure: bool,
}

impl TransportArgs {
    /// A context with every compiled-in transport, set up as asked.
    pub fn context(&self) -> Result<Context> {
        #[cfg(feature = "quic")]
        if let Some(quic) = self.quic()? {
            let mut registry = yoton::registry();
            registry.register(std::sync::Arc::new(quic));
            return Ok(Context::builder().registry(registry).build()?);
        }
        Ok(yoton::context()?)
    }

    /// The QUIC transport asked for (None: the default one).
    #[cfg(feature = "quic")]
    fn quic(&self) -> Result<Option<yoton::quic::QuicTransport>> {
        use crate::error::CliError;
        use yoton::quic::{Fingerprint, QuicTransport};

        let custom = self.cert.is_some()
            || self.self_signed
            || !self.pin.is_empty()
            || !self.ca.is_empty()
            || self.insecure;
        if !custom {
            return Ok(None);
        }
        let mut b = QuicTransport::builder();
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            b = b.certificate_pem_files(cert, key);
        }
        if self.self_signed {
            b = b.self_signed_for(["localhost", "127.0.0.1"]);
        }
        for pin in &self.pin {
            let fp: Fingerprint = pin
                .parse()
                .map_err(|e| CliError::Usage(format!("--pin {pin}: {e}")))?;
            b = b.pin_certificate(fp);
        }
        for ca in &self.ca {
            b = b.trust_ca_pem_file(ca);
        }
        if self.insecure {
            b = b.dangerous_accept_any_certificate();
        }
        let t = b
            .build()
            .map_err(|e| CliError::Failed(format!("QUIC: {e}")))?;
        if self.self_signed {
            if let Some(fp) = t.fingerprint() {
                eprintln!("yoton: QUIC certificate fingerprint {fp}");
            }
        }
        Ok(Some(t))
    }
}
