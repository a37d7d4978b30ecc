//! Loops the verifier checks one step of, rather than every iteration.
//!
//! Each step of a loop is a global function: the verifier checks a global function once, on
//! its own, and takes it as returning any number where it is called (global functions: Linux
//! 5.6). Where the kernel has `bpf_loop` (5.17) the step runs from its callback, which does
//! nothing else. A step written as the callback itself costs far more: the verifier walks a
//! callback as a loop body, again and again until what it knows at the callback's entry stops
//! changing, and 6.18's does so far longer than 6.12's (on 6.18, `sys_exit`: 107,170
//! instructions verified with the steps as callbacks, 28,089 with them behind one;
//! `tls_return`: 87,591 and 12,594; on 6.12, 35,102 and 26,360 for `sys_exit`).
//!
//! The object built with the `bounded-loops` feature, for older kernels, calls the steps in
//! bounded loops instead. Older verifiers know neither `bpf_loop` nor a callback's address
//! (`BPF_PSEUDO_FUNC`, 5.13) and refuse a program holding either, even where it cannot run:
//! hence two objects rather than one with both.
//!
//! Each step is written once, as a function of its index ([`global_step!`] makes it global;
//! `tracer-ebpf/build.rs` exports it, as bpf-linker makes every other function static), and
//! run by [`repeat!`].

/// Runs the step `$global` (see [`global_step!`]) for indices from 0 until it returns non-zero,
/// at most `$max` times.
#[cfg(not(feature = "bounded-loops"))]
macro_rules! repeat {
    ($max:expr, $global:ident) => {{
        #[inline(never)]
        extern "C" fn callback(index: u32, _context: *mut core::ffi::c_void) -> i64 {
            // The verifier requires 0 or 1 here and takes a global function's result as any
            // number; LLVM, which knows the step returns 0 or 1, must not drop the test.
            if core::hint::black_box($global(index)) != 0 {
                1
            } else {
                0
            }
        }
        // SAFETY: the steps only use this CPU's scratch values, which nothing else touches
        // while this program runs.
        unsafe {
            aya_ebpf::helpers::generated::bpf_loop(
                $max,
                callback as *mut core::ffi::c_void,
                core::ptr::null_mut(),
                0,
            )
        }
    }};
}

#[cfg(feature = "bounded-loops")]
macro_rules! repeat {
    ($max:expr, $global:ident) => {{
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

/// Declares `$global`, the global function that runs `$step` (a `fn(u32) -> i64`: 0 to go on,
/// 1 to stop) for one index.
macro_rules! global_step {
    ($global:ident, $step:ident) => {
        #[unsafe(no_mangle)]
        #[inline(never)]
        pub extern "C" fn $global(index: u32) -> i64 {
            $step(index)
        }
    };
}
