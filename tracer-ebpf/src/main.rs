//! Kernel side of the tracer: syscall tracepoints that copy the socket traffic of traced processes
//! into a ring buffer. Parsing happens in userspace; these programs only filter, copy and count.
#![no_std]
#![no_main]

#[macro_use]
mod volatile;
#[macro_use]
mod steps;

mod context;
mod fd_range;
mod framing;
mod lifecycle;
mod maps;
mod process;
mod scratch;
mod syscall;
mod tls;
mod transfer;

use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint, uprobe, uretprobe},
    programs::{BtfTracePointContext, ProbeContext, RetProbeContext, TracePointContext},
};
use tracer_common::TlsCall;

/// Every hooked syscall but `close` returns through this one program, on the raw tracepoint
/// rather than on each syscall's own event (see [`syscall`]): it tells them apart by number.
/// One program rather than one per syscall: a process that mixes several (tonic's writev,
/// recvfrom and eventfd writes) runs one copy of the capture code, which is what stays in the
/// instruction cache between calls, and the verifier checks it once.
#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit(ctx: BtfTracePointContext) -> u32 {
    context::on_exit(&syscall::SyscallExit::of(&ctx));
    0
}

#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    lifecycle::on_close(&ctx);
    0
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(_ctx: BtfTracePointContext) -> u32 {
    process::on_exec();
    0
}

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    process::on_fork(&ctx);
    0
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> u32 {
    process::on_exit(&ctx);
    0
}

/// One entry program per hooked TLS function, attached by userspace to each library it found
/// in a traced process: they differ only in where the byte count comes back.
macro_rules! tls_entry_programs {
    ($($name:ident => $call:ident),* $(,)?) => {$(
        #[uprobe]
        pub fn $name(ctx: ProbeContext) -> u32 {
            tls::on_enter(&ctx, TlsCall::$call);
            0
        }
    )*};
}

tls_entry_programs! {
    tls_write_enter => Write,
    tls_read_enter => Read,
    tls_write_ex_enter => WriteEx,
    tls_read_ex_enter => ReadEx,
}

/// Attached to the return of every hooked TLS function: the saved entry says which it was.
#[uretprobe]
pub fn tls_return(ctx: RetProbeContext) -> u32 {
    tls::on_return(&ctx);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// bpf_probe_read_user is GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
