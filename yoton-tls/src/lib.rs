//! Shared rustls set-up of the yoton-rs transports (placeholder; filled in by the
//! refactoring that moves the common code of yoton-tcp, yoton-ws and yoton-quic here).
