//! Wall-clock time of the streaming scheduler, and how often it reports metrics.

/// How often the scheduler reports metrics to the job's handle while it runs.
pub(super) const REPORT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Milliseconds since the Unix epoch, now.
pub(super) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
