//! The syscall tracepoints' records and registers: where a syscall's number, arguments and
//! return value are, and which syscalls are which, per architecture.

use aya_ebpf::{
    EbpfContext,
    helpers::generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    programs::TracePointContext,
};
use tracer_common::SyscallOp;

/// Offset of the first syscall argument in a `sys_enter_*` record; each argument takes 8 bytes.
const ENTER_ARGS_OFFSET: usize = 16;
/// Offset of the return value in a `sys_exit_*` record.
const EXIT_RET_OFFSET: usize = 16;

#[inline(always)]
pub fn syscall_arg(ctx: &TracePointContext, index: usize) -> Option<u64> {
    // SAFETY: the offset is inside every sys_enter_* record for the indexes used here.
    unsafe { ctx.read_at::<u64>(ENTER_ARGS_OFFSET + 8 * index) }.ok()
}

/// The return value in a `sys_exit_*` record. A plain load: the verifier checks tracepoint
/// context reads against the record's size when the program is attached, so this needs no
/// helper call (aya's `read_at` makes one).
#[inline(always)]
pub fn syscall_return(ctx: &TracePointContext) -> i64 {
    // SAFETY: every sys_exit_* record has `long ret` at this offset.
    unsafe {
        core::ptr::read_volatile(ctx.as_ptr().cast::<u8>().add(EXIT_RET_OFFSET).cast::<i64>())
    }
}

/// Offset of the syscall number in a `sys_exit_*` record.
const EXIT_NR_OFFSET: usize = 8;

/// The data moves by syscall number: (read, write, readv, writev, sendto, recvfrom, sendmsg,
/// recvmsg, recvmmsg, sendmmsg).
#[cfg(bpf_target_arch = "x86_64")]
const TRANSFER_SYSCALLS: [i32; 10] = [0, 1, 19, 20, 44, 45, 46, 47, 299, 307];
#[cfg(bpf_target_arch = "aarch64")]
const TRANSFER_SYSCALLS: [i32; 10] = [63, 64, 65, 66, 206, 207, 211, 212, 243, 269];

/// The number of the syscall a `sys_exit_*` record returns from.
#[inline(always)]
pub fn syscall_nr(ctx: &TracePointContext) -> i32 {
    // SAFETY: every sys_exit_* record has `int __syscall_nr` at this offset.
    unsafe { core::ptr::read_volatile(ctx.as_ptr().cast::<u8>().add(EXIT_NR_OFFSET).cast::<i32>()) }
}

/// The calls that duplicate a descriptor, by syscall number: (dup, dup2, dup3, fcntl). arm64
/// has no dup2 (-1 matches no syscall).
#[cfg(bpf_target_arch = "x86_64")]
pub const DUP_SYSCALLS: [i32; 4] = [32, 33, 292, 72];
#[cfg(bpf_target_arch = "aarch64")]
pub const DUP_SYSCALLS: [i32; 4] = [23, -1, 24, 25];

/// Which data move a `sys_exit_*` record returns from; `None` for any other syscall.
#[inline(always)]
pub fn transfer_op(ctx: &TracePointContext) -> Option<SyscallOp> {
    let nr = syscall_nr(ctx);
    let [
        read,
        write,
        readv,
        writev,
        sendto,
        recvfrom,
        sendmsg,
        recvmsg,
        recvmmsg,
        sendmmsg,
    ] = TRANSFER_SYSCALLS;
    Some(match nr {
        _ if nr == read => SyscallOp::Read,
        _ if nr == write => SyscallOp::Write,
        _ if nr == readv => SyscallOp::Readv,
        _ if nr == writev => SyscallOp::Writev,
        _ if nr == sendto => SyscallOp::Sendto,
        _ if nr == recvfrom => SyscallOp::Recvfrom,
        _ if nr == sendmsg => SyscallOp::Sendmsg,
        _ if nr == recvmsg => SyscallOp::Recvmsg,
        _ if nr == recvmmsg => SyscallOp::Recvmmsg,
        _ if nr == sendmmsg => SyscallOp::Sendmmsg,
        _ => return None,
    })
}

// Where the first three syscall arguments sit in the saved user registers (`struct pt_regs`)
// at syscall exit. On aarch64 x0 then holds the return value; the first argument is kept in
// orig_x0.
#[cfg(bpf_target_arch = "x86_64")]
const ARG_REGISTER_OFFSETS: [usize; 3] = [112, 104, 96]; // di, si, dx
#[cfg(bpf_target_arch = "aarch64")]
const ARG_REGISTER_OFFSETS: [usize; 3] = [272, 8, 16]; // orig_x0, regs[1], regs[2]

// The fourth to sixth arguments (x86_64: r10, r8, r9; aarch64: regs[3..6]).
#[cfg(bpf_target_arch = "x86_64")]
const HIGH_ARG_REGISTER_OFFSETS: [usize; 3] = [56, 72, 64];
#[cfg(bpf_target_arch = "aarch64")]
const HIGH_ARG_REGISTER_OFFSETS: [usize; 3] = [24, 32, 40];

/// The fourth to sixth arguments of the syscall the current task is returning from.
#[inline(always)]
pub fn high_syscall_args_at_exit() -> Option<[u64; 3]> {
    saved_registers(HIGH_ARG_REGISTER_OFFSETS)
}

/// The first three arguments of the syscall the current task is returning from.
#[inline(always)]
pub fn syscall_args_at_exit() -> Option<[u64; 3]> {
    saved_registers(ARG_REGISTER_OFFSETS)
}

/// Three of the current task's saved user registers, by offset in `struct pt_regs`.
#[inline(always)]
fn saved_registers(offsets: [usize; 3]) -> Option<[u64; 3]> {
    // SAFETY: bpf_task_pt_regs returns a pointer the verifier knows to be a `struct pt_regs`,
    // so the loads below are checked against that type and cannot fault the kernel; they
    // cost a plain load each rather than a helper call.
    unsafe {
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u8;
        if regs.is_null() {
            return None;
        }
        let read = |offset: usize| core::ptr::read_volatile(regs.add(offset).cast::<u64>());
        Some([read(offsets[0]), read(offsets[1]), read(offsets[2])])
    }
}
