//! A `newc` cpio archive, the format the kernel unpacks an initramfs from
//! (Documentation/driver-api/early-userspace/buffer-format.rst).

use std::collections::BTreeSet;

/// An archive being built in memory; directories are added as paths need them.
#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    directories: BTreeSet<String>,
    next_inode: u32,
}

const DIRECTORY: u32 = 0o040_755;

impl Archive {
    /// Adds a file at `path` (absolute, as in the guest) with `mode` (permission bits).
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.parents(path);
        self.entry(path, 0o100_000 | mode, data);
    }

    /// Adds a directory (and its parents).
    pub fn directory(&mut self, path: &str) {
        self.parents(path);
        if self.directories.insert(path.to_owned()) {
            self.entry(path, DIRECTORY, &[]);
        }
    }

    /// The archive, closed by its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.bytes
    }

    fn parents(&mut self, path: &str) {
        let mut parent = String::new();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            parent.push('/');
            parent.push_str(part);
            if self.directories.insert(parent.clone()) {
                let name = parent.clone();
                self.entry(&name, DIRECTORY, &[]);
            }
        }
    }

    fn entry(&mut self, path: &str, mode: u32, data: &[u8]) {
        // Names are stored without the leading slash.
        let name = path.trim_start_matches('/');
        self.next_inode += 1;
        let fields = [
            self.next_inode,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime
            data.len() as u32,
            0, // devmajor
            0, // devminor
            0, // rdevmajor
            0, // rdevminor
            name.len() as u32 + 1,
            0, // check
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    /// Header and name, and data, each end on a 4-byte boundary.
    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}
