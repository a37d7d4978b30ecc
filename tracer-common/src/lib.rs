//! Types shared by the kernel programs (`tracer-ebpf`) and the userspace loader (`tracer`).
//!
//! Everything here crosses the kernel/user boundary as raw bytes, so every type is `#[repr(C)]`,
//! `Copy`, and free of implicit padding: padding is spelled out as `_pad` fields and every size is
//! checked at compile time.
#![no_std]

pub mod loss;
pub mod maps;
pub mod record;
pub mod wire;

pub use loss::{LOSS_KIND_COUNT, LossKind};
pub use maps::{
    DirectionKey, FrameCursor, HELD_RECORD_CAP, HeldRecord, MessageCursor, PendingTlsCall,
    RecordInProgress, SocketKey, SocketState, SyscallOp, TlsCall, TlsSessionKey, TracedProcess,
};
pub use record::{
    CloseRecord, DataRecord, Direction, MappedRecord, NO_FD, OpenRecord, OpenRole,
    PIECE_HEADER_LEN, PieceHeader, ProcessRecord, RECORD_DATA_CAP, RecordHeader, RecordKind,
    SOCKADDR_CAP, TlsOpenRecord,
};

/// Implements `aya::Pod` for the shared types when building the userspace side.
#[cfg(feature = "user")]
mod pod {
    use super::*;

    // SAFETY: all of these are `#[repr(C)]`, `Copy`, and have no implicit padding, so any byte
    // pattern of the right size is a valid value.
    unsafe impl aya::Pod for SocketKey {}
    unsafe impl aya::Pod for SocketState {}
    unsafe impl aya::Pod for FrameCursor {}
    unsafe impl aya::Pod for DirectionKey {}
    unsafe impl aya::Pod for TracedProcess {}
    unsafe impl aya::Pod for HeldRecord {}
    unsafe impl aya::Pod for TlsSessionKey {}
}
