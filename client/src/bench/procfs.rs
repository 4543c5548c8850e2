//! Figures about processes on this host, from `/proc`: resident memory and
//! CPU time of the server (given its pid) and of the bench itself, so that a
//! run says where the machine's time went.

use std::time::{Duration, Instant};

use crate::bench::report::Summary;

/// Clock ticks per second of `utime`/`stime` in `/proc/<pid>/stat`
/// (`USER_HZ`, 100 on every mainstream Linux architecture).
const USER_HZ: u64 = 100;

/// The resident set of process `pid`, in KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    vm_rss(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The bench's own resident set, in KiB.
pub(crate) fn own_rss_kib() -> Option<u64> {
    vm_rss(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// CPU time (user + system, all threads) of process `pid`.
pub(crate) fn cpu_time(pid: u32) -> Option<Duration> {
    stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The bench's own CPU time.
pub(crate) fn own_cpu_time() -> Option<Duration> {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// CPU time used by the server and the bench from a starting point.
#[derive(Debug)]
pub(crate) struct CpuMeter {
    server_pid: Option<u32>,
    started: Instant,
    server: Option<Duration>,
    bench: Option<Duration>,
}

/// CPU time used over a window that ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuUsage {
    wall: Duration,
    server: Option<Duration>,
    bench: Option<Duration>,
}

impl CpuMeter {
    /// Starts the window now.
    pub(crate) fn start(server_pid: Option<u32>) -> Self {
        Self {
            server_pid,
            started: Instant::now(),
            server: server_pid.and_then(cpu_time),
            bench: own_cpu_time(),
        }
    }

    /// Ends the window now.
    pub(crate) fn stop(&self) -> CpuUsage {
        let used = |before: Option<Duration>, after: Option<Duration>| {
            Some(after?.saturating_sub(before?))
        };
        CpuUsage {
            wall: self.started.elapsed(),
            server: used(self.server, self.server_pid.and_then(cpu_time)),
            bench: used(self.bench, own_cpu_time()),
        }
    }
}

impl CpuUsage {
    /// The window's wall-clock length.
    pub(crate) fn wall(&self) -> Duration {
        self.wall
    }

    /// The server's CPU time in the window, when its pid is known.
    pub(crate) fn server(&self) -> Option<Duration> {
        self.server
    }

    /// Adds, for the server (when its pid is known) and for the bench, the
    /// cores used on average and the CPU time per operation (`unit` names
    /// one, e.g. "msg").
    pub(crate) fn report(&self, summary: &mut Summary, operations: u64, unit: &str) {
        self.report_as(summary, "", operations, unit);
    }

    /// [`Self::report`] under JSON keys starting with `prefix`, for a
    /// scenario that measures several windows.
    pub(crate) fn report_as(
        &self,
        summary: &mut Summary,
        prefix: &str,
        operations: u64,
        unit: &str,
    ) {
        for (who, used) in [("server", self.server), ("bench", self.bench)] {
            cpu_field(
                summary,
                &format!("{prefix}{who}_cpu"),
                &format!("{who} CPU"),
                used,
                self.wall,
                (operations, unit),
                "unknown (pass --server-pid)",
            );
        }
    }

    /// The server's figures alone, under JSON key `key` and `label`, for a
    /// scenario that measures several servers (`missing`: what to say
    /// without its pid).
    pub(crate) fn report_server_as(
        &self,
        summary: &mut Summary,
        key: &str,
        label: &str,
        operations: u64,
        unit: &str,
        missing: &str,
    ) {
        cpu_field(
            summary,
            key,
            label,
            self.server,
            self.wall,
            (operations, unit),
            missing,
        );
    }

    /// The bench's own figures alone, under JSON key `bench_cpu`.
    pub(crate) fn report_bench(&self, summary: &mut Summary, operations: u64, unit: &str) {
        cpu_field(
            summary,
            "bench_cpu",
            "bench CPU",
            self.bench,
            self.wall,
            (operations, unit),
            "unknown",
        );
    }
}

/// One process's cores used on average over `wall` and CPU time per
/// operation (`per`: how many, and what one is called), or `missing`
/// without its figure.
fn cpu_field(
    summary: &mut Summary,
    key: &str,
    label: &str,
    used: Option<Duration>,
    wall: Duration,
    per: (u64, &str),
    missing: &str,
) {
    let (operations, unit) = per;
    let Some(used) = used else {
        summary.field(key, label, serde_json::Value::Null, missing);
        return;
    };
    let wall = wall.as_secs_f64().max(f64::EPSILON);
    let used = used.as_secs_f64();
    let cores = used / wall;
    let per_op_us = used * 1e6 / operations.max(1) as f64;
    summary.field(
        key,
        label,
        serde_json::json!({
            "cores": (cores * 100.0).round() / 100.0,
            "us_per_op": (per_op_us * 10.0).round() / 10.0,
        }),
        format!("{cores:.2} cores, {per_op_us:.1} µs per {unit}"),
    );
}

/// The `VmRSS:  1234 kB` line of a `/proc/<pid>/status`.
fn vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// utime + stime of a `/proc/<pid>/stat` line. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after its last `)`.
fn stat_cpu(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state (3), ppid (4), …, utime (14), stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tkanald\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(vm_rss(status), Some(12345));
        assert_eq!(vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn reads_cpu_time_past_odd_names() {
        let stat = "42 (tokio (rt) x) S 1 42 42 0 -1 4194304 100 0 0 0 250 150 0 0 20 0 8 0";
        assert_eq!(stat_cpu(stat), Some(Duration::from_secs(4)));
    }

    #[test]
    fn reads_our_own_process() {
        assert!(own_rss_kib().is_some_and(|kib| kib > 0));
        assert!(own_cpu_time().is_some());
    }
}
