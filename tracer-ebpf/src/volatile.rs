//! Field access through pointers into map memory that the compiler may not cache in registers.
//!
//! Loop state lives in map values rather than on the stack: read back from memory at the top
//! of every iteration, it looks the same to the verifier each time round, so the verifier can
//! prune instead of following every iteration's exact values.

/// Reads `(*ptr).field` (nested fields allowed) with a volatile load.
macro_rules! get {
    ($ptr:expr, $($field:ident).+) => {
        // SAFETY: callers pass pointers to this program's map values, valid while it runs.
        unsafe { core::ptr::read_volatile(&raw const (*$ptr).$($field).+) }
    };
}

/// Writes `(*ptr).field` (nested fields allowed) with a volatile store.
macro_rules! set {
    ($ptr:expr, $($field:ident).+, $value:expr) => {{
        let value = $value;
        // SAFETY: callers pass pointers to this program's map values, valid while it runs.
        unsafe { core::ptr::write_volatile(&raw mut (*$ptr).$($field).+, value) }
    }};
}
