//! The co-runner floor: an unrelated program as busy as the tracer was.

use std::{process::Command, time::Duration};

use anyhow::{Context as _, Result};

use super::{
    Run,
    summary::{number, tracer_total},
};

/// The share of one core the tracer kept busy over its runs (its CPU per second of load).
pub(super) fn tracer_core_share(traced: &[Run]) -> f64 {
    let seconds: f64 = traced
        .iter()
        .filter(|(_, tracer)| tracer.is_some())
        .map(|(client, _)| number(client, "elapsed_s"))
        .sum();
    tracer_total(traced, |stats| stats.cpu_after_attach_us as f64)
        / 1e6
        / seconds.max(f64::MIN_POSITIVE)
}

/// An unrelated program that spins for a share of every 25 ms (about as often as the tracer
/// wakes up to drain the ring at these loads) and sleeps in between: `cargo xtask` itself, run
/// as `co-runner`. Stopped when dropped.
pub struct CoRunner(std::process::Child);

impl CoRunner {
    const PERIOD: Duration = Duration::from_millis(25);

    pub(super) fn start(share: f64) -> Result<CoRunner> {
        let child = Command::new(std::env::current_exe()?)
            .args(["co-runner", "--share", &share.to_string()])
            .spawn()
            .context("starting the co-runner")?;
        Ok(CoRunner(child))
    }

    /// The co-runner's own loop, until killed.
    pub fn spin(share: f64) -> ! {
        // A share that could not be measured (a run whose figures did not parse) spins never;
        // the report shows the share it was given.
        let share = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let busy = CoRunner::PERIOD.mul_f64(share);
        let mut period_start = std::time::Instant::now();
        loop {
            // Timed from waking up, which can come late: the busy time is what is promised.
            let woke = std::time::Instant::now();
            while woke.elapsed() < busy {
                std::hint::spin_loop();
            }
            period_start += CoRunner::PERIOD;
            std::thread::sleep(period_start.saturating_duration_since(std::time::Instant::now()));
        }
    }
}

impl Drop for CoRunner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
