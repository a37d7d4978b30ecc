//! Following traced processes through fork and exit.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated::bpf_send_signal},
    programs::{BtfTracePointContext, TracePointContext},
};
use tracer_common::{LossKind, MappedRecord, ProcessRecord, RecordHeader, RecordKind};

use crate::{
    lifecycle,
    maps::{
        EVENTS, LIFECYCLE_RECORD_FLAGS, TRACED, count_loss, is_traced, let_through_filter,
        traced_process,
    },
    syscall::SyscallExit,
};

/// Offset of `child_pid` in the sched_process_fork record. It moved between kernel versions, so
/// userspace reads it from the tracepoint's format file and sets it at load time.
#[unsafe(no_mangle)]
static FORK_CHILD_PID_OFFSET: u32 = 20;

#[inline(always)]
fn emit(kind: RecordKind, pid_tgid: u64, pid: u32) {
    let record = ProcessRecord {
        header: RecordHeader {
            kind: kind as u32,
            tgid: (pid_tgid >> 32) as u32,
            tid: pid_tgid as u32,
            fd: 0,
            conn_id: 0,
            // SAFETY: no preconditions.
            timestamp_ns: unsafe { bpf_ktime_get_ns() },
        },
        pid,
        _pad: 0,
    };
    if EVENTS
        .output::<ProcessRecord>(&record, LIFECYCLE_RECORD_FLAGS)
        .is_err()
    {
        count_loss(LossKind::LifecycleLost);
    }
}

/// A traced process that follows its children forked: trace the child too. Thread creation also
/// fires this tracepoint; userspace drops the entries that turn out to be threads.
#[inline(always)]
pub fn on_fork(ctx: &TracePointContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let parent = (pid_tgid >> 32) as u32;
    let Some(traced) = traced_process(parent) else {
        return;
    };
    if traced.follow_children == 0 {
        return;
    }
    // SAFETY: a plain read of a constant that userspace may have overridden at load time.
    let offset = unsafe { core::ptr::read_volatile(&FORK_CHILD_PID_OFFSET) } as usize;
    // SAFETY: the offset comes from the tracepoint's own format description.
    let Ok(child) = (unsafe { ctx.read_at::<u32>(offset) }) else {
        return;
    };
    if child == parent {
        return;
    }
    let_through_filter(child);
    if TRACED.insert(child, traced, 0).is_err() {
        count_loss(LossKind::LifecycleLost);
        return;
    }
    emit(RecordKind::ProcessFork, pid_tgid, child);
}

/// A traced process replaced its program: its sockets are forgotten (see
/// [`crate::lifecycle::on_exec`]), then userspace is told.
#[inline(always)]
pub fn on_exec() {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !is_traced(tgid) {
        return;
    }
    lifecycle::on_exec(pid_tgid);
    emit(RecordKind::ProcessExec, pid_tgid, tgid);
}

/// Whether the kernel's `sched_process_exit` says if the exiting thread is its process's last
/// (a second argument, `group_dead`): userspace reads it from the tracepoint's format file and
/// sets it at load time. Read-only, so the verifier drops the path not taken, and never checks
/// a read of an argument the kernel does not pass.
#[unsafe(no_mangle)]
static EXIT_HAS_GROUP_DEAD: u32 = 0;

/// A thread exited. If it was a traced process's last one, stop tracing the process and tell
/// userspace: every record its threads made is then already in the ring buffer, ahead of this
/// one. Kernels that do not say which thread is the last only tell when the main thread exits,
/// which may leave other threads running, untraced.
#[inline(always)]
pub fn on_exit(ctx: &BtfTracePointContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: a plain read of a constant that userspace may have overridden at load time.
    let last_thread = if unsafe { core::ptr::read_volatile(&EXIT_HAS_GROUP_DEAD) } == 0 {
        tgid == pid_tgid as u32
    } else {
        // sched_process_exit(struct task_struct *p, bool group_dead).
        ctx.arg::<u64>(1) & 0xff != 0
    };
    if !last_thread {
        return;
    }
    if TRACED.remove(tgid).is_err() {
        return;
    }
    emit(RecordKind::ProcessExit, pid_tgid, tgid);
}

const PROT_EXEC: u64 = 0x4;
const MAP_ANONYMOUS: u64 = 0x20;
const SIGSTOP: u32 = 19;

/// An `mmap` of a traced process returned. If it mapped a file executable (the dynamic loader
/// loading a library, Python importing an extension), tell userspace where, so it can look for
/// a TLS library in it; a process held on new code is stopped until userspace is done.
#[inline(always)]
pub fn on_mmap_exit(pid_tgid: u64, exit: &SyscallExit) {
    let tgid = (pid_tgid >> 32) as u32;
    let Some(traced) = traced_process(tgid) else {
        return;
    };
    let address = exit.ret;
    // Errors are small negative numbers.
    if (-4095..0).contains(&address) {
        return;
    }
    let ([_, _, prot], [flags, _, _]) = (exit.args(), exit.high_args());
    if prot & PROT_EXEC == 0 || flags & MAP_ANONYMOUS != 0 {
        return;
    }
    let hold = traced.hold_new_code != 0;
    // Reserved before the stop is sent and submitted after: userspace, which continues the
    // process once it has the record, never sees it before the stop is in place; and a
    // record that found no room never leaves a process stopped.
    let Some(mut entry) = EVENTS.reserve::<MappedRecord>(0) else {
        count_loss(LossKind::LifecycleLost);
        return;
    };
    entry.write(MappedRecord {
        header: RecordHeader {
            kind: RecordKind::ExecutableMapped as u32,
            tgid,
            tid: pid_tgid as u32,
            fd: 0,
            conn_id: 0,
            // SAFETY: no preconditions.
            timestamp_ns: unsafe { bpf_ktime_get_ns() },
        },
        address: address as u64,
        // SAFETY: no preconditions; the stop takes effect as the syscall returns.
        held: u32::from(hold && unsafe { bpf_send_signal(SIGSTOP) } == 0),
        _pad: 0,
    });
    entry.submit(LIFECYCLE_RECORD_FLAGS);
}
