//! Syscall exit: decide whether a returning call concerns a traced socket, and hand it to the
//! right handler.
//!
//! Every hooked syscall is seen at exit only: its arguments are still in the task's saved user
//! registers there, so nothing has to be remembered from the entry, and the rest of the machine
//! pays for one hook instead of two. `close` alone is hooked at entry (see
//! [`lifecycle::on_close`]).

use aya_ebpf::helpers::bpf_get_current_pid_tgid;
use tracer_common::SyscallOp;

use crate::{
    lifecycle,
    maps::{is_traced, socket_conn_id},
    process,
    syscall::{Duplication, Hooked, SyscallExit, hooked},
    transfer,
};

/// A syscall returned, any syscall of any process: most are turned away on their number.
#[inline(always)]
pub fn on_exit(exit: &SyscallExit) {
    let Some(hook) = hooked(exit.nr()) else {
        return;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_traced((pid_tgid >> 32) as u32) {
        return;
    }
    // Each handler is a function of its own (a BPF-to-BPF call) with a stack frame of its own:
    // inlined together they would not fit the 512-byte stack. They are handed the exit in
    // registers, so that this frame stays small and theirs can take nearly the whole stack.
    let (regs, ret) = exit.parts();
    match hook {
        Hooked::Transfer(op) => on_transfer_exit(pid_tgid, regs, ret, op),
        Hooked::Lifecycle(op) => on_lifecycle_exit(pid_tgid, regs, ret, op),
        Hooked::CloseRange => on_close_range_exit(pid_tgid, regs, ret),
        Hooked::Dup(dup) => on_dup_exit(pid_tgid, regs, ret, dup),
        Hooked::Mmap => on_mmap_exit(pid_tgid, regs, ret),
    }
}

#[inline(never)]
fn on_close_range_exit(pid_tgid: u64, regs: *const u8, ret: i64) {
    lifecycle::on_close_range_exit(pid_tgid, &SyscallExit::from_parts(regs, ret));
}

#[inline(never)]
fn on_dup_exit(pid_tgid: u64, regs: *const u8, ret: i64, dup: Duplication) {
    lifecycle::on_dup_exit(pid_tgid, &SyscallExit::from_parts(regs, ret), dup);
}

#[inline(never)]
fn on_mmap_exit(pid_tgid: u64, regs: *const u8, ret: i64) {
    process::on_mmap_exit(pid_tgid, &SyscallExit::from_parts(regs, ret));
}

/// A data-moving syscall (`op`) of a traced process returned: if it moved bytes on a traced
/// connection, capture them.
#[inline(never)]
fn on_transfer_exit(pid_tgid: u64, regs: *const u8, ret: i64, op: SyscallOp) {
    let exit = SyscallExit::from_parts(regs, ret);
    if exit.ret <= 0 {
        return;
    }
    let [fd, buffer, count] = exit.args();
    transfer::on_transfer(pid_tgid, op, fd as u32, buffer, count, exit.ret);
}

/// socket, connect, accept or accept4 of a traced process returned.
#[inline(never)]
fn on_lifecycle_exit(pid_tgid: u64, regs: *const u8, ret: i64, op: SyscallOp) {
    let exit = SyscallExit::from_parts(regs, ret);
    let [first, second, third] = exit.args();
    match op {
        // socket(domain, type, protocol)
        SyscallOp::Socket => lifecycle::on_socket_created(pid_tgid, first, second, exit.ret),
        // connect(fd, addr, addrlen) turns a known (not yet connected) stream socket into a
        // connection.
        SyscallOp::Connect if socket_conn_id((pid_tgid >> 32) as u32, first as u32).is_some() => {
            lifecycle::on_connected(pid_tgid, first as u32, second, third, exit.ret)
        }
        // accept(fd, addr, addrlen_ptr)
        SyscallOp::Accept => lifecycle::on_accepted(pid_tgid, second, third, exit.ret),
        _ => {}
    }
}
