//! Test support shared by the yoton-rs test suites (placeholder; filled in by the
//! refactoring that moves the Python-peer helpers and /proc measurements here).
