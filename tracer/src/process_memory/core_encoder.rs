//! gRPC C-core's encoder size accounting, found in a copy of the process's memory: which index
//! an entry the tracer saw inserted, and so one from before attach, has in the connection.
//!
//! C-core's encoder keeps no copy of its table. It keeps its size accounting, an
//! `HPackEncoderTable`: the index of the newest entry evicted, the table's capacity, how many
//! entries it holds and their total size (four 32-bit words), then a `std::vector<uint16_t>`
//! (three pointers) of each entry's size, slot `index % len`, so that the live entries' sizes
//! add up to the total. An index numbers the connection's insertions from 1, so the table's
//! newest index, less the insertions the tracer saw since attach, gives the index of the first
//! of them, give or take the entries the process inserted that the tracer has not yet read: the
//! sizes the table keeps line those up with the ones the tracer saw.

use super::snapshot::Snapshot;
use crate::hpack::SeenEntry;

/// How many entries the process may have inserted that the tracer has not yet seen.
const MAX_AHEAD: u32 = 16;
/// A table's capacity, at most (SETTINGS_HEADER_TABLE_SIZE as C-core bounds its use).
const MAX_CAPACITY: u32 = 1 << 20;
/// The accounting's size in memory: four words and a vector of three pointers.
pub const ACCOUNTING: usize = 16 + 24;

/// One encoder's size accounting.
#[derive(Debug, Clone)]
pub struct EncoderTable {
    /// Where it is, for what C-core keeps after it.
    pub address: u64,
    /// The index of the newest entry.
    newest: u32,
    /// Each live entry's size, oldest first (indices `newest + 1 - len ..= newest`).
    sizes: Vec<u16>,
}

/// Every C-core encoder's size accounting in the writable memory of `snapshot`.
pub fn encoder_tables(snapshot: &Snapshot) -> Vec<EncoderTable> {
    snapshot
        .aligned(ACCOUNTING)
        .filter_map(|(address, bytes)| {
            let (newest, sizes) = table_at(snapshot, bytes)?;
            Some(EncoderTable {
                address,
                newest,
                sizes,
            })
        })
        .collect()
}

fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// The newest index and the live entries' sizes of the `HPackEncoderTable` in `bytes`, if it
/// is one: its sizes add up, every live one at least an entry's overhead.
fn table_at(snapshot: &Snapshot, bytes: &[u8]) -> Option<(u32, Vec<u16>)> {
    let (evicted, capacity, count, total) = (
        word(bytes, 0),
        word(bytes, 4),
        word(bytes, 8),
        word(bytes, 12),
    );
    let pointer = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let (begin, end, reserved) = (pointer(16), pointer(24), pointer(32));
    if count == 0 || capacity == 0 || capacity > MAX_CAPACITY || total > capacity {
        return None;
    }
    if count > capacity / 32
        || begin == 0
        || end < begin
        || reserved < end
        || (end - begin) % 2 != 0
    {
        return None;
    }
    let slots = ((end - begin) / 2) as usize;
    if slots < count as usize || slots > (MAX_CAPACITY / 32) as usize {
        return None;
    }
    let ring = snapshot.read(begin, 2 * slots)?;
    let newest = evicted.checked_add(count)?;
    let sizes: Vec<u16> = (evicted + 1..=newest)
        .map(|index| {
            let slot = 2 * (index as usize % slots);
            u16::from_le_bytes([ring[slot], ring[slot + 1]])
        })
        .collect();
    let sum: u32 = sizes.iter().map(|&size| u32::from(size)).sum();
    (sum == total && sizes.iter().all(|&size| size >= 32)).then_some((newest, sizes))
}

impl EncoderTable {
    /// The accounting of an encoder whose newest entry has index `newest`.
    #[cfg(test)]
    pub fn of(newest: u32, sizes: Vec<u16>) -> EncoderTable {
        EncoderTable {
            address: 0,
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
