//! Human formats for the terminal: counts, sizes, rates, durations, timestamps.

/// `1234567` as `1,234,567`.
pub fn count(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A byte size: `512 B`, `1.5 KB`, `159.0 MB`, `2.1 GB` (powers of 1000, as file sizes).
pub fn bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    match n {
        n if n < 1e3 => format!("{n:.0} B"),
        n if n < 1e6 => format!("{:.1} KB", n / 1e3),
        n if n < 1e9 => format!("{:.1} MB", n / 1e6),
        n => format!("{:.2} GB", n / 1e9),
    }
}

/// A rate per second: `830/s`, `12.4K/s`, `3.1M/s`.
pub fn rate(per_sec: f64) -> String {
    match per_sec {
        r if r < 1e3 => format!("{r:.0}/s"),
        r if r < 1e6 => format!("{:.1}K/s", r / 1e3),
        r => format!("{:.1}M/s", r / 1e6),
    }
}

/// Seconds as `0.42 s`, `12.3 s`, `4m 05s`, `2h 03m`.
pub fn duration(secs: f64) -> String {
    match secs {
        s if s < 10.0 => format!("{s:.2} s"),
        s if s < 60.0 => format!("{s:.1} s"),
        s if s < 3600.0 => format!("{}m {:02}s", (s / 60.0) as u64, (s % 60.0) as u64),
        s => format!(
            "{}h {:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        ),
    }
}

/// A timestamp in ms since the epoch as UTC `YYYY-MM-DDTHH:MM:SS.mmmZ`; the ends of time
/// as `-inf` / `+inf`.
pub fn timestamp(ms: i64) -> String {
    if ms <= -9_223_372_036_854_775 {
        return "-inf".into();
    }
    if ms >= 9_223_372_036_854_775 {
        return "+inf".into();
    }
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_read_as_people_write_them() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(-1000), "-1,000");
        assert_eq!(bytes(159_000_000), "159.0 MB");
        assert_eq!(rate(12_400.0), "12.4K/s");
        assert_eq!(duration(245.0), "4m 05s");
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_796_601_600_123), "2026-12-07T00:00:00.123Z");
        assert_eq!(timestamp(i64::MIN), "-inf");
        assert_eq!(timestamp(i64::MAX), "+inf");
    }
}
