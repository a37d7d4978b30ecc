//! One entry point for fuzzing the whole parsing path (frame reader, HPACK, call assembly) on
//! arbitrary input. Used by the cargo-fuzz target in `tracer/fuzz` and by a corpus replay and
//! smoke run in the ordinary test suite.

use crate::{
    grpc::{ConnectionFacts, ConnectionTracker, EndReason, Limits},
    stream::{Chunk, Direction, Payload},
};

/// Interprets `input` as a connection's life and runs it through a [`ConnectionTracker`].
///
/// Layout: one byte of options (bit 0: the connection was seen from its start), then records of
/// `[op][len: u16 LE][bytes...]`, where `op` bit 0 picks the direction and bit 1 turns the record
/// into a gap of `len` bytes (no bytes follow). Returns the number of calls reported.
pub fn run_connection(input: &[u8]) -> usize {
    let Some((&options, mut rest)) = input.split_first() else {
        return 0;
    };
    let facts = ConnectionFacts::new(1, 1, None, None, options & 1 != 0);
    // Small limits so the fuzzer reaches them.
    let mut tracker = ConnectionTracker::new(
        facts,
        Limits {
            max_open_streams: 64,
            max_header_block: 4096,
        },
    );
    let mut out = Vec::new();
    let mut offsets = [0u64; 2];
    let mut clock = 0u64;
    while rest.len() >= 3 {
        let op = rest[0];
        let len = u16::from_le_bytes([rest[1], rest[2]]) as usize;
        rest = &rest[3..];
        let direction = if op & 1 == 0 {
            Direction::Egress
        } else {
            Direction::Ingress
        };
        let payload = if op & 2 != 0 {
            Payload::Gap(len as u64)
        } else {
            let take = len.min(rest.len());
            let (bytes, after) = rest.split_at(take);
            rest = after;
            Payload::Bytes(bytes)
        };
        clock += 1000;
        let offset = &mut offsets[direction as usize];
        let chunk = Chunk {
            offset: *offset,
            timestamp_ns: clock,
            payload,
        };
        *offset += chunk.payload.len();
        tracker.on_chunk(direction, &chunk, &mut out);
    }
    tracker.on_close(clock + 1, EndReason::ConnectionClosed, &mut out);
    for call in &out {
        // Exercise the derived views as an exporter would.
        let _ = (
            call.name(),
            call.duration(),
            call.time_to_first_response_message(),
        );
        assert!(
            call.end_ns >= call.start_ns || call.start_ns > clock,
            "call ends before it starts"
        );
    }
    out.len()
}

#[cfg(test)]
mod tests {
    use std::{fs, path::Path};

    use super::*;

    /// Every input saved in the fuzz corpus still runs cleanly.
    #[test]
    fn corpus_replays_without_panic() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/connection");
        let mut replayed = 0;
        for entry in fs::read_dir(&corpus).expect("fuzz corpus directory") {
            let input = fs::read(entry.unwrap().path()).unwrap();
            run_connection(&input);
            replayed += 1;
        }
        assert!(replayed > 0, "empty corpus at {}", corpus.display());
    }

    /// A short deterministic smoke run: corpus inputs with random mutations.
    #[test]
    fn mutated_corpus_never_panics() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/connection");
        let seeds: Vec<Vec<u8>> = fs::read_dir(&corpus)
            .unwrap()
            .map(|entry| fs::read(entry.unwrap().path()).unwrap())
            .collect();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..3000 {
            let mut input = seeds[round % seeds.len()].clone();
            for _ in 0..1 + next() % 8 {
                if input.is_empty() {
                    break;
                }
                let at = (next() % input.len() as u64) as usize;
                match next() % 3 {
                    0 => input[at] = next() as u8,
                    1 => input.insert(at, next() as u8),
                    _ => {
                        input.remove(at);
                    }
                }
            }
            run_connection(&input);
        }
    }
}
