//! The process's own figures (CPU, resident memory, open files and the
//! limit on them), read from /proc when a snapshot is taken. On a system
//! without /proc they are 0.

#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessSample {
    pub cpu_micros: u64,
    pub rss_bytes: u64,
    pub open_fds: u64,
    /// The soft limit on open files (RLIMIT_NOFILE), what `open_fds` runs
    /// into; 0 when unknown (or "unlimited", which Linux does not allow
    /// for it).
    pub max_fds: u64,
}

/// Clock ticks per second of /proc/PID/stat: the kernel's USER_HZ, which is
/// 100 on every architecture Linux exposes to user space.
const USER_HZ: u64 = 100;

pub fn sample() -> ProcessSample {
    let mut s = ProcessSample::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the ")" that closes the command name (which may hold spaces).
        if let Some((_, rest)) = stat.rsplit_once(')') {
            let f: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of stat(5): index 11 and 12 here.
            let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
                + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            s.cpu_micros = ticks * (1_000_000 / USER_HZ);
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(line) = status.lines().find(|l| l.starts_with("VmRSS:")) {
            let kb = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            s.rss_bytes = kb * 1024;
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        s.open_fds = dir.count() as u64;
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
        s.max_fds = max_open_files(&limits);
    }
    s
}

/// The soft limit of the "Max open files" line of /proc/PID/limits
/// (`Max open files  1024  524288  files`); 0 when absent or unlimited.
fn max_open_files(limits: &str) -> u64 {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_of_open_files_is_read_from_proc_limits() {
        let limits =
            "Limit                     Soft Limit           Hard Limit           Units     \n\
            Max processes             63471                63471                processes \n\
            Max open files            1024                 524288               files     \n\
            Max locked memory         8388608              8388608              bytes     \n";
        assert_eq!(super::max_open_files(limits), 1024);
        assert_eq!(
            super::max_open_files("Max open files  unlimited  unlimited  files\n"),
            0
        );
        assert_eq!(super::max_open_files(""), 0);
    }
}
