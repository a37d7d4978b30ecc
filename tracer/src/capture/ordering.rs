//! Puts one direction of a connection back in stream order.
//!
//! Records usually arrive in offset order. They may not when two threads of the process use one
//! socket, or when the ring buffer dropped a record. Early records wait here for the missing
//! range; if it does not come within a bounded window, it is declared a gap so the stream keeps
//! moving and the loss is visible.

use std::collections::BTreeMap;

/// What one stretch of a byte stream holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Bytes(Vec<u8>),
    /// This many bytes went by but were not captured.
    Gap(u64),
}

impl Payload {
    pub fn len(&self) -> u64 {
        match self {
            Payload::Bytes(bytes) => bytes.len() as u64,
            Payload::Gap(len) => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A stretch of a byte stream starting at `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub offset: u64,
    /// CLOCK_MONOTONIC nanoseconds when the syscall that moved it returned.
    pub timestamp_ns: u64,
    pub payload: Payload,
}

/// Records held back while waiting for an earlier one, per direction.
const MAX_HELD_CHUNKS: usize = 256;

#[derive(Debug, Default)]
pub struct StreamOrder {
    next_offset: u64,
    held: BTreeMap<u64, Chunk>,
    /// Bytes declared missing because their record never arrived.
    pub missing_bytes: u64,
}

impl StreamOrder {
    /// Accepts a chunk and appends whatever is now in order to `ready`.
    pub fn push(&mut self, chunk: Chunk, ready: &mut Vec<Chunk>) {
        let end = chunk.offset + chunk.payload.len();
        if end <= self.next_offset {
            return; // Already delivered (or declared missing).
        }
        if chunk.offset > self.next_offset {
            self.held.insert(chunk.offset, chunk);
            if self.held.len() > MAX_HELD_CHUNKS {
                self.skip_to_held(ready);
            }
            return;
        }
        self.deliver(trim_front(chunk, self.next_offset), ready);
        self.release(ready);
    }

    /// Gives up waiting: the bytes before the earliest held chunk become a gap.
    pub fn flush(&mut self, ready: &mut Vec<Chunk>) {
        while !self.held.is_empty() {
            self.skip_to_held(ready);
        }
    }

    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    fn skip_to_held(&mut self, ready: &mut Vec<Chunk>) {
        let Some((&offset, first)) = self.held.iter().next() else {
            return;
        };
        let missing = offset - self.next_offset;
        let timestamp_ns = first.timestamp_ns;
        self.missing_bytes += missing;
        self.deliver(
            Chunk {
                offset: self.next_offset,
                timestamp_ns,
                payload: Payload::Gap(missing),
            },
            ready,
        );
        self.release(ready);
    }

    fn release(&mut self, ready: &mut Vec<Chunk>) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() > self.next_offset {
                break;
            }
            let chunk = entry.remove();
            if chunk.offset + chunk.payload.len() > self.next_offset {
                let trimmed = trim_front(chunk, self.next_offset);
                self.deliver(trimmed, ready);
            }
        }
    }

    fn deliver(&mut self, chunk: Chunk, ready: &mut Vec<Chunk>) {
        self.next_offset = chunk.offset + chunk.payload.len();
        if !chunk.payload.is_empty() {
            ready.push(chunk);
        }
    }
}

/// Drops the part of `chunk` before `offset` (overlap with what was already delivered).
fn trim_front(mut chunk: Chunk, offset: u64) -> Chunk {
    if chunk.offset >= offset {
        return chunk;
    }
    let skip = offset - chunk.offset;
    chunk.payload = match chunk.payload {
        Payload::Bytes(bytes) => Payload::Bytes(bytes[skip as usize..].to_vec()),
        Payload::Gap(len) => Payload::Gap(len - skip),
    };
    chunk.offset = offset;
    chunk
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(offset: u64, data: &[u8]) -> Chunk {
        Chunk {
            offset,
            timestamp_ns: offset,
            payload: Payload::Bytes(data.to_vec()),
        }
    }

    #[test]
    fn reorders_and_fills_in() {
        let mut order = StreamOrder::default();
        let mut ready = Vec::new();
        order.push(bytes(3, b"def"), &mut ready);
        assert!(ready.is_empty());
        order.push(bytes(0, b"abc"), &mut ready);
        assert_eq!(ready, vec![bytes(0, b"abc"), bytes(3, b"def")]);
    }

    #[test]
    fn flush_declares_the_missing_range_a_gap() {
        let mut order = StreamOrder::default();
        let mut ready = Vec::new();
        order.push(bytes(0, b"ab"), &mut ready);
        order.push(bytes(10, b"xyz"), &mut ready);
        order.flush(&mut ready);
        assert_eq!(
            ready[1],
            Chunk {
                offset: 2,
                timestamp_ns: 10,
                payload: Payload::Gap(8)
            }
        );
        assert_eq!(ready[2], bytes(10, b"xyz"));
        assert_eq!(order.missing_bytes, 8);
        // A late arrival of the missing range is dropped, not delivered out of order.
        ready.clear();
        order.push(bytes(2, b"cd"), &mut ready);
        assert!(ready.is_empty());
    }

    #[test]
    fn too_many_held_chunks_force_a_gap() {
        let mut order = StreamOrder::default();
        let mut ready = Vec::new();
        for index in 0..=MAX_HELD_CHUNKS as u64 {
            order.push(bytes(1 + index, b"x"), &mut ready);
        }
        assert_eq!(ready.first().unwrap().payload, Payload::Gap(1));
        assert_eq!(ready.len(), MAX_HELD_CHUNKS + 2);
    }
}
