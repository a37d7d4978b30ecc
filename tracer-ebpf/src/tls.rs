//! Plaintext at a TLS library's boundary: uprobes on `SSL_write`/`SSL_read` (and their `_ex`
//! forms) in the libraries userspace found in traced processes.
//!
//! The entry probes save the call's buffer by thread; the return probe, once the library says
//! how many bytes it took or gave, captures them exactly as a socket transfer is captured, into
//! a stream of the session's own (keyed by the `SSL *`): the same framing cursors, records and
//! losses. Which socket a session rides on is for userspace to work out; the library (grpc's
//! and node's use memory buffers) does not say.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::map,
    maps::HashMap,
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{
    Direction, LossKind, NO_FD, PendingTlsCall, RecordHeader, RecordKind, SocketState, SyscallOp,
    TlsCall, TlsOpenRecord, TlsSessionKey,
};

use crate::{
    maps::{EVENTS, LIFECYCLE_RECORD_FLAGS, count_loss, is_traced, new_socket_state, next_conn_id},
    scratch::SegmentWalk,
    transfer,
};

/// TLS calls in progress, by thread (`pid_tgid`), from entry to return.
#[map]
static TLS_PENDING: HashMap<u64, PendingTlsCall> = HashMap::with_max_entries(16384, 0);

/// The TLS sessions of traced processes: the stream state of each, as for a socket. Userspace
/// removes a session when the socket it rides on closes, so that a new session at the same
/// address starts afresh.
#[map]
pub static TLS_SESSIONS: HashMap<TlsSessionKey, SocketState> = HashMap::with_max_entries(8192, 0);

/// A hooked TLS function was entered: remember its buffer until it returns.
#[inline(always)]
pub fn on_enter(ctx: &ProbeContext, call: TlsCall) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_traced((pid_tgid >> 32) as u32) {
        return;
    }
    let (Some(ssl), Some(buf)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return;
    };
    let count_out = match call {
        TlsCall::WriteEx | TlsCall::ReadEx => match ctx.arg::<u64>(3) {
            Some(out) if out != 0 => out,
            _ => return,
        },
        TlsCall::Write | TlsCall::Read => 0,
    };
    let pending = PendingTlsCall {
        call: call as u32,
        _pad: 0,
        ssl,
        buf,
        count_out,
        stack_pointer: stack_pointer(ctx.as_ptr()),
        function: instruction_pointer(ctx.as_ptr()),
    };
    if TLS_PENDING.insert(pid_tgid, pending, 0).is_err() {
        count_loss(LossKind::TlsTableFull);
    }
}

/// A hooked TLS function returned: capture the plaintext it moved.
#[inline(always)]
pub fn on_return(ctx: &RetProbeContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(pending) = TLS_PENDING.get_ptr(pid_tgid) else {
        return;
    };
    // SAFETY: a map value, valid during this program; its fields are read out here, before
    // the entry is removed.
    let (call, ssl, buf, count_out, entry_stack, function) = unsafe {
        (
            (*pending).call,
            (*pending).ssl,
            (*pending).buf,
            (*pending).count_out,
            (*pending).stack_pointer,
            (*pending).function,
        )
    };
    // The return of a call nested in the saved one (a library function calling another hooked
    // one) leaves the saved call in place: only the return to the saved caller pops its
    // return address off the entry's stack.
    if stack_pointer(ctx.as_ptr()) != entry_stack + RETURN_ADDRESS_BYTES {
        return;
    }
    let _ = TLS_PENDING.remove(pid_tgid);
    let ret: i64 = ctx.ret::<i32>() as i64;
    let moved = if count_out != 0 {
        if ret != 1 {
            return;
        }
        // SAFETY: reads user memory through the helper, which fails cleanly.
        match unsafe { bpf_probe_read_user(count_out as *const u64) } {
            Ok(count) => count,
            Err(_) => {
                count_loss(LossKind::UserReadFailed);
                return;
            }
        }
    } else if ret > 0 {
        ret as u64
    } else {
        return;
    };
    if moved == 0 {
        return;
    }
    let op = if call == TlsCall::Write as u32 || call == TlsCall::WriteEx as u32 {
        SyscallOp::TlsWrite
    } else {
        SyscallOp::TlsRead
    };
    let key = TlsSessionKey {
        tgid: (pid_tgid >> 32) as u32,
        _pad: 0,
        ssl,
    };
    let Some(state) = session(pid_tgid, &key, function) else {
        return;
    };
    capture(pid_tgid, state, op, buf, moved);
}

/// The capture proper, in a function of its own: its stack frame and the entry's do not add up
/// within BPF's 512 bytes.
#[inline(never)]
fn capture(pid_tgid: u64, state: *mut SocketState, op: SyscallOp, buf: u64, moved: u64) {
    let direction = if matches!(op, SyscallOp::TlsWrite) {
        Direction::Egress
    } else {
        Direction::Ingress
    };
    transfer::capture(
        pid_tgid,
        state,
        NO_FD,
        op,
        direction,
        SegmentWalk::buffer(buf, moved),
        moved,
    );
}

/// The session's stream state; a session not seen before is added, joined where it stands
/// (userspace decides whether that is its start), and announced.
#[inline(never)]
fn session(pid_tgid: u64, key: &TlsSessionKey, function: u64) -> Option<*mut SocketState> {
    if let Some(state) = TLS_SESSIONS.get_ptr_mut(key) {
        return Some(state);
    }
    let conn_id = next_conn_id();
    if conn_id == 0 {
        return None;
    }
    // The session is joined where it stands, copying everything until userspace (which sees
    // where frames start, and whether this is the session's start) hands over a cursor.
    let fresh = new_socket_state(conn_id, false)?;
    if TLS_SESSIONS.insert(key, fresh, 0).is_err() {
        count_loss(LossKind::TlsTableFull);
        return None;
    }
    // Written in place in the ring: the stack is needed by the capture.
    let Some(mut entry) = EVENTS.reserve::<TlsOpenRecord>(0) else {
        count_loss(LossKind::LifecycleLost);
        return TLS_SESSIONS.get_ptr_mut(key);
    };
    entry.write(TlsOpenRecord {
        header: RecordHeader {
            kind: RecordKind::TlsOpen as u32,
            tgid: key.tgid,
            tid: pid_tgid as u32,
            fd: NO_FD,
            conn_id,
            // SAFETY: no preconditions.
            timestamp_ns: unsafe { bpf_ktime_get_ns() },
        },
        ssl: key.ssl,
        function,
    });
    entry.submit(LIFECYCLE_RECORD_FLAGS);
    TLS_SESSIONS.get_ptr_mut(key)
}

/// What a return pops off the stack: the return address `call` pushed (none on arm64, where
/// it is in the link register).
#[cfg(bpf_target_arch = "x86_64")]
const RETURN_ADDRESS_BYTES: u64 = 8;
#[cfg(bpf_target_arch = "aarch64")]
const RETURN_ADDRESS_BYTES: u64 = 0;

/// The user instruction pointer in a probe's saved registers: at an entry probe, the hooked
/// function's address.
#[inline(always)]
fn instruction_pointer(regs: *mut core::ffi::c_void) -> u64 {
    let regs = regs.cast::<aya_ebpf::bindings::pt_regs>();
    // SAFETY: a probe's context is its `struct pt_regs`, valid while the program runs.
    #[cfg(bpf_target_arch = "x86_64")]
    return unsafe { (*regs).rip };
    // SAFETY: as above.
    #[cfg(bpf_target_arch = "aarch64")]
    return unsafe { (*regs).pc };
}

/// The user stack pointer in a probe's saved registers.
#[inline(always)]
fn stack_pointer(regs: *mut core::ffi::c_void) -> u64 {
    let regs = regs.cast::<aya_ebpf::bindings::pt_regs>();
    // SAFETY: a probe's context is its `struct pt_regs`, valid while the program runs.
    #[cfg(bpf_target_arch = "x86_64")]
    return unsafe { (*regs).rsp };
    // SAFETY: as above.
    #[cfg(bpf_target_arch = "aarch64")]
    return unsafe { (*regs).sp };
}
