//! The user memory a syscall moved bytes from or to, walked segment by segment: one buffer,
//! an iovec array, a msghdr's iovec array, or an mmsghdr array of them.

use aya_ebpf::helpers::bpf_probe_read_user;
use tracer_common::LossKind;

use crate::{maps::count_loss, scratch::SegmentWalk, volatile::Volatile};

/// mmsghdr entries whose lengths are summed for sendmmsg/recvmmsg.
const MAX_MESSAGES: u64 = 32;

// x86_64/aarch64 layouts of struct iovec, struct msghdr and struct mmsghdr.
const IOVEC_SIZE: u64 = 16;
const MSGHDR_IOV_OFFSET: u64 = 16;
const MSGHDR_IOVLEN_OFFSET: u64 = 24;
const MMSGHDR_SIZE: u64 = 64;
const MMSGHDR_LEN_OFFSET: u64 = 56;

#[inline(always)]
fn read_user_u64(addr: u64) -> Option<u64> {
    // SAFETY: the helper validates the user address.
    unsafe { bpf_probe_read_user(addr as *const u64) }.ok()
}

#[inline(always)]
fn read_user_u32(addr: u64) -> Option<u32> {
    // SAFETY: the helper validates the user address.
    unsafe { bpf_probe_read_user(addr as *const u32) }.ok()
}

/// Loads the next iovec, or the next message's first one. False when there is nothing left to
/// walk or user memory could not be read.
#[inline(always)]
pub(super) fn advance(walk: Volatile<SegmentWalk>) -> bool {
    let message_left = get!(walk, message_left);
    let iovecs_left = get!(walk, iovecs_left);
    if iovecs_left > 0 && message_left > 0 {
        let next_iovec = get!(walk, next_iovec);
        // SAFETY: the helper validates the user address.
        let Ok([base, len]) = (unsafe { bpf_probe_read_user(next_iovec as *const [u64; 2]) })
        else {
            return false;
        };
        set!(walk, next_iovec, next_iovec + IOVEC_SIZE);
        set!(walk, iovecs_left, iovecs_left - 1);
        set!(walk, segment, base);
        set!(
            walk,
            segment_left,
            if len < message_left {
                len
            } else {
                message_left
            }
        );
        return true;
    }
    let messages_left = get!(walk, messages_left);
    if messages_left > 0 {
        let header = get!(walk, next_message);
        let (Some(iovecs), Some(count), Some(moved)) = (
            read_user_u64(header + MSGHDR_IOV_OFFSET),
            read_user_u64(header + MSGHDR_IOVLEN_OFFSET),
            read_user_u32(header + MMSGHDR_LEN_OFFSET),
        ) else {
            return false;
        };
        set!(walk, next_message, header + MMSGHDR_SIZE);
        set!(walk, messages_left, messages_left - 1);
        set!(walk, next_iovec, iovecs);
        set!(walk, iovecs_left, count);
        set!(walk, message_left, u64::from(moved));
        return true;
    }
    false
}

/// sendmsg/recvmsg: the iovec array hangs off the msghdr. If it cannot be read, the walk is
/// empty and the whole transfer becomes a gap.
#[inline(always)]
pub(super) fn msghdr_walk(msghdr: u64, moved: u64) -> SegmentWalk {
    match (
        read_user_u64(msghdr + MSGHDR_IOV_OFFSET),
        read_user_u64(msghdr + MSGHDR_IOVLEN_OFFSET),
    ) {
        (Some(iovecs), Some(count)) => SegmentWalk::iovecs(iovecs, count, moved),
        _ => {
            count_loss(LossKind::UserReadFailed);
            SegmentWalk::iovecs(0, 0, 0)
        }
    }
}

/// Total bytes of the first `count` messages of an mmsghdr array.
#[inline(always)]
pub(super) fn mmsg_bytes(mmsghdrs: u64, count: u64) -> u64 {
    if count > MAX_MESSAGES {
        count_loss(LossKind::TooManyMessages);
    }
    let mut total = 0;
    let mut index = 0;
    while index < MAX_MESSAGES && index < count {
        match read_user_u32(mmsghdrs + index * MMSGHDR_SIZE + MMSGHDR_LEN_OFFSET) {
            Some(len) => total += u64::from(len),
            None => count_loss(LossKind::UserReadFailed),
        }
        index += 1;
    }
    total
}
