//! CPU time from /proc, for the benches that split a run's CPU between its parties: this
//! process's threads by name, PostgreSQL's processes, and the machine's totals.

/// `(comm, utime + stime in seconds)` from a /proc `stat` file.
fn proc_stat(path: &std::path::Path) -> Option<(String, f64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let (head, tail) = text.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let fields: Vec<&str> = tail.split_whitespace().collect();
    // After the comm: state is field 3, utime 14 and stime 15 (1-based), clock ticks of 1/100 s.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((comm, ticks / 100.0))
}

/// CPU seconds used so far by each thread of this process, with the thread's name.
pub fn threads() -> Vec<(String, f64)> {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| proc_stat(&task.path().join("stat")))
        .collect()
}

/// CPU seconds used so far by PostgreSQL's processes.
pub fn postgres() -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|process| proc_stat(&process.path().join("stat")))
        .filter(|(comm, _)| comm == "postgres")
        .map(|(_, secs)| secs)
        .sum()
}

/// The machine's busy and idle seconds so far, all cores together: the first line of
/// /proc/stat, `cpu user nice system idle iowait irq softirq steal guest ...` (guest time is
/// already counted in user time, so only the first eight count).
pub fn machine() -> (f64, f64) {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return (0.0, 0.0);
    };
    let ticks: Vec<f64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|t| t.parse().ok())
        .collect();
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    ((ticks.iter().sum::<f64>() - idle) / 100.0, idle / 100.0)
}
