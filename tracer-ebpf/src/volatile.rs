//! Values the programs keep in map memory, read and written through volatile accesses that the
//! compiler may not cache in registers.
//!
//! Loop state lives in map values rather than on the stack: read back from memory at the top
//! of every iteration, it looks the same to the verifier each time round, so the verifier can
//! prune instead of following every iteration's exact values.
//!
//! A [`Volatile`] is made, with `unsafe`, where a map lookup hands out a pointer; its fields are
//! then read and written safely with [`get!`], [`set!`] and [`field!`], which accept nothing
//! else.

/// A pointer to a `T` that stays valid while the program runs and that nothing else touches
/// meanwhile: a per-CPU scratch value, or a map entry the program does not delete while it
/// holds this.
#[repr(transparent)]
pub struct Volatile<T>(*mut T);

impl<T> Clone for Volatile<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Volatile<T> {}

impl<T> Volatile<T> {
    /// # Safety
    /// `ptr` points at a valid, aligned `T` that stays valid while the program runs, and that
    /// no other CPU accesses meanwhile.
    #[inline(always)]
    pub const unsafe fn new(ptr: *mut T) -> Self {
        Volatile(ptr)
    }

    #[inline(always)]
    pub const fn as_ptr(self) -> *mut T {
        self.0
    }
}

/// Reads `(*ptr).field` (nested fields allowed) of a [`Volatile`] with a volatile load.
//
// The macros bind no local variable: a named binding is kept for debuginfo, and that alone
// changed the code LLVM made enough to double the verifier's work on `sys_exit_transfer`.
macro_rules! get {
    ($ptr:expr, $($field:ident).+) => {
        // SAFETY: a `Volatile` points at a valid value while the program runs.
        unsafe {
            core::ptr::read_volatile(
                &raw const (*$crate::volatile::Volatile::as_ptr($ptr)).$($field).+,
            )
        }
    };
}

/// Writes `(*ptr).field` (nested fields allowed) of a [`Volatile`] with a volatile store.
macro_rules! set {
    ($ptr:expr, $($field:ident).+, $value:expr) => {{
        let value = $value;
        // SAFETY: a `Volatile` points at a valid value while the program runs.
        unsafe {
            core::ptr::write_volatile(
                &raw mut (*$crate::volatile::Volatile::as_ptr($ptr)).$($field).+,
                value,
            )
        }
    }};
}

/// The [`Volatile`] of a field (nested fields allowed) of a [`Volatile`].
macro_rules! field {
    ($ptr:expr, $($field:ident).+) => {
        // SAFETY: a field of a value that stays valid and unshared while the program runs does
        // too.
        unsafe {
            $crate::volatile::Volatile::new(
                &raw mut (*$crate::volatile::Volatile::as_ptr($ptr)).$($field).+,
            )
        }
    };
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
