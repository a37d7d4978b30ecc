//! gRPC C-core's encoder size accounting, found in a copy of the process's memory: which index
//! an entry the tracer saw inserted, and so one from before attach, has in the connection.
//!
//! C-core's encoder keeps no copy of its table. It keeps its size accounting, an
//! `HPackEncoderTable`: the index of the newest entry evicted, the table's capacity, how many
//! entries it holds and their total size (four 32-bit words), then each entry's size (16 bits)
//! in a ring, slot `index % len`, so that the live entries' sizes add up to the total. The ring
//! is a `std::vector<uint16_t>` (three pointers: grpcio 1.60 to 1.85), or an
//! `absl::InlinedVector<uint16_t, 128>` (grpc++ 1.51 as Debian ships it: a word holding its
//! length times two, plus one if the entries are on the heap, then either 128 entries inline
//! or a pointer and a capacity). An index numbers the connection's insertions from 1, so the
//! table's newest index, less the insertions the tracer saw since attach, gives the index of
//! the first of them, give or take the entries the process inserted that the tracer has not
//! yet read: the sizes the table keeps line those up with the ones the tracer saw.

use super::snapshot::{Snapshot, u32_at, u64_at};
use crate::hpack::SeenEntry;

/// How many entries the process may have inserted that the tracer has not yet seen.
const MAX_AHEAD: u32 = 16;
/// A table's capacity, at most (SETTINGS_HEADER_TABLE_SIZE as C-core bounds its use).
const MAX_CAPACITY: u32 = 1 << 20;
/// Four words, then the ring's length and where it is.
const WORDS: usize = 16;
const VECTOR: usize = 24;
/// An `absl::InlinedVector<uint16_t, 128>`: its length word and its 256 bytes of storage.
const INLINED_ENTRIES: usize = 128;
const INLINED_VECTOR: usize = 8 + 2 * INLINED_ENTRIES;

/// One encoder's size accounting.
#[derive(Debug, Clone)]
pub struct EncoderTable {
    /// Where it ends, for what C-core keeps after it.
    pub end: u64,
    /// The index of the newest entry.
    newest: u32,
    /// Each live entry's size, oldest first (indices `newest + 1 - len ..= newest`).
    sizes: Vec<u16>,
}

/// Every C-core encoder's size accounting in the writable memory of `snapshot`.
pub fn encoder_tables(snapshot: &Snapshot) -> Vec<EncoderTable> {
    snapshot
        .aligned(WORDS + INLINED_VECTOR)
        .filter_map(|(address, bytes)| {
            let (newest, sizes, len) = table_at(snapshot, bytes)?;
            Some(EncoderTable {
                end: address + len as u64,
                newest,
                sizes,
            })
        })
        .collect()
}

/// The newest index, the live entries' sizes and the length in memory of the
/// `HPackEncoderTable` at the start of `bytes`, if it is one: its sizes add up, every live one
/// at least an entry's overhead.
fn table_at(snapshot: &Snapshot, bytes: &[u8]) -> Option<(u32, Vec<u16>, usize)> {
    let (evicted, capacity, count, total) = (
        u32_at(bytes, 0),
        u32_at(bytes, 4),
        u32_at(bytes, 8),
        u32_at(bytes, 12),
    );
    if count == 0 || capacity == 0 || capacity > MAX_CAPACITY || total > capacity {
        return None;
    }
    if count > capacity / 32 {
        return None;
    }
    let (ring, len) = ring_of_vector(snapshot, &bytes[WORDS..])
        .map(|ring| (ring, WORDS + VECTOR))
        .or_else(|| {
            ring_of_inlined_vector(snapshot, &bytes[WORDS..])
                .map(|ring| (ring, WORDS + INLINED_VECTOR))
        })?;
    let slots = ring.len() / 2;
    if slots < count as usize {
        return None;
    }
    let newest = evicted.checked_add(count)?;
    let sizes: Vec<u16> = (evicted + 1..=newest)
        .map(|index| {
            let slot = 2 * (index as usize % slots);
            u16::from_le_bytes([ring[slot], ring[slot + 1]])
        })
        .collect();
    let sum: u32 = sizes.iter().map(|&size| u32::from(size)).sum();
    (sum == total && sizes.iter().all(|&size| size >= 32)).then_some((newest, sizes, len))
}

/// The ring's bytes, if `bytes` starts with a `std::vector<uint16_t>` holding it.
fn ring_of_vector<'a>(snapshot: &'a Snapshot, bytes: &[u8]) -> Option<&'a [u8]> {
    let (begin, end, reserved) = (u64_at(bytes, 0), u64_at(bytes, 8), u64_at(bytes, 16));
    if begin == 0 || end < begin || reserved < end || (end - begin) % 2 != 0 {
        return None;
    }
    let slots = (end - begin) / 2;
    if slots == 0 || slots > u64::from(MAX_CAPACITY / 32) {
        return None;
    }
    snapshot.read(begin, 2 * slots as usize)
}

/// The ring's bytes, if `bytes` starts with an `absl::InlinedVector<uint16_t, 128>` holding
/// it: its length word (length times two, plus one when on the heap), then its storage.
fn ring_of_inlined_vector<'a>(snapshot: &'a Snapshot, bytes: &'a [u8]) -> Option<&'a [u8]> {
    let metadata = u64_at(bytes, 0);
    let slots = usize::try_from(metadata >> 1).ok()?;
    if slots == 0 || slots > (MAX_CAPACITY / 32) as usize {
        return None;
    }
    if metadata & 1 == 0 {
        // Inline: at most its inline capacity.
        (slots <= INLINED_ENTRIES).then(|| &bytes[8..8 + 2 * slots])
    } else {
        let (data, capacity) = (u64_at(bytes, 8), u64_at(bytes, 16));
        if data == 0 || capacity < slots as u64 {
            return None;
        }
        snapshot.read(data, 2 * slots)
    }
}

impl EncoderTable {
    /// The accounting of an encoder whose newest entry has index `newest`.
    #[cfg(test)]
    pub fn of(newest: u32, sizes: Vec<u16>) -> EncoderTable {
        EncoderTable {
            end: 0,
            newest,
            sizes,
        }
    }

    /// The index of the oldest live entry.
    pub fn oldest(&self) -> u32 {
        self.newest + 1 - self.sizes.len() as u32
    }

    pub fn newest(&self) -> u32 {
        self.newest
    }

    /// The size kept for the entry at `index`, if it is live.
    pub fn size(&self, index: i64) -> Option<usize> {
        let at = usize::try_from(index - i64::from(self.oldest())).ok()?;
        self.sizes.get(at).map(|&size| usize::from(size))
    }

    /// Each index the first entry seen since attach (`seen`, newest first) may have in this
    /// table: one per number of entries the process may be ahead of the tracer, where every
    /// entry seen whose size is known, and still live, has that size here, and at least one
    /// does.
    pub fn first_insertions<'a>(
        &'a self,
        seen: &'a [SeenEntry<'_>],
    ) -> impl Iterator<Item = i64> + 'a {
        (0..=MAX_AHEAD)
            .map(|ahead| i64::from(self.newest) + 1 - seen.len() as i64 - i64::from(ahead))
            .filter(|&first| self.sizes_line_up(seen, first))
    }

    fn sizes_line_up(&self, seen: &[SeenEntry<'_>], first: i64) -> bool {
        let mut compared = 0;
        for (back, entry) in seen.iter().enumerate() {
            let index = first + (seen.len() - 1 - back) as i64;
            let (Some(size), Some(kept)) = (entry.size, self.size(index)) else {
                continue;
            };
            if size != kept {
                return false;
            }
            compared += 1;
        }
        compared > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process_memory::snapshot::Region;

    const HEAP: u64 = 0x10_0000;
    const SIZES: [u16; 3] = [63, 57, 48];

    fn words(newest: u32, total: u32) -> Vec<u8> {
        [0, 4096, newest, total]
            .into_iter()
            .flat_map(u32::to_le_bytes)
            .collect()
    }

    fn snapshot(heap: Vec<u8>) -> Snapshot {
        Snapshot::of(vec![Region {
            start: HEAP,
            writable: true,
            bytes: heap,
        }])
    }

    #[test]
    fn an_inlined_ring_is_read_as_grpc_1_51_keeps_it() {
        // The words, then an absl::InlinedVector<uint16_t, 128> of 128 entries, inline
        // (length word 2 * 128), index i at slot i % 128.
        let total = SIZES.iter().map(|&size| u32::from(size)).sum();
        let mut heap = words(3, total);
        heap.extend(u64::to_le_bytes(2 * 128));
        let mut ring = [0u8; 256];
        for (nth, size) in SIZES.iter().enumerate() {
            ring[2 * (nth + 1)..2 * (nth + 2)].copy_from_slice(&size.to_le_bytes());
        }
        heap.extend(ring);
        heap.extend([0u8; 64]);
        let tables = encoder_tables(&snapshot(heap.clone()));
        assert_eq!(tables.len(), 1);
        let table = &tables[0];
        assert_eq!((table.oldest(), table.newest()), (1, 3));
        assert_eq!(table.size(1), Some(63));
        assert_eq!(table.end, HEAP + (WORDS + INLINED_VECTOR) as u64);
        // Sizes that do not add up to the total: not a table.
        heap[12..16].copy_from_slice(&(total + 1).to_le_bytes());
        assert!(encoder_tables(&snapshot(heap)).is_empty());
    }
}
