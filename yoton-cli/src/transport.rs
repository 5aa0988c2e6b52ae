//! Transport settings on the command line, and the context made with them.
//!
//! Without options the context is [`yoton::context()`]: every compiled-in transport
//! with its defaults. The encrypted transports (`tls://`, `wss://`, `quic://`) take
//! the same options: a server certificate to bind or listen (`--cert`/`--key`, or
//! `--self-signed` for development; quic:// always needs one) and, for a client, a
//! way to trust a server that is not signed by a public CA (`--pin`, `--ca`, or
//! `--insecure`).

use std::path::PathBuf;

use yoton::Context;
use yoton_tls::{Fingerprint, Identity};

use crate::error::{CliError, Result};

/// Transport options: certificates and trust of tls://, wss:// and quic://.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TransportArgs {
    /// tls://, wss://, quic://: serve this certificate chain (PEM file) when binding
    /// or listening
    #[arg(
        help_heading = "TLS options (tls://, wss://, quic://)",
        long,
        value_name = "FILE",
        requires = "key"
    )]
    pub cert: Option<PathBuf>,
    /// The private key (PEM file) of --cert
    #[arg(
        help_heading = "TLS options (tls://, wss://, quic://)",
        long,
        value_name = "FILE",
        requires = "cert"
    )]
    pub key: Option<PathBuf>,
    /// Serve a generated self-signed certificate for localhost and 127.0.0.1
    /// (development); its SHA-256 fingerprint is printed on stderr, for --pin
    #[arg(
        help_heading = "TLS options (tls://, wss://, quic://)",
        long,
        conflicts_with = "cert"
    )]
    pub self_signed: bool,
    /// Accept exactly the server certificate with this SHA-256 fingerprint (hex,
    /// colons optional)
    #[arg(
        help_heading = "TLS options (tls://, wss://, quic://)",
        long,
        value_name = "SHA256"
    )]
    pub pin: Vec<String>,
    /// Also trust the CA certificates in this PEM file
    #[arg(
        help_heading = "TLS options (tls://, wss://, quic://)",
        long,
        value_name = "FILE"
    )]
    pub ca: Vec<PathBuf>,
    /// Accept any server certificate (development only: no protection)
    #[arg(help_heading = "TLS options (tls://, wss://, quic://)", long)]
    pub insecure: bool,
}

/// The client's trust options on a builder of tls://, wss:// or quic:// (their
/// methods share names): the pins, the CAs, and `--insecure`.
#[cfg(any(feature = "tcp", feature = "ws", feature = "quic"))]
macro_rules! with_trust {
    ($builder:expr, $args:expr, $tls:expr) => {{
        let mut b = $builder;
        for pin in &$tls.pins {
            b = b.pin_certificate(*pin);
        }
        for ca in &$args.ca {
            b = b.trust_ca_pem_file(ca);
        }
        if $args.insecure {
            b = b.dangerous_accept_any_certificate();
        }
        b
    }};
}

/// What the encrypted transports are built with.
#[cfg_attr(
    not(any(feature = "tcp", feature = "ws", feature = "quic")),
    allow(dead_code)
)]
struct Tls {
    /// The generated self-signed certificate, when asked for.
    generated: Option<Identity>,
    pins: Vec<Fingerprint>,
}

impl Tls {
    /// The generated certificate chain and key as DER bytes (what the tls:// and
    /// quic:// builders take).
    #[cfg(any(feature = "tcp", feature = "quic"))]
    fn generated_der(&self) -> Option<(Vec<Vec<u8>>, Vec<u8>)> {
        let id = self.generated.as_ref()?;
        let chain = id.chain.iter().map(|c| c.to_vec()).collect();
        Some((chain, id.key.secret_der().to_vec()))
    }
}

impl TransportArgs {
    /// A context with every compiled-in transport, set up as asked.
    #[cfg_attr(
        not(any(feature = "tcp", feature = "ws", feature = "quic")),
        allow(unused_mut, unused_variables)
    )]
    pub fn context(&self) -> Result<Context> {
        let custom = self.cert.is_some()
            || self.self_signed
            || !self.pin.is_empty()
            || !self.ca.is_empty()
            || self.insecure;
        if !custom {
            return Ok(yoton::context()?);
        }
        let tls = self.tls()?;
        let mut registry = yoton::registry();
        #[cfg(feature = "tcp")]
        registry.register(std::sync::Arc::new(self.tcp_tls(&tls)?));
        #[cfg(feature = "ws")]
        registry.register(std::sync::Arc::new(self.ws(&tls)?));
        #[cfg(feature = "quic")]
        registry.register(std::sync::Arc::new(self.quic(&tls)?));
        Ok(Context::builder().registry(registry).build()?)
    }

    /// The pins, and one self-signed certificate for every transport (its
    /// fingerprint printed once).
    fn tls(&self) -> Result<Tls> {
        let pins = self
            .pin
            .iter()
            .map(|pin| {
                pin.parse()
                    .map_err(|e| CliError::Usage(format!("--pin {pin}: {e}")))
            })
            .collect::<Result<Vec<Fingerprint>>>()?;
        let mut generated = None;
        if self.self_signed {
            let id = Identity::self_signed(["localhost", "127.0.0.1"])
                .map_err(|e| CliError::Failed(e.to_string()))?;
            if let Some(leaf) = id.chain.first() {
                eprintln!("yoton: certificate fingerprint {}", Fingerprint::of(leaf));
            }
            generated = Some(id);
        }
        Ok(Tls { generated, pins })
    }

    /// tls:// and tcps:// as asked.
    #[cfg(feature = "tcp")]
    fn tcp_tls(&self, tls: &Tls) -> Result<yoton::tcp::TlsTransport> {
        let mut b = yoton::tcp::TlsTransport::builder();
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            b = b.certificate_pem_files(cert, key);
        }
        if let Some((chain, key)) = tls.generated_der() {
            b = b.certificate_der(chain, key);
        }
        b = with_trust!(b, self, tls);
        b.build().map_err(|e| CliError::Failed(format!("TLS: {e}")))
    }

    /// ws:// and wss:// as asked.
    #[cfg(feature = "ws")]
    fn ws(&self, tls: &Tls) -> Result<yoton::ws::WsTransport> {
        let mut b = yoton::ws::WsTransport::builder();
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            b = b.server_cert_pem_files(cert, key);
        }
        if let Some(id) = &tls.generated {
            b = b.server_cert_der(id.chain.clone(), id.key.clone_key());
        }
        b = with_trust!(b, self, tls);
        b.build()
            .map_err(|e| CliError::Failed(format!("WebSocket: {e}")))
    }

    /// quic:// as asked.
    #[cfg(feature = "quic")]
    fn quic(&self, tls: &Tls) -> Result<yoton::quic::QuicTransport> {
        let mut b = yoton::quic::QuicTransport::builder();
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            b = b.certificate_pem_files(cert, key);
        }
        if let Some((chain, key)) = tls.generated_der() {
            b = b.certificate_der(chain, key);
        }
        b = with_trust!(b, self, tls);
        b.build()
            .map_err(|e| CliError::Failed(format!("QUIC: {e}")))
    }
}
