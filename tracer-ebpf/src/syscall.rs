//! The syscalls the tracer hooks, and where a syscall's number, arguments and return value are,
//! per architecture.
//!
//! Every hooked syscall returns through one raw tracepoint, `sys_exit`, rather than through
//! its own `syscalls/sys_exit_*` event: an event is a perf event, and the kernel waits out an
//! RCU grace period for each one it unregisters (about 37 ms here, one after another), so
//! twenty of them made the tracer's exit take a second. The raw tracepoint runs for every
//! syscall on the machine, and turns the ones not hooked away on their number alone, before
//! any map lookup.

use aya_ebpf::programs::{BtfTracePointContext, TracePointContext};
use tracer_common::SyscallOp;

/// Offset of the first syscall argument in a `syscalls/sys_enter_*` record; each argument
/// takes 8 bytes.
const ENTER_ARGS_OFFSET: usize = 16;

/// An argument of the syscall a `syscalls/sys_enter_*` event is entering.
#[inline(always)]
pub fn syscall_arg(ctx: &TracePointContext, index: usize) -> Option<u64> {
    // SAFETY: the offset is inside every sys_enter_* record for the indexes used here.
    unsafe { ctx.read_at::<u64>(ENTER_ARGS_OFFSET + 8 * index) }.ok()
}

// Offsets in `struct pt_regs`, the task's user registers as the syscall entry saved them. At
// exit they still hold the arguments; on aarch64 x0 then holds the return value, and the first
// argument is kept in orig_x0.
#[cfg(bpf_target_arch = "x86_64")]
mod regs {
    /// di, si, dx.
    pub const ARGS: [usize; 3] = [112, 104, 96];
    /// r10, r8, r9: the fourth to sixth arguments.
    pub const HIGH_ARGS: [usize; 3] = [56, 72, 64];
    /// orig_ax.
    pub const NR: usize = 120;
    /// cs: a 64-bit syscall comes from the 64-bit user code segment (`__USER_CS`); a 32-bit
    /// one (int 0x80, sysenter) numbers its calls another way.
    pub const CS: usize = 136;
    pub const USER64_CS: u64 = 0x33;
}
#[cfg(bpf_target_arch = "aarch64")]
mod regs {
    /// orig_x0, regs[1], regs[2].
    pub const ARGS: [usize; 3] = [272, 8, 16];
    /// regs[3..6].
    pub const HIGH_ARGS: [usize; 3] = [24, 32, 40];
    /// syscallno (32-bit).
    pub const NR: usize = 280;
    /// pstate: PSR_MODE32_BIT marks an AArch32 task, whose calls are numbered another way.
    pub const PSTATE: usize = 264;
    pub const MODE32: u64 = 0x10;
}

/// A syscall returning, as the raw `sys_exit` tracepoint hands it over: the task's saved user
/// registers and the return value.
pub struct SyscallExit {
    regs: *const u8,
    pub ret: i64,
}

impl SyscallExit {
    #[inline(always)]
    pub fn of(ctx: &BtfTracePointContext) -> SyscallExit {
        // sys_exit(struct pt_regs *regs, long ret).
        SyscallExit {
            regs: ctx.arg::<*const u8>(0),
            ret: ctx.arg::<i64>(1),
        }
    }

    /// The registers and the return value, to hand on in registers.
    #[inline(always)]
    pub fn parts(&self) -> (*const u8, i64) {
        (self.regs, self.ret)
    }

    #[inline(always)]
    pub fn from_parts(regs: *const u8, ret: i64) -> SyscallExit {
        SyscallExit { regs, ret }
    }

    /// A saved register. The verifier knows `regs` as a `struct pt_regs` (BTF), checks each
    /// load against that type, and makes it one that cannot fault the kernel: a plain load,
    /// not a helper call.
    #[inline(always)]
    fn register(&self, offset: usize) -> u64 {
        // SAFETY: see above; every offset used is a register field of `struct pt_regs`.
        unsafe { core::ptr::read_volatile(self.regs.add(offset).cast::<u64>()) }
    }

    /// The syscall's number, or -1 for a call of a 32-bit task, numbered another way.
    #[inline(always)]
    pub fn nr(&self) -> i32 {
        #[cfg(bpf_target_arch = "x86_64")]
        {
            if self.register(regs::CS) & 0xffff != regs::USER64_CS {
                return -1;
            }
            self.register(regs::NR) as i32
        }
        #[cfg(bpf_target_arch = "aarch64")]
        {
            if self.register(regs::PSTATE) & regs::MODE32 != 0 {
                return -1;
            }
            // SAFETY: as in `register`; syscallno is a 32-bit field.
            unsafe { core::ptr::read_volatile(self.regs.add(regs::NR).cast::<i32>()) }
        }
    }

    /// The first three arguments.
    #[inline(always)]
    pub fn args(&self) -> [u64; 3] {
        regs::ARGS.map(|offset| self.register(offset))
    }

    /// The fourth to sixth arguments.
    #[inline(always)]
    pub fn high_args(&self) -> [u64; 3] {
        regs::HIGH_ARGS.map(|offset| self.register(offset))
    }
}

/// What the tracer does when a syscall returns, by its number.
#[derive(Clone, Copy)]
pub enum Hooked {
    /// A data move: capture the bytes.
    Transfer(SyscallOp),
    /// socket, connect, accept, accept4: a stream socket or a connection begins.
    Lifecycle(SyscallOp),
    CloseRange,
    Dup(Duplication),
    Mmap,
}

/// The calls that duplicate a descriptor.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Duplication {
    Dup,
    /// dup2 and dup3 close the target descriptor first.
    Onto,
    Fcntl,
}

// Syscall numbers, from the kernel's tables (arch/x86/entry/syscalls/syscall_64.tbl,
// include/uapi/asm-generic/unistd.h for arm64, which has no dup2 and no plain accept4 split).
#[cfg(bpf_target_arch = "x86_64")]
mod nr {
    pub const READ: i32 = 0;
    pub const WRITE: i32 = 1;
    pub const MMAP: i32 = 9;
    pub const READV: i32 = 19;
    pub const WRITEV: i32 = 20;
    pub const DUP: i32 = 32;
    pub const DUP2: i32 = 33;
    pub const SOCKET: i32 = 41;
    pub const CONNECT: i32 = 42;
    pub const ACCEPT: i32 = 43;
    pub const SENDTO: i32 = 44;
    pub const RECVFROM: i32 = 45;
    pub const SENDMSG: i32 = 46;
    pub const RECVMSG: i32 = 47;
    pub const FCNTL: i32 = 72;
    pub const ACCEPT4: i32 = 288;
    pub const DUP3: i32 = 292;
    pub const RECVMMSG: i32 = 299;
    pub const SENDMMSG: i32 = 307;
    pub const CLOSE_RANGE: i32 = 436;
}
#[cfg(bpf_target_arch = "aarch64")]
mod nr {
    pub const DUP: i32 = 23;
    pub const DUP3: i32 = 24;
    pub const FCNTL: i32 = 25;
    pub const READ: i32 = 63;
    pub const WRITE: i32 = 64;
    pub const READV: i32 = 65;
    pub const WRITEV: i32 = 66;
    pub const SOCKET: i32 = 198;
    pub const ACCEPT: i32 = 202;
    pub const CONNECT: i32 = 203;
    pub const SENDTO: i32 = 206;
    pub const RECVFROM: i32 = 207;
    pub const SENDMSG: i32 = 211;
    pub const RECVMSG: i32 = 212;
    pub const MMAP: i32 = 222;
    pub const ACCEPT4: i32 = 242;
    pub const RECVMMSG: i32 = 243;
    pub const SENDMMSG: i32 = 269;
    pub const CLOSE_RANGE: i32 = 436;
}

/// What to do when syscall `nr` returns; `None` for the syscalls not hooked.
#[inline(always)]
pub fn hooked(nr: i32) -> Option<Hooked> {
    use Hooked::{Lifecycle, Transfer};
    Some(match nr {
        nr::READ => Transfer(SyscallOp::Read),
        nr::WRITE => Transfer(SyscallOp::Write),
        nr::READV => Transfer(SyscallOp::Readv),
        nr::WRITEV => Transfer(SyscallOp::Writev),
        nr::SENDTO => Transfer(SyscallOp::Sendto),
        nr::RECVFROM => Transfer(SyscallOp::Recvfrom),
        nr::SENDMSG => Transfer(SyscallOp::Sendmsg),
        nr::RECVMSG => Transfer(SyscallOp::Recvmsg),
        nr::RECVMMSG => Transfer(SyscallOp::Recvmmsg),
        nr::SENDMMSG => Transfer(SyscallOp::Sendmmsg),
        nr::SOCKET => Lifecycle(SyscallOp::Socket),
        nr::CONNECT => Lifecycle(SyscallOp::Connect),
        nr::ACCEPT | nr::ACCEPT4 => Lifecycle(SyscallOp::Accept),
        nr::CLOSE_RANGE => Hooked::CloseRange,
        nr::DUP => Hooked::Dup(Duplication::Dup),
        #[cfg(bpf_target_arch = "x86_64")]
        nr::DUP2 => Hooked::Dup(Duplication::Onto),
        nr::DUP3 => Hooked::Dup(Duplication::Onto),
        nr::FCNTL => Hooked::Dup(Duplication::Fcntl),
        nr::MMAP => Hooked::Mmap,
        _ => return None,
    })
}
