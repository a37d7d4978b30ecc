//! The dynamic table (RFC 7541 §2.3.2, §4), with room for a history we did not see.

use std::collections::VecDeque;

use super::{field::FieldValue, text::Text};

/// Per-entry overhead counted in the table size (§4.1).
pub const ENTRY_OVERHEAD: usize = 32;

/// Which entry of a table an index referred to. An index counts from the newest entry, so every
/// insertion shifts it (§2.3.3), but an entry stays the entry it was: entries are numbered by
/// when they were inserted, counted from when we started watching the table. 0 is the first
/// insertion we saw, -1 the newest entry inserted before we were watching, -2 the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryId {
    /// Which stretch of watching: it starts again, with new numbers, each time the table's
    /// history is forgotten (a header block was lost).
    pub watch: u32,
    pub insertion: i64,
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// `None` when the name came from an entry that was inserted before we were watching...
    pub name: Option<Text>,
    /// ...this one.
    pub name_from: Option<EntryId>,
    /// When the value was not kept (not allowlisted): a digest of it, so that a copy of the
    /// table found elsewhere can be matched entry by entry (see `crate::process_memory`).
    pub value_digest: Option<u64>,
    pub value: FieldValue,
    /// §4.1 size. For an unknown name this is a lower bound; sizes only bound our memory, they
    /// never decide what an index resolves to (see [`DynamicTable::get`]).
    pub size: usize,
}

pub enum Lookup<'a> {
    Found(&'a Entry),
    /// Inserted before we started watching (or before a lost header block).
    Unknown(EntryId),
    /// Past the end of a table whose whole history we saw: a corrupt reference.
    Invalid,
}

#[derive(Debug)]
pub struct DynamicTable {
    /// Newest first, matching the index order.
    entries: VecDeque<Entry>,
    size: usize,
    max_size: usize,
    /// Whether every entry ever inserted was seen. If not, older unseen entries may sit behind
    /// the ones we know.
    history_complete: bool,
    /// How many times the entries (or the limit on them) changed: equal counts mean an index
    /// resolves to the same entry.
    changes: u64,
    /// The current stretch of watching, and how many entries were inserted during it.
    watch: u32,
    inserted: i64,
}

impl DynamicTable {
    pub fn new(max_size: usize, history_complete: bool) -> DynamicTable {
        DynamicTable {
            entries: VecDeque::new(),
            size: 0,
            max_size,
            history_complete,
            changes: 0,
            watch: 0,
            inserted: 0,
        }
    }

    /// Entry `index` counted from the newest (0-based). Entries we know are exactly the newest
    /// ones, in order, so a known index is exact whatever came before attach.
    pub fn get(&self, index: usize) -> Lookup<'_> {
        if let Some(entry) = self.entries.get(index) {
            return Lookup::Found(entry);
        }
        // Past the entries we know: one inserted before we were watching, unless it is one we
        // saw inserted and then evicted (then everything older is gone too).
        let insertion = i64::try_from(index).map_or(i64::MIN, |index| self.inserted - 1 - index);
        if self.history_complete || insertion >= 0 {
            return Lookup::Invalid;
        }
        Lookup::Unknown(EntryId {
            watch: self.watch,
            insertion,
        })
    }

    pub fn insert(&mut self, entry: Entry) {
        self.changes += 1;
        self.inserted += 1;
        // §4.4: an entry larger than the table empties it and is not added.
        if entry.size > self.max_size {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max_size - entry.size);
        self.size += entry.size;
        self.entries.push_front(entry);
    }

    /// §4.3: a new maximum evicts entries until the table fits.
    pub fn set_max_size(&mut self, max_size: usize) {
        self.changes += 1;
        self.max_size = max_size;
        self.evict_to(max_size);
    }

    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Forgets everything: what we knew may now sit at other indices.
    pub fn forget_history(&mut self) {
        self.changes += 1;
        self.watch += 1;
        self.inserted = 0;
        self.entries.clear();
        self.size = 0;
        self.history_complete = false;
    }

    /// The entries inserted since watching began, newest first.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    pub fn watch(&self) -> u32 {
        self.watch
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn history_complete(&self) -> bool {
        self.history_complete
    }

    pub fn changes(&self) -> u64 {
        self.changes
    }

    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            let Some(oldest) = self.entries.pop_back() else {
                break;
            };
            self.size -= oldest.size;
        }
    }
}
