//! Kernel side of the tracer: syscall tracepoints that copy the socket traffic of traced processes
//! into a ring buffer. Parsing happens in userspace; these programs only filter, copy and count.
#![no_std]
#![no_main]

#[macro_use]
mod volatile;

mod context;
mod framing;
mod lifecycle;
mod maps;
mod process;
mod scratch;
mod syscall;
mod tls;
mod transfer;

use aya_ebpf::{
    macros::{tracepoint, uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext, TracePointContext},
};
use tracer_common::{SyscallOp, TlsCall};

/// Defines one tracepoint program per syscall of a group, each calling the group's handler with
/// its [`SyscallOp`]: within a group the syscalls differ only in the operation.
macro_rules! syscall_programs {
    ($handler:path { $($name:ident => $op:ident),* $(,)? }) => {$(
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            $handler(&ctx, SyscallOp::$op);
            0
        }
    )*};
}

// The lifecycle calls save their arguments at entry (each takes its fd or domain and two more
// arguments first) ...
syscall_programs!(context::on_enter {
    sys_enter_connect => Connect,
    sys_enter_accept => Accept,
    sys_enter_socket => Socket,
});

/// ... and return through this one program, attached to each of their `sys_exit_*`
/// tracepoints: the saved entry says which one returned.
#[tracepoint]
pub fn sys_exit(ctx: TracePointContext) -> u32 {
    context::on_exit(&ctx);
    0
}

/// Data moves (read, write and their kin) are hooked at exit only, all through this one
/// program, which tells them apart by syscall number. One program rather than one per syscall:
/// a process that mixes several (tonic's writev, recvfrom and eventfd writes) runs one copy of
/// the capture code, which is what stays in the instruction cache between calls, and the
/// verifier checks it once.
#[tracepoint]
pub fn sys_exit_transfer(ctx: TracePointContext) -> u32 {
    if let Some(op) = syscall::transfer_op(&ctx) {
        context::on_transfer_exit(&ctx, op);
    }
    0
}

#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    lifecycle::on_close(&ctx);
    0
}

/// Descriptors closed without `close()`.
#[tracepoint]
pub fn sys_exit_close_range(ctx: TracePointContext) -> u32 {
    lifecycle::on_close_range_exit(&ctx);
    0
}

/// Attached to `sys_exit_dup`, `sys_exit_dup2`, `sys_exit_dup3` and `sys_exit_fcntl`.
#[tracepoint]
pub fn sys_exit_dup(ctx: TracePointContext) -> u32 {
    lifecycle::on_dup_exit(&ctx);
    0
}

#[tracepoint]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    process::on_exec();
    0
}

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    process::on_fork(&ctx);
    0
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    process::on_exit(&ctx);
    0
}

/// A traced process mapped a file executable: it may have loaded a TLS library.
#[tracepoint]
pub fn sys_exit_mmap(ctx: TracePointContext) -> u32 {
    process::on_mmap_exit(&ctx);
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
