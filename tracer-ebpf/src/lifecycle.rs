//! Which file descriptors are stream sockets, and when they become and stop being connections.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user, bpf_probe_read_user_buf,
    },
    programs::TracePointContext,
};
use tracer_common::{
    CloseRecord, DirectionKey, LossKind, OpenRecord, OpenRole, PendingCall, RecordHeader,
    RecordKind, SOCKADDR_CAP, SocketKey, SocketState,
};

use crate::{
    context::syscall_arg,
    maps::{
        EVENTS, LIFECYCLE_RECORD_FLAGS, NEW_SOCKET, RESYNC, SOCKETS, count_loss, is_traced,
        next_conn_id,
    },
    transfer::flush_deferred,
};

const AF_UNIX: u64 = 1;
const AF_INET: u64 = 2;
const AF_INET6: u64 = 10;
const SOCK_STREAM: u64 = 1;
/// `type` also carries SOCK_NONBLOCK and SOCK_CLOEXEC; the socket type is in the low bits.
const SOCK_TYPE_MASK: u64 = 0xf;
const EINPROGRESS: i64 = 115;

#[inline(always)]
fn header(kind: RecordKind, pid_tgid: u64, fd: u32, conn_id: u64) -> RecordHeader {
    RecordHeader {
        kind: kind as u32,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        fd,
        conn_id,
        // SAFETY: no preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
    }
}

/// `socket()` returned: remember stream sockets of the families we can describe.
#[inline(always)]
pub fn on_socket_created(pid_tgid: u64, call: &PendingCall, ret: i64) {
    let domain = call.arg & 0xffff_ffff;
    let socket_type = (call.arg >> 32) & SOCK_TYPE_MASK;
    if ret < 0 || socket_type != SOCK_STREAM || !matches!(domain, AF_UNIX | AF_INET | AF_INET6) {
        return;
    }
    track_socket(pid_tgid, ret as u32, 0);
}

/// `connect()` succeeded (or is in progress on a non-blocking socket): a new connection.
#[inline(always)]
pub fn on_connected(pid_tgid: u64, call: &PendingCall, ret: i64) {
    if ret != 0 && ret != -EINPROGRESS {
        return;
    }
    let conn_id = next_conn_id();
    if !track_socket(pid_tgid, call.fd, conn_id) {
        return;
    }
    // connect(fd, addr, addrlen): the peer address the process asked for.
    emit_open(
        pid_tgid,
        call.fd,
        conn_id,
        OpenRole::Connect,
        call.ptr,
        call.arg,
    );
}

/// `accept()`/`accept4()` returned a new connection.
#[inline(always)]
pub fn on_accepted(pid_tgid: u64, call: &PendingCall, ret: i64) {
    if ret < 0 {
        return;
    }
    let fd = ret as u32;
    let conn_id = next_conn_id();
    if !track_socket(pid_tgid, fd, conn_id) {
        return;
    }
    // accept(fd, addr, addrlen_ptr): the kernel wrote the peer address and its length.
    let addr_len = if call.ptr != 0 && call.arg != 0 {
        // SAFETY: reading user memory through the helper, which checks the address.
        unsafe { bpf_probe_read_user(call.arg as *const u32) }.map_or(0, u64::from)
    } else {
        0
    };
    emit_open(pid_tgid, fd, conn_id, OpenRole::Accept, call.ptr, addr_len);
}

/// `close()` on a tracked socket: forget it, and tell userspace if it was a connection.
#[inline(always)]
pub fn on_close(ctx: &TracePointContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !is_traced(tgid) {
        return;
    }
    let Some(fd) = syscall_arg(ctx, 0) else {
        return;
    };
    forget_socket(pid_tgid, fd as u32);
}

/// Records `fd` as a stream socket with `conn_id` (0: not connected). An older socket that had
/// the same fd number (its close was not seen) is reported closed first.
#[inline(always)]
fn track_socket(pid_tgid: u64, fd: u32, conn_id: u64) -> bool {
    forget_socket(pid_tgid, fd);
    let key = SocketKey {
        tgid: (pid_tgid >> 32) as u32,
        fd,
    };
    // Built in map memory: the state is too large for the 512-byte stack alongside the rest.
    let Some(state) = NEW_SOCKET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: `state` is this CPU's scratch value. A connection made after attach is seen from
    // its first byte, so its framing can be followed.
    let state = unsafe {
        *state = SocketState::new(conn_id, conn_id != 0);
        &*state
    };
    if SOCKETS.insert(key, state, 0).is_err() {
        count_loss(LossKind::SocketTableFull);
        return false;
    }
    true
}

#[inline(always)]
fn forget_socket(pid_tgid: u64, fd: u32) {
    let key = SocketKey {
        tgid: (pid_tgid >> 32) as u32,
        fd,
    };
    let Some(state) = SOCKETS.get_ptr(key) else {
        return;
    };
    // SAFETY: the fields are copied out before the entry is removed.
    let (conn_id, sent, received, deferred) = unsafe {
        (
            (*state).conn_id,
            (*state).sent,
            (*state).received,
            [(*state).framing[0].deferred, (*state).framing[1].deferred],
        )
    };
    let _ = SOCKETS.remove(key);
    if conn_id == 0 {
        return;
    }
    // Held-back bytes go out before the close, so userspace sees each stream whole.
    for (direction, held) in deferred.into_iter().enumerate() {
        let key = DirectionKey {
            conn_id,
            direction: direction as u64,
        };
        if held != 0 {
            flush_deferred(&key);
        }
        let _ = RESYNC.remove(key);
    }
    let record = CloseRecord {
        header: header(RecordKind::Close, pid_tgid, fd, conn_id),
        sent,
        received,
    };
    if EVENTS
        .output::<CloseRecord>(&record, LIFECYCLE_RECORD_FLAGS)
        .is_err()
    {
        count_loss(LossKind::LifecycleLost);
    }
}

#[inline(always)]
fn emit_open(pid_tgid: u64, fd: u32, conn_id: u64, role: OpenRole, addr: u64, addr_len: u64) {
    let Some(mut entry) = EVENTS.reserve::<OpenRecord>(0) else {
        count_loss(LossKind::LifecycleLost);
        return;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` points at reserved ring buffer memory of the right size.
    unsafe {
        (*record).header = header(RecordKind::Open, pid_tgid, fd, conn_id);
        (*record).role = role as u32;
        (*record).addr_len = 0;
        let len = addr_len as usize;
        if addr != 0 && len > 0 && len <= SOCKADDR_CAP {
            let dst = core::slice::from_raw_parts_mut((&raw mut (*record).addr).cast::<u8>(), len);
            if bpf_probe_read_user_buf(addr as *const u8, dst).is_ok() {
                (*record).addr_len = len as u32;
            }
        }
    }
    entry.submit(LIFECYCLE_RECORD_FLAGS);
}
