//! The transport conformance suite (yoton-conformance) over ws:// and wss://. For
//! wss://, a self-signed certificate for 127.0.0.1 and localhost is made at test time
//! and is the only trusted root: real TLS with certificate verification on.

mod common;

use yoton_conformance::{conformance_tests, Target};
use yoton_ws::WsTransport;

fn ws_target() -> Target {
    let t = WsTransport::new();
    Target::new(
        "ws",
        move || common::ctx_with(&t),
        || "ws://127.0.0.1:0".to_string(),
    )
}

fn wss_target() -> Target {
    let cert = common::cert_for(&["127.0.0.1", "localhost"]);
    let t = common::tls_transport(&cert, &cert);
    Target::new(
        "wss",
        move || common::ctx_with(&t),
        || "wss://127.0.0.1:0".to_string(),
    )
}

conformance_tests!(mod ws: ws_target(), also: rebind_after_close, rebind_after_bind);
conformance_tests!(mod wss: wss_target(), also: rebind_after_close, rebind_after_bind);
