//! Syscall entry and exit: decide whether a call concerns a traced socket, and hand the result
//! to the right handler when it returns.
//!
//! Data moves (read/write and friends) are hooked at exit only: their arguments are still in
//! the task's saved user registers there, so nothing has to be remembered from the entry, and
//! untraced processes pay for one hook instead of two. One program serves them all and tells
//! them apart by syscall number. The rare lifecycle calls (socket, connect, accept) save their
//! arguments at entry.

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, programs::TracePointContext};
use tracer_common::{LossKind, PendingCall, SyscallOp};

use crate::{
    lifecycle,
    maps::{PENDING, count_loss, is_traced, may_be_traced, socket_conn_id},
    syscall::{syscall_arg, syscall_args_at_exit, syscall_return},
    transfer,
};

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
        SyscallOp::Connect => socket_conn_id(tgid, fd).is_some(),
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
