//! Which TLS library an executable file holds, and where its plaintext functions start.
//!
//! Two ways to find them:
//! - by name, for OpenSSL or BoringSSL with its symbols (`libssl.so.3`, or linked into an
//!   executable that exports them, as `node` does);
//! - by grpc's log strings, for the BoringSSL that Python's grpcio links into its stripped
//!   `cygrpc` extension: see [`super::stripped`].
//!
//! Offsets are file offsets, as uprobes take them.

use std::{ffi::OsStr, fs, ops::Range, os::unix::fs::FileExt, path::Path};

use object::{
    Endianness, Object, ObjectSection, ObjectSegment, ObjectSymbol, ReadCache, SectionIndex,
    SegmentFlags, SymbolKind,
    elf::{FileHeader64, SHT_DYNSYM, SHT_SYMTAB, SHT_SYMTAB_SHNDX, SectionHeader64},
    read::elf::{FileHeader, SectionHeader},
};
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

/// Examines the file at `path` (an executable or shared library a traced process mapped).
pub fn inspect(path: &Path) -> Inspection {
    let Some((opened, mut data)) = read_parts(path) else {
        return Inspection::NoTls;
    };
    let Ok(file) = object::File::parse(&*data) else {
        return Inspection::NoTls;
    };
    // The strings looked for are constants; a file stripped of its section headers was read
    // whole.
    let strings = file
        .section_by_name(".rodata")
        .and_then(|section| section.data().ok())
        .unwrap_or(&data);
    let segments = executable_segments(&file);
    if let Some(found) = by_symbols(&file, &segments) {
        let name = if is_boringssl(strings) {
            "boringssl"
        } else {
            "openssl"
        };
        let version = openssl_version(strings).or_else(|| soname_version(path));
        return Inspection::Library(TlsLibrary::new(name, version, found));
    }
    // A grpc linked against a shared TLS library (Debian's libgrpc on libssl.so.3) has grpc's
    // log strings but calls the library's functions: those are hooked when it is examined.
    if imports_ssl_calls(&file) || !stripped::has_grpc_tls_marks(strings) {
        return Inspection::NoTls;
    }
    let library = "boringssl".to_owned();
    if file.architecture() != object::Architecture::X86_64 {
        return Inspection::Unhookable {
            library,
            reason: "finding BoringSSL in a stripped grpc is implemented for x86-64 only".into(),
        };
    }
    // Its code, whose calls are followed, was not read yet.
    let code = segments
        .iter()
        .map(|segment| segment.file_offset..segment.file_offset.saturating_add(segment.size));
    if read_ranges(&opened, &mut data, code).is_none() {
        return Inspection::NoTls;
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

/// The parts of the file at `path` that [`inspect`] looks at before it knows the file is a
/// stripped grpc, at their own offsets in a buffer of the file's size: the ELF headers, the
/// symbol tables with their names, and the read-only data. A process maps tens of megabytes of
/// executables, most of it code and debug information; the rest of the buffer is zeros that
/// are never touched, which a large zeroed allocation does not back with memory. Files that are
/// not 64-bit ELF with section headers are read whole.
fn read_parts(path: &Path) -> Option<(fs::File, Vec<u8>)> {
    let opened = fs::File::open(path).ok()?;
    let size = opened.metadata().ok()?.len();
    if size > MAX_FILE_BYTES {
        return None;
    }
    let mut data = vec![0; usize::try_from(size).ok()?];
    match elf64_parts(&opened) {
        Some(parts) => read_ranges(&opened, &mut data, parts.into_iter())?,
        None => opened.read_exact_at(&mut data, 0).ok()?,
    }
    Some((opened, data))
}

/// Reads `ranges` of `opened` into `data`, at their own offsets.
fn read_ranges(
    opened: &fs::File,
    data: &mut [u8],
    ranges: impl Iterator<Item = Range<u64>>,
) -> Option<()> {
    let size = data.len() as u64;
    for range in ranges {
        let end = range.end.min(size);
        if range.start < end {
            let within = &mut data[range.start as usize..end as usize];
            opened.read_exact_at(within, range.start).ok()?;
        }
    }
    Some(())
}

/// The file ranges [`read_parts`] reads, found by reading the headers alone.
fn elf64_parts(opened: &fs::File) -> Option<Vec<Range<u64>>> {
    let cache = ReadCache::new(opened);
    let header = FileHeader64::<Endianness>::parse(&cache).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, &cache).ok()?;
    if sections.is_empty() {
        return None;
    }
    let span =
        |start: u64, count: usize, each: usize| start..start.saturating_add((count * each) as u64);
    let mut parts = vec![
        span(0, 1, size_of::<FileHeader64<Endianness>>()),
        span(
            header.e_phoff(endian),
            header.program_headers(endian, &cache).ok()?.len(),
            usize::from(header.e_phentsize(endian)),
        ),
        span(
            header.e_shoff(endian),
            sections.len(),
            usize::from(header.e_shentsize(endian)),
        ),
    ];
    let range = |section: &SectionHeader64<Endianness>| {
        section
            .file_range(endian)
            .map(|(offset, size)| offset..offset.saturating_add(size))
    };
    let names = sections.section(header.section_strings_index(endian, &cache).ok()?);
    parts.extend(names.ok().and_then(range));
    for section in sections.iter() {
        let symbols = matches!(
            section.sh_type(endian),
            SHT_SYMTAB | SHT_DYNSYM | SHT_SYMTAB_SHNDX
        );
        let read_only_data = sections.section_name(endian, section) == Ok(b".rodata".as_slice());
        if symbols || read_only_data {
            parts.extend(range(section));
        }
        if symbols {
            let linked = sections.section(SectionIndex(section.sh_link(endian) as usize));
            parts.extend(linked.ok().and_then(range));
        }
    }
    Some(parts)
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

    /// What is read of a file answers as the whole file does, for what is asked of it.
    #[test]
    fn the_parts_read_hold_the_symbols_and_read_only_data() {
        let path = std::env::current_exe().unwrap();
        let (parts, whole) = (read_parts(&path).unwrap().1, fs::read(&path).unwrap());
        assert_eq!(parts.len(), whole.len());
        assert!(parts != whole, "the whole file was read");
        let (parts, whole) = (
            object::File::parse(&*parts).unwrap(),
            object::File::parse(&*whole).unwrap(),
        );
        let names = |file: &object::File| -> Vec<(String, u64)> {
            let symbols = file.dynamic_symbols().chain(file.symbols());
            symbols
                .map(|symbol| (symbol.name().unwrap().to_owned(), symbol.address()))
                .collect()
        };
        assert!(names(&whole).len() > 1000);
        assert_eq!(names(&parts), names(&whole));
        let rodata = |file: &object::File| {
            file.section_by_name(".rodata")
                .unwrap()
                .data()
                .unwrap()
                .to_vec()
        };
        assert_eq!(rodata(&parts), rodata(&whole));
        let segments = |file: &object::File| format!("{:?}", executable_segments(file));
        assert_eq!(segments(&parts), segments(&whole));
    }
}
