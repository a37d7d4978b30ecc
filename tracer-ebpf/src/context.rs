//! Syscall entry and exit: decide whether a call concerns a traced socket, remember its
//! arguments, and hand the result to the right handler when it returns.

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, programs::TracePointContext};
use tracer_common::{LossKind, PendingCall, SocketKey, SyscallOp};

use crate::{
    lifecycle,
    maps::{PENDING, SOCKETS, count_loss, is_traced},
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
        // Data moves are only interesting on connections: skips files, pipes, UDP, listeners.
        _ => socket_state(tgid, fd).is_some_and(|conn_id| conn_id != 0),
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
fn socket_state(tgid: u32, fd: u32) -> Option<u64> {
    // SAFETY: the value is copied out immediately.
    unsafe { SOCKETS.get(SocketKey { tgid, fd }) }.map(|state| state.conn_id)
}

/// Dispatches a returning syscall whose entry was saved.
#[inline(always)]
pub fn on_exit(ctx: &TracePointContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(call) = (unsafe { PENDING.get(pid_tgid) }).copied() else {
        return;
    };
    let _ = PENDING.remove(pid_tgid);
    // SAFETY: every sys_exit_* record has `long ret` at this offset.
    let Ok(ret) = (unsafe { ctx.read_at::<i64>(EXIT_RET_OFFSET) }) else {
        return;
    };
    let Some(op) = SyscallOp::from_u32(call.op) else {
        return;
    };
    match op {
        SyscallOp::Socket => lifecycle::on_socket_created(pid_tgid, &call, ret),
        SyscallOp::Connect => lifecycle::on_connected(pid_tgid, &call, ret),
        SyscallOp::Accept => lifecycle::on_accepted(pid_tgid, &call, ret),
        _ => transfer::on_transfer(pid_tgid, op, &call, ret),
    }
}
