//! Helpers shared by the WebSocket tests: contexts and test certificates.
#![allow(dead_code)]

use std::time::Duration;

use yoton_core::Context;
use yoton_ws::WsTransport;

pub const WAIT: Duration = Duration::from_secs(10);

/// The time-out of a connect that must fail at once, long before it (a test waits
/// [`WAIT`] for it).
pub const PATIENT: Duration = Duration::from_secs(120);

/// A self-signed certificate (made at test time) and its key, as PEM.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: rustls_pki_types::CertificateDer<'static>,
}

pub fn cert_for(names: &[&str]) -> TestCert {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let c = rcgen::generate_simple_self_signed(names).unwrap();
    TestCert {
        cert_pem: c.cert.pem(),
        key_pem: c.signing_key.serialize_pem(),
        der: c.cert.der().clone(),
    }
}

/// A transport that serves `cert` and trusts only `trusted` (no public roots).
pub fn tls_transport(cert: &TestCert, trusted: &TestCert) -> WsTransport {
    WsTransport::builder()
        .server_cert_pem(cert.cert_pem.clone(), cert.key_pem.clone())
        .webpki_roots(false)
        .add_root_certificates_pem(trusted.cert_pem.clone())
        .build()
        .unwrap()
}

pub fn ctx_with(t: &WsTransport) -> Context {
    Context::builder().transport(t.clone()).build().unwrap()
}

pub fn ws_ctx() -> Context {
    ctx_with(&WsTransport::new())
}

/// A 56-byte package header (PROTOCOL.md section 2), little-endian.
pub fn header(slot: u64, source_id: u64, seq: u64, len: u64) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [
        u64::from_le_bytes(*b"YOTON   "),
        slot,
        source_id,
        seq,
        0,
        0,
        len,
    ] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

/// The fields of a header.
pub fn fields(msg: &[u8]) -> [u64; 7] {
    let mut out = [0u64; 7];
    for (f, chunk) in out.iter_mut().zip(msg[..56].chunks_exact(8)) {
        *f = u64::from_le_bytes(chunk.try_into().unwrap());
    }
    out
}
