//! Deterministic byte patterns: a workload sends `pattern(seed, 0..len)`; the test rebuilds the
//! same bytes to check what was captured. Different seeds give streams that cannot be confused.

/// The byte at `offset` of stream `seed`. Not periodic over short ranges, so a misplaced chunk
/// does not match by accident.
pub fn byte_at(seed: u64, offset: u64) -> u8 {
    let mut x =
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ offset.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    (x >> 29) as u8
}

pub fn pattern(seed: u64, start: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|index| byte_at(seed, start + index))
        .collect()
}
