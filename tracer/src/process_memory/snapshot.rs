//! A bounded copy of a traced process's memory, read once through `/proc/PID/mem`.
//!
//! Only private data mappings the process can read are copied (its heaps, stacks, and the data
//! and constants of its files); code, shared and device mappings, and the kernel's
//! `[vvar]`/`[vsyscall]`, are not. Of those, only the pages the process has in memory
//! (`/proc/PID/pagemap`): a runtime reserves far more than it touches (Go's heap arenas are
//! 64 MiB each), and a page never touched holds nothing. Bytes are bounded in all, so a large
//! process costs a bounded read. Reading another process's memory needs ptrace access, which a
//! tracer running as root has.

use std::{fs::File, io, os::unix::fs::FileExt};

/// Most bytes copied from one process.
const MAX_BYTES: usize = 256 << 20;
/// The pages a mapping's resident ranges are told by.
const PAGE: u64 = 4096;
/// `/proc/PID/pagemap`: one little-endian word per page; bit 63, the page is in memory.
const PAGE_PRESENT: u64 = 1 << 63;

/// One copied range of a mapping.
pub struct Region {
    pub start: u64,
    pub writable: bool,
    pub bytes: Vec<u8>,
}

/// The copied memory, by address.
pub struct Snapshot {
    /// Sorted by start address, not overlapping.
    regions: Vec<Region>,
}

impl Snapshot {
    pub fn take(pid: u32) -> io::Result<Snapshot> {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
        let memory = File::open(format!("/proc/{pid}/mem"))?;
        let pagemap = File::open(format!("/proc/{pid}/pagemap"))?;
        let mut regions = Vec::new();
        let mut total = 0;
        for mapping in maps.lines().filter_map(Mapping::parse) {
            if !mapping.wanted() {
                continue;
            }
            for (start, end) in resident(&pagemap, mapping.start, mapping.end) {
                let len = (end - start) as usize;
                if total + len > MAX_BYTES {
                    break;
                }
                let mut bytes = vec![0; len];
                // A mapping can change or go between reading the maps and its bytes: keep
                // what could be read.
                match memory.read_at(&mut bytes, start) {
                    Ok(read) if read > 0 => bytes.truncate(read),
                    _ => continue,
                }
                total += bytes.len();
                regions.push(Region {
                    start,
                    writable: mapping.writable,
                    bytes,
                });
            }
        }
        regions.sort_by_key(|region| region.start);
        Ok(Snapshot { regions })
    }

    /// `len` bytes at `address`, if they were copied.
    pub fn read(&self, address: u64, len: usize) -> Option<&[u8]> {
        let index = self
            .regions
            .partition_point(|region| region.start <= address)
            .checked_sub(1)?;
        let region = &self.regions[index];
        let offset = usize::try_from(address - region.start).ok()?;
        region.bytes.get(offset..offset.checked_add(len)?)
    }

    /// Every run of consecutive `stride`-byte records that `record` takes for one (at most
    /// `max` in a run), in the writable memory, looked for at every 8-byte boundary.
    pub fn record_runs<T>(
        &self,
        stride: usize,
        max: usize,
        record: impl FnMut(&[u8]) -> Option<T>,
    ) -> Vec<Vec<T>> {
        self.record_runs_at(stride, max, record)
            .into_iter()
            .map(|(_, run)| run)
            .collect()
    }

    /// [`Self::record_runs`], each run with the address of its first record.
    pub fn record_runs_at<T>(
        &self,
        stride: usize,
        max: usize,
        mut record: impl FnMut(&[u8]) -> Option<T>,
    ) -> Vec<(u64, Vec<T>)> {
        const ALIGN: usize = 8;
        let mut runs = Vec::new();
        for region in self.regions.iter().filter(|region| region.writable) {
            let bytes = &region.bytes;
            let mut offset = 0;
            while offset + stride <= bytes.len() {
                let mut run = Vec::new();
                let mut end = offset;
                while end + stride <= bytes.len() && run.len() < max {
                    match record(&bytes[end..end + stride]) {
                        Some(found) => run.push(found),
                        None => break,
                    }
                    end += stride;
                }
                if run.is_empty() {
                    offset += ALIGN;
                } else {
                    runs.push((region.start + offset as u64, run));
                    offset = end;
                }
            }
        }
        runs
    }

    /// Every 8-byte-aligned address of the writable memory with the `len` bytes from it.
    pub fn aligned(&self, len: usize) -> impl Iterator<Item = (u64, &[u8])> {
        const ALIGN: usize = 8;
        self.regions
            .iter()
            .filter(|region| region.writable)
            .flat_map(move |region| {
                let ends = region.bytes.len().saturating_sub(len.saturating_sub(1));
                // Regions start on page boundaries: offsets and addresses align alike.
                (0..ends).step_by(ALIGN).map(move |offset| {
                    (
                        region.start + offset as u64,
                        &region.bytes[offset..offset + len],
                    )
                })
            })
    }

    pub fn bytes(&self) -> usize {
        self.regions.iter().map(|region| region.bytes.len()).sum()
    }

    #[cfg(test)]
    pub fn of(regions: Vec<Region>) -> Snapshot {
        let mut regions = regions;
        regions.sort_by_key(|region| region.start);
        Snapshot { regions }
    }
}

/// The little-endian 32-bit word at `at` in `bytes` (a copy of x86-64 or arm64 memory).
pub fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// The little-endian 64-bit word (a pointer, a length) at `at` in `bytes`.
pub fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// The ranges of pages of `[start, end)` that are in memory; the whole mapping if pagemap
/// cannot say.
fn resident(pagemap: &File, start: u64, end: u64) -> Vec<(u64, u64)> {
    let pages = ((end - start) / PAGE) as usize;
    let mut words = vec![0u8; pages * 8];
    match pagemap.read_at(&mut words, start / PAGE * 8) {
        Ok(read) if read == words.len() => {}
        _ => return vec![(start, end)],
    }
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (index, word) in words.chunks_exact(8).enumerate() {
        if u64::from_le_bytes(word.try_into().unwrap()) & PAGE_PRESENT == 0 {
            continue;
        }
        let page = start + index as u64 * PAGE;
        match ranges.last_mut() {
            Some((_, last_end)) if *last_end == page => *last_end = page + PAGE,
            _ => ranges.push((page, page + PAGE)),
        }
    }
    ranges
}

/// A line of `/proc/PID/maps`: `start-end perms offset dev inode [path]`.
struct Mapping<'a> {
    start: u64,
    end: u64,
    readable: bool,
    writable: bool,
    executable: bool,
    private: bool,
    path: &'a str,
}

impl<'a> Mapping<'a> {
    fn parse(line: &'a str) -> Option<Mapping<'a>> {
        let mut fields = line.splitn(6, ' ');
        let (start, end) = fields.next()?.split_once('-')?;
        let perms = fields.next()?.as_bytes();
        let path = fields.nth(3).unwrap_or("").trim_start();
        Some(Mapping {
            start: u64::from_str_radix(start, 16).ok()?,
            end: u64::from_str_radix(end, 16).ok()?,
            readable: perms.first() == Some(&b'r'),
            writable: perms.get(1) == Some(&b'w'),
            executable: perms.get(2) == Some(&b'x'),
            private: perms.get(3) == Some(&b'p'),
            path,
        })
    }

    /// Data, not code: what a header table and the strings it points to live in.
    fn wanted(&self) -> bool {
        self.readable
            && !self.executable
            && self.private
            && self.end > self.start
            && !matches!(self.path, "[vvar]" | "[vvar_vclock]" | "[vsyscall]")
            && !self.path.starts_with("/dev/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_are_read_and_filtered() {
        let heap = Mapping::parse("55d0c000-55d0e000 rw-p 00000000 00:00 0    [heap]").unwrap();
        assert_eq!(
            (heap.start, heap.end, heap.writable),
            (0x55d0c000, 0x55d0e000, true)
        );
        assert!(heap.wanted());
        let shared = Mapping::parse("7f00-8f00 rw-s 00000000 00:05 1234  /dev/shm/x").unwrap();
        assert!(!shared.wanted());
        let vvar = Mapping::parse("7ffd000-7ffe000 r--p 00000000 00:00 0   [vvar]").unwrap();
        assert!(!vvar.wanted());
        let text = Mapping::parse("400000-500000 r-xp 00000000 08:01 42   /usr/bin/x").unwrap();
        assert!(!text.wanted());
        let rodata = Mapping::parse("500000-600000 r--p 00100000 08:01 42   /usr/bin/x").unwrap();
        assert!(rodata.wanted() && !rodata.writable);
    }

    #[test]
    fn the_own_process_can_be_read_back() {
        let marker = String::from("a marker only this test holds");
        let snapshot = Snapshot::take(std::process::id()).expect("own memory");
        let read = snapshot.read(marker.as_ptr() as u64, marker.len());
        assert_eq!(read, Some(marker.as_bytes()));
        assert_eq!(snapshot.read(8, 1), None, "the zero page is never mapped");
    }
}
