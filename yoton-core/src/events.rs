//! The Yoton event system (PROTOCOL.md section 7). Work in progress.
