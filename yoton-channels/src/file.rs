//! File wrapper: work in progress.
