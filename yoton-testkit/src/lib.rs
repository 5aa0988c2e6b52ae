//! Test support shared by the yoton-rs test suites (a dev-dependency only, never
//! published):
//!
//! * [`python`]: the interpreter of the venv with the Python reference (made by
//!   `scripts/python-venv.sh`), and commands that run the repository's Python peers.
//!   Nothing here skips: without the venv a test using it FAILS loudly.
//! * [`child`]: a child process whose stdout is read line by line with bounded waits,
//!   its stderr kept for the failure message; SIGKILLed when dropped.
//! * [`proc`]: measurements of the test process from `/proc/self` (descriptors,
//!   threads, resident memory), for the leak and soak tests. Linux only.

pub mod child;
pub mod proc;
pub mod python;
