//! Header blocks of one direction: a HEADERS (or PUSH_PROMISE) frame joined with the
//! CONTINUATION frames that follow it (RFC 9113 §6.10), then decoded by the direction's HPACK
//! decoder. Nothing above sees a block before it is whole, as in h2's codec.

use std::rc::Rc;

use super::{
    headers::{BlockMeaning, KnownMeanings},
    metadata::is_retained,
    stats::TrackerStats,
};
use crate::{
    hpack::{self, Decoded, HeaderField},
    http2::{FrameHeader, Kind, frame::flags},
};

/// Largest block buffer a direction keeps between blocks; gRPC's are a few hundred bytes.
const KEPT_BLOCK_CAPACITY: usize = 16 * 1024;

/// A complete header block, or one that could not be decoded.
pub(super) struct HeaderBlock {
    pub stream_id: u32,
    pub end_stream: bool,
    /// When its first frame started.
    pub started_ns: u64,
    /// `None` when part of it was lost, it was too large, or HPACK could not decode it.
    pub meaning: Option<Rc<BlockMeaning>>,
}

/// The block whose fragments are being gathered.
struct PendingBlock {
    stream_id: u32,
    /// PUSH_PROMISE blocks are decoded only to keep the HPACK table in sync.
    push_promise: bool,
    end_stream: bool,
    started_ns: u64,
    /// Part of it was lost or it grew too large: it will not be decoded.
    lost: bool,
}

/// One direction's header-block assembly and HPACK state.
pub(super) struct HeaderBlocks {
    decoder: hpack::Decoder,
    pending: Option<PendingBlock>,
    /// The pending block's fragments, joined; emptied rather than freed between blocks, up to
    /// [`KEPT_BLOCK_CAPACITY`].
    fragments: Vec<u8>,
    /// The last decoded block's fields: kept only for its capacity, reused block to block.
    fields: Vec<HeaderField>,
    /// What the blocks the decoder hands out as repeats mean.
    meanings: KnownMeanings,
    /// Largest block decoded; larger ones are dropped and counted.
    max_block: usize,
}

impl HeaderBlocks {
    /// `from_start`: the direction is seen from its first byte, so the HPACK table is complete.
    pub fn new(from_start: bool, max_block: usize) -> HeaderBlocks {
        HeaderBlocks {
            decoder: if from_start {
                hpack::Decoder::new(is_retained)
            } else {
                hpack::Decoder::joined_late(is_retained)
            },
            pending: None,
            fragments: Vec::new(),
            fields: Vec::new(),
            meanings: KnownMeanings::default(),
            max_block,
        }
    }

    /// The direction's HPACK decoder, for what its table holds.
    pub fn decoder(&self) -> &hpack::Decoder {
        &self.decoder
    }

    /// Whether a block is waiting for its CONTINUATION frames.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// SETTINGS_HEADER_TABLE_SIZE from the peer that decodes what this direction encodes.
    pub fn set_table_size(&mut self, size: usize) {
        self.decoder.set_protocol_max(size);
    }

    /// The header state is no longer trustworthy (a frame went missing, or arrived out of the
    /// order RFC 9113 §6.2 requires): the pending block is dropped and HPACK recovers as after
    /// a late join.
    pub fn lose_state(&mut self) {
        self.pending = None;
        self.decoder.lose_sync();
    }

    /// A HEADERS or PUSH_PROMISE frame starts a block.
    pub fn start(
        &mut self,
        stream_id: u32,
        push_promise: bool,
        end_stream: bool,
        started_ns: u64,
        fragment: &[u8],
        stats: &mut TrackerStats,
    ) {
        let lost = fragment.len() > self.max_block;
        if lost {
            stats.header_blocks_too_large += 1;
        }
        self.fragments.clear();
        if !lost {
            self.fragments.extend_from_slice(fragment);
        }
        self.pending = Some(PendingBlock {
            stream_id,
            push_promise,
            end_stream,
            started_ns,
            lost,
        });
    }

    /// A CONTINUATION frame; `false` when no block of its stream was pending (its block cannot
    /// be decoded, and the state was lost).
    pub fn continue_block(
        &mut self,
        stream_id: u32,
        fragment: &[u8],
        stats: &mut TrackerStats,
    ) -> bool {
        match &mut self.pending {
            Some(pending) if pending.stream_id == stream_id => {
                if self.fragments.len() + fragment.len() > self.max_block {
                    stats.header_blocks_too_large += u64::from(!pending.lost);
                    pending.lost = true;
                    self.fragments = Vec::new();
                } else if !pending.lost {
                    self.fragments.extend_from_slice(fragment);
                }
                true
            }
            _ => {
                self.lose_state();
                false
            }
        }
    }

    /// END_HEADERS: decodes the pending block. `None` for a PUSH_PROMISE (it only updates the
    /// table) or when nothing was pending.
    pub fn finish(&mut self, conn_id: u64, stats: &mut TrackerStats) -> Option<HeaderBlock> {
        let block = self.pending.take()?;
        let meaning = if block.lost {
            self.decoder.lose_sync();
            None
        } else {
            match self.decoder.decode_block(&self.fragments, &mut self.fields) {
                Ok(Decoded::Repeat { serial, fields }) => {
                    Some(self.meanings.of_repeat(serial, fields))
                }
                Ok(Decoded::Fresh) => Some(Rc::new(BlockMeaning::of(&self.fields))),
                Err(err) => {
                    log::debug!("conn {conn_id:#x}: HPACK error: {err}");
                    stats.hpack_errors += 1;
                    None
                }
            }
        };
        self.fields.clear();
        // Emptied for the next block; freed if an unusually large block grew it.
        self.fragments.clear();
        if self.fragments.capacity() > KEPT_BLOCK_CAPACITY {
            self.fragments = Vec::new();
        }
        (!block.push_promise).then_some(HeaderBlock {
            stream_id: block.stream_id,
            end_stream: block.end_stream,
            started_ns: block.started_ns,
            meaning,
        })
    }

    /// A frame carrying (part of) a header block fell into a capture gap; only its header was
    /// seen. Returns the block it ended, undecodable.
    pub fn lost_in_gap(
        &mut self,
        header: FrameHeader,
        now: u64,
        conn_id: u64,
        stats: &mut TrackerStats,
    ) -> Option<HeaderBlock> {
        stats.header_blocks_lost += 1;
        self.decoder.lose_sync();
        match header.kind {
            Kind::Headers => {
                self.pending = None;
                Some(HeaderBlock {
                    stream_id: header.stream_id,
                    end_stream: header.flags & flags::END_STREAM != 0,
                    started_ns: now,
                    meaning: None,
                })
            }
            Kind::Continuation => {
                if let Some(pending) = &mut self.pending {
                    pending.lost = true;
                    self.fragments = Vec::new();
                }
                if header.flags & flags::END_HEADERS != 0 {
                    self.finish(conn_id, stats)
                } else {
                    None
                }
            }
            _ => {
                self.pending = None;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpack::unhex;

    /// RFC 7541 C.3.1: `:method GET`, `:scheme http`, `:path /`, `:authority www.example.com`.
    const REQUEST: &str = "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d";

    fn blocks() -> (HeaderBlocks, TrackerStats) {
        (HeaderBlocks::new(true, 64), TrackerStats::default())
    }

    #[test]
    fn a_block_split_over_continuations_is_decoded_whole() {
        let (mut blocks, mut stats) = blocks();
        let bytes = unhex(REQUEST);
        let (first, rest) = bytes.split_at(5);
        let (second, third) = rest.split_at(4);
        blocks.start(1, false, true, 7, first, &mut stats);
        assert!(blocks.continue_block(1, second, &mut stats));
        assert!(blocks.continue_block(1, third, &mut stats));
        let block = blocks.finish(1, &mut stats).expect("a HEADERS block");
        assert_eq!(
            (block.stream_id, block.end_stream, block.started_ns),
            (1, true, 7)
        );
        let meaning = block.meaning.expect("decoded");
        assert!(meaning.has_request_pseudo_headers);
        assert_eq!(stats, TrackerStats::default());
    }

    #[test]
    fn a_continuation_of_another_stream_loses_the_block() {
        let (mut blocks, mut stats) = blocks();
        let bytes = unhex(REQUEST);
        blocks.start(1, false, true, 7, &bytes[..5], &mut stats);
        assert!(!blocks.continue_block(3, &bytes[5..], &mut stats));
        assert!(!blocks.is_pending());
        assert!(blocks.finish(1, &mut stats).is_none());
    }

    #[test]
    fn a_block_over_the_limit_is_counted_once_and_not_decoded() {
        let (mut blocks, mut stats) = blocks();
        blocks.start(1, false, false, 0, &[0x82; 40], &mut stats);
        assert!(blocks.continue_block(1, &[0x82; 40], &mut stats));
        assert!(blocks.continue_block(1, &[0x82; 40], &mut stats));
        let block = blocks.finish(1, &mut stats).expect("a HEADERS block");
        assert!(block.meaning.is_none());
        assert_eq!(stats.header_blocks_too_large, 1);
    }

    #[test]
    fn push_promise_blocks_update_the_table_but_are_not_handed_up() {
        let (mut blocks, mut stats) = blocks();
        blocks.start(2, true, false, 0, &unhex(REQUEST), &mut stats);
        assert!(blocks.finish(1, &mut stats).is_none());
        assert_eq!(stats, TrackerStats::default());
    }
}
