//! Loops the verifier checks one step of, rather than every iteration.
//!
//! Where the kernel has `bpf_loop` (Linux 5.17) a step is its callback. The object built with
//! the `bounded-loops` feature, for older kernels, runs each step as a global function (5.6)
//! in a bounded loop instead: the verifier checks a global function once, on its own, and
//! takes it as returning any number where it is called. Older verifiers know neither
//! `bpf_loop` nor a callback's address (`BPF_PSEUDO_FUNC`, 5.13) and refuse a program holding
//! either, even where it cannot run: hence two objects rather than one with both.
//!
//! Each step is written once, as the callback `bpf_loop` takes ([`repeat!`]); its global twin
//! is declared with [`global_step!`], and exported by `tracer-ebpf/build.rs` (bpf-linker
//! makes every other function static).

/// Runs `$callback` (an `extern "C" fn(u32, *mut c_void) -> i64`, 0 to go on) for indices from
/// 0 until it returns non-zero, at most `$max` times; `$global` is its global twin.
#[cfg(not(feature = "bounded-loops"))]
macro_rules! repeat {
    ($max:expr, $callback:ident, $global:ident) => {
        // SAFETY: the callback only uses this CPU's scratch values, which nothing else touches
        // while this program runs.
        unsafe {
            aya_ebpf::helpers::generated::bpf_loop(
                $max,
                $callback as *mut core::ffi::c_void,
                core::ptr::null_mut(),
                0,
            )
        }
    };
}

#[cfg(feature = "bounded-loops")]
macro_rules! repeat {
    ($max:expr, $callback:ident, $global:ident) => {{
        let max: u32 = $max;
        let mut index: u32 = 0;
        while index < max {
            if $global(index) != 0 {
                break;
            }
            index += 1;
        }
    }};
}

/// Declares `$global`, the global function that runs the `bpf_loop` callback `$callback` for
/// one index, in the object built for kernels without `bpf_loop`.
#[cfg(feature = "bounded-loops")]
macro_rules! global_step {
    ($global:ident, $callback:ident) => {
        #[unsafe(no_mangle)]
        #[inline(never)]
        pub extern "C" fn $global(index: u32) -> i64 {
            $callback(index, core::ptr::null_mut())
        }
    };
}

#[cfg(not(feature = "bounded-loops"))]
macro_rules! global_step {
    ($global:ident, $callback:ident) => {};
}
