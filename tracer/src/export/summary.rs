//! The per-method table printed when the tracer stops.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use crate::grpc::{CallRecord, Code};

/// Latencies in logarithmic buckets (2% wide): bounded memory however long the run.
#[derive(Debug, Default, Clone)]
struct LatencyHistogram {
    /// Counts of buckets `first..first + counts.len()`: only the range in use is allocated,
    /// about 230 buckets (1.8 KiB) for calls between 100 µs and 10 ms, at most
    /// [`MAX_BUCKET`] + 1.
    first: usize,
    counts: Vec<u64>,
    count: u64,
}

const BUCKET_GROWTH: f64 = 1.02;
/// The bucket of about 1,000 s: longer calls are counted in it.
const MAX_BUCKET: usize = 1395;

impl LatencyHistogram {
    fn record(&mut self, duration: Duration) {
        let nanos = duration.as_nanos().max(1) as f64;
        let bucket = ((nanos.ln() / BUCKET_GROWTH.ln()) as usize).min(MAX_BUCKET);
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
                let bucket = self.first + index;
                return Duration::from_nanos(BUCKET_GROWTH.powi(bucket as i32 + 1) as u64);
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
        // 1 to 100 ms: 234 buckets.
        assert_eq!(histogram.counts.len(), 234);
        // Shorter calls extend the range downwards, and calls past the last bucket count in
        // it: memory stays bounded.
        histogram.record(Duration::from_micros(10));
        histogram.record(Duration::from_secs(1 << 40));
        assert_eq!(histogram.first + histogram.counts.len(), MAX_BUCKET + 1);
        let shortest = histogram.quantile(0.0).as_secs_f64() * 1e6;
        assert!((10.0..10.5).contains(&shortest), "{shortest}");
        let longest = histogram.quantile(1.0).as_secs_f64();
        assert!((1000.0..1030.0).contains(&longest), "{longest}");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1.50ms");
        assert_eq!(format_duration(Duration::from_micros(15)), "15µs");
    }
}
