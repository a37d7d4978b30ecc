//! Kernel timestamps (CLOCK_MONOTONIC) to wall-clock time.

use crate::stream::monotonic_now_ns;

/// The offset between CLOCK_REALTIME and CLOCK_MONOTONIC, measured once at start. (A wall
/// clock step during the run shifts later spans; monotonic durations stay exact.)
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    offset_ns: i128,
}

impl WallClock {
    pub fn measure() -> WallClock {
        // Bracket the realtime read by two monotonic reads and take the midpoint.
        let before = monotonic_now_ns();
        let realtime = realtime_now_ns();
        let after = monotonic_now_ns();
        let monotonic = before + (after - before) / 2;
        WallClock {
            offset_ns: i128::from(realtime) - i128::from(monotonic),
        }
    }

    /// Unix nanoseconds for a CLOCK_MONOTONIC timestamp.
    pub fn to_unix_nanos(self, monotonic_ns: u64) -> u64 {
        (i128::from(monotonic_ns) + self.offset_ns).max(0) as u64
    }
}

fn realtime_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

/// `HH:MM:SS.mmm` (UTC) of Unix nanoseconds, for console lines.
pub fn time_of_day(unix_nanos: u64) -> String {
    let millis_of_day = (unix_nanos / 1_000_000) % 86_400_000;
    let (hours, rest) = (millis_of_day / 3_600_000, millis_of_day % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    format!(
        "{hours:02}:{minutes:02}:{:02}.{:03}",
        rest / 1000,
        rest % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_monotonic_to_now() {
        let clock = WallClock::measure();
        let converted = clock.to_unix_nanos(monotonic_now_ns());
        let now = realtime_now_ns();
        assert!(converted.abs_diff(now) < 50_000_000, "{converted} vs {now}");
        assert_eq!(
            time_of_day(((13 * 3600 + 4 * 60 + 5) * 1000 + 6) * 1_000_000),
            "13:04:05.006"
        );
    }
}
