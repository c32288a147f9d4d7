//! Reporting: the targets and their PASS/FAIL summary, and what the machine and process look like
//! (filesystem type, resident memory).

use std::path::Path;

// Targets.
// Reads are served from the view, without a hop to the node task (issue 7).
pub const GET1_MIN_RATIO: f64 = 0.9;
pub const GET16_MIN_RATIO: f64 = 0.8;
pub const ADD16_MIN_OPS: f64 = 20_000.0;
pub const TABLE_MAX_SECS: f64 = 0.5;
pub const RESTART_MAX_SECS: f64 = 1.0;
pub const RSS_MAX_MIB: f64 = 100.0;

struct Target {
    what: String,
    short: &'static str,
    value: String,
    pass: bool,
}

#[derive(Default)]
pub struct Summary {
    targets: Vec<Target>,
}

impl Summary {
    pub fn target(&mut self, what: &str, short: &'static str, value: String, pass: bool) {
        self.targets.push(Target { what: what.to_owned(), short, value, pass });
    }

    /// Prints every target as PASS/FAIL, then a one-line summary of the figures.
    pub fn print(&self) {
        println!();
        println!("targets");
        for t in &self.targets {
            println!("  {:<48} {:>16}   {}", t.what, t.value, if t.pass { "PASS" } else { "FAIL" });
        }
        let passed = self.targets.iter().filter(|t| t.pass).count();
        let figures: Vec<String> = self.targets.iter().map(|t| format!("{} {}", t.short, t.value)).collect();
        println!();
        println!("summary: {passed}/{} targets met; {}", self.targets.len(), figures.join(", "));
    }
}

pub fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Resident memory of this process, from /proc/self/status.
pub struct Memory {
    pub rss_mib: f64,
    pub hwm_mib: f64,
}

impl Memory {
    pub fn show(&self) -> String {
        format!("{:7.1} MiB", self.rss_mib)
    }
}

pub fn memory() -> Memory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    Memory { rss_mib: field("VmRSS:"), hwm_mib: field("VmHWM:") }
}

/// Returns freed heap to the system (glibc keeps it otherwise), so RSS shows what is live.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The type of the filesystem holding `path`, from /proc/mounts (longest matching mount point).
pub fn fs_type(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, kind) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(point).then(|| (point.len(), kind.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".to_owned(), |(_, kind)| kind)
}
