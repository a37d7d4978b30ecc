//! The per-method table printed when the tracer stops.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use crate::grpc::{CallRecord, Code};

/// Latencies in log-linear buckets: each power of two split into 64, so a bucket is at most
/// 1/64 (1.6%) wide. Bounded memory however long the run, and found with integer operations
/// only: this runs for every call.
#[derive(Debug, Default, Clone)]
struct LatencyHistogram {
    /// Counts of buckets `first..first + counts.len()`: only the range in use is allocated,
    /// about 430 buckets (3.4 KiB) for calls between 100 µs and 10 ms, at most 2,240 (the
    /// bucket of [`LONGEST_NANOS`], plus one).
    first: usize,
    counts: Vec<u64>,
    count: u64,
}

/// Buckets per power of two, as bits.
const SUB_BUCKET_BITS: u32 = 6;
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;
/// Calls longer than about 1,100 s (2^40 ns) are counted in the last bucket.
const LONGEST_NANOS: u64 = (1 << 40) - 1;

/// The bucket of a latency in nanoseconds: below 128 ns one per nanosecond, then 64 per power
/// of two.
const fn bucket(nanos: u64) -> usize {
    let nanos = if nanos > LONGEST_NANOS {
        LONGEST_NANOS
    } else {
        nanos
    };
    if nanos < 2 * SUB_BUCKETS {
        return nanos as usize;
    }
    // The bits below the top `SUB_BUCKET_BITS + 1` are dropped.
    let shift = 63 - nanos.leading_zeros() - SUB_BUCKET_BITS;
    ((shift as u64 + 1) * SUB_BUCKETS + ((nanos >> shift) & (SUB_BUCKETS - 1))) as usize
}

/// The first latency past `bucket`.
fn bucket_end(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < 2 * SUB_BUCKETS {
        return bucket + 1;
    }
    let shift = bucket / SUB_BUCKETS - 1;
    (SUB_BUCKETS + bucket % SUB_BUCKETS + 1) << shift
}

impl LatencyHistogram {
    fn record(&mut self, duration: Duration) {
        let bucket = bucket(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
        if self.counts.is_empty() {
            self.first = bucket;
        }
        if bucket < self.first {
            let below = self.first - bucket;
            self.counts.splice(0..0, std::iter::repeat_n(0, below));
            self.first = bucket;
        }
        let index = bucket - self.first;
        if index >= self.counts.len() {
            self.counts.resize(index + 1, 0);
        }
        self.counts[index] += 1;
        self.count += 1;
    }

    /// The upper edge of the bucket holding the `quantile` sample.
    fn quantile(&self, quantile: f64) -> Duration {
        let rank = ((self.count as f64) * quantile).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Duration::from_nanos(bucket_end(self.first + index));
            }
        }
        Duration::ZERO
    }
}

#[derive(Debug, Default, Clone)]
struct MethodStats {
    calls: u64,
    errors: u64,
    unknown_status: u64,
    latency: LatencyHistogram,
}

#[derive(Debug, Default, Clone)]
pub struct Summary {
    methods: BTreeMap<String, MethodStats>,
}

impl Summary {
    pub fn record(&mut self, call: &CallRecord) {
        // Look up by the name without allocating one per call.
        let name = call.name();
        let stats = match self.methods.get_mut(name) {
            Some(stats) => stats,
            None => self.methods.entry(name.to_owned()).or_default(),
        };
        stats.calls += 1;
        match call.code {
            Some(Code::OK) => {}
            Some(_) => stats.errors += 1,
            None if call.failure_without_code().is_some() => stats.errors += 1,
            None => stats.unknown_status += 1,
        }
        stats.latency.record(call.duration());
    }

    pub fn calls(&self) -> u64 {
        self.methods.values().map(|stats| stats.calls).sum()
    }

    /// The table, one row per method.
    pub fn render(&self) -> String {
        let width = self
            .methods
            .keys()
            .map(String::len)
            .max()
            .unwrap_or(6)
            .max(6);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<width$}  {:>7}  {:>7}  {:>9}  {:>9}  {:>9}",
            "method", "calls", "errors", "p50", "p90", "p99"
        );
        for (method, stats) in &self.methods {
            let errors = if stats.unknown_status > 0 {
                format!("{}+{}?", stats.errors, stats.unknown_status)
            } else {
                stats.errors.to_string()
            };
            let _ = writeln!(
                out,
                "{method:<width$}  {:>7}  {errors:>7}  {:>9}  {:>9}  {:>9}",
                stats.calls,
                format_duration(stats.latency.quantile(0.50)),
                format_duration(stats.latency.quantile(0.90)),
                format_duration(stats.latency.quantile(0.99)),
            );
        }
        out
    }
}

pub fn format_duration(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.0}µs")
    } else if micros < 1e6 {
        format!("{:.2}ms", micros / 1e3)
    } else {
        format!("{:.2}s", micros / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_narrow() {
        for start in [0, 1 << 20] {
            let mut previous_end = start;
            for nanos in start..start + 5_000 {
                let index = bucket(nanos);
                let end = bucket_end(index);
                assert!(nanos < end, "{nanos} in bucket {index} ending at {end}");
                assert!(
                    end - nanos <= 1 + nanos / 64,
                    "{nanos}: bucket too wide ({end})"
                );
                if nanos > start && bucket(nanos - 1) != index {
                    assert_eq!(bucket(nanos - 1) + 1, index, "{nanos}");
                    assert_eq!(previous_end, nanos, "{nanos}");
                }
                previous_end = end;
            }
        }
    }

    #[test]
    fn quantiles_are_within_two_percent() {
        let mut histogram = LatencyHistogram::default();
        for millis in 1..=100 {
            histogram.record(Duration::from_millis(millis));
        }
        for (quantile, expected) in [(0.5, 50.0), (0.9, 90.0), (0.99, 99.0)] {
            let got = histogram.quantile(quantile).as_secs_f64() * 1e3;
            assert!(
                (got - expected).abs() / expected < 0.025,
                "p{quantile}: {got}"
            );
        }
        // 1 to 100 ms: 6.6 powers of two.
        assert_eq!(histogram.counts.len(), 422);
        // Shorter calls extend the range downwards, and calls past the last bucket count in
        // it: memory stays bounded.
        histogram.record(Duration::from_micros(10));
        histogram.record(Duration::from_secs(1 << 40));
        assert_eq!(
            histogram.first + histogram.counts.len(),
            bucket(LONGEST_NANOS) + 1
        );
        let shortest = histogram.quantile(0.0).as_secs_f64() * 1e6;
        assert!((10.0..10.5).contains(&shortest), "{shortest}");
        let longest = histogram.quantile(1.0).as_secs_f64();
        assert!((1099.0..1100.0).contains(&longest), "{longest}");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1.50ms");
        assert_eq!(format_duration(Duration::from_micros(15)), "15µs");
    }
}
