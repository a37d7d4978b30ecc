//! Which TLS libraries the traced processes map, and hooking each once.
//!
//! Uprobes belong to a file (an inode), not a process: a library is examined and hooked the
//! first time any traced process maps it, and the kernel programs filter on the traced
//! processes. A process is looked at when tracing starts, after exec, and whenever it maps a
//! file executable (the kernel says so), which is how a Python that imports grpc long after it
//! started is caught.

use std::{
    collections::hash_map::Entry,
    fs,
    ops::Range,
    path::{Path, PathBuf},
};

use foldhash::HashMap;

use super::library::{Inspection, TlsLibrary, inspect};
use crate::stream::monotonic_now_ns;

/// A file, as the kernel knows it: device and inode (what a uprobe is attached to).
type FileId = (String, u64);

/// What became of an examined file.
#[derive(Debug, Clone)]
enum FileOutcome {
    NoTls,
    /// Hooked since this CLOCK_MONOTONIC time (nanoseconds).
    Hooked(TlsLibrary, u64),
    /// A TLS library that is not hooked, and why.
    NotHooked {
        library: String,
        reason: String,
    },
}

/// The examined files, and what became of each.
#[derive(Default)]
pub struct TlsHooks {
    files: HashMap<FileId, FileOutcome>,
    /// Each library found and not hooked, with the process that mapped it and why; the first
    /// [`MAX_PROBLEMS`].
    problems: Vec<String>,
    /// Where each traced process has hooked files mapped, as of its last scan: which library a
    /// session comes from, without reading `/proc/PID/maps` for every new TLS connection. Code
    /// mapped since is found by reading it after all.
    hooked_ranges: HashMap<u32, Vec<(Range<u64>, FileId)>>,
}

const MAX_PROBLEMS: usize = 32;

/// One executable file mapping of a process.
struct Mapping {
    id: FileId,
    path: PathBuf,
}

impl TlsHooks {
    /// Looks at the files `pid` maps executable; examines and hooks (with `attach`) those
    /// not seen before.
    pub fn scan(
        &mut self,
        pid: u32,
        attach: &mut dyn FnMut(&Path, &TlsLibrary) -> Result<(), String>,
    ) {
        let Ok(maps) = fs::read_to_string(format!("/proc/{pid}/maps")) else {
            return;
        };
        let own = own_executable();
        for mapping in executable_mappings(&maps) {
            // Not our own (a launched command is traced from before its exec), whose code
            // holds what we look for in others.
            if own.as_ref() == Some(&mapping.id) {
                continue;
            }
            let Entry::Vacant(new) = self.files.entry(mapping.id) else {
                continue;
            };
            // Through the process's root: the path is in its mount namespace.
            let path = Path::new(&format!("/proc/{pid}/root"))
                .join(mapping.path.strip_prefix("/").unwrap_or(&mapping.path));
            if let FileOutcome::NotHooked { library, reason } = new.insert(examine(&path, attach)) {
                let problem = format!(
                    "process {pid}, {library} in {}: {reason}",
                    mapping.path.display()
                );
                log::warn!("TLS not decoded: {problem}");
                if self.problems.len() < MAX_PROBLEMS {
                    self.problems.push(problem);
                }
            }
        }
        let hooked: Vec<(Range<u64>, FileId)> = mapped_ranges(&maps)
            .filter(|(_, id)| matches!(self.files.get(id), Some(FileOutcome::Hooked(..))))
            .collect();
        if hooked.is_empty() {
            self.hooked_ranges.remove(&pid);
        } else {
            self.hooked_ranges.insert(pid, hooked);
        }
    }

    /// The process is gone.
    pub fn forget(&mut self, pid: u32) {
        self.hooked_ranges.remove(&pid);
    }

    /// The libraries found and not hooked, with why.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// The hooked library whose code is at `address` in process `pid`, and since when it is
    /// hooked.
    pub fn library_at(&self, pid: u32, address: u64) -> Option<(&TlsLibrary, u64)> {
        let known = self.hooked_ranges.get(&pid).and_then(|ranges| {
            ranges
                .iter()
                .find(|(range, _)| range.contains(&address))
                .map(|(_, id)| id.clone())
        });
        let id = match known {
            Some(id) => id,
            None => {
                let maps = fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
                mapped_ranges(&maps)
                    .find(|(range, _)| range.contains(&address))
                    .map(|(_, id)| id)?
            }
        };
        match self.files.get(&id)? {
            FileOutcome::Hooked(library, since_ns) => Some((library, *since_ns)),
            _ => None,
        }
    }
}

/// Every file mapping in a `/proc/PID/maps` text: its address range and file.
fn mapped_ranges(maps: &str) -> impl Iterator<Item = (Range<u64>, FileId)> + '_ {
    maps.lines().filter_map(|line| {
        let mut fields = line.split_ascii_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let start = u64::from_str_radix(start, 16).ok()?;
        let end = u64::from_str_radix(end, 16).ok()?;
        let (_, _, dev, inode) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        let inode = inode.parse::<u64>().ok().filter(|&inode| inode != 0)?;
        Some((start..end, (dev.to_owned(), inode)))
    })
}

/// This program's file.
fn own_executable() -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata("/proc/self/exe").ok()?;
    let dev = meta.dev();
    // As /proc/PID/maps writes it: major:minor in hex.
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    Some((format!("{major:02x}:{minor:02x}"), meta.ino()))
}

fn examine(
    path: &Path,
    attach: &mut dyn FnMut(&Path, &TlsLibrary) -> Result<(), String>,
) -> FileOutcome {
    let started = std::time::Instant::now();
    let inspection = inspect(path);
    log::debug!("examined {} in {:?}", path.display(), started.elapsed());
    match inspection {
        Inspection::NoTls => FileOutcome::NoTls,
        Inspection::Unhookable { library, reason } => FileOutcome::NotHooked { library, reason },
        Inspection::Library(library) => match attach(path, &library) {
            Ok(()) => {
                log::info!(
                    "hooked {} {} in {}",
                    library.name,
                    library.version.as_deref().unwrap_or(""),
                    path.display()
                );
                FileOutcome::Hooked(library, monotonic_now_ns())
            }
            Err(reason) => FileOutcome::NotHooked {
                library: library.name.to_owned(),
                reason,
            },
        },
    }
}

/// The distinct files mapped executable in a `/proc/PID/maps` text.
fn executable_mappings(maps: &str) -> Vec<Mapping> {
    let mut mappings: Vec<Mapping> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode path
        let mut fields = line.split_ascii_whitespace();
        let (Some(_), Some(perms), Some(_), Some(dev), Some(inode)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let path = fields.collect::<Vec<_>>().join(" ");
        if !perms.contains('x') || !path.starts_with('/') || path.ends_with(" (deleted)") {
            continue;
        }
        let Ok(inode) = inode.parse::<u64>() else {
            continue;
        };
        let id = (dev.to_owned(), inode);
        if inode != 0 && !mappings.iter().any(|mapping| mapping.id == id) {
            mappings.push(Mapping {
                id,
                path: PathBuf::from(path),
            });
        }
    }
    mappings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_file_mappings_are_listed_once() {
        let maps = "\
55d0c0000000-55d0c0001000 r--p 00000000 08:01 1234 /usr/bin/python3.11
55d0c0001000-55d0c0100000 r-xp 00001000 08:01 1234 /usr/bin/python3.11
7f0000000000-7f0000100000 r-xp 00000000 08:01 99 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000200000-7f0000300000 r-xp 00000000 08:01 98 /tmp/gone.so (deleted)
7f0000400000-7f0000500000 rwxp 00000000 00:00 0 
7ffd00000000-7ffd00001000 r-xp 00000000 00:00 0 [vdso]
";
        let mappings = executable_mappings(maps);
        let paths: Vec<_> = mappings.iter().map(|m| m.path.to_str().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "/usr/bin/python3.11",
                "/usr/lib/x86_64-linux-gnu/libssl.so.3"
            ]
        );
    }
}
