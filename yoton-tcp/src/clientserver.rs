//! Client/server helper: work in progress.
