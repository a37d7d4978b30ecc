//! Which file descriptors are stream sockets, and when they become and stop being connections.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user, bpf_probe_read_user_buf,
    },
    programs::TracePointContext,
};
use tracer_common::{
    CloseRecord, DirectionKey, LossKind, OpenRecord, OpenRole, RecordHeader, RecordKind,
    SOCKADDR_CAP, SocketKey,
};

use crate::{
    fd_range,
    maps::{
        EVENTS, LIFECYCLE_RECORD_FLAGS, RESYNC, SOCKETS, count_loss, is_traced, new_socket_state,
        next_conn_id, socket_conn_id,
    },
    syscall::{Duplication, SyscallExit, syscall_arg},
    transfer::flush_deferred,
};

const AF_UNIX: u64 = 1;
const AF_INET: u64 = 2;
const AF_INET6: u64 = 10;
const SOCK_STREAM: u64 = 1;
/// `type` also carries SOCK_NONBLOCK and SOCK_CLOEXEC; the socket type is in the low bits.
const SOCK_TYPE_MASK: u64 = 0xf;
const EINPROGRESS: i64 = 115;
/// `fcntl` commands that duplicate a descriptor.
const F_DUPFD: u64 = 0;
const F_DUPFD_CLOEXEC: u64 = 1030;

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
#[inline(never)]
pub fn on_socket_created(pid_tgid: u64, domain: u64, socket_type: u64, ret: i64) {
    let (domain, socket_type) = (domain & 0xffff_ffff, socket_type & SOCK_TYPE_MASK);
    if ret < 0 || socket_type != SOCK_STREAM || !matches!(domain, AF_UNIX | AF_INET | AF_INET6) {
        return;
    }
    track_socket(pid_tgid, ret as u32, 0, false);
}

/// `connect()` of `fd` to the peer address at `addr` succeeded (or is in progress on a
/// non-blocking socket): a new connection.
#[inline(never)]
pub fn on_connected(pid_tgid: u64, fd: u32, addr: u64, addr_len: u64, ret: i64) {
    if ret != 0 && ret != -EINPROGRESS {
        return;
    }
    let conn_id = next_conn_id();
    if !track_socket(pid_tgid, fd, conn_id, true) {
        return;
    }
    emit_open(pid_tgid, fd, conn_id, OpenRole::Connect, addr, addr_len);
}

/// `accept()`/`accept4()` returned a new connection; the kernel wrote the peer's address at
/// `addr` and its length at `addr_len`.
#[inline(never)]
pub fn on_accepted(pid_tgid: u64, addr: u64, addr_len: u64, ret: i64) {
    if ret < 0 {
        return;
    }
    let fd = ret as u32;
    let conn_id = next_conn_id();
    if !track_socket(pid_tgid, fd, conn_id, true) {
        return;
    }
    let addr_len = if addr != 0 && addr_len != 0 {
        // SAFETY: reading user memory through the helper, which checks the address.
        unsafe { bpf_probe_read_user(addr_len as *const u32) }.map_or(0, u64::from)
    } else {
        0
    };
    emit_open(pid_tgid, fd, conn_id, OpenRole::Accept, addr, addr_len);
}

/// `close()` on a tracked socket: forget it, and tell userspace if it was a connection. Seen at
/// entry, unlike every other hooked call: once it returns, another thread may already have been
/// given the same descriptor number for a new socket.
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

/// `close_range()` of a traced process returned: the sockets it closed are forgotten, as
/// `close()` would. With CLOSE_RANGE_CLOEXEC it only marked them to be closed on exec, which
/// [`on_exec`] handles.
#[inline(always)]
pub fn on_close_range_exit(pid_tgid: u64, exit: &SyscallExit) {
    const CLOSE_RANGE_CLOEXEC: u64 = 1 << 2;
    if exit.ret != 0 {
        return;
    }
    let [first, last, flags] = exit.args();
    if flags & CLOSE_RANGE_CLOEXEC == 0 {
        fd_range::forget_fds(pid_tgid, first as u32, last as u32);
    }
}

/// A traced process duplicated a descriptor (`dup`, `dup2`, `dup3`, `fcntl(F_DUPFD[_CLOEXEC])`);
/// the call returned the new one. dup2 and dup3 first closed the descriptor they duplicated
/// onto, if it was open (and not the one duplicated).
#[inline(always)]
pub fn on_dup_exit(pid_tgid: u64, exit: &SyscallExit, dup: Duplication) {
    if exit.ret < 0 {
        return;
    }
    let [old_fd, command, _] = exit.args();
    let (old_fd, new_fd) = (old_fd as u32, exit.ret as u32);
    match dup {
        Duplication::Onto => {
            if old_fd == new_fd {
                return;
            }
            forget_socket(pid_tgid, new_fd);
        }
        Duplication::Fcntl if command != F_DUPFD && command != F_DUPFD_CLOEXEC => return,
        Duplication::Fcntl | Duplication::Dup => {}
    }
    duplicate_socket(pid_tgid, old_fd, new_fd);
}

/// Follows `new_fd`, a duplicate of `old_fd`, if that is a tracked socket. A duplicated
/// connection becomes a connection of its own on the new descriptor, joined mid-flight: the
/// kernel side keeps its stream state per descriptor, so each connection sees the part of the
/// one stream that moves through its own descriptor.
#[inline(always)]
fn duplicate_socket(pid_tgid: u64, old_fd: u32, new_fd: u32) {
    let Some(original) = socket_conn_id((pid_tgid >> 32) as u32, old_fd) else {
        return;
    };
    // A socket not connected yet stays one on the duplicate: a connect() through it is seen.
    let conn_id = if original == 0 { 0 } else { next_conn_id() };
    if track_socket(pid_tgid, new_fd, conn_id, false) && conn_id != 0 {
        emit_open(pid_tgid, new_fd, conn_id, OpenRole::Duplicate, 0, 0);
    }
}

/// A traced process replaced its program. exec closed its close-on-exec descriptors, and
/// which those were is not known here: every socket of the process is forgotten (and reported
/// closed), and userspace, told by the exec record that follows, adopts again those still open.
#[inline(always)]
pub fn on_exec(pid_tgid: u64) {
    fd_range::forget_fds(pid_tgid, 0, u32::MAX);
}

/// Records `fd` as a stream socket with `conn_id` (0: not connected), its frames followed from
/// the first byte if `from_start`. An older socket that had the same fd number (its close was
/// not seen) is reported closed first.
#[inline(always)]
fn track_socket(pid_tgid: u64, fd: u32, conn_id: u64, from_start: bool) -> bool {
    forget_socket(pid_tgid, fd);
    let key = SocketKey {
        tgid: (pid_tgid >> 32) as u32,
        fd,
    };
    let Some(state) = new_socket_state(conn_id, from_start) else {
        return false;
    };
    if SOCKETS.insert(key, state, 0).is_err() {
        count_loss(LossKind::SocketTableFull);
        return false;
    }
    true
}

#[inline(always)]
pub fn forget_socket(pid_tgid: u64, fd: u32) {
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
        if addr != 0 && addr_len > 0 && addr_len < SOCKADDR_CAP as u64 {
            // Bounded by a mask the compiler cannot drop (it knows nothing of a value read
            // back from memory): verifiers before 6.x do not carry the comparison above over
            // to the register that holds the length.
            let len = core::ptr::read_volatile(&addr_len) as usize & (SOCKADDR_CAP - 1);
            let dst = core::slice::from_raw_parts_mut((&raw mut (*record).addr).cast::<u8>(), len);
            if bpf_probe_read_user_buf(addr as *const u8, dst).is_ok() {
                (*record).addr_len = len as u32;
            }
        }
    }
    entry.submit(LIFECYCLE_RECORD_FLAGS);
}
