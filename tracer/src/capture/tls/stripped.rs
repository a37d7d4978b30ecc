//! Finding `SSL_write` and `SSL_read` in a stripped grpc that links BoringSSL in (Python
//! grpcio's `cygrpc` extension exports nothing but `PyInit_cygrpc`), without per-build data.
//!
//! grpc's TLS frame protector (`ssl_transport_security_utils.cc`, earlier
//! `ssl_transport_security.cc`) logs its failures with strings that stay in the stripped
//! binary, and its code around each call reads:
//!
//! ```text
//! int ret = SSL_write(ssl, buf, len);       // SSL_read(ssl, buf, len) on the read side
//! if (ret < 0) {                            // <= 0 on the read side
//!   ret = SSL_get_error(ssl, ret);
//!   ...                                     // one or more error codes
//!   LOG(ERROR) << "SSL_write failed with error " << ...;
//! ```
//!
//! which compiles (x86-64; checked on grpcio 1.60, 1.70 and 1.85) to a *tested call*:
//!
//! ```text
//!    call X ; [register moves] ; test %r32,%r32 ; js E       (jle on the read side)
//! E: [register moves] ; call SSL_get_error
//! ```
//!
//! with the string's reference (a RIP-relative `lea`) either further on in the same function,
//! or in a cold block that the compiler moved far away and reached by a jump from just after
//! the call. So each reference is tied to its tested call: the one whose code jumps into the
//! reference's block, else the nearest one before it. The finding stands only if it is
//! unambiguous and consistent: every reference of a string gives the same function, the write
//! and read functions differ, are function-aligned, and their error paths call the same
//! `SSL_get_error`. Anything else refuses, and the process goes without TLS capture: a uprobe
//! anywhere but a function's first instruction would corrupt the process.

use super::library::CodeSegment;

/// The start of grpc's messages: `"SSL_write failed with error "` (recent releases, streamed
/// to a logger) or `"SSL_write failed with error %s."` (older ones, `gpr_log`).
const WRITE_FAILED: &[u8] = b"SSL_write failed with error ";
const READ_FAILED: &[u8] = b"SSL_read failed with error ";

/// How far before a string reference the jumps into its block may land.
const BLOCK_LEAD: u64 = 0x60;
/// How far after a tested call the jump to a cold block that reports its failure may be.
const JUMP_SPAN: usize = 96;
/// How far before a string reference its tested call may be, in the same function.
const CALL_SPAN: usize = 1024;
/// How far into its error block a tested call's `SSL_get_error` call may be.
const ERROR_CALL_SPAN: usize = 16;
/// Functions start 16-byte aligned in every build seen (GCC and Clang at -O2).
const FUNCTION_ALIGN: u64 = 16;

/// File offsets of the two functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SslCalls {
    pub write: u64,
    pub read: u64,
}

/// Whether the file holds grpc's TLS log strings: worth a closer look.
pub fn has_grpc_tls_marks(data: &[u8]) -> bool {
    memchr::memmem::find(data, WRITE_FAILED).is_some()
        && memchr::memmem::find(data, READ_FAILED).is_some()
}

/// Finds and checks `SSL_write` and `SSL_read`; the error says why they were not taken.
pub fn find_ssl_calls(data: &[u8], segments: &[CodeSegment]) -> Result<SslCalls, String> {
    let code = Code::new(data, segments)?;
    let write = code.library_call(data, WRITE_FAILED, Test::Negative)?;
    let read = code.library_call(data, READ_FAILED, Test::NotPositive)?;
    if write.get_error != read.get_error {
        return Err(format!(
            "the write and read paths call different functions for SSL_get_error ({:#x}, {:#x})",
            write.get_error, read.get_error
        ));
    }
    if write.callee == read.callee || write.get_error == write.callee {
        return Err(format!(
            "the calls found are not distinct ({:#x}, {:#x}, {:#x})",
            write.callee, read.callee, write.get_error
        ));
    }
    for address in [write.callee, read.callee] {
        if address % FUNCTION_ALIGN != 0 {
            return Err(format!("{address:#x} is not where a function starts"));
        }
    }
    let offset = |address| {
        code.segment
            .file_offset_of(address)
            .ok_or_else(|| format!("{address:#x} is outside the code"))
    };
    Ok(SslCalls {
        write: offset(write.callee)?,
        read: offset(read.callee)?,
    })
}

/// How the call's result is tested before its error path: `js` (`ret < 0`) or `jle`
/// (`ret <= 0`).
#[derive(Clone, Copy)]
enum Test {
    Negative,
    NotPositive,
}

impl Test {
    fn short_opcode(self) -> u8 {
        match self {
            Test::Negative => 0x78,
            Test::NotPositive => 0x7e,
        }
    }
}

/// A tested call: where it is, the function it calls, and the `SSL_get_error` its error path
/// calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TestedCall {
    site: usize,
    callee: u64,
    get_error: u64,
}

/// What a string's references lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    callee: u64,
    get_error: u64,
}

/// The executable segment that holds grpc's code, as bytes at addresses.
struct Code<'a> {
    bytes: &'a [u8],
    segment: CodeSegment,
}

impl<'a> Code<'a> {
    fn new(data: &'a [u8], segments: &[CodeSegment]) -> Result<Code<'a>, String> {
        let segment = *segments
            .iter()
            .max_by_key(|segment| segment.size)
            .ok_or("no executable segment")?;
        let start = usize::try_from(segment.file_offset).map_err(|_| "segment offset")?;
        let end = start
            .checked_add(usize::try_from(segment.size).map_err(|_| "segment size")?)
            .filter(|&end| end <= data.len())
            .ok_or("executable segment beyond the end of the file")?;
        Ok(Code {
            bytes: &data[start..end],
            segment,
        })
    }

    /// The byte at `index`; 0 (no opcode that matters here) past the end.
    fn byte(&self, index: usize) -> u8 {
        self.bytes.get(index).copied().unwrap_or(0)
    }

    fn address(&self, index: usize) -> u64 {
        self.segment.address + index as u64
    }

    fn index(&self, address: u64) -> Option<usize> {
        let within = address.checked_sub(self.segment.address)?;
        (within < self.segment.size).then_some(within as usize)
    }

    fn rel32_target(&self, at: usize, end: usize) -> u64 {
        self.address(end)
            .wrapping_add_signed(i64::from(rel32(self.bytes, at)))
    }

    /// The function called where `string` is reported on failure.
    fn library_call(&self, data: &[u8], string: &[u8], test: Test) -> Result<Found, String> {
        let name = String::from_utf8_lossy(string);
        let references: Vec<usize> = string_addresses(data, string)
            .into_iter()
            .flat_map(|address| self.rip_relative_leas(address))
            .collect();
        if references.is_empty() {
            return Err(format!("no code refers to \"{name}\""));
        }
        let calls = self.tested_calls(test);
        let mut found: Vec<Found> = Vec::new();
        for &reference in &references {
            let Some(call) = self.call_reported_at(&calls, reference) else {
                return Err(format!(
                    "no tested call leads to a reference to \"{name}\" at {:#x}",
                    self.address(reference)
                ));
            };
            let candidate = Found {
                callee: call.callee,
                get_error: call.get_error,
            };
            if !found.contains(&candidate) {
                found.push(candidate);
            }
        }
        match found.as_slice() {
            [one] => Ok(*one),
            _ => Err(format!(
                "the references to \"{name}\" lead to {} different calls",
                found.len()
            )),
        }
    }

    /// The tested call whose failure is reported at `reference`: one that jumps into the
    /// reference's block from just after it, else the nearest one before the reference.
    fn call_reported_at(&self, calls: &[TestedCall], reference: usize) -> Option<TestedCall> {
        let block = self.address(reference);
        let lands_in_block = |target: u64| target <= block && block - target <= BLOCK_LEAD;
        let jumping = calls.iter().find(|call| {
            (call.site..call.site + JUMP_SPAN).any(|at| {
                self.byte(at) == 0x0f
                    && self.byte(at + 1) & 0xf0 == 0x80
                    && at + 6 <= self.bytes.len()
                    && lands_in_block(self.rel32_target(at + 2, at + 6))
            })
        });
        jumping.copied().or_else(|| {
            calls
                .iter()
                .filter(|call| call.site < reference && reference - call.site <= CALL_SPAN)
                .max_by_key(|call| call.site)
                .copied()
        })
    }

    /// Every `call X ; [moves] ; test %r,%r ; js|jle E` whose `E` calls a function at once.
    fn tested_calls(&self, test: Test) -> Vec<TestedCall> {
        memchr::memchr_iter(0xe8, self.bytes)
            .filter_map(|site| {
                let error_block = self.tested_jump(site + 5, test)?;
                let get_error_call = self.call_after_moves(error_block, ERROR_CALL_SPAN)?;
                let callee = self.rel32_target(site + 1, site + 5);
                self.index(callee)?;
                Some(TestedCall {
                    site,
                    callee,
                    get_error: self.rel32_target(get_error_call + 1, get_error_call + 5),
                })
            })
            .collect()
    }

    /// From `at`, register moves then `test %r,%r` then `js`/`jle`: where that jumps.
    fn tested_jump(&self, mut at: usize, test: Test) -> Option<usize> {
        for _ in 0..4 {
            match self.register_move(at) {
                Some(len) => at += len,
                None => break,
            }
        }
        at += self.self_test(at)?;
        let target = if self.byte(at) == test.short_opcode() {
            self.address(at + 2)
                .wrapping_add_signed(i64::from(self.byte(at + 1) as i8))
        } else if self.byte(at) == 0x0f
            && self.byte(at + 1) == test.short_opcode() + 0x10
            && at + 6 <= self.bytes.len()
        {
            self.rel32_target(at + 2, at + 6)
        } else {
            return None;
        };
        self.index(target)
    }

    /// Where a `call` is that follows nothing but register moves from `at`, within `span`.
    fn call_after_moves(&self, mut at: usize, span: usize) -> Option<usize> {
        let end = at + span;
        while at < end {
            if self.byte(at) == 0xe8 {
                return Some(at);
            }
            at += self.register_move(at)?;
        }
        None
    }

    /// The length of a register-to-register `mov` (32 or 64 bit), `xor` (a zeroing), or
    /// `movslq` at `at`; `None` for anything else.
    fn register_move(&self, at: usize) -> Option<usize> {
        let rex = matches!(self.byte(at), 0x40..=0x4f);
        let opcode_at = at + usize::from(rex);
        let register_operands = self.byte(opcode_at + 1) & 0xc0 == 0xc0;
        let is_move = match self.byte(opcode_at) {
            0x89 | 0x8b | 0x31 | 0x33 => true,
            0x63 => rex,
            _ => false,
        };
        (is_move && register_operands).then_some(usize::from(rex) + 2)
    }

    /// The length of `test %r,%r` (one register with itself) at `at`.
    fn self_test(&self, at: usize) -> Option<usize> {
        let rex = matches!(self.byte(at), 0x40..=0x4f);
        let opcode_at = at + usize::from(rex);
        let modrm = self.byte(opcode_at + 1);
        let same_register = modrm & 0xc0 == 0xc0 && (modrm >> 3) & 7 == modrm & 7;
        (self.byte(opcode_at) == 0x85 && same_register).then_some(usize::from(rex) + 2)
    }

    /// Code positions of `lea disp32(%rip), %reg` (REX.W 8D /r, mod 00 r/m 101) whose target
    /// is `target`.
    fn rip_relative_leas(&self, target: u64) -> Vec<usize> {
        let bytes = self.bytes;
        memchr::memchr_iter(0x8d, bytes)
            .filter_map(|opcode| {
                let at = opcode.checked_sub(1)?;
                let is_lea = bytes[at] & 0xf8 == 0x48 && self.byte(opcode + 1) & 0xc7 == 0x05;
                (is_lea && at + 7 <= bytes.len()).then_some(at)
            })
            .filter(|&at| self.rel32_target(at + 3, at + 7) == target)
            .collect()
    }
}

fn rel32(bytes: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// The addresses of the strings that start with `prefix` (after a NUL, as strings are packed).
fn string_addresses(data: &[u8], prefix: &[u8]) -> Vec<u64> {
    memchr::memmem::find_iter(data, prefix)
        .filter(|&at| at > 0 && data[at - 1] == 0)
        .filter_map(|at| loaded_address(data, at as u64))
        .collect()
}

/// The address the byte at file offset `at` is loaded at, from the file's program headers.
fn loaded_address(data: &[u8], at: u64) -> Option<u64> {
    use object::{Object, ObjectSegment};
    let file = object::File::parse(data).ok()?;
    file.segments().find_map(|segment| {
        let (offset, size) = segment.file_range();
        (offset <= at && at < offset + size).then(|| segment.address() + (at - offset))
    })
}
