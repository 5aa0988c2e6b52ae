//! Runnable examples of yoton-rs; see `examples/` and run them with
//! `cargo run --example NAME`.
