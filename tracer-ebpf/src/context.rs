//! Syscall entry and exit: decide whether a call concerns a traced socket, and hand the result
//! to the right handler when it returns.
//!
//! Data moves (read/write and friends) are hooked at exit only: their arguments are still in
//! the task's saved user registers there, so nothing has to be remembered from the entry, and
//! untraced processes pay for one hook instead of two. One program serves them all and tells
//! them apart by syscall number. The rare lifecycle calls (socket, connect, accept) save their
//! arguments at entry.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    programs::TracePointContext,
};
use tracer_common::{LossKind, PendingCall, SocketKey, SyscallOp};

use crate::{
    lifecycle,
    maps::{PENDING, SOCKETS, count_loss, is_traced, may_be_traced},
    transfer,
};

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

/// Saves the arguments of a syscall that concerns a traced socket.
#[inline(always)]
pub fn on_enter(ctx: &TracePointContext, op: SyscallOp) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !is_traced(tgid) {
        return;
    }
    let (Some(first), Some(ptr), Some(arg)) = (
        syscall_arg(ctx, 0),
        syscall_arg(ctx, 1),
        syscall_arg(ctx, 2),
    ) else {
        return;
    };
    let fd = first as u32;
    let wanted = match op {
        // A new socket or an accepted connection may become a traced stream.
        SyscallOp::Socket | SyscallOp::Accept => true,
        // connect() turns a known (not yet connected) stream socket into a connection.
        SyscallOp::Connect => socket_state(tgid, fd).is_some(),
        // Data moves are hooked at exit only.
        _ => false,
    };
    if !wanted {
        return;
    }
    let call = PendingCall {
        op: op as u32,
        fd,
        ptr,
        arg: if matches!(op, SyscallOp::Socket) {
            // socket(domain, type, protocol): keep domain and type.
            (first & 0xffff_ffff) | (ptr << 32)
        } else {
            arg
        },
        _pad: 0,
    };
    if PENDING.insert(pid_tgid, call, 0).is_err() {
        count_loss(LossKind::PendingTableFull);
    }
}

/// The connection id of a known stream socket (0 when not connected yet).
#[inline(always)]
pub fn socket_state(tgid: u32, fd: u32) -> Option<u64> {
    // SAFETY: the value is copied out immediately.
    unsafe { SOCKETS.get(SocketKey { tgid, fd }) }.map(|state| state.conn_id)
}

// Where the first three syscall arguments sit in the saved user registers (`struct pt_regs`)
// at syscall exit. On aarch64 x0 then holds the return value; the first argument is kept in
// orig_x0.
#[cfg(bpf_target_arch = "x86_64")]
const ARG_REGISTER_OFFSETS: [usize; 3] = [112, 104, 96]; // di, si, dx
#[cfg(bpf_target_arch = "aarch64")]
const ARG_REGISTER_OFFSETS: [usize; 3] = [272, 8, 16]; // orig_x0, regs[1], regs[2]

/// The first three arguments of the syscall the current task is returning from.
#[inline(always)]
pub fn syscall_args_at_exit() -> Option<[u64; 3]> {
    // SAFETY: bpf_task_pt_regs returns a pointer the verifier knows to be a `struct pt_regs`,
    // so the loads below are checked against that type and cannot fault the kernel; they
    // cost a plain load each rather than a helper call.
    unsafe {
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u8;
        if regs.is_null() {
            return None;
        }
        let read = |offset: usize| core::ptr::read_volatile(regs.add(offset).cast::<u64>());
        Some([
            read(ARG_REGISTER_OFFSETS[0]),
            read(ARG_REGISTER_OFFSETS[1]),
            read(ARG_REGISTER_OFFSETS[2]),
        ])
    }
}

/// A data-moving syscall (`op`) returned: if it moved bytes on a traced connection, capture
/// them.
#[inline(always)]
pub fn on_transfer_exit(ctx: &TracePointContext, op: SyscallOp) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !is_traced(tgid) {
        return;
    }
    let ret = syscall_return(ctx);
    if ret <= 0 {
        return;
    }
    let Some([fd, ptr, arg]) = syscall_args_at_exit() else {
        count_loss(LossKind::UserReadFailed);
        return;
    };
    let call = PendingCall {
        op: op as u32,
        fd: fd as u32,
        ptr,
        arg,
        _pad: 0,
    };
    transfer::on_transfer(pid_tgid, op, &call, ret);
}

/// Dispatches a returning lifecycle syscall whose entry was saved.
#[inline(always)]
pub fn on_exit(ctx: &TracePointContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    // Entries are only saved for traced processes, which the filter never turns away; for
    // every other process on the machine this spares a hash lookup.
    if !may_be_traced((pid_tgid >> 32) as u32) {
        return;
    }
    // SAFETY: the value is copied out before the entry is removed.
    let Some(call) = (unsafe { PENDING.get(pid_tgid) }).copied() else {
        return;
    };
    let _ = PENDING.remove(pid_tgid);
    let ret = syscall_return(ctx);
    let Some(op) = SyscallOp::from_u32(call.op) else {
        return;
    };
    match op {
        SyscallOp::Socket => lifecycle::on_socket_created(pid_tgid, &call, ret),
        SyscallOp::Connect => lifecycle::on_connected(pid_tgid, &call, ret),
        SyscallOp::Accept => lifecycle::on_accepted(pid_tgid, &call, ret),
        _ => {}
    }
}
