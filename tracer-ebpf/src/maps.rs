//! The maps shared by all programs, and small helpers over them.

use crate::{
    scratch::{DataScratch, FdBatch},
    volatile::Volatile,
};
use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::bpf_get_smp_processor_id,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use tracer_common::{
    DirectionKey, FrameCursor, HeldRecord, LOSS_KIND_COUNT, LossKind, SocketKey, SocketState,
    TracedProcess,
    maps::{TRACED_FILTER_SLOTS, traced_filter_slot},
};

/// Processes whose sockets are captured, by tgid. Filled by userspace, extended on fork.
#[map]
pub static TRACED: HashMap<u32, TracedProcess> = HashMap::with_max_entries(4096, 0);

/// A filter in front of [`TRACED`]: a tgid's slot ([`traced_filter_slot`]) is non-zero once a
/// process with that tgid was traced. The hooks see every syscall of every process on the
/// machine, nearly all of them untraced, and for those a load from this array (which the
/// verifier inlines) replaces a hash lookup. A set slot only sends the question to [`TRACED`].
/// Slots are set before the process enters [`TRACED`] (by userspace, or on fork) and never
/// cleared, so the filter never turns a traced process away.
#[map]
pub static TRACED_FILTER: Array<u8> = Array::with_max_entries(TRACED_FILTER_SLOTS, 0);

/// Stream sockets of traced processes. Seeded by userspace from /proc at attach, then kept up to
/// date by socket/connect/accept/close. Preallocated: about 4.5 MiB of kernel memory.
#[map]
pub static SOCKETS: HashMap<SocketKey, SocketState> = HashMap::with_max_entries(16384, 0);

/// Where a new [`SOCKETS`] or `TLS_SESSIONS` entry is built before it is inserted.
#[map]
pub static NEW_SOCKET: PerCpuArray<SocketState> = PerCpuArray::with_max_entries(1, 0);

/// A new socket's cursors, indexed by whether it is followed from its first byte.
static FIRST_CURSORS: [FrameCursor; 2] = [
    SocketState::first_cursor(false),
    SocketState::first_cursor(true),
];

/// `SocketState::new(conn_id, from_start)`, built in this CPU's [`NEW_SOCKET`] field by field,
/// its cursors copied from constants: a state (216 bytes) built on the stack took, with the
/// frames of what calls this, more than a program's call chain may (512 bytes, each frame
/// rounded up to 32 on 6.1).
#[inline(always)]
pub fn new_socket_state(conn_id: u64, from_start: bool) -> Option<&'static SocketState> {
    let state = NEW_SOCKET.get_ptr_mut(0)?;
    let cursor = &FIRST_CURSORS[usize::from(from_start)];
    // SAFETY: `state` is this CPU's scratch value, valid while the program runs; `cursor` a
    // constant, copied, not moved.
    unsafe {
        (*state).conn_id = conn_id;
        (*state).sent = 0;
        (*state).received = 0;
        for framing in &mut (*state).framing {
            core::ptr::copy_nonoverlapping(cursor, framing, 1);
        }
        Some(&*state)
    }
}

/// Where [`FdBatch`]es are collected.
#[map]
pub static FD_BATCH: PerCpuArray<FdBatch> = PerCpuArray::with_max_entries(1, 0);

/// Everything userspace hears from us. Userspace sets the size at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

/// Data records wake userspace only once this CPU has written this many bytes since its last
/// wakeup; otherwise userspace drains the ring on its own timer. Waking the reader for every
/// record costs far more than the record, and asking the ring how much is waiting costs a cache
/// miss on the position userspace moves. Userspace sets it at load time: a quarter of the ring,
/// shared out among the CPUs.
#[unsafe(no_mangle)]
static WAKEUP_THRESHOLD_BYTES: u64 = 1 << 20;

/// Bytes of data records this CPU wrote since it last woke userspace.
#[map]
static UNWOKEN_BYTES: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Ring buffer flags for a data record of `len` bytes: no wakeup unless this CPU has written
/// enough since its last one.
#[inline(always)]
pub fn data_record_flags(len: u64) -> u64 {
    let Some(unwoken) = UNWOKEN_BYTES.get_ptr_mut(0) else {
        return u64::from(BPF_RB_FORCE_WAKEUP);
    };
    // SAFETY: a plain read of a constant that userspace may have overridden at load time.
    let threshold = unsafe { core::ptr::read_volatile(&WAKEUP_THRESHOLD_BYTES) };
    // SAFETY: per-CPU slot, and tracepoint programs do not nest on one CPU.
    unsafe {
        let written = *unwoken + len;
        if written >= threshold {
            *unwoken = 0;
            u64::from(BPF_RB_FORCE_WAKEUP)
        } else {
            *unwoken = written;
            u64::from(BPF_RB_NO_WAKEUP)
        }
    }
}

/// Ring buffer flags for lifecycle records (connection open/close, process fork/exit): rare,
/// and userspace must see an open promptly to look up the socket's local address while the
/// socket still exists.
pub const LIFECYCLE_RECORD_FLAGS: u64 = BPF_RB_FORCE_WAKEUP as u64;

/// Loss counters, indexed by [`LossKind`].
#[map]
pub static LOSSES: PerCpuArray<u64> = PerCpuArray::with_max_entries(LOSS_KIND_COUNT, 0);

/// Per-CPU counter behind [`next_conn_id`].
#[map]
static CONN_SEQUENCE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static DATA_SCRATCH: PerCpuArray<DataScratch> = PerCpuArray::with_max_entries(1, 0);

/// Held-back record starts, by connection direction. When it is full, records are simply not
/// held back.
#[map]
pub static DEFERRED: HashMap<DirectionKey, HeldRecord> = HashMap::with_max_entries(1024, 0);

/// Cursors userspace offers to directions whose kernel cursor lost track: userspace, in frame
/// sync itself, saw the direction stop at a frame boundary at the cursor's `position`.
#[map]
pub static RESYNC: HashMap<DirectionKey, FrameCursor> = HashMap::with_max_entries(1024, 0);

#[inline(always)]
pub fn count_loss(kind: LossKind) {
    if let Some(counter) = LOSSES.get_ptr_mut(kind as u32) {
        // SAFETY: per-CPU slot, and tracepoint programs do not nest on one CPU.
        unsafe { *counter += 1 };
    }
}

#[inline(always)]
pub fn is_traced(tgid: u32) -> bool {
    traced_process(tgid).is_some()
}

/// How process `tgid` is traced, if it is.
#[inline(always)]
pub fn traced_process(tgid: u32) -> Option<TracedProcess> {
    if !may_be_traced(tgid) {
        return None;
    }
    // SAFETY: the value is copied out immediately.
    unsafe { TRACED.get(tgid) }.copied()
}

/// Whether `tgid` passes [`TRACED_FILTER`]. False means it was never traced; true only that it
/// may be.
#[inline(always)]
pub fn may_be_traced(tgid: u32) -> bool {
    TRACED_FILTER
        .get(traced_filter_slot(tgid))
        .is_some_and(|&slot| slot != 0)
}

/// Sets `tgid`'s slot in [`TRACED_FILTER`]; before it enters [`TRACED`].
#[inline(always)]
pub fn let_through_filter(tgid: u32) {
    if let Some(slot) = TRACED_FILTER.get_ptr_mut(traced_filter_slot(tgid)) {
        // SAFETY: an array map value, valid during this program.
        unsafe { *slot = 1 };
    }
}

/// A connection id unique for this boot: the CPU number in the high bits, a per-CPU sequence
/// below. Never 0, and never has the bit reserved for userspace-assigned ids.
#[inline(always)]
pub fn next_conn_id() -> u64 {
    let cpu = u64::from(unsafe { bpf_get_smp_processor_id() }) & 0x7fff;
    let Some(sequence) = CONN_SEQUENCE.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU slot, and tracepoint programs do not nest on one CPU.
    let next = unsafe {
        *sequence += 1;
        *sequence
    };
    ((cpu + 1) << 48) | (next & 0xffff_ffff_ffff)
}

/// The connection id of a known stream socket (0 when not connected yet).
#[inline(always)]
pub fn socket_conn_id(tgid: u32, fd: u32) -> Option<u64> {
    // SAFETY: the value is copied out immediately.
    unsafe { SOCKETS.get(SocketKey { tgid, fd }) }.map(|state| state.conn_id)
}

/// This CPU's scratch value.
#[inline(always)]
pub fn data_scratch() -> Option<Volatile<DataScratch>> {
    let scratch = DATA_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: a per-CPU array value: valid while the program runs, and only this CPU's programs
    // use it, one at a time.
    Some(unsafe { Volatile::new(scratch) })
}

/// This CPU's [`FdBatch`].
#[inline(always)]
pub fn fd_batch() -> Option<Volatile<FdBatch>> {
    let batch = FD_BATCH.get_ptr_mut(0)?;
    // SAFETY: a per-CPU array value: valid while the program runs, and only this CPU's programs
    // use it, one at a time.
    Some(unsafe { Volatile::new(batch) })
}
