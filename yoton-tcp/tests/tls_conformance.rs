//! The transport conformance suite (yoton-conformance) over tls:// on 127.0.0.1: real
//! TLS with verification on. A self-signed certificate for 127.0.0.1 and localhost is
//! made at test time; every context serves it and trusts only it.

use std::sync::OnceLock;

use yoton_tcp::TlsTransport;

fn transport() -> TlsTransport {
    static T: OnceLock<TlsTransport> = OnceLock::new();
    T.get_or_init(|| {
        let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let cert = rcgen::generate_simple_self_signed(names).unwrap();
        TlsTransport::builder()
            .certificate_pem(cert.cert.pem(), cert.signing_key.serialize_pem())
            .webpki_roots(false)
            .trust_ca_pem(cert.cert.pem())
            .build()
            .unwrap()
    })
    .clone()
}

yoton_conformance::conformance_tests!(yoton_conformance::Target::new(
    "tls",
    || yoton_core::Context::builder()
        .transport(transport())
        .build()
        .unwrap(),
    || "tls://127.0.0.1:0".to_string(),
), also: rebind_after_close, rebind_after_bind);
