//! Forgetting every socket of a process in a range of descriptors, as if each were closed:
//! `close_range(2)`, and exec, which closed its close-on-exec descriptors (which those were is
//! not known here).
//!
//! Where the kernel can walk a map (`bpf_for_each_map_elem`, 5.13) the socket table is walked
//! for the process's sockets in the range. The object for older kernels (see
//! [`crate::steps`]) looks descriptor by descriptor instead, from the first, at most
//! [`by_descriptor::MAX_DESCRIPTORS`] of them: a process's sockets sit at its lowest free
//! descriptors, and one left over is replaced when its descriptor is reused.

#[cfg(feature = "bounded-loops")]
pub use by_descriptor::forget_fds;
#[cfg(not(feature = "bounded-loops"))]
pub use by_map_walk::forget_fds;

#[cfg(not(feature = "bounded-loops"))]
mod by_map_walk {
    use aya_ebpf::helpers::generated::bpf_for_each_map_elem;
    use tracer_common::{LossKind, SocketKey};

    use crate::{
        lifecycle::forget_socket,
        maps::{SOCKETS, count_loss, fd_batch},
        scratch::FD_BATCH_CAP,
    };

    /// Most passes [`forget_fds`] makes over the socket table.
    const FORGET_PASSES: usize = 8;

    /// Forgets every socket of the current process whose descriptor is in `first..=last`.
    #[inline(always)]
    pub fn forget_fds(pid_tgid: u64, first: u32, last: u32) {
        let Some(batch) = fd_batch() else {
            return;
        };
        for _ in 0..FORGET_PASSES {
            // SAFETY: `batch` is this CPU's scratch value; the callbacks only use it on this CPU.
            let count = unsafe {
                (*batch.as_ptr()).pid_tgid = pid_tgid;
                (*batch.as_ptr()).first = first;
                (*batch.as_ptr()).last = last;
                (*batch.as_ptr()).count = 0;
                bpf_for_each_map_elem(
                    (&raw const SOCKETS).cast_mut().cast(),
                    collect_fd as *mut _,
                    core::ptr::null_mut(),
                    0,
                );
                (*batch.as_ptr()).count
            };
            repeat!(count, forget_collected_global);
            if (count as usize) < FD_BATCH_CAP {
                return;
            }
        }
        // More sockets than the passes could take: the rest stay until the process exits.
        count_loss(LossKind::LifecycleLost);
    }

    /// One [`SOCKETS`] entry, during [`forget_fds`]: collected if it is one of the batch's. 0 to go
    /// on, 1 to stop (the batch is full).
    #[inline(never)]
    extern "C" fn collect_fd(
        _map: *mut core::ffi::c_void,
        key: *const SocketKey,
        _value: *mut core::ffi::c_void,
        _context: *mut core::ffi::c_void,
    ) -> i64 {
        let Some(batch) = fd_batch() else {
            return 1;
        };
        // SAFETY: the kernel passes the entry's key.
        let SocketKey { tgid, fd } = unsafe { *key };
        if tgid != (get!(batch, pid_tgid) >> 32) as u32
            || fd < get!(batch, first)
            || fd > get!(batch, last)
        {
            return 0;
        }
        if get!(batch, count) as usize >= FD_BATCH_CAP {
            return 1;
        }
        // Read again and masked (a no-op) where it indexes: the verifier must see the bound on
        // the very register used, which the compiler would not keep from the check above.
        let slot = get!(batch, count) as usize & (FD_BATCH_CAP - 1);
        // SAFETY: `batch` is this CPU's scratch value, and `slot` is inside its array.
        unsafe { (*batch.as_ptr()).fds[slot] = fd };
        set!(batch, count, slot as u32 + 1);
        0
    }

    global_step!(forget_collected_global, forget_collected_fd);

    /// Forgets the `index`th collected socket: 0 to go on, 1 to stop.
    #[inline(always)]
    fn forget_collected_fd(index: u32) -> i64 {
        let Some(batch) = fd_batch() else {
            return 1;
        };
        // `index` is below the batch's count, at most FD_BATCH_CAP: the mask is a no-op the
        // verifier needs.
        let slot = index as usize & (FD_BATCH_CAP - 1);
        // SAFETY: `batch` is this CPU's scratch value.
        let (pid_tgid, fd) = unsafe { ((*batch.as_ptr()).pid_tgid, (*batch.as_ptr()).fds[slot]) };
        forget_socket(pid_tgid, fd);
        0
    }
}

#[cfg(feature = "bounded-loops")]
pub mod by_descriptor {
    use crate::{lifecycle::forget_socket, maps::fd_batch};

    /// Descriptors forgotten one by one where the map cannot be walked.
    pub const MAX_DESCRIPTORS: u32 = 1024;

    global_step!(forget_step_global, forget_fd_step);

    /// Forgets descriptor `first + index` of the batch's process: 0 to go on, 1 to stop.
    #[inline(always)]
    fn forget_fd_step(index: u32) -> i64 {
        let Some(batch) = fd_batch() else {
            return 1;
        };
        let (pid_tgid, first, last) =
            (get!(batch, pid_tgid), get!(batch, first), get!(batch, last));
        let Some(fd) = first.checked_add(index).filter(|&fd| fd <= last) else {
            return 1;
        };
        forget_socket(pid_tgid, fd);
        0
    }

    /// Forgets every socket of the current process whose descriptor is in `first..=last`, of
    /// the first [`MAX_DESCRIPTORS`].
    #[inline(always)]
    pub fn forget_fds(pid_tgid: u64, first: u32, last: u32) {
        let Some(batch) = fd_batch() else {
            return;
        };
        // No walk over the map (bpf_for_each_map_elem, 5.13): descriptor by descriptor.
        // SAFETY: `batch` is this CPU's scratch value.
        unsafe {
            (*batch.as_ptr()).pid_tgid = pid_tgid;
            (*batch.as_ptr()).first = first;
            (*batch.as_ptr()).last = last;
        }
        repeat!(MAX_DESCRIPTORS, forget_step_global);
    }
}
