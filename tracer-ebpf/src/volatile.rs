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

/// Copies a `T` made of whole 8-byte words one word at a time. Plain struct assignment makes
/// LLVM call a byte-at-a-time `memmove` subprogram, which costs more than the rest of a small
/// transfer's walk.
///
/// # Safety
/// `dst` and `src` must point at valid, 8-byte-aligned `T`s in map or stack memory.
#[inline(always)]
pub unsafe fn copy_words<T>(dst: *mut T, src: *const T) {
    const { assert!(size_of::<T>().is_multiple_of(8)) };
    let (dst, src) = (dst.cast::<u64>(), src.cast::<u64>());
    for word in 0..size_of::<T>() / 8 {
        // SAFETY: within both `T`s, per the caller's contract.
        unsafe {
            core::ptr::write_volatile(dst.add(word), core::ptr::read_volatile(src.add(word)))
        };
    }
}
