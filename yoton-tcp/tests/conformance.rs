//! The transport conformance suite (yoton-conformance) over TCP on 127.0.0.1.

yoton_conformance::conformance_tests!(yoton_conformance::Target::new(
    "tcp",
    || yoton_core::Context::builder()
        .transport(yoton_tcp::TcpTransport)
        .build()
        .unwrap(),
    || "tcp://127.0.0.1:0".to_string(),
), also: rebind_after_close, rebind_after_bind);
