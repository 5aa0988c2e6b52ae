//! The shared conformance suite of yoton-conformance over quic:// (real QUIC and TLS
//! on 127.0.0.1; every context serves a certificate of one test CA and trusts that CA).

mod common;

use std::sync::OnceLock;

use yoton_quic::QuicTransport;

fn transport() -> QuicTransport {
    static T: OnceLock<QuicTransport> = OnceLock::new();
    T.get_or_init(common::mesh_transport).clone()
}

yoton_conformance::conformance_tests!(yoton_conformance::Target::new(
    "quic",
    || common::ctx_with(transport()),
    || "quic://127.0.0.1:0".to_string(),
));
