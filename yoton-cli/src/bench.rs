//! `yoton bench`: not written yet (issue 8). This module is a placeholder meant to be
//! replaced as a whole; `main.rs` only calls [`run`] with the raw arguments.

use std::process::ExitCode;

use crate::error::EXIT_USAGE;

/// Run the benchmark. For now: say so and exit 2.
pub fn run(_args: &[String]) -> ExitCode {
    eprintln!("yoton bench: not yet implemented; see issue 8");
    ExitCode::from(EXIT_USAGE)
}
