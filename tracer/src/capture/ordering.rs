//! Puts one direction of a connection back in stream order.
//!
//! Records usually arrive in offset order. They may not when two threads of the process use one
//! socket, or when the ring buffer dropped a record. Early records wait here for the missing
//! range; if it does not come within a bounded window, it is declared a gap so the stream keeps
//! moving and the loss is visible.

use std::collections::BTreeMap;

use crate::stream::{Chunk, OwnedChunk, Payload};

/// Records held back while waiting for an earlier one, per direction.
const MAX_HELD_CHUNKS: usize = 256;

#[derive(Debug, Default)]
pub struct StreamOrder {
    next_offset: u64,
    held: BTreeMap<u64, OwnedChunk>,
    /// Bytes declared missing because their record never arrived.
    pub missing_bytes: u64,
}

impl StreamOrder {
    /// Whether `chunk` is next, with nothing held: then it is taken as delivered, and its
    /// caller hands it on as it is, without a copy. This is what almost every chunk does.
    pub fn take_in_order(&mut self, chunk: &Chunk<'_>) -> bool {
        let in_order = chunk.offset == self.next_offset && self.held.is_empty();
        if in_order {
            self.next_offset += chunk.payload.len();
        }
        in_order
    }

    /// Accepts a chunk and appends whatever is now in order to `ready`.
    pub fn push(&mut self, chunk: Chunk<'_>, ready: &mut Vec<OwnedChunk>) {
        let end = chunk.offset + chunk.payload.len();
        if end <= self.next_offset {
            return; // Already delivered (or declared missing).
        }
        if chunk.offset > self.next_offset {
            self.held.insert(chunk.offset, OwnedChunk::copy_of(chunk));
            if self.held.len() > MAX_HELD_CHUNKS {
                self.skip_to_held(ready);
            }
            return;
        }
        self.deliver(
            OwnedChunk::copy_of(trim_front(chunk, self.next_offset)),
            ready,
        );
        self.release(ready);
    }

    /// Gives up waiting: the bytes before the earliest held chunk become a gap.
    pub fn flush(&mut self, ready: &mut Vec<OwnedChunk>) {
        while !self.held.is_empty() {
            self.skip_to_held(ready);
        }
    }

    /// The direction ended `end` bytes in, as the kernel counted them: what is held is
    /// delivered, and bytes never delivered before the end become a gap, so that a lost tail
    /// (its records dropped) is seen for what it is rather than as a stream that just stopped.
    pub fn finish(&mut self, end: u64, timestamp_ns: u64, ready: &mut Vec<OwnedChunk>) {
        self.flush(ready);
        if end > self.next_offset {
            let missing = end - self.next_offset;
            self.missing_bytes += missing;
            self.deliver(
                OwnedChunk::gap(self.next_offset, timestamp_ns, missing),
                ready,
            );
        }
    }

    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    fn skip_to_held(&mut self, ready: &mut Vec<OwnedChunk>) {
        let Some((&offset, first)) = self.held.iter().next() else {
            return;
        };
        let missing = offset - self.next_offset;
        let timestamp_ns = first.timestamp_ns;
        self.missing_bytes += missing;
        self.deliver(
            OwnedChunk::gap(self.next_offset, timestamp_ns, missing),
            ready,
        );
        self.release(ready);
    }

    fn release(&mut self, ready: &mut Vec<OwnedChunk>) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() > self.next_offset {
                break;
            }
            let chunk = entry.remove();
            if chunk.end() <= self.next_offset {
                continue; // Wholly delivered already.
            }
            if chunk.offset < self.next_offset {
                let trimmed = trim_front(chunk.as_chunk(), self.next_offset);
                self.deliver(OwnedChunk::copy_of(trimmed), ready);
            } else {
                self.deliver(chunk, ready);
            }
        }
    }

    fn deliver(&mut self, chunk: OwnedChunk, ready: &mut Vec<OwnedChunk>) {
        self.next_offset = chunk.end();
        if !chunk.is_empty() {
            ready.push(chunk);
        }
    }
}

/// Drops the part of `chunk` before `offset` (overlap with what was already delivered).
fn trim_front(mut chunk: Chunk<'_>, offset: u64) -> Chunk<'_> {
    if chunk.offset >= offset {
        return chunk;
    }
    let skip = offset - chunk.offset;
    chunk.payload = match chunk.payload {
        Payload::Bytes(bytes) => Payload::Bytes(&bytes[skip as usize..]),
        Payload::Gap(len) => Payload::Gap(len - skip),
    };
    chunk.offset = offset;
    chunk
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(offset: u64, data: &[u8]) -> Chunk<'_> {
        Chunk {
            offset,
            timestamp_ns: offset,
            payload: Payload::Bytes(data),
        }
    }

    fn owned(offset: u64, data: &[u8]) -> OwnedChunk {
        OwnedChunk::copy_of(bytes(offset, data))
    }

    #[test]
    fn chunks_in_order_pass_through_and_others_wait() {
        let mut order = StreamOrder::default();
        let mut ready = Vec::new();
        assert!(order.take_in_order(&bytes(0, b"ab")));
        assert!(!order.take_in_order(&bytes(5, b"f")), "ahead: it waits");
        order.push(bytes(5, b"f"), &mut ready);
        assert!(
            !order.take_in_order(&bytes(2, b"cde")),
            "next, but one is held"
        );
        order.push(bytes(2, b"cde"), &mut ready);
        assert_eq!(ready, vec![owned(2, b"cde"), owned(5, b"f")]);
        assert!(order.take_in_order(&bytes(6, b"g")));
    }

    #[test]
    fn reorders_and_fills_in() {
        let mut order = StreamOrder::default();
        let mut ready = Vec::new();
        order.push(bytes(3, b"def"), &mut ready);
        assert!(ready.is_empty());
        order.push(bytes(0, b"abc"), &mut ready);
        assert_eq!(ready, vec![owned(0, b"abc"), owned(3, b"def")]);
    }

    #[test]
    fn flush_declares_the_missing_range_a_gap() {
        let mut order = StreamOrder::default();
        let mut ready = Vec::new();
        order.push(bytes(0, b"ab"), &mut ready);
        order.push(bytes(10, b"xyz"), &mut ready);
        order.flush(&mut ready);
        assert_eq!(
            ready[1].as_chunk(),
            Chunk {
                offset: 2,
                timestamp_ns: 10,
                payload: Payload::Gap(8)
            }
        );
        assert_eq!(ready[2], owned(10, b"xyz"));
        assert_eq!(order.missing_bytes, 8);
        // A late arrival of the missing range is dropped, not delivered out of order.
        ready.clear();
        order.push(bytes(2, b"cd"), &mut ready);
        assert!(ready.is_empty());
    }

    #[test]
    fn a_tail_never_delivered_becomes_a_gap_at_the_end() {
        let mut order = StreamOrder::default();
        let mut ready = Vec::new();
        order.push(bytes(0, b"ab"), &mut ready);
        order.push(bytes(4, b"ef"), &mut ready);
        order.finish(9, 20, &mut ready);
        let gaps: Vec<Chunk<'_>> = ready
            .iter()
            .map(OwnedChunk::as_chunk)
            .filter(|chunk| matches!(chunk.payload, Payload::Gap(_)))
            .collect();
        assert_eq!(
            gaps,
            [
                Chunk {
                    offset: 2,
                    timestamp_ns: 4,
                    payload: Payload::Gap(2)
                },
                Chunk {
                    offset: 6,
                    timestamp_ns: 20,
                    payload: Payload::Gap(3)
                }
            ]
        );
        assert_eq!(order.missing_bytes, 5);
        // Everything delivered: nothing more.
        ready.clear();
        order.finish(9, 30, &mut ready);
        assert!(ready.is_empty());
    }

    #[test]
    fn too_many_held_chunks_force_a_gap() {
        let mut order = StreamOrder::default();
        let mut ready = Vec::new();
        for index in 0..=MAX_HELD_CHUNKS as u64 {
            order.push(bytes(1 + index, b"x"), &mut ready);
        }
        assert_eq!(ready.first().unwrap().as_chunk().payload, Payload::Gap(1));
        assert_eq!(ready.len(), MAX_HELD_CHUNKS + 2);
    }
}
