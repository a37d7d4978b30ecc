//! The layouts of the per-CPU scratch values the programs work in: the BPF stack is only 512
//! bytes, and loop state read back from map memory lets the verifier prune (see
//! [`crate::volatile`]).

use tracer_common::{DataRecord, FrameCursor, HeldRecord, RECORD_DATA_CAP, RecordInProgress};

/// How many sockets one pass of [`crate::lifecycle::forget_fds`] collects before forgetting
/// them. A power of two: indices are masked with `FD_BATCH_CAP - 1` for the verifier.
pub const FD_BATCH_CAP: usize = 32;
const _: () = assert!(FD_BATCH_CAP.is_power_of_two());

/// The sockets of one process in one range of descriptors, collected from [`SOCKETS`] so that
/// they can be forgotten once the walk over the map is done.
#[repr(C)]
pub struct FdBatch {
    pub pid_tgid: u64,
    pub first: u32,
    pub last: u32,
    pub count: u32,
    pub fds: [u32; FD_BATCH_CAP],
}

/// Where a data record is assembled before it is copied into the ring buffer: the stack is only
/// 512 bytes. The data area is twice the record cap so that the verifier can prove every
/// `offset + length` copy stays inside it while the code keeps `offset, length <= cap`.
#[repr(C)]
pub struct DataScratch {
    pub walk: SegmentWalk,
    /// The walk as it was before a transfer was copied whole, to go back to if that fails.
    pub walk_before_copy: SegmentWalk,
    /// Where the cursor stands in a transfer copied whole.
    pub followed: FollowedCopy,
    /// Where a held-back record is assembled before it is stored in [`crate::maps::DEFERRED`].
    pub deferred: HeldRecord,
    /// The connection direction's cursor, copied in for the walk and back out after it.
    pub cursor: FrameCursor,
    /// Non-zero when the record in progress took up a held-back one, whose entry in
    /// [`crate::maps::DEFERRED`] is then still there. Kept here rather than in a register: the
    /// verifier then sees the walk after a resume and after none as one state, and checks it
    /// once (on 6.18, half of the capture's verification).
    pub resumed: u64,
    /// The record header, directly followed by its data: the two are sent as one.
    pub record: DataRecord,
    pub data: [u8; 2 * RECORD_DATA_CAP],
}

/// Position in the user memory a syscall moved bytes from or to, plus the record being
/// assembled. Lives in the per-CPU scratch map, not on the stack: every loop iteration reads it
/// back from map memory, so the verifier sees the same abstract state at the top of each
/// iteration and can prune instead of exploring every iteration's exact values.
#[repr(C)]
pub struct SegmentWalk {
    /// Next mmsghdr to load, and how many remain (sendmmsg/recvmmsg only).
    pub next_message: u64,
    pub messages_left: u64,
    /// Next iovec to load, and how many remain in the current message.
    pub next_iovec: u64,
    pub iovecs_left: u64,
    /// Bytes of the current message that the syscall moved and that are not walked yet.
    pub message_left: u64,
    /// The segment being copied.
    pub segment: u64,
    pub segment_left: u64,
    /// Bytes of the transfer not walked yet.
    pub remaining: u64,
    /// The record being assembled.
    pub record: RecordInProgress,
    /// Records sent so far.
    pub records: u64,
    /// Non-zero once user memory could not be read; the walk stops there.
    pub read_failed: u64,
}

impl SegmentWalk {
    pub const fn buffer(addr: u64, len: u64) -> Self {
        Self::iovecs(0, 0, len).with_segment(addr, len)
    }

    pub const fn iovecs(iovecs: u64, count: u64, moved: u64) -> Self {
        SegmentWalk {
            next_message: 0,
            messages_left: 0,
            next_iovec: iovecs,
            iovecs_left: count,
            message_left: moved,
            segment: 0,
            segment_left: 0,
            remaining: 0,
            record: RecordInProgress::EMPTY,
            records: 0,
            read_failed: 0,
        }
    }

    pub const fn messages(mmsghdrs: u64, count: u64) -> Self {
        SegmentWalk {
            next_message: mmsghdrs,
            messages_left: count,
            ..Self::iovecs(0, 0, 0)
        }
    }

    const fn with_segment(mut self, addr: u64, len: u64) -> Self {
        self.segment = addr;
        self.segment_left = len;
        self
    }
}

/// Where the cursor stands in the copy it follows.
#[repr(C)]
pub struct FollowedCopy {
    /// Index in the scratch data area of the next byte to follow, and how many are left.
    pub at: u64,
    pub left: u64,
    /// Message body and padding bytes seen so far.
    pub waste: u64,
}
