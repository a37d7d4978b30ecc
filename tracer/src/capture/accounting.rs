//! What the kernel side delivered, and everything that was lost on the way.

use super::LossKind;

/// Everything that was lost, by cause. Nothing is dropped without being counted here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LossReport {
    /// Kernel-side counters, summed over CPUs, indexed like [`LossKind::ALL`].
    pub kernel: [u64; LossKind::ALL.len()],
    /// Ring buffer records that could not be decoded.
    pub malformed_records: u64,
    /// Bytes that never arrived in order and were turned into gaps by userspace.
    pub missing_bytes: u64,
}

impl LossReport {
    pub fn total_kernel(&self) -> u64 {
        self.kernel.iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.total_kernel() == 0 && self.malformed_records == 0 && self.missing_bytes == 0
    }

    /// `(description, count)` for every non-zero counter.
    pub fn nonzero(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<_> = LossKind::ALL
            .iter()
            .zip(self.kernel)
            .filter(|(_, count)| *count > 0)
            .map(|(kind, count)| (kind.name(), count))
            .collect();
        if self.malformed_records > 0 {
            out.push(("malformed ring buffer records", self.malformed_records));
        }
        if self.missing_bytes > 0 {
            out.push(("bytes missing from reordered streams", self.missing_bytes));
        }
        out
    }
}

/// How much the kernel side delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureTraffic {
    /// Ring buffer records read.
    pub records: u64,
    /// Their total size, headers included: what crossed from kernel to user.
    pub ring_bytes: u64,
}
