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
mod transfer;

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::SyscallOp;

/// Defines one `sys_enter_*` program per lifecycle syscall. They all share
/// [`context::on_enter`]: each takes its fd (or domain) and two more arguments first, so only
/// the operation differs.
macro_rules! enter_programs {
    ($($name:ident => $op:ident),* $(,)?) => {$(
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            context::on_enter(&ctx, SyscallOp::$op);
            0
        }
    )*};
}

enter_programs! {
    sys_enter_connect => Connect,
    sys_enter_accept => Accept,
    sys_enter_socket => Socket,
}

/// Attached to the `sys_exit_*` tracepoint of every syscall above: the saved entry says which
/// one returned.
#[tracepoint]
pub fn sys_exit(ctx: TracePointContext) -> u32 {
    context::on_exit(&ctx);
    0
}

/// Defines one `sys_exit_*` program per data-moving syscall; they all share
/// [`context::on_transfer_exit`].
macro_rules! transfer_exit_programs {
    ($($name:ident => $op:ident),* $(,)?) => {$(
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            context::on_transfer_exit(&ctx, SyscallOp::$op);
            0
        }
    )*};
}

transfer_exit_programs! {
    sys_exit_write => Write,
    sys_exit_writev => Writev,
    sys_exit_sendto => Sendto,
    sys_exit_sendmsg => Sendmsg,
    sys_exit_sendmmsg => Sendmmsg,
    sys_exit_read => Read,
    sys_exit_readv => Readv,
    sys_exit_recvfrom => Recvfrom,
    sys_exit_recvmsg => Recvmsg,
    sys_exit_recvmmsg => Recvmmsg,
}

#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    lifecycle::on_close(&ctx);
    0
}

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    process::on_fork(&ctx);
    0
}

#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    process::on_exit();
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
