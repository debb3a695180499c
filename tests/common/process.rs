//! Process-level helpers for a [`TestServer`]: its pid, signals, waiting for it to exit, and
//! what the kernel says about it (peak memory, CPU time, open files). Linux only (`/proc`).

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use super::TestServer;

impl TestServer {
    /// The server's process id (panics if it is not running).
    pub fn pid(&self) -> u32 {
        self.process
            .as_ref()
            .and_then(|p| p.pid())
            .expect("server is running")
    }

    /// Sends SIGTERM to the server.
    pub fn sigterm(&self) {
        self.process.as_ref().expect("server is running").sigterm();
    }

    /// Waits up to `timeout` for the server to exit; its exit status, or `None` if it is still
    /// running. The process is reaped (and forgotten) once it exited.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = self.process.as_mut()?.wait_exit(timeout);
        if status.is_some() {
            self.process = None;
        }
        status
    }

    /// The peak resident set size of the server so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .expect("VmHWM in /proc/<pid>/status");
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("VmHWM value");
        kib * 1024
    }

    /// CPU time (user + system) the server used so far, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("read /proc/<pid>/stat");
        // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    /// The targets of the server's open file descriptors (deleted files end in ` (deleted)`).
    pub fn open_files(&self) -> Vec<PathBuf> {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/fd", self.pid())) else {
            return Vec::new();
        };
        dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .collect()
    }
}
