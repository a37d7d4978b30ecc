//! How busy the whole machine was during a run, from /proc/stat.

/// Busy and total CPU time of the whole machine (from /proc/stat), to tell how many cores a load
/// kept busy.
pub(super) struct MachineCpu {
    busy: u64,
    /// Time the hypervisor ran something else while this machine's CPUs had work (part of
    /// `busy`): a run during which it took much is slower for reasons of the host, not ours.
    steal: u64,
    total: u64,
    pub(super) cores: usize,
}

/// How the whole machine was used during a run.
pub(super) struct MachineUse {
    /// Cores kept busy, on average.
    pub(super) busy_cores: f64,
    /// The share of the machine's CPU time the hypervisor took.
    pub(super) steal_share: f64,
}

impl MachineCpu {
    pub(super) fn now() -> MachineCpu {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cores = stat
            .lines()
            .filter(|line| line.starts_with("cpu") && !line.starts_with("cpu "))
            .count();
        // user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|field| field.parse().ok())
            .collect();
        let total = ticks.iter().sum();
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        MachineCpu {
            busy: total - idle,
            steal: ticks.get(7).copied().unwrap_or(0),
            total,
            cores,
        }
    }

    /// How the machine was used since `self` was taken.
    pub(super) fn use_since(&self) -> MachineUse {
        let now = MachineCpu::now();
        let total = now.total.saturating_sub(self.total).max(1) as f64;
        MachineUse {
            busy_cores: now.busy.saturating_sub(self.busy) as f64 / total * self.cores as f64,
            steal_share: now.steal.saturating_sub(self.steal) as f64 / total,
        }
    }
}
