//! Measurements of the test process from `/proc/self` (Linux).

use std::collections::BTreeMap;

/// The number of entries of the directory `path`; panics when it cannot be read.
pub fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .count()
}

/// Open file descriptors of this process.
pub fn fds() -> usize {
    count_dir("/proc/self/fd")
}

/// Threads of this process.
pub fn threads() -> usize {
    count_dir("/proc/self/task")
}

/// The field `name` (in kB, such as `VmRSS` or `VmPeak`) of `/proc/self/status`, in
/// KiB; panics when it is missing.
pub fn status_kib(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in /proc/self/status"))
}

/// Resident memory of this process (VmRSS), in KiB.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS")
}

/// ([`fds`], [`threads`], [`rss_kib`]) of this process, in one call.
pub fn sample() -> (usize, usize, u64) {
    (fds(), threads(), rss_kib())
}

/// The names of this process's threads, counted and sorted by name
/// ("tokio-runtime-worker x2, yoton x3").
pub fn thread_names() -> String {
    let mut names = BTreeMap::<String, usize>::new();
    for t in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        *names.entry(name.trim().to_owned()).or_default() += 1;
    }
    names
        .iter()
        .map(|(n, k)| format!("{n} x{k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_this_process() {
        let (fd, th, rss) = sample();
        assert!(fd >= 3, "stdin, stdout and stderr at least: {fd}");
        assert!(th >= 1);
        assert!(rss > 0);
        assert!(status_kib("VmPeak") >= rss, "virtual peak vs resident");
        let names = thread_names();
        assert!(names.contains(" x"), "{names:?}");
    }
}
