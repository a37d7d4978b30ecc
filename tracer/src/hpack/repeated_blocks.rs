//! Header blocks that repeat byte for byte.
//!
//! A client sends the same request headers with every call of a method, and a server the same
//! response headers and trailers, and once an encoder has indexed them the blocks are identical
//! byte strings. A block that leaves the dynamic table as it was decodes to the same fields
//! for as long as the table stays the same, so its fields are kept and handed out again
//! instead of being decoded once more.

use super::field::HeaderField;
use crate::recent::Recent;

/// The last few blocks that did not change the table, with their fields.
#[derive(Default)]
pub struct RepeatedBlocks {
    /// Requests, responses and trailers of a method or two.
    entries: Recent<Remembered, 4>,
    /// The serial number of the last block remembered.
    last_serial: u64,
}

struct Remembered {
    serial: u64,
    /// The table's change count when the block was decoded: the fields hold only while it is
    /// the same.
    table_changes: u64,
    block: Vec<u8>,
    fields: Vec<HeaderField>,
    /// References to entries from before we were watching, counted again on every repeat.
    unknown_references: u64,
}

/// A repeat this decoder has already decoded.
pub struct Repeat<'a> {
    /// Numbers the remembered blocks: every repeat of one has the same.
    pub serial: u64,
    pub fields: &'a [HeaderField],
    pub unknown_references: u64,
}

impl RepeatedBlocks {
    /// Larger blocks are rare and mostly carry values that change from call to call.
    const MAX_BLOCK: usize = 512;

    /// Where `block` is remembered, if it was decoded with the table as it is now.
    pub fn find(&self, block: &[u8], table_changes: u64) -> Option<usize> {
        self.entries
            .position(|entry| entry.table_changes == table_changes && entry.block == block)
    }

    /// The block remembered at `index` (from [`RepeatedBlocks::find`]).
    pub fn repeat(&self, index: usize) -> Repeat<'_> {
        let entry = self.entries.get(index);
        Repeat {
            serial: entry.serial,
            fields: &entry.fields,
            unknown_references: entry.unknown_references,
        }
    }

    /// Remembers a block decoded without changing the table (as of `table_changes`).
    pub fn insert(
        &mut self,
        block: &[u8],
        table_changes: u64,
        fields: &[HeaderField],
        unknown_references: u64,
    ) {
        if block.len() > Self::MAX_BLOCK {
            return;
        }
        // An entry made stale by a table change is the first to go.
        let stale = self
            .entries
            .position(|entry| entry.table_changes != table_changes);
        let entry = match stale {
            Some(index) => self.entries.get_mut(index),
            None => self.entries.reuse_oldest(|| Remembered {
                serial: 0,
                table_changes,
                block: Vec::new(),
                fields: Vec::new(),
                unknown_references: 0,
            }),
        };
        self.last_serial += 1;
        entry.serial = self.last_serial;
        entry.table_changes = table_changes;
        entry.block.clear();
        entry.block.extend_from_slice(block);
        entry.fields.clear();
        entry.fields.extend_from_slice(fields);
        entry.unknown_references = unknown_references;
    }
}
