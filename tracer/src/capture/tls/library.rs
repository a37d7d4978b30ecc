//! Which TLS library an executable file holds, and where its plaintext functions start.
//!
//! Two ways to find them:
//! - by name, for OpenSSL or BoringSSL with its symbols (`libssl.so.3`, or linked into an
//!   executable that exports them, as `node` does);
//! - by grpc's log strings, for the BoringSSL that Python's grpcio links into its stripped
//!   `cygrpc` extension: see [`super::stripped`].
//!
//! Offsets are file offsets, as uprobes take them.

use std::{ffi::OsStr, fs, path::Path};

use object::{Object, ObjectSegment, ObjectSymbol, SegmentFlags, SymbolKind};
use tracer_common::TlsCall;

use super::stripped;

/// Files larger than this are not examined (no TLS library is).
const MAX_FILE_BYTES: u64 = 1 << 30;

/// What an executable file holds, as far as TLS goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspection {
    /// No TLS library that we know of.
    NoTls,
    /// A TLS library whose plaintext functions were found and checked.
    Library(TlsLibrary),
    /// A TLS library whose functions could not be found, or not surely enough to hook them.
    Unhookable { library: String, reason: String },
}

/// A TLS library found in a file, and its hook points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsLibrary {
    /// What spans report as the capture's library: `openssl` or `boringssl`.
    pub name: &'static str,
    /// Its version, or what embeds it, where the file says: `3.0.13`, `(grpcio 1.85.1)`.
    pub version: Option<String>,
    /// Both, as spans report them.
    pub label: &'static str,
    /// The functions to hook, by file offset.
    pub functions: Vec<(TlsCall, u64)>,
}

impl TlsLibrary {
    fn new(name: &'static str, version: Option<String>, functions: Vec<(TlsCall, u64)>) -> Self {
        let label = match &version {
            Some(version) => format!("{name} {version}"),
            None => name.to_owned(),
        };
        TlsLibrary {
            name,
            version,
            // Spans carry it by reference; one string per library file examined.
            label: Box::leak(label.into_boxed_str()),
            functions,
        }
    }
}

/// The functions hooked by name, with what each is to the kernel programs.
const FUNCTIONS_BY_NAME: [(&str, TlsCall); 4] = [
    ("SSL_write", TlsCall::Write),
    ("SSL_read", TlsCall::Read),
    ("SSL_write_ex", TlsCall::WriteEx),
    ("SSL_read_ex", TlsCall::ReadEx),
];

/// Reads and examines the file at `path` (an executable or shared library a traced process
/// mapped).
pub fn inspect(path: &Path) -> Inspection {
    let too_large = fs::metadata(path).is_ok_and(|meta| meta.len() > MAX_FILE_BYTES);
    if too_large {
        return Inspection::NoTls;
    }
    let Ok(data) = fs::read(path) else {
        return Inspection::NoTls;
    };
    let Ok(file) = object::File::parse(&*data) else {
        return Inspection::NoTls;
    };
    let segments = executable_segments(&file);
    if let Some(found) = by_symbols(&file, &segments) {
        let name = if is_boringssl(&data) {
            "boringssl"
        } else {
            "openssl"
        };
        let version = openssl_version(&data).or_else(|| soname_version(path));
        return Inspection::Library(TlsLibrary::new(name, version, found));
    }
    // A grpc linked against a shared TLS library (Debian's libgrpc on libssl.so.3) has grpc's
    // log strings but calls the library's functions: those are hooked when it is examined.
    if imports_ssl_calls(&file) || !stripped::has_grpc_tls_marks(&data) {
        return Inspection::NoTls;
    }
    let library = "boringssl".to_owned();
    if file.architecture() != object::Architecture::X86_64 {
        return Inspection::Unhookable {
            library,
            reason: "finding BoringSSL in a stripped grpc is implemented for x86-64 only".into(),
        };
    }
    match stripped::find_ssl_calls(&data, &segments) {
        Ok(calls) => Inspection::Library(TlsLibrary::new(
            "boringssl",
            grpcio_version(path).map(|version| format!("(grpcio {version})")),
            vec![(TlsCall::Write, calls.write), (TlsCall::Read, calls.read)],
        )),
        Err(reason) => Inspection::Unhookable { library, reason },
    }
}

/// An executable segment: where its bytes are in the file and in memory.
#[derive(Debug, Clone, Copy)]
pub struct CodeSegment {
    pub address: u64,
    pub file_offset: u64,
    pub size: u64,
}

impl CodeSegment {
    /// The file offset of `address`, if it is in this segment.
    pub fn file_offset_of(&self, address: u64) -> Option<u64> {
        let within = address.checked_sub(self.address)?;
        (within < self.size).then_some(self.file_offset + within)
    }
}

fn executable_segments(file: &object::File) -> Vec<CodeSegment> {
    const PF_X: u32 = 1;
    file.segments()
        .filter(|segment| matches!(segment.flags(), SegmentFlags::Elf { p_flags } if p_flags & PF_X != 0))
        .map(|segment| {
            let (file_offset, file_size) = segment.file_range();
            CodeSegment {
                address: segment.address(),
                file_offset,
                size: file_size.min(segment.size()),
            }
        })
        .collect()
}

/// The plaintext functions by their exported (or, unstripped, local) names: `SSL_write` and
/// `SSL_read` both, defined here as code; the `_ex` forms where present.
fn by_symbols(file: &object::File, segments: &[CodeSegment]) -> Option<Vec<(TlsCall, u64)>> {
    let mut found: Vec<(TlsCall, u64)> = Vec::new();
    for symbol in file.dynamic_symbols().chain(file.symbols()) {
        if !symbol.is_definition() || symbol.kind() != SymbolKind::Text {
            continue;
        }
        let Ok(name) = symbol.name() else { continue };
        let Some(&(_, call)) = FUNCTIONS_BY_NAME.iter().find(|(wanted, _)| *wanted == name) else {
            continue;
        };
        if found.iter().any(|&(seen, _)| seen == call) {
            continue;
        }
        let Some(offset) = segments
            .iter()
            .find_map(|segment| segment.file_offset_of(symbol.address()))
        else {
            continue;
        };
        found.push((call, offset));
    }
    let has = |call| found.iter().any(|&(seen, _)| seen == call);
    (has(TlsCall::Write) && has(TlsCall::Read)).then_some(found)
}

/// Whether `SSL_write` and `SSL_read` are functions this file calls in another (undefined
/// dynamic symbols).
fn imports_ssl_calls(file: &object::File) -> bool {
    let imported = |wanted: &str| {
        file.dynamic_symbols()
            .any(|symbol| symbol.is_undefined() && symbol.name() == Ok(wanted))
    };
    imported("SSL_write") && imported("SSL_read")
}

/// BoringSSL says so in its error strings' library names.
fn is_boringssl(data: &[u8]) -> bool {
    memchr::memmem::find(data, b"BoringSSL").is_some()
}

/// The version in OpenSSL's own version text ("OpenSSL 3.0.13 30 Jan 2024"), when the file
/// holds it (an executable with OpenSSL linked in does; `libssl` leaves it to `libcrypto`).
fn openssl_version(data: &[u8]) -> Option<String> {
    let finder = memchr::memmem::Finder::new(b"OpenSSL ");
    finder.find_iter(data).find_map(|at| {
        let rest = &data[at + 8..];
        let end = rest
            .iter()
            .position(|&byte| byte == b' ' || byte == 0)
            .filter(|&end| end <= 24)?;
        let version = std::str::from_utf8(&rest[..end]).ok()?;
        let mut parts = version.split('.');
        let numeric = |part: Option<&str>| {
            part.is_some_and(|part| part.starts_with(|c: char| c.is_ascii_digit()))
        };
        (numeric(parts.next()) && numeric(parts.next())).then(|| version.to_owned())
    })
}

/// `libssl.so.3` -> "3".
fn soname_version(path: &Path) -> Option<String> {
    let name = path.file_name().and_then(OsStr::to_str)?;
    let (_, version) = name.split_once(".so.")?;
    (!version.is_empty()).then(|| version.to_owned())
}

/// grpcio's version, from the `grpcio-X.Y.Z.dist-info` beside the `grpc` package that holds
/// `path` (`.../site-packages/grpc/_cython/cygrpc....so`).
fn grpcio_version(path: &Path) -> Option<String> {
    let site_packages = path.parent()?.parent()?.parent()?;
    fs::read_dir(site_packages).ok()?.find_map(|entry| {
        let name = entry.ok()?.file_name();
        let name = name.to_str()?;
        name.strip_prefix("grpcio-")?
            .strip_suffix(".dist-info")
            .map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_the_file_and_its_name() {
        assert_eq!(
            openssl_version(b"\0OpenSSL 3.0.13 30 Jan 2024\0").as_deref(),
            Some("3.0.13")
        );
        assert_eq!(openssl_version(b"OpenSSL support\0"), None);
        assert_eq!(
            soname_version(Path::new("/usr/lib/libssl.so.3")).as_deref(),
            Some("3")
        );
        assert_eq!(soname_version(Path::new("/usr/bin/node")), None);
    }
}
